"""Blogs, forums, review sites and their comment feeds, read as RSS 0.9x/1.0/2.0 or Atom 1.0.

One account may watch several feeds. Each feed is fetched on its own, and one feed's failure does not
cost the others their posts: the error is written to ``cursor["feeds"][url]["last_error"]`` and the
healthy feeds' posts are returned as usual. ``fetch`` raises only when every feed it tried failed:
with a single failure it raises that feed's own error; with several, a TransientError if any of them
may pass by itself (carrying the shortest Retry-After), else a PermanentError naming every URL.
A feed that answered 429/503 with Retry-After is not asked again before that time while other
feeds of the account keep being read.

Cursor::

    {"feeds": {url: {"etag": str | None, "modified": str | None, "seen": [16-hex key, ...],
                     "last_error": {"kind", "message", "at", "retry_after"} (only after a failure),
                     "retry_at": ISO-8601 (only while backing off)}}}

``seen`` holds short hashes of the entry ids of the latest bodies, so entries are not returned twice
even by servers that ignore conditional GET.
"""

from __future__ import annotations

import copy
import datetime as dt
import email.utils
import hashlib
import html
import io
import logging
import re
from typing import Any
from urllib.parse import urlparse
from xml.parsers import expat

import defusedxml
import feedparser
import nh3
import requests
from defusedxml import ElementTree as DefusedET

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
from hubbub.lib.safehttp import BlockedAddress, ResponseTooLarge, read_capped, safe_session

log = logging.getLogger(__name__)

NETWORK = "rss"
PAYLOAD_VERSION = 1
DEFAULT_MAX_BYTES = 5 * 1024 * 1024
SEEN_LIMIT = 500
READ_ONLY_MESSAGE = "replies to blog and forum posts are made on the site itself; copy the reply and post it there"
ACCEPT = (
    "application/atom+xml, application/rss+xml, application/rdf+xml;q=0.9, "
    "application/xml;q=0.8, text/xml;q=0.8, */*;q=0.1"
)
HTML_TAGS = {"p", "br", "a", "em", "strong", "ul", "ol", "li", "blockquote", "code", "pre"}
# The values of payload["kind"], for the pipeline to import rather than repeat.
KINDS = ("post", "comment", "pingback", "trackback")

# expat errors that mean "the document stopped early" rather than "the document is wrong".
_CUT_SHORT_CODES = {
    expat.errors.codes[message]
    for message in (
        expat.errors.XML_ERROR_NO_ELEMENTS,
        expat.errors.XML_ERROR_UNCLOSED_TOKEN,
        expat.errors.XML_ERROR_UNCLOSED_CDATA_SECTION,
        expat.errors.XML_ERROR_PARTIAL_CHAR,
    )
}
_ENTITY_DECLARATION = re.compile(rb"<!\s*ENTITY", re.IGNORECASE)
_PING_TITLE = re.compile(r"^\s*(pingback|trackback)\b", re.IGNORECASE)
_COMMENT_FEED_TITLE = re.compile(r"^\s*comments\s+(on|for)\b", re.IGNORECASE)
_COMMENT_TITLE = re.compile(r"^\s*(comment\s+on\b|by:)", re.IGNORECASE)
_LINE_BREAK = re.compile(r"<br\b[^>]*>", re.IGNORECASE)
_BLOCK_EDGE = re.compile(r"</?(?:p|div|li|ul|ol|blockquote|pre|h[1-6]|tr|table)\b[^>]*>", re.IGNORECASE)
_RSS_AUTHOR = re.compile(r"^(?P<email>[^\s()<>@]+@[^\s()<>@]+)\s*(?:\((?P<name>[^()]*)\))?$")


class FeedRejected(PermanentError):
    """The site answered, but with something we refuse to read: hostile XML, not a feed, or too large."""


class FeedConnector:
    network = NETWORK

    def __init__(self, config: AccountConfig):
        self.config = config
        settings = config.settings
        urls = list(settings.get("feed_urls") or [])
        if config.base_url:
            urls.append(config.base_url)
        # Order kept, duplicates dropped: the same feed listed twice must not be fetched twice.
        self.feed_urls: list[str] = list(dict.fromkeys(u.strip() for u in urls if u and u.strip()))
        self.max_bytes = int(settings.get("max_bytes", DEFAULT_MAX_BYTES))
        timeout = settings.get("timeout")
        # Settings come from JSON, where a (connect, read) pair arrives as a list.
        if isinstance(timeout, list):
            timeout = tuple(timeout)
        self.timeout: float | tuple[float, float] | None = timeout
        self.session = safe_session(allow_private=settings.get("allow_private"))
        brand = [config.handle, *settings.get("brand_authors", [])]
        self.brand_authors = {name.strip().casefold() for name in brand if name and name.strip()}

    # -- fetch -----------------------------------------------------------------------------------

    def fetch(self, cursor: dict[str, Any]) -> FetchResult:
        if not self.feed_urls:
            raise PermanentError("no feed URL is configured for this account")
        previous = (cursor or {}).get("feeds") or {}
        now = _now()
        states: dict[str, dict[str, Any]] = {}
        posts: list[RawPost] = []
        failures: list[tuple[str, ConnectorError]] = []
        tried = 0
        for url in self.feed_urls:
            state = copy.deepcopy(previous.get(url) or {})
            states[url] = state
            if _backing_off(state, now):
                continue
            tried += 1
            try:
                feed_posts, states[url] = self._fetch_feed(url, state, now)
            except ConnectorError as exc:
                failures.append((url, exc))
                _record_error(state, exc, now)
                log.warning("feed %s failed: %s", url, exc)
                continue
            posts.extend(feed_posts)
        if tried and len(failures) == tried:
            raise _combined(failures)
        return FetchResult(posts=posts, cursor={"feeds": states})

    def _fetch_feed(self, url: str, state: dict[str, Any], now: dt.datetime) -> tuple[list[RawPost], dict[str, Any]]:
        """Fetch one feed; return its new posts and its next cursor state. `state` is not changed."""
        headers = {"Accept": ACCEPT}
        if state.get("etag"):
            headers["If-None-Match"] = state["etag"]
        if state.get("modified"):
            headers["If-Modified-Since"] = state["modified"]
        try:
            with self.session.get(url, headers=headers, stream=True, timeout=self.timeout) as response:
                _check_status(url, response)
                if response.status_code == 304:
                    unchanged = _clean_state(state)
                    # A 304 may carry fresher validators (RFC 9110 15.4.5).
                    for key, header in (("etag", "ETag"), ("modified", "Last-Modified")):
                        if response.headers.get(header):
                            unchanged[key] = response.headers[header]
                    return [], unchanged
                body = read_capped(response, self.max_bytes)
                final_url = response.url or url
                content_type = response.headers.get("Content-Type", "")
                etag = response.headers.get("ETag")
                modified = response.headers.get("Last-Modified")
        except BlockedAddress as exc:
            raise PermanentError(f"{url}: {exc}") from None
        except ResponseTooLarge as exc:
            raise FeedRejected(
                f"{url}: {exc}; raise the account's max_bytes setting if the feed really is this large"
            ) from None
        except (
            requests.exceptions.TooManyRedirects,
            requests.exceptions.InvalidURL,
            requests.exceptions.MissingSchema,
            requests.exceptions.InvalidSchema,
        ) as exc:
            raise PermanentError(f"{url}: {exc}") from None
        except requests.exceptions.RequestException as exc:
            raise TransientError(f"{url}: network error: {exc}") from exc

        cut_short = _screen_xml(url, body)
        parsed = feedparser.parse(
            # A BytesIO, never the bytes: feedparser would fetch a body that happens to look like a URL.
            io.BytesIO(body),
            response_headers={
                "content-type": content_type or "application/xml",
                "content-location": final_url,
            },
        )
        entries = list(parsed.entries)
        if cut_short and entries:
            # The last entry may have lost its end; it comes whole in the next fetch.
            entries = entries[:-1]
        if not entries:
            if not body.strip():
                raise TransientError(f"{url}: the server sent an empty body instead of the feed")
            if cut_short:
                raise TransientError(f"{url}: the feed ends before its first entry does (cut short?)")
            if parsed.bozo:
                reason = parsed.get("bozo_exception")
                raise FeedRejected(f"{url}: not a readable RSS or Atom feed ({reason})")
            if not parsed.version:
                raise FeedRejected(f"{url}: the document is not an RSS or Atom feed")

        seen: list[str] = list(state.get("seen") or [])
        seen_set = set(seen)
        current: list[str] = []
        current_set: set[str] = set()
        new_posts: list[RawPost] = []
        for entry in entries:
            payload = entry_payload(url, parsed, entry, now)
            key = _seen_key(payload["entry_id"])
            if key in current_set:
                continue
            current.append(key)
            current_set.add(key)
            if key not in seen_set:
                external_id = external_id_for(url, payload["entry_id"])
                new_posts.append(RawPost(external_id=external_id, payload=payload))
        merged = current + [key for key in seen if key not in current_set]
        next_state = _clean_state(state)
        next_state["seen"] = merged[: max(SEEN_LIMIT, len(current))]
        if not cut_short:
            # A cut-short body keeps the old validators so the next request gets the whole feed again.
            next_state["etag"] = etag
            next_state["modified"] = modified
        # Oldest first, so the inbox sees a thread in the order it was written.
        new_posts.sort(key=lambda raw: raw.payload["published"] or raw.payload["updated"] or "")
        return new_posts, next_state

    # -- normalize -------------------------------------------------------------------------------

    def normalize(self, payload: dict[str, Any]) -> Post:
        if not isinstance(payload, dict):
            raise MalformedEvent("feed payload is not an object")
        feed_url = payload.get("feed_url")
        entry_id = payload.get("entry_id")
        if not isinstance(feed_url, str) or not feed_url:
            raise MalformedEvent("feed payload has no feed_url")
        if not isinstance(entry_id, str) or not entry_id:
            raise MalformedEvent("feed payload has no entry_id")

        created_at = None
        for name in ("published", "updated", "fetched_at"):
            created_at = _parse_iso(payload.get(name))
            if created_at:
                break
        if created_at is None:
            raise MalformedEvent(f"feed entry {entry_id!r} has no readable date")

        content = _str(payload.get("content")) or _str(payload.get("summary"))
        content_is_html = _str(payload.get("content_type")) != "text/plain"
        title = html_to_text(_str(payload.get("title")))
        if content_is_html:
            body = html_to_text(content)
            safe_html = sanitize_html(content)
        else:
            body = content.strip()
            safe_html = html.escape(body).replace("\n", "<br>")
        # Microblog-style feeds repeat the start of the text as the title.
        if title and body.startswith(title.rstrip(".… ")):
            title = ""
        text = "\n\n".join(part for part in (title, body) if part)
        if not text:
            raise MalformedEvent(f"feed entry {entry_id!r} has neither title nor content")

        author = payload.get("author") if isinstance(payload.get("author"), dict) else {}
        # Some feeds (WordPress among them) put entity references inside CDATA, where they stay literal.
        name = html.unescape(_str(author.get("name"))).strip()
        email_address = _str(author.get("email")).strip()
        href = _http_url(_str(author.get("href")))
        link = _http_url(_str(payload.get("link")))
        handle = name or email_address or _host(link) or _host(feed_url)

        in_reply_to = payload.get("in_reply_to") if isinstance(payload.get("in_reply_to"), dict) else {}
        parent_ref = _str(in_reply_to.get("ref"))
        from_brand = bool({name.casefold(), email_address.casefold()} & self.brand_authors)

        return Post(
            external_id=external_id_for(feed_url, entry_id),
            author_handle=handle,
            text=text,
            created_at=created_at,
            author_name=name,
            author_external_id=href or email_address,
            in_reply_to_external_id=external_id_for(feed_url, parent_ref) if parent_ref else None,
            from_brand=from_brand,
            url=link,
            language=_str(payload.get("language")),
            html=safe_html,
        )

    # -- publish ---------------------------------------------------------------------------------

    def publish(self, reply: Reply) -> Published:
        raise PermanentError(READ_ONLY_MESSAGE, affects_account=False)


# -- payload -------------------------------------------------------------------------------------


def entry_payload(feed_url: str, parsed: Any, entry: Any, fetched_at: dt.datetime) -> dict[str, Any]:
    """The JSON-serialisable record stored for one feed entry."""
    feed = parsed.feed
    title = _str(entry.get("title"))
    published = _iso_from_struct(entry.get("published_parsed"))
    updated = _iso_from_struct(entry.get("updated_parsed"))
    link = _http_url(_str(entry.get("link")))
    content, content_type = _content(entry)
    entry_id = _str(entry.get("id")).strip() or link
    if not entry_id:
        basis = "\n".join((title, published or updated or "")).strip() or content
        entry_id = "sha1:" + hashlib.sha1(basis.encode("utf-8"), usedforsecurity=False).hexdigest()
    language = _str(entry.get("language")) or _str(feed.get("language"))

    payload: dict[str, Any] = {
        "v": PAYLOAD_VERSION,
        "feed_url": feed_url,
        "feed_title": _str(feed.get("title")),
        "feed_link": _http_url(_str(feed.get("link"))),
        "format": _str(parsed.get("version")),
        "entry_id": entry_id,
        "link": link,
        "title": title,
        "author": _author(entry) or _author(feed) or {"name": "", "email": "", "href": ""},
        "published": published,
        "updated": updated,
        "fetched_at": fetched_at.isoformat(),
        "summary": _str(entry.get("summary")),
        "content": content,
        "content_type": content_type,
        "language": language,
        "categories": [_str(tag.get("term")) for tag in entry.get("tags") or [] if tag.get("term")],
        "in_reply_to": _in_reply_to(entry),
        "comments_url": _http_url(_str(entry.get("comments"))),
        "comment_feed": _comment_feed(entry),
        "comment_count": _comment_count(entry),
        "comment_type": _comment_type(entry),
    }
    payload["kind"] = _kind(payload)
    return payload


def external_id_for(feed_url: str, entry_id: str) -> str:
    """An entry's id if it is globally unique by design, else one namespaced by the feed it came from.

    http(s) URLs, URNs and tag: URIs are kept as they are, which also lets an Atom thr:in-reply-to ref
    name a post read from another feed of the site (its RSS twin, its comment feed).
    """
    parts = urlparse(entry_id)
    if (parts.scheme in ("http", "https") and parts.netloc) or parts.scheme in ("urn", "tag"):
        return entry_id
    digest = hashlib.sha1(f"{feed_url}\n{entry_id}".encode(), usedforsecurity=False).hexdigest()
    return f"feed:{digest}"


def _kind(payload: dict[str, Any]) -> str:
    marks = [payload["comment_type"], *payload["categories"]]
    for mark in marks:
        if mark.strip().lower() in ("pingback", "trackback"):
            return mark.strip().lower()
    ping = _PING_TITLE.match(payload["title"])
    if ping:
        return ping.group(1).lower()
    if (
        payload["in_reply_to"]
        or payload["comment_type"].strip().lower() == "comment"
        or _COMMENT_FEED_TITLE.match(payload["feed_title"])
        or _COMMENT_TITLE.match(payload["title"])
    ):
        return "comment"
    return "post"


def _content(entry: Any) -> tuple[str, str]:
    """The fullest body of an entry (content over summary) and its media type."""
    contents = entry.get("content") or []
    for item in contents:
        if "html" in _str(item.get("type")):
            return _str(item.get("value")), "text/html"
    if contents:
        return _str(contents[0].get("value")), _str(contents[0].get("type")) or "text/html"
    detail = entry.get("summary_detail") or {}
    return _str(entry.get("summary")), _str(detail.get("type")) or "text/html"


def _author(source: Any) -> dict[str, str] | None:
    detail = source.get("author_detail") or {}
    raw = _str(source.get("author")).strip()
    rss_author = _RSS_AUTHOR.match(raw)
    if rss_author:
        # RSS 2.0's "email (Name)": read here because feedparser cuts top-level domains past four letters.
        name, email_address = _str(rss_author["name"]).strip(), rss_author["email"]
    else:
        # Without a detail the plain string is all there is; with one, the string mixes name and email.
        name = _str(detail.get("name")).strip() if detail else raw
        email_address = _str(detail.get("email")).strip()
    author = {"name": name, "email": email_address, "href": _http_url(_str(detail.get("href")))}
    return author if any(author.values()) else None


def _in_reply_to(entry: Any) -> dict[str, str] | None:
    # RFC 4685's namespace is unknown to feedparser, so the key carries whatever prefix the feed chose.
    for key, value in entry.items():
        if key.endswith("in-reply-to") and isinstance(value, dict) and value.get("ref"):
            return {"ref": _str(value.get("ref")).strip(), "href": _http_url(_str(value.get("href")))}
    return None


def _comment_type(entry: Any) -> str:
    for key, value in entry.items():
        if (key == "comment_type" or key.endswith("_comment_type")) and isinstance(value, str):
            return value.strip().lower()
    return ""


def _comment_feed(entry: Any) -> str:
    feed = _http_url(_str(entry.get("wfw_commentrss")))
    if feed:
        return feed
    for link in entry.get("links") or []:
        if link.get("rel") == "replies":
            return _http_url(_str(link.get("href")))
    return ""


def _comment_count(entry: Any) -> int | None:
    candidates = [entry.get("slash_comments"), entry.get("thr_total")]
    candidates += [link.get("thr:count") for link in entry.get("links") or [] if link.get("rel") == "replies"]
    for value in candidates:
        if value is not None and _str(value).strip().isdigit():
            return int(_str(value).strip())
    return None


# -- HTML ----------------------------------------------------------------------------------------


def html_to_text(fragment: str) -> str:
    """Plain text of an HTML fragment: tags, scripts and comments dropped, entities decoded."""
    if not fragment:
        return ""
    # Blocks become paragraphs, so the text keeps the shape the author gave it.
    marked = _BLOCK_EDGE.sub("\n\n", _LINE_BREAK.sub("\n", fragment))
    stripped = nh3.clean(marked, tags=set())
    text = html.unescape(stripped)
    lines = [" ".join(line.split()) for line in text.splitlines()]
    return re.sub(r"\n{3,}", "\n\n", "\n".join(lines)).strip()


def sanitize_html(fragment: str) -> str:
    if not fragment:
        return ""
    return nh3.clean(
        fragment,
        tags=HTML_TAGS,
        attributes={"a": {"href"}, "*": set()},
        link_rel="nofollow noopener",
        url_schemes={"http", "https", "mailto"},
    )


# -- XML screening -------------------------------------------------------------------------------


def _screen_xml(url: str, body: bytes) -> bool:
    """Refuse entity declarations before feedparser sees the body. Return True if the body looks cut short."""
    try:
        DefusedET.fromstring(body, forbid_dtd=False, forbid_entities=True, forbid_external=True)
    except defusedxml.DefusedXmlException as exc:
        # `from None`: the original exception names the external entity's target.
        raise FeedRejected(
            f"{url}: the feed declares XML entities or external references ({type(exc).__name__}); "
            "it was refused unread, as entity expansion can exhaust memory or leak local files"
        ) from None
    except DefusedET.ParseError as exc:
        # expat stops at its first error, which may come before a DOCTYPE that feedparser's lenient
        # parser would still read. NULs are dropped so UTF-16/32 bodies are searched too.
        if _ENTITY_DECLARATION.search(body) or _ENTITY_DECLARATION.search(body.replace(b"\0", b"")):
            raise FeedRejected(
                f"{url}: the feed is not well-formed and declares XML entities; it was refused unread"
            ) from None
        return exc.code in _CUT_SHORT_CODES
    return False


# -- HTTP ----------------------------------------------------------------------------------------


def _check_status(url: str, response: requests.Response) -> None:
    status = response.status_code
    if status == 304 or 200 <= status < 300:
        return
    if status in (429, 503) or status == 408 or status >= 500:
        retry_after = parse_retry_after(response.headers.get("Retry-After"))
        raise TransientError(f"{url} answered HTTP {status}; will try again later", retry_after=retry_after)
    if status in (404, 410):
        raise PermanentError(f"{url} answered HTTP {status}: the feed is gone; check the feed address")
    if status in (401, 403):
        raise PermanentError(f"{url} answered HTTP {status}: the site refuses to give us this feed")
    raise PermanentError(f"{url} answered HTTP {status}")


def parse_retry_after(value: str | None) -> float | None:
    """Seconds to wait from a Retry-After header (delta-seconds or HTTP-date), or None."""
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=dt.UTC)
    return max(0.0, (when - _now()).total_seconds())


# -- cursor --------------------------------------------------------------------------------------


def _clean_state(state: dict[str, Any]) -> dict[str, Any]:
    return {key: value for key, value in state.items() if key not in ("last_error", "retry_at")}


def _record_error(state: dict[str, Any], exc: ConnectorError, now: dt.datetime) -> None:
    retry_after = exc.retry_after if isinstance(exc, TransientError) else None
    kind = "transient" if isinstance(exc, TransientError) else "permanent"
    state["last_error"] = {
        "kind": kind,
        "message": str(exc),
        "at": now.isoformat(),
        "retry_after": retry_after,
    }
    if retry_after:
        state["retry_at"] = (now + dt.timedelta(seconds=retry_after)).isoformat()
    else:
        state.pop("retry_at", None)


def _backing_off(state: dict[str, Any], now: dt.datetime) -> bool:
    retry_at = _parse_iso(state.get("retry_at"))
    return retry_at is not None and retry_at > now


def _combined(failures: list[tuple[str, ConnectorError]]) -> ConnectorError:
    if len(failures) == 1:
        return failures[0][1]
    message = "every feed failed: " + "; ".join(str(exc) for _, exc in failures)
    transient = [exc for _, exc in failures if isinstance(exc, TransientError)]
    if transient:
        waits = [exc.retry_after for exc in transient if exc.retry_after is not None]
        return TransientError(message, retry_after=min(waits) if waits else None)
    return PermanentError(message)


def _seen_key(entry_id: str) -> str:
    return hashlib.sha1(entry_id.encode("utf-8"), usedforsecurity=False).hexdigest()[:16]


# -- small helpers -------------------------------------------------------------------------------


def _now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def _str(value: Any) -> str:
    return value if isinstance(value, str) else ("" if value is None else str(value))


def _http_url(value: str) -> str:
    # Links end up in href attributes in the inbox: nothing but http(s) may pass.
    value = value.strip()
    parts = urlparse(value)
    return value if parts.scheme in ("http", "https") and parts.netloc else ""


def _host(url: str) -> str:
    return (urlparse(url).hostname or "") if url else ""


def _iso_from_struct(value: Any) -> str | None:
    # feedparser gives UTC struct_time values.
    if not value:
        return None
    try:
        return dt.datetime(*value[:6], tzinfo=dt.UTC).isoformat()
    except (TypeError, ValueError):
        return None


def _parse_iso(value: Any) -> dt.datetime | None:
    if not isinstance(value, str) or not value:
        return None
    try:
        parsed = dt.datetime.fromisoformat(value)
    except ValueError:
        return None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=dt.UTC)
