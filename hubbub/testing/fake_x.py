"""A small local X (Twitter) API v2 server for tests and the demo.

It speaks the v2 wire format (docs.x.com/x-api) for the calls the X connector and the
filtered-stream consumer make, holds everything in memory and forgets it on `stop()`:

    GET  /2/users/me                                   user context
    GET  /2/users/by/username/:username
    GET  /2/users/:id/mentions                         since_id, until_id, max_results 5-100, pagination_token
    GET  /2/users/:id/tweets                           the same
    GET  /2/tweets/:id
    GET  /2/tweets/search/recent                       query, since_id, until_id, max_results 10-100, next_token
    POST /2/tweets                                     user context; {"text", "reply": {"in_reply_to_tweet_id"}}
    GET  /2/dm_events                                  user context; event_types, max_results 1-100, pagination_token
    GET  /2/dm_conversations/with/:participant_id/dm_events
    POST /2/dm_conversations/with/:participant_id/messages   user context; {"text"}
    GET  /2/tweets/search/stream/rules                 app-only bearer
    POST /2/tweets/search/stream/rules                 {"add": [{"value", "tag"}]} or {"delete": {"ids": [...]}}
    GET  /2/tweets/search/stream                       app-only bearer; chunked newline-delimited JSON,
                                                       "\\r\\n" keep-alives, one connection at a time

Like X, objects carry only the default fields (tweets: id, text, edit_history_tweet_ids; users: id,
name, username; DM events: id, event_type, text) plus those asked for with tweet.fields, user.fields
and dm_event.fields, and `expansions` fill `includes`. Lists answer {"data", "includes", "meta"}
with result_count, newest_id, oldest_id and next_token; errors are problem objects
({"title", "detail", "type", "status"}). Every response carries x-rate-limit-limit, -remaining and
-reset (epoch seconds) for its endpoint, and 429 once an endpoint's budget is spent.

Authentication: `Authorization: Bearer <bearer_token>` is app-only; `Bearer <user_token>` is an
OAuth 2.0 user token; OAuth 1.0a headers are checked against consumer_key/access_token and their
HMAC-SHA1 signature is verified. DM and posting endpoints refuse app-only auth, the stream endpoints
refuse user auth, as X does. After revoke() everything answers 401.

    with FakeX() as server:
        tweet = server.add_mention("my order is late", username="alice")
        server.add_dm("my address is ...", username="bob")
        server.fail_next(status=429, reset_in=30)            # or 503, or 401
        server.lose_next_response("/2/tweets")               # do the POST, then answer 503
        server.add_tweet("the brand app is broken", username="carol")  # matching rules go to the stream
        server.disconnect_stream(partial=True)               # cut the stream mid-line
        server.redeliver_on_reconnect(2)                     # resend the last two after a reconnect
        server.send_raw_to_stream(b"x" * 2_000_000)          # anything, as it is

`posted`, `sent_dms`, `requests` and `api_requests(method, path)` show what happened.

For the demo, run it on its own: python -m hubbub.testing.fake_x --port 8766 --seed
"""

from __future__ import annotations

import argparse
import base64
import copy
import datetime as dt
import json
import re
import socket
import threading
import time
from collections import deque
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

from oauthlib.common import Request as OAuthRequest
from oauthlib.oauth1.rfc5849 import signature as oauth_signature

from hubbub.testing.server import LocalHTTPServer

JSONDict = dict[str, Any]

# Snowflake IDs: milliseconds since this epoch, shifted left 22 bits, plus a sequence.
TWITTER_EPOCH_MS = 1288834974657
MAX_TWEET_LENGTH = 280
MAX_DM_LENGTH = 10000
DEFAULT_TWEET_FIELDS = ("id", "text", "edit_history_tweet_ids")
DEFAULT_USER_FIELDS = ("id", "name", "username")
DEFAULT_DM_FIELDS = ("id", "event_type", "text")
PROBLEM = "https://api.twitter.com/2/problems/"
_MENTION_RE = re.compile(r"(?<![\w@])@(\w{1,15})")


class _Problem(Exception):
    def __init__(self, status: int, title: str, detail: str, type_: str = "about:blank", **extra: Any):
        super().__init__(detail)
        self.status = status
        self.body: JSONDict = {"title": title, "detail": detail, "type": type_, "status": status, **extra}


def _now_iso(moment: dt.datetime | None = None) -> str:
    moment = (moment or dt.datetime.now(dt.UTC)).astimezone(dt.UTC)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"


def _key(value: str) -> tuple[int, str]:
    return (len(value), value)


def _token(until_id: str) -> str:
    # Opaque like X's pagination tokens; it names the last id of the page.
    return base64.b32encode(f"p:{until_id}".encode()).decode().rstrip("=").lower()


def _untoken(token: str) -> str:
    try:
        raw = base64.b32decode(token.upper() + "=" * (-len(token) % 8)).decode()
    except ValueError as exc:
        raise _Problem(400, "Invalid Request", "The `pagination_token` query parameter value is not valid") from exc
    if not raw.startswith("p:"):
        raise _Problem(400, "Invalid Request", "The `pagination_token` query parameter value is not valid")
    return raw[2:]


# -- a small matcher for search queries and stream rules ------------------------------------------

_QUERY_TOKEN = re.compile(r'\s*(\(|\)|-?"[^"]*"|-?[^\s()"]+)')


class Query:
    """The subset of X's rule/query language the fake understands.

    Terms are ANDed; `OR` between terms; parentheses group; a leading `-` negates; "quoted phrases";
    `from:user`, `to:user`, `@user`, `#tag`, `lang:xx`, `is:reply`, `is:retweet`, `is:quote`.
    Words match whole tokens, case-insensitively.
    """

    def __init__(self, text: str):
        self.text = text
        self.tokens = [t for t in _QUERY_TOKEN.findall(text) if t.strip()]
        self.pos = 0
        if not self.tokens:
            raise ValueError("empty query")
        self.tree = self._or()
        if self.pos != len(self.tokens):
            raise ValueError(f"unexpected {self.tokens[self.pos]!r}")

    def _or(self) -> Any:
        parts = [self._and()]
        while self.pos < len(self.tokens) and self.tokens[self.pos] == "OR":
            self.pos += 1
            parts.append(self._and())
        return ("or", parts)

    def _and(self) -> Any:
        parts = []
        while self.pos < len(self.tokens) and self.tokens[self.pos] not in (")", "OR"):
            word = self.tokens[self.pos]
            self.pos += 1
            if word == "(":
                parts.append(self._or())
                if self.pos >= len(self.tokens) or self.tokens[self.pos] != ")":
                    raise ValueError("unbalanced parentheses")
                self.pos += 1
            elif word == "-(":
                raise ValueError("negated groups are not supported")
            else:
                parts.append(("term", word))
        if not parts:
            raise ValueError("empty group")
        return ("and", parts)

    def matches(self, tweet: JSONDict, author: JSONDict) -> bool:
        return self._eval(self.tree, tweet, author)

    def _eval(self, node: Any, tweet: JSONDict, author: JSONDict) -> bool:
        kind, value = node
        if kind == "or":
            return any(self._eval(n, tweet, author) for n in value)
        if kind == "and":
            return all(self._eval(n, tweet, author) for n in value)
        negate = value.startswith("-") and len(value) > 1
        term = value[1:] if negate else value
        return self._term(term, tweet, author) != negate

    @staticmethod
    def _term(term: str, tweet: JSONDict, author: JSONDict) -> bool:
        text = tweet["text"].lower()
        words = set(re.findall(r"[#@]?\w+", text))
        kinds = {r["type"] for r in tweet.get("referenced_tweets") or []}
        lowered = term.lower()
        if term.startswith('"'):
            return term.strip('"').lower() in text
        if lowered.startswith("from:"):
            return author["username"].lower() == lowered[5:].lstrip("@")
        if lowered.startswith("to:"):
            mentions = [m["username"].lower() for m in tweet.get("entities", {}).get("mentions", [])]
            return lowered[3:].lstrip("@") in mentions
        if lowered.startswith("lang:"):
            return tweet.get("lang") == lowered[5:]
        if lowered == "is:reply":
            return "replied_to" in kinds
        if lowered == "is:retweet":
            return "retweeted" in kinds
        if lowered == "is:quote":
            return "quoted" in kinds
        return lowered in words


# -- the server --------------------------------------------------------------------------------


class _StreamConnection:
    def __init__(self) -> None:
        self.queue: deque[bytes] = deque()
        self.cut: str | None = None  # None, "cut", "clean", "operational"
        self.partial = False


class FakeX(LocalHTTPServer):
    """An in-memory X API v2 served over HTTP on 127.0.0.1 from a background thread."""

    def __init__(
        self,
        *,
        brand: str = "brand",
        bearer_token: str = "test-bearer",  # noqa: S107 - a fake server's fake secrets
        user_token: str = "test-user-token",  # noqa: S107
        consumer_key: str = "test-consumer-key",
        consumer_secret: str = "test-consumer-secret",  # noqa: S107
        access_token: str = "test-access-token",  # noqa: S107
        access_token_secret: str = "test-access-token-secret",  # noqa: S107
        host: str = "127.0.0.1",
        port: int = 0,
        rate_limit: int = 300,
        rate_window: float = 900.0,
        keepalive_interval: float = 20.0,
    ):
        self.bearer_token = bearer_token
        self.user_token = user_token
        self.consumer_key = consumer_key
        self.consumer_secret = consumer_secret
        self.access_token = access_token
        self.access_token_secret = access_token_secret
        self.rate_limit = rate_limit
        self.rate_window = rate_window
        self.keepalive_interval = keepalive_interval
        self.revoked = False
        self.users: dict[str, JSONDict] = {}
        self.tweets: dict[str, JSONDict] = {}
        self.dm_events: list[JSONDict] = []
        self.rules: dict[str, JSONDict] = {}
        # Created through the API, in order.
        self.posted: list[JSONDict] = []
        self.sent_dms: list[JSONDict] = []
        # Every request: {"method", "path", "query", "headers", "body"}.
        self.requests: list[JSONDict] = []
        # Stream bookkeeping: messages sent (bytes lines), connections opened.
        self.stream_sent: list[bytes] = []
        self.stream_connections = 0
        self._streams: list[_StreamConnection] = []
        self._redeliver = 0
        self._buckets: dict[str, list[float]] = {}  # route -> [limit, remaining, reset]
        self._failures: list[JSONDict] = []
        self._lost: list[str] = []
        self._last_id = 0
        self._closing = False
        self._lock = threading.RLock()
        self._changed = threading.Condition(self._lock)
        super().__init__(_Handler, host, port)
        self.brand = self.user(brand, name=f"{brand.title()} Support", followers=12000)
        self.me_id = self.brand["id"]

    # -- test helpers ----------------------------------------------------------------------

    def credentials(self, oauth1: bool = True) -> JSONDict:
        """AccountConfig.credentials for a connector talking to this server."""
        creds: JSONDict = {"bearer_token": self.bearer_token}
        if oauth1:
            creds.update(
                consumer_key=self.consumer_key,
                consumer_secret=self.consumer_secret,
                access_token=self.access_token,
                access_token_secret=self.access_token_secret,
            )
        else:
            creds["user_access_token"] = self.user_token
        return creds

    def next_id(self, moment: dt.datetime | None = None) -> str:
        """A snowflake ID for `moment` (default now), strictly above every ID handed out before."""
        with self._lock:
            ms = int((moment or dt.datetime.now(dt.UTC)).timestamp() * 1000)
            candidate = (ms - TWITTER_EPOCH_MS) << 22
            self._last_id = max(self._last_id + 1, candidate)
            return str(self._last_id)

    def user(self, username: str, *, name: str | None = None, followers: int | None = None) -> JSONDict:
        """The user with this username, created on first use (name/followers update an existing one)."""
        username = username.lstrip("@")
        with self._lock:
            for existing in self.users.values():
                if existing["username"].lower() == username.lower():
                    if name is not None:
                        existing["name"] = name
                    if followers is not None:
                        existing["public_metrics"]["followers_count"] = followers
                    return existing
            user_id = str(1000 + len(self.users) + 1)
            self.users[user_id] = {
                "id": user_id,
                "name": name if name is not None else username.title(),
                "username": username,
                "created_at": "2015-03-01T12:00:00.000Z",
                "description": "",
                "protected": False,
                "verified": False,
                "public_metrics": {
                    "followers_count": followers or 0,
                    "following_count": 10,
                    "tweet_count": 0,
                    "listed_count": 0,
                    "like_count": 0,
                },
            }
            return self.users[user_id]

    def add_tweet(
        self,
        text: str,
        *,
        username: str = "customer",
        in_reply_to: str | None = None,
        quote_of: str | None = None,
        lang: str = "en",
        created_at: dt.datetime | None = None,
        followers: int | None = None,
        name: str | None = None,
        to_stream: bool = True,
    ) -> JSONDict:
        """Store a post as if `username` wrote it; with `to_stream`, connected streams get it if a rule matches."""
        with self._lock:
            author = self.user(username, name=name, followers=followers)
            tweet = self._create_tweet(
                author, text, in_reply_to=in_reply_to, quote_of=quote_of, lang=lang, at=created_at
            )
            if to_stream:
                self._route_to_stream(tweet)
            return copy.deepcopy(tweet)

    def add_mention(self, text: str, *, username: str = "customer", **fields: Any) -> JSONDict:
        """Like add_tweet, but the text is made to mention the brand."""
        brand = self.brand["username"]
        if f"@{brand.lower()}" not in text.lower():
            text = f"@{brand} {text}"
        return self.add_tweet(text, username=username, **fields)

    def add_dm(self, text: str, *, username: str = "customer", followers: int | None = None) -> JSONDict:
        """A direct message from `username` to the brand."""
        with self._lock:
            sender = self.user(username, followers=followers)
            return copy.deepcopy(self._create_dm(sender, self.brand, text))

    def revoke(self) -> None:
        """From now on every request gets 401, as after the user revoked the app."""
        with self._lock:
            self.revoked = True

    def fail_next(self, count: int = 1, status: int = 503, *, reset_in: float = 60.0, path: str = "") -> None:
        """Answer the next `count` API requests whose path starts with `path` with `status`.

        A forced 429 reports that endpoint's budget as spent until `reset_in` seconds from now.
        """
        with self._lock:
            self._failures.extend({"status": status, "reset_in": reset_in, "path": path} for _ in range(count))

    def lose_next_response(self, path: str) -> None:
        """Carry out the next request to `path`, then answer 503 as if the response were lost."""
        with self._lock:
            self._lost.append(path)

    def set_rate_limit(self, remaining: int, *, reset_in: float | None = None, path: str = "") -> None:
        """Set the remaining budget of every endpoint whose route starts with `path`."""
        with self._lock:
            reset = time.time() + (reset_in if reset_in is not None else self.rate_window)
            for route in self._routes_known(path):
                self._buckets[route] = [float(self.rate_limit), float(remaining), reset]

    def api_requests(self, method: str | None = None, path: str = "/2/") -> list[JSONDict]:
        with self._lock:
            return [r for r in self.requests if r["path"].startswith(path) and method in (None, r["method"])]

    # stream controls

    def stream_keepalive(self) -> None:
        """Send a keep-alive newline on every open stream now."""
        self._to_streams(b"\r\n", record=False)

    def send_to_stream(self, tweet_id: str) -> None:
        """Deliver an existing post on the open streams (as a match of every rule it matches, or none)."""
        with self._lock:
            self._to_streams(self._stream_message(self.tweets[tweet_id], self._matching(self.tweets[tweet_id])))

    def send_raw_to_stream(self, data: bytes) -> None:
        """Write bytes as they are on every open stream (broken or hostile lines)."""
        self._to_streams(data, record=False)

    def disconnect_stream(self, *, partial: bool = False, mode: str = "cut") -> None:
        """End every open stream: "cut" drops the socket (with `partial`, after half of the next
        message), "clean" ends the chunked body, "operational" first sends X's operational-disconnect error."""
        with self._lock:
            for conn in self._streams:
                conn.cut = mode
                conn.partial = partial
            self._changed.notify_all()

    def redeliver_on_reconnect(self, count: int) -> None:
        """The next stream connection starts by sending the last `count` messages again (as backfill does)."""
        with self._lock:
            self._redeliver = count

    def wait_for_stream(self, connections: int = 1, timeout: float = 5.0) -> bool:
        """Wait until `connections` stream connections have been opened in total and one is open now."""
        deadline = time.time() + timeout
        with self._lock:
            while self.stream_connections < connections or not self._streams:
                remaining = deadline - time.time()
                if remaining <= 0:
                    return False
                self._changed.wait(remaining)
            return True

    def stop(self) -> None:
        with self._lock:
            self._closing = True
            self._changed.notify_all()
        super().stop()

    # -- model -----------------------------------------------------------------------------

    def _create_tweet(
        self,
        author: JSONDict,
        text: str,
        *,
        in_reply_to: str | None,
        quote_of: str | None,
        lang: str,
        at: dt.datetime | None,
    ) -> JSONDict:
        tweet_id = self.next_id(at)
        referenced = []
        parent = self.tweets.get(in_reply_to) if in_reply_to else None
        if in_reply_to:
            referenced.append({"type": "replied_to", "id": in_reply_to})
        if quote_of:
            referenced.append({"type": "quoted", "id": quote_of})
        mentions = []
        for match in _MENTION_RE.finditer(text):
            mentioned = self.user(match.group(1))
            mentions.append(
                {"start": match.start(), "end": match.end(), "username": mentioned["username"], "id": mentioned["id"]}
            )
        tweet: JSONDict = {
            "id": tweet_id,
            "text": text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;"),
            "edit_history_tweet_ids": [tweet_id],
            "author_id": author["id"],
            "created_at": _now_iso(at),
            "conversation_id": parent["conversation_id"] if parent else tweet_id,
            "lang": lang,
            "possibly_sensitive": False,
            "reply_settings": "everyone",
            "public_metrics": {"retweet_count": 0, "reply_count": 0, "like_count": 0, "quote_count": 0},
        }
        if parent:
            tweet["in_reply_to_user_id"] = parent["author_id"]
        if referenced:
            tweet["referenced_tweets"] = referenced
        if mentions:
            tweet["entities"] = {"mentions": mentions}
        self.tweets[tweet_id] = tweet
        author["public_metrics"]["tweet_count"] += 1
        return tweet

    def _create_dm(self, sender: JSONDict, recipient: JSONDict, text: str) -> JSONDict:
        low, high = sorted((sender["id"], recipient["id"]), key=_key)
        event = {
            "id": self.next_id(),
            "event_type": "MessageCreate",
            "text": text,
            "sender_id": sender["id"],
            "dm_conversation_id": f"{low}-{high}",
            "participant_ids": [low, high],
            "created_at": _now_iso(),
        }
        self.dm_events.append(event)
        return event

    def _author(self, tweet: JSONDict) -> JSONDict:
        return self.users[tweet["author_id"]]

    def _matching(self, tweet: JSONDict) -> list[JSONDict]:
        author = self._author(tweet)
        return [
            {"id": rule["id"], "tag": rule.get("tag", "")}
            for rule in self.rules.values()
            if Query(rule["value"]).matches(tweet, author)
        ]

    # -- field selection and expansions ------------------------------------------------------

    @staticmethod
    def _fields(query: dict[str, list[str]], name: str) -> set[str]:
        return {f for v in query.get(name, []) for f in v.split(",") if f}

    def _tweet_view(self, tweet: JSONDict, query: dict[str, list[str]]) -> JSONDict:
        wanted = set(DEFAULT_TWEET_FIELDS) | self._fields(query, "tweet.fields")
        return {k: copy.deepcopy(v) for k, v in tweet.items() if k in wanted}

    def _user_view(self, user: JSONDict, query: dict[str, list[str]]) -> JSONDict:
        wanted = set(DEFAULT_USER_FIELDS) | self._fields(query, "user.fields")
        return {k: copy.deepcopy(v) for k, v in user.items() if k in wanted}

    def _dm_view(self, event: JSONDict, query: dict[str, list[str]]) -> JSONDict:
        wanted = set(DEFAULT_DM_FIELDS) | self._fields(query, "dm_event.fields")
        return {k: copy.deepcopy(v) for k, v in event.items() if k in wanted}

    def _includes_for_tweets(self, tweets: list[JSONDict], query: dict[str, list[str]]) -> JSONDict:
        expansions = self._fields(query, "expansions")
        user_ids: list[str] = []
        referenced: list[JSONDict] = []
        for tweet in tweets:
            if "author_id" in expansions:
                user_ids.append(tweet["author_id"])
            if "in_reply_to_user_id" in expansions and tweet.get("in_reply_to_user_id"):
                user_ids.append(tweet["in_reply_to_user_id"])
            if "entities.mentions.username" in expansions:
                user_ids += [m["id"] for m in tweet.get("entities", {}).get("mentions", [])]
            if "referenced_tweets.id" in expansions:
                for ref in tweet.get("referenced_tweets") or []:
                    if ref["id"] in self.tweets:
                        referenced.append(self.tweets[ref["id"]])
                        if "referenced_tweets.id.author_id" in expansions:
                            user_ids.append(self.tweets[ref["id"]]["author_id"])
        includes: JSONDict = {}
        unique_users = [self.users[u] for u in dict.fromkeys(user_ids) if u in self.users]
        if unique_users:
            includes["users"] = [self._user_view(u, query) for u in unique_users]
        if referenced:
            seen = {t["id"]: t for t in referenced}
            includes["tweets"] = [self._tweet_view(t, query) for t in seen.values()]
        return includes

    def _includes_for_dms(self, events: list[JSONDict], query: dict[str, list[str]]) -> JSONDict:
        expansions = self._fields(query, "expansions")
        user_ids: list[str] = []
        for event in events:
            if "sender_id" in expansions:
                user_ids.append(event["sender_id"])
            if "participant_ids" in expansions:
                user_ids += event.get("participant_ids", [])
        users = [self.users[u] for u in dict.fromkeys(user_ids) if u in self.users]
        return {"users": [self._user_view(u, query) for u in users]} if users else {}

    def _stream_message(self, tweet: JSONDict, matching: list[JSONDict], query: dict[str, list[str]] | None = None):
        query = query if query is not None else self._stream_query
        message = {"data": self._tweet_view(tweet, query), "matching_rules": matching}
        includes = self._includes_for_tweets([tweet], query)
        if includes:
            message["includes"] = includes
        return json.dumps(message).encode() + b"\r\n"

    _stream_query: dict[str, list[str]] = {}

    # -- pagination ------------------------------------------------------------------------

    def _page(
        self,
        items: list[JSONDict],
        query: dict[str, list[str]],
        *,
        low: int,
        high: int,
        default: int,
        page_param: str,
    ) -> tuple[list[JSONDict], JSONDict]:
        def one(name: str) -> str | None:
            values = query.get(name)
            return values[0] if values and values[0] else None

        raw = one("max_results")
        size = default
        if raw is not None:
            if not raw.isdigit() or not low <= int(raw) <= high:
                raise _Problem(
                    400,
                    "Invalid Request",
                    f"The `max_results` query parameter value [{raw}] is not between {low} and {high}",
                    PROBLEM + "invalid-request",
                )
            size = int(raw)
        ordered = sorted(items, key=lambda x: _key(x["id"]), reverse=True)
        if one("since_id"):
            ordered = [x for x in ordered if _key(x["id"]) > _key(one("since_id") or "")]
        if one("until_id"):
            ordered = [x for x in ordered if _key(x["id"]) < _key(one("until_id") or "")]
        if one(page_param):
            until = _untoken(one(page_param) or "")
            ordered = [x for x in ordered if _key(x["id"]) < _key(until)]
        page = ordered[:size]
        meta: JSONDict = {"result_count": len(page)}
        if page:
            meta["newest_id"] = page[0]["id"]
            meta["oldest_id"] = page[-1]["id"]
        if len(ordered) > size:
            meta["next_token"] = _token(page[-1]["id"])
        return page, meta

    # -- HTTP ------------------------------------------------------------------------------

    def _routes_known(self, prefix: str) -> list[str]:
        routes = {
            "GET /2/users/me",
            "GET /2/users/by/username/:username",
            "GET /2/users/:id/mentions",
            "GET /2/users/:id/tweets",
            "GET /2/tweets/:id",
            "GET /2/tweets/search/recent",
            "POST /2/tweets",
            "GET /2/dm_events",
            "GET /2/dm_conversations/with/:id/dm_events",
            "POST /2/dm_conversations/with/:id/messages",
            "GET /2/tweets/search/stream/rules",
            "POST /2/tweets/search/stream/rules",
            "GET /2/tweets/search/stream",
        }
        return sorted(r for r in routes if r.split(" ", 1)[1].startswith(prefix) or not prefix)

    @staticmethod
    def _route(method: str, path: str) -> str:
        if path.startswith("/2/users/by/username/"):
            return f"{method} /2/users/by/username/:username"
        if path in ("/2/tweets/search/recent", "/2/tweets/search/stream", "/2/tweets/search/stream/rules"):
            return f"{method} {path}"
        return f"{method} " + re.sub(r"(?<!^)/\d+(?=/|$)", "/:id", path)

    def _rate(self, route: str, now: float) -> list[float]:
        bucket = self._buckets.get(route)
        if bucket is None or now >= bucket[2]:
            bucket = [float(self.rate_limit), float(self.rate_limit), now + self.rate_window]
            self._buckets[route] = bucket
        return bucket

    @staticmethod
    def _rate_headers(bucket: list[float]) -> dict[str, str]:
        return {
            "x-rate-limit-limit": str(int(bucket[0])),
            "x-rate-limit-remaining": str(max(0, int(bucket[1]))),
            "x-rate-limit-reset": str(int(bucket[2])),
        }

    def _handle(self, request: _Handler) -> None:
        parts = urlsplit(request.path)
        path = unquote(parts.path).rstrip("/") or "/"
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
        route = self._route(request.command, path)
        headers: dict[str, str] = {}
        try:
            with self._lock:
                headers = self._admit(route, path)
                auth = self._authenticate(request, parts.query, body)
            if route == "GET /2/tweets/search/stream":
                self._stream(request, query, auth, headers)
                return
            with self._lock:
                status, payload = self._dispatch(request.command, path, query, body, auth)
                lost = next((p for p in self._lost if path.startswith(p)), None)
                if lost is not None:
                    self._lost.remove(lost)
                    raise _Problem(503, "Service Unavailable", "Service Unavailable")
        except _Problem as problem:
            status, payload = problem.status, problem.body
            headers = getattr(problem, "headers", None) or headers
        self._send(request, status, payload, headers)

    def _admit(self, route: str, path: str) -> dict[str, str]:
        now = time.time()
        bucket = self._rate(route, now)
        forced = next((f for f in self._failures if path.startswith(f["path"] or "/2/")), None)
        if forced is not None:
            self._failures.remove(forced)
            if forced["status"] == 429:
                bucket[1] = 0
                bucket[2] = now + forced["reset_in"]
        if bucket[1] <= 0:
            problem = _Problem(429, "Too Many Requests", "Too Many Requests")
            problem.headers = self._rate_headers(bucket)  # type: ignore[attr-defined]
            raise problem
        bucket[1] -= 1
        headers = self._rate_headers(bucket)
        if forced is not None:
            status = forced["status"]
            titles = {401: "Unauthorized", 403: "Forbidden", 500: "Internal Server Error", 503: "Service Unavailable"}
            problem = _Problem(status, titles.get(status, "Error"), titles.get(status, "Simulated failure"))
            problem.headers = headers  # type: ignore[attr-defined]
            raise problem
        return headers

    def _authenticate(self, request: _Handler, raw_query: str, body: bytes) -> str:
        """ "app", "user" (OAuth 2 user token or OAuth 1.0a), or a 401."""
        header = request.headers.get("Authorization") or ""
        unauthorized = _Problem(401, "Unauthorized", "Unauthorized")
        if self.revoked:
            raise unauthorized
        scheme, _, value = header.partition(" ")
        if scheme == "Bearer":
            if value == self.bearer_token:
                return "app"
            if value == self.user_token:
                return "user"
            raise unauthorized
        if scheme == "OAuth" and self._oauth1_valid(request, raw_query, body, header):
            return "user"
        raise unauthorized

    def _oauth1_valid(self, request: _Handler, raw_query: str, body: bytes, header: str) -> bool:
        params = dict(
            oauth_signature.collect_parameters(headers={"Authorization": header}, exclude_oauth_signature=False)
        )
        if params.get("oauth_consumer_key") != self.consumer_key or params.get("oauth_token") != self.access_token:
            return False
        content_type = (request.headers.get("Content-Type") or "").split(";")[0].strip()
        form = body.decode() if content_type == "application/x-www-form-urlencoded" else None
        uri = f"http://{request.headers.get('Host')}{urlsplit(request.path).path}"
        oauth_request = OAuthRequest(f"{uri}?{raw_query}" if raw_query else uri, request.command, form, {})
        oauth_request.params = oauth_signature.collect_parameters(
            uri_query=raw_query, body=form, headers={"Authorization": header}, exclude_oauth_signature=True
        )
        oauth_request.signature = params.get("oauth_signature", "")
        oauth_request.uri = uri
        return oauth_signature.verify_hmac_sha1(oauth_request, self.consumer_secret, self.access_token_secret)

    def _send(self, request: _Handler, status: int, payload: Any, headers: dict[str, str]) -> None:
        data = json.dumps(payload).encode()
        content_type = "application/problem+json" if status >= 400 else "application/json; charset=utf-8"
        request.send_response(status)
        request.send_header("Content-Type", content_type)
        request.send_header("Content-Length", str(len(data)))
        for name, value in headers.items():
            request.send_header(name, value)
        request.end_headers()
        request.wfile.write(data)

    def _need(self, auth: str, kind: str) -> None:
        if auth == kind:
            return
        if kind == "user":
            detail = (
                "Authenticating with OAuth 2.0 Application-Only is forbidden for this endpoint.  Supported "
                "authentication types are [OAuth 1.0a User Context, OAuth 2.0 User Context]."
            )
        else:
            detail = (
                "Authenticating with OAuth 2.0 User Context is forbidden for this endpoint.  Supported "
                "authentication types are [OAuth 2.0 Application-Only]."
            )
        raise _Problem(403, "Unsupported Authentication", detail, PROBLEM + "unsupported-authentication")

    def _dispatch(
        self, method: str, path: str, query: dict[str, list[str]], body: bytes, auth: str
    ) -> tuple[int, JSONDict]:
        if method == "GET" and path == "/2/users/me":
            self._need(auth, "user")
            return 200, {"data": self._user_view(self.brand, query)}
        match = re.fullmatch(r"/2/users/by/username/(\w+)", path)
        if method == "GET" and match:
            user = next((u for u in self.users.values() if u["username"].lower() == match.group(1).lower()), None)
            if user is None:
                name = match.group(1)
                return 200, {
                    "errors": [
                        {
                            "value": name,
                            "detail": f"Could not find user with username: [{name}].",
                            "title": "Not Found Error",
                            "resource_type": "user",
                            "parameter": "username",
                            "resource_id": name,
                            "type": PROBLEM + "resource-not-found",
                        }
                    ]
                }
            return 200, {"data": self._user_view(user, query)}
        match = re.fullmatch(r"/2/users/(\d+)/(mentions|tweets)", path)
        if method == "GET" and match:
            user_id, kind = match.groups()
            if user_id not in self.users:
                raise _Problem(404, "Not Found Error", f"Could not find user with id: [{user_id}].")
            if kind == "mentions":
                items = [
                    t
                    for t in self.tweets.values()
                    if any(m["id"] == user_id for m in t.get("entities", {}).get("mentions", []))
                ]
            else:
                items = [t for t in self.tweets.values() if t["author_id"] == user_id]
            return self._tweet_list(items, query, low=5, default=10, page_param="pagination_token")
        if method == "GET" and path == "/2/tweets/search/recent":
            text = (query.get("query") or [""])[0]
            try:
                parsed = Query(text)
            except ValueError as exc:
                raise _Problem(
                    400,
                    "Invalid Request",
                    f"There were errors processing your request: {exc}",
                    PROBLEM + "invalid-request",
                ) from exc
            week_ago = self.next_id_for(dt.datetime.now(dt.UTC) - dt.timedelta(days=7))
            since = (query.get("since_id") or [""])[0]
            if since and _key(since) < _key(week_ago):
                raise _Problem(
                    400,
                    "Invalid Request",
                    f"Invalid 'since_id':'{since}'. 'since_id' must be a tweet id created after "
                    f"{_now_iso(dt.datetime.now(dt.UTC) - dt.timedelta(days=7))}.",
                    PROBLEM + "invalid-request",
                )
            items = [t for t in self.tweets.values() if parsed.matches(t, self._author(t))]
            return self._tweet_list(items, query, low=10, default=10, page_param="next_token")
        match = re.fullmatch(r"/2/tweets/(\d+)", path)
        if method == "GET" and match:
            tweet = self.tweets.get(match.group(1))
            if tweet is None:
                return 200, {"errors": [{"value": match.group(1), "title": "Not Found Error", "detail": "not found"}]}
            out: JSONDict = {"data": self._tweet_view(tweet, query)}
            includes = self._includes_for_tweets([tweet], query)
            if includes:
                out["includes"] = includes
            return 200, out
        if method == "POST" and path == "/2/tweets":
            self._need(auth, "user")
            return self._post_tweet(self._json(body))
        if method == "GET" and path == "/2/dm_events":
            self._need(auth, "user")
            return self._dm_list(self.dm_events, query)
        match = re.fullmatch(r"/2/dm_conversations/with/(\d+)/(dm_events|messages)", path)
        if match:
            self._need(auth, "user")
            participant, kind = match.groups()
            if participant not in self.users or participant == self.me_id:
                raise _Problem(
                    400,
                    "Invalid Request",
                    "One or more parameters to your request was invalid.",
                    PROBLEM + "invalid-request",
                    errors=[{"parameters": {"participant_id": [participant]}, "message": "invalid participant"}],
                )
            conversation = "-".join(sorted((participant, self.me_id), key=_key))
            if method == "GET" and kind == "dm_events":
                events = [e for e in self.dm_events if e["dm_conversation_id"] == conversation]
                return self._dm_list(events, query)
            if method == "POST" and kind == "messages":
                data = self._json(body)
                text = data.get("text")
                if not isinstance(text, str) or not text.strip() or len(text) > MAX_DM_LENGTH:
                    raise _Problem(400, "Invalid Request", "text is required", PROBLEM + "invalid-request")
                event = self._create_dm(self.brand, self.users[participant], text)
                self.sent_dms.append(event)
                return 201, {"data": {"dm_conversation_id": conversation, "dm_event_id": event["id"]}}
        if path == "/2/tweets/search/stream/rules":
            self._need(auth, "app")
            return self._rules(method, query, body)
        raise _Problem(404, "Not Found", "Sorry, that page does not exist", PROBLEM + "not-found")

    def next_id_for(self, moment: dt.datetime) -> str:
        return str((int(moment.timestamp() * 1000) - TWITTER_EPOCH_MS) << 22)

    @staticmethod
    def _json(body: bytes) -> JSONDict:
        try:
            data = json.loads(body or b"{}")
        except ValueError as exc:
            raise _Problem(
                400, "Invalid Request", "Request body is not valid JSON", PROBLEM + "invalid-request"
            ) from exc
        if not isinstance(data, dict):
            raise _Problem(400, "Invalid Request", "Request body must be an object", PROBLEM + "invalid-request")
        return data

    def _tweet_list(
        self, items: list[JSONDict], query: dict[str, list[str]], *, low: int, default: int, page_param: str
    ) -> tuple[int, JSONDict]:
        page, meta = self._page(items, query, low=low, high=100, default=default, page_param=page_param)
        out: JSONDict = {"meta": meta}
        if page:
            out["data"] = [self._tweet_view(t, query) for t in page]
            includes = self._includes_for_tweets(page, query)
            if includes:
                out["includes"] = includes
        return 200, out

    def _dm_list(self, events: list[JSONDict], query: dict[str, list[str]]) -> tuple[int, JSONDict]:
        types = self._fields(query, "event_types")
        if types:
            events = [e for e in events if e["event_type"] in types]
        page, meta = self._page(events, query, low=1, high=100, default=100, page_param="pagination_token")
        meta.pop("newest_id", None)
        meta.pop("oldest_id", None)
        out: JSONDict = {"meta": meta}
        if page:
            out["data"] = [self._dm_view(e, query) for e in page]
            includes = self._includes_for_dms(page, query)
            if includes:
                out["includes"] = includes
        return 200, out

    def _post_tweet(self, data: JSONDict) -> tuple[int, JSONDict]:
        text = data.get("text")
        if not isinstance(text, str) or not text.strip():
            raise _Problem(400, "Invalid Request", "One or more parameters to your request was invalid.")
        if len(text) > MAX_TWEET_LENGTH:
            raise _Problem(403, "Forbidden", "Your Tweet text is too long.")
        reply = data.get("reply") or {}
        parent_id = reply.get("in_reply_to_tweet_id") if isinstance(reply, dict) else None
        parent = self.tweets.get(str(parent_id)) if parent_id else None
        if parent_id and parent is None:
            raise _Problem(403, "Forbidden", "You attempted to reply to a Tweet that is deleted or not visible to you.")
        if parent is not None:
            # X puts the replied-to author's handle in front of the reply text.
            handle = self._author(parent)["username"]
            if parent["author_id"] != self.me_id and not text.lower().startswith(f"@{handle.lower()}"):
                text = f"@{handle} {text}"
        escaped = text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
        if any(t["author_id"] == self.me_id and t["text"] == escaped for t in self.tweets.values()):
            raise _Problem(403, "Forbidden", "You are not allowed to create a Tweet with duplicate content.")
        tweet = self._create_tweet(
            self.brand, text, in_reply_to=str(parent_id) if parent else None, quote_of=None, lang="en", at=None
        )
        self.posted.append(copy.deepcopy(tweet))
        self._route_to_stream(tweet)
        return 201, {"data": {"id": tweet["id"], "text": tweet["text"], "edit_history_tweet_ids": [tweet["id"]]}}

    def _rules(self, method: str, query: dict[str, list[str]], body: bytes) -> tuple[int, JSONDict]:
        sent = _now_iso()
        if method == "GET":
            ids = self._fields(query, "ids")
            rules = [copy.deepcopy(r) for r in self.rules.values() if not ids or r["id"] in ids]
            out: JSONDict = {"meta": {"sent": sent, "result_count": len(rules)}}
            if rules:
                out["data"] = rules
            return 200, out
        if method != "POST":
            raise _Problem(404, "Not Found", "Sorry, that page does not exist")
        data = self._json(body)
        dry_run = (query.get("dry_run") or ["false"])[0] == "true"
        if "add" in data:
            created, errors = [], []
            for rule in data["add"]:
                value = rule.get("value", "")
                if any(r["value"] == value for r in self.rules.values()):
                    existing = next(r for r in self.rules.values() if r["value"] == value)
                    errors.append(
                        {
                            "value": value,
                            "id": existing["id"],
                            "title": "DuplicateRule",
                            "type": PROBLEM + "duplicate-rules",
                        }
                    )
                    continue
                try:
                    Query(value)
                except ValueError as exc:
                    errors.append(
                        {
                            "value": value,
                            "details": [str(exc)],
                            "title": "UnprocessableEntity",
                            "type": PROBLEM + "invalid-rules",
                        }
                    )
                    continue
                new = {"id": self.next_id(), "value": value}
                if rule.get("tag"):
                    new["tag"] = rule["tag"]
                created.append(new)
            if not dry_run:
                for rule in created:
                    self.rules[rule["id"]] = rule
            summary = {
                "created": len(created),
                "not_created": len(errors),
                "valid": len(created),
                "invalid": len(errors),
            }
            out = {"meta": {"sent": sent, "summary": summary}}
            if created:
                out["data"] = created
            if errors:
                out["errors"] = errors
            return 200, out
        if "delete" in data:
            ids = [str(i) for i in (data["delete"] or {}).get("ids", [])]
            deleted = [i for i in ids if i in self.rules]
            errors = [
                {
                    "value": i,
                    "detail": "This rule id does not exist",
                    "title": "Invalid Request",
                    "type": PROBLEM + "invalid-request",
                }
                for i in ids
                if i not in self.rules
            ]
            if not dry_run:
                for i in deleted:
                    del self.rules[i]
            out = {"meta": {"sent": sent, "summary": {"deleted": len(deleted), "not_deleted": len(ids) - len(deleted)}}}
            if errors:
                out["errors"] = errors
            return 200, out
        raise _Problem(400, "Invalid Request", "Expected `add` or `delete`", PROBLEM + "invalid-request")

    # -- the stream ------------------------------------------------------------------------

    def _route_to_stream(self, tweet: JSONDict) -> None:
        matching = self._matching(tweet)
        if matching:
            self._to_streams(self._stream_message(tweet, matching))

    def _to_streams(self, line: bytes, record: bool = True) -> None:
        with self._lock:
            if record:
                self.stream_sent.append(line)
            for conn in self._streams:
                conn.queue.append(line)
            self._changed.notify_all()

    def _stream(self, request: _Handler, query: dict[str, list[str]], auth: str, headers: dict[str, str]) -> None:
        with self._lock:
            self._need(auth, "app")
            if self._streams:
                problem = _Problem(
                    429,
                    "ConnectionException",
                    "This stream is currently at the maximum allowed connection limit.",
                    PROBLEM + "streaming-connection",
                    connection_issue="TooManyConnections",
                )
                problem.headers = headers  # type: ignore[attr-defined]
                raise problem
            conn = _StreamConnection()
            if self._redeliver:
                conn.queue.extend(self.stream_sent[-self._redeliver :])
                self._redeliver = 0
            self._stream_query = query
            self._streams.append(conn)
            self.stream_connections += 1
            self._changed.notify_all()
        request.send_response(200)
        request.send_header("Content-Type", "application/json; charset=utf-8")
        request.send_header("Transfer-Encoding", "chunked")
        for name, value in headers.items():
            request.send_header(name, value)
        request.end_headers()
        try:
            self._serve_stream(request, conn)
        except OSError:
            pass
        finally:
            with self._lock:
                if conn in self._streams:
                    self._streams.remove(conn)
                self._changed.notify_all()
            request.close_connection = True

    def _serve_stream(self, request: _Handler, conn: _StreamConnection) -> None:
        def chunk(data: bytes) -> None:
            request.wfile.write(f"{len(data):x}\r\n".encode() + data + b"\r\n")
            request.wfile.flush()

        while True:
            with self._lock:
                if not conn.queue and conn.cut is None and not self._closing:
                    self._changed.wait(self.keepalive_interval)
                lines = list(conn.queue)
                conn.queue.clear()
                cut, partial, closing = conn.cut, conn.partial, self._closing
                if cut is not None:
                    self._streams.remove(conn)
            if closing:
                return
            if cut is None and not lines:
                chunk(b"\r\n")  # keep-alive
                continue
            if cut == "cut" and partial and lines:
                # Write the first message only half, then drop the socket mid-chunk.
                for line in lines[:-1]:
                    chunk(line)
                data = lines[-1]
                request.wfile.write(f"{len(data):x}\r\n".encode() + data[: len(data) // 2])
                request.wfile.flush()
                lines = []
            for line in lines:
                chunk(line)
            if cut is None:
                continue
            if cut == "operational":
                error = {
                    "errors": [
                        {
                            "title": "operational-disconnect",
                            "disconnect_type": "UpstreamOperationalDisconnect",
                            "detail": "This stream has been disconnected upstream for operational reasons.",
                            "type": PROBLEM + "operational-disconnect",
                        }
                    ]
                }
                chunk(json.dumps(error).encode() + b"\r\n")
            if cut in ("clean", "operational"):
                request.wfile.write(b"0\r\n\r\n")
                request.wfile.flush()
            else:
                request.connection.shutdown(socket.SHUT_RDWR)
            return


class _Handler(BaseHTTPRequestHandler):
    server: ThreadingHTTPServer
    # HTTP/1.1 for the chunked stream; every other answer carries Content-Length.
    protocol_version = "HTTP/1.1"

    def _dispatch(self) -> None:
        self.server.owner._handle(self)  # type: ignore[attr-defined]

    do_GET = do_POST = do_PUT = do_DELETE = _dispatch

    def log_message(self, format: str, *args: Any) -> None:
        pass


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="Run a fake X API v2 for demos and browser tests.")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8766)
    parser.add_argument("--brand", default="brand")
    parser.add_argument("--seed", action="store_true", help="add a few example customer posts")
    args = parser.parse_args(argv)
    server = FakeX(brand=args.brand, host=args.host, port=args.port).start()
    if args.seed:
        server.add_mention("my order #1234 still hasn't arrived, can you help?", username="alice", followers=85)
        server.add_dm("how do I reset my password?", username="bob")
        server.add_tweet(f"Really enjoying the new {args.brand} app!", username="carol", followers=4300)
    print(f"fake X on {server.url}; credentials {server.credentials()}; Ctrl-C stops it", flush=True)
    try:
        threading.Event().wait()
    except KeyboardInterrupt:
        pass
    finally:
        server.stop()


if __name__ == "__main__":
    main()
