"""Reddit: keyword listening in chosen subreddits and the brand's inbox in, comments and messages out.

Built on praw for OAuth (script app with username/password, or a refresh token), token refresh,
Reddit's rate-limit headers and its error classes. Reads go through `Reddit.request`, which
returns Reddit's JSON as it came rather than praw's lazy model objects: the worker stores the
payload untouched, so it must be plain JSON.

Sources and their cursor keys:

    "inbox"        the brand account's inbox (/message/inbox): comment and post replies and
                   username mentions (kind t1) and private messages (kind t4). Read-only: nothing
                   is marked as read, so the brand's own Reddit client still shows them as new.
    "submissions"  new submissions in the subreddits matching the keywords
                   (/r/{a+b}/search?sort=new&restrict_sr=on); without keywords, /r/{a+b}/new
    "comments"     new comments in the subreddits (/r/{a+b}/comments), matched against the
                   keywords here (Reddit's search does not search comments)

Settings (AccountConfig.settings): "subreddits", "keywords", "backfill_limit" (default 100: a
first fetch looks at the newest that many items of each listing, so it backfills the comments
among them that match; and the most one fetch returns from a source),
"message_subject" (subject of a new private message), "allow_private".
Credentials: "client_id", "client_secret", and "username" + "password" (script app) or
"refresh_token".

Cursor, per source key: {"newest": created_utc, "floor": created_utc, "seen": {fullname: created_utc}}.
Listings are walked newest first from the top with `after` until an item at or below
max(floor, newest - overlap) appears; anything newer that is not in `seen` is new. Reddit's
`before` parameter is not used: it returns nothing once the anchor item is deleted or removed,
which would stall a source silently. The overlap (15 minutes for search, whose index lags
behind, one minute for the plain listings) catches items that appear late and items sharing a
created_utc second; `seen` keeps them from being returned twice.

Rate limits: prawcore sleeps before a request when X-Ratelimit-Remaining is used up (and paces
requests to spread the budget), and its retry strategy sleeps 2-4 s between retries of 5xx
answers and network errors. Both are replaced on this connector's session: the rate limiter
never sleeps and raises `RateLimited` (a TransientError with retry_after from X-Ratelimit-Reset)
when the budget is used up, and prawcore does not retry (the worker does, with its backoff).
praw's own sleeping on RATELIMIT API errors is never reached because posts do not go through
`Reddit.post`. The patching touches prawcore's private `_rate_limiter` and `_retry_strategy_class`
(prawcore 4.0); `_patch_session` fails loudly if they move.

Idempotency: Reddit has no idempotency key. Every published text ends with an invisible marker,
an empty Markdown link `[](#hb-<16 hex digits of sha256(idempotency key)>)`, and before posting
the connector looks for a comment by the brand carrying that marker among the parent's replies
(for a private message, in the sent box). If one is there, it is returned instead of posting
again. `normalize` strips the marker from text.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import logging
import math
import re
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, ClassVar

import praw
import prawcore
from praw.exceptions import ClientException, PRAWException, RedditAPIException
from prawcore.rate_limit import RateLimiter
from prawcore.sessions import FiniteRetryStrategy

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
from hubbub.lib.safehttp import BlockedAddress, safe_session

log = logging.getLogger(__name__)

DEFAULT_LIMIT = 100
# Reddit's largest listing page.
PAGE_SIZE = 100
# Reddit serves about 1000 items of a listing; deeper pages come back empty.
MAX_PAGES = 10
REQUEST_TIMEOUT = 30.0
WEB_URL = "https://www.reddit.com"
OAUTH_URL = "https://oauth.reddit.com"
USER_AGENT = "python:hubbub:0.1 (social customer service; by /u/{handle})"
# Seconds behind the newest item that each source looks again (see the module docstring).
LISTING_OVERLAP = 60.0
SEARCH_OVERLAP = 900.0
# Bounds the cursor's `seen` map if a source is very busy.
MAX_SEEN = 2000
# Reddit refuses longer search queries.
MAX_QUERY = 512
# Keyword matching only looks this far into a comment (Reddit caps comments at 10,000 characters).
MAX_MATCH_CHARS = 10_000
MAX_SUBJECT = 100
DEFAULT_SUBJECT = "Following up on your post"

_SUBREDDIT = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_]{1,20}$")
_FULLNAME = re.compile(r"^t[134]_[0-9a-z]+$")
_MARKER = re.compile(r"\s*\[\]\(#hb-[0-9a-f]{16}\)\s*$")
_MARKER_ANYWHERE = re.compile(r"\[\]\(#hb-[0-9a-f]{16}\)")
_MARKER_KEY = re.compile(r"#hb-([0-9a-f]{16})")
_CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")
_RATELIMIT_TEXT = re.compile(r"(\d+)\s*(millisecond|second|minute|hour)", re.IGNORECASE)

Thing = dict[str, Any]


class RateLimited(TransientError):
    """Reddit's rate limit is used up; `retry_after` is the time until X-Ratelimit-Reset."""


# -- prawcore without sleeping ---------------------------------------------------------------


class _ThrowingRateLimiter(RateLimiter):
    """prawcore's rate limiter, but raising RateLimited where it would sleep, and never pacing."""

    def __init__(self, *, window_size: int) -> None:
        super().__init__(window_size=window_size)
        self.reset_at: float | None = None  # time.monotonic() when the window resets

    def retry_after(self) -> float | None:
        if self.reset_at is None:
            return None
        return float(max(1, math.ceil(self.reset_at - time.monotonic())))

    def delay(self) -> None:
        if self.remaining is not None and self.remaining <= 0 and self.reset_at and self.reset_at > time.monotonic():
            raise RateLimited("the Reddit rate limit is used up", retry_after=self.retry_after())

    def update(self, *, response_headers: Any) -> None:
        try:
            super().update(response_headers=response_headers)
            if "x-ratelimit-reset" in response_headers:
                self.reset_at = time.monotonic() + float(response_headers["x-ratelimit-reset"])
        except (KeyError, ValueError):
            # Garbled headers: keep the last known state rather than fail the request.
            log.warning("ignoring malformed Reddit rate-limit headers")


@dataclass(frozen=True)
class _NoRetry(FiniteRetryStrategy):
    """No retries and so no sleeping between them: the worker retries with its own backoff."""

    DEFAULT_RETRIES: ClassVar[int] = 0
    retries: int = 0


def _patch_session(session: Any) -> _ThrowingRateLimiter:
    if not hasattr(session, "_rate_limiter") or not hasattr(session, "_retry_strategy_class"):
        raise RuntimeError("prawcore's Session changed: the Reddit connector cannot stop it from sleeping")
    limiter = _ThrowingRateLimiter(window_size=session._rate_limiter.window_size)
    session._rate_limiter = limiter
    session._retry_strategy_class = _NoRetry
    return limiter


# -- cursor state ----------------------------------------------------------------------------


@dataclass
class _SourceState:
    newest: float
    floor: float
    seen: dict[str, float]

    @classmethod
    def load(cls, value: Any) -> _SourceState | None:
        if not isinstance(value, dict):
            return None
        try:
            seen = {str(k): float(v) for k, v in (value.get("seen") or {}).items()}
            return cls(newest=float(value["newest"]), floor=float(value.get("floor") or 0.0), seen=seen)
        except (KeyError, TypeError, ValueError, AttributeError):
            log.warning("discarding an unreadable Reddit cursor %r", value)
            return None

    def dump(self) -> dict[str, Any]:
        return {"newest": self.newest, "floor": self.floor, "seen": dict(self.seen)}


@dataclass(frozen=True)
class _Source:
    key: str
    path: str
    params: dict[str, Any]
    keep: Callable[[Thing], bool]
    overlap: float


class RedditConnector:
    network = "reddit"

    def __init__(self, config: AccountConfig):
        self.config = config
        settings = config.settings
        creds = config.credentials
        # Configuration problems surface as PermanentError from fetch/publish, not from here.
        self._config_error = ""
        self.brand = _username(config.handle)
        self.subreddits: list[str] = []
        for raw in settings.get("subreddits") or []:
            name = _subreddit_name(str(raw))
            if not _SUBREDDIT.match(name):
                self._config_error = f"{raw!r} is not a subreddit name"
            elif name.lower() not in (s.lower() for s in self.subreddits):
                self.subreddits.append(name)
        self.keywords = list(dict.fromkeys(str(k).strip() for k in settings.get("keywords") or [] if str(k).strip()))
        self.query = " OR ".join(_search_term(k) for k in self.keywords)
        if len(self.query) > MAX_QUERY:
            self._config_error = f"the keywords make a search longer than Reddit's {MAX_QUERY} characters"
        self.keyword_re = (
            re.compile(
                "|".join(r"(?<!\w)" + r"\s+".join(map(re.escape, k.split())) for k in self.keywords), re.IGNORECASE
            )
            if self.keywords
            else None
        )
        try:
            self.limit = max(1, int(settings.get("backfill_limit", DEFAULT_LIMIT)))
        except (TypeError, ValueError):
            self.limit = DEFAULT_LIMIT
            self._config_error = f"backfill_limit {settings.get('backfill_limit')!r} is not a number"
        self.subject = str(settings.get("message_subject") or DEFAULT_SUBJECT)[:MAX_SUBJECT]
        base = config.base_url.strip()
        if base and "://" not in base:
            base = f"https://{base}"
        self.web_url = base.rstrip("/") or WEB_URL

        client_id = str(creds.get("client_id") or "")
        has_user = bool(creds.get("username") and creds.get("password"))
        if not self.brand:
            self._config_error = "the Reddit account has no username (handle)"
        if not client_id:
            self._config_error = "the Reddit account has no OAuth client_id"
        elif has_user and not creds.get("client_secret"):
            self._config_error = "a Reddit script app with a username and password needs its client_secret"
        elif not has_user and not creds.get("refresh_token"):
            self._config_error = "the Reddit account needs a username and password or a refresh_token"
        self.reddit: praw.Reddit | None = None
        self._limiter: _ThrowingRateLimiter | None = None
        if self._config_error:
            return
        options: dict[str, Any] = {
            # Every credential is given explicitly so that praw.ini files and praw_* environment
            # variables on the host can never add to or replace an account's credentials.
            "client_id": client_id,
            "client_secret": str(creds.get("client_secret") or "") or None,
            "username": str(creds.get("username") or "") if has_user else None,
            "password": str(creds.get("password") or "") if has_user else None,
            "refresh_token": None if has_user else str(creds["refresh_token"]),
            "redirect_uri": None,
            "user_agent": USER_AGENT.format(handle=self.brand),
            # No update check against PyPI, no asyncio probe.
            "check_for_updates": False,
            "check_for_async": False,
            "ratelimit_seconds": 0,
        }
        # Always given, so that a praw.ini in the working directory cannot redirect the API.
        # With base_url (tests, demos) the OAuth API and the token endpoint share one host.
        options["oauth_url"] = base.rstrip("/") + "/" if base else OAUTH_URL
        options["reddit_url"] = base.rstrip("/") if base else WEB_URL
        session = safe_session(allow_private=bool(settings.get("allow_private", False)))
        self.reddit = praw.Reddit(
            requestor_kwargs={"session": session, "timeout": REQUEST_TIMEOUT},
            **options,
        )
        self._limiter = _patch_session(self.reddit._core)

    # -- fetch -----------------------------------------------------------------------------

    def fetch(self, cursor: dict[str, Any]) -> FetchResult:
        self._check_config()
        new_cursor = dict(cursor)
        found: dict[str, RawPost] = {}
        more = False
        try:
            for source in self._sources():
                more = self._drain(source, new_cursor, found) or more
        except RateLimited:
            if not found:
                raise
            # Keep what was read: a source's cursor only moves once it has been read through.
            log.info("Reddit rate limit reached after %d posts; returning those", len(found))
            more = False
        posts = sorted(found.values(), key=lambda post: (_created_or_zero(post.payload), post.external_id))
        self._add_karma(posts)
        return FetchResult(posts=posts, cursor=new_cursor, more=more)

    def _sources(self) -> list[_Source]:
        sources = [_Source("inbox", "message/inbox", {}, self._not_brand, LISTING_OVERLAP)]
        if not self.subreddits:
            return sources
        subs = "+".join(self.subreddits)
        if self.keywords:
            params = {"q": self.query, "sort": "new", "restrict_sr": "on", "t": "all", "type": "link"}
            sources.append(_Source("submissions", f"r/{subs}/search", params, self._is_submission, SEARCH_OVERLAP))
        else:
            sources.append(_Source("submissions", f"r/{subs}/new", {}, self._is_submission, LISTING_OVERLAP))
        sources.append(_Source("comments", f"r/{subs}/comments", {}, self._matching_comment, LISTING_OVERLAP))
        return sources

    def _drain(self, source: _Source, cursor: dict[str, Any], found: dict[str, RawPost]) -> bool:
        """Read one source into `found` and move cursor[source.key]. True if it stopped at the limit."""
        state = _SourceState.load(cursor.get(source.key))
        first = state is None
        floor = 0.0 if state is None else max(state.floor, state.newest - source.overlap)
        candidates: dict[str, tuple[float, Thing]] = {}
        walked = 0
        newest_walked: float | None = None
        oldest_walked: float | None = None
        after: str | None = None
        reached = False
        for _ in range(MAX_PAGES):
            size = min(PAGE_SIZE, self.limit - walked) if first else PAGE_SIZE
            params = {**source.params, "limit": size, "raw_json": 1}
            if after:
                params["after"] = after
                params["count"] = walked
            children, after = _listing(self._call(self._get, source.path, params), source.path)
            for thing in children:
                data = thing.get("data") if isinstance(thing, dict) else None
                created = _created(data)
                name = data.get("name") if isinstance(data, dict) else None
                if created is None or not isinstance(name, str) or not _FULLNAME.match(name):
                    log.warning("skipping an unreadable item in %s", source.path)
                    continue
                walked += 1
                newest_walked = created if newest_walked is None else max(newest_walked, created)
                oldest_walked = created if oldest_walked is None else min(oldest_walked, created)
                if state is not None:
                    if created <= floor:
                        reached = True
                        continue
                    if name in state.seen:
                        continue
                if source.keep(thing):
                    candidates.setdefault(name, (created, thing))
            if reached or not after or not children or (first and walked >= self.limit):
                break
        else:
            if not first:
                log.warning("%s: more new items than Reddit lists; older ones were missed", source.path)

        ordered = sorted(candidates.items(), key=lambda item: (item[1][0], item[0]))
        capped = len(ordered) > self.limit
        taken = ordered[: self.limit]
        for name, (_, thing) in taken:
            found.setdefault(name, RawPost(external_id=name, payload=_with_source(thing, source.key)))

        if state is None:
            # First fetch: what lies beyond the backfill is never taken later.
            floor_after = (oldest_walked or 0.0) if after else 0.0
            state = _SourceState(newest=newest_walked or 0.0, floor=floor_after, seen={})
        elif capped:
            state.newest = max(state.newest, taken[-1][1][0])
        elif newest_walked is not None:
            state.newest = max(state.newest, newest_walked)
        for name, (created, _) in taken:
            state.seen[name] = created
        horizon = state.newest - source.overlap
        kept = sorted(((c, n) for n, c in state.seen.items() if c > horizon), reverse=True)[:MAX_SEEN]
        state.seen = {n: c for c, n in kept}
        cursor[source.key] = state.dump()
        return capped

    def _get(self, path: str, params: dict[str, Any]) -> Any:
        assert self.reddit is not None
        return self.reddit.request(method="GET", path=path, params=params)

    def _not_brand(self, thing: Thing) -> bool:
        return thing.get("kind") in ("t1", "t4") and not self._is_brand(thing["data"].get("author"))

    def _is_submission(self, thing: Thing) -> bool:
        return thing.get("kind") == "t3" and not self._is_brand(thing["data"].get("author"))

    def _matching_comment(self, thing: Thing) -> bool:
        if thing.get("kind") != "t1" or self._is_brand(thing["data"].get("author")):
            return False
        if self.keyword_re is None:
            return True
        body = thing["data"].get("body")
        return isinstance(body, str) and bool(self.keyword_re.search(body[:MAX_MATCH_CHARS]))

    def _add_karma(self, posts: list[RawPost]) -> None:
        """Best effort: the authors' karma as their reach (Reddit has no follower counts)."""
        ids = sorted(
            {
                str(p.payload["data"].get("author_fullname"))
                for p in posts
                if str(p.payload["data"].get("author_fullname") or "").startswith("t2_")
            }
        )
        users: dict[str, Any] = {}
        try:
            for start in range(0, len(ids), 100):
                answer = self._call(
                    self._get, "api/user_data_by_account_ids", {"ids": ",".join(ids[start : start + 100])}
                )
                if isinstance(answer, dict):
                    users.update(answer)
        except ConnectorError as exc:
            log.info("no karma for Reddit authors this time: %s", exc)
        for post in posts:
            user = users.get(str(post.payload["data"].get("author_fullname")))
            if not isinstance(user, dict):
                continue
            karma = [user.get("link_karma"), user.get("comment_karma")]
            if all(isinstance(k, int) and not isinstance(k, bool) for k in karma):
                post.payload["hubbub"]["author_karma"] = sum(karma)

    # -- normalize -------------------------------------------------------------------------

    def normalize(self, payload: dict[str, Any]) -> Post:
        if not isinstance(payload, dict):
            raise MalformedEvent(f"a Reddit thing must be a JSON object, not {type(payload).__name__}")
        kind = payload.get("kind")
        data = payload.get("data")
        if kind not in ("t1", "t3", "t4"):
            raise MalformedEvent(f"kind {kind!r} is not a comment, submission or message")
        if not isinstance(data, dict):
            raise MalformedEvent(f"the {kind} thing has no data object")
        name = data.get("name")
        if not isinstance(name, str) or not name.startswith(f"{kind}_") or not _FULLNAME.match(name):
            raise MalformedEvent(f"name {name!r} is not a {kind} fullname")
        where = name
        author = data.get("author")
        if author is None and kind == "t4" and isinstance(data.get("subreddit"), str):
            author = f"r/{data['subreddit']}"  # a message from a subreddit's moderators
        if not isinstance(author, str) or not author.strip():
            raise MalformedEvent(f"{where} has no author")
        created = _created(data)
        if created is None:
            raise MalformedEvent(f"{where}: created_utc {data.get('created_utc')!r} is not a Unix time")
        if kind == "t3":
            title = _str_field(data, "title", where, required=True)
            selftext = _str_field(data, "selftext", where)
            text = f"{title}\n\n{selftext}" if selftext.strip() else title
            link = _str_field(data, "url", where)
            if data.get("is_self") is False and link:
                text = f"{text}\n\n{link}"  # a link post: what it links to is part of what was said
        else:
            text = _str_field(data, "body", where, required=True)
            subject = _str_field(data, "subject", where)
            if kind == "t4" and subject.strip() and not data.get("parent_id"):
                text = f"{subject}\n\n{text}"
        parent = None
        if kind != "t3":
            parent = _str_field(data, "parent_id", where) or None
            if parent is not None and not _FULLNAME.match(parent):
                raise MalformedEvent(f"{where}: parent_id {parent!r} is not a fullname")
        ours = payload.get("hubbub")
        karma = ours.get("author_karma") if isinstance(ours, dict) else None
        followers = karma if isinstance(karma, int) and not isinstance(karma, bool) else None
        return Post(
            external_id=name,
            author_handle=author.strip(),
            author_external_id=_str_field(data, "author_fullname", where),
            author_followers=followers,
            text=_clean_text(text),
            created_at=dt.datetime.fromtimestamp(created, dt.UTC),
            in_reply_to_external_id=parent,
            is_private=kind == "t4",
            from_brand=self._is_brand(author),
            url=self._url(kind, data, where),
        )

    def _url(self, kind: str, data: dict[str, Any], where: str) -> str:
        link = _str_field(data, "permalink", where) or _str_field(data, "context", where)
        if kind == "t4" and not link:
            return f"{self.web_url}/message/messages/{data.get('id') or where[3:]}"
        if link.startswith("/"):
            return f"{self.web_url}{link}"
        return link if link.startswith(("https://", "http://")) else ""

    # -- publish ---------------------------------------------------------------------------

    def publish(self, reply: Reply) -> Published:
        self._check_config()
        parent = (reply.in_reply_to_external_id or "").strip() or None
        if parent is not None and not _FULLNAME.match(parent):
            raise PermanentError(f"{parent!r} is not a Reddit fullname (t1_/t3_/t4_)", affects_account=False)
        if not reply.text.strip():
            raise PermanentError("the reply is empty", affects_account=False)
        marker = _marker(reply.idempotency_key)
        text = f"{reply.text.rstrip()}\n\n{marker}"
        if parent and parent.startswith("t4_"):
            # A reply in a private-message conversation, public or not: there is nowhere else to put it.
            return self._sent(marker) or self._comment(parent, text)
        if reply.private:
            handle = _username(reply.to_handle)
            if not handle:
                raise PermanentError(
                    "a private Reddit reply needs the customer's username (to_handle)", affects_account=False
                )
            return self._sent(marker) or self._compose(handle, text, marker)
        if parent is None:
            raise PermanentError("a public Reddit reply needs the post or comment it answers", affects_account=False)
        return self._existing_reply(parent, marker) or self._comment(parent, text)

    def _comment(self, thing_id: str, text: str) -> Published:
        answer = self._post("api/comment", {"thing_id": thing_id, "text": text})
        try:
            thing = answer["json"]["data"]["things"][0]
            data = thing["data"]
            name = data["name"]
        except (KeyError, IndexError, TypeError) as exc:
            raise TransientError(f"Reddit's answer to a comment had no comment in it: {answer!r:.200}") from exc
        return Published(external_id=name, url=self._url(thing.get("kind", ""), data, name), payload=thing)

    def _compose(self, to: str, text: str, marker: str) -> Published:
        self._post("api/compose", {"to": to, "subject": self.subject, "text": text})
        # /api/compose answers {"json": {"errors": []}} without the message; the sent box has it.
        sent = self._sent(marker)
        if sent is None:
            log.warning("the private message to %s was sent but is not in the sent box yet", to)
            return Published(external_id=f"t4_pending-{_MARKER_KEY.search(marker).group(1)}", payload={})
        return sent

    def _sent(self, marker: str) -> Published | None:
        children, _ = _listing(self._call(self._get, "message/sent", {"limit": PAGE_SIZE}), "message/sent")
        for thing in children:
            if self._carries(thing, marker):
                name = thing["data"]["name"]
                return Published(external_id=name, url=self._url("t4", thing["data"], name), payload=thing)
        return None

    def _existing_reply(self, parent: str, marker: str) -> Published | None:
        """The brand's reply to `parent` carrying `marker`, if an earlier attempt got through."""
        if parent.startswith("t3_"):
            tree = self._call(self._get, f"comments/{parent[3:]}", {"sort": "new", "depth": 1, "limit": 500})
            replies = _tree_comments(tree)
        else:
            info, _ = _listing(self._call(self._get, "api/info", {"id": parent}), "api/info")
            link = info[0].get("data", {}).get("link_id") if info and isinstance(info[0], dict) else None
            if not isinstance(link, str) or not link.startswith("t3_"):
                return None  # the comment is gone; posting will say so
            params = {"comment": parent[3:], "sort": "new", "depth": 2, "limit": 500}
            focus = _tree_comments(self._call(self._get, f"comments/{link[3:]}", params))
            focused = next((c for c in focus if c.get("data", {}).get("name") == parent), None)
            replies = _replies(focused) if focused else []
        for thing in replies:
            if self._carries(thing, marker):
                name = thing["data"]["name"]
                return Published(external_id=name, url=self._url("t1", thing["data"], name), payload=thing)
        return None

    def _carries(self, thing: Any, marker: str) -> bool:
        data = thing.get("data") if isinstance(thing, dict) else None
        if not isinstance(data, dict) or not isinstance(data.get("name"), str):
            return False
        body = data.get("body")
        return self._is_brand(data.get("author")) and isinstance(body, str) and marker in body

    def _post(self, path: str, data: dict[str, Any]) -> Any:
        assert self.reddit is not None
        answer = self._call(self.reddit.request, method="POST", path=path, data=data)
        errors = answer.get("json", {}).get("errors") if isinstance(answer, dict) else None
        if errors:
            raise self._api_errors([_error_item(e) for e in errors], answer["json"].get("ratelimit"))
        return answer

    # -- errors and rate limits ------------------------------------------------------------

    def _check_config(self) -> None:
        if self._config_error or self.reddit is None:
            raise PermanentError(f"Reddit account misconfigured: {self._config_error}")

    def _call(self, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        retried = False
        while True:
            try:
                return fn(*args, **kwargs)
            except prawcore.InvalidToken as exc:
                # prawcore has dropped the access token; the next request fetches a new one, which
                # tells an access token that merely expired early from revoked credentials.
                if not retried:
                    retried = True
                    continue
                raise self._translate(exc) from exc
            except (prawcore.PrawcoreException, PRAWException) as exc:
                raise self._translate(exc) from exc

    def _translate(self, exc: Exception) -> ConnectorError:
        if isinstance(exc, RedditAPIException):
            items = [(item.error_type, item.message or "") for item in exc.items]
            return self._api_errors(items, None)
        if isinstance(exc, prawcore.OAuthException):
            return PermanentError(f"Reddit refused the account's credentials: {exc}")
        if isinstance(exc, prawcore.RequestException):
            original = exc.original_exception
            if isinstance(original, BlockedAddress):
                return PermanentError(f"refusing to connect to Reddit at {self.web_url}: {original}")
            return TransientError(f"cannot reach Reddit at {self.web_url}: {original}")
        if isinstance(exc, prawcore.InsufficientScope):
            return PermanentError("the Reddit app was not granted the scope this needs (403 insufficient_scope)")
        if isinstance(exc, prawcore.Redirect):
            # Reddit redirects a listing of a subreddit that does not exist to its search page.
            return PermanentError(f"Reddit redirected to {exc.path}: is every subreddit name right?")
        if isinstance(exc, prawcore.ResponseException):
            status = exc.response.status_code
            if status == 429:
                return RateLimited("Reddit rate limit reached (429)", retry_after=self._retry_after(exc.response))
            if status in (401, 403):
                return PermanentError(f"Reddit refused the account ({status}): revoked, suspended or banned")
            if status >= 500 or status in (408, 425) or isinstance(exc, prawcore.BadJSON):
                return TransientError(f"Reddit failed ({status})")
            return PermanentError(f"Reddit rejected the request ({status})", affects_account=False)
        if isinstance(exc, ClientException | prawcore.InvalidInvocation):
            return PermanentError(f"Reddit client error: {exc}")
        return TransientError(f"Reddit error: {exc}")

    def _api_errors(self, items: list[tuple[str, str]], ratelimit: Any) -> ConnectorError:
        text = "; ".join(f"{code}: {message}" for code, message in items)
        for code, message in items:
            if code == "RATELIMIT":
                if isinstance(ratelimit, int | float) and not isinstance(ratelimit, bool):
                    wait = float(ratelimit)
                else:
                    wait = _seconds_in(message)
                return RateLimited(f"Reddit says to slow down: {message}", retry_after=wait)
        return PermanentError(f"Reddit refused the request: {text}", affects_account=False)

    def _retry_after(self, response: Any) -> float | None:
        for header in ("retry-after", "x-ratelimit-reset"):
            value = response.headers.get(header)
            try:
                return float(max(1, math.ceil(float(value))))
            except (TypeError, ValueError):
                continue
        return self._limiter.retry_after() if self._limiter else None

    def _is_brand(self, author: Any) -> bool:
        return isinstance(author, str) and bool(self.brand) and _username(author).lower() == self.brand.lower()


# -- helpers ---------------------------------------------------------------------------------


def _username(handle: str) -> str:
    handle = (handle or "").strip().lstrip("@").lstrip("/")
    return handle[2:] if handle[:2].lower() == "u/" else handle


def _subreddit_name(raw: str) -> str:
    name = raw.strip().lstrip("/")
    return name[2:] if name[:2].lower() == "r/" else name


def _search_term(keyword: str) -> str:
    keyword = keyword.replace('"', " ").strip()
    return f'"{keyword}"' if re.search(r"\s", keyword) else keyword


def _marker(key: str) -> str:
    return f"[](#hb-{hashlib.sha256(key.encode('utf-8')).hexdigest()[:16]})"


def _clean_text(text: str) -> str:
    text = _MARKER.sub("", text)
    text = _MARKER_ANYWHERE.sub("", text)
    text = text.replace("\r\n", "\n").replace("\r", "\n")
    return _CONTROL.sub("", text).strip()


def _created(data: Any) -> float | None:
    value = data.get("created_utc") if isinstance(data, dict) else None
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value) or value < 0:
        return None
    if value > 32503680000:  # after the year 3000: not a Unix time in seconds
        return None
    return float(value)


def _created_or_zero(payload: dict[str, Any]) -> float:
    return _created(payload.get("data")) or 0.0


def _with_source(thing: Thing, key: str) -> Thing:
    return {"kind": thing.get("kind"), "data": thing.get("data"), "hubbub": {"source": key}}


def _listing(answer: Any, where: str) -> tuple[list[Any], str | None]:
    if not isinstance(answer, dict) or answer.get("kind") != "Listing" or not isinstance(answer.get("data"), dict):
        raise TransientError(f"Reddit answered {where} without a listing")
    children = answer["data"].get("children")
    after = answer["data"].get("after")
    if not isinstance(children, list):
        raise TransientError(f"Reddit's listing for {where} has no children")
    return children, after if isinstance(after, str) and after else None


def _tree_comments(tree: Any) -> list[Any]:
    # /comments/{article} answers [listing of the submission, listing of its comments].
    if not isinstance(tree, list) or len(tree) < 2:
        return []
    try:
        children, _ = _listing(tree[1], "comments")
    except TransientError:
        return []
    return children


def _replies(thing: Any) -> list[Any]:
    replies = thing.get("data", {}).get("replies") if isinstance(thing, dict) else None
    if not isinstance(replies, dict):
        return []  # "" when there are none
    try:
        children, _ = _listing(replies, "replies")
    except TransientError:
        return []
    return children


def _error_item(error: Any) -> tuple[str, str]:
    if isinstance(error, list | tuple) and error:
        return str(error[0]), str(error[1]) if len(error) > 1 else ""
    return str(error), ""


def _seconds_in(message: str) -> float | None:
    match = _RATELIMIT_TEXT.search(message or "")
    if not match:
        return None
    amount, unit = int(match.group(1)), match.group(2).lower()
    factor = {"millisecond": 0.001, "second": 1, "minute": 60, "hour": 3600}[unit]
    return float(max(1, math.ceil(amount * factor)))


def _str_field(data: dict[str, Any], key: str, where: str, required: bool = False) -> str:
    value = data.get(key)
    if value is None:
        if required:
            raise MalformedEvent(f"{where} has no {key}")
        return ""
    if not isinstance(value, str):
        raise MalformedEvent(f"{where}: {key} {value!r:.50} is not a string")
    return value
