"""A small local Bluesky (PDS + AppView + chat service + Jetstream) for tests and the demo.

It speaks the XRPC wire format of the lexicons (https://docs.bsky.app, lexicons in
bluesky-social/atproto) for the calls the Bluesky connector makes, holds everything in memory
and forgets it on `stop()`:

    POST /xrpc/com.atproto.server.createSession    {identifier, password} -> {accessJwt, refreshJwt, handle, did, …}
    POST /xrpc/com.atproto.server.refreshSession   Bearer <refreshJwt>
    GET  /xrpc/com.atproto.server.getSession
    GET  /xrpc/app.bsky.actor.getProfile           actor -> profileViewDetailed (followersCount, …)
    GET  /xrpc/app.bsky.actor.getProfiles          actors[] (≤25) -> {profiles}
    GET  /xrpc/app.bsky.notification.listNotifications  limit, cursor, reasons[] -> {notifications, cursor}
    GET  /xrpc/app.bsky.feed.searchPosts           q, sort, since, until, author, mentions, lang, limit, cursor
    GET  /xrpc/app.bsky.feed.getPosts              uris[] (≤25) -> {posts: [postView]}
    GET  /xrpc/com.atproto.repo.getRecord          repo, collection, rkey -> {uri, cid, value}
    POST /xrpc/com.atproto.repo.createRecord       {repo, collection, rkey?, record}; a second write to
                                                   an existing rkey fails (the reference PDS fails inside
                                                   its repo tree: 500 InternalServerError; see
                                                   `duplicate_status`)
    GET  /xrpc/chat.bsky.convo.getConvoForMembers  members[]            ┐ only with the header
    GET  /xrpc/chat.bsky.convo.getConvo            convoId              │ atproto-proxy:
    GET  /xrpc/chat.bsky.convo.getMessages         convoId, limit, cursor│ did:web:api.bsky.chat#bsky_chat
    POST /xrpc/chat.bsky.convo.sendMessage         {convoId, message}   │ (else 501, as a PDS
    GET  /xrpc/chat.bsky.convo.getLog              cursor               ┘  that cannot route it)

Errors are XRPC's `{"error": "<Name>", "message": "…"}`. Every response carries
ratelimit-limit/-remaining/-reset (epoch seconds)/-policy; a 429 is RateLimitExceeded.

A Jetstream v1 websocket runs beside it (`jetstream_url`, path /subscribe): it honours
wantedCollections (exact or `prefix.*`), wantedDids and `cursor` (replays every stored event
with time_us >= cursor, then streams live). Every post added, and every record created through
createRecord, becomes a commit event.

In a test:

    with FakeBluesky() as server:
        post = server.add_post("@brand.test my order is late", handle="alice.test")
        reply = server.add_post("still waiting", handle="alice.test", reply_to=post["uri"])
        server.add_chat_message("my account number is 1234", handle="bob.test")
        server.disconnect_jetstream()              # every websocket client is cut off
        server.fail_next(status=429, reset_in=30)  # the next XRPC request is rate limited
        server.expire_tokens(); server.revoke_session(); server.take_down()
        server.posted / server.sent_messages       # what the connector wrote

For the demo: `python -m hubbub.testing.fake_bluesky --port 8766 --seed`.
"""

from __future__ import annotations

import argparse
import base64
import copy
import datetime as dt
import hashlib
import json
import re
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

from websockets.exceptions import ConnectionClosed
from websockets.sync.server import ServerConnection, serve

from hubbub.testing.server import LocalHTTPServer

JSONDict = dict[str, Any]

POST = "app.bsky.feed.post"
CHAT_PROXY = "did:web:api.bsky.chat#bsky_chat"
MAX_GRAPHEMES = 300
MAX_TEXT_BYTES = 3000
INVALID_POST = "Invalid app.bsky.feed.post record"
_TID_ALPHABET = "234567abcdefghijklmnopqrstuvwxyz"
_TID_RE = re.compile(r"^[234567abcdefghij][234567abcdefghijklmnopqrstuvwxyz]{12}$")
_MENTION_RE = re.compile(r"(?<![\w@])@([a-zA-Z0-9][a-zA-Z0-9.-]*[a-zA-Z0-9])")


class XrpcError(Exception):
    def __init__(self, status: int, error: str, message: str, headers: dict[str, str] | None = None):
        super().__init__(message)
        self.status = status
        self.error = error
        self.message = message
        self.headers = headers or {}


def tid(micros: int, clock_id: int = 0) -> str:
    """A TID: 53 bits of microseconds and 10 bits of clock id, base32-sortable, 13 characters."""
    value = ((micros & ((1 << 53) - 1)) << 10) | (clock_id & 0x3FF)
    return "".join(_TID_ALPHABET[(value >> (5 * i)) & 31] for i in reversed(range(13)))


def _iso(micros: int) -> str:
    moment = dt.datetime.fromtimestamp(micros / 1_000_000, dt.UTC)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"


def _parse_time(value: str) -> dt.datetime | None:
    try:
        moment = dt.datetime.fromisoformat(value.strip())
    except ValueError:
        try:
            moment = dt.datetime.fromisoformat(value.strip() + "T00:00:00")
        except ValueError:
            return None
    return moment if moment.tzinfo else moment.replace(tzinfo=dt.UTC)


def _cid(data: Any) -> str:
    digest = hashlib.sha256(json.dumps(data, sort_keys=True).encode()).digest()
    return "bafyrei" + base64.b32encode(digest).decode().rstrip("=").lower()


def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).decode().rstrip("=")


def _jwt(payload: JSONDict) -> str:
    header = _b64url(json.dumps({"typ": "at+jwt", "alg": "ES256K"}).encode())
    body = _b64url(json.dumps(payload).encode())
    signature = _b64url(hashlib.sha256(f"{header}.{body}".encode()).digest())
    return f"{header}.{body}.{signature}"


class FakeBluesky(LocalHTTPServer):
    """An in-memory Bluesky served over HTTP and a Jetstream websocket on 127.0.0.1."""

    def __init__(
        self,
        *,
        handle: str = "brand.test",
        password: str = "app-pass-word",  # noqa: S107 - a fake server's fake password
        host: str = "127.0.0.1",
        port: int = 0,
        jetstream_port: int = 0,
        rate_limit: int = 3000,
        rate_window: float = 300.0,
        duplicate_status: int = 500,
    ):
        self.password = password
        self.rate_limit = rate_limit
        self.rate_window = rate_window
        self.rate_remaining = rate_limit
        self.rate_reset = time.time() + rate_window
        # What a createRecord on an existing rkey answers (the reference PDS: 500 InternalServerError).
        self.duplicate_status = duplicate_status
        self.revoked = False
        self.taken_down = False
        # False imitates an app password created without direct-message access.
        self.chat_allowed = True
        self.accounts: dict[str, JSONDict] = {}  # did -> profileViewDetailed
        self.records: dict[str, JSONDict] = {}  # at-uri -> {"uri", "cid", "value", "did", "rkey", "indexedAt"}
        self.notifications: list[JSONDict] = []  # the brand's, oldest first
        self.convos: dict[str, JSONDict] = {}
        self.chat_log: list[JSONDict] = []
        self.events: list[JSONDict] = []  # Jetstream events, time_us ascending
        self.posted: list[JSONDict] = []  # records created through createRecord
        self.sent_messages: list[JSONDict] = []  # messages sent through sendMessage
        self.requests: list[JSONDict] = []
        self.access_tokens: set[str] = set()
        self.refresh_tokens: set[str] = set()
        self.sessions_created = 0
        self._failures: list[JSONDict] = []
        self._clock = 0
        self._lock = threading.RLock()
        super().__init__(_Handler, host, port)
        self.jetstream = _FakeJetstream(self, host, jetstream_port)
        self.brand = self.account(handle, display_name="Brand Support", followers_count=1200)

    # -- lifecycle --------------------------------------------------------------------------

    def start(self) -> FakeBluesky:
        super().start()
        self.jetstream.start()
        return self

    def stop(self) -> None:
        self.jetstream.stop()
        super().stop()

    @property
    def jetstream_url(self) -> str:
        return f"ws://{self.host}:{self.jetstream.port}/subscribe"

    # -- test helpers -----------------------------------------------------------------------

    def account(
        self,
        handle: str,
        *,
        display_name: str | None = None,
        followers_count: int | None = None,
        accepts_chat: bool = True,
    ) -> JSONDict:
        """The profile (profileViewDetailed) of `handle`, created on first use."""
        handle = handle.lstrip("@").lower()
        with self._lock:
            did = self.did_for(handle)
            profile = self.accounts.get(did)
            if profile is None:
                profile = {
                    "did": did,
                    "handle": handle,
                    "displayName": display_name if display_name is not None else handle.split(".")[0].title(),
                    "description": "",
                    "avatar": f"https://cdn.bsky.app/img/avatar/plain/{did}/bafkrei@jpeg",
                    "followersCount": followers_count or 0,
                    "followsCount": 10,
                    "postsCount": 0,
                    "indexedAt": "2024-01-01T00:00:00.000Z",
                    "createdAt": "2023-06-01T00:00:00.000Z",
                    "labels": [],
                    "associated": {"chat": {"allowIncoming": "all" if accepts_chat else "none"}},
                }
                self.accounts[did] = profile
            else:
                if display_name is not None:
                    profile["displayName"] = display_name
                if followers_count is not None:
                    profile["followersCount"] = followers_count
            return profile

    @staticmethod
    def did_for(handle: str) -> str:
        digest = hashlib.sha256(handle.lower().encode()).digest()
        return "did:plc:" + base64.b32encode(digest).decode().lower()[:24]

    def add_post(
        self,
        text: str,
        *,
        handle: str = "customer.test",
        reply_to: str | None = None,
        quote: str | None = None,
        langs: list[str] | None = None,
        created_at: dt.datetime | None = None,
        facets: list[JSONDict] | None = None,
        followers_count: int | None = None,
        display_name: str | None = None,
    ) -> JSONDict:
        """Store a post by `handle`, as if its PDS had written it; returns the postView.

        "@handle" mentions of known accounts get mention facets (pass `facets` for exact ones);
        a post that mentions, replies in a thread of, or quotes the brand notifies the brand.
        """
        with self._lock:
            author = self.account(handle, followers_count=followers_count, display_name=display_name)
            micros = self._tick()
            record: JSONDict = {
                "$type": POST,
                "text": text,
                "createdAt": _iso(int(created_at.timestamp() * 1_000_000)) if created_at else _iso(micros),
                "langs": ["en"] if langs is None else langs,
            }
            record["facets"] = facets if facets is not None else self._mention_facets(text)
            if not record["facets"]:
                del record["facets"]
            if reply_to:
                parent = self.records[reply_to]
                root = (parent["value"].get("reply") or {}).get("root") or {"uri": parent["uri"], "cid": parent["cid"]}
                record["reply"] = {"root": dict(root), "parent": {"uri": parent["uri"], "cid": parent["cid"]}}
            if quote:
                quoted = self.records[quote]
                record["embed"] = {
                    "$type": "app.bsky.embed.record",
                    "record": {"uri": quoted["uri"], "cid": quoted["cid"]},
                }
            stored = self._store(author["did"], tid(micros), record, micros)
            return self.post_view(stored["uri"])

    def add_raw_event(self, event: JSONDict) -> None:
        """Put an exact (possibly hostile) event on the Jetstream; time_us is set if missing."""
        with self._lock:
            event = copy.deepcopy(event)
            event.setdefault("time_us", self._tick())
            self.events.append(event)
        self.jetstream.notify()

    def add_chat_message(self, text: str, *, handle: str = "customer.test") -> JSONDict:
        """A direct message from `handle` to the brand; returns the messageView."""
        with self._lock:
            sender = self.account(handle)
            convo = self._convo_for([self.brand["did"], sender["did"]])
            return self._send(convo, sender["did"], {"text": text})

    def fail_next(
        self, count: int = 1, status: int = 503, *, reset_in: float = 60.0, path: str = "", error: str = ""
    ) -> None:
        """Answer the next `count` XRPC requests (whose NSID starts with `path`) with `status`."""
        with self._lock:
            for _ in range(count):
                self._failures.append({"status": status, "reset_in": reset_in, "path": path, "error": error})

    def expire_tokens(self) -> None:
        """Every issued session token stops working (ExpiredToken); the app password still logs in."""
        with self._lock:
            self.access_tokens.clear()
            self.refresh_tokens.clear()

    def revoke_session(self) -> None:
        """The user revoked the app password: tokens and the password no longer work."""
        with self._lock:
            self.revoked = True
            self.expire_tokens()

    def take_down(self) -> None:
        with self._lock:
            self.taken_down = True

    def disconnect_jetstream(self) -> None:
        """Cut off every Jetstream client (they may reconnect)."""
        self.jetstream.disconnect_all()

    def disconnect_jetstream_after(self, count: int) -> None:
        """Cut off every Jetstream connection after it has sent `count` more events."""
        self.jetstream.disconnect_after = count

    def post_view(self, uri: str) -> JSONDict:
        stored = self.records[uri]
        author = self.accounts[stored["did"]]
        replies = [
            r for r in self.records.values() if (r["value"].get("reply") or {}).get("parent", {}).get("uri") == uri
        ]
        return {
            "uri": uri,
            "cid": stored["cid"],
            "author": self._basic(author),
            "record": copy.deepcopy(stored["value"]),
            "replyCount": len(replies),
            "repostCount": 0,
            "likeCount": 0,
            "quoteCount": 0,
            "indexedAt": stored["indexedAt"],
            "labels": [],
        }

    def xrpc_requests(self, nsid: str | None = None) -> list[JSONDict]:
        with self._lock:
            return [r for r in self.requests if nsid is None or r["nsid"] == nsid]

    # -- model ------------------------------------------------------------------------------

    def _tick(self) -> int:
        self._clock = max(self._clock + 1000, int(time.time() * 1_000_000))
        return self._clock

    def _mention_facets(self, text: str) -> list[JSONDict]:
        facets = []
        for match in _MENTION_RE.finditer(text):
            did = self.did_for(match.group(1))
            if did not in self.accounts:
                continue
            start = len(text[: match.start()].encode())
            end = start + len(match.group(0).encode())
            facets.append(
                {
                    "$type": "app.bsky.richtext.facet",
                    "index": {"byteStart": start, "byteEnd": end},
                    "features": [{"$type": "app.bsky.richtext.facet#mention", "did": did}],
                }
            )
        return facets

    def _store(self, did: str, rkey: str, record: JSONDict, micros: int) -> JSONDict:
        uri = f"at://{did}/{POST}/{rkey}"
        cid = _cid(record)
        stored = {"uri": uri, "cid": cid, "value": record, "did": did, "rkey": rkey, "indexedAt": _iso(micros)}
        self.records[uri] = stored
        self.accounts[did]["postsCount"] += 1
        self.events.append(
            {
                "did": did,
                "time_us": micros,
                "kind": "commit",
                "commit": {
                    "rev": tid(micros, 1),
                    "operation": "create",
                    "collection": POST,
                    "rkey": rkey,
                    "record": copy.deepcopy(record),
                    "cid": cid,
                },
            }
        )
        self._notify_brand(stored)
        self.jetstream.notify()
        return stored

    def _notify_brand(self, stored: JSONDict) -> None:
        brand = self.brand["did"] if hasattr(self, "brand") else None
        if brand is None or stored["did"] == brand:
            return
        record = stored["value"]
        prefix = f"at://{brand}/"
        reply = record.get("reply") or {}
        parent, root = reply.get("parent", {}).get("uri", ""), reply.get("root", {}).get("uri", "")
        mentioned = any(
            feature.get("did") == brand for facet in record.get("facets", []) for feature in facet.get("features", [])
        )
        quoted = ((record.get("embed") or {}).get("record") or {}).get("uri", "")
        if parent.startswith(prefix) or root.startswith(prefix):
            reason, subject = "reply", parent
        elif mentioned:
            reason, subject = "mention", None
        elif quoted.startswith(prefix):
            reason, subject = "quote", quoted
        else:
            return
        author = self.accounts[stored["did"]]
        notification = {
            "uri": stored["uri"],
            "cid": stored["cid"],
            "author": {**self._basic(author), "description": author["description"], "indexedAt": author["indexedAt"]},
            "reason": reason,
            "record": copy.deepcopy(record),
            "isRead": False,
            "indexedAt": stored["indexedAt"],
            "labels": [],
        }
        if subject:
            notification["reasonSubject"] = subject
        self.notifications.append(notification)

    @staticmethod
    def _basic(profile: JSONDict) -> JSONDict:
        keys = ("did", "handle", "displayName", "avatar", "associated", "labels", "createdAt")
        return {k: copy.deepcopy(profile[k]) for k in keys if k in profile}

    def _convo_for(self, dids: list[str]) -> JSONDict:
        members = sorted(set(dids))
        for convo in self.convos.values():
            if convo["members"] == members:
                return convo
        convo_id = tid(self._tick(), 7)
        convo = {"id": convo_id, "rev": tid(self._clock, 3), "members": members, "messages": []}
        self.convos[convo_id] = convo
        self.chat_log.append({"$type": "chat.bsky.convo.defs#logBeginConvo", "rev": convo["rev"], "convoId": convo_id})
        return convo

    def _send(self, convo: JSONDict, sender: str, message: JSONDict) -> JSONDict:
        micros = self._tick()
        view = {
            "$type": "chat.bsky.convo.defs#messageView",
            "id": tid(micros, 5),
            "rev": tid(micros, 3),
            "text": message["text"],
            "sender": {"did": sender},
            "sentAt": _iso(micros),
        }
        if message.get("facets"):
            view["facets"] = message["facets"]
        convo["messages"].append(view)
        convo["rev"] = view["rev"]
        self.chat_log.append(
            {
                "$type": "chat.bsky.convo.defs#logCreateMessage",
                "rev": view["rev"],
                "convoId": convo["id"],
                "message": copy.deepcopy(view),
            }
        )
        return copy.deepcopy(view)

    def _convo_view(self, convo: JSONDict) -> JSONDict:
        members = []
        for did in convo["members"]:
            profile = self.accounts[did]
            members.append(
                {
                    "did": did,
                    "handle": profile["handle"],
                    "displayName": profile["displayName"],
                    "chatDisabled": False,
                    "labels": [],
                }
            )
        view: JSONDict = {"id": convo["id"], "rev": convo["rev"], "members": members, "muted": False, "unreadCount": 0}
        if convo["messages"]:
            view["lastMessage"] = copy.deepcopy(convo["messages"][-1])
        return view

    # -- HTTP -------------------------------------------------------------------------------

    def _handle(self, request: _Handler) -> None:
        parts = urlsplit(request.path)
        query = parse_qs(parts.query, keep_blank_values=True)
        length = int(request.headers.get("Content-Length") or 0)
        body = request.rfile.read(length) if length else b""
        nsid = parts.path.removeprefix("/xrpc/")
        with self._lock:
            self.requests.append(
                {
                    "method": request.command,
                    "nsid": nsid,
                    "query": query,
                    "headers": {k.lower(): v for k, v in request.headers.items()},
                    "body": body.decode("utf-8", "replace"),
                }
            )
            headers = self._rate_headers()
            try:
                if not parts.path.startswith("/xrpc/"):
                    raise XrpcError(404, "NotFound", "Not Found")
                status, payload = self._xrpc(request, nsid, query, body)
            except XrpcError as exc:
                status, payload = exc.status, {"error": exc.error, "message": exc.message}
                headers.update(exc.headers)
            data = json.dumps(payload).encode("utf-8")
        request.send_response(status)
        request.send_header("Content-Type", "application/json; charset=utf-8")
        request.send_header("Content-Length", str(len(data)))
        for name, value in headers.items():
            request.send_header(name, value)
        request.end_headers()
        if request.command != "HEAD":
            request.wfile.write(data)

    def _rate_headers(self, remaining: int | None = None, reset: float | None = None) -> dict[str, str]:
        return {
            "ratelimit-limit": str(self.rate_limit),
            "ratelimit-remaining": str(max(0, self.rate_remaining if remaining is None else remaining)),
            "ratelimit-reset": str(int(self.rate_reset if reset is None else reset)),
            "ratelimit-policy": f"{self.rate_limit};w={int(self.rate_window)}",
        }

    def _xrpc(self, request: _Handler, nsid: str, query: dict[str, list[str]], body: bytes) -> tuple[int, Any]:
        now = time.time()
        if now >= self.rate_reset:
            self.rate_remaining, self.rate_reset = self.rate_limit, now + self.rate_window
        forced = next((f for f in self._failures if nsid.startswith(f["path"])), None)
        if forced is not None:
            self._failures.remove(forced)
            if forced["status"] == 429:
                reset = now + forced["reset_in"]
                raise XrpcError(429, "RateLimitExceeded", "Rate Limit Exceeded", self._rate_headers(0, reset))
            raise XrpcError(forced["status"], forced["error"] or "InternalServerError", "Simulated failure")
        if self.rate_remaining <= 0:
            raise XrpcError(429, "RateLimitExceeded", "Rate Limit Exceeded", self._rate_headers(0))
        self.rate_remaining -= 1

        method = request.command
        data = self._json_body(body) if method == "POST" else {}
        if nsid == "com.atproto.server.createSession" and method == "POST":
            return 200, self._create_session(data)
        if nsid == "com.atproto.server.refreshSession" and method == "POST":
            return 200, self._refresh_session(request.headers.get("Authorization"))
        self._authenticate(request.headers.get("Authorization"))

        def one(name: str, required: bool = True) -> str:
            values = query.get(name)
            if not values or not values[0]:
                if required:
                    raise XrpcError(400, "InvalidRequest", f'Error: Params must have the property "{name}"')
                return ""
            return values[0]

        if nsid.startswith("chat.bsky."):
            if request.headers.get("atproto-proxy") != CHAT_PROXY:
                raise XrpcError(501, "MethodNotImplemented", "Method Not Implemented")
            if not self.chat_allowed:
                raise XrpcError(400, "InvalidToken", "Bad token scope")
            return self._chat(nsid, method, query, data, one)
        if method == "GET" and nsid == "com.atproto.server.getSession":
            return 200, {"handle": self.brand["handle"], "did": self.brand["did"], "active": True}
        if method == "GET" and nsid == "app.bsky.actor.getProfile":
            return 200, self._profile(one("actor"))
        if method == "GET" and nsid == "app.bsky.actor.getProfiles":
            actors = query.get("actors", [])
            if not actors or len(actors) > 25:
                raise XrpcError(400, "InvalidRequest", "Error: actors must have between 1 and 25 items")
            profiles = []
            for actor in actors:
                try:
                    profiles.append(self._profile(actor))
                except XrpcError:
                    continue
            return 200, {"profiles": profiles}
        if method == "GET" and nsid == "app.bsky.notification.listNotifications":
            return 200, self._list_notifications(query, one)
        if method == "GET" and nsid == "app.bsky.feed.searchPosts":
            return 200, self._search(query, one)
        if method == "GET" and nsid == "app.bsky.feed.getPosts":
            uris = query.get("uris", [])
            if len(uris) > 25:
                raise XrpcError(400, "InvalidRequest", "Error: uris must not have more than 25 elements")
            return 200, {"posts": [self.post_view(u) for u in uris if u in self.records]}
        if method == "GET" and nsid == "com.atproto.repo.getRecord":
            did = self._resolve(one("repo"))
            uri = f"at://{did}/{one('collection')}/{one('rkey')}"
            stored = self.records.get(uri)
            if stored is None:
                raise XrpcError(400, "RecordNotFound", f"Could not locate record: {uri}")
            return 200, {"uri": uri, "cid": stored["cid"], "value": copy.deepcopy(stored["value"])}
        if method == "POST" and nsid == "com.atproto.repo.createRecord":
            return 200, self._create_record(data)
        raise XrpcError(501, "MethodNotImplemented", "Method Not Implemented")

    @staticmethod
    def _json_body(body: bytes) -> JSONDict:
        try:
            data = json.loads(body or b"{}")
        except ValueError as exc:
            raise XrpcError(400, "InvalidRequest", f"Invalid JSON: {exc}") from exc
        if not isinstance(data, dict):
            raise XrpcError(400, "InvalidRequest", "Input must be an object")
        return data

    def _create_session(self, data: JSONDict) -> JSONDict:
        identifier = str(data.get("identifier") or "").lower()
        if identifier not in (self.brand["handle"], self.brand["did"]) or data.get("password") != self.password:
            raise XrpcError(401, "AuthenticationRequired", "Invalid identifier or password")
        if self.revoked:
            raise XrpcError(401, "AuthenticationRequired", "Invalid identifier or password")
        if self.taken_down:
            raise XrpcError(401, "AccountTakedown", "Account has been taken down")
        self.sessions_created += 1
        return self._issue()

    def _issue(self) -> JSONDict:
        now = int(time.time())
        did = self.brand["did"]
        nonce = hashlib.sha256(f"{now}{len(self.access_tokens)}{time.monotonic_ns()}".encode()).hexdigest()[:16]
        access = _jwt({"scope": "com.atproto.appPass", "sub": did, "iat": now, "exp": now + 7200, "aud": "did:web:x"})
        refresh = _jwt({"scope": "com.atproto.refresh", "sub": did, "iat": now, "exp": now + 86400 * 60, "jti": nonce})
        self.access_tokens.add(access)
        self.refresh_tokens.add(refresh)
        return {
            "accessJwt": access,
            "refreshJwt": refresh,
            "handle": self.brand["handle"],
            "did": did,
            "active": True,
        }

    def _refresh_session(self, header: str | None) -> JSONDict:
        token = (header or "").removeprefix("Bearer ").strip()
        if token not in self.refresh_tokens:
            raise XrpcError(400, "ExpiredToken", "Token has been revoked")
        self.refresh_tokens.discard(token)
        return self._issue()

    def _authenticate(self, header: str | None) -> None:
        if not header:
            raise XrpcError(401, "AuthenticationRequired", "Authentication Required")
        token = header.removeprefix("Bearer ").strip()
        if self.taken_down:
            raise XrpcError(400, "AccountTakedown", "Account has been taken down")
        if token not in self.access_tokens:
            if self.revoked:
                raise XrpcError(400, "ExpiredToken", "Token has been revoked")
            raise XrpcError(400, "ExpiredToken", "Token has expired")

    def _resolve(self, actor: str) -> str:
        actor = actor.lstrip("@").lower()
        did = actor if actor.startswith("did:") else self.did_for(actor)
        if did not in self.accounts:
            raise XrpcError(400, "InvalidRequest", "Profile not found")
        return did

    def _profile(self, actor: str) -> JSONDict:
        return copy.deepcopy(self.accounts[self._resolve(actor)])

    @staticmethod
    def _limit(query: dict[str, list[str]], default: int) -> int:
        raw = (query.get("limit") or [str(default)])[0]
        try:
            limit = int(raw)
        except ValueError as exc:
            raise XrpcError(400, "InvalidRequest", "Error: limit must be an integer") from exc
        if not 1 <= limit <= 100:
            raise XrpcError(400, "InvalidRequest", "Error: limit can not be greater than 100")
        return limit

    def _list_notifications(self, query: dict[str, list[str]], one: Any) -> JSONDict:
        limit = self._limit(query, 50)
        reasons = set(query.get("reasons", []))
        items = [(i, n) for i, n in enumerate(self.notifications) if not reasons or n["reason"] in reasons]
        items.reverse()  # newest first
        cursor = one("cursor", required=False)
        if cursor:
            if not cursor.isdigit():
                raise XrpcError(400, "InvalidRequest", "Malformed cursor")
            items = [(i, n) for i, n in items if i < int(cursor)]
        page = items[:limit]
        result: JSONDict = {"notifications": [copy.deepcopy(n) for _, n in page], "priority": False}
        if len(items) > limit:
            result["cursor"] = str(page[-1][0])
        return result

    def _search(self, query: dict[str, list[str]], one: Any) -> JSONDict:
        q = one("q").strip().lower()
        limit = self._limit(query, 25)
        since = _parse_time(one("since", required=False)) if one("since", required=False) else None
        until = _parse_time(one("until", required=False)) if one("until", required=False) else None
        author = one("author", required=False)
        lang = one("lang", required=False)
        terms = q.split()
        hits = []
        for stored in self.records.values():
            text = str(stored["value"].get("text", "")).lower()
            if not all(term in text for term in terms):
                continue
            if author and stored["did"] != self._resolve(author):
                continue
            if lang and lang not in (stored["value"].get("langs") or []):
                continue
            created = _parse_time(str(stored["value"].get("createdAt", ""))) or _parse_time(stored["indexedAt"])
            sort_at = min(created, _parse_time(stored["indexedAt"]))  # type: ignore[type-var]
            if since and sort_at < since or until and sort_at >= until:
                continue
            hits.append((sort_at, stored["uri"]))
        hits.sort(reverse=True)
        cursor = one("cursor", required=False)
        offset = int(cursor) if cursor.isdigit() else 0
        page = hits[offset : offset + limit]
        result: JSONDict = {"posts": [self.post_view(uri) for _, uri in page], "hitsTotal": len(hits)}
        if offset + limit < len(hits):
            result["cursor"] = str(offset + limit)
        return result

    def _create_record(self, data: JSONDict) -> JSONDict:
        repo = str(data.get("repo") or "")
        if self._resolve(repo) != self.brand["did"]:
            raise XrpcError(401, "AuthenticationRequired", "Authentication Required")
        collection = data.get("collection")
        record = data.get("record")
        if collection != POST:
            raise XrpcError(400, "InvalidRequest", f"Lexicon not found: lex:{collection}")
        if not isinstance(record, dict) or record.get("$type") != POST:
            raise XrpcError(400, "InvalidRequest", "Invalid app.bsky.feed.post record: Record/$type must be post")
        text = record.get("text")
        if not isinstance(text, str) or len(text) > MAX_GRAPHEMES or len(text.encode()) > MAX_TEXT_BYTES:
            raise XrpcError(
                400,
                "InvalidRequest",
                f"{INVALID_POST}: Record/text must not be longer than 300 graphemes",
            )
        if not isinstance(record.get("createdAt"), str):
            raise XrpcError(
                400, "InvalidRequest", 'Invalid app.bsky.feed.post record: Record must have the property "createdAt"'
            )
        reply = record.get("reply")
        if reply is not None:
            for part in ("root", "parent"):
                ref = reply.get(part) if isinstance(reply, dict) else None
                if not (isinstance(ref, dict) and isinstance(ref.get("uri"), str) and isinstance(ref.get("cid"), str)):
                    raise XrpcError(
                        400,
                        "InvalidRequest",
                        f'{INVALID_POST}: Record/reply must have the property "{part}"',
                    )
        rkey = data.get("rkey")
        micros = self._tick()
        if rkey is None:
            rkey = tid(micros)
        elif not isinstance(rkey, str) or not _TID_RE.match(rkey):
            raise XrpcError(400, "InvalidRequest", f"Invalid rkey for {POST}: expected a TID")
        uri = f"at://{self.brand['did']}/{POST}/{rkey}"
        if uri in self.records:
            # The reference PDS only finds out inside its repo tree ("There is already a value at key").
            if self.duplicate_status >= 500:
                raise XrpcError(self.duplicate_status, "InternalServerError", "Internal Server Error")
            raise XrpcError(self.duplicate_status, "InvalidRequest", f"Record already exists: {uri}")
        stored = self._store(self.brand["did"], rkey, copy.deepcopy(record), micros)
        self.posted.append(copy.deepcopy(stored))
        return {
            "uri": uri,
            "cid": stored["cid"],
            "commit": {"cid": _cid({"commit": uri}), "rev": tid(micros, 2)},
            "validationStatus": "valid",
        }

    def _chat(self, nsid: str, method: str, query: dict[str, list[str]], data: JSONDict, one: Any) -> tuple[int, Any]:
        brand = self.brand["did"]
        if method == "GET" and nsid == "chat.bsky.convo.getConvoForMembers":
            members = query.get("members", [])
            if not 1 <= len(members) <= 10:
                raise XrpcError(400, "InvalidRequest", "Error: members must have between 1 and 10 items")
            dids = [self._resolve(m) for m in members]
            return 200, {"convo": self._convo_view(self._convo_for([brand, *dids]))}
        if method == "GET" and nsid == "chat.bsky.convo.getConvo":
            convo = self._member_convo(one("convoId"))
            return 200, {"convo": self._convo_view(convo)}
        if method == "GET" and nsid == "chat.bsky.convo.getMessages":
            convo = self._member_convo(one("convoId"))
            limit = self._limit(query, 50)
            messages = list(reversed(convo["messages"]))
            cursor = one("cursor", required=False)
            if cursor:
                messages = [m for m in messages if m["rev"] < cursor]
            page = messages[:limit]
            result: JSONDict = {"messages": copy.deepcopy(page)}
            if len(messages) > limit:
                result["cursor"] = page[-1]["rev"]
            return 200, result
        if method == "POST" and nsid == "chat.bsky.convo.sendMessage":
            convo = self._member_convo(str(data.get("convoId") or ""))
            message = data.get("message")
            if not isinstance(message, dict) or not isinstance(message.get("text"), str) or not message["text"]:
                raise XrpcError(400, "InvalidRequest", 'Input/message must have the property "text"')
            if len(message["text"]) > 1000:
                raise XrpcError(400, "InvalidRequest", "Input/message/text must not be longer than 1000 graphemes")
            for did in convo["members"]:
                if did != brand and self.accounts[did]["associated"]["chat"]["allowIncoming"] == "none":
                    raise XrpcError(400, "InvalidRequest", "recipient has disabled incoming messages")
            view = self._send(convo, brand, message)
            self.sent_messages.append({"convoId": convo["id"], **copy.deepcopy(view)})
            return 200, view
        if method == "GET" and nsid == "chat.bsky.convo.getLog":
            cursor = one("cursor", required=False)
            logs = [entry for entry in self.chat_log if not cursor or entry["rev"] > cursor]
            result = {"logs": copy.deepcopy(logs)}
            latest = max([e["rev"] for e in self.chat_log], default="")
            if latest:
                result["cursor"] = max(latest, cursor or "")
            return 200, result
        raise XrpcError(501, "MethodNotImplemented", "Method Not Implemented")

    def _member_convo(self, convo_id: str) -> JSONDict:
        convo = self.convos.get(convo_id)
        if convo is None or self.brand["did"] not in convo["members"]:
            raise XrpcError(400, "InvalidRequest", "Convo not found")
        return convo


class _FakeJetstream:
    """Jetstream v1 over a websocket: `/subscribe?wantedCollections=…&wantedDids=…&cursor=…`."""

    def __init__(self, owner: FakeBluesky, host: str, port: int):
        self.owner = owner
        self._server = serve(self._serve, host, port, compression=None, ping_interval=None)
        self.port = self._server.socket.getsockname()[1]
        self._changed = threading.Condition()
        self._connections: set[ServerConnection] = set()
        self._thread: threading.Thread | None = None
        self._stopping = False
        self.disconnect_after: int | None = None
        # The query of every connection made, in order: {"wantedCollections": [...], "cursor": [...], ...}.
        self.connects: list[dict[str, list[str]]] = []

    def start(self) -> None:
        if self._thread is None:
            self._thread = threading.Thread(target=self._server.serve_forever, name="FakeJetstream", daemon=True)
            self._thread.start()

    def stop(self) -> None:
        self._stopping = True
        self.notify()
        self._server.shutdown()
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None

    def notify(self) -> None:
        with self._changed:
            self._changed.notify_all()

    def disconnect_all(self) -> None:
        with self._changed:
            connections = list(self._connections)
        for connection in connections:
            connection.close(code=1011, reason="going away for a test")
        self.notify()

    def _serve(self, ws: ServerConnection) -> None:
        query = parse_qs(urlsplit(ws.request.path).query) if ws.request else {}
        self.connects.append(query)
        collections = query.get("wantedCollections", [])
        dids = set(query.get("wantedDids", []))
        cursor_raw = (query.get("cursor") or [""])[0]
        with self.owner._lock:
            events = self.owner.events
            if cursor_raw.isdigit():
                cursor = int(cursor_raw)
                position = next((i for i, e in enumerate(events) if e.get("time_us", 0) >= cursor), len(events))
            else:
                position = len(events)
        with self._changed:
            self._connections.add(ws)
        try:
            while not self._stopping:
                with self.owner._lock:
                    batch = self.owner.events[position:]
                    position += len(batch)
                for event in batch:
                    if not self._wanted(event, collections, dids):
                        continue
                    if self.disconnect_after is not None:
                        if self.disconnect_after <= 0:
                            self.disconnect_after = None
                            ws.close(code=1011, reason="going away for a test")
                            return
                        self.disconnect_after -= 1
                    ws.send(json.dumps(event))
                with self._changed:
                    if position >= len(self.owner.events) and not self._stopping:
                        self._changed.wait(0.2)
                if ws.close_code is not None:
                    return
        except ConnectionClosed:
            return
        finally:
            with self._changed:
                self._connections.discard(ws)

    @staticmethod
    def _wanted(event: JSONDict, collections: list[str], dids: set[str]) -> bool:
        if dids and event.get("did") not in dids:
            return False
        if event.get("kind") != "commit" or not collections:
            return True
        collection = str((event.get("commit") or {}).get("collection", ""))
        return any(
            collection == wanted or (wanted.endswith(".*") and collection.startswith(wanted[:-1]))
            for wanted in collections
        )


class _Handler(BaseHTTPRequestHandler):
    server: ThreadingHTTPServer

    def _dispatch(self) -> None:
        self.server.owner._handle(self)  # type: ignore[attr-defined]

    do_GET = do_POST = do_HEAD = _dispatch

    def log_message(self, format: str, *args: Any) -> None:
        pass


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="Run a fake Bluesky (XRPC + Jetstream) for demos.")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8766)
    parser.add_argument("--jetstream-port", type=int, default=8767)
    parser.add_argument("--handle", default="brand.test")
    parser.add_argument("--password", default="app-pass-word")
    parser.add_argument("--seed", action="store_true", help="add a few example customer posts")
    args = parser.parse_args(argv)
    server = FakeBluesky(
        handle=args.handle, password=args.password, host=args.host, port=args.port, jetstream_port=args.jetstream_port
    )
    server.start()
    if args.seed:
        server.add_post(f"@{args.handle} my order #1234 still hasn't arrived", handle="alice.test", followers_count=85)
        server.add_chat_message("how do I reset my password?", handle="bob.test")
    print(f"fake Bluesky on {server.url}, Jetstream on {server.jetstream_url}; Ctrl-C stops it", flush=True)
    try:
        threading.Event().wait()
    except KeyboardInterrupt:
        pass
    finally:
        server.stop()


if __name__ == "__main__":
    main()
