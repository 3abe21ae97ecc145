"""A small local Reddit for tests and demos, speaking the OAuth API wire format praw uses.

One server plays both of Reddit's hosts (give praw oauth_url and reddit_url pointing here):

    POST /api/v1/access_token     (www.reddit.com) HTTP Basic client_id:client_secret;
                                  grant_type=password (username, password) or refresh_token
    GET  /api/v1/me
    GET  /r/{a+b}/search          q (words and "phrases" joined by OR), sort, restrict_sr, limit, after, before
    GET  /r/{a+b}/new, /r/{a+b}/comments
    GET  /message/inbox, /message/unread, /message/sent
    GET  /api/info                id=fullname,fullname
    GET  /comments/{article}      comment (focus), depth, sort, limit: [submission listing, comment tree]
    GET  /api/user_data_by_account_ids   ids=t2_..,t2_..
    POST /api/comment             thing_id, text (a reply to a submission, comment or message)
    POST /api/compose             to, subject, text

Listings are {"kind": "Listing", "data": {"after", "before", "dist", "children": [Thing]}}, newest
first; a Thing is {"kind": "t1"|"t3"|"t4", "data": {...}} with the fields Reddit documents.
Without raw_json=1, text fields are HTML-escaped (&, <, >) as Reddit does. POST endpoints answer
with api_type=json shapes: {"json": {"errors": [[code, message, field]], "data": ...}}.

Every API response carries X-Ratelimit-Used, X-Ratelimit-Remaining and X-Ratelimit-Reset (seconds
until the window ends); when the budget is used up the server answers 429. A revoked token gets
401 with `www-authenticate: Bearer realm="reddit", error="invalid_token"`, and the token
endpoint then answers {"error": "invalid_grant"}; a suspended account gets 403.

In a test:

    with FakeReddit() as server:
        post = server.add_submission("Refund please", "my order never came", author="alice")
        server.add_comment(post["name"], "me too, refund?", author="bob")
        server.add_message("help", "my account 1234", author="carol")     # a PM to the brand
        ...connector with base_url=server.url, credentials=server.credentials()...
        server.posted        # comments and messages the brand created through the API
        server.fail_next(503, count=2)
        server.fail_next(429, reset_in=30)
        server.set_rate_limit(remaining=0, reset_in=60)
        server.revoke_token(); server.suspend()

Run on its own for a demo: python -m hubbub.testing.fake_reddit --port 8766 --seed
"""

from __future__ import annotations

import argparse
import base64
import copy
import html
import json
import re
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

from hubbub.testing.server import LocalHTTPServer

JSONDict = dict[str, Any]

MAX_LIMIT = 100
DEFAULT_LIMIT = 25
TEXT_FIELDS = ("body", "title", "selftext", "subject", "link_title")
_DIGITS = "0123456789abcdefghijklmnopqrstuvwxyz"


def base36(number: int) -> str:
    out = ""
    while True:
        number, digit = divmod(number, 36)
        out = _DIGITS[digit] + out
        if not number:
            return out


def _slug(title: str) -> str:
    return re.sub(r"[^a-z0-9]+", "_", title.lower()).strip("_")[:50] or "post"


class _Reply(Exception):
    def __init__(self, status: int, payload: Any, headers: dict[str, str] | None = None):
        super().__init__(str(payload))
        self.status = status
        self.payload = payload
        self.headers = headers or {}


class FakeReddit(LocalHTTPServer):
    """An in-memory Reddit served over HTTP on 127.0.0.1 from a background thread."""

    def __init__(
        self,
        *,
        brand: str = "BrandSupport",
        client_id: str = "test-client",
        client_secret: str = "test-secret",  # noqa: S107 - a fake server's fake secret
        password: str = "test-password",  # noqa: S107
        refresh_token: str = "test-refresh",  # noqa: S107
        host: str = "127.0.0.1",
        port: int = 0,
        rate_limit: int = 1000,
        rate_window: float = 600.0,
    ):
        self.brand = brand
        self.client_id = client_id
        self.client_secret = client_secret
        self.password = password
        self.refresh_token = refresh_token
        self.rate_limit = rate_limit
        self.rate_window = rate_window
        self.rate_used = 0
        self.rate_reset = time.time() + rate_window
        self.revoked = False
        self.suspended = False
        self.users: dict[str, JSONDict] = {}
        # fullname -> Thing data, for every submission, comment and message.
        self.things: dict[str, JSONDict] = {}
        self.kinds: dict[str, str] = {}
        # Inbox entries of the brand: (fullname, inbox-specific fields), in arrival order.
        self.inbox: list[tuple[str, JSONDict]] = []
        # What the brand created through POST /api/comment and /api/compose, as Things.
        self.posted: list[JSONDict] = []
        # Every request: {"method", "path", "query", "form", "headers"}.
        self.requests: list[JSONDict] = []
        self._tokens: set[str] = set()
        self._failures: list[JSONDict] = []
        self._next_id = 36**5  # six-digit base36 ids, like Reddit's
        self._lock = threading.RLock()
        super().__init__(_Handler, host, port)
        self.user(brand, link_karma=500, comment_karma=2500)

    # -- test helpers ----------------------------------------------------------------------

    def credentials(self, *, refresh: bool = False) -> JSONDict:
        """Credentials for a script app (or, with refresh=True, a refresh-token app)."""
        creds: JSONDict = {"client_id": self.client_id, "client_secret": self.client_secret}
        if refresh:
            creds["refresh_token"] = self.refresh_token
        else:
            creds.update(username=self.brand, password=self.password)
        return creds

    def user(self, name: str, *, link_karma: int | None = None, comment_karma: int | None = None) -> JSONDict:
        """The account `name`, created on first use (karma given for an existing one updates it)."""
        with self._lock:
            key = name.lower()
            if key not in self.users:
                self.users[key] = {
                    "name": name,
                    "id": base36(self._new_id()),
                    "created_utc": 1_600_000_000.0,
                    "link_karma": 1,
                    "comment_karma": 0,
                    "profile_img": f"{self.url}/avatar/{name}.png",
                }
            account = self.users[key]
            if link_karma is not None:
                account["link_karma"] = link_karma
            if comment_karma is not None:
                account["comment_karma"] = comment_karma
            return account

    def add_submission(
        self,
        title: str,
        selftext: str = "",
        *,
        author: str = "customer",
        subreddit: str = "brand",
        created_utc: float | None = None,
    ) -> JSONDict:
        """A text post in r/`subreddit`; returns its Thing data."""
        with self._lock:
            account = self.user(author)
            id36 = base36(self._new_id())
            data = {
                **self._common(account, id36, "t3", subreddit, created_utc),
                "title": title,
                "selftext": selftext,
                "selftext_html": None,
                "is_self": True,
                "domain": f"self.{subreddit}",
                "url": f"{self.url}/r/{subreddit}/comments/{id36}/{_slug(title)}/",
                "permalink": f"/r/{subreddit}/comments/{id36}/{_slug(title)}/",
                "num_comments": 0,
                "over_18": False,
                "locked": False,
                "link_flair_text": None,
                "upvote_ratio": 1.0,
            }
            self._store("t3", data)
            self._mentions(data, selftext)
            return copy.deepcopy(data)

    def add_comment(
        self,
        parent: str,
        body: str,
        *,
        author: str = "customer",
        created_utc: float | None = None,
    ) -> JSONDict:
        """A comment replying to the submission or comment `parent` (a fullname); returns its data."""
        with self._lock:
            return copy.deepcopy(self._create_comment(self.user(author), parent, body, created_utc))

    def add_message(
        self,
        subject: str,
        body: str,
        *,
        author: str = "customer",
        to: str | None = None,
        parent: str | None = None,
        created_utc: float | None = None,
    ) -> JSONDict:
        """A private message from `author` (to the brand unless `to` is given); returns its data."""
        with self._lock:
            data = self._create_message(self.user(author), to or self.brand, subject, body, parent, created_utc)
            return copy.deepcopy(data)

    def delete(self, fullname: str) -> None:
        """Delete a thing as its author would (it disappears from listings, replies are refused)."""
        with self._lock:
            data = self.things[fullname]
            data["author"] = "[deleted]"
            data["body" if "body" in data else "selftext"] = "[deleted]"
            data["_deleted"] = True

    def revoke_token(self) -> None:
        """The user revoked the app (or changed the password): tokens fail, no new ones are issued."""
        with self._lock:
            self.revoked = True
            self._tokens.clear()

    def suspend(self) -> None:
        """The brand account is suspended: every API request gets 403."""
        with self._lock:
            self.suspended = True

    def fail_next(self, status: int = 503, count: int = 1, *, reset_in: float = 60.0, path: str = "") -> None:
        """Answer the next `count` API requests whose path starts with `path` with `status`.

        A 429 reports the rate limit as used up for `reset_in` seconds.
        """
        with self._lock:
            self._failures.extend({"status": status, "reset_in": reset_in, "path": path} for _ in range(count))

    def set_rate_limit(self, remaining: int, *, reset_in: float | None = None) -> None:
        """Set what is left of the budget: remaining=0 gives 429s until the reset."""
        with self._lock:
            self.rate_used = self.rate_limit - remaining
            self.rate_reset = time.time() + (reset_in if reset_in is not None else self.rate_window)

    def api_requests(self, method: str | None = None, path: str = "/") -> list[JSONDict]:
        with self._lock:
            return [
                r
                for r in self.requests
                if r["path"].startswith(path)
                and r["path"] != "/api/v1/access_token"
                and (method is None or r["method"] == method)
            ]

    def thing(self, fullname: str) -> JSONDict:
        """The Thing ({"kind", "data"}) as the API would list it."""
        with self._lock:
            return {"kind": self.kinds[fullname], "data": self._public(self.things[fullname])}

    # -- model -----------------------------------------------------------------------------

    def _new_id(self) -> int:
        self._next_id += 1
        return self._next_id

    def _common(
        self, account: JSONDict, id36: str, kind: str, subreddit: str | None, created: float | None
    ) -> JSONDict:
        moment = float(int(time.time())) if created is None else float(created)
        data: JSONDict = {
            "id": id36,
            "name": f"{kind}_{id36}",
            "author": account["name"],
            "author_fullname": f"t2_{account['id']}",
            "created_utc": moment,
            "created": moment - 28800,
            "score": 1,
            "ups": 1,
            "downs": 0,
            "edited": False,
            "distinguished": None,
            "stickied": False,
            "likes": None,
        }
        if subreddit is not None:
            data.update(subreddit=subreddit, subreddit_name_prefixed=f"r/{subreddit}", subreddit_id="t5_2qh1i")
        return data

    def _store(self, kind: str, data: JSONDict) -> None:
        self.things[data["name"]] = data
        self.kinds[data["name"]] = kind

    def _create_comment(self, account: JSONDict, parent: str, body: str, created: float | None) -> JSONDict:
        parent_data = self.things.get(parent)
        if parent_data is None or self.kinds[parent] not in ("t1", "t3"):
            raise ValueError(f"no submission or comment {parent}")
        link = parent_data if self.kinds[parent] == "t3" else self.things[parent_data["link_id"]]
        id36 = base36(self._new_id())
        data = {
            **self._common(account, id36, "t1", link["subreddit"], created),
            "body": body,
            "body_html": f'<div class="md"><p>{html.escape(body)}</p></div>',
            "parent_id": parent,
            "link_id": link["name"],
            "link_title": link["title"],
            "link_author": link["author"],
            "link_permalink": f"{self.url}{link['permalink']}",
            "permalink": f"{link['permalink']}{id36}/",
            "replies": "",
            "is_submitter": account["name"] == link["author"],
            "depth": (parent_data.get("depth", -1) + 1),
            "num_comments": link["num_comments"] + 1,
            "controversiality": 0,
        }
        self._store("t1", data)
        link["num_comments"] += 1
        if parent_data["author"].lower() == self.brand.lower() and account["name"].lower() != self.brand.lower():
            kind = "post_reply" if self.kinds[parent] == "t3" else "comment_reply"
            self._to_inbox(data, kind)
        else:
            self._mentions(data, body)
        return data

    def _create_message(
        self,
        account: JSONDict,
        to: str,
        subject: str,
        body: str,
        parent: str | None,
        created: float | None = None,
    ) -> JSONDict:
        id36 = base36(self._new_id())
        first = self.things.get(parent) if parent else None
        if first is not None and first.get("first_message_name"):
            first = self.things[first["first_message_name"]]
        data = {
            **self._common(account, id36, "t4", None, created),
            "subject": subject if first is None else f"re: {first['subject']}",
            "body": body,
            "body_html": f'<div class="md"><p>{html.escape(body)}</p></div>',
            "dest": to,
            "parent_id": parent,
            "first_message": int(first["id"], 36) if first else None,
            "first_message_name": first["name"] if first else None,
            "subreddit": None,
            "subreddit_name_prefixed": None,
            "context": "",
            "was_comment": False,
            "type": "unknown",
            "replies": "",
            "new": True,
            "num_comments": None,
        }
        self._store("t4", data)
        if to.lower() == self.brand.lower():
            self.inbox.append((data["name"], {}))
        return data

    def _mentions(self, data: JSONDict, text: str) -> None:
        if data["author"].lower() == self.brand.lower() or self.kinds[data["name"]] != "t1":
            return
        if re.search(rf"(?<![\w/])/?u/{re.escape(self.brand)}\b", text, re.IGNORECASE):
            self._to_inbox(data, "username_mention")

    def _to_inbox(self, data: JSONDict, kind: str) -> None:
        subjects = {
            "post_reply": "post reply",
            "comment_reply": "comment reply",
            "username_mention": "username mention",
        }
        link = self.things[data["link_id"]]
        self.inbox.append(
            (
                data["name"],
                {
                    "subject": subjects[kind],
                    "type": kind,
                    "was_comment": True,
                    "new": True,
                    "dest": self.brand,
                    "context": f"{data['permalink']}?context=3",
                    "first_message": None,
                    "first_message_name": None,
                    "num_comments": link["num_comments"],
                },
            )
        )

    def _public(self, data: JSONDict) -> JSONDict:
        return {k: copy.deepcopy(v) for k, v in data.items() if not k.startswith("_")}

    def _visible(self, fullname: str) -> bool:
        return not self.things[fullname].get("_deleted")

    # -- HTTP ------------------------------------------------------------------------------

    def _handle(self, request: _Handler) -> None:
        parts = urlsplit(request.path)
        path = unquote(parts.path).rstrip("/") or "/"
        path = path.removesuffix(".json")
        query = {k: v[-1] for k, v in parse_qs(parts.query, keep_blank_values=True).items()}
        length = int(request.headers.get("Content-Length") or 0)
        body = request.rfile.read(length) if length else b""
        form = {k: v[-1] for k, v in parse_qs(body.decode("utf-8", "replace"), keep_blank_values=True).items()}
        with self._lock:
            self.requests.append(
                {
                    "method": request.command,
                    "path": path,
                    "query": query,
                    "form": form,
                    "headers": dict(request.headers.items()),
                }
            )
            try:
                if path == "/api/v1/access_token":
                    status, payload, headers = self._token(request, form)
                elif path.startswith("/_fake/"):
                    status, payload, headers = self._control(request.command, path, body)
                else:
                    status, payload, headers = self._api(request, path, query, form)
            except _Reply as reply:
                status, payload, headers = reply.status, reply.payload, reply.headers
            data = json.dumps(payload).encode("utf-8")
        request.send_response(status)
        request.send_header("Content-Type", "application/json; charset=UTF-8")
        request.send_header("Content-Length", str(len(data)))
        for name, value in headers.items():
            request.send_header(name, value)
        request.end_headers()
        if request.command != "HEAD":
            request.wfile.write(data)

    def _token(self, request: _Handler, form: JSONDict) -> tuple[int, Any, dict]:
        scheme, _, encoded = (request.headers.get("Authorization") or "").partition(" ")
        try:
            client_id, _, secret = base64.b64decode(encoded).decode("utf-8").partition(":")
        except ValueError:
            client_id, secret = "", ""
        if scheme.lower() != "basic" or client_id != self.client_id or secret != self.client_secret:
            return 401, {"message": "Unauthorized", "error": 401}, {}
        grant = form.get("grant_type")
        if grant == "password":
            ok = form.get("username", "").lower() == self.brand.lower() and form.get("password") == self.password
        elif grant == "refresh_token":
            ok = form.get("refresh_token") == self.refresh_token
        else:
            return 200, {"error": "unsupported_grant_type"}, {}
        if not ok or self.revoked:
            # Reddit reports a refused grant in a 200 answer.
            return 200, {"error": "invalid_grant"}, {}
        token = f"token-{len(self._tokens) + 1}-{time.monotonic_ns()}"
        self._tokens.add(token)
        return 200, {"access_token": token, "token_type": "bearer", "expires_in": 86400, "scope": "*"}, {}

    def _api(self, request: _Handler, path: str, query: JSONDict, form: JSONDict) -> tuple[int, Any, dict]:
        now = time.time()
        if now >= self.rate_reset:
            self.rate_used = 0
            self.rate_reset = now + self.rate_window
        forced = next((f for f in self._failures if path.startswith(f["path"] or "/")), None)
        if forced is not None:
            self._failures.remove(forced)
            if forced["status"] == 429:
                self.rate_used = self.rate_limit
                self.rate_reset = now + forced["reset_in"]
        if self.rate_used >= self.rate_limit:
            raise _Reply(429, {"message": "Too Many Requests", "error": 429}, self._rate_headers())
        self.rate_used += 1
        headers = self._rate_headers()
        if forced is not None:
            raise _Reply(forced["status"], {"message": "Simulated failure", "error": forced["status"]}, headers)
        scheme, _, token = (request.headers.get("Authorization") or "").partition(" ")
        if scheme.lower() != "bearer" or token not in self._tokens:
            challenge = 'Bearer realm="reddit", error="invalid_token"'
            raise _Reply(401, {"message": "Unauthorized", "error": 401}, {**headers, "www-authenticate": challenge})
        if self.suspended:
            raise _Reply(403, {"message": "Forbidden", "error": 403}, headers)
        try:
            status, payload = self._route(request.command, path, query, form)
        except _Reply as reply:
            raise _Reply(reply.status, reply.payload, {**headers, **reply.headers}) from None
        if query.get("raw_json") != "1":
            payload = _escape(payload)
        return status, payload, headers

    def _rate_headers(self) -> dict[str, str]:
        return {
            "x-ratelimit-used": str(self.rate_used),
            "x-ratelimit-remaining": f"{float(max(0, self.rate_limit - self.rate_used)):.1f}",
            "x-ratelimit-reset": str(max(0, int(self.rate_reset - time.time()))),
        }

    def _route(self, method: str, path: str, query: JSONDict, form: JSONDict) -> tuple[int, Any]:
        if method == "GET" and path == "/api/v1/me":
            brand = self.user(self.brand)
            return 200, {**brand, "id": brand["id"], "has_verified_email": True, "is_suspended": False}
        match = re.fullmatch(r"/r/([A-Za-z0-9_+]+)/(search|new|comments)", path)
        if method == "GET" and match:
            subs = {s.lower() for s in match.group(1).split("+")}
            kind = "t1" if match.group(2) == "comments" else "t3"
            items = [
                n
                for n, k in self.kinds.items()
                if k == kind and self._visible(n) and self.things[n]["subreddit"].lower() in subs
            ]
            if match.group(2) == "search":
                items = [n for n in items if _matches(query.get("q", ""), self.things[n])]
            return 200, self._listing(items, query)
        match = re.fullmatch(r"/message/(inbox|unread|sent)", path)
        if method == "GET" and match:
            where = match.group(1)
            if where == "sent":
                items = [n for n, k in self.kinds.items() if k == "t4" and self.things[n]["author"] == self.brand]
                return 200, self._listing(items, query)
            entries = {n: extra for n, extra in self.inbox if where == "inbox" or extra.get("new", True)}
            return 200, self._listing(list(entries), query, extra=entries)
        if method == "GET" and path == "/api/info":
            names = [n for n in query.get("id", "").split(",") if n in self.things]
            return 200, self._listing(names, {"limit": "100"}, keep_order=True)
        match = re.fullmatch(r"/comments/([0-9a-z]+)(?:/[^/]*)?", path)
        if method == "GET" and match:
            return 200, self._tree(match.group(1), query)
        if method == "GET" and path == "/api/user_data_by_account_ids":
            wanted = set(query.get("ids", "").split(","))
            found = {f"t2_{u['id']}": u for u in self.users.values() if f"t2_{u['id']}" in wanted}
            if not found:
                raise _Reply(404, {"message": "Not Found", "error": 404})
            return 200, {
                k: {f: u[f] for f in ("name", "created_utc", "link_karma", "comment_karma", "profile_img")}
                for k, u in found.items()
            }
        if method == "POST" and path == "/api/comment":
            return 200, self._post_comment(form)
        if method == "POST" and path == "/api/compose":
            return 200, self._compose(form)
        raise _Reply(404, {"message": "Not Found", "error": 404})

    def _listing(
        self,
        names: list[str],
        query: JSONDict,
        *,
        extra: dict[str, JSONDict] | None = None,
        keep_order: bool = False,
    ) -> JSONDict:
        try:
            limit = min(max(int(query.get("limit") or DEFAULT_LIMIT), 1), MAX_LIMIT)
        except ValueError:
            limit = DEFAULT_LIMIT
        if not keep_order:
            # Newest first; ids break ties within a second.
            names = sorted(names, key=lambda n: (self.things[n]["created_utc"], len(n), n), reverse=True)
        after, before = query.get("after"), query.get("before")
        if after:
            names = names[names.index(after) + 1 :] if after in names else []
            page = names[:limit]
            more = len(names) > limit
        elif before:
            # The `limit` items just newer than `before`; nothing when `before` is gone.
            newer = names[: names.index(before)] if before in names else []
            page = newer[-limit:]
            more = True
        else:
            page = names[:limit]
            more = len(names) > limit
        children = []
        for name in page:
            data = self._public(self.things[name])
            if extra is not None:
                data.update(extra.get(name) or {})
            children.append({"kind": self.kinds[name], "data": data})
        return {
            "kind": "Listing",
            "data": {
                "after": page[-1] if page and more else None,
                "before": page[0] if page and (after or before or int(query.get("count") or 0)) else None,
                "dist": len(children),
                "modhash": None,
                "geo_filter": "",
                "children": children,
            },
        }

    def _tree(self, id36: str, query: JSONDict) -> list[JSONDict]:
        link = f"t3_{id36}"
        if link not in self.things:
            raise _Reply(404, {"message": "Not Found", "error": 404})
        try:
            depth = int(query.get("depth") or 10)
        except ValueError:
            depth = 10
        focus = query.get("comment")

        def children_of(parent: str, level: int) -> list[JSONDict]:
            if level > depth:
                return []
            replies = [n for n, k in self.kinds.items() if k == "t1" and self.things[n]["parent_id"] == parent]
            replies.sort(key=lambda n: (self.things[n]["created_utc"], len(n), n), reverse=query.get("sort") == "new")
            out = []
            for name in replies:
                data = self._public(self.things[name])
                below = children_of(name, level + 1)
                data["replies"] = _as_listing(below) if below else ""
                out.append({"kind": "t1", "data": data})
            return out

        if focus:
            name = f"t1_{focus}"
            if name not in self.things or self.things[name]["link_id"] != link:
                top: list[JSONDict] = []
            else:
                data = self._public(self.things[name])
                below = children_of(name, 2)
                data["replies"] = _as_listing(below) if below else ""
                top = [{"kind": "t1", "data": data}]
        else:
            top = children_of(link, 1)
        submission = {"kind": "t3", "data": self._public(self.things[link])}
        return [_as_listing([submission]), _as_listing(top)]

    def _post_comment(self, form: JSONDict) -> JSONDict:
        thing_id, text = form.get("thing_id", ""), form.get("text", "")
        if not text.strip():
            return {"json": {"errors": [["NO_TEXT", "we need something here", "text"]]}}
        if thing_id not in self.things:
            return {"json": {"errors": [["NO_THING_ID", "that thing doesn't exist", "parent"]]}}
        if not self._visible(thing_id):
            code = "DELETED_LINK" if self.kinds[thing_id] == "t3" else "DELETED_COMMENT"
            return {"json": {"errors": [[code, "that item has been deleted", "parent"]]}}
        brand = self.user(self.brand)
        if self.kinds[thing_id] == "t4":
            parent = self.things[thing_id]
            other = parent["author"] if parent["author"] != self.brand else parent["dest"]
            data = self._create_message(brand, other, "", text, thing_id)
            thing = {"kind": "t4", "data": self._public(data)}
        else:
            data = self._create_comment(brand, thing_id, text, None)
            thing = {"kind": "t1", "data": self._public(data)}
        self.posted.append(thing)
        return {"json": {"errors": [], "data": {"things": [copy.deepcopy(thing)]}}}

    def _compose(self, form: JSONDict) -> JSONDict:
        to = form.get("to", "").strip()
        to = re.sub(r"^/?u/", "", to)
        if not to:
            return {"json": {"errors": [["NO_USER", "please enter a username", "to"]]}}
        if to.lower() not in self.users:
            return {"json": {"errors": [["USER_DOESNT_EXIST", "that user doesn't exist", "to"]]}}
        if not form.get("subject", "").strip():
            return {"json": {"errors": [["NO_SUBJECT", "please enter a subject", "subject"]]}}
        if not form.get("text", "").strip():
            return {"json": {"errors": [["NO_TEXT", "we need something here", "text"]]}}
        data = self._create_message(
            self.user(self.brand), self.users[to.lower()]["name"], form["subject"], form["text"], None
        )
        self.posted.append({"kind": "t4", "data": self._public(data)})
        return {"json": {"errors": []}}

    def _control(self, method: str, path: str, body: bytes) -> tuple[int, Any, dict]:
        try:
            data = json.loads(body or b"{}")
        except ValueError:
            return 400, {"error": "expected a JSON body"}, {}
        if not isinstance(data, dict):
            return 400, {"error": "expected a JSON object"}, {}
        try:
            if method == "POST" and path == "/_fake/submissions":
                added = self.add_submission(
                    str(data.get("title") or "post"),
                    str(data.get("selftext") or ""),
                    author=str(data.get("author") or "customer"),
                    subreddit=str(data.get("subreddit") or "brand"),
                )
                return 200, added, {}
            if method == "POST" and path == "/_fake/comments":
                added = self.add_comment(
                    str(data.get("parent") or ""),
                    str(data.get("body") or ""),
                    author=str(data.get("author") or "customer"),
                )
                return 200, added, {}
            if method == "POST" and path == "/_fake/messages":
                added = self.add_message(
                    str(data.get("subject") or "hello"),
                    str(data.get("body") or ""),
                    author=str(data.get("author") or "customer"),
                )
                return 200, added, {}
        except ValueError as exc:
            return 422, {"error": str(exc)}, {}
        if method == "GET" and path == "/_fake/posted":
            return 200, self.posted, {}
        return 404, {"error": "Not Found"}, {}


def _as_listing(children: list[JSONDict]) -> JSONDict:
    return {
        "kind": "Listing",
        "data": {"after": None, "before": None, "dist": len(children), "modhash": None, "children": children},
    }


def _matches(q: str, data: JSONDict) -> bool:
    terms = [t.strip().strip('"').lower() for t in re.split(r"\s+OR\s+", q) if t.strip().strip('"')]
    text = f"{data.get('title', '')}\n{data.get('selftext', '')}".lower()
    return bool(terms) and any(term in text for term in terms)


def _escape(value: Any, key: str = "") -> Any:
    # Reddit's legacy JSON escapes &, < and > in text unless raw_json=1 is asked for.
    if isinstance(value, dict):
        return {k: _escape(v, k) for k, v in value.items()}
    if isinstance(value, list):
        return [_escape(v) for v in value]
    if isinstance(value, str) and key in TEXT_FIELDS:
        return value.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
    return value


class _Handler(BaseHTTPRequestHandler):
    server: ThreadingHTTPServer

    def _dispatch(self) -> None:
        self.server.owner._handle(self)  # type: ignore[attr-defined]

    do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = do_HEAD = _dispatch

    def log_message(self, format: str, *args: Any) -> None:
        pass


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="Run a fake Reddit for demos and browser tests.")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8766)
    parser.add_argument("--brand", default="BrandSupport")
    parser.add_argument("--seed", action="store_true", help="add a few example customer posts")
    args = parser.parse_args(argv)
    server = FakeReddit(brand=args.brand, host=args.host, port=args.port)
    server.start()
    if args.seed:
        post = server.add_submission("Refund still missing", "Ordered 3 weeks ago, nothing yet.", author="alice")
        server.add_comment(post["name"], f"Same here, u/{args.brand} can you help with my refund?", author="bob")
        server.add_message("Account locked", "I can't log in since yesterday.", author="carol")
    creds = server.credentials()
    print(f"fake Reddit on {server.url} (brand u/{args.brand}, credentials {creds}); Ctrl-C stops it", flush=True)
    try:
        threading.Event().wait()
    except KeyboardInterrupt:
        pass
    finally:
        server.stop()


if __name__ == "__main__":
    main()
