"""The X filtered stream: keep the stream's rules in line with the listening rules, and consume it.

    stream = FilteredStream(account_config)
    stream.sync_rules()                                   # settings["listening_rules"] -> X's rules
    cursor = stream.consume(on_post, stop_event, cursor)  # returns when stop_event is set

`consume` reads GET /2/tweets/search/stream (newline-delimited JSON, "\\r\\n" keep-alives every
20 seconds) and reconnects as X documents (docs.x.com/x-api/fundamentals/handling-disconnections):
at once after an established connection drops; then, for network errors, 250 ms longer each try up
to 16 s; for HTTP errors, from 5 s doubling up to 320 s; for 429, from one minute doubling. 401 and
403 raise PermanentError (the credentials or the plan are wrong: retrying will not help).

No post is lost or handled twice:
- A post counts as handled only once `on_post(RawPost)` has returned. If it raises, the same post is
  offered again (1 s doubling to 60 s) before anything else is read, until it succeeds or stop is set.
- After every reconnect and at start-up with a cursor, the posts the stream may have missed are read
  from GET /2/tweets/search/recent with since_id a minute before the newest handled post (the stream
  does not deliver strictly in id order), one query per rule; `stream_backfill_minutes` (1-5, for
  plans that have it) also asks X to replay the gap on the stream itself.
- Anything delivered twice (redelivery, backfill, recovery overlap) is dropped by id: the ids of the
  last RECENT_IDS handled posts are kept, and travel in the cursor across restarts.

The cursor: {"since_id": newest handled id, "recent": [handled ids, oldest first],
"recover_from": id to recover from at the next connect, when a recovery could not finish}.

Payloads are the stream's own messages, {"data", "includes", "matching_rules"}, which is also what
XConnector.fetch stores for listening hits, so both read the same through XConnector.normalize.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import requests
import tweepy
import urllib3

from hubbub.connectors.base import AccountConfig, PermanentError, RawPost, TransientError
from hubbub.connectors.x.connector import (
    TWEET_EXPANSIONS,
    TWEET_FIELDS,
    USER_FIELDS,
    XConnector,
    id_key,
    listening_rules,
    snowflake_at,
    snowflake_before,
    tweet_payload,
)
from hubbub.lib.safehttp import BlockedAddress

log = logging.getLogger(__name__)

RECENT_IDS = 2000
# How far before the newest handled post recovery searches (out-of-order delivery).
RECOVERY_MARGIN_SECONDS = 60.0
RECOVERY_MAX_PAGES = 5
RECENT_SEARCH_SPAN = dt.timedelta(days=7) - dt.timedelta(minutes=5)
# X sends a keep-alive every 20 s; a little longer without any byte means the connection is dead.
READ_TIMEOUT = 25.0
CONNECT_TIMEOUT = 10.0
# A post with its expansions is a few kilobytes; a line this long is a broken or hostile stream.
MAX_LINE_BYTES = 1 << 20


@dataclass
class Backoff:
    """X's documented reconnect waits. `scale` shrinks them all (tests); `waits` records each one."""

    network_step: float = 0.25
    network_max: float = 16.0
    http_start: float = 5.0
    http_max: float = 320.0
    rate_limit_start: float = 60.0
    rate_limit_max: float = 960.0
    handler_start: float = 1.0
    handler_max: float = 60.0
    scale: float = 1.0
    waits: list[tuple[str, float]] = field(default_factory=list)
    _network: float = 0.0
    _http: float = 0.0
    _rate: float = 0.0
    _handler: float = 0.0

    def reset(self) -> None:
        self._network = self._http = self._rate = 0.0

    def next(self, kind: str, at_least: float = 0.0) -> float:
        if kind == "network":
            self._network = min(self._network + self.network_step, self.network_max)
            wait = self._network
        elif kind == "http":
            self._http = min(self._http * 2 if self._http else self.http_start, self.http_max)
            wait = self._http
        elif kind == "rate_limit":
            self._rate = min(self._rate * 2 if self._rate else self.rate_limit_start, self.rate_limit_max)
            wait = max(self._rate, at_least)
        elif kind == "handler":
            self._handler = min(self._handler * 2 if self._handler else self.handler_start, self.handler_max)
            wait = self._handler
        else:
            # "reconnect": an established connection dropped. At once the first time; should the
            # new connection drop again before delivering anything, 250 ms longer each time.
            wait = self._network
            self._network = min(self._network + self.network_step, self.network_max)
        self.waits.append((kind, wait))
        return wait * self.scale

    def handler_ok(self) -> None:
        self._handler = 0.0


@dataclass
class RuleSync:
    added: list[dict[str, str]] = field(default_factory=list)
    deleted: list[dict[str, str]] = field(default_factory=list)
    kept: list[dict[str, str]] = field(default_factory=list)
    errors: list[dict[str, Any]] = field(default_factory=list)


def sync_rules(client: tweepy.StreamingClient, wanted: dict[str, str], prefix: str = "") -> RuleSync:
    """Make the stream's rules (those whose tag starts with `prefix`) exactly `wanted` ({tag: value}).

    Only the differences are sent: rules already there with the same tag and value stay (X would
    refuse them as DuplicateRule, and re-adding loses nothing but quota); unwanted ones are deleted
    first, so a rule whose tag changed can be added again under its new tag. Rules of other prefixes
    (other brands sharing the X app) are left alone. Refused rules come back in `errors`.
    """
    result = RuleSync()
    current = [r for r in _rules_data(_json(client.get_rules())) if str(r.get("tag") or "").startswith(prefix)]
    wanted_pairs = {(tag, value) for tag, value in wanted.items()}
    to_delete = []
    present = set()
    for rule in current:
        pair = (str(rule.get("tag") or ""), str(rule.get("value") or ""))
        if pair in wanted_pairs and pair not in present:
            present.add(pair)
            result.kept.append(rule)
        else:
            to_delete.append(rule)
    if to_delete:
        body = _json(client.delete_rules([str(r["id"]) for r in to_delete]))
        result.errors += body.get("errors") or []
        result.deleted = to_delete
    to_add = [tweepy.StreamRule(value=value, tag=tag) for tag, value in wanted.items() if (tag, value) not in present]
    if to_add:
        body = _json(client.add_rules(to_add))
        result.added = _rules_data(body)
        result.errors += body.get("errors") or []
    for error in result.errors:
        log.warning("X refused a stream rule change: %s", error)
    return result


def _json(response: Any) -> dict[str, Any]:
    if isinstance(response, requests.Response):
        response = response.json()
    return response if isinstance(response, dict) else {}


def _rules_data(body: dict[str, Any]) -> list[dict[str, Any]]:
    data = body.get("data")
    return [r for r in data if isinstance(r, dict) and r.get("id")] if isinstance(data, list) else []


def _lines(response: requests.Response, limit: int) -> Iterator[bytes]:
    """The stream's lines as they arrive; a line longer than `limit` drops the connection rather
    than growing in memory (the recovery after the reconnect reads what it held)."""
    pending = bytearray()
    for chunk in response.iter_content(chunk_size=512):
        pending += chunk
        # Split only when the chunk ends a line, so a long line is not scanned again per chunk.
        if b"\n" in chunk:
            *lines, rest = bytes(pending).split(b"\n")
            yield from lines
            pending = bytearray(rest)
        if len(pending) > limit:
            raise _Reconnect("reconnect", f"X sent a line longer than {limit} bytes")
    if pending:
        yield bytes(pending)


class _Reconnect(Exception):
    def __init__(self, kind: str, message: str, at_least: float = 0.0):
        super().__init__(message)
        self.kind = kind
        self.at_least = at_least


class FilteredStream:
    """One brand's consumer of the app's filtered stream (run one per X app; see the module notes)."""

    def __init__(
        self,
        config: AccountConfig,
        *,
        backoff: Backoff | None = None,
        read_timeout: float = READ_TIMEOUT,
        recover: bool = True,
        checkpoint_every: float = 5.0,
    ):
        self.connector = XConnector(config)
        self.config = config
        settings = config.settings
        # Tags are namespaced by account so brands sharing one X app do not delete each other's rules.
        self.prefix = str(settings.get("stream_rule_prefix") or f"hubbub:{self.connector.handle.lower()}:")
        self.backfill_minutes = int(settings.get("stream_backfill_minutes") or 0)
        self.backoff = backoff or Backoff()
        self.read_timeout = read_timeout
        self.recover = recover
        self.checkpoint_every = checkpoint_every
        bearer = config.credentials.get("bearer_token") or ""
        if not bearer:
            raise PermanentError("the X filtered stream needs an app-only bearer token")
        self.rules_client = tweepy.StreamingClient(bearer, return_type=dict)
        self.rules_client.session = self.connector.session
        self._bearer = bearer
        self._response: requests.Response | None = None
        self._lock = threading.Lock()
        self._recent: OrderedDict[str, None] = OrderedDict()
        self.cursor: dict[str, Any] = {}
        self.duplicates = 0
        self._checkpoint: Callable[[dict[str, Any]], Any] | None = None
        self._last_checkpoint = 0.0
        # Posts handled since the last checkpoint that was saved.
        self._unsaved = False

    # -- rules ------------------------------------------------------------------------------

    def sync_rules(self, wanted: dict[str, str] | None = None) -> RuleSync:
        """Make X's rules for this account match `wanted` (default: settings["listening_rules"])."""
        rules = wanted if wanted is not None else listening_rules(self.config.settings.get("listening_rules"))
        tagged = {f"{self.prefix}{tag}": value for tag, value in rules.items()}
        try:
            return sync_rules(self.rules_client, tagged, self.prefix)
        except tweepy.errors.TweepyException as exc:
            raise self._translate(exc) from exc
        except BlockedAddress as exc:
            raise PermanentError(f"refusing to connect to {self.connector.base_url}: {exc}") from exc
        except requests.RequestException as exc:
            raise TransientError(f"cannot reach X to sync stream rules: {exc}") from exc

    def _current_rules(self) -> dict[str, str]:
        body = _json(self.rules_client.get_rules())
        return {
            str(r.get("tag") or r["id"]): str(r["value"])
            for r in _rules_data(body)
            if str(r.get("tag") or "").startswith(self.prefix)
        }

    # -- consuming --------------------------------------------------------------------------

    def consume(
        self,
        on_post: Callable[[RawPost], Any],
        stop_event: threading.Event,
        cursor: dict[str, Any] | None = None,
        *,
        checkpoint: Callable[[dict[str, Any]], Any] | None = None,
        on_error: Callable[[str], Any] | None = None,
    ) -> dict[str, Any]:
        """Deliver stream posts to `on_post` until `stop_event` is set; return the cursor to store.

        `checkpoint(cursor)`, if given, is called at most every `checkpoint_every` seconds and at the
        end; `on_error(message)` after every connection that failed (for the account's health).
        Raises PermanentError when X refuses the credentials or the request.
        """
        self.cursor = {k: v for k, v in (cursor or {}).items() if k in ("since_id", "recent", "recover_from")}
        self._recent = OrderedDict((str(i), None) for i in self.cursor.get("recent") or [])
        if not self.connector.user_id:
            try:
                self.connector.brand_id()
            except TransientError as exc:
                log.warning("could not look up the brand's X id yet: %s", exc)
        self._checkpoint = checkpoint
        self._last_checkpoint = time.monotonic()
        done = threading.Event()
        watcher = threading.Thread(target=self._watch, args=(stop_event, done), name="x-stream-stop", daemon=True)
        watcher.start()
        connected_before = False
        try:
            while not stop_event.is_set():
                try:
                    self._connect_and_read(on_post, stop_event, connected_before)
                    kind, at_least = "reconnect", 0.0
                except _Reconnect as exc:
                    kind, at_least = exc.kind, exc.at_least
                    log.warning("X stream: %s", exc)
                    if on_error and not stop_event.is_set():
                        on_error(f"X stream: {exc}")
                if kind == "reconnect":
                    connected_before = True
                if stop_event.is_set():
                    break
                self._maybe_checkpoint()
                wait = self.backoff.next(kind, at_least)
                if wait and stop_event.wait(wait):
                    break
        finally:
            done.set()
            self._close_response()
        final = self.snapshot()
        if checkpoint:
            checkpoint(final)
        return final

    def _maybe_checkpoint(self) -> None:
        if self._checkpoint and time.monotonic() - self._last_checkpoint >= self.checkpoint_every:
            self._last_checkpoint = time.monotonic()
            # A checkpoint that returns False was not saved: try again at the next keep-alive.
            self._unsaved = self._checkpoint(self.snapshot()) is False

    def _mark_unsaved(self) -> None:
        self._unsaved = True
        self._maybe_checkpoint()

    def snapshot(self) -> dict[str, Any]:
        cursor = dict(self.cursor)
        cursor["recent"] = list(self._recent)[-RECENT_IDS:]
        return cursor

    def close(self) -> None:
        """Close the open connection (from another thread) so a blocked read returns at once."""
        self._close_response()

    def _watch(self, stop_event: threading.Event, done: threading.Event) -> None:
        # Closing the response from here unblocks a read waiting for the next keep-alive.
        while not done.is_set():
            if stop_event.wait(0.1):
                self._close_response()
                return

    def _close_response(self) -> None:
        with self._lock:
            response, self._response = self._response, None
        if response is not None:
            try:
                response.close()
            except Exception:  # noqa: BLE001 - closing a dead socket may fail in many ways
                log.debug("closing the X stream response failed", exc_info=True)

    def _connect_and_read(
        self,
        on_post: Callable[[RawPost], Any],
        stop_event: threading.Event,
        connected_before: bool,
    ) -> None:
        params: dict[str, str] = {
            "expansions": ",".join(TWEET_EXPANSIONS),
            "tweet.fields": ",".join(TWEET_FIELDS),
            "user.fields": ",".join(USER_FIELDS),
        }
        if self.backfill_minutes and (connected_before or self.cursor.get("since_id")):
            params["backfill_minutes"] = str(max(1, min(5, self.backfill_minutes)))
        url = f"{self.connector.base_url}/2/tweets/search/stream"
        try:
            response = self.connector.session.get(
                url,
                params=params,
                headers={"Authorization": f"Bearer {self._bearer}"},
                stream=True,
                timeout=(CONNECT_TIMEOUT, self.read_timeout),
            )
        except BlockedAddress as exc:
            raise PermanentError(f"refusing to connect to {self.connector.base_url}: {exc}") from exc
        except requests.RequestException as exc:
            raise _Reconnect("network", f"cannot connect: {exc}") from exc
        with self._lock:
            self._response = response
        if stop_event.is_set():
            self._close_response()
            return
        if response.status_code != 200:
            self._refuse(response)
        log.info("X stream connected")
        if self.recover and (connected_before or self.cursor.get("since_id") or self.cursor.get("recover_from")):
            self._recover(on_post, stop_event)
        healthy = False
        try:
            for line in _lines(response, MAX_LINE_BYTES):
                if stop_event.is_set():
                    return
                if not healthy:
                    # Reset only once the stream has delivered something: a server that accepts
                    # and drops at once must not be hammered without pause.
                    self.backoff.reset()
                    healthy = True
                if not line or not line.strip():
                    # A keep-alive: a quiet stream still saves the cursor of its last posts.
                    if self._unsaved:
                        self._maybe_checkpoint()
                    continue
                self._handle_line(line, on_post, stop_event)
        except (
            requests.ConnectionError,
            requests.Timeout,
            requests.exceptions.ChunkedEncodingError,
            urllib3.exceptions.ProtocolError,
            urllib3.exceptions.ReadTimeoutError,
            AttributeError,  # urllib3 reading from a response closed by another thread
        ) as exc:
            if stop_event.is_set():
                return
            raise _Reconnect("reconnect", f"connection dropped: {exc}") from exc
        finally:
            self._close_response()
        if not stop_event.is_set():
            raise _Reconnect("reconnect", "X ended the stream")

    def _refuse(self, response: requests.Response) -> None:
        status = response.status_code
        try:
            body = response.json()
        except ValueError:
            body = {}
        self._close_response()
        detail = body.get("detail") or body.get("title") or response.reason if isinstance(body, dict) else ""
        if status in (401, 403):
            raise PermanentError(f"X refused the stream ({status}): {detail}")
        if status in (400, 404):
            raise PermanentError(f"X rejected the stream request ({status}): {detail}", affects_account=False)
        if status == 429:
            reset = response.headers.get("x-rate-limit-reset")
            at_least = max(0.0, float(reset) - time.time()) if reset and reset.isdigit() else 0.0
            raise _Reconnect("rate_limit", f"429 {detail}", at_least=at_least)
        raise _Reconnect("http", f"HTTP {status}: {detail}")

    def _handle_line(self, line: bytes, on_post: Callable[[RawPost], Any], stop_event: threading.Event) -> None:
        try:
            message = json.loads(line)
        except ValueError:
            # Only a cut-off line is unreadable; the recovery after the reconnect covers it.
            log.warning("X stream sent a line that is not JSON (%d bytes)", len(line))
            return
        if not isinstance(message, dict):
            return
        data = message.get("data")
        if isinstance(data, dict) and data.get("id"):
            payload = {
                "data": data,
                "includes": message.get("includes") or {},
                "matching_rules": message.get("matching_rules") or [],
            }
            self._deliver(str(data["id"]), payload, on_post, stop_event)
            return
        errors = message.get("errors") or []
        if any(
            isinstance(e, dict) and (e.get("disconnect_type") or "disconnect" in str(e.get("title"))) for e in errors
        ):
            raise _Reconnect("reconnect", f"X disconnected the stream: {errors}")
        if errors:
            log.warning("X stream errors: %s", errors)

    def _deliver(
        self, tweet_id: str, payload: dict[str, Any], on_post: Callable[[RawPost], Any], stop_event: threading.Event
    ) -> bool:
        """Hand one post to on_post unless already handled. True once handled (or a duplicate)."""
        if tweet_id in self._recent:
            self.duplicates += 1
            return True
        if self.connector.user_id and str(payload["data"].get("author_id")) == self.connector.user_id:
            self._mark(tweet_id)  # the brand's own post, as XConnector.fetch skips them
            return True
        post = RawPost(external_id=tweet_id, payload=payload)
        while True:
            try:
                on_post(post)
            except Exception as exc:  # noqa: BLE001 - whatever the handler hit, the post is not handled
                wait = self.backoff.next("handler")
                log.warning("X stream: on_post failed for %s (%s); retrying in %.1fs", tweet_id, exc, wait)
                if stop_event.wait(wait):
                    # Not handled: make sure the next start recovers from before this post.
                    points = [snowflake_before(tweet_id, 1), self.cursor.get("recover_from") or ""]
                    self.cursor["recover_from"] = min((p for p in points if p), key=id_key)
                    return False
                continue
            self.backoff.handler_ok()
            self._mark(tweet_id)
            return True

    def _mark(self, tweet_id: str) -> None:
        self._recent[tweet_id] = None
        while len(self._recent) > RECENT_IDS:
            self._recent.popitem(last=False)
        since = self.cursor.get("since_id")
        if not since or id_key(tweet_id) > id_key(str(since)):
            self.cursor["since_id"] = tweet_id
        self._mark_unsaved()

    def _recover(self, on_post: Callable[[RawPost], Any], stop_event: threading.Event) -> None:
        """Read what the stream may have missed from recent search, one query per rule."""
        points = [str(p) for p in (self.cursor.get("recover_from"), self.cursor.get("since_id")) if p]
        if not points:
            return
        since = snowflake_before(min(points, key=id_key), RECOVERY_MARGIN_SECONDS)
        # Recent search covers seven days and refuses an older since_id; older gaps are beyond reach.
        oldest = snowflake_at(dt.datetime.now(dt.UTC) - RECENT_SEARCH_SPAN)
        if id_key(since) < id_key(oldest):
            log.warning(
                "X stream was away for more than %s; recovering only the last %s",
                RECENT_SEARCH_SPAN,
                RECENT_SEARCH_SPAN,
            )
            since = oldest
        try:
            rules = self._current_rules()
        except (tweepy.errors.TweepyException, requests.RequestException) as exc:
            self.cursor["recover_from"] = min(points, key=id_key)
            log.warning("X stream recovery postponed, cannot read the rules: %s", exc)
            return
        client, user_auth = self.connector._read_client()
        try:
            for tag, value in rules.items():
                token = None
                for _ in range(RECOVERY_MAX_PAGES):
                    params: dict[str, Any] = {
                        "query": value,
                        "since_id": since,
                        "max_results": 100,
                        "expansions": TWEET_EXPANSIONS,
                        "tweet_fields": TWEET_FIELDS,
                        "user_fields": USER_FIELDS,
                        "user_auth": user_auth,
                    }
                    if token:
                        params["next_token"] = token
                    body = self.connector._call("GET /2/tweets/search/recent", client.search_recent_tweets, **params)
                    users = {str(u["id"]): u for u in (body.get("includes") or {}).get("users") or []}
                    tweets = {str(t["id"]): t for t in (body.get("includes") or {}).get("tweets") or []}
                    # Oldest first, as the stream would have sent them.
                    for tweet in reversed([t for t in body.get("data") or [] if isinstance(t, dict)]):
                        payload = tweet_payload(tweet, users, tweets)
                        payload["matching_rules"] = [{"id": "", "tag": tag}]
                        if not self._deliver(str(tweet["id"]), payload, on_post, stop_event):
                            return
                    token = (body.get("meta") or {}).get("next_token")
                    if not token or stop_event.is_set():
                        break
        except (TransientError, PermanentError) as exc:
            # The stream itself still works; try the recovery again at the next connect or start.
            self.cursor["recover_from"] = min(points, key=id_key)
            log.warning("X stream recovery postponed: %s", exc)
            return
        self.cursor.pop("recover_from", None)

    def _translate(self, exc: tweepy.errors.TweepyException) -> Exception:
        if isinstance(exc, tweepy.errors.TooManyRequests):
            reset = exc.reset_time
            return TransientError(
                "X rate limit on stream rules", retry_after=max(1.0, reset - time.time()) if reset else None
            )
        if isinstance(exc, tweepy.errors.Unauthorized | tweepy.errors.Forbidden):
            return PermanentError(f"X refused the stream rules request: {exc}")
        if isinstance(exc, tweepy.errors.BadRequest):
            return PermanentError(f"X rejected the stream rules: {exc}", affects_account=False)
        return TransientError(f"X failed on stream rules: {exc}")
