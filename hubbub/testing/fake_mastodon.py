"""A small local Mastodon server for tests, the end-to-end browser test and the demo.

It speaks the REST wire format documented at docs.joinmastodon.org for the calls the
Mastodon connector makes, holds everything in memory and forgets it on `stop()`:

    GET  /api/v1/instance, /api/v2/instance
    GET  /api/v1/accounts/verify_credentials
    GET  /api/v1/notifications     types[], exclude_types[], max_id, since_id, min_id, limit; Link header
    GET  /api/v1/timelines/tag/:t  max_id, since_id, min_id, limit; Link header (public statuses only)
    GET  /api/v2/search            q, type, limit, max_id, min_id (substring match on public statuses)
    GET  /api/v1/statuses/:id
    POST /api/v1/statuses          form or JSON: status, in_reply_to_id, visibility, spoiler_text,
                                   language; honours Idempotency-Key like Mastodon (same key, same status)

Every /api/ response carries X-RateLimit-Limit/Remaining/Reset (Reset as an ISO 8601 time, as
Mastodon sends it); when the budget is used up the server answers 429 until the reset time.
Notifications, verify_credentials and posting need `Authorization: Bearer <access_token>`;
tag timelines, search and public statuses also answer without one. Any request with a wrong
or revoked token gets 401 {"error": "The access token is invalid"}.

In a test:

    with FakeMastodon() as server:              # or server = FakeMastodon().start() ... server.stop()
        status = server.add_mention("my order is late", acct="alice")
        server.add_status("loving #brand", acct="bob")
        ...connector with base_url=server.url, access_token=server.access_token...
        assert server.posted[0]["in_reply_to_id"] == status["id"]
        server.fail_next(2, status=503)          # the next two API requests fail
        server.fail_next(status=429, reset_in=30)
        server.revoke_token()

Helpers: account(acct) creates or returns an Account; add_status()/add_mention() seed posts
(returning the Status JSON); `posted`, `statuses`, `notifications` and `requests` (or
api_requests(method, path)) show what happened; revoke_token(), fail_next() and
set_rate_limit() make it misbehave.

For the demo or a browser test driving a separate process, run it on its own:

    python -m hubbub.testing.fake_mastodon --port 8765 --token demo-token --seed

and seed it over HTTP through the /_fake/ control endpoints (no token; 127.0.0.1 only):

    POST /_fake/statuses   JSON {"text", "acct", "visibility", "in_reply_to_id", "html"}  -> the status
    POST /_fake/mentions   same fields; the text is made to mention the brand              -> the status
    GET  /_fake/posted     statuses created through POST /api/v1/statuses
    POST /_fake/fail       JSON {"count", "status", "reset_in"}
    POST /_fake/revoke     revoke the access token
"""

from __future__ import annotations

import argparse
import copy
import datetime as dt
import html
import json
import re
import threading
import time
from collections.abc import Iterable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, quote, unquote, urlencode, urlsplit

from hubbub.testing.server import LocalHTTPServer

JSONDict = dict[str, Any]

VERSION = "4.4.0"
MAX_CHARACTERS = 500
VISIBILITIES = ("public", "unlisted", "private", "direct")
# Mastodon keeps idempotency keys for an hour.
IDEMPOTENCY_TTL = 3600.0

_MENTION_RE = re.compile(r"(?<![\w/@])@(\w+(?:@[\w-]+(?:\.[\w-]+)+)?)")
_HASHTAG_RE = re.compile(r"(?<![\w/&#])#(\w+)")


class _Reply(Exception):
    """Ends a request with an HTTP error and a Mastodon error body."""

    def __init__(self, status: int, message: str):
        super().__init__(message)
        self.status = status
        self.message = message


def _timestamp(moment: dt.datetime) -> str:
    # Mastodon's datetime format: UTC, milliseconds, a trailing Z.
    moment = moment.astimezone(dt.UTC)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"


def _id_key(value: str) -> tuple[int, str]:
    # Snowflake IDs are numeric strings; comparing by length then text orders them numerically.
    return (len(value), value)


class FakeMastodon(LocalHTTPServer):
    """An in-memory Mastodon instance served over HTTP on 127.0.0.1 from a background thread."""

    def __init__(
        self,
        *,
        access_token: str = "test-token",  # noqa: S107 - a fake server's fake token
        brand: str = "brand",
        host: str = "127.0.0.1",
        port: int = 0,
        rate_limit: int = 300,
        rate_window: float = 300.0,
        full_text_search: bool = True,
    ):
        self.access_token = access_token
        # Mastodon without Elasticsearch answers keyword searches with no statuses; False imitates that.
        self.full_text_search = full_text_search
        self.rate_limit = rate_limit
        self.rate_window = rate_window
        self.rate_remaining = rate_limit
        self.rate_reset = time.time() + rate_window
        self.revoked = False
        self.accounts: dict[str, JSONDict] = {}
        self.statuses: dict[str, JSONDict] = {}
        self.notifications: list[JSONDict] = []
        # Statuses created through POST /api/v1/statuses, in order.
        self.posted: list[JSONDict] = []
        # Every request received: {"method", "path", "query", "headers", "body"}.
        self.requests: list[JSONDict] = []
        self._idempotency: dict[str, tuple[float, str]] = {}
        self._failures: list[JSONDict] = []
        self._last_status_id = 0
        self._last_notification_id = 0
        self._last_account_id = 0
        self._lock = threading.RLock()
        # Binds the port now, so `url` (and the URLs inside accounts and statuses) is right before start().
        super().__init__(_Handler, host, port)
        self.brand = self.account(brand, display_name=f"{brand.title()} Support", followers_count=1200)

    # -- test helpers ----------------------------------------------------------------------

    def account(self, acct: str, *, display_name: str | None = None, followers_count: int | None = None) -> JSONDict:
        """The Account with this acct ("alice" or "alice@other.example"), created on first use.

        A display_name or followers_count given for an existing account updates it.
        """
        acct = acct.lstrip("@")
        with self._lock:
            if acct in self.accounts:
                existing = self.accounts[acct]
                if display_name is not None:
                    existing["display_name"] = display_name
                if followers_count is not None:
                    existing["followers_count"] = followers_count
            else:
                self._last_account_id += 1
                username = acct.split("@")[0]
                created = _timestamp(dt.datetime(2022, 1, 1, tzinfo=dt.UTC))
                profile = f"{self.url}/@{acct}"
                self.accounts[acct] = {
                    "id": str(self._last_account_id),
                    "username": username,
                    "acct": acct,
                    "display_name": display_name if display_name is not None else username.title(),
                    "locked": False,
                    "bot": False,
                    "discoverable": True,
                    "group": False,
                    "created_at": created,
                    "note": "",
                    "url": profile,
                    "uri": f"{self.url}/users/{username}",
                    "avatar": f"{self.url}/avatars/original/missing.png",
                    "avatar_static": f"{self.url}/avatars/original/missing.png",
                    "header": f"{self.url}/headers/original/missing.png",
                    "header_static": f"{self.url}/headers/original/missing.png",
                    "followers_count": followers_count or 0,
                    "following_count": 0,
                    "statuses_count": 0,
                    "last_status_at": None,
                    "emojis": [],
                    "fields": [],
                }
            return self.accounts[acct]

    def add_status(
        self,
        text: str = "",
        *,
        acct: str = "customer",
        visibility: str = "public",
        in_reply_to_id: str | None = None,
        html_content: str | None = None,
        language: str | None = "en",
        created_at: dt.datetime | None = None,
        display_name: str | None = None,
        followers_count: int | None = None,
        spoiler_text: str = "",
    ) -> JSONDict:
        """Store a status as if `acct` had posted it; a status mentioning the brand notifies it.

        `text` is rendered to HTML the way Mastodon does (paragraphs, <br />, linked mentions and
        hashtags); pass `html_content` to store exact (possibly hostile) HTML instead.
        """
        if visibility not in VISIBILITIES:
            raise ValueError(f"visibility must be one of {VISIBILITIES}")
        with self._lock:
            author = self.account(acct, display_name=display_name, followers_count=followers_count)
            status = self._create_status(
                author,
                text,
                visibility=visibility,
                in_reply_to_id=in_reply_to_id,
                html_content=html_content,
                language=language,
                created_at=created_at,
                spoiler_text=spoiler_text,
            )
            return copy.deepcopy(status)

    def add_mention(self, text: str = "", *, acct: str = "customer", **fields: Any) -> JSONDict:
        """Like add_status, but the text is made to start with @brand so the brand gets a notification."""
        brand = self.brand["acct"]
        if not re.search(rf"(?<![\w@])@{re.escape(brand)}\b", text, re.IGNORECASE):
            text = f"@{brand} {text}".strip()
        return self.add_status(text, acct=acct, **fields)

    def restore(self, statuses: Iterable[JSONDict]) -> None:
        """Put back statuses a client has already seen (e.g. after a restart), keeping their ids.

        No notifications are made for them: the client has had those.
        """
        with self._lock:
            for status in statuses:
                if not isinstance(status, dict) or "id" not in status or "account" not in status:
                    continue
                acct = str(status["account"].get("acct") or "customer")
                author = self.account(
                    acct,
                    display_name=status["account"].get("display_name"),
                    followers_count=status["account"].get("followers_count"),
                )
                restored = copy.deepcopy(status)
                restored["account"] = copy.deepcopy(author)
                self.statuses[str(status["id"])] = restored
                if str(status["id"]).isdigit():
                    self._last_status_id = max(self._last_status_id, int(status["id"]))

    def revoke_token(self) -> None:
        """From now on every authenticated request gets 401, as after the user revoked the app."""
        with self._lock:
            self.revoked = True

    def fail_next(self, count: int = 1, status: int = 503, *, reset_in: float = 60.0, path: str = "") -> None:
        """Answer the next `count` API requests (whose path starts with `path`) with `status`.

        The instance endpoints are never failed this way: the client library fetches them on its
        own initiative, which would make the count unpredictable. A forced 429 reports the rate
        limit as used up until `reset_in` seconds from now.
        """
        with self._lock:
            for _ in range(count):
                self._failures.append({"status": status, "reset_in": reset_in, "path": path})

    def set_rate_limit(self, remaining: int, *, reset_in: float | None = None, limit: int | None = None) -> None:
        """Set the rate-limit budget: e.g. remaining=0 gives 429s until the reset."""
        with self._lock:
            if limit is not None:
                self.rate_limit = limit
            self.rate_remaining = remaining
            self.rate_reset = time.time() + (reset_in if reset_in is not None else self.rate_window)

    def api_requests(self, method: str | None = None, path: str = "/api/") -> list[JSONDict]:
        """Requests received so far, optionally only one method and a path prefix."""
        with self._lock:
            return [
                r for r in self.requests if r["path"].startswith(path) and (method is None or r["method"] == method)
            ]

    # -- model -----------------------------------------------------------------------------

    def _next_status_id(self) -> str:
        # Snowflake-like (milliseconds << 16) but strictly increasing in creation order,
        # so tests can rely on "added later" meaning "newer".
        self._last_status_id = max(self._last_status_id + 1, int(time.time() * 1000) << 16)
        return str(self._last_status_id)

    def _create_status(
        self,
        author: JSONDict,
        text: str,
        *,
        visibility: str,
        in_reply_to_id: str | None,
        html_content: str | None,
        language: str | None,
        created_at: dt.datetime | None,
        spoiler_text: str = "",
    ) -> JSONDict:
        parent = self.statuses.get(in_reply_to_id) if in_reply_to_id else None
        status_id = self._next_status_id()
        mentioned = [self.account(acct) for acct in dict.fromkeys(_MENTION_RE.findall(text))]
        tags = list(dict.fromkeys(tag.lower() for tag in _HASHTAG_RE.findall(text)))
        moment = created_at or dt.datetime.now(dt.UTC)
        status: JSONDict = {
            "id": status_id,
            "created_at": _timestamp(moment),
            "in_reply_to_id": parent["id"] if parent else None,
            "in_reply_to_account_id": parent["account"]["id"] if parent else None,
            "sensitive": bool(spoiler_text),
            "spoiler_text": spoiler_text,
            "visibility": visibility,
            "language": language,
            "uri": f"{self.url}/users/{author['username']}/statuses/{status_id}",
            "url": f"{self.url}/@{author['acct']}/{status_id}",
            "replies_count": 0,
            "reblogs_count": 0,
            "favourites_count": 0,
            "edited_at": None,
            "favourited": False,
            "reblogged": False,
            "muted": False,
            "bookmarked": False,
            "content": html_content if html_content is not None else self._render(text),
            "filtered": [],
            "reblog": None,
            "application": {"name": "Web", "website": None},
            "account": copy.deepcopy(author),
            "media_attachments": [],
            "mentions": [
                {"id": a["id"], "username": a["username"], "url": a["url"], "acct": a["acct"]} for a in mentioned
            ],
            "tags": [{"name": tag, "url": f"{self.url}/tags/{quote(tag)}"} for tag in tags],
            "emojis": [],
            "card": None,
            "poll": None,
        }
        self.statuses[status_id] = status
        if parent:
            parent["replies_count"] += 1
        author["statuses_count"] += 1
        author["last_status_at"] = moment.date().isoformat()
        if author is not self.brand and any(a is self.brand for a in mentioned):
            self._notify("mention", author, status)
        return status

    def _notify(self, kind: str, account: JSONDict, status: JSONDict) -> None:
        # Time-based like status ids, so an instance restarted with restore() never reuses an id
        # that a client's stored cursor has already passed.
        self._last_notification_id = max(self._last_notification_id + 1, int(time.time() * 1000))
        notification_id = str(self._last_notification_id)
        self.notifications.append(
            {
                "id": notification_id,
                "type": kind,
                "group_key": f"ungrouped-{notification_id}",
                "created_at": status["created_at"],
                "account": copy.deepcopy(account),
                "status": status,
            }
        )

    def _render(self, text: str) -> str:
        # The shape of Mastodon's own formatter: <p> per paragraph, <br /> per line break,
        # mentions and hashtags as links, everything else escaped.
        def line(raw: str) -> str:
            out = html.escape(raw, quote=False)
            out = _MENTION_RE.sub(self._mention_link, out)
            return _HASHTAG_RE.sub(
                lambda m: (
                    f'<a href="{self.url}/tags/{quote(m.group(1).lower())}" class="mention hashtag" '
                    f'rel="tag">#<span>{m.group(1)}</span></a>'
                ),
                out,
            )

        paragraphs = [p for p in re.split(r"\n\s*\n", text.strip()) if p.strip()]
        return "".join("<p>" + "<br />".join(line(x) for x in p.split("\n")) + "</p>" for p in paragraphs)

    def _mention_link(self, match: re.Match[str]) -> str:
        acct = match.group(1)
        username = acct.split("@")[0]
        return (
            f'<span class="h-card" translate="no"><a href="{self.url}/@{acct}" class="u-url mention">'
            f"@<span>{username}</span></a></span>"
        )

    def _visible(self, status: JSONDict, authenticated: bool) -> bool:
        if status["visibility"] in ("public", "unlisted"):
            return True
        if not authenticated:
            return False
        brand_id = self.brand["id"]
        return status["account"]["id"] == brand_id or any(m["id"] == brand_id for m in status["mentions"])

    # -- HTTP ------------------------------------------------------------------------------

    def _handle(self, request: _Handler) -> None:
        parts = urlsplit(request.path)
        path = unquote(parts.path)
        query = parse_qs(parts.query, keep_blank_values=True)
        length = int(request.headers.get("Content-Length") or 0)
        body = request.rfile.read(length) if length else b""
        with self._lock:
            self.requests.append(
                {
                    "method": request.command,
                    "path": path,
                    "query": query,
                    "headers": dict(request.headers.items()),
                    "body": body.decode("utf-8", "replace"),
                }
            )
            if path.startswith("/_fake/"):
                status, payload, headers = self._control(request.command, path, body)
            elif path.startswith("/api/"):
                status, payload, headers = self._api(request, path, query, body)
            else:
                status, payload, headers = 404, {"error": "Not Found"}, {}
            data = json.dumps(payload).encode("utf-8")
        request.send_response(status)
        request.send_header("Content-Type", "application/json; charset=utf-8")
        request.send_header("Content-Length", str(len(data)))
        for name, value in headers.items():
            request.send_header(name, value)
        request.end_headers()
        if request.command != "HEAD":
            request.wfile.write(data)

    def _api(self, request: _Handler, path: str, query: dict[str, list[str]], body: bytes) -> tuple[int, Any, dict]:
        now = time.time()
        if now >= self.rate_reset:
            self.rate_remaining = self.rate_limit
            self.rate_reset = now + self.rate_window
        public_endpoint = path.rstrip("/") in ("/api/v1/instance", "/api/v2/instance")
        forced = None
        if not public_endpoint:
            forced = next((f for f in self._failures if path.startswith(f["path"] or "/api/")), None)
            if forced is not None:
                self._failures.remove(forced)

        if forced is not None and forced["status"] == 429:
            reset = now + forced["reset_in"]
            return 429, {"error": "Too many requests"}, self._rate_headers(0, reset)
        if self.rate_remaining <= 0:
            return 429, {"error": "Too many requests"}, self._rate_headers(0, self.rate_reset)
        self.rate_remaining -= 1
        headers = self._rate_headers(self.rate_remaining, self.rate_reset)
        if forced is not None:
            return forced["status"], {"error": "Simulated failure"}, headers

        try:
            authenticated = self._authenticate(request.headers.get("Authorization"))
            status, payload, extra = self._route(request.command, path, query, body, request, authenticated)
        except _Reply as reply:
            return reply.status, {"error": reply.message}, headers
        return status, payload, {**headers, **extra}

    def _rate_headers(self, remaining: int, reset: float) -> dict[str, str]:
        return {
            "X-RateLimit-Limit": str(self.rate_limit),
            "X-RateLimit-Remaining": str(max(0, remaining)),
            "X-RateLimit-Reset": _timestamp(dt.datetime.fromtimestamp(reset, dt.UTC)),
        }

    def _authenticate(self, header: str | None) -> bool:
        if not header:
            return False
        scheme, _, token = header.partition(" ")
        if scheme.lower() != "bearer" or self.revoked or token.strip() != self.access_token:
            raise _Reply(401, "The access token is invalid")
        return True

    def _route(
        self,
        method: str,
        path: str,
        query: dict[str, list[str]],
        body: bytes,
        request: _Handler,
        authenticated: bool,
    ) -> tuple[int, Any, dict]:
        path = path.rstrip("/")

        def need_user() -> None:
            if not authenticated:
                raise _Reply(401, "This method requires an authenticated user")

        if method == "GET" and path == "/api/v1/instance":
            return 200, self._instance_v1(), {}
        if method == "GET" and path == "/api/v2/instance":
            return 200, self._instance_v2(), {}
        if method == "GET" and path == "/api/v1/accounts/verify_credentials":
            need_user()
            me = copy.deepcopy(self.brand)
            me["source"] = {
                "privacy": "public",
                "sensitive": False,
                "language": "en",
                "note": "",
                "fields": [],
            }
            return 200, me, {}
        if method == "GET" and path == "/api/v1/notifications":
            need_user()
            types = set(query.get("types[]", []))
            excluded = set(query.get("exclude_types[]", []))
            items = [n for n in self.notifications if (not types or n["type"] in types) and n["type"] not in excluded]
            return self._page(items, query, path, default_limit=40, max_limit=80)
        match = re.fullmatch(r"/api/v1/timelines/tag/([^/]+)", path)
        if method == "GET" and match:
            tag = match.group(1).lower()
            items = [
                s
                for s in self.statuses.values()
                if s["visibility"] == "public" and any(t["name"] == tag for t in s["tags"])
            ]
            return self._page(items, query, path, default_limit=20, max_limit=40)
        if method == "GET" and path == "/api/v2/search":
            return self._search(query, authenticated)
        match = re.fullmatch(r"/api/v1/statuses/([^/]+)", path)
        if method == "GET" and match:
            status = self.statuses.get(match.group(1))
            if status is None or not self._visible(status, authenticated):
                raise _Reply(404, "Record not found")
            return 200, status, {}
        if method == "POST" and path == "/api/v1/statuses":
            need_user()
            return self._post_status(request, body)
        raise _Reply(404, "Not Found")

    def _page(
        self,
        items: list[JSONDict],
        query: dict[str, list[str]],
        path: str,
        *,
        default_limit: int,
        max_limit: int,
    ) -> tuple[int, Any, dict]:
        def param(name: str) -> str | None:
            values = query.get(name)
            return values[0] if values and values[0] else None

        try:
            limit = min(max(int(param("limit") or default_limit), 1), max_limit)
        except ValueError:
            limit = default_limit
        max_id, since_id, min_id = param("max_id"), param("since_id"), param("min_id")
        newest_first = sorted(items, key=lambda x: _id_key(x["id"]), reverse=True)
        if max_id:
            newest_first = [x for x in newest_first if _id_key(x["id"]) < _id_key(max_id)]
        if since_id:
            newest_first = [x for x in newest_first if _id_key(x["id"]) > _id_key(since_id)]
        if min_id:
            # min_id returns the page immediately after min_id (still newest first), since_id the newest page.
            newest_first = [x for x in newest_first if _id_key(x["id"]) > _id_key(min_id)]
            page = newest_first[-limit:]
        else:
            page = newest_first[:limit]
        headers = {}
        if page:
            keep = [(k, v) for k, values in query.items() if k not in ("max_id", "since_id", "min_id") for v in values]
            base = f"{self.url}{path}"
            older = urlencode([*keep, ("max_id", page[-1]["id"])])
            newer = urlencode([*keep, ("min_id", page[0]["id"])])
            headers["Link"] = f'<{base}?{older}>; rel="next", <{base}?{newer}>; rel="prev"'
        return 200, page, headers

    def _search(self, query: dict[str, list[str]], authenticated: bool) -> tuple[int, Any, dict]:
        q = (query.get("q") or [""])[0].strip()
        kind = (query.get("type") or [""])[0]
        result: JSONDict = {"accounts": [], "statuses": [], "hashtags": []}
        if not q:
            return 200, result, {}
        if kind in ("", "accounts"):
            result["accounts"] = [a for a in self.accounts.values() if q.lstrip("@").lower() in a["acct"].lower()]
        if kind in ("", "hashtags"):
            tags = {t["name"] for s in self.statuses.values() for t in s["tags"]}
            result["hashtags"] = [
                {"name": t, "url": f"{self.url}/tags/{quote(t)}", "history": []}
                for t in sorted(tags)
                if q.lstrip("#").lower() in t
            ]
        if kind in ("", "statuses") and authenticated and self.full_text_search:
            needle = q.lower()
            matches = [
                s
                for s in self.statuses.values()
                if s["visibility"] == "public"
                and needle in html.unescape(re.sub(r"<[^>]+>", " ", s["content"])).lower()
            ]
            _, page, _ = self._page(matches, query, "/api/v2/search", default_limit=20, max_limit=40)
            result["statuses"] = page
        return 200, result, {}

    def _post_status(self, request: _Handler, body: bytes) -> tuple[int, Any, dict]:
        content_type = (request.headers.get("Content-Type") or "").split(";")[0].strip().lower()
        if content_type == "application/json":
            try:
                form = json.loads(body or b"{}")
            except ValueError as exc:
                raise _Reply(400, f"Invalid JSON: {exc}") from exc
            if not isinstance(form, dict):
                raise _Reply(400, "Invalid JSON: expected an object")
        else:
            form = {k: v[-1] for k, v in parse_qs(body.decode("utf-8"), keep_blank_values=True).items()}

        key = request.headers.get("Idempotency-Key")
        now = time.time()
        if key:
            seen = self._idempotency.get(key)
            if seen and now - seen[0] < IDEMPOTENCY_TTL:
                return 200, self.statuses[seen[1]], {}

        text = str(form.get("status") or "")
        if not text.strip():
            raise _Reply(422, "Validation failed: Text can't be blank")
        if len(text) > MAX_CHARACTERS:
            raise _Reply(422, f"Validation failed: Text character limit of {MAX_CHARACTERS} exceeded")
        visibility = str(form.get("visibility") or "public")
        if visibility not in VISIBILITIES:
            raise _Reply(422, "Validation failed: Visibility is not included in the list")
        in_reply_to_id = form.get("in_reply_to_id") or None
        if in_reply_to_id is not None:
            parent = self.statuses.get(str(in_reply_to_id))
            if parent is None or not self._visible(parent, True):
                raise _Reply(404, "Record not found")
        status = self._create_status(
            self.brand,
            text,
            visibility=visibility,
            in_reply_to_id=str(in_reply_to_id) if in_reply_to_id else None,
            html_content=None,
            language=str(form.get("language") or "en"),
            created_at=None,
            spoiler_text=str(form.get("spoiler_text") or ""),
        )
        self.posted.append(status)
        if key:
            self._idempotency[key] = (now, status["id"])
        return 200, status, {}

    def _instance_v1(self) -> JSONDict:
        return {
            "uri": f"{self.host}:{self.port}",
            "title": "Fake Mastodon",
            "short_description": "A local stand-in for a Mastodon server, for tests and demos.",
            "description": "",
            "email": "admin@example.invalid",
            "version": VERSION,
            "urls": {"streaming_api": f"ws://{self.host}:{self.port}"},
            "stats": {
                "user_count": len(self.accounts),
                "status_count": len(self.statuses),
                "domain_count": 1,
            },
            "thumbnail": None,
            "languages": ["en"],
            "registrations": False,
            "approval_required": False,
            "invites_enabled": False,
            "configuration": self._configuration(),
            "contact_account": copy.deepcopy(self.brand),
            "rules": [],
        }

    def _instance_v2(self) -> JSONDict:
        return {
            "domain": f"{self.host}:{self.port}",
            "title": "Fake Mastodon",
            "version": VERSION,
            "source_url": "https://github.com/mastodon/mastodon",
            "description": "A local stand-in for a Mastodon server, for tests and demos.",
            "usage": {"users": {"active_month": len(self.accounts)}},
            "thumbnail": {"url": f"{self.url}/thumbnail.png"},
            "languages": ["en"],
            "configuration": {
                "urls": {"streaming": f"ws://{self.host}:{self.port}"},
                "accounts": {"max_featured_tags": 10},
                **self._configuration(),
                "translation": {"enabled": False},
            },
            "registrations": {"enabled": False, "approval_required": False, "message": None},
            "contact": {"email": "admin@example.invalid", "account": copy.deepcopy(self.brand)},
            "rules": [],
            "api_versions": {"mastodon": 6},
        }

    def _configuration(self) -> JSONDict:
        return {
            "statuses": {
                "max_characters": MAX_CHARACTERS,
                "max_media_attachments": 4,
                "characters_reserved_per_url": 23,
            },
            "media_attachments": {
                "supported_mime_types": ["image/jpeg", "image/png"],
                "image_size_limit": 10485760,
                "image_matrix_limit": 16777216,
                "video_size_limit": 41943040,
                "video_frame_rate_limit": 60,
                "video_matrix_limit": 2304000,
            },
            "polls": {
                "max_options": 4,
                "max_characters_per_option": 50,
                "min_expiration": 300,
                "max_expiration": 2629746,
            },
        }

    def _control(self, method: str, path: str, body: bytes) -> tuple[int, Any, dict]:
        try:
            data = json.loads(body or b"{}")
        except ValueError:
            return 400, {"error": "expected a JSON body"}, {}
        if not isinstance(data, dict):
            return 400, {"error": "expected a JSON object"}, {}
        fields = {
            "acct": str(data.get("acct") or "customer"),
            "visibility": str(data.get("visibility") or "public"),
            "in_reply_to_id": data.get("in_reply_to_id"),
            "html_content": data.get("html"),
        }
        try:
            if method == "POST" and path == "/_fake/statuses":
                return 200, self.add_status(str(data.get("text") or ""), **fields), {}
            if method == "POST" and path == "/_fake/mentions":
                return 200, self.add_mention(str(data.get("text") or ""), **fields), {}
        except ValueError as exc:
            return 422, {"error": str(exc)}, {}
        if method == "GET" and path == "/_fake/posted":
            return 200, self.posted, {}
        if method == "POST" and path == "/_fake/fail":
            self.fail_next(
                int(data.get("count", 1)),
                int(data.get("status", 503)),
                reset_in=float(data.get("reset_in", 60)),
            )
            return 200, {}, {}
        if method == "POST" and path == "/_fake/revoke":
            self.revoke_token()
            return 200, {}, {}
        return 404, {"error": "Not Found"}, {}


class _Handler(BaseHTTPRequestHandler):
    server: ThreadingHTTPServer

    def _dispatch(self) -> None:
        self.server.owner._handle(self)  # type: ignore[attr-defined]

    do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = do_HEAD = _dispatch

    def log_message(self, format: str, *args: Any) -> None:
        # Quiet: test output should show test failures, not access logs.
        pass


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="Run a fake Mastodon instance for demos and browser tests.")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8765)
    parser.add_argument("--token", default="demo-token", help="the access token the server accepts")
    parser.add_argument("--brand", default="brand", help="acct of the brand account the token belongs to")
    parser.add_argument("--seed", action="store_true", help="add a few example customer posts")
    args = parser.parse_args(argv)
    server = FakeMastodon(access_token=args.token, brand=args.brand, host=args.host, port=args.port)
    server.start()
    if args.seed:
        server.add_mention("my order #1234 still hasn't arrived, can you help?", acct="alice", followers_count=85)
        server.add_mention("how do I reset my password?", acct="bob@other.example", visibility="direct")
        server.add_status(f"Really enjoying the new app from #{args.brand}!", acct="carol", followers_count=4300)
    print(
        f"fake Mastodon on {server.url} (token {args.token!r}, brand @{args.brand}); Ctrl-C stops it",
        flush=True,
    )
    try:
        threading.Event().wait()
    except KeyboardInterrupt:
        pass
    finally:
        server.stop()


if __name__ == "__main__":
    main()
