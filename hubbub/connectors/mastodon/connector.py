"""Mastodon: mentions and hashtag/keyword listening in, replies out, through Mastodon.py.

Sources and their cursor keys (each cursor value is the newest ID seen in that source):

    "notifications"      mentions of the brand account (/api/v1/notifications?types[]=mention);
                         a direct-visibility mention is a private message
    "tag:<hashtag>"      public statuses with the hashtag (/api/v1/timelines/tag/:hashtag)
    "search:<keyword>"   statuses found by full-text search (/api/v2/search?type=statuses); best
                         effort: many instances run without full-text search and find nothing, and
                         an instance that refuses the search is skipped with a log warning

Settings (AccountConfig.settings): "hashtags", "keywords", "backfill_limit" (default 200: the
most posts taken from one source in one fetch, and what a first fetch backfills),
"reply_visibility" ("public" or "unlisted" for public replies), "allow_private".
"""

from __future__ import annotations

import datetime as dt
import logging
import math
import re
import time
from collections.abc import Callable
from html.parser import HTMLParser
from typing import Any
from urllib.parse import quote, urlsplit

from mastodon import Mastodon
from mastodon.errors import (
    MastodonAPIError,
    MastodonError,
    MastodonIllegalArgumentError,
    MastodonNetworkError,
    MastodonRatelimitError,
    MastodonVersionError,
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

DEFAULT_LIMIT = 200
# The most Mastodon returns per page of a timeline or search (notifications allow 80).
PAGE_SIZE = 40
# Mastodon.py's default is 300 s, far too long for a poller.
REQUEST_TIMEOUT = 30.0
REPLY_VISIBILITIES = ("public", "unlisted")
_HASHTAG = re.compile(r"^\w+$")

# One page of a source: (id to page by, status or None) pairs, newest first.
Page = list[tuple[str, dict[str, Any] | None]]
PageFetcher = Callable[..., Page]


class RateLimited(TransientError):
    """The instance's rate limit is used up; `retry_after` is the time until X-RateLimit-Reset."""


class _SearchUnavailable(Exception):
    def __init__(self, message: str, lasting: bool):
        super().__init__(message)
        # True when asking again will not help (old instance, endpoint refused), not a passing 5xx.
        self.lasting = lasting


class MastodonConnector:
    network = "mastodon"

    def __init__(self, config: AccountConfig):
        self.config = config
        settings = config.settings
        # Configuration problems surface as PermanentError from fetch/publish rather than from here,
        # so whoever builds connectors need not expect errors from the constructor.
        self._config_error = ""
        self.hashtags: list[str] = []
        for raw in settings.get("hashtags") or []:
            tag = str(raw).strip().lstrip("#").lower()
            if not _HASHTAG.match(tag):
                self._config_error = f"{raw!r} is not a valid hashtag"
            elif tag not in self.hashtags:
                self.hashtags.append(tag)
        self.keywords = list(dict.fromkeys(str(k).strip() for k in settings.get("keywords") or [] if str(k).strip()))
        try:
            self.limit = max(1, int(settings.get("backfill_limit", DEFAULT_LIMIT)))
        except (TypeError, ValueError):
            self.limit = DEFAULT_LIMIT
            self._config_error = f"backfill_limit {settings.get('backfill_limit')!r} is not a number"
        self.reply_visibility = settings.get("reply_visibility", "public")
        if self.reply_visibility not in REPLY_VISIBILITIES:
            self._config_error = f"reply_visibility must be one of {REPLY_VISIBILITIES}"
        token = config.credentials.get("access_token") or ""
        if not token:
            self._config_error = "the Mastodon account has no access token"
        if not config.base_url:
            self._config_error = "the Mastodon account has no instance URL"
        base_url = config.base_url if "://" in config.base_url else f"https://{config.base_url}"
        self.instance_host = (urlsplit(base_url).hostname or "").lower()
        self.api = Mastodon(
            api_base_url=base_url,
            # Explicit, so the connector never reads Django settings; the account model passes it in.
            session=safe_session(allow_private=bool(settings.get("allow_private", False))),
            # "throw": the worker, not this process, waits out a rate limit ("pace" and "wait" sleep here).
            ratelimit_method="throw",
            version_check_mode="none",
            request_timeout=REQUEST_TIMEOUT,
            user_agent=USER_AGENT,
        )
        # Set afterwards: given to the constructor, a token that names an existing file is read
        # from that file, and the token is user input.
        self.api.access_token = token or None
        self._search_skipped: str | None = None

    # -- fetch -----------------------------------------------------------------------------

    def fetch(self, cursor: dict[str, Any]) -> FetchResult:
        self._check_config()
        new_cursor = dict(cursor)
        found: dict[str, RawPost] = {}
        more = False
        sources: list[tuple[str, PageFetcher]] = [("notifications", self._mentions_page)]
        sources += [(f"tag:{tag}", self._tag_fetcher(tag)) for tag in self.hashtags]
        try:
            for key, fetch_page in sources:
                more = self._drain(key, fetch_page, new_cursor, found) or more
            for keyword in self.keywords if self._search_skipped is None else []:
                try:
                    more = self._drain(f"search:{keyword}", self._search_fetcher(keyword), new_cursor, found) or more
                except _SearchUnavailable as exc:
                    # Keywords are an extra; an instance that refuses them must not hold up mentions.
                    log.warning("keyword search skipped on %s: %s", self.instance_host, exc)
                    if exc.lasting:
                        self._search_skipped = str(exc)
                    break
        except RateLimited:
            if not found:
                raise
            # Keep what was read: the cursor only covers complete pages, and the next request
            # will meet the limit again and tell the worker how long to wait.
            log.info("rate limit reached on %s after %d posts; returning those", self.instance_host, len(found))
            more = False
        posts = sorted(found.values(), key=lambda post: _id_key(post.external_id))
        return FetchResult(posts=posts, cursor=new_cursor, more=more)

    def _drain(self, key: str, fetch_page: PageFetcher, cursor: dict[str, Any], found: dict[str, RawPost]) -> bool:
        """Read one source into `found`, moving cursor[key] page by page. True if it stopped at the limit."""
        since = str(cursor.get(key) or "")
        taken = 0
        if not since:
            # First fetch: backfill the newest `limit`, walking back in time.
            max_id = None
            while taken < self.limit:
                size = min(PAGE_SIZE, self.limit - taken)
                page = self._call(fetch_page, max_id=max_id, limit=size)
                if not page:
                    return False
                if not taken:
                    cursor[key] = page[0][0]
                self._keep(page, found)
                taken += len(page)
                max_id = page[-1][0]
                if len(page) < size:
                    return False
            return False
        while taken < self.limit:
            size = min(PAGE_SIZE, self.limit - taken)
            # min_id pages forward from the cursor without gaps (since_id would jump to the newest).
            page = [item for item in self._call(fetch_page, min_id=since, limit=size) if _newer(item[0], since)]
            if not page:
                return False
            self._keep(page, found)
            taken += len(page)
            since = max((item[0] for item in page), key=_id_key)
            cursor[key] = since
            if len(page) < size:
                return False
        return True

    def _keep(self, page: Page, found: dict[str, RawPost]) -> None:
        for _, status in page:
            if not status or not status.get("id"):
                continue
            if self._is_brand((status.get("account") or {}).get("acct")):
                continue
            status_id = str(status["id"])
            found.setdefault(status_id, RawPost(external_id=status_id, payload=status))

    def _mentions_page(self, **params: Any) -> Page:
        items = _plain(self.api.notifications(types=["mention"], **params))
        return _newest_first([(str(n["id"]), n.get("status") if n.get("type") == "mention" else None) for n in items])

    def _tag_fetcher(self, tag: str) -> PageFetcher:
        def fetch_page(**params: Any) -> Page:
            # Quoted because Mastodon.py puts the hashtag into the path as it is.
            statuses = _plain(self.api.timeline_hashtag(quote(tag, safe=""), **params))
            return _newest_first([(str(s["id"]), s) for s in statuses])

        return fetch_page

    def _search_fetcher(self, keyword: str) -> PageFetcher:
        def fetch_page(**params: Any) -> Page:
            try:
                result = self.api.search_v2(keyword, resolve=False, result_type="statuses", **params)
            except MastodonVersionError as exc:
                raise _SearchUnavailable(f"the instance is too old for status search ({exc})", True) from exc
            except MastodonAPIError as exc:
                status = _http_status(exc)
                if status in (401, 403) or not status or status < 400:
                    raise
                message = f"the instance refused status search ({status}: {_detail(exc)})"
                raise _SearchUnavailable(message, lasting=status < 500) from exc
            statuses = _plain(result).get("statuses") or []
            return _newest_first([(str(s["id"]), s) for s in statuses])

        return fetch_page

    # -- normalize -------------------------------------------------------------------------

    def normalize(self, payload: dict[str, Any]) -> Post:
        if not isinstance(payload, dict):
            raise MalformedEvent(f"a Mastodon status must be a JSON object, not {type(payload).__name__}")
        status_id = _id_field(payload, "id", "status")
        if status_id is None:
            raise MalformedEvent("the status has no id")
        where = f"status {status_id}"
        account = payload.get("account")
        if not isinstance(account, dict):
            raise MalformedEvent(f"{where} has no account object")
        acct = account.get("acct")
        if not isinstance(acct, str) or not acct.strip():
            raise MalformedEvent(f"{where}: the account has no acct")
        content = payload.get("content")
        if not isinstance(content, str):
            raise MalformedEvent(f"{where} has no HTML content string")
        followers = account.get("followers_count")
        if followers is not None and (isinstance(followers, bool) or not isinstance(followers, int)):
            raise MalformedEvent(f"{where}: followers_count {followers!r} is not a number")
        visibility = _str_field(payload, "visibility", where) or "public"
        reblog = payload.get("reblog")
        if reblog is not None and not isinstance(reblog, dict):
            raise MalformedEvent(f"{where}: reblog is not a status object")
        return Post(
            external_id=status_id,
            author_handle=acct.strip(),
            author_name=_str_field(account, "display_name", where) or _str_field(account, "username", where),
            author_external_id=_id_field(account, "id", where) or "",
            author_followers=followers,
            text=html_to_text(content),
            html=content,
            created_at=_parse_time(payload.get("created_at"), where),
            in_reply_to_external_id=_id_field(payload, "in_reply_to_id", where),
            is_private=visibility == "direct",
            from_brand=self._is_brand(acct),
            url=_str_field(payload, "url", where),
            language=_str_field(payload, "language", where),
            # A boost is a status of its own whose `reblog` holds the boosted status; it has no text.
            is_repost=reblog is not None,
            repost_of_external_id=_id_field(reblog, "id", where) if reblog is not None else None,
            quote_of_external_id=_quoted_id(payload.get("quote"), where),
            author_is_bot=account.get("bot") is True,
        )

    # -- publish ---------------------------------------------------------------------------

    def publish(self, reply: Reply) -> Published:
        self._check_config()
        handle = reply.to_handle.strip().lstrip("@")
        if reply.private and not handle:
            raise PermanentError(
                "a private Mastodon reply needs the customer's handle (to_handle)", affects_account=False
            )
        text = reply.text
        if handle and not self._is_brand(handle):
            # Mastodon delivers a direct status only to the accounts it mentions, and notifies
            # only mentioned accounts of a public reply.
            text = _addressed(text, handle)
        status = self._call(
            self.api.status_post,
            text,
            in_reply_to_id=reply.in_reply_to_external_id or None,
            visibility="direct" if reply.private else self.reply_visibility,
            idempotency_key=reply.idempotency_key,
        )
        payload = _plain(status)
        return Published(external_id=str(payload["id"]), url=payload.get("url") or "", payload=payload)

    # -- errors and rate limits ------------------------------------------------------------

    def _check_config(self) -> None:
        if self._config_error:
            raise PermanentError(f"Mastodon account misconfigured: {self._config_error}")

    def _call(self, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        # Mastodon.py in "throw" mode only complains after a 429; stop before sending a request
        # that the last X-RateLimit-Remaining says will be refused.
        reset = self.api.ratelimit_reset
        if self.api.ratelimit_remaining <= 0 and reset and reset > time.time():
            raise RateLimited("the Mastodon rate limit is used up", retry_after=self._retry_after())
        try:
            return fn(*args, **kwargs)
        except MastodonError as exc:
            raise self._translate(exc) from exc

    def _retry_after(self) -> float | None:
        reset = self.api.ratelimit_reset
        if not reset:
            return None
        return float(max(1, math.ceil(reset - time.time())))

    def _translate(self, exc: MastodonError) -> ConnectorError:
        where = self.instance_host or "the instance"
        if isinstance(exc, MastodonRatelimitError):
            return RateLimited(f"{where} rate limit reached", retry_after=self._retry_after())
        if isinstance(exc, MastodonNetworkError):
            if _caused_by(exc, BlockedAddress):
                # A private or internal address is a configuration error: retrying cannot help.
                return PermanentError(f"refusing to connect to {where}: {exc}")
            return TransientError(f"cannot reach {where}: {exc}")
        if isinstance(exc, MastodonIllegalArgumentError):
            return PermanentError(f"invalid request to {where}: {exc}", affects_account=False)
        if isinstance(exc, MastodonAPIError):
            status = _http_status(exc)
            detail = _detail(exc)
            if status in (401, 403):
                return PermanentError(f"{where} refused the access token ({status}): {detail}")
            if status is None or status >= 500 or status in (408, 425, 429):
                return TransientError(f"{where} failed ({status or 'bad response'}): {detail}")
            # A deleted parent (404) or a refused text (422) fails this request, not the account.
            return PermanentError(f"{where} rejected the request ({status}): {detail}", affects_account=False)
        return TransientError(f"Mastodon error from {where}: {exc}")

    def _is_brand(self, acct: Any) -> bool:
        if not isinstance(acct, str) or not acct.strip() or not self.config.handle:
            return False
        return self._full_acct(acct) == self._full_acct(self.config.handle)

    def _full_acct(self, acct: str) -> str:
        # Local accounts have no domain in acct ("brand"); remote ones do ("brand@example.social").
        acct = acct.strip().lstrip("@").lower()
        return acct if "@" in acct else f"{acct}@{self.instance_host}"


# -- helpers ---------------------------------------------------------------------------------


class _TextExtractor(HTMLParser):
    # Content of these never reaches the plain text (hostile HTML from a remote instance).
    SKIPPED = frozenset({"script", "style", "template", "noscript", "iframe", "object", "title", "head"})

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.parts: list[str] = []
        self.skipping = 0

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag in self.SKIPPED:
            self.skipping += 1
        elif tag == "br" and not self.skipping:
            self.parts.append("\n")

    def handle_endtag(self, tag: str) -> None:
        if tag in self.SKIPPED:
            self.skipping = max(0, self.skipping - 1)
        elif tag == "p" and not self.skipping:
            # Mastodon writes a blank line in the source as a new <p>, a single newline as <br>.
            self.parts.append("\n\n")

    def handle_data(self, data: str) -> None:
        if not self.skipping:
            self.parts.append(data)


def html_to_text(content: str) -> str:
    """Mastodon's status HTML as plain text: tags dropped, <br> and </p> as newlines, entities decoded."""
    parser = _TextExtractor()
    parser.feed(content)
    parser.close()
    text = "".join(parser.parts).replace("\r\n", "\n")
    text = re.sub(r"[ \t]+\n", "\n", text)
    return re.sub(r"\n{3,}", "\n\n", text).strip()


def _addressed(text: str, handle: str) -> str:
    if re.match(rf"\s*@{re.escape(handle)}(?![\w@.-])", text, re.IGNORECASE):
        return text
    return f"@{handle} {text.lstrip()}"


def _plain(value: Any) -> Any:
    """Mastodon.py's result as plain JSON data: dicts, lists, str IDs, ISO datetimes."""
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    if isinstance(value, dt.datetime | dt.date):
        return value.isoformat()
    if isinstance(value, str):
        return str(value)  # Mastodon.py's ID type is a str subclass
    if value is None or isinstance(value, bool | int | float):
        return value
    return str(value)


def _id_key(value: str) -> tuple[int, str]:
    # IDs are strings "cast from an integer but not guaranteed to be a number": length, then
    # text, orders numeric snowflakes and fixed-width flake IDs alike.
    return (len(value), value)


def _newer(a: str, b: str) -> bool:
    return _id_key(a) > _id_key(b)


def _newest_first(page: Page) -> Page:
    return sorted(page, key=lambda item: _id_key(item[0]), reverse=True)


def _http_status(exc: MastodonAPIError) -> int | None:
    # Mastodon.py raises ('Mastodon API returned error', status, reason, error message).
    return exc.args[1] if len(exc.args) > 1 and isinstance(exc.args[1], int) else None


def _detail(exc: MastodonAPIError) -> str:
    if len(exc.args) > 3 and exc.args[3]:
        return str(exc.args[3])
    if len(exc.args) > 2 and exc.args[2]:
        return str(exc.args[2])
    return str(exc)


def _caused_by(exc: BaseException, kind: type[BaseException]) -> bool:
    # Mastodon.py re-raises network failures inside its except block, so the original is the context.
    seen: BaseException | None = exc
    while seen is not None:
        if isinstance(seen, kind):
            return True
        seen = seen.__cause__ or seen.__context__
    return False


def _id_field(data: dict[str, Any], key: str, where: str) -> str | None:
    value = data.get(key)
    if value is None or value == "":
        return None
    if isinstance(value, bool) or not isinstance(value, str | int):
        raise MalformedEvent(f"{where}: {key} {value!r} is not an ID")
    return str(value)


def _quoted_id(quote: Any, where: str) -> str | None:
    """The quoted status of a quote post (Mastodon 4.4+): a Quote holds `quoted_status`, a
    ShallowQuote only `quoted_status_id`. Anything else means the status quotes nothing."""
    if not isinstance(quote, dict):
        return None
    quoted = quote.get("quoted_status")
    if isinstance(quoted, dict):
        return _id_field(quoted, "id", where)
    return _id_field(quote, "quoted_status_id", where)


def _str_field(data: dict[str, Any], key: str, where: str) -> str:
    value = data.get(key)
    if value is None:
        return ""
    if not isinstance(value, str):
        raise MalformedEvent(f"{where}: {key} {value!r} is not a string")
    return value


def _parse_time(value: Any, where: str) -> dt.datetime:
    if not isinstance(value, str) or not value:
        raise MalformedEvent(f"{where} has no created_at")
    try:
        moment = dt.datetime.fromisoformat(value)
    except ValueError as exc:
        raise MalformedEvent(f"{where}: created_at {value!r} is not an ISO 8601 time") from exc
    # Mastodon always sends UTC; a time without a zone is read as UTC rather than local time.
    return moment if moment.tzinfo else moment.replace(tzinfo=dt.UTC)
