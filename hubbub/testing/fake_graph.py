"""A small local Meta Graph API for tests and the demo: Facebook Page, Messenger, Instagram.

It speaks the wire format documented at developers.facebook.com for the calls the Meta connector
makes, holds everything in memory and forgets it on `stop()`. Paths may carry a version prefix
(/v25.0/...), which is ignored.

    GET  /{page-id}/feed                  since, until, limit, after; newest first; paging.cursors
    GET  /{object-id}/comments            filter=stream|toplevel, order=chronological|reverse_chronological,
                                          since, limit, after (posts and Facebook comments)
    GET  /{ig-comment-id}/replies         limit, after
    GET  /{page-id}/conversations         platform=messenger|instagram, user_id, limit, after and
                                          fields=...messages.limit(N){...} (messages nested, newest first)
    GET  /{conversation-id}/messages      limit, after
    GET  /{id}                            a post, comment (with can_reply_privately) or message
    POST /{post-or-comment-id}/comments   {"message"} -> {"id"}
    POST /{ig-comment-id}/replies         {"message"} -> {"id"}
    POST /{page-id}/messages              {"recipient": {"id"} | {"comment_id"} | {"post_id"},
                                          "messaging_type", "tag", "message": {"text"}}
                                          -> {"recipient_id", "message_id"}; the 24-hour window (7 days
                                          with the HUMAN_AGENT tag) and the one-private-reply rule are
                                          enforced with Meta's error codes.

Errors are Graph error objects ``{"error": {"message", "type", "code", "error_subcode",
"fbtrace_id"}}``. Authentication: ``Authorization: Bearer <token>`` or ``access_token=``; a wrong
or revoked token gets code 190. With `app_secret` set, every call must carry the right
``appsecret_proof``. Every response has an ``X-App-Usage`` header (see `set_usage`).

In a test:

    with FakeGraph() as graph:
        post = graph.add_post("Our new store opens today", author=graph.page)   # the Page's own post
        comment = graph.add_comment(post["id"], "Is it open on Sunday?")       # a customer's comment
        message = graph.add_message("where is my order?")                      # a Messenger DM
        ...connector with base_url=graph.url, access_token=graph.access_token...
        graph.fail_next(code=4, regain_minutes=3)   # throttled, with X-Business-Use-Case-Usage
        graph.fail_next(status=502, raw=True)       # a gateway error page
        graph.revoke_token()
        graph.deliver(url, graph.feed_comment_webhook(comment), app_secret)  # a signed webhook POST
"""

from __future__ import annotations

import argparse
import base64
import copy
import datetime as dt
import hashlib
import hmac
import itertools
import json
import re
import secrets
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, unquote, urlencode, urlsplit

import requests

from hubbub.lib.webhooks import SIGNATURE_HEADER, hub_signature
from hubbub.testing.server import LocalHTTPServer

JSONDict = dict[str, Any]

PAGE_ID = "1061234567890"
IG_USER_ID = "17841400000000001"
STANDARD_WINDOW = 24 * 3600
HUMAN_AGENT_WINDOW = 7 * 24 * 3600
PRIVATE_REPLY_WINDOW = 7 * 24 * 3600
RATE_LIMIT_CODES = {4, 17, 32, 613, 80001, 80002, 80006}
_VERSION = re.compile(r"^/v\d+\.\d+(?=/)")
_NESTED_LIMIT = re.compile(r"messages\.limit\((\d+)\)")


def graph_time(stamp: float) -> str:
    """Graph API time format: 2024-05-01T12:00:00+0000."""
    return dt.datetime.fromtimestamp(int(stamp), dt.UTC).strftime("%Y-%m-%dT%H:%M:%S+0000")


def sign(body: Any, app_secret: str) -> tuple[bytes, dict[str, str]]:
    """The raw bytes and headers Meta would send for `body` (non-ASCII escaped, as Meta does)."""
    raw = body if isinstance(body, bytes) else json.dumps(body, ensure_ascii=True).encode("ascii")
    return raw, {"Content-Type": "application/json", SIGNATURE_HEADER: hub_signature(raw, app_secret)}


class _Fail(Exception):
    def __init__(self, status: int, message: str, code: int, subcode: int | None = None, kind: str = ""):
        super().__init__(message)
        self.status, self.message, self.code, self.subcode = status, message, code, subcode
        self.kind = kind or ("OAuthException" if code in (190, 10, 200, 4, 17, 32, 613) else "GraphMethodException")


class FakeGraph(LocalHTTPServer):
    """An in-memory Graph API for one Facebook Page and its linked Instagram account."""

    def __init__(
        self,
        *,
        access_token: str = "test-page-token",  # noqa: S107 - a fake server's fake token
        app_secret: str = "",
        page_id: str = PAGE_ID,
        ig_user_id: str = IG_USER_ID,
        page_name: str = "Brand",
        ig_username: str = "brand",
        host: str = "127.0.0.1",
        port: int = 0,
    ):
        self.access_token = access_token
        # When set, every call must carry appsecret_proof (the App Dashboard's "Require App Secret").
        self.app_secret = app_secret
        self.page = {"id": page_id, "name": page_name}
        self.ig_account = {"id": ig_user_id, "username": ig_username}
        self.revoked = False
        self.posts: dict[str, JSONDict] = {}
        self.comments: dict[str, JSONDict] = {}
        self.ig_comments: dict[str, JSONDict] = {}
        # (platform, user id) -> conversation {"id", "platform", "user", "messages": [oldest first]}
        self.conversations: dict[tuple[str, str], JSONDict] = {}
        self.messages: dict[str, JSONDict] = {}
        self.private_replied: set[str] = set()
        # Objects created through the API (comments, replies, messages), in order.
        self.posted: list[JSONDict] = []
        # Every request: {"method", "path", "query", "headers", "body"}.
        self.requests: list[JSONDict] = []
        self.usage = {"call_count": 1, "total_cputime": 1, "total_time": 1}
        self._failures: list[JSONDict] = []
        self._ids = itertools.count(1000)
        self._clock = 0
        self._lock = threading.RLock()
        super().__init__(_Handler, host, port)

    # -- test helpers ----------------------------------------------------------------------

    def user(self, name: str = "Customer", *, user_id: str | None = None) -> JSONDict:
        """A Page-scoped user (id and name), for `author=`; same name, same id."""
        digest = hashlib.sha256(name.encode()).hexdigest()
        return {"id": user_id or str(int(digest[:13], 16) + 10**15), "name": name}

    def add_post(self, text: str, *, author: JSONDict | None = None, created: float | None = None) -> JSONDict:
        """A post on the Page's feed; by default a visitor post from "Customer"."""
        with self._lock:
            author = author or self.user()
            post_id = f"{self.page['id']}_{next(self._ids)}"
            post = {
                "id": post_id,
                "message": text,
                "created_time": graph_time(self._stamp(created)),
                "updated_time": graph_time(self._stamp(created)),
                "from": dict(author),
                "permalink_url": f"https://www.facebook.com/{post_id}",
            }
            self.posts[post_id] = post
            return copy.deepcopy(post)

    def add_comment(
        self,
        parent_id: str,
        text: str,
        *,
        author: JSONDict | None = None,
        created: float | None = None,
    ) -> JSONDict:
        """A Facebook comment on a post, or a reply to a comment (`parent_id` is either)."""
        with self._lock:
            return copy.deepcopy(self._new_comment(parent_id, text, author or self.user(), created))

    def add_ig_comment(
        self,
        text: str,
        *,
        username: str = "customer",
        media_id: str = "17900000000000001",
        parent_id: str | None = None,
        created: float | None = None,
    ) -> JSONDict:
        with self._lock:
            comment_id = str(17_950_000_000_000_000 + next(self._ids))
            user_id = str(int(hashlib.sha256(username.encode()).hexdigest()[:12], 16) + 10**15)
            comment = {
                "id": comment_id,
                "text": text,
                "timestamp": graph_time(self._stamp(created)),
                "from": {"id": user_id, "username": username},
                "username": username,
                "media": {"id": media_id, "media_product_type": "FEED"},
                "parent_id": parent_id,
                "replies": [],
            }
            self.ig_comments[comment_id] = comment
            if parent_id and parent_id in self.ig_comments:
                self.ig_comments[parent_id]["replies"].append(comment_id)
            return copy.deepcopy(comment)

    def add_message(
        self,
        text: str,
        *,
        author: JSONDict | None = None,
        platform: str = "messenger",
        created: float | None = None,
    ) -> JSONDict:
        """A direct message from a customer to the Page (or the Instagram account)."""
        with self._lock:
            author = author or self.user()
            if platform == "instagram":
                author = {"id": author["id"], "username": author.get("username") or author["name"].lower()}
            return copy.deepcopy(self._new_message(platform, author, text, self._stamp(created), customer=author))

    def revoke_token(self) -> None:
        """From now on every call gets error 190, as after the Page admin removed the app."""
        with self._lock:
            self.revoked = True

    def fail_next(
        self,
        count: int = 1,
        *,
        status: int | None = None,
        code: int | None = None,
        subcode: int | None = None,
        regain_minutes: int | None = None,
        raw: bool = False,
        path: str = "",
    ) -> None:
        """Answer the next `count` calls (whose path contains `path`) with an error.

        `code` gives a Graph error object (4/17/32/613/800xx are throttling: HTTP 400, or
        `status`, plus an X-Business-Use-Case-Usage header with `regain_minutes`); `raw` gives a
        non-JSON error page with `status` (default 500).
        """
        with self._lock:
            for _ in range(count):
                self._failures.append(
                    {
                        "status": status,
                        "code": code,
                        "subcode": subcode,
                        "regain": regain_minutes,
                        "raw": raw,
                        "path": path,
                    }
                )

    def set_usage(self, call_count: int, total_time: int = 1, total_cputime: int = 1) -> None:
        """The percentages the X-App-Usage header reports from now on."""
        with self._lock:
            self.usage = {"call_count": call_count, "total_cputime": total_cputime, "total_time": total_time}

    def api_requests(self, method: str | None = None, contains: str = "") -> list[JSONDict]:
        with self._lock:
            return [r for r in self.requests if contains in r["path"] and (method is None or r["method"] == method)]

    # -- webhook deliveries ----------------------------------------------------------------

    def feed_post_webhook(self, post: JSONDict, verb: str = "add") -> JSONDict:
        created = _unix(post["created_time"])
        value = {
            "from": dict(post["from"]),
            "item": "status",
            "post_id": post["id"],
            "verb": verb,
            "published": 1,
            "created_time": created,
            "message": post["message"],
        }
        return self._change_body("page", self.page["id"], "feed", value)

    def feed_comment_webhook(self, comment: JSONDict, verb: str = "add") -> JSONDict:
        value = {
            "from": dict(comment["from"]),
            "post": {"status_type": "mobile_status_update", "is_published": True, "id": comment["post_id"]},
            "message": comment["message"],
            "post_id": comment["post_id"],
            "comment_id": comment["id"],
            "created_time": _unix(comment["created_time"]),
            "item": "comment",
            "parent_id": comment["parent_id"],
            "verb": verb,
        }
        return self._change_body("page", self.page["id"], "feed", value)

    def ig_comment_webhook(self, comment: JSONDict) -> JSONDict:
        value = {
            "from": dict(comment["from"]),
            "media": dict(comment["media"]),
            "id": comment["id"],
            "text": comment["text"],
        }
        if comment.get("parent_id"):
            value["parent_id"] = comment["parent_id"]
        return self._change_body("instagram", self.ig_account["id"], "comments", value)

    def messaging_webhook(self, message: JSONDict) -> JSONDict:
        platform = message["platform"]
        brand = self.page["id"] if platform == "messenger" else self.ig_account["id"]
        stamp_ms = _unix(message["created_time"]) * 1000
        event = {
            "sender": {"id": message["from"]["id"]},
            "recipient": {"id": brand},
            "timestamp": stamp_ms,
            "message": {"mid": message["id"], "text": message["message"]},
        }
        return {
            "object": "page" if platform == "messenger" else "instagram",
            "entry": [{"id": brand, "time": stamp_ms, "messaging": [event]}],
        }

    def deliver(self, url: str, body: Any, app_secret: str, *, timeout: float = 10.0) -> requests.Response:
        """POST `body` to `url` signed like Meta does (X-Hub-Signature-256 over the exact bytes)."""
        raw, headers = sign(body, app_secret)
        return requests.post(url, data=raw, headers=headers, timeout=timeout)

    def _change_body(self, obj: str, entry_id: str, field: str, value: JSONDict) -> JSONDict:
        return {
            "object": obj,
            "entry": [{"id": entry_id, "time": int(time.time()), "changes": [{"field": field, "value": value}]}],
        }

    # -- model -----------------------------------------------------------------------------

    def _stamp(self, created: float | None) -> int:
        if created is not None:
            return int(created)
        # Now, but never before the last default stamp: "added later" means "not older".
        self._clock = max(self._clock, int(time.time()))
        return self._clock

    def _new_comment(self, parent_id: str, text: str, author: JSONDict, created: float | None) -> JSONDict:
        if parent_id in self.posts:
            post_id, parent = parent_id, None
        elif parent_id in self.comments:
            post_id, parent = self.comments[parent_id]["post_id"], self.comments[parent_id]
        else:
            raise KeyError(parent_id)
        object_id = post_id.split("_", 1)[1]
        comment_id = f"{object_id}_{next(self._ids)}"
        comment = {
            "id": comment_id,
            "message": text,
            "created_time": graph_time(self._stamp(created)),
            "from": dict(author),
            "post_id": post_id,
            "parent_id": parent["id"] if parent else post_id,
            "permalink_url": f"https://www.facebook.com/{comment_id}",
        }
        self.comments[comment_id] = comment
        return comment

    def _new_message(self, platform: str, author: JSONDict, text: str, stamp: int, customer: JSONDict) -> JSONDict:
        key = (platform, customer["id"])
        conversation = self.conversations.get(key)
        if conversation is None:
            conversation = {"id": f"t_{next(self._ids)}", "platform": platform, "user": dict(customer), "messages": []}
            self.conversations[key] = conversation
        brand = self.page if platform == "messenger" else self.ig_account
        other = customer if author["id"] == brand["id"] else brand
        if platform == "messenger":
            mid = f"m_{secrets.token_urlsafe(24)}"
        else:
            mid = base64.b64encode(f"ig_item:1:IGMessage:{secrets.token_hex(16)}".encode()).decode().rstrip("=")
        message = {
            "id": mid,
            "message": text,
            "created_time": graph_time(stamp),
            "from": dict(author),
            "to": {"data": [dict(other)]},
            "platform": platform,
            "conversation_id": conversation["id"],
        }
        conversation["messages"].append(message)
        self.messages[mid] = message
        return message

    # -- HTTP ------------------------------------------------------------------------------

    def _handle(self, request: _Handler) -> None:
        parts = urlsplit(request.path)
        path = _VERSION.sub("", unquote(parts.path))
        query = {k: v[-1] for k, v in parse_qs(parts.query, keep_blank_values=True).items()}
        length = int(request.headers.get("Content-Length") or 0)
        body = request.rfile.read(length) if length else b""
        raw_error: bytes | None = None
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
            headers = {"X-App-Usage": json.dumps(self.usage)}
            try:
                forced = next((f for f in self._failures if f["path"] in path), None)
                if forced is not None:
                    self._failures.remove(forced)
                    if forced["raw"]:
                        raw_error = b"<html><body>Bad Gateway</body></html>"
                        status = forced["status"] or 500
                        payload = None
                    else:
                        self._forced(forced, headers)
                else:
                    self._authenticate(request, query)
                    status, payload = self._route(request.command, path, query, body)
            except _Fail as fail:
                status = fail.status
                error = {"message": fail.message, "type": fail.kind, "code": fail.code}
                if fail.subcode is not None:
                    error["error_subcode"] = fail.subcode
                error["fbtrace_id"] = secrets.token_urlsafe(8)
                payload = {"error": error}
        data = raw_error if raw_error is not None else json.dumps(payload).encode("utf-8")
        request.send_response(status)
        content_type = "text/html" if raw_error is not None else "application/json; charset=UTF-8"
        request.send_header("Content-Type", content_type)
        request.send_header("Content-Length", str(len(data)))
        for name, value in headers.items():
            request.send_header(name, value)
        request.end_headers()
        if request.command != "HEAD":
            request.wfile.write(data)

    def _forced(self, forced: JSONDict, headers: dict[str, str]) -> None:
        code = forced["code"]
        if code in RATE_LIMIT_CODES:
            usage = {"type": "pages", "call_count": 100, "total_cputime": 40, "total_time": 60}
            if forced["regain"] is not None:
                usage["estimated_time_to_regain_access"] = forced["regain"]
            headers["X-Business-Use-Case-Usage"] = json.dumps({self.page["id"]: [usage]})
            messages = {
                4: "(#4) Application request limit reached",
                17: "(#17) User request limit reached",
                32: "(#32) Page request limit reached",
                613: "(#613) Calls to this api have exceeded the rate limit.",
            }
            raise _Fail(forced["status"] or 400, messages.get(code, "(#80001) There have been too many calls"), code)
        if code is not None:
            raise _Fail(forced["status"] or 400, f"(#{code}) Simulated error", code, forced["subcode"])
        status = forced["status"] or 500
        raise _Fail(status, "An unexpected error has occurred. Please retry your request later.", 2)

    def _authenticate(self, request: _Handler, query: dict[str, str]) -> None:
        token = query.get("access_token", "")
        header = request.headers.get("Authorization") or ""
        scheme, _, value = header.partition(" ")
        if scheme.lower() in ("bearer", "oauth"):
            token = value.strip()
        if not token:
            raise _Fail(400, "An active access token must be used to query information about the current user.", 2500)
        if token != self.access_token:
            raise _Fail(400, "Invalid OAuth access token - Cannot parse access token", 190)
        if self.revoked:
            raise _Fail(400, "Error validating access token: The user has not authorized application.", 190, 458)
        if self.app_secret:
            proof = query.get("appsecret_proof")
            if not proof:
                raise _Fail(400, "API calls from the server require an appsecret_proof argument", 100)
            expected = hmac.new(self.app_secret.encode(), token.encode(), hashlib.sha256).hexdigest()
            if not hmac.compare_digest(proof, expected):
                raise _Fail(400, "Invalid appsecret_proof provided in the API argument", 100)

    def _route(self, method: str, path: str, query: dict[str, str], body: bytes) -> tuple[int, Any]:
        parts = [p for p in path.split("/") if p]
        if method == "GET" and len(parts) == 1:
            return 200, self._node(parts[0], query)
        if len(parts) != 2:
            raise _Fail(400, "Unknown path components", 2500)
        object_id, edge = parts
        if method == "GET":
            if edge == "feed" and object_id == self.page["id"]:
                items = sorted(self.posts.values(), key=lambda p: (_unix(p["created_time"]), p["id"]), reverse=True)
                return 200, self._page(items, query, "created_time", path)
            if edge == "comments":
                return 200, self._list_comments(object_id, query, path)
            if edge == "replies" and object_id in self.ig_comments:
                replies = [self._ig_public(self.ig_comments[c]) for c in self.ig_comments[object_id]["replies"]]
                return 200, self._page(replies, query, "timestamp", path)
            if edge == "conversations" and object_id == self.page["id"]:
                return 200, self._list_conversations(query, path)
            if edge == "messages":
                conversation = next((c for c in self.conversations.values() if c["id"] == object_id), None)
                if conversation is None:
                    raise _Fail(400, "Unsupported get request.", 100, 33)
                items = [self._message_public(m) for m in reversed(conversation["messages"])]
                return 200, self._page(items, query, None, path)
        if method == "POST":
            data = _body(body)
            if edge == "comments":
                return 200, self._post_comment(object_id, data)
            if edge == "replies" and object_id in self.ig_comments:
                return 200, self._post_ig_reply(object_id, data)
            if edge == "messages" and object_id in (self.page["id"], self.ig_account["id"]):
                return 200, self._send(data)
        raise _Fail(400, f"Unsupported {method.lower()} request.", 100, 33)

    def _node(self, object_id: str, query: dict[str, str]) -> JSONDict:
        if object_id in self.posts:
            return copy.deepcopy(self.posts[object_id])
        if object_id in self.comments:
            comment = self._comment_public(self.comments[object_id])
            age = time.time() - _unix(comment["created_time"])
            comment["can_reply_privately"] = object_id not in self.private_replied and age <= PRIVATE_REPLY_WINDOW
            return comment
        if object_id in self.ig_comments:
            return self._ig_public(self.ig_comments[object_id])
        if object_id in self.messages:
            return self._message_public(self.messages[object_id])
        if object_id == self.page["id"]:
            return dict(self.page)
        raise _Fail(400, f"Unsupported get request. Object with ID '{object_id}' does not exist.", 100, 33)

    def _list_comments(self, object_id: str, query: dict[str, str], path: str) -> JSONDict:
        if object_id not in self.posts and object_id not in self.comments:
            raise _Fail(400, f"Unsupported get request. Object with ID '{object_id}' does not exist.", 100, 33)
        if query.get("filter") == "stream" and object_id in self.posts:
            items = [c for c in self.comments.values() if c["post_id"] == object_id]
        else:
            items = [c for c in self.comments.values() if c["parent_id"] == object_id]
        items.sort(key=lambda c: (_unix(c["created_time"]), _id_key(c["id"])))
        if query.get("order") == "reverse_chronological":
            items.reverse()
        return self._page([self._comment_public(c) for c in items], query, "created_time", path)

    def _list_conversations(self, query: dict[str, str], path: str) -> JSONDict:
        platform = query.get("platform") or "messenger"
        if platform not in ("messenger", "instagram"):
            raise _Fail(400, "(#100) Param platform must be one of {MESSENGER, INSTAGRAM}", 100)
        user_id = query.get("user_id")
        conversations = [
            c
            for c in self.conversations.values()
            if c["platform"] == platform and c["messages"] and (not user_id or c["user"]["id"] == user_id)
        ]
        conversations.sort(key=lambda c: (_unix(c["messages"][-1]["created_time"]), c["id"]), reverse=True)
        match = _NESTED_LIMIT.search(query.get("fields") or "")
        nested = int(match.group(1)) if match else 25
        items = []
        for conversation in conversations:
            messages = [self._message_public(m) for m in reversed(conversation["messages"])]
            item: JSONDict = {"id": conversation["id"], "updated_time": messages[0]["created_time"]}
            if "messages" in (query.get("fields") or ""):
                item["messages"] = self._page(messages, {"limit": str(nested)}, None, f"/{conversation['id']}/messages")
            items.append(item)
        return self._page(items, query, None, path)

    def _page(self, items: list[JSONDict], query: dict[str, str], time_key: str | None, path: str) -> JSONDict:
        """A page of `items` (already in order) after `after`, with Graph's cursor-based paging."""
        if time_key and query.get("since"):
            since = int(query["since"])
            items = [i for i in items if _unix(i[time_key]) >= since]
        if time_key and query.get("until"):
            until = int(query["until"])
            items = [i for i in items if _unix(i[time_key]) <= until]
        try:
            limit = min(max(int(query.get("limit") or 25), 1), 100)
        except ValueError:
            limit = 25
        start = 0
        if query.get("after"):
            try:
                last_id = base64.urlsafe_b64decode(query["after"].encode()).decode()
            except (ValueError, UnicodeDecodeError) as exc:
                raise _Fail(400, "Invalid cursor", 100) from exc
            ids = [i["id"] for i in items]
            # A cursor names the last item read, so items added elsewhere never shift a page.
            start = ids.index(last_id) + 1 if last_id in ids else len(items)
        page = items[start : start + limit]
        result: JSONDict = {"data": copy.deepcopy(page)}
        if page:
            cursors = {
                "before": base64.urlsafe_b64encode(page[0]["id"].encode()).decode(),
                "after": base64.urlsafe_b64encode(page[-1]["id"].encode()).decode(),
            }
            result["paging"] = {"cursors": cursors}
            if start + limit < len(items):
                params = {k: v for k, v in query.items() if k not in ("access_token", "appsecret_proof")}
                params["after"] = cursors["after"]
                result["paging"]["next"] = f"{self.url}/v25.0{path}?{urlencode(params)}"
        return result

    def _post_comment(self, object_id: str, data: JSONDict) -> JSONDict:
        text = data.get("message")
        if not isinstance(text, str) or not text.strip():
            raise _Fail(400, "(#100) The parameter message is required", 100)
        try:
            comment = self._new_comment(object_id, text, dict(self.page), None)
        except KeyError as exc:
            raise _Fail(400, f"Object with ID '{object_id}' does not exist", 100, 33) from exc
        self.posted.append({"kind": "comment", **comment})
        return {"id": comment["id"]}

    def _post_ig_reply(self, object_id: str, data: JSONDict) -> JSONDict:
        text = data.get("message")
        if not isinstance(text, str) or not text.strip():
            raise _Fail(400, "(#100) The parameter message is required", 100)
        media = self.ig_comments[object_id]["media"]["id"]
        reply_id = str(17_950_000_000_000_000 + next(self._ids))
        reply = {
            "id": reply_id,
            "text": text,
            "timestamp": graph_time(self._stamp(None)),
            "from": dict(self.ig_account),
            "username": self.ig_account["username"],
            "media": {"id": media, "media_product_type": "FEED"},
            "parent_id": object_id,
            "replies": [],
        }
        self.ig_comments[reply_id] = reply
        self.ig_comments[object_id]["replies"].append(reply_id)
        self.posted.append({"kind": "ig_reply", **self._ig_public(reply)})
        return {"id": reply_id}

    def _send(self, data: JSONDict) -> JSONDict:
        recipient = data.get("recipient")
        message = data.get("message")
        if isinstance(recipient, str):
            recipient = _json_or_none(recipient)
        if isinstance(message, str):
            message = _json_or_none(message)
        if not isinstance(recipient, dict) or not isinstance(message, dict) or not message.get("text"):
            raise _Fail(400, "(#100) The parameter recipient and message are required", 100)
        now = time.time()
        target = recipient.get("comment_id") or recipient.get("post_id")
        if target:
            comment = self.comments.get(target) or self.ig_comments.get(target) or self.posts.get(target)
            if comment is None:
                raise _Fail(400, "(#100) No matching user found", 100, 2018001)
            if target in self.private_replied:
                raise _Fail(400, "(#10900) Activity already replied to", 10900)
            created = comment.get("created_time") or comment.get("timestamp")
            if now - _unix(created) > PRIVATE_REPLY_WINDOW:
                raise _Fail(400, "(#10903) This activity can't be replied to", 10903)
            platform = "instagram" if target in self.ig_comments else "messenger"
            customer = dict(comment["from"])
            self.private_replied.add(target)
        else:
            platform, customer = self._conversation_for(str(recipient.get("id") or ""))
            last = max(
                (
                    _unix(m["created_time"])
                    for m in self._conversation(platform, customer)["messages"]
                    if m["from"]["id"] == customer["id"]
                ),
                default=None,
            )
            kind = data.get("messaging_type")
            if kind not in ("RESPONSE", "UPDATE", "MESSAGE_TAG"):
                raise _Fail(400, "(#100) Param messaging_type must be one of {RESPONSE, UPDATE, MESSAGE_TAG}", 100)
            window = (
                HUMAN_AGENT_WINDOW if kind == "MESSAGE_TAG" and data.get("tag") == "HUMAN_AGENT" else STANDARD_WINDOW
            )
            if last is None or now - last > window:
                raise _Fail(
                    400, "(#10) This message is sent outside of allowed window.", 10, 2018278, kind="OAuthException"
                )
        brand = self.page if platform == "messenger" else self.ig_account
        sent = self._new_message(platform, dict(brand), str(message["text"]), self._stamp(None), customer=customer)
        self.posted.append({"kind": "message", "recipient": recipient, **self._message_public(sent)})
        return {"recipient_id": customer["id"], "message_id": sent["id"]}

    def _conversation_for(self, user_id: str) -> tuple[str, JSONDict]:
        for (platform, uid), conversation in self.conversations.items():
            if uid == user_id:
                return platform, conversation["user"]
        raise _Fail(400, "(#100) No matching user found", 100, 2018001)

    def _conversation(self, platform: str, customer: JSONDict) -> JSONDict:
        return self.conversations[(platform, customer["id"])]

    @staticmethod
    def _comment_public(comment: JSONDict) -> JSONDict:
        public = {k: v for k, v in comment.items() if k not in ("post_id", "parent_id")}
        if comment["parent_id"] != comment["post_id"]:
            public["parent"] = {"id": comment["parent_id"]}
        return copy.deepcopy(public)

    @staticmethod
    def _ig_public(comment: JSONDict) -> JSONDict:
        return copy.deepcopy({k: v for k, v in comment.items() if k != "replies"})

    @staticmethod
    def _message_public(message: JSONDict) -> JSONDict:
        return copy.deepcopy({k: v for k, v in message.items() if k not in ("platform", "conversation_id")})


class _Handler(BaseHTTPRequestHandler):
    server: ThreadingHTTPServer

    def _dispatch(self) -> None:
        self.server.owner._handle(self)  # type: ignore[attr-defined]

    do_GET = do_POST = do_DELETE = do_HEAD = _dispatch

    def log_message(self, format: str, *args: Any) -> None:
        pass


def _unix(value: str) -> int:
    return int(dt.datetime.fromisoformat(value).timestamp())


def _id_key(value: str) -> tuple[int, str]:
    return (len(value), value)


def _body(body: bytes) -> JSONDict:
    if not body:
        return {}
    text = body.decode("utf-8", "replace")
    data = _json_or_none(text)
    if isinstance(data, dict):
        return data
    return {k: v[-1] for k, v in parse_qs(text, keep_blank_values=True).items()}


def _json_or_none(text: str) -> Any:
    try:
        return json.loads(text)
    except ValueError:
        return None


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="Run a fake Meta Graph API for demos and browser tests.")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8766)
    parser.add_argument("--token", default="demo-page-token")
    parser.add_argument("--seed", action="store_true", help="add a post, comments and a message")
    args = parser.parse_args(argv)
    graph = FakeGraph(access_token=args.token, host=args.host, port=args.port).start()
    if args.seed:
        post = graph.add_post("Our new store opens on Saturday!", author=graph.page)
        graph.add_comment(post["id"], "Will you have parking?", author=graph.user("Alice"))
        graph.add_message("My order #1234 hasn't arrived", author=graph.user("Bob"))
    print(f"fake Graph API on {graph.url} (token {args.token!r}, page {graph.page['id']}); Ctrl-C stops it", flush=True)
    try:
        threading.Event().wait()
    except KeyboardInterrupt:
        pass
    finally:
        graph.stop()


if __name__ == "__main__":
    main()
