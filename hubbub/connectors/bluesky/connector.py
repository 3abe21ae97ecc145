"""Bluesky: mentions, replies, keyword search and direct messages in; replies and DMs out, via atproto.

The connector logs in to the brand's PDS (`AccountConfig.base_url`, default https://bsky.social)
with the handle and an app password (credentials "app_password"; "password" is accepted too).
The PDS proxies app.bsky.* to the AppView and, with the header
`atproto-proxy: did:web:api.bsky.chat#bsky_chat`, chat.bsky.* to the chat service; the app
password must have been created with direct-message access for the chat sources to work.

Sources and their cursor keys (every source is read newest first and paged with opaque cursors,
so each keeps a high-water mark instead of an id to start from):

    "notifications"     app.bsky.notification.listNotifications, reasons mention/reply/quote
    "search:<keyword>"  app.bsky.feed.searchPosts?q=<keyword>&sort=latest&since=<mark>: the polling
                        fallback for keywords (a long-running Jetstream worker does it live)
    "chat"              chat.bsky.convo.getLog: the rev of the last log entry read

    cursor = {
      "notifications": {"mark": {"at": "<ISO time>", "uris": ["at://…"]},
                        "pending": {"page": "<API cursor>", "top": {"at": …, "uris": […]}}},  # while draining
      "search:refund": {"mark": {...}},
      "chat": "<rev>",
    }

`mark` is the newest time seen and the uris seen at exactly that time; a fetch reads pages until
it reaches the mark. If `backfill_limit` posts come first, the fetch returns them with
`more=True` and keeps the API cursor under "pending", so the next fetch goes on reading older
pages down to the old mark: nothing is skipped however busy the account. A first fetch (no mark)
takes the newest `backfill_limit` of each source and starts from there.

Payloads are envelopes around the platform's JSON, untouched:

    {"source": "notification", "item": <notification>,   "profile": <profileViewDetailed>?}
    {"source": "search",       "item": <postView>,       "profile": <profileViewDetailed>?}
    {"source": "jetstream",    "item": <Jetstream event>, "profile": …?}  (from jetstream.py)
    {"source": "chat", "item": <logCreateMessage>, "convo": <convoView>}

`profile` is added when settings["fetch_profiles"] (default on) and gives author_followers.
The external id of a post is its at-uri whichever way it came (so the worker's (account,
external id) key stores a post seen by notifications, search and Jetstream once); a direct
message is "chat:<convoId>:<messageId>".

Publishing. A public reply is an app.bsky.feed.post record whose `reply` holds strong refs
{uri, cid} to the thread root and to the parent: the parent is looked up (app.bsky.feed.getPosts)
for its cid and for its own reply.root, so a reply to a reply stays in the customer's thread.
The record is written with com.atproto.repo.createRecord and a client-chosen `rkey` derived from
the idempotency key (`rkey_for`): the key itself when it is a TID, else a TID computed from its
hash. A retry therefore writes to the same record key; the PDS refuses a second record there
(the reference PDS fails inside its repository tree, so the refusal's shape is not relied on),
and after any failed write the connector reads com.atproto.repo.getRecord at that key: if the
record is there, the earlier attempt succeeded and it is returned. Outboxes that want real
timestamps in their rkeys should issue TIDs as idempotency keys.

A private reply is a chat message: chat.bsky.convo.getConvoForMembers([customer DID]) then
sendMessage. Chat has no idempotency key; before sending, the connector reads the newest messages
of the conversation and treats an identical message from the brand, sent since the customer last
wrote, as the earlier attempt (best effort: documented, not guaranteed).

Settings: "keywords", "backfill_limit" (200), "fetch_profiles" (True), "chat" (True),
"reasons" (["mention", "reply", "quote"]), "reply_langs" (e.g. ["en"]), "allow_private",
"did" (the brand's DID, if known before logging in), "chat_proxy".
"""

from __future__ import annotations

import datetime as dt
import hashlib
import logging
import math
import re
import threading
import time
from collections.abc import Callable
from typing import Any
from urllib.parse import quote, urlsplit

import httpx
from atproto_client import Client
from atproto_client.client.session import SessionEvent
from atproto_client.exceptions import (
    LoginRequiredError,
    NetworkError,
    RateLimitExceededError,
    RequestErrorBase,
)
from atproto_client.models.common import XrpcError
from atproto_client.models.dot_dict import DotDict
from atproto_client.models.utils import get_model_as_dict
from atproto_client.request import Request
from atproto_client.utils.facet_detection import detect_facets
from atproto_core.exceptions import AtProtocolError
from pydantic_core import to_json

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
from hubbub.connectors.bluesky.jetstream import DEFAULT_URL as JETSTREAM_URL
from hubbub.connectors.bluesky.jetstream import POST_COLLECTION, JetstreamConsumer, PostFilter
from hubbub.lib.safehttp import USER_AGENT, BlockedAddress, check_url

# A repost is a record of its own in the reposter's repo, pointing at the post through `subject`.
REPOST_COLLECTION = "app.bsky.feed.repost"
# Embeds that quote another record; `recordWithMedia` nests the quoted record one level deeper.
_QUOTE_EMBED = "app.bsky.embed.record"
_QUOTE_WITH_MEDIA_EMBED = "app.bsky.embed.recordWithMedia"

log = logging.getLogger(__name__)

DEFAULT_BASE_URL = "https://bsky.social"
DEFAULT_LIMIT = 200
PAGE_SIZE = 100  # the most listNotifications and searchPosts return per page
PROFILES_PER_CALL = 25
DEFAULT_REASONS = ("mention", "reply", "quote")
CHAT_PROXY = "did:web:api.bsky.chat#bsky_chat"
REQUEST_TIMEOUT = httpx.Timeout(30.0, connect=5.0)
MAX_TEXT_CHARS = 10_000
# How far back a DM retry looks for the message an earlier attempt may have sent.
CHAT_DEDUPE_WINDOW = 30

# Errors that say the session or the account is gone for good (after one fresh login for tokens).
TOKEN_ERRORS = frozenset({"ExpiredToken", "InvalidToken"})
ACCOUNT_ERRORS = frozenset({"AccountTakedown", "AccountDeactivated", "AccountSuspended", "AuthenticationRequired"})

_TID_ALPHABET = "234567abcdefghijklmnopqrstuvwxyz"
_TID_RE = re.compile(r"^[234567abcdefghij][234567abcdefghijklmnopqrstuvwxyz]{12}$")
# Derived TIDs fall between 2023-01-01 and 2025-01-01: in the past, so never ahead of real ones.
_DERIVED_TID_START = 1_672_531_200_000_000
_DERIVED_TID_SPAN = 2 * 365 * 86_400_000_000
_AT_URI = re.compile(r"^at://(did:[a-z]+:[a-zA-Z0-9._:%-]+)/([a-zA-Z0-9.-]+)/([a-zA-Z0-9._:~-]{1,512})$")
_COLLECTIONS = (POST_COLLECTION, REPOST_COLLECTION)
_HANDLE = re.compile(r"^[a-zA-Z0-9]([a-zA-Z0-9.-]{0,251}[a-zA-Z0-9])?$")
_CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")

# A process-wide cache of sessions: createSession is rate limited (30 per 5 minutes, 300 a day per
# account), and a connector is built for every fetch. Keyed by PDS, handle and a hash of the password.
_SESSIONS: dict[tuple[str, str, str], str] = {}
_SESSIONS_LOCK = threading.Lock()
# Accounts whose chat calls were refused (no DM access): not asked again until the time given.
_CHAT_SKIPPED: dict[tuple[str, str, str], float] = {}
CHAT_RETRY_AFTER = 3600.0


def forget_sessions() -> None:
    """Drop the process's cached sessions and chat refusals (tests; after changing credentials)."""
    with _SESSIONS_LOCK:
        _SESSIONS.clear()
        _CHAT_SKIPPED.clear()


class RateLimited(TransientError):
    """XRPC 429 RateLimitExceeded; `retry_after` is the time until `ratelimit-reset`."""


def tid(micros: int, clock_id: int = 0) -> str:
    value = ((micros & ((1 << 53) - 1)) << 10) | (clock_id & 0x3FF)
    return "".join(_TID_ALPHABET[(value >> (5 * i)) & 31] for i in reversed(range(13)))


def rkey_for(idempotency_key: str) -> str:
    """The record key a reply with this idempotency key is written to: always the same TID.

    A key that already is a TID is used as is; anything else is hashed into a TID (timestamp
    bits in 2023-2024, clock id bits from the hash), since app.bsky.feed.post records are keyed
    by TIDs.
    """
    if _TID_RE.match(idempotency_key):
        return idempotency_key
    digest = hashlib.sha256(b"hubbub-bluesky-rkey\0" + idempotency_key.encode()).digest()
    number = int.from_bytes(digest[:8], "big")
    return tid(_DERIVED_TID_START + (number >> 10) % _DERIVED_TID_SPAN, number & 0x3FF)


class BlueskyConnector:
    network = "bluesky"

    def __init__(self, config: AccountConfig):
        self.config = config
        settings = config.settings
        self._config_error = ""
        self.keywords = list(dict.fromkeys(str(k).strip() for k in settings.get("keywords") or [] if str(k).strip()))
        try:
            self.limit = max(1, int(settings.get("backfill_limit", DEFAULT_LIMIT)))
        except (TypeError, ValueError):
            self.limit = DEFAULT_LIMIT
            self._config_error = f"backfill_limit {settings.get('backfill_limit')!r} is not a number"
        self.fetch_profiles = bool(settings.get("fetch_profiles", True))
        self.chat_enabled = bool(settings.get("chat", True))
        self.reasons = [str(r) for r in settings.get("reasons") or DEFAULT_REASONS]
        self.reply_langs = [str(lang) for lang in settings.get("reply_langs") or []]
        self.allow_private = bool(settings.get("allow_private", False))
        self.chat_proxy = str(settings.get("chat_proxy") or CHAT_PROXY)
        self.handle = config.handle.strip().lstrip("@").lower()
        self.password = str(config.credentials.get("app_password") or config.credentials.get("password") or "")
        if not self.handle:
            self._config_error = "the Bluesky account has no handle"
        elif not self.password:
            self._config_error = "the Bluesky account has no app password"
        base_url = (config.base_url or DEFAULT_BASE_URL).strip()
        self.base_url = (base_url if "://" in base_url else f"https://{base_url}").rstrip("/")
        self.host = (urlsplit(self.base_url).hostname or "").lower()
        self.did = str(settings.get("did") or "")
        self._client: Client | None = None
        self._chat: Client | None = None
        self._chat_skipped = ""

    # -- fetch ------------------------------------------------------------------------------

    def fetch(self, cursor: dict[str, Any]) -> FetchResult:
        self._check_config()
        new_cursor = dict(cursor)
        found: dict[str, RawPost] = {}
        more = False
        try:
            more = self._drain("notifications", self._notifications_page, new_cursor, found, "notification") or more
            for keyword in self.keywords:
                key = f"search:{keyword}"
                more = self._drain(key, self._search_fetcher(keyword, new_cursor), new_cursor, found, "search") or more
            if self.chat_enabled and not self._chat_skipped:
                more = self._drain_chat(new_cursor, found) or more
        except RateLimited:
            if not found:
                raise
            # Keep what was read: the cursor only covers what is in `found`.
            log.info("Bluesky rate limit reached after %d posts; returning those", len(found))
            more = False
        posts = list(found.values())
        if self.fetch_profiles:
            self._attach_profiles(posts)
        return FetchResult(posts=posts, cursor=new_cursor, more=more)

    def _drain(
        self,
        key: str,
        fetch_page: Callable[[str | None, int], tuple[list[dict[str, Any]], str | None]],
        cursor: dict[str, Any],
        found: dict[str, RawPost],
        source: str,
    ) -> bool:
        """Read a newest-first source down to its mark into `found`. True if stopped at the limit."""
        state = cursor.get(key) if isinstance(cursor.get(key), dict) else {}
        mark = _mark(state.get("mark"))
        pending = state.get("pending") if isinstance(state.get("pending"), dict) else None
        page_cursor: str | None = pending.get("page") if pending else None
        top = _mark(pending.get("top")) if pending else None
        taken = 0
        while taken < self.limit:
            items, next_page = fetch_page(page_cursor, min(PAGE_SIZE, self.limit - taken))
            reached = False
            for item in items:
                when, uri = _item_time(item), item.get("uri")
                if when is None or not isinstance(uri, str):
                    log.warning("Bluesky %s item without uri or time; skipped", source)
                    continue
                if mark and (when < mark[0] or (when == mark[0] and uri in mark[1])):
                    reached = True
                    break
                top = _raise_mark(top, when, uri)
                taken += 1
                if not self._is_brand_did(_author_did(item)):
                    found.setdefault(uri, RawPost(external_id=uri, payload={"source": source, "item": item}))
            if reached or not items or not next_page:
                cursor[key] = {"mark": _dump_mark(top or mark)} if (top or mark) else {}
                return False
            page_cursor = next_page
        if mark is None:
            # A first fetch backfills only the newest `limit`.
            cursor[key] = {"mark": _dump_mark(top)} if top else {}
            return False
        cursor[key] = {"mark": _dump_mark(mark), "pending": {"page": page_cursor, "top": _dump_mark(top)}}
        return True

    def _notifications_page(self, page: str | None, limit: int) -> tuple[list[dict[str, Any]], str | None]:
        params: dict[str, Any] = {"limit": limit, "reasons": self.reasons}
        if page:
            params["cursor"] = page
        data = self._query("app.bsky.notification.listNotifications", params)
        items = [n for n in _list(data, "notifications") if n.get("reason") in self.reasons]
        return items, data.get("cursor") if isinstance(data.get("cursor"), str) else None

    def _search_fetcher(self, keyword: str, cursor: dict[str, Any]) -> Callable[..., Any]:
        state = cursor.get(f"search:{keyword}") if isinstance(cursor.get(f"search:{keyword}"), dict) else {}
        mark = _mark(state.get("mark"))

        def fetch_page(page: str | None, limit: int) -> tuple[list[dict[str, Any]], str | None]:
            params: dict[str, Any] = {"q": keyword, "sort": "latest", "limit": limit}
            if mark:
                # Inclusive: the posts at exactly the mark come again and are skipped by uri.
                params["since"] = _format_time(mark[0])
            if page:
                params["cursor"] = page
            data = self._query("app.bsky.feed.searchPosts", params)
            return _list(data, "posts"), data.get("cursor") if isinstance(data.get("cursor"), str) else None

        return fetch_page

    def _drain_chat(self, cursor: dict[str, Any], found: dict[str, RawPost]) -> bool:
        since = cursor.get("chat") if isinstance(cursor.get("chat"), str) else None
        convos: dict[str, dict[str, Any]] = {}
        with _SESSIONS_LOCK:
            skipped_until = _CHAT_SKIPPED.get(self._session_key(), 0.0)
        if skipped_until > time.time():
            return False
        try:
            params = {"cursor": since} if since else {}
            data = self._query("chat.bsky.convo.getLog", params, chat=True)
        except PermanentError as exc:
            # An app password without DM access, or a PDS without the chat service: the rest still
            # works. Remembered for the process, so connectors built per fetch do not ask every time.
            self._chat_skipped = str(exc)
            with _SESSIONS_LOCK:
                _CHAT_SKIPPED[self._session_key()] = time.time() + CHAT_RETRY_AFTER
            log.warning("Bluesky direct messages skipped for %s: %s", self.handle, exc)
            return False
        logs = [e for e in _list(data, "logs") if e.get("$type") == "chat.bsky.convo.defs#logCreateMessage"]
        if since is None:
            logs = logs[-self.limit :]
        more = len(logs) > self.limit
        logs = logs[: self.limit]
        for entry in logs:
            message = entry.get("message")
            convo_id = entry.get("convoId")
            if not isinstance(message, dict) or not isinstance(convo_id, str) or not message.get("id"):
                continue
            if message.get("$type", "").endswith("#deletedMessageView"):
                continue
            if self._is_brand_did((message.get("sender") or {}).get("did")):
                continue
            if convo_id not in convos:
                try:
                    found_convo = self._query("chat.bsky.convo.getConvo", {"convoId": convo_id}, chat=True)
                    convos[convo_id] = _dict(found_convo.get("convo")) or {"id": convo_id}
                except PermanentError as exc:
                    if exc.affects_account:
                        raise
                    # A conversation since left: the message is kept, the sender shown by DID.
                    convos[convo_id] = {"id": convo_id}
            external_id = f"chat:{convo_id}:{message['id']}"
            payload = {"source": "chat", "item": entry, "convo": convos[convo_id]}
            found.setdefault(external_id, RawPost(external_id=external_id, payload=payload))
        if more and logs:
            cursor["chat"] = str(logs[-1].get("rev") or since or "")
        elif isinstance(data.get("cursor"), str):
            cursor["chat"] = data["cursor"]
        return more

    def _attach_profiles(self, posts: list[RawPost]) -> None:
        wanted = []
        for post in posts:
            did = _author_did(post.payload.get("item") or {}) if post.payload.get("source") != "chat" else None
            if did and did not in wanted:
                wanted.append(did)
        profiles: dict[str, dict[str, Any]] = {}
        for start in range(0, len(wanted), PROFILES_PER_CALL):
            try:
                data = self._query("app.bsky.actor.getProfiles", {"actors": wanted[start : start + PROFILES_PER_CALL]})
            except TransientError as exc:
                log.info("Bluesky profiles not fetched (%s); followers counts are missing", exc)
                return
            except PermanentError as exc:
                if exc.affects_account:
                    raise
                return
            for profile in _list(data, "profiles"):
                if isinstance(profile.get("did"), str):
                    profiles[profile["did"]] = profile
        for post in posts:
            did = _author_did(post.payload.get("item") or {})
            if did in profiles:
                post.payload["profile"] = profiles[did]

    # -- normalize --------------------------------------------------------------------------

    def normalize(self, payload: dict[str, Any]) -> Post:
        if not isinstance(payload, dict):
            raise MalformedEvent(f"a Bluesky payload must be a JSON object, not {type(payload).__name__}")
        source = payload.get("source")
        item = payload.get("item")
        if source is None and "item" not in payload:
            source, item = _guess_source(payload), payload
        if not isinstance(item, dict):
            raise MalformedEvent("the Bluesky payload has no item object")
        profile = payload.get("profile") if isinstance(payload.get("profile"), dict) else {}
        if source == "chat":
            return self._normalize_chat(item, payload.get("convo"))
        if source == "jetstream":
            did, collection, rkey, record = _jetstream_parts(item)
            uri = f"at://{did}/{collection}/{rkey}"
            author: dict[str, Any] = {"did": did}
            fallback_time = _micros_time(item.get("time_us"))
        elif source in ("notification", "search"):
            uri = item.get("uri")
            if not isinstance(uri, str) or not (match := _AT_URI.match(uri)) or match.group(2) not in _COLLECTIONS:
                raise MalformedEvent(f"{source} item has no post at-uri: {str(uri)[:200]!r}")
            did, collection, rkey = match.group(1), match.group(2), match.group(3)
            record = item.get("record")
            author = item.get("author") if isinstance(item.get("author"), dict) else {}
            if author.get("did") != did:
                raise MalformedEvent(f"{uri}: the author does not own the post")
            fallback_time = _parse_time(item.get("indexedAt"))
        else:
            raise MalformedEvent(f"unknown Bluesky payload source {str(source)[:50]!r}")
        where = uri
        if not isinstance(record, dict):
            raise MalformedEvent(f"{where} has no record")
        if collection == REPOST_COLLECTION:
            subject = record.get("subject")
            reposted = subject.get("uri") if isinstance(subject, dict) else None
            if not isinstance(reposted, str) or not _AT_URI.match(reposted):
                raise MalformedEvent(f"{where}: the repost's subject is not a strong ref to an at-uri")
            record = {**record, "text": ""}
        else:
            reposted = None
        text = record.get("text")
        if not isinstance(text, str):
            raise MalformedEvent(f"{where} has no text")
        handle = profile.get("handle") or author.get("handle")
        handle = handle.lower() if isinstance(handle, str) and _HANDLE.match(handle) else ""
        if handle == "handle.invalid":
            handle = ""
        followers = profile.get("followersCount", author.get("followersCount"))
        if isinstance(followers, bool) or not isinstance(followers, int) or followers < 0:
            followers = None
        created = _parse_time(record.get("createdAt")) or fallback_time
        if created is None:
            raise MalformedEvent(f"{where} has no usable createdAt")
        reply = record.get("reply")
        parent = None
        if reply is not None:
            parent = ((reply or {}).get("parent") or {}).get("uri") if isinstance(reply, dict) else None
            if not isinstance(parent, str) or not _AT_URI.match(parent):
                raise MalformedEvent(f"{where}: reply.parent is not a strong ref to an at-uri")
        langs = record.get("langs")
        language = langs[0] if isinstance(langs, list) and langs and isinstance(langs[0], str) else ""
        name = profile.get("displayName") or author.get("displayName")
        return Post(
            external_id=uri,
            author_handle=handle or did,
            author_name=_clean(name)[:200] if isinstance(name, str) else "",
            author_external_id=did,
            author_followers=followers,
            text=_clean(text),
            created_at=created,
            in_reply_to_external_id=parent,
            from_brand=self._is_brand_did(did) or (bool(handle) and handle == self.handle),
            # A repost record has no page of its own on bsky.app.
            url=""
            if reposted
            else f"https://bsky.app/profile/{quote(handle or did, safe=':.')}/post/{quote(rkey, safe='')}",
            language=language[:20],
            is_repost=reposted is not None,
            repost_of_external_id=reposted,
            quote_of_external_id=_quoted_uri(record.get("embed")),
        )

    def _normalize_chat(self, entry: dict[str, Any], convo: Any) -> Post:
        message = entry.get("message")
        convo_id = entry.get("convoId")
        if not isinstance(message, dict) or not isinstance(convo_id, str) or not convo_id:
            raise MalformedEvent("chat log entry without message or convoId")
        message_id = message.get("id")
        text = message.get("text")
        sender = (message.get("sender") or {}).get("did") if isinstance(message.get("sender"), dict) else None
        if (
            not isinstance(message_id, str)
            or not message_id
            or not isinstance(text, str)
            or not isinstance(sender, str)
        ):
            raise MalformedEvent(f"chat message in {convo_id[:50]} lacks id, text or sender")
        created = _parse_time(message.get("sentAt"))
        if created is None:
            raise MalformedEvent(f"chat message {message_id[:50]} has no sentAt")
        member: dict[str, Any] = {}
        if isinstance(convo, dict):
            member = next((m for m in convo.get("members") or [] if isinstance(m, dict) and m.get("did") == sender), {})
        handle = member.get("handle")
        handle = handle.lower() if isinstance(handle, str) and _HANDLE.match(handle) else sender
        name = member.get("displayName")
        return Post(
            external_id=f"chat:{convo_id}:{message_id}",
            author_handle=handle,
            author_name=_clean(name)[:200] if isinstance(name, str) else "",
            author_external_id=sender,
            text=_clean(text),
            created_at=created,
            is_private=True,
            from_brand=self._is_brand_did(sender),
        )

    # -- publish ----------------------------------------------------------------------------

    def publish(self, reply: Reply) -> Published:
        self._check_config()
        if not reply.idempotency_key:
            raise PermanentError("a Bluesky reply needs an idempotency key", affects_account=False)
        if reply.private:
            return self._send_private(reply)
        return self._post_public(reply)

    def _post_public(self, reply: Reply) -> Published:
        record: dict[str, Any] = {
            "$type": POST_COLLECTION,
            "text": reply.text,
            "createdAt": _format_time(dt.datetime.now(dt.UTC)),
        }
        if self.reply_langs:
            record["langs"] = self.reply_langs
        facets = [get_model_as_dict(f) for f in detect_facets(reply.text)]
        if facets:
            record["facets"] = facets
        parent_uri = reply.in_reply_to_external_id
        if parent_uri:
            if not _AT_URI.match(parent_uri):
                raise PermanentError(f"cannot reply on Bluesky to {parent_uri[:100]!r}", affects_account=False)
            record["reply"] = self._reply_refs(parent_uri)
        did = self._session_did()
        rkey = rkey_for(reply.idempotency_key)
        try:
            result = self._procedure(
                "com.atproto.repo.createRecord",
                {"repo": did, "collection": POST_COLLECTION, "rkey": rkey, "record": record},
            )
        except RateLimited:
            raise
        except ConnectorError as exc:
            if isinstance(exc, PermanentError) and exc.affects_account:
                raise
            existing = self._existing_record(did, rkey)
            if existing is None:
                raise
            log.info("Bluesky record %s already existed (%s): an earlier attempt wrote it", rkey, exc)
            result = existing
        uri = str(result.get("uri") or f"at://{did}/{POST_COLLECTION}/{rkey}")
        profile_id = self.handle or did
        return Published(
            external_id=uri,
            url=f"https://bsky.app/profile/{quote(profile_id, safe=':.')}/post/{rkey}",
            payload={"uri": uri, "cid": result.get("cid"), "record": result.get("value") or record},
        )

    def _reply_refs(self, parent_uri: str) -> dict[str, Any]:
        data = self._query("app.bsky.feed.getPosts", {"uris": [parent_uri]})
        parent = next((p for p in _list(data, "posts") if p.get("uri") == parent_uri), None)
        if parent is None or not isinstance(parent.get("cid"), str):
            raise PermanentError(f"the Bluesky post {parent_uri} no longer exists", affects_account=False)
        parent_ref = {"uri": parent_uri, "cid": parent["cid"]}
        record = parent.get("record") if isinstance(parent.get("record"), dict) else {}
        root = (record.get("reply") or {}).get("root") if isinstance(record.get("reply"), dict) else None
        if isinstance(root, dict) and isinstance(root.get("uri"), str) and isinstance(root.get("cid"), str):
            root_ref = {"uri": root["uri"], "cid": root["cid"]}
        else:
            root_ref = parent_ref
        return {"root": root_ref, "parent": parent_ref}

    def _existing_record(self, did: str, rkey: str) -> dict[str, Any] | None:
        try:
            data = self._query("com.atproto.repo.getRecord", {"repo": did, "collection": POST_COLLECTION, "rkey": rkey})
        except ConnectorError:
            return None
        return data if isinstance(data.get("uri"), str) and isinstance(data.get("cid"), str) else None

    def _send_private(self, reply: Reply) -> Published:
        convo_id = ""
        target = reply.in_reply_to_external_id or ""
        if target.startswith("chat:") and target.count(":") >= 2:
            convo_id = target.split(":")[1]
        if not convo_id:
            handle = reply.to_handle.strip().lstrip("@")
            if not handle:
                raise PermanentError(
                    "a private Bluesky reply needs the customer's handle (to_handle)", affects_account=False
                )
            member = (
                handle
                if handle.startswith("did:")
                else _dict(self._query("app.bsky.actor.getProfile", {"actor": handle})).get("did")
            )
            if not isinstance(member, str):
                raise PermanentError(f"no Bluesky account {handle!r}", affects_account=False)
            convo = _dict(self._query("chat.bsky.convo.getConvoForMembers", {"members": [member]}, chat=True))
            convo_id = str((convo.get("convo") or {}).get("id") or "")
            if not convo_id:
                raise TransientError("the chat service returned no conversation")
        earlier = self._earlier_message(convo_id, reply.text)
        if earlier is not None:
            message = earlier
        else:
            body: dict[str, Any] = {"text": reply.text}
            facets = [get_model_as_dict(f) for f in detect_facets(reply.text)]
            if facets:
                body["facets"] = facets
            message = self._procedure("chat.bsky.convo.sendMessage", {"convoId": convo_id, "message": body}, chat=True)
        if not isinstance(message.get("id"), str):
            raise TransientError("the chat service returned no message id")
        return Published(
            external_id=f"chat:{convo_id}:{message['id']}",
            payload={"convoId": convo_id, "message": message},
        )

    def _earlier_message(self, convo_id: str, text: str) -> dict[str, Any] | None:
        data = self._query("chat.bsky.convo.getMessages", {"convoId": convo_id, "limit": CHAT_DEDUPE_WINDOW}, chat=True)
        did = self._session_did()
        for message in _list(data, "messages"):  # newest first
            if (message.get("sender") or {}).get("did") != did:
                return None  # the customer wrote since: a new identical reply is meant
            if message.get("text") == text:
                return message
        return None

    # -- the client, errors and rate limits -------------------------------------------------

    def _check_config(self) -> None:
        if self._config_error:
            raise PermanentError(f"Bluesky account misconfigured: {self._config_error}")

    def _session_did(self) -> str:
        self._ensure_client()
        return self.did

    def _ensure_client(self) -> Client:
        if self._client is not None:
            return self._client
        try:
            check_url(self.base_url, self.allow_private)
        except BlockedAddress as exc:
            raise PermanentError(f"refusing to connect to {self.host}: {exc}") from exc
        except OSError as exc:
            raise TransientError(f"cannot reach {self.host}: {exc}") from exc
        allow_private = self.allow_private

        def guard(request: httpx.Request) -> None:
            # Every request, redirects and the PDS named in the session's DID document included.
            check_url(str(request.url), allow_private)

        client = Client(
            base_url=self.base_url,
            request=Request(timeout=REQUEST_TIMEOUT, event_hooks={"request": [guard]}, trust_env=False),
        )
        client.request.add_additional_header("User-Agent", f"{USER_AGENT} atproto")
        key = self._session_key()
        with _SESSIONS_LOCK:
            saved = _SESSIONS.get(key)
        logged_in = False
        if saved:
            try:
                client.login(session_string=saved, fetch_bsky_profile=False)
                logged_in = True
            except (AtProtocolError, ValueError):
                logged_in = False
        if not logged_in:
            self._translated(lambda: client.login(self.handle, self.password, fetch_bsky_profile=False))
        client.on_session_change(self._remember_session)
        self._remember_session(SessionEvent.CREATE, None, client)
        session = client._session
        if session is None:
            raise TransientError(f"{self.host} returned no session")
        self.did = session.did
        self._client = client
        return client

    def _session_key(self) -> tuple[str, str, str]:
        return (self.base_url, self.handle, hashlib.sha256(self.password.encode()).hexdigest())

    def _remember_session(self, event: Any, session: Any, client: Client | None = None) -> None:
        client = client or self._client
        if client is None:
            return
        try:
            exported = client.export_session_string()
        except LoginRequiredError:
            return
        with _SESSIONS_LOCK:
            _SESSIONS[self._session_key()] = exported

    def _forget_session(self) -> None:
        with _SESSIONS_LOCK:
            _SESSIONS.pop(self._session_key(), None)
        self._client = None
        self._chat = None

    def _chat_client(self) -> Client:
        if self._chat is None:
            client = self._ensure_client()
            did, _, service = self.chat_proxy.partition("#")
            self._chat = client.with_proxy(service or "bsky_chat", did)
        return self._chat

    def _query(self, nsid: str, params: dict[str, Any], chat: bool = False) -> dict[str, Any]:
        def call(client: Client) -> Any:
            target = self._chat_client() if chat else client
            return target.invoke_query(nsid, params=DotDict(params) if params else None)

        return _dict(self._call(call, chat=chat))

    def _procedure(self, nsid: str, body: dict[str, Any], chat: bool = False) -> dict[str, Any]:
        content = to_json(body)

        def call(client: Client) -> Any:
            target = self._chat_client() if chat else client
            return target.invoke_procedure(nsid, content=content, headers={"Content-Type": "application/json"})

        return _dict(self._call(call, chat=chat))

    def _call(self, fn: Callable[[Client], Any], chat: bool = False) -> Any:
        """Run one XRPC call; a refused session gets one fresh login with the app password.

        A token the chat service refuses is usually an app password without DM access: the
        session is checked with the PDS itself (logging in again only if the PDS refuses it too),
        and a chat service that still refuses it fails the chat call, not the account.
        """
        for attempt in (1, 2):
            client = self._ensure_client()
            try:
                response = fn(client)
            except (RequestErrorBase, LoginRequiredError) as exc:
                name = _error_name(exc)
                if attempt == 1 and name in TOKEN_ERRORS | {"LoginRequired"}:
                    log.info("Bluesky session for %s refused (%s); checking it", self.handle, exc)
                    if chat:
                        self._query("com.atproto.server.getSession", {})
                    else:
                        self._forget_session()
                    continue
                if chat and name in TOKEN_ERRORS:
                    message = f"the Bluesky chat service refused the session (does the app password allow DMs?): {exc}"
                    raise PermanentError(message, affects_account=False) from exc
                raise self._translate(exc) from exc
            except Exception as exc:
                raise self._translate(exc) from exc
            return response.content
        raise AssertionError("unreachable")

    def _translated(self, fn: Callable[[], Any]) -> Any:
        try:
            return fn()
        except Exception as exc:
            raise self._translate(exc) from exc

    def _translate(self, exc: BaseException) -> ConnectorError:
        where = self.host or "Bluesky"
        if isinstance(exc, ConnectorError):
            return exc
        if _caused_by(exc, BlockedAddress):
            return PermanentError(f"refusing to connect to {where}: {exc}")
        if isinstance(exc, RateLimitExceededError):
            return RateLimited(f"{where} rate limit reached", retry_after=_retry_after(exc))
        if isinstance(exc, LoginRequiredError):
            return PermanentError(f"{where} session could not be renewed: {exc}")
        if isinstance(exc, RequestErrorBase):
            status = exc.response.status_code if exc.response is not None else None
            name = _error_name(exc)
            detail = str(exc)[:300]
            if name in ACCOUNT_ERRORS or name in TOKEN_ERRORS:
                return PermanentError(f"{where} refused the account {self.handle}: {detail}")
            if status is None or status >= 500 or status in (408, 425):
                return TransientError(f"{where} failed ({status or 'network'}): {detail}")
            if status in (401, 403):
                return PermanentError(f"{where} refused the session ({status}): {detail}")
            if isinstance(exc, NetworkError) and status == 502:
                return TransientError(f"{where} failed (502): {detail}")
            return PermanentError(f"{where} rejected the request ({status}): {detail}", affects_account=False)
        if isinstance(exc, httpx.HTTPError | OSError):
            return TransientError(f"cannot reach {where}: {exc}")
        return TransientError(f"Bluesky error from {where}: {exc!r}")

    def _is_brand_did(self, did: Any) -> bool:
        return bool(self.did) and did == self.did

    # -- live listening ---------------------------------------------------------------------

    def jetstream(
        self,
        on_post: Callable[[RawPost], None],
        *,
        cursor: int | None = None,
        on_cursor: Callable[[int], None] | None = None,
        stop: threading.Event | None = None,
        **options: Any,
    ) -> JetstreamConsumer:
        """A Jetstream consumer for this account: the brand's mentions, replies, quotes and keywords.

        Needs the brand's DID: settings["did"], or one login to find it. The Jetstream URL is
        settings["jetstream_url"] (default the public jetstream2.us-east instance).
        """
        self._check_config()
        if not self.did:
            self._session_did()
        url = str(self.config.settings.get("jetstream_url") or JETSTREAM_URL)
        options.setdefault("allow_private", self.allow_private)
        return JetstreamConsumer(
            url,
            on_post=on_post,
            post_filter=PostFilter(brand_did=self.did, brand_handle=self.handle, keywords=self.keywords),
            cursor=cursor,
            on_cursor=on_cursor,
            stop=stop,
            **options,
        )


# -- helpers ----------------------------------------------------------------------------------


def _error_name(exc: BaseException) -> str:
    if isinstance(exc, LoginRequiredError):
        return "LoginRequired"
    response = getattr(exc, "response", None)
    content = getattr(response, "content", None)
    if isinstance(content, XrpcError):
        return str(content.error or "")
    if isinstance(content, dict):
        return str(content.get("error") or "")
    return ""


def _retry_after(exc: RateLimitExceededError) -> float | None:
    if exc.reset_at is not None:
        return float(max(1, math.ceil(exc.reset_at.timestamp() - time.time())))
    return exc.retry_after


def _caused_by(exc: BaseException, kind: type[BaseException]) -> bool:
    seen: BaseException | None = exc
    while seen is not None:
        if isinstance(seen, kind):
            return True
        seen = seen.__cause__ or seen.__context__
    return False


def _dict(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def _list(data: dict[str, Any], key: str) -> list[dict[str, Any]]:
    items = data.get(key)
    return [i for i in items if isinstance(i, dict)] if isinstance(items, list) else []


def _author_did(item: dict[str, Any]) -> str | None:
    author = item.get("author")
    if isinstance(author, dict) and isinstance(author.get("did"), str):
        return author["did"]
    if isinstance(item.get("did"), str):  # a Jetstream event
        return item["did"]
    return None


def _parse_time(value: Any) -> dt.datetime | None:
    if not isinstance(value, str) or not value or len(value) > 64:
        return None
    try:
        moment = dt.datetime.fromisoformat(value.strip())
    except ValueError:
        return None
    return moment.astimezone(dt.UTC) if moment.tzinfo else moment.replace(tzinfo=dt.UTC)


def _micros_time(value: Any) -> dt.datetime | None:
    if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
        return None
    try:
        return dt.datetime.fromtimestamp(value / 1_000_000, dt.UTC)
    except (OverflowError, OSError, ValueError):
        return None


def _format_time(moment: dt.datetime) -> str:
    moment = moment.astimezone(dt.UTC)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"


def _item_time(item: dict[str, Any]) -> dt.datetime | None:
    # Notifications sort by indexedAt; search "latest" by the earlier of createdAt and indexedAt.
    indexed = _parse_time(item.get("indexedAt"))
    if "reason" in item:
        return indexed
    record = item.get("record") if isinstance(item.get("record"), dict) else {}
    created = _parse_time(record.get("createdAt"))
    if indexed and created:
        return min(indexed, created)
    return indexed or created


Mark = tuple[dt.datetime, set[str]]


def _mark(value: Any) -> Mark | None:
    if not isinstance(value, dict):
        return None
    when = _parse_time(value.get("at"))
    uris = value.get("uris")
    if when is None:
        return None
    return when, {u for u in uris if isinstance(u, str)} if isinstance(uris, list) else set()


def _raise_mark(mark: Mark | None, when: dt.datetime, uri: str) -> Mark:
    if mark is None or when > mark[0]:
        return when, {uri}
    if when == mark[0]:
        mark[1].add(uri)
    return mark


def _dump_mark(mark: Mark | None) -> dict[str, Any] | None:
    if mark is None:
        return None
    return {"at": mark[0].isoformat(), "uris": sorted(mark[1])}


def _guess_source(payload: dict[str, Any]) -> str:
    if "kind" in payload and "time_us" in payload:
        return "jetstream"
    if "reason" in payload:
        return "notification"
    if "convoId" in payload:
        return "chat"
    return "search"


def _jetstream_parts(event: dict[str, Any]) -> tuple[str, str, str, Any]:
    did = event.get("did")
    commit = event.get("commit")
    if event.get("kind") != "commit" or not isinstance(commit, dict):
        raise MalformedEvent("Jetstream event is not a commit")
    collection = commit.get("collection")
    if collection not in _COLLECTIONS or commit.get("operation") not in ("create", "update"):
        raise MalformedEvent("Jetstream commit does not create a post or a repost")
    rkey = commit.get("rkey")
    if not isinstance(did, str) or not isinstance(rkey, str) or not _AT_URI.match(f"at://{did}/{collection}/{rkey}"):
        raise MalformedEvent("Jetstream commit has no valid did and rkey")
    return did, collection, rkey, commit.get("record")


def _quoted_uri(embed: Any) -> str | None:
    if not isinstance(embed, dict):
        return None
    kind = embed.get("$type")
    if kind == _QUOTE_WITH_MEDIA_EMBED:
        embed = embed.get("record")
        kind = _QUOTE_EMBED if isinstance(embed, dict) else None
    if kind != _QUOTE_EMBED or not isinstance(embed, dict):
        return None
    ref = embed.get("record")
    uri = ref.get("uri") if isinstance(ref, dict) else None
    return uri if isinstance(uri, str) and _AT_URI.match(uri) else None


def _clean(text: str) -> str:
    """Plain text as stored: control characters (NUL breaks PostgreSQL) dropped, length capped."""
    return _CONTROL.sub("", text[:MAX_TEXT_CHARS])
