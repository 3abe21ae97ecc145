"""X (Twitter) API v2: mentions, direct messages and keyword listening in; replies and DMs out, through tweepy.

Sources and their cursor keys; each value is {"since_id": newest id taken} or, while a walk through
newer items is unfinished, {"since_id", "pending": newest id of the walk, "token": next page token}:

    "mentions"        GET /2/users/:id/mentions (since_id; newest first; pagination_token)
    "dm"              GET /2/dm_events?event_types=MessageCreate (no since_id on X: read newest first
                      until an id <= since_id); needs user-context credentials
    "search:<tag>"    GET /2/tweets/search/recent?query=<rule> (since_id, next_token): the polling
                      fallback for the filtered stream, one source per listening rule

plus "user_id", the brand's own user id once looked up. A first fetch backfills the newest
`backfill_limit` items of each source and no more; later fetches walk forward without gaps and stop
after `backfill_limit` items per source with `more=True`, resuming from the stored page token.

Payloads are one post as X's own single-object answer shapes it, so a stored event reads like
GET /2/tweets/:id with expansions:

    tweet   {"data": <tweet>, "includes": {"users": [author, ...], "tweets": [referenced, ...]},
             "matching_rules": [{"id", "tag"}]}                       # rules only for listening hits
    DM      {"data": <dm event, event_type "MessageCreate">, "includes": {"users": [sender, ...]}}

External ids: the tweet id for tweets, "dm:<event id>" for direct messages.

Credentials (AccountConfig.credentials):
    "bearer_token"                       app-only token: mentions, search, stream and its rules
    "consumer_key", "consumer_secret",
    "access_token", "access_token_secret"  OAuth 1.0a user context: DMs and posting (preferred: it does
                                         not expire)
    "user_access_token"                  or an OAuth 2.0 user-context token (tweet.write, dm.read,
                                         dm.write, users.read); it expires after two hours and this
                                         connector does not refresh it
Settings: "user_id" (the brand's id; looked up by handle otherwise), "backfill_limit" (default 100),
"listening_rules" ({tag: rule} or a list of rules), "listening_via" ("search", the default, or
"stream" when a FilteredStream worker consumes the rules and fetch must not search),
"direct_messages" (default True when user-context credentials are present), "dedupe_window_hours"
(default 24), "allow_private".

Publishing: X has no idempotency key. Before posting, publish() looks for the same text already
posted by the brand (a reply to the same post in GET /2/users/:id/tweets?since_id=<parent>, or a
message in the DM conversation) within the dedupe window, and returns that instead of posting again;
a 403 "duplicate content" answer triggers the same lookup. The cost is one read per reply.
"""

from __future__ import annotations

import copy
import datetime as dt
import logging
import math
import re
import threading
import time
from collections.abc import Callable, Iterable
from typing import Any

import requests
import tweepy
from tweepy.errors import (
    BadRequest,
    Forbidden,
    HTTPException,
    NotFound,
    TooManyRequests,
    TwitterServerError,
    Unauthorized,
)

from hubbub.connectors.base import (
    AccountConfig,
    ConnectorError,
    FetchResult,
    MalformedEvent,
    PermanentError,
    Post,
    Published,
    RawPost,
    Reply,
    TransientError,
)
from hubbub.lib.safehttp import USER_AGENT, BlockedAddress, safe_session

log = logging.getLogger(__name__)

DEFAULT_BASE_URL = "https://api.x.com"
# The hosts tweepy writes into its request URLs; rewritten to the account's base URL.
TWEEPY_HOSTS = ("https://api.twitter.com", "https://api.x.com")
DEFAULT_LIMIT = 100
DEFAULT_DEDUPE_HOURS = 24.0
# Allowance for the difference between our clock and X's when making an id from a time.
CLOCK_MARGIN = dt.timedelta(minutes=5)
TWEET_FIELDS = [
    "author_id",
    "created_at",
    "conversation_id",
    "in_reply_to_user_id",
    "lang",
    "referenced_tweets",
    "entities",
    "note_tweet",
    "public_metrics",
]
USER_FIELDS = ["name", "username", "public_metrics", "verified", "protected"]
TWEET_EXPANSIONS = ["author_id", "referenced_tweets.id", "referenced_tweets.id.author_id"]
DM_FIELDS = ["id", "event_type", "text", "sender_id", "dm_conversation_id", "created_at", "participant_ids"]
DM_EXPANSIONS = ["sender_id", "participant_ids"]
# Problem types that mean the credentials, not the request, are wrong.
_ACCOUNT_PROBLEMS = ("unsupported-authentication", "client-forbidden", "client-not-enrolled")
_URL = re.compile(r"https?://\S+")
_LEADING_MENTIONS = re.compile(r"^(?:@\w{1,15}\s+)+")


class RateLimited(TransientError):
    """An X rate limit is used up; `retry_after` is the time until x-rate-limit-reset."""


class _StaleToken(Exception):
    """A stored pagination token was refused (400)."""


def snowflake_time(tweet_id: str) -> dt.datetime | None:
    """When a snowflake id was made, or None if it is not one."""
    if not tweet_id.isdigit() or int(tweet_id) < (1 << 32):
        return None
    return dt.datetime.fromtimestamp(((int(tweet_id) >> 22) + 1288834974657) / 1000, dt.UTC)


def snowflake_at(moment: dt.datetime) -> str:
    """The smallest snowflake id made at `moment`."""
    return str(max(1, int(moment.timestamp() * 1000) - 1288834974657) << 22)


def snowflake_before(tweet_id: str, seconds: float) -> str:
    """The smallest snowflake id made `seconds` before `tweet_id` (the id itself if it is no snowflake)."""
    if snowflake_time(tweet_id) is None:
        return tweet_id
    ms = (int(tweet_id) >> 22) - int(seconds * 1000)
    return str(max(1, ms) << 22)


def id_key(value: str) -> tuple[int, str]:
    return (len(value), value)


class _RebasedSession(requests.Session):
    """A safehttp session that sends tweepy's fixed-host URLs to the account's base URL instead.

    Rewritten in `request`, before requests prepares the request, so an OAuth 1.0a signature is
    computed over the URL actually sent.
    """

    def __init__(self, base_url: str, allow_private: bool):
        super().__init__()
        guarded = safe_session(allow_private=allow_private)
        for prefix, adapter in guarded.adapters.items():
            self.mount(prefix, adapter)
        self.headers.update(guarded.headers)
        self.max_redirects = guarded.max_redirects
        self.base_url = base_url.rstrip("/")

    def rebase(self, url: str) -> str:
        for host in TWEEPY_HOSTS:
            if url.startswith(host + "/"):
                return self.base_url + url[len(host) :]
        return url

    def request(self, method: str | bytes, url: str | bytes, *args: Any, **kwargs: Any) -> requests.Response:  # type: ignore[override]
        return super().request(method, self.rebase(str(url)), *args, **kwargs)


def route_key(method: str, path: str) -> str:
    """'GET /2/users/:id/mentions': the rate-limit bucket of a request."""
    if path.startswith("/2/users/by/username/"):
        return f"{method} /2/users/by/username/:username"
    return f"{method} " + re.sub(r"(?<!^)/\d+(?=/|$)", "/:id", path)


class XConnector:
    network = "twitter"

    def __init__(self, config: AccountConfig):
        self.config = config
        settings = config.settings
        creds = config.credentials
        self._config_error = ""
        try:
            self.limit = max(1, int(settings.get("backfill_limit", DEFAULT_LIMIT)))
        except (TypeError, ValueError):
            self.limit = DEFAULT_LIMIT
            self._config_error = f"backfill_limit {settings.get('backfill_limit')!r} is not a number"
        try:
            self.dedupe_window = dt.timedelta(hours=float(settings.get("dedupe_window_hours", DEFAULT_DEDUPE_HOURS)))
        except (TypeError, ValueError):
            self.dedupe_window = dt.timedelta(hours=DEFAULT_DEDUPE_HOURS)
        self.rules = listening_rules(settings.get("listening_rules"))
        self.listening_via = settings.get("listening_via", "search")
        self.handle = config.handle.strip().lstrip("@")
        self.base_url = (config.base_url or DEFAULT_BASE_URL).rstrip("/")
        if "://" not in self.base_url:
            self.base_url = f"https://{self.base_url}"
        self.allow_private = bool(settings.get("allow_private", False))
        self.session = self._new_session()
        self.rate_limits: dict[str, tuple[int, float]] = {}
        self._rate_lock = threading.Lock()

        bearer = creds.get("bearer_token") or ""
        oauth1 = [
            creds.get(k) or "" for k in ("consumer_key", "consumer_secret", "access_token", "access_token_secret")
        ]
        user_token = creds.get("user_access_token") or ""
        # Reads that work with an app-only token; without one, they use the user context.
        self.reader: tweepy.Client | None = None
        # User context (OAuth 1.0a, or an OAuth 2.0 user token sent as a bearer token).
        self.writer: tweepy.Client | None = None
        self._writer_user_auth = False
        if all(oauth1):
            self.writer = self._client(
                consumer_key=oauth1[0], consumer_secret=oauth1[1], access_token=oauth1[2], access_token_secret=oauth1[3]
            )
            self._writer_user_auth = True
        elif user_token:
            self.writer = self._client(bearer_token=user_token)
        if bearer:
            self.reader = self._client(bearer_token=bearer)
        if self.reader is None and self.writer is None:
            self._config_error = "the X account has no bearer token or user-context credentials"
        self.direct_messages = bool(settings.get("direct_messages", self.writer is not None))
        self.user_id: str = str(settings.get("user_id") or "")
        self._published: dict[str, Published] = {}
        self._skipped_rules: set[str] = set()

    # -- plumbing ----------------------------------------------------------------------------

    def _new_session(self) -> _RebasedSession:
        session = _RebasedSession(self.base_url, self.allow_private)
        session.hooks["response"].append(self._record_rate_limit)
        return session

    def _client(self, **kwargs: Any) -> tweepy.Client:
        client = tweepy.Client(**kwargs, return_type=requests.Response, wait_on_rate_limit=False)
        client.session = self.session
        client.user_agent = f"{USER_AGENT} tweepy/{tweepy.__version__}"
        return client

    def _record_rate_limit(self, response: requests.Response, *args: Any, **kwargs: Any) -> None:
        remaining = response.headers.get("x-rate-limit-remaining")
        reset = response.headers.get("x-rate-limit-reset")
        if remaining is None or reset is None or response.request is None:
            return
        try:
            value = (int(remaining), float(reset))
        except ValueError:
            return
        path = requests.utils.urlparse(response.request.url or "").path
        with self._rate_lock:
            self.rate_limits[route_key(response.request.method or "GET", path)] = value

    def _retry_after(self, reset: float | None) -> float | None:
        if reset is None:
            return None
        return float(max(1, math.ceil(reset - time.time())))

    def _call(self, route: str, fn: Callable[..., requests.Response], **kwargs: Any) -> dict[str, Any]:
        """Call tweepy for one route and return the JSON body, with errors as ConnectorErrors."""
        with self._rate_lock:
            known = self.rate_limits.get(route)
        if known and known[0] <= 0 and known[1] > time.time():
            raise RateLimited(f"X rate limit for {route} is used up", retry_after=self._retry_after(known[1]))
        try:
            response = fn(**kwargs)
            body = response.json() if response.content else {}
        except TooManyRequests as exc:
            reset = exc.reset_time if exc.reset_time is not None else None
            raise RateLimited(f"X rate limit reached for {route}", retry_after=self._retry_after(reset)) from exc
        except Unauthorized as exc:
            raise PermanentError(f"X refused the credentials (401): {_detail(exc)}") from exc
        except Forbidden as exc:
            raise PermanentError(f"X refused {route} (403): {_detail(exc)}", affects_account=True) from exc
        except (BadRequest, NotFound) as exc:
            raise PermanentError(f"X rejected {route} ({exc.response.status_code}): {_detail(exc)}") from exc
        except TwitterServerError as exc:
            raise TransientError(f"X failed on {route} ({exc.response.status_code}): {_detail(exc)}") from exc
        except HTTPException as exc:
            raise TransientError(f"X answered {route} with {exc.response.status_code}: {_detail(exc)}") from exc
        except BlockedAddress as exc:
            raise PermanentError(f"refusing to connect to {self.base_url}: {exc}") from exc
        except (requests.RequestException, ValueError) as exc:
            raise TransientError(f"cannot reach X ({route}): {exc}") from exc
        if not isinstance(body, dict):
            raise TransientError(f"X answered {route} with something other than a JSON object")
        return body

    def _check_config(self) -> None:
        if self._config_error:
            raise PermanentError(f"X account misconfigured: {self._config_error}")

    def _read_client(self) -> tuple[tweepy.Client, bool]:
        if self.reader is not None:
            return self.reader, False
        assert self.writer is not None
        return self.writer, self._writer_user_auth

    def _write_client(self) -> tuple[tweepy.Client, bool]:
        if self.writer is None:
            raise PermanentError("posting and direct messages on X need user-context credentials")
        return self.writer, self._writer_user_auth

    def brand_id(self) -> str:
        """The brand's user id: from settings, or looked up once by handle."""
        if self.user_id:
            return self.user_id
        client, user_auth = self._read_client()
        if self.handle:
            body = self._call(
                "GET /2/users/by/username/:username", client.get_user, username=self.handle, user_auth=user_auth
            )
        else:
            client, user_auth = self._write_client()
            body = self._call("GET /2/users/me", client.get_me, user_auth=user_auth)
        data = body.get("data")
        if not isinstance(data, dict) or not data.get("id"):
            raise PermanentError(f"X has no user @{self.handle}: {_errors(body)}")
        self.user_id = str(data["id"])
        return self.user_id

    def user_id_for(self, username: str) -> str:
        """The user id of @username (for private replies)."""
        client, user_auth = self._read_client()
        body = self._call("GET /2/users/by/username/:username", client.get_user, username=username, user_auth=user_auth)
        data = body.get("data")
        if not isinstance(data, dict) or not data.get("id"):
            raise PermanentError(f"X has no user @{username}: {_errors(body)}", affects_account=False)
        return str(data["id"])

    # -- fetch -------------------------------------------------------------------------------

    def fetch(self, cursor: dict[str, Any]) -> FetchResult:
        self._check_config()
        new_cursor = copy.deepcopy(cursor)
        if not self.user_id and new_cursor.get("user_id"):
            self.user_id = str(new_cursor["user_id"])
        new_cursor["user_id"] = self.brand_id()
        found: dict[str, RawPost] = {}
        more = False
        sources: list[tuple[str, Callable[..., dict[str, Any]], bool]] = [
            ("mentions", self._mentions_page, True),
        ]
        if self.direct_messages and self.writer is not None:
            sources.append(("dm", self._dm_page, False))
        if self.listening_via != "stream":
            for tag, value in self.rules.items():
                if tag not in self._skipped_rules:
                    sources.append((f"search:{tag}", self._search_fetcher(tag, value), True))
        try:
            for key, page_fn, server_since in sources:
                try:
                    more = self._drain(key, page_fn, server_since, new_cursor, found) or more
                except PermanentError as exc:
                    if not key.startswith("search:") or isinstance(exc.__cause__, Unauthorized):
                        raise
                    # A rule X refuses as a query, or a plan without search, must not hold up
                    # mentions and DMs: the rule is skipped until the connector is rebuilt.
                    log.warning("listening search %s skipped: %s", key, exc)
                    self._skipped_rules.add(key.split(":", 1)[1])
        except RateLimited:
            if not found:
                raise
            log.info("X rate limit reached after %d posts; returning those", len(found))
            more = False
        posts = sorted(found.values(), key=lambda post: id_key(post.external_id.removeprefix("dm:")))
        return FetchResult(posts=posts, cursor=new_cursor, more=more)

    def _drain(
        self,
        key: str,
        page_fn: Callable[..., dict[str, Any]],
        server_since: bool,
        cursor: dict[str, Any],
        found: dict[str, RawPost],
    ) -> bool:
        """Read one source into `found`, saving cursor[key] page by page. True if it stopped at the limit."""
        state = dict(cursor.get(key) or {})
        since = str(state.get("since_id") or "")
        taken = 0
        if not since:
            # First fetch: the newest `limit` items, and the newest id as the starting point.
            token = None
            newest = ""
            while taken < self.limit:
                body = page_fn(since_id=None, token=token, size=self.limit - taken)
                items = self._keep(body, found, key, since="")
                if items and not newest:
                    newest = max(items, key=id_key)
                taken += len(items)
                token = (body.get("meta") or {}).get("next_token")
                if not token or not items:
                    break
            # With nothing found, start from a made-up id for a few minutes ago (X ids are snowflakes:
            # time-ordered), so the next fetch walks forward instead of backfilling again and
            # dropping whatever arrived in between beyond the backfill cap.
            cursor[key] = {"since_id": newest or snowflake_at(dt.datetime.now(dt.UTC) - CLOCK_MARGIN)}
            return False
        token = state.get("token")
        pending = str(state.get("pending") or "")
        while True:
            try:
                body = page_fn(since_id=since if server_since else None, token=token, size=self.limit - taken)
            except _StaleToken:
                if not token:
                    raise
                # The stored token expired: walk again from since_id (repeats are dropped by external id).
                log.info("X refused a stored page token for %s; restarting from since_id", key)
                token, pending = None, ""
                continue
            items = self._keep(body, found, key, since=since)
            if items and not pending:
                pending = max(items, key=id_key)
            taken += len(items)
            token = (body.get("meta") or {}).get("next_token")
            if not server_since and len(items) < len(_data(body)):
                token = None  # reached ids at or below since_id
            if not token:
                cursor[key] = {"since_id": pending or since}
                return False
            cursor[key] = {"since_id": since, "pending": pending, "token": token}
            if taken >= self.limit:
                return True

    def _keep(self, body: dict[str, Any], found: dict[str, RawPost], key: str, since: str) -> list[str]:
        """Add the page's posts to `found`; return the ids of every item newer than `since` (kept or not)."""
        users = _by_id((body.get("includes") or {}).get("users"))
        tweets = _by_id((body.get("includes") or {}).get("tweets"))
        ids = []
        for item in _data(body):
            if not isinstance(item, dict) or not item.get("id"):
                continue
            item_id = str(item["id"])
            if since and id_key(item_id) <= id_key(since):
                continue
            ids.append(item_id)
            if key == "dm":
                if item.get("event_type") != "MessageCreate" or str(item.get("sender_id")) == self.user_id:
                    continue
                people = [users[u] for u in [item.get("sender_id"), *item.get("participant_ids", [])] if u in users]
                payload: dict[str, Any] = {"data": item, "includes": {"users": _unique(people)}}
                external_id = f"dm:{item_id}"
            else:
                if str(item.get("author_id")) == self.user_id:
                    continue
                payload = tweet_payload(item, users, tweets)
                if key.startswith("search:"):
                    payload["matching_rules"] = [{"id": "", "tag": key.split(":", 1)[1]}]
                external_id = item_id
            existing = found.get(external_id)
            if existing is None:
                found[external_id] = RawPost(external_id=external_id, payload=payload)
            elif payload.get("matching_rules"):
                rules = existing.payload.setdefault("matching_rules", [])
                rules.extend(r for r in payload["matching_rules"] if r not in rules)
        return ids

    def _page_params(self, since_id: str | None, token: str | None, size: int, low: int) -> dict[str, Any]:
        params: dict[str, Any] = {
            "max_results": max(low, min(100, size)),
            "expansions": TWEET_EXPANSIONS,
            "tweet_fields": TWEET_FIELDS,
            "user_fields": USER_FIELDS,
        }
        if since_id:
            params["since_id"] = since_id
        return params

    def _mentions_page(self, since_id: str | None, token: str | None, size: int) -> dict[str, Any]:
        client, user_auth = self._read_client()
        params = self._page_params(since_id, token, size, low=5)
        if token:
            params["pagination_token"] = token
        return self._paged_call(
            "GET /2/users/:id/mentions",
            client.get_users_mentions,
            token,
            id=self.user_id,
            user_auth=user_auth,
            **params,
        )

    def _search_fetcher(self, tag: str, value: str) -> Callable[..., dict[str, Any]]:
        def page(since_id: str | None, token: str | None, size: int) -> dict[str, Any]:
            client, user_auth = self._read_client()
            params = self._page_params(since_id, token, size, low=10)
            if token:
                params["next_token"] = token
            return self._paged_call(
                "GET /2/tweets/search/recent",
                client.search_recent_tweets,
                token,
                query=value,
                user_auth=user_auth,
                **params,
            )

        return page

    def _dm_page(self, since_id: str | None, token: str | None, size: int) -> dict[str, Any]:
        client, user_auth = self._write_client()
        params: dict[str, Any] = {
            "event_types": "MessageCreate",
            "max_results": max(1, min(100, size)),
            "dm_event_fields": DM_FIELDS,
            "expansions": DM_EXPANSIONS,
            "user_fields": USER_FIELDS,
        }
        if token:
            params["pagination_token"] = token
        return self._paged_call(
            "GET /2/dm_events", client.get_direct_message_events, token, user_auth=user_auth, **params
        )

    def _paged_call(self, route: str, fn: Callable[..., requests.Response], token: str | None, **kwargs: Any):
        try:
            return self._call(route, fn, **kwargs)
        except PermanentError as exc:
            if token and isinstance(exc.__cause__, BadRequest):
                raise _StaleToken() from exc
            raise

    # -- normalize ---------------------------------------------------------------------------

    def normalize(self, payload: dict[str, Any]) -> Post:
        if not isinstance(payload, dict):
            raise MalformedEvent(f"an X payload must be a JSON object, not {type(payload).__name__}")
        data = payload.get("data")
        if not isinstance(data, dict):
            raise MalformedEvent("the X payload has no data object")
        item_id = _id(data.get("id"), "id", "item")
        if item_id is None:
            raise MalformedEvent("the X item has no id")
        includes = payload.get("includes") or {}
        if not isinstance(includes, dict):
            raise MalformedEvent(f"X item {item_id}: includes is not an object")
        users = _by_id(includes.get("users"))
        if "event_type" in data:
            return self._normalize_dm(data, item_id, users)
        return self._normalize_tweet(data, item_id, users)

    def _normalize_tweet(self, data: dict[str, Any], tweet_id: str, users: dict[str, dict[str, Any]]) -> Post:
        where = f"tweet {tweet_id}"
        author_id = _id(data.get("author_id"), "author_id", where)
        if author_id is None:
            raise MalformedEvent(f"{where} has no author_id")
        author = users.get(author_id)
        if author is None:
            raise MalformedEvent(f"{where}: its author {author_id} is not in includes.users")
        username = _text(author, "username", where)
        if not username:
            raise MalformedEvent(f"{where}: the author has no username")
        text = _text(data, "text", where, required=True)
        note = data.get("note_tweet")
        if isinstance(note, dict) and isinstance(note.get("text"), str) and note["text"]:
            text = note["text"]  # a long post: "text" holds only the first 280 characters
        in_reply_to = retweet_of = quote_of = None
        references = data.get("referenced_tweets") or []
        if not isinstance(references, list):
            raise MalformedEvent(f"{where}: referenced_tweets is not a list")
        for ref in references:
            if not isinstance(ref, dict):
                continue
            if ref.get("type") == "replied_to":
                in_reply_to = _id(ref.get("id"), "referenced_tweets.id", where)
            elif ref.get("type") == "retweeted":
                # A retweet's text is "RT @author: …", the original's words, not the retweeter's.
                retweet_of = _id(ref.get("id"), "referenced_tweets.id", where)
            elif ref.get("type") == "quoted":
                quote_of = _id(ref.get("id"), "referenced_tweets.id", where)
        language = _text(data, "lang", where)
        return Post(
            external_id=tweet_id,
            author_handle=username,
            author_name=_text(author, "name", where),
            author_external_id=author_id,
            author_followers=_followers(author, where),
            text=_plain(text),
            created_at=_time(data.get("created_at"), where),
            in_reply_to_external_id=in_reply_to,
            is_private=False,
            from_brand=self._is_brand(author_id, username),
            url=f"https://x.com/{username}/status/{tweet_id}",
            language="" if language in ("und", "zxx", "qme", "qst") else language,
            is_repost=retweet_of is not None,
            repost_of_external_id=retweet_of,
            quote_of_external_id=quote_of,
        )

    def _normalize_dm(self, data: dict[str, Any], event_id: str, users: dict[str, dict[str, Any]]) -> Post:
        where = f"DM event {event_id}"
        if data.get("event_type") != "MessageCreate":
            raise MalformedEvent(f"{where} is a {data.get('event_type')!r} event, not a message")
        sender_id = _id(data.get("sender_id"), "sender_id", where)
        if sender_id is None:
            raise MalformedEvent(f"{where} has no sender_id")
        sender = users.get(sender_id)
        if sender is None:
            raise MalformedEvent(f"{where}: its sender {sender_id} is not in includes.users")
        username = _text(sender, "username", where)
        if not username:
            raise MalformedEvent(f"{where}: the sender has no username")
        conversation = _text(data, "dm_conversation_id", where)
        return Post(
            external_id=f"dm:{event_id}",
            author_handle=username,
            author_name=_text(sender, "name", where),
            author_external_id=sender_id,
            author_followers=_followers(sender, where),
            text=_plain(_text(data, "text", where, required=True), entities=False),
            created_at=_time(data.get("created_at"), where),
            is_private=True,
            from_brand=self._is_brand(sender_id, username),
            url=f"https://x.com/messages/{conversation}" if conversation else "",
        )

    def _is_brand(self, user_id: str, username: str) -> bool:
        if self.user_id and user_id == self.user_id:
            return True
        return bool(self.handle) and username.lower() == self.handle.lower()

    # -- publish -----------------------------------------------------------------------------

    def publish(self, reply: Reply) -> Published:
        self._check_config()
        done = self._published.get(reply.idempotency_key)
        if done is not None:
            return done
        if not reply.text.strip():
            raise PermanentError("an X reply needs text", affects_account=False)
        published = self._publish_private(reply) if reply.private else self._publish_public(reply)
        self._published[reply.idempotency_key] = published
        return published

    def _publish_public(self, reply: Reply) -> Published:
        client, user_auth = self._write_client()
        self.brand_id()
        parent = reply.in_reply_to_external_id or None
        if parent and not parent.isdigit():
            raise PermanentError(f"{parent!r} is not a post id to reply to on X", affects_account=False)
        existing = self._find_reply(parent, reply.text)
        if existing is not None:
            log.info("X reply to %s already posted as %s; not posting again", parent, existing.external_id)
            return existing
        try:
            body = self._call(
                "POST /2/tweets",
                client.create_tweet,
                text=reply.text,
                in_reply_to_tweet_id=parent,
                user_auth=user_auth,
            )
        except PermanentError as exc:
            if "duplicate content" in str(exc).lower():
                existing = self._find_reply(parent, reply.text)
                if existing is not None:
                    return existing
            raise _per_reply(exc) from exc
        data = body.get("data") or {}
        if not data.get("id"):
            raise TransientError(f"X accepted the post but sent no id: {_errors(body)}")
        return Published(
            external_id=str(data["id"]), url=f"https://x.com/{self.handle or 'i'}/status/{data['id']}", payload=body
        )

    def _publish_private(self, reply: Reply) -> Published:
        client, user_auth = self._write_client()
        self.brand_id()
        handle = reply.to_handle.strip().lstrip("@")
        if not handle:
            raise PermanentError("a private X reply needs the customer's username (to_handle)", affects_account=False)
        participant = handle[3:] if handle.startswith("id:") else self.user_id_for(handle)
        existing = self._find_dm(participant, reply.text)
        if existing is not None:
            log.info("X message to %s already sent as %s; not sending again", handle, existing.external_id)
            return existing
        try:
            body = self._call(
                "POST /2/dm_conversations/with/:id/messages",
                client.create_direct_message,
                participant_id=participant,
                text=reply.text,
                user_auth=user_auth,
            )
        except PermanentError as exc:
            raise _per_reply(exc) from exc
        data = body.get("data") or {}
        if not data.get("dm_event_id"):
            raise TransientError(f"X accepted the message but sent no event id: {_errors(body)}")
        conversation = data.get("dm_conversation_id") or ""
        return Published(
            external_id=f"dm:{data['dm_event_id']}",
            url=f"https://x.com/messages/{conversation}" if conversation else "",
            payload=body,
        )

    def _recent(self, created_at: Any) -> bool:
        try:
            moment = dt.datetime.fromisoformat(str(created_at))
        except ValueError:
            return True
        return moment >= dt.datetime.now(dt.UTC) - self.dedupe_window

    def _find_reply(self, parent: str | None, text: str) -> Published | None:
        """The brand's post with this text replying to `parent`, made within the dedupe window."""
        client, user_auth = self._read_client()
        params: dict[str, Any] = {
            "max_results": 100,
            "tweet_fields": ["created_at", "referenced_tweets", "note_tweet", "conversation_id"],
        }
        if parent:
            params["since_id"] = parent
        else:
            params["start_time"] = dt.datetime.now(dt.UTC) - self.dedupe_window
        wanted = same_text_key(text)
        token = None
        for _ in range(3):
            if token:
                params["pagination_token"] = token
            body = self._call(
                "GET /2/users/:id/tweets", client.get_users_tweets, id=self.user_id, user_auth=user_auth, **params
            )
            for tweet in _data(body):
                refs = {
                    (r.get("type"), str(r.get("id")))
                    for r in tweet.get("referenced_tweets") or []
                    if isinstance(r, dict)
                }
                if parent and ("replied_to", parent) not in refs:
                    continue
                if not parent and any(kind == "replied_to" for kind, _ in refs):
                    continue
                full = (tweet.get("note_tweet") or {}).get("text") or tweet.get("text") or ""
                if same_text_key(full) == wanted and self._recent(tweet.get("created_at")):
                    tweet_id = str(tweet["id"])
                    return Published(
                        external_id=tweet_id,
                        url=f"https://x.com/{self.handle or 'i'}/status/{tweet_id}",
                        payload={"data": tweet},
                    )
            token = (body.get("meta") or {}).get("next_token")
            if not token:
                return None
        return None

    def _find_dm(self, participant: str, text: str) -> Published | None:
        """The brand's message with this text in the conversation with `participant`, within the window."""
        client, user_auth = self._write_client()
        body = self._call(
            "GET /2/dm_conversations/with/:id/dm_events",
            client.get_direct_message_events,
            participant_id=participant,
            event_types="MessageCreate",
            max_results=50,
            dm_event_fields=DM_FIELDS,
            user_auth=user_auth,
        )
        wanted = same_text_key(text)
        for event in _data(body):
            if str(event.get("sender_id")) != self.user_id or not self._recent(event.get("created_at")):
                continue
            if same_text_key(str(event.get("text") or ""), entities=False) == wanted:
                conversation = event.get("dm_conversation_id") or ""
                return Published(
                    external_id=f"dm:{event['id']}",
                    url=f"https://x.com/messages/{conversation}" if conversation else "",
                    payload={"data": {"dm_conversation_id": conversation, "dm_event_id": str(event["id"])}},
                )
        return None


# -- helpers -----------------------------------------------------------------------------------


def listening_rules(raw: Any) -> dict[str, str]:
    """settings["listening_rules"] as {tag: rule}: a dict as it is, a list of rules tagged by themselves."""
    if not raw:
        return {}
    if isinstance(raw, dict):
        return {str(tag).strip(): str(value).strip() for tag, value in raw.items() if str(value).strip()}
    if isinstance(raw, list | tuple):
        return {str(value).strip(): str(value).strip() for value in raw if str(value).strip()}
    return {}


def tweet_payload(
    tweet: dict[str, Any], users: dict[str, dict[str, Any]], tweets: dict[str, dict[str, Any]]
) -> dict[str, Any]:
    """One tweet with its author and referenced tweets (and their authors) from a page's includes."""
    referenced = [
        tweets[str(r.get("id"))]
        for r in tweet.get("referenced_tweets") or []
        if isinstance(r, dict) and str(r.get("id")) in tweets
    ]
    people = [str(tweet.get("author_id"))] + [str(t.get("author_id")) for t in referenced]
    includes: dict[str, Any] = {"users": _unique(users[u] for u in people if u in users)}
    if referenced:
        includes["tweets"] = referenced
    return {"data": tweet, "includes": includes}


def same_text_key(text: str, entities: bool = True) -> str:
    """Text as compared for "already posted": entities decoded, links and leading @mentions ignored."""
    if entities:
        text = _unescape(text)
    text = _LEADING_MENTIONS.sub("", text.strip())
    text = _URL.sub("<url>", text)
    return " ".join(text.split()).casefold()


def _unescape(text: str) -> str:
    # X escapes only these three in post text; a literal "&copy;" typed by a user must stay as typed.
    return text.replace("&lt;", "<").replace("&gt;", ">").replace("&amp;", "&")


def _plain(text: str, entities: bool = True) -> str:
    text = _unescape(text) if entities else text
    # NUL cannot be stored in a PostgreSQL text column.
    return text.replace("\x00", "")


def _unique(users: Iterable[dict[str, Any]]) -> list[dict[str, Any]]:
    seen: dict[str, dict[str, Any]] = {}
    for user in users:
        seen.setdefault(str(user.get("id")), user)
    return list(seen.values())


def _data(body: dict[str, Any]) -> list[dict[str, Any]]:
    data = body.get("data")
    return [d for d in data if isinstance(d, dict)] if isinstance(data, list) else []


def _by_id(items: Any) -> dict[str, dict[str, Any]]:
    if not isinstance(items, list):
        return {}
    return {str(i["id"]): i for i in items if isinstance(i, dict) and i.get("id") is not None}


def _errors(body: dict[str, Any]) -> str:
    errors = body.get("errors")
    if isinstance(errors, list) and errors:
        return "; ".join(str(e.get("detail") or e.get("title") or e) for e in errors if isinstance(e, dict))
    return "no data in the answer"


def _detail(exc: HTTPException) -> str:
    parts = [str(m) for m in exc.api_messages] if exc.api_messages else []
    try:
        body = exc.response.json()
    except ValueError:
        body = {}
    if isinstance(body, dict) and body.get("type") and body.get("type") != "about:blank":
        parts.append(f"[{str(body['type']).rsplit('/', 1)[-1]}]")
    return " ".join(parts) or exc.response.reason or "no detail"


def _is_auth(exc: PermanentError) -> bool:
    cause = exc.__cause__
    if isinstance(cause, Unauthorized):
        return True
    return isinstance(cause, Forbidden) and any(p in str(exc) for p in _ACCOUNT_PROBLEMS)


def _per_reply(exc: PermanentError) -> PermanentError:
    """A refused reply fails that reply only, unless the credentials themselves were refused."""
    if _is_auth(exc):
        return exc
    return PermanentError(str(exc), affects_account=False)


def _id(value: Any, key: str, where: str) -> str | None:
    if value is None or value == "":
        return None
    if isinstance(value, bool) or not isinstance(value, str | int) or not str(value).isdigit():
        raise MalformedEvent(f"{where}: {key} {value!r} is not an X id")
    return str(value)


def _text(data: dict[str, Any], key: str, where: str, required: bool = False) -> str:
    value = data.get(key)
    if value is None:
        if required:
            raise MalformedEvent(f"{where} has no {key}")
        return ""
    if not isinstance(value, str):
        raise MalformedEvent(f"{where}: {key} {value!r} is not a string")
    return value


def _followers(user: dict[str, Any], where: str) -> int | None:
    metrics = user.get("public_metrics")
    if metrics is None:
        return None
    if not isinstance(metrics, dict):
        raise MalformedEvent(f"{where}: public_metrics is not an object")
    count = metrics.get("followers_count")
    if count is None:
        return None
    if isinstance(count, bool) or not isinstance(count, int) or count < 0:
        raise MalformedEvent(f"{where}: followers_count {count!r} is not a count")
    return count


def _time(value: Any, where: str) -> dt.datetime:
    if not isinstance(value, str) or not value:
        raise MalformedEvent(f"{where} has no created_at")
    try:
        moment = dt.datetime.fromisoformat(value)
    except ValueError as exc:
        raise MalformedEvent(f"{where}: created_at {value!r} is not an ISO 8601 time") from exc
    return moment if moment.tzinfo else moment.replace(tzinfo=dt.UTC)


__all__ = [
    "ConnectorError",
    "RateLimited",
    "XConnector",
    "listening_rules",
    "same_text_key",
    "snowflake_at",
    "snowflake_before",
    "snowflake_time",
    "tweet_payload",
]
