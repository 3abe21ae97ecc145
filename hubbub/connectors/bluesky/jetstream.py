"""A resumable consumer of a Bluesky Jetstream (v1 `/subscribe`) websocket.

Jetstream turns the network's firehose into JSON events, one per websocket text frame:

    {"did": "did:plc:…", "time_us": 1725911162329308, "kind": "commit",
     "commit": {"rev": "…", "operation": "create", "collection": "app.bsky.feed.post",
                "rkey": "3l3qo2vutsw2b", "record": {"$type": "app.bsky.feed.post", "text": "…", …},
                "cid": "bafyrei…"}}

`kind` is "commit" (operation "create", "update" or "delete"; deletes carry no record),
"identity" or "account". `time_us` is the cursor: connecting with `?cursor=<time_us>` replays
every event from that time on, and a cursor is valid on every Jetstream instance.

`JetstreamConsumer` asks for `wantedCollections=app.bsky.feed.post` and `app.bsky.feed.repost`
(and `wantedDids` if given), hands every created post that concerns the brand, and every repost of
a brand post, to `on_post(RawPost)` and:

- resumes on every (re)connect from its cursor rewound by `rewind_us` (5 s), as Jetstream's
  README advises for gapless playback, and drops what the rewind replays by at-uri, so the
  overlap costs bandwidth but never calls `on_post` twice in one process;
- advances its cursor only after `on_post` returned; if `on_post` raises, the connection is
  dropped and the same event is offered again after the back-off;
- reports the cursor to `on_cursor` at most every `checkpoint_interval` seconds and when it
  stops. The stored cursor therefore lags the real progress a little: a restart replays a few
  seconds (plus the rewind) and relies on the caller storing posts idempotently by external id;
- reports every failed connection to `on_error(message)` (the account's health);
- reconnects with exponential back-off and full jitter, and returns when `stop` is set.

The `RawPost` payload is the envelope `{"source": "jetstream", "item": <event>}` that
`BlueskyConnector.normalize` reads; `external_id` is the post's at-uri, the same id the
connector's polling gives the same post, so a post seen both ways is stored once.
"""

from __future__ import annotations

import json
import logging
import random
import re
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Iterable
from typing import Any
from urllib.parse import urlencode, urlsplit, urlunsplit

from websockets.exceptions import WebSocketException
from websockets.sync.client import connect

from hubbub.connectors.base import RawPost
from hubbub.lib.safehttp import USER_AGENT, BlockedAddress, check_url

log = logging.getLogger(__name__)

DEFAULT_URL = "wss://jetstream2.us-east.bsky.network/subscribe"
POST_COLLECTION = "app.bsky.feed.post"
# Reposts of the brand's posts are read too: the noise rules fold them into the original as engagement.
REPOST_COLLECTION = "app.bsky.feed.repost"
DEFAULT_REWIND_US = 5_000_000
# Text longer than this is not searched for keywords (Bluesky allows 3000 bytes of text).
MAX_MATCH_CHARS = 10_000
# Jetstream's own frames are small; a post with a big record is still far below this.
MAX_FRAME_BYTES = 1 << 20


def post_uri(did: str, rkey: str) -> str:
    return f"at://{did}/{POST_COLLECTION}/{rkey}"


class PostFilter:
    """Decides whether a post record concerns the brand.

    A post matches when it mentions the brand (a mention facet with the brand's DID, or the
    text "@handle"), replies to or quotes a brand post (parent, thread root or quoted record in
    the brand's repo), or contains one of `keywords` as a whole word (case-insensitive). The
    brand's own posts never match unless `include_own`.
    """

    def __init__(
        self,
        *,
        brand_did: str = "",
        brand_handle: str = "",
        keywords: Iterable[str] = (),
        include_own: bool = False,
    ):
        self.brand_did = brand_did.strip()
        self.brand_handle = brand_handle.strip().lstrip("@").lower()
        self.include_own = include_own
        words = [str(k).strip() for k in keywords if str(k).strip()]
        self._keywords = (
            re.compile("|".join(rf"(?<!\w){re.escape(w)}(?!\w)" for w in words), re.IGNORECASE) if words else None
        )
        self._handle = (
            re.compile(rf"(?<![\w@])@{re.escape(self.brand_handle)}(?![\w.-]*\w)", re.IGNORECASE)
            if self.brand_handle
            else None
        )
        self._brand_prefix = f"at://{self.brand_did}/" if self.brand_did else None

    def matches(self, author_did: str, record: dict[str, Any]) -> bool:
        if self.brand_did and author_did == self.brand_did and not self.include_own:
            return False
        if record.get("$type") == REPOST_COLLECTION:
            subject = record.get("subject")
            uri = subject.get("uri") if isinstance(subject, dict) else None
            return bool(self._brand_prefix) and isinstance(uri, str) and uri.startswith(self._brand_prefix or "\0")
        text = record.get("text")
        text = text[:MAX_MATCH_CHARS] if isinstance(text, str) else ""
        if self.brand_did and self._mentions_brand(record.get("facets")):
            return True
        if self._handle and self._handle.search(text):
            return True
        if self._brand_prefix and self._refers_to_brand(record):
            return True
        if self._keywords:
            tags = record.get("tags") if isinstance(record.get("tags"), list) else []
            haystack = " ".join([text, *(f"#{t}" for t in tags if isinstance(t, str))])
            return bool(self._keywords.search(haystack))
        return False

    def _mentions_brand(self, facets: Any) -> bool:
        for facet in facets if isinstance(facets, list) else []:
            features = facet.get("features") if isinstance(facet, dict) else None
            for feature in features if isinstance(features, list) else []:
                if (
                    isinstance(feature, dict)
                    and feature.get("$type") == "app.bsky.richtext.facet#mention"
                    and feature.get("did") == self.brand_did
                ):
                    return True
        return False

    def _refers_to_brand(self, record: dict[str, Any]) -> bool:
        uris: list[Any] = []
        reply = record.get("reply")
        if isinstance(reply, dict):
            uris += [(reply.get(k) or {}).get("uri") for k in ("parent", "root") if isinstance(reply.get(k), dict)]
        embed = record.get("embed")
        if isinstance(embed, dict):
            inner = embed.get("record")
            # app.bsky.embed.record {record: strongRef} or recordWithMedia {record: {record: strongRef}}
            if isinstance(inner, dict) and isinstance(inner.get("record"), dict):
                inner = inner["record"]
            if isinstance(inner, dict):
                uris.append(inner.get("uri"))
        return any(isinstance(u, str) and u.startswith(self._brand_prefix or "\0") for u in uris)


class _Seen:
    """A bounded set of recently handled at-uris (insertion order, oldest dropped first)."""

    def __init__(self, size: int):
        self.size = size
        self._items: OrderedDict[str, None] = OrderedDict()

    def __contains__(self, key: str) -> bool:
        return key in self._items

    def add(self, key: str) -> None:
        self._items[key] = None
        self._items.move_to_end(key)
        while len(self._items) > self.size:
            self._items.popitem(last=False)


class JetstreamConsumer:
    """Reads a Jetstream websocket until `stop` is set; see the module docstring.

    Run it in a thread of its own (it blocks). `cursor` is the `time_us` to resume from (None:
    start at the live tail). Everything it does to the outside world goes through `on_post`
    and `on_cursor`, so a test can drive it against a local websocket server.
    """

    def __init__(
        self,
        url: str = DEFAULT_URL,
        *,
        on_post: Callable[[RawPost], None],
        post_filter: PostFilter | None = None,
        match: Callable[[str, dict[str, Any]], bool] | None = None,
        wanted_dids: Iterable[str] = (),
        cursor: int | None = None,
        on_cursor: Callable[[int], None] | None = None,
        on_error: Callable[[str], None] | None = None,
        stop: threading.Event | None = None,
        rewind_us: int = DEFAULT_REWIND_US,
        backoff_initial: float = 1.0,
        backoff_max: float = 60.0,
        checkpoint_interval: float = 5.0,
        open_timeout: float = 10.0,
        poll_timeout: float = 1.0,
        seen_size: int = 50_000,
        allow_private: bool = False,
    ):
        if match is None:
            match = (post_filter or PostFilter()).matches
        self.url = url
        self.on_post = on_post
        self.match = match
        self.wanted_dids = list(dict.fromkeys(d for d in wanted_dids if d))
        self.cursor = cursor
        self.on_cursor = on_cursor
        self.on_error = on_error
        self.stop = stop or threading.Event()
        self.rewind_us = rewind_us
        self.backoff_initial = backoff_initial
        self.backoff_max = backoff_max
        self.checkpoint_interval = checkpoint_interval
        self.open_timeout = open_timeout
        self.poll_timeout = poll_timeout
        self.allow_private = allow_private
        self._seen = _Seen(seen_size)
        self._reported: int | None = cursor
        self._last_report = time.monotonic()
        self.connects = 0
        self.delivered = 0

    # -- the loop ---------------------------------------------------------------------------

    def run(self) -> None:
        """Consume until `stop` is set, reconnecting after every failure."""
        failures = 0
        try:
            while not self.stop.is_set():
                received = 0
                try:
                    received = self._session()
                except BlockedAddress:
                    # A private or internal address is a configuration error: retrying cannot help.
                    raise
                except (OSError, TimeoutError, WebSocketException, _CallbackFailed) as exc:
                    log.warning("jetstream connection to %s ended: %s", self._host(), exc)
                    if self.on_error is not None and not self.stop.is_set():
                        self.on_error(f"Jetstream {self._host()}: {exc}")
                if self.stop.is_set():
                    break
                failures = 0 if received else failures + 1
                self.stop.wait(self._backoff(failures))
        finally:
            self._checkpoint(force=True)

    def _backoff(self, failures: int) -> float:
        # Full jitter: a fleet of consumers cut off together does not come back together.
        ceiling = min(self.backoff_max, self.backoff_initial * (2 ** min(failures, 16)))
        return random.uniform(ceiling / 2 if failures == 0 else 0, ceiling)

    def _session(self) -> int:
        """One connection: read frames until it closes or `stop` is set. Returns frames read."""
        url = self.subscribe_url()
        check_url(_as_http(url), self.allow_private)
        received = 0
        with connect(
            url,
            open_timeout=self.open_timeout,
            max_size=MAX_FRAME_BYTES,
            user_agent_header=USER_AGENT,
            # Jetstream compresses with zstd when asked; permessage-deflate is not offered.
            compression=None,
            # Never through an HTTP proxy from the environment: the address was checked above.
            proxy=None,
            legacy=True,
        ) as ws:
            self.connects += 1
            log.info("jetstream connected to %s (cursor %s)", self._host(), self.cursor)
            while not self.stop.is_set():
                try:
                    frame = ws.recv(timeout=self.poll_timeout)
                except TimeoutError:
                    self._checkpoint()
                    continue
                received += 1
                self.handle_frame(frame)
                self._checkpoint()
        return received

    def subscribe_url(self) -> str:
        """The URL to connect with now: filters and the cursor rewound by `rewind_us`."""
        params: list[tuple[str, str]] = [("wantedCollections", c) for c in (POST_COLLECTION, REPOST_COLLECTION)]
        params += [("wantedDids", did) for did in self.wanted_dids]
        if self.cursor is not None:
            params.append(("cursor", str(max(0, self.cursor - self.rewind_us))))
        parts = urlsplit(self.url)
        query = "&".join(q for q in (parts.query, urlencode(params)) if q)
        return urlunsplit((parts.scheme, parts.netloc, parts.path or "/subscribe", query, ""))

    # -- one event --------------------------------------------------------------------------

    def handle_frame(self, frame: str | bytes) -> RawPost | None:
        """Handle one frame; returns the RawPost given to on_post, if any. Raises what on_post raises."""
        try:
            event = json.loads(frame)
        except ValueError:
            log.warning("jetstream sent a frame that is not JSON; skipped")
            return None
        if not isinstance(event, dict):
            return None
        time_us = event.get("time_us")
        if isinstance(time_us, bool) or not isinstance(time_us, int):
            log.warning("jetstream event without time_us; skipped")
            return None
        delivered = None
        uri = _created_post_uri(event)
        if uri and uri not in self._seen:
            commit = event["commit"]
            if self.match(event["did"], commit["record"]):
                delivered = RawPost(external_id=uri, payload={"source": "jetstream", "item": event})
                try:
                    self.on_post(delivered)
                except Exception as exc:
                    # Neither the cursor nor the seen set moves: the event comes again after reconnecting.
                    raise _CallbackFailed(f"on_post failed for {uri}: {exc!r}") from exc
                self.delivered += 1
            self._seen.add(uri)
        if self.cursor is None or time_us > self.cursor:
            self.cursor = time_us
        return delivered

    def _checkpoint(self, force: bool = False) -> None:
        if self.on_cursor is None or self.cursor is None or self.cursor == self._reported:
            return
        now = time.monotonic()
        if not force and now - self._last_report < self.checkpoint_interval:
            return
        self.on_cursor(self.cursor)
        self._reported = self.cursor
        self._last_report = now

    def _host(self) -> str:
        return urlsplit(self.url).hostname or self.url


class _CallbackFailed(Exception):
    pass


def _created_post_uri(event: dict[str, Any]) -> str | None:
    """The at-uri of the post an event creates, or None for anything else."""
    if event.get("kind") != "commit":
        return None
    commit = event.get("commit")
    did = event.get("did")
    if not isinstance(commit, dict) or not isinstance(did, str) or not did.startswith("did:"):
        return None
    collection = commit.get("collection")
    if commit.get("operation") != "create" or collection not in (POST_COLLECTION, REPOST_COLLECTION):
        return None
    rkey = commit.get("rkey")
    if not isinstance(rkey, str) or not rkey or "/" in rkey or not isinstance(commit.get("record"), dict):
        return None
    return f"at://{did}/{collection}/{rkey}"


def _as_http(url: str) -> str:
    parts = urlsplit(url)
    scheme = {"wss": "https", "ws": "http"}.get(parts.scheme, parts.scheme)
    return urlunsplit((scheme, parts.netloc, parts.path, "", ""))


__all__ = ["DEFAULT_URL", "JetstreamConsumer", "PostFilter", "post_uri"]
