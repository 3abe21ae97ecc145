"""Facebook Pages, Messenger and Instagram through Meta's Graph API.

Webhooks are the primary way in (see `hubbub.connectors.meta.webhook.split_webhook`); `fetch` is
the polling fallback and the backfill after connecting, reading the same objects the webhooks
announce so both are stored under the same external IDs (post_id, comment_id, message mid).

Sources and their cursor keys:

    "feed"                  GET /{page-id}/feed — posts on the Page (visitor posts and the Page's own,
                            which are not returned but whose comments are watched). Newest first;
                            the cursor holds the `since` time, the IDs seen at that second and,
                            while a window is only partly read, the paging cursor to resume it.
    "comments:{post-id}"    GET /{post-id}/comments?filter=stream&order=chronological — comments and
                            replies on posts from the last `comment_days` days ("watch" lists them).
    "conversations:{platform}"  GET /{page-id}/conversations?platform=messenger|instagram with the
                            messages nested; messages newer than the cursor, oldest first.

Settings (AccountConfig.settings): "page_id", "ig_user_id" (at least one), "backfill_limit" (200:
the most posts taken from one source in one fetch, and what a first fetch backfills),
"comment_days" (7), "watch_limit" (50 posts), "messenger" / "instagram_messages" (poll
conversations; default on when the matching ID is set), "human_agent_tag" (allow replies up to
7 days after the customer's last message with the HUMAN_AGENT tag; the app needs that permission),
"usage_threshold" (95: stop calling when an X-*-Usage header reaches this percentage),
"allow_private". Credentials: "access_token" (a Page access token), optional "app_secret"
(sends appsecret_proof with every call, as apps with "Require App Secret" must).

Publishing: a public reply to a Page post or comment is POST /{id}/comments; to an Instagram
comment POST /{id}/replies; a private reply to a comment or post is POST /{page-id}/messages with
recipient {comment_id|post_id} (one per comment, within 7 days); a reply to a direct message is
POST /{page-id}/messages with recipient {id} and messaging_type RESPONSE, only inside the 24-hour
window since the customer's last message (which is asked of the Graph API, not trusted from us).

The Graph API has no idempotency key. Before every publish the connector looks for a reply by
the Page with the same text where this one would appear (the comment's replies, the conversation
since the customer's last message) and returns it instead of posting again; so a retry after a
lost response never publishes twice. The cost is one extra read per reply, and an agent who
deliberately sends the same text twice to the same comment or conversation turn gets one.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import hmac
import json
import logging
import math
import re
import time
from typing import Any
from urllib.parse import urlsplit

import requests

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

DEFAULT_BASE_URL = "https://graph.facebook.com/v25.0"
DEFAULT_LIMIT = 200
PAGE_SIZE = 50
REQUEST_TIMEOUT = (5.0, 30.0)
MAX_RESPONSE = 8 * 1024 * 1024
# Most conversation pages read in one fetch (25 conversations each).
MAX_CONVERSATION_PAGES = 40
MESSAGES_PER_CONVERSATION = 25
STANDARD_WINDOW = dt.timedelta(hours=24)
HUMAN_AGENT_WINDOW = dt.timedelta(days=7)
# When Meta says "throttled" without estimated_time_to_regain_access: its windows roll over an hour.
DEFAULT_THROTTLE_WAIT = 300.0

POST_FIELDS = "id,message,story,created_time,updated_time,from,permalink_url"
COMMENT_FIELDS = "id,message,created_time,from,parent{id},permalink_url"
MESSAGE_FIELDS = "id,message,created_time,from,to"
PLATFORMS = ("messenger", "instagram")

# Graph error codes (https://developers.facebook.com/docs/graph-api/guides/error-handling, the rate
# limiting page and the Messenger Platform error codes).
RATE_LIMIT_CODES = frozenset({4, 17, 32, 613, 80001, 80002, 80003, 80004, 80005, 80006, 80008, 80009, 80014})
TOKEN_CODES = frozenset({102, 190})
TRANSIENT_CODES = frozenset({1, 2})
POLICY_BLOCK_CODE = 368  # "temporarily blocked for policies violations": wait and retry
OUTSIDE_WINDOW_SUBCODES = frozenset({2018278, 2018065})
PRIVATE_REPLY_DONE_CODES = frozenset({10900, 10903})  # already replied to / can't be replied to
USER_UNAVAILABLE_CODE = 551
DUPLICATE_POST_CODE = 506

_CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")


class RateLimited(TransientError):
    """Meta is throttling this app, Page or business use case; `retry_after` is our estimate."""


class _GraphError(Exception):
    def __init__(self, status: int, error: dict[str, Any]):
        super().__init__(str(error.get("message") or "Graph API error"))
        self.status = status
        self.error = error
        self.code = error.get("code") if isinstance(error.get("code"), int) else None
        sub = error.get("error_subcode")
        self.subcode = sub if isinstance(sub, int) else None


class MetaConnector:
    network = "meta"

    def __init__(self, config: AccountConfig):
        self.config = config
        settings = config.settings
        self._config_error = ""
        self.page_id = str(settings.get("page_id") or "").strip()
        self.ig_user_id = str(settings.get("ig_user_id") or "").strip()
        if not self.page_id and not self.ig_user_id:
            self._config_error = "neither page_id nor ig_user_id is set"
        for name, value in (("page_id", self.page_id), ("ig_user_id", self.ig_user_id)):
            if value and not value.isdigit():
                self._config_error = f"{name} {value!r} is not a numeric Graph ID"
        self.limit = _positive_int(settings, "backfill_limit", DEFAULT_LIMIT, self)
        self.comment_days = _positive_int(settings, "comment_days", 7, self)
        self.watch_limit = _positive_int(settings, "watch_limit", 50, self)
        self.usage_threshold = _positive_int(settings, "usage_threshold", 95, self)
        self.poll_messenger = bool(settings.get("messenger", True)) and bool(self.page_id)
        self.poll_instagram_messages = bool(settings.get("instagram_messages", True)) and bool(
            self.ig_user_id and self.page_id
        )
        self.human_agent_tag = bool(settings.get("human_agent_tag", False))
        self.token = str(config.credentials.get("access_token") or "")
        if not self.token:
            self._config_error = "the Meta account has no access token"
        app_secret = str(config.credentials.get("app_secret") or "")
        self.appsecret_proof = (
            hmac.new(app_secret.encode(), self.token.encode(), hashlib.sha256).hexdigest() if app_secret else ""
        )
        base = (config.base_url or DEFAULT_BASE_URL).rstrip("/")
        if "://" not in base:
            base = f"https://{base}"
        self.base_url = base
        self.host = (urlsplit(base).hostname or "").lower()
        self.session = safe_session(allow_private=bool(settings.get("allow_private", False)))
        self._paused_until = 0.0
        self._pause_reason = ""

    # -- fetch -----------------------------------------------------------------------------

    def fetch(self, cursor: dict[str, Any]) -> FetchResult:
        self._check_config()
        new_cursor = json.loads(json.dumps(cursor or {}))
        found: dict[str, tuple[tuple[int, str], RawPost]] = {}
        more = False
        try:
            if self.page_id:
                more = self._fetch_feed(new_cursor, found) or more
                more = self._fetch_comments(new_cursor, found) or more
            if self.poll_messenger:
                more = self._fetch_conversations("messenger", new_cursor, found) or more
            if self.poll_instagram_messages:
                more = self._fetch_conversations("instagram", new_cursor, found) or more
        except RateLimited:
            if not found:
                raise
            # Every cursor key moves page by page with the posts, so what was read is consistent.
            log.info("Graph API throttling after %d posts; returning those", len(found))
            more = False
        posts = [post for _, post in sorted(found.values(), key=lambda item: item[0])]
        return FetchResult(posts=posts, cursor=new_cursor, more=more)

    def _fetch_feed(self, cursor: dict[str, Any], found: dict) -> bool:
        """Walk the feed newest first inside the window since cursor["feed"]["since"]."""
        first = "feed" not in cursor
        state = dict(cursor.get("feed") or {})
        since = state.get("since")
        seen = set(state.get("seen") or [])
        after = state.get("after")
        top = state.get("top", since)
        top_seen = list(state.get("top_seen", sorted(seen)))
        taken = 0
        watch = dict(cursor.get("watch") or {})
        while True:
            params: dict[str, Any] = {"fields": POST_FIELDS, "limit": min(PAGE_SIZE, max(1, self.limit - taken))}
            if since is not None:
                # One second early: whether Graph's `since` is inclusive or not, nothing is skipped.
                params["since"] = int(since) - 1
            if after:
                params["after"] = after
            try:
                data, next_after = self._list(f"{self.page_id}/feed", params)
            except PermanentError as exc:
                if exc.affects_account or not after:
                    raise
                # An expired paging cursor: read the window again from `since`. Posts already
                # returned come back and the worker's (account, external id) key drops them.
                log.info("feed paging cursor refused (%s); rereading the window", exc)
                after, top, top_seen = None, since, sorted(seen)
                continue
            for node in data:
                post_id = _node_id(node)
                created = _graph_time(node.get("created_time"))
                if post_id is None or created is None:
                    log.warning("feed item without id or created_time skipped: %.200r", node)
                    continue
                stamp = int(created.timestamp())
                if since is not None and (stamp < since or (stamp == since and post_id in seen)):
                    continue
                if top is None or stamp > top:
                    top, top_seen = stamp, [post_id]
                elif stamp == top and post_id not in top_seen:
                    top_seen.append(post_id)
                watch[post_id] = stamp
                if self._is_brand(node.get("from"), "page"):
                    continue
                self._keep(found, post_id, stamp, {"kind": "page_post", "node": node})
                taken += 1
            if not next_after or not data:
                cursor["feed"] = {"since": top, "seen": sorted(top_seen)}
                more = False
                break
            if taken >= self.limit:
                if first:
                    # Backfill stops at the limit: older posts are not wanted.
                    cursor["feed"] = {"since": top, "seen": sorted(top_seen)}
                    more = False
                else:
                    cursor["feed"] = {
                        "since": since,
                        "seen": sorted(seen),
                        "after": next_after,
                        "top": top,
                        "top_seen": sorted(top_seen),
                    }
                    more = True
                break
            after = next_after
            cursor["feed"] = {
                "since": since,
                "seen": sorted(seen),
                "after": after,
                "top": top,
                "top_seen": sorted(top_seen),
            }
        cursor["watch"] = self._prune_watch(watch)
        return more

    def _prune_watch(self, watch: dict[str, int]) -> dict[str, int]:
        oldest = time.time() - self.comment_days * 86400
        kept = sorted(((stamp, pid) for pid, stamp in watch.items() if stamp >= oldest), reverse=True)
        return {pid: stamp for stamp, pid in kept[: self.watch_limit]}

    def _fetch_comments(self, cursor: dict[str, Any], found: dict) -> bool:
        more = False
        watch = cursor.get("watch") or {}
        for key in [k for k in cursor if k.startswith("comments:") and k[9:] not in watch]:
            del cursor[key]  # the post left the watch window
        for post_id in list(watch):
            try:
                more = self._fetch_post_comments(post_id, cursor, found) or more
            except PermanentError as exc:
                if exc.affects_account:
                    raise
                # A deleted or hidden post: stop watching it, keep going with the others.
                log.info("no longer watching comments on %s: %s", post_id, exc)
                cursor["watch"].pop(post_id, None)
                cursor.pop(f"comments:{post_id}", None)
        return more

    def _fetch_post_comments(self, post_id: str, cursor: dict[str, Any], found: dict) -> bool:
        key = f"comments:{post_id}"
        state = cursor.get(key) or {}
        since = state.get("since")
        seen = set(state.get("seen") or [])
        taken = 0
        after = None
        while True:
            params: dict[str, Any] = {
                "fields": COMMENT_FIELDS,
                "filter": "stream",
                "order": "chronological",
                "limit": min(PAGE_SIZE, max(1, self.limit - taken)),
            }
            if since is not None:
                params["since"] = int(since) - 1
            if after:
                params["after"] = after
            data, next_after = self._list(f"{post_id}/comments", params)
            for node in data:
                comment_id = _node_id(node)
                created = _graph_time(node.get("created_time"))
                if comment_id is None or created is None:
                    continue
                stamp = int(created.timestamp())
                if since is not None and (stamp < since or (stamp == since and comment_id in seen)):
                    continue
                # Oldest first, so the cursor simply follows what has been read.
                if since is None or stamp > since:
                    since, seen = stamp, set()
                seen.add(comment_id)
                cursor[key] = {"since": since, "seen": sorted(seen)}
                if not self._is_brand(node.get("from"), "page"):
                    self._keep(found, comment_id, stamp, {"kind": "page_comment", "post_id": post_id, "node": node})
                    taken += 1
                if taken >= self.limit:
                    return True
            if not next_after or not data:
                return False
            after = next_after

    def _fetch_conversations(self, platform: str, cursor: dict[str, Any], found: dict) -> bool:
        """New messages in the Page's conversations, oldest first, at most `limit` of them."""
        key = f"conversations:{platform}"
        first = key not in cursor
        state = cursor.get(key) or {}
        since = state.get("since")
        seen = set(state.get("seen") or [])
        brand_kind = "page" if platform == "messenger" else "instagram"
        candidates: list[tuple[int, str, dict[str, Any], str]] = []
        after = None
        for _ in range(MAX_CONVERSATION_PAGES):
            params: dict[str, Any] = {
                "platform": platform,
                "fields": f"id,updated_time,messages.limit({MESSAGES_PER_CONVERSATION}){{{MESSAGE_FIELDS}}}",
                "limit": 25,
            }
            if after:
                params["after"] = after
            data, next_after = self._list(f"{self.page_id}/conversations", params)
            stop = False
            for conversation in data:
                updated = _graph_time(conversation.get("updated_time"))
                if since is not None and updated is not None and updated.timestamp() < since - 1:
                    stop = True  # ordered by updated_time: nothing older has news
                    break
                conversation_id = _node_id(conversation) or ""
                for node in self._conversation_messages(conversation, since):
                    mid = _node_id(node)
                    created = _graph_time(node.get("created_time"))
                    if mid is None or created is None:
                        continue
                    stamp = int(created.timestamp())
                    if since is not None and (stamp < since or (stamp == since and mid in seen)):
                        continue
                    if self._is_brand(node.get("from"), brand_kind):
                        continue
                    candidates.append((stamp, mid, node, conversation_id))
            if stop or not next_after or not data:
                break
            if first and len(candidates) >= self.limit:
                break
            after = next_after
        else:
            log.warning("%s conversations: more than %d pages changed since the last fetch", platform, 40)
        kind = "messenger_message" if platform == "messenger" else "ig_message"
        if first:
            # Backfill: the newest `limit` messages, then carry on from the newest.
            candidates.sort(key=lambda c: (c[0], c[1]))
            chosen = candidates[-self.limit :]
            more = False
        else:
            candidates.sort(key=lambda c: (c[0], c[1]))
            chosen = candidates[: self.limit]
            more = len(candidates) > self.limit
        for stamp, mid, node, conversation_id in chosen:
            if since is None or stamp > since:
                since, seen = stamp, set()
            seen.add(mid)
            self._keep(
                found,
                mid,
                stamp,
                {"kind": kind, "platform": platform, "conversation_id": conversation_id, "node": node},
            )
        cursor[key] = {"since": since, "seen": sorted(seen)}
        return more

    def _conversation_messages(self, conversation: dict[str, Any], since: int | None) -> list[dict[str, Any]]:
        box = conversation.get("messages") or {}
        messages = [m for m in box.get("data") or [] if isinstance(m, dict)]
        next_after = ((box.get("paging") or {}).get("cursors") or {}).get("after")
        has_next = bool((box.get("paging") or {}).get("next"))
        conversation_id = _node_id(conversation)
        pages = 0
        # Newest first: only read further back while the oldest one read is still new to us.
        while has_next and next_after and conversation_id and since is not None and pages < 20:
            oldest = _graph_time(messages[-1].get("created_time")) if messages else None
            if oldest is None or oldest.timestamp() < since:
                break
            data, next_after = self._list(
                f"{conversation_id}/messages", {"fields": MESSAGE_FIELDS, "limit": 25, "after": next_after}
            )
            messages.extend(m for m in data if isinstance(m, dict))
            has_next = bool(next_after) and bool(data)
            pages += 1
        return messages

    def _keep(self, found: dict, external_id: str, stamp: int, extra: dict[str, Any]) -> None:
        platform = extra.get("platform")
        obj = "instagram" if platform == "instagram" else "page"
        payload = {
            "kind": extra["kind"],
            "via": "graph",
            "object": obj,
            "entry_id": self.ig_user_id if obj == "instagram" else self.page_id,
            **{k: v for k, v in extra.items() if k != "kind"},
        }
        found.setdefault(external_id, ((stamp, external_id), RawPost(external_id=external_id, payload=payload)))

    # -- normalize -------------------------------------------------------------------------

    def normalize(self, payload: dict[str, Any]) -> Post:
        if not isinstance(payload, dict):
            raise MalformedEvent(f"a Meta payload must be a JSON object, not {type(payload).__name__}")
        kind = payload.get("kind")
        via = payload.get("via")
        if via == "webhook":
            if kind in ("page_post", "page_comment"):
                return self._feed_change(kind, payload)
            if kind == "ig_comment":
                return self._ig_comment_change(payload)
            if kind in ("messenger_message", "ig_message"):
                return self._messaging_event(kind, payload)
        elif via == "graph":
            node = payload.get("node")
            if not isinstance(node, dict):
                raise MalformedEvent("a fetched Meta payload has no node object")
            if kind == "page_post":
                return self._graph_post(node)
            if kind == "page_comment":
                return self._graph_comment(node, payload.get("post_id"))
            if kind in ("messenger_message", "ig_message"):
                return self._graph_message(kind, node)
        raise MalformedEvent(f"unknown Meta payload kind {kind!r} via {via!r}")

    def _feed_change(self, kind: str, payload: dict[str, Any]) -> Post:
        value = _change_value(payload, "feed")
        external_id = _required_id(value, "comment_id" if kind == "page_comment" else "post_id", "feed change")
        where = f"feed {kind} {external_id}"
        author = value.get("from") if isinstance(value.get("from"), dict) else {}
        author_id = _optional_id(author, "id", where)
        reply_to = None
        if kind == "page_comment":
            reply_to = _optional_id(value, "parent_id", where) or _optional_id(value, "post_id", where)
            if reply_to is None:
                raise MalformedEvent(f"{where} names neither its post nor its parent")
        return Post(
            external_id=external_id,
            author_handle=author_id or f"anonymous:{external_id}",
            author_name=_optional_str(author, "name", where),
            author_external_id=author_id or "",
            text=clean_text(_optional_str(value, "message", where)),
            created_at=_webhook_time(value.get("created_time"), payload.get("entry_time"), where),
            in_reply_to_external_id=reply_to,
            from_brand=bool(author_id) and author_id == self.page_id,
            url=f"https://www.facebook.com/{external_id}",
        )

    def _ig_comment_change(self, payload: dict[str, Any]) -> Post:
        value = _change_value(payload, None)
        external_id = _required_id(value, "id", "Instagram comment")
        where = f"Instagram comment {external_id}"
        author = value.get("from")
        if not isinstance(author, dict):
            raise MalformedEvent(f"{where} has no from object")
        author_id = _optional_id(author, "id", where)
        username = _optional_str(author, "username", where)
        media = value.get("media") if isinstance(value.get("media"), dict) else {}
        reply_to = _optional_id(value, "parent_id", where) or _optional_id(media, "id", where)
        # The comments webhook carries no time of its own: the entry time is when Meta sent it.
        return Post(
            external_id=external_id,
            author_handle=username or author_id or f"anonymous:{external_id}",
            author_name=username,
            author_external_id=author_id or "",
            text=clean_text(_optional_str(value, "text", where)),
            created_at=_webhook_time(value.get("timestamp"), payload.get("entry_time"), where),
            in_reply_to_external_id=reply_to,
            from_brand=bool(author_id) and author_id in (self.ig_user_id, payload.get("entry_id")),
        )

    def _messaging_event(self, kind: str, payload: dict[str, Any]) -> Post:
        event = payload.get("messaging")
        if not isinstance(event, dict) or not isinstance(event.get("message"), dict):
            raise MalformedEvent("a messaging payload has no message object")
        message = event["message"]
        mid = _required_id(message, "mid", "message")
        where = f"message {mid}"
        sender = event.get("sender")
        if not isinstance(sender, dict):
            raise MalformedEvent(f"{where} has no sender")
        sender_id = _required_id(sender, "id", where)
        reply_to = message.get("reply_to") if isinstance(message.get("reply_to"), dict) else {}
        brand = self.page_id if kind == "messenger_message" else self.ig_user_id
        return Post(
            external_id=mid,
            author_handle=sender_id,
            author_external_id=sender_id,
            text=clean_text(_optional_str(message, "text", where)) or _attachments_text(message),
            created_at=_webhook_time(event.get("timestamp"), payload.get("entry_time"), where),
            in_reply_to_external_id=_optional_id(reply_to, "mid", where),
            is_private=True,
            from_brand=bool(message.get("is_echo")) or sender_id in (brand, payload.get("entry_id")),
        )

    def _graph_post(self, node: dict[str, Any]) -> Post:
        post_id = _required_id(node, "id", "post")
        where = f"post {post_id}"
        author = node.get("from") if isinstance(node.get("from"), dict) else {}
        author_id = _optional_id(author, "id", where)
        return Post(
            external_id=post_id,
            author_handle=author_id or f"anonymous:{post_id}",
            author_name=_optional_str(author, "name", where),
            author_external_id=author_id or "",
            text=clean_text(_optional_str(node, "message", where) or _optional_str(node, "story", where)),
            created_at=_required_graph_time(node, where),
            from_brand=bool(author_id) and author_id == self.page_id,
            url=_optional_str(node, "permalink_url", where) or f"https://www.facebook.com/{post_id}",
        )

    def _graph_comment(self, node: dict[str, Any], post_id: Any) -> Post:
        comment_id = _required_id(node, "id", "comment")
        where = f"comment {comment_id}"
        author = node.get("from") if isinstance(node.get("from"), dict) else {}
        author_id = _optional_id(author, "id", where)
        parent = node.get("parent") if isinstance(node.get("parent"), dict) else {}
        reply_to = _optional_id(parent, "id", where) or (str(post_id) if post_id else None)
        return Post(
            external_id=comment_id,
            author_handle=author_id or f"anonymous:{comment_id}",
            author_name=_optional_str(author, "name", where),
            author_external_id=author_id or "",
            text=clean_text(_optional_str(node, "message", where)),
            created_at=_required_graph_time(node, where),
            in_reply_to_external_id=reply_to,
            from_brand=bool(author_id) and author_id == self.page_id,
            url=_optional_str(node, "permalink_url", where) or f"https://www.facebook.com/{comment_id}",
        )

    def _graph_message(self, kind: str, node: dict[str, Any]) -> Post:
        mid = _required_id(node, "id", "message")
        where = f"message {mid}"
        author = node.get("from")
        if not isinstance(author, dict):
            raise MalformedEvent(f"{where} has no from object")
        author_id = _required_id(author, "id", where)
        brand = self.page_id if kind == "messenger_message" else self.ig_user_id
        return Post(
            external_id=mid,
            author_handle=author_id,
            author_name=_optional_str(author, "name", where) or _optional_str(author, "username", where),
            author_external_id=author_id,
            text=clean_text(_optional_str(node, "message", where)),
            created_at=_required_graph_time(node, where),
            is_private=True,
            from_brand=author_id == brand,
        )

    # -- publish ---------------------------------------------------------------------------

    def publish(self, reply: Reply) -> Published:
        self._check_config()
        target = (reply.in_reply_to_external_id or "").strip()
        if not target:
            raise PermanentError("a Meta reply needs the post, comment or message it answers", affects_account=False)
        if not reply.text.strip():
            raise PermanentError("the reply is empty", affects_account=False)
        kind = self.target_kind(target, getattr(reply, "in_reply_to_kind", "") or "")
        try:
            if kind in ("messenger_message", "ig_message"):
                return self._send_direct(reply, target, kind)
            if reply.private:
                return self._private_reply(reply, target, kind)
            return self._public_reply(reply, target, kind)
        except _GraphError as exc:  # pragma: no cover - _request translates every error
            raise self._translate(exc) from exc

    def target_kind(self, target: str, hint: str = "") -> str:
        """What an external ID names; `hint` is the payload kind when the caller knows it.

        Without a hint the ID's shape decides: Messenger mids start "m_" (older ones "mid."),
        Facebook post IDs are "<page-id>_<n>", comment IDs "<object-id>_<n>", Instagram comment
        IDs are plain numbers and Instagram message IDs are long base64 strings.
        """
        if hint in ("page_post", "page_comment", "ig_comment", "messenger_message", "ig_message"):
            return hint
        if target.startswith(("m_", "mid.")):
            return "messenger_message"
        if "_" in target and all(part.isdigit() for part in target.split("_")):
            return "page_post" if target.split("_", 1)[0] == self.page_id else "page_comment"
        if target.isdigit():
            return "ig_comment"
        return "ig_message"

    def _public_reply(self, reply: Reply, target: str, kind: str) -> Published:
        if kind == "ig_comment":
            existing = self._own_reply_on(target, reply.text, instagram=True)
            if existing:
                return existing
            data = self._request("POST", f"{target}/replies", json_body={"message": reply.text})
        else:
            existing = self._own_reply_on(target, reply.text, instagram=False)
            if existing:
                return existing
            data = self._request("POST", f"{target}/comments", json_body={"message": reply.text})
        new_id = _node_id(data)
        if not new_id:
            raise TransientError(f"the Graph API answered without the new comment's id: {str(data)[:200]}")
        url = "" if kind == "ig_comment" else f"https://www.facebook.com/{new_id}"
        return Published(external_id=new_id, url=url, payload=data)

    def _own_reply_on(self, target: str, text: str, instagram: bool) -> Published | None:
        """A reply by the brand with exactly this text already under `target` (a retry's first try)."""
        if instagram:
            data, _ = self._list(f"{target}/replies", {"fields": "id,text,from,username,timestamp", "limit": 100})
            brand, field = self.ig_user_id, "text"
        else:
            params = {"fields": "id,message,from,created_time", "filter": "stream", "limit": 100}
            data, _ = self._list(f"{target}/comments", {**params, "order": "reverse_chronological"})
            brand, field = self.page_id, "message"
        for node in data:
            author = node.get("from") if isinstance(node.get("from"), dict) else {}
            if str(author.get("id") or "") == brand and node.get(field) == text and _node_id(node):
                log.info("reply to %s already published as %s; not posting again", target, node["id"])
                url = "" if instagram else f"https://www.facebook.com/{node['id']}"
                return Published(external_id=str(node["id"]), url=url, payload=node)
        return None

    def _private_reply(self, reply: Reply, target: str, kind: str) -> Published:
        platform = "instagram" if kind == "ig_comment" else "messenger"
        since = None
        if kind == "page_comment":
            info = self._request("GET", target, params={"fields": "id,created_time,can_reply_privately"})
            since = _graph_time(info.get("created_time"))
            if info.get("can_reply_privately") is False:
                existing = self._own_message_since(platform, reply.text, since)
                if existing:
                    return existing
                raise PermanentError(
                    "Facebook allows one private reply per comment, within 7 days of it; this comment "
                    "has had its private reply or is too old. Answer publicly, or wait for the customer "
                    "to message the Page.",
                    affects_account=False,
                )
        else:
            existing = self._own_message_since(platform, reply.text, None)
            if existing:
                return existing
        recipient = {"post_id": target} if kind == "page_post" else {"comment_id": target}
        body = {"recipient": recipient, "message": {"text": reply.text}}
        data = self._request("POST", f"{self._sender_id()}/messages", json_body=body)
        return self._sent(data)

    def _own_message_since(self, platform: str, text: str, since: dt.datetime | None) -> Published | None:
        """Our message with this text in the most recently active conversations (private replies)."""
        fields = f"id,updated_time,messages.limit(10){{{MESSAGE_FIELDS}}}"
        data, _ = self._list(f"{self.page_id}/conversations", {"platform": platform, "fields": fields, "limit": 25})
        brand = self.page_id if platform == "messenger" else self.ig_user_id
        for conversation in data:
            for node in (conversation.get("messages") or {}).get("data") or []:
                author = node.get("from") if isinstance(node.get("from"), dict) else {}
                created = _graph_time(node.get("created_time"))
                if (
                    str(author.get("id") or "") == brand
                    and node.get("message") == text
                    and (since is None or (created is not None and created >= since))
                    and _node_id(node)
                ):
                    return Published(external_id=str(node["id"]), payload=node)
        return None

    def _send_direct(self, reply: Reply, target: str, kind: str) -> Published:
        platform = "messenger" if kind == "messenger_message" else "instagram"
        brand = self.page_id if platform == "messenger" else self.ig_user_id
        customer = reply.to_handle.strip().lstrip("@")
        if not customer.isdigit():
            # The handle we give Messenger/Instagram DM authors is their scoped ID; without it, ask.
            info = self._request("GET", target, params={"fields": "id,created_time,from"})
            customer = str(((info.get("from") or {}).get("id")) or "")
            if not customer or customer == brand:
                raise PermanentError(f"cannot tell who wrote message {target}", affects_account=False)
        conversation = self._request(
            "GET",
            f"{self.page_id}/conversations",
            params={
                "platform": platform,
                "user_id": customer,
                "fields": f"id,messages.limit({MESSAGES_PER_CONVERSATION}){{{MESSAGE_FIELDS}}}",
            },
        )
        messages: list[dict[str, Any]] = []
        for conv in conversation.get("data") or []:
            messages.extend(m for m in (conv.get("messages") or {}).get("data") or [] if isinstance(m, dict))
        last_customer: dt.datetime | None = None
        for node in messages:
            created = _graph_time(node.get("created_time"))
            if str((node.get("from") or {}).get("id") or "") == customer and created is not None:
                last_customer = created if last_customer is None else max(last_customer, created)
        if last_customer is None:
            raise PermanentError(
                f"the customer has no message in this {platform} conversation that a reply could answer",
                affects_account=False,
            )
        for node in messages:
            created = _graph_time(node.get("created_time"))
            if (
                str((node.get("from") or {}).get("id") or "") == brand
                and node.get("message") == reply.text
                and created is not None
                and created >= last_customer
                and _node_id(node)
            ):
                log.info("message to %s already sent as %s; not sending again", customer, node["id"])
                return Published(external_id=str(node["id"]), payload=node)
        age = dt.datetime.now(dt.UTC) - last_customer
        body: dict[str, Any] = {"recipient": {"id": customer}, "message": {"text": reply.text}}
        if age <= STANDARD_WINDOW:
            body["messaging_type"] = "RESPONSE"
        elif self.human_agent_tag and age <= HUMAN_AGENT_WINDOW:
            body["messaging_type"] = "MESSAGE_TAG"
            body["tag"] = "HUMAN_AGENT"
        else:
            hours = age.total_seconds() / 3600
            allowed = "7 days (HUMAN_AGENT tag)" if self.human_agent_tag else "24 hours"
            raise PermanentError(
                f"the customer's last message was {hours:.0f} hours ago; Meta only allows a reply within "
                f"{allowed} of it. Wait for the customer to write again, or answer on another channel.",
                affects_account=False,
            )
        data = self._request("POST", f"{self._sender_id()}/messages", json_body=body)
        return self._sent(data)

    def _sender_id(self) -> str:
        # Messenger and Instagram messaging with Facebook Login both send through the Page.
        return self.page_id or self.ig_user_id

    @staticmethod
    def _sent(data: dict[str, Any]) -> Published:
        mid = data.get("message_id")
        if not isinstance(mid, str) or not mid:
            raise TransientError(f"the Send API answered without a message_id: {str(data)[:200]}")
        return Published(external_id=mid, payload=data)

    # -- HTTP, errors and rate limits ------------------------------------------------------

    def _check_config(self) -> None:
        if self._config_error:
            raise PermanentError(f"Meta account misconfigured: {self._config_error}")

    def _list(self, path: str, params: dict[str, Any]) -> tuple[list[dict[str, Any]], str | None]:
        """One page of an edge: its data and the `after` cursor when there is a next page."""
        data = self._request("GET", path, params=params)
        items = data.get("data")
        if not isinstance(items, list):
            raise TransientError(f"the Graph API answered {path} without a data list")
        paging = data.get("paging") if isinstance(data.get("paging"), dict) else {}
        after = (paging.get("cursors") or {}).get("after") if isinstance(paging.get("cursors"), dict) else None
        has_next = bool(paging.get("next"))
        return [item for item in items if isinstance(item, dict)], (after if has_next and after else None)

    def _request(
        self, method: str, path: str, params: dict[str, Any] | None = None, json_body: Any = None
    ) -> dict[str, Any]:
        now = time.time()
        if self._paused_until > now:
            raise RateLimited(self._pause_reason or "Graph API usage is at its limit", retry_after=self._wait(now))
        query = dict(params or {})
        if self.appsecret_proof:
            query["appsecret_proof"] = self.appsecret_proof
        url = f"{self.base_url}/{path.lstrip('/')}"
        try:
            response = self.session.request(
                method,
                url,
                params=query,
                json=json_body,
                headers={"Authorization": f"Bearer {self.token}", "Accept": "application/json"},
                timeout=REQUEST_TIMEOUT,
                stream=True,
                allow_redirects=False,
            )
            try:
                raw = read_capped(response, MAX_RESPONSE)
            finally:
                response.close()
        except BlockedAddress as exc:
            raise PermanentError(f"refusing to connect to {self.host}: {exc}") from exc
        except ResponseTooLarge as exc:
            raise TransientError(f"{self.host} sent too large an answer: {exc}") from exc
        except requests.RequestException as exc:
            raise TransientError(f"cannot reach {self.host}: {exc}") from exc
        usage_wait = self._note_usage(response.headers)
        try:
            data = json.loads(raw) if raw else {}
        except ValueError:
            data = None
        if not isinstance(data, dict):
            if response.status_code >= 500 or response.status_code == 429:
                raise self._status_error(response.status_code, usage_wait)
            raise TransientError(f"{self.host} answered {response.status_code} with a body that is not a JSON object")
        error = data.get("error")
        if response.status_code >= 400 or error is not None:
            if not isinstance(error, dict):
                raise self._status_error(response.status_code, usage_wait)
            raise self._translate(_GraphError(response.status_code, error), usage_wait)
        return data

    def _status_error(self, status: int, usage_wait: float | None) -> ConnectorError:
        if status == 429:
            return RateLimited(f"{self.host} answered 429", retry_after=usage_wait or DEFAULT_THROTTLE_WAIT)
        if status >= 500:
            return TransientError(f"{self.host} failed ({status})")
        if status in (401, 403):
            return PermanentError(f"{self.host} refused the access token ({status})")
        return PermanentError(f"{self.host} rejected the request ({status})", affects_account=False)

    def _translate(self, exc: _GraphError, usage_wait: float | None = None) -> ConnectorError:
        code, sub = exc.code, exc.subcode
        detail = f"{exc} (code {code}{f', subcode {sub}' if sub else ''}, fbtrace_id {exc.error.get('fbtrace_id')})"
        if code in RATE_LIMIT_CODES or exc.status == 429:
            wait = usage_wait or DEFAULT_THROTTLE_WAIT
            self._pause(wait, f"Graph API throttling: {exc}")
            return RateLimited(f"Graph API throttling: {detail}", retry_after=wait)
        if code in TOKEN_CODES or (exc.error.get("type") == "OAuthException" and code is None):
            return PermanentError(f"the Meta access token is invalid or expired; reconnect the account: {detail}")
        if code == 10 and sub in OUTSIDE_WINDOW_SUBCODES:
            return PermanentError(f"outside Meta's messaging window: {detail}", affects_account=False)
        if code in PRIVATE_REPLY_DONE_CODES:
            return PermanentError(
                f"this comment can no longer be answered privately (one private reply, within 7 days): {detail}",
                affects_account=False,
            )
        if code == USER_UNAVAILABLE_CODE:
            return PermanentError(f"the customer cannot be messaged right now: {detail}", affects_account=False)
        if code == DUPLICATE_POST_CODE:
            return PermanentError(f"Meta refused a duplicate: {detail}", affects_account=False)
        if code == POLICY_BLOCK_CODE:
            return TransientError(f"the Page is temporarily blocked by Meta: {detail}", retry_after=3600.0)
        if code in (3, 10) or (code is not None and 200 <= code <= 299):
            return PermanentError(f"the app lacks a permission it needs: {detail}")
        if code in TRANSIENT_CODES or exc.error.get("is_transient") is True or exc.status >= 500:
            return TransientError(f"Graph API error: {detail}")
        # 100 (invalid parameter, deleted object) and the rest: this request fails, not the account.
        return PermanentError(f"the Graph API rejected the request: {detail}", affects_account=False)

    def _note_usage(self, headers: Any) -> float | None:
        """Read X-App-Usage / X-Page-Usage / X-Business-Use-Case-Usage; pause near the limit.

        Returns the wait Meta estimates (estimated_time_to_regain_access is in minutes), if any.
        """
        highest = 0.0
        regain_minutes = 0.0
        for name in ("X-App-Usage", "X-Page-Usage", "X-Ad-Account-Usage", "X-Business-Use-Case-Usage"):
            raw = headers.get(name)
            if not raw:
                continue
            try:
                value = json.loads(raw)
            except ValueError:
                continue
            for usage in _usage_dicts(value):
                for key in ("call_count", "total_time", "total_cputime", "acc_id_util_pct"):
                    number = usage.get(key)
                    if isinstance(number, int | float) and not isinstance(number, bool):
                        highest = max(highest, float(number))
                minutes = usage.get("estimated_time_to_regain_access")
                if isinstance(minutes, int | float) and not isinstance(minutes, bool):
                    regain_minutes = max(regain_minutes, float(minutes))
        wait = regain_minutes * 60 if regain_minutes > 0 else None
        if highest >= self.usage_threshold or wait:
            pause = wait or DEFAULT_THROTTLE_WAIT
            self._pause(pause, f"Graph API usage at {highest:.0f}% of its limit")
        return wait

    def _pause(self, seconds: float, reason: str) -> None:
        until = time.time() + seconds
        if until > self._paused_until:
            self._paused_until = until
            self._pause_reason = reason

    def _wait(self, now: float) -> float:
        return float(max(1, math.ceil(self._paused_until - now)))

    def _is_brand(self, author: Any, kind: str) -> bool:
        if not isinstance(author, dict):
            return False
        author_id = str(author.get("id") or "")
        brand = self.page_id if kind == "page" else self.ig_user_id
        return bool(author_id) and author_id == brand


# -- helpers ---------------------------------------------------------------------------------


def clean_text(text: str) -> str:
    """Plain text as Meta sent it, minus NUL and other control characters (newlines and tabs stay)."""
    return _CONTROL.sub("", text.replace("\r\n", "\n")).strip()


def _attachments_text(message: dict[str, Any]) -> str:
    attachments = message.get("attachments")
    if not isinstance(attachments, list) or not attachments:
        return ""
    kinds = [str(a.get("type") or "file") for a in attachments if isinstance(a, dict)]
    return "[" + ", ".join(f"{k} attachment" for k in kinds[:10]) + "]"


def _usage_dicts(value: Any) -> list[dict[str, Any]]:
    # X-App-Usage is one object; X-Business-Use-Case-Usage maps business IDs to lists of objects.
    if isinstance(value, dict) and any(not isinstance(v, list) for v in value.values()):
        return [value]
    found: list[dict[str, Any]] = []
    if isinstance(value, dict):
        for items in value.values():
            found.extend(item for item in items if isinstance(item, dict))
    return found


def _positive_int(settings: dict[str, Any], key: str, default: int, owner: MetaConnector) -> int:
    try:
        value = int(settings.get(key, default))
    except (TypeError, ValueError):
        owner._config_error = f"{key} {settings.get(key)!r} is not a number"
        return default
    return max(1, value)


def _node_id(node: Any) -> str | None:
    if not isinstance(node, dict):
        return None
    value = node.get("id")
    if isinstance(value, bool) or value is None or value == "":
        return None
    return str(value) if isinstance(value, str | int) else None


def _change_value(payload: dict[str, Any], field_name: str | None) -> dict[str, Any]:
    change = payload.get("change")
    if not isinstance(change, dict) or not isinstance(change.get("value"), dict):
        raise MalformedEvent("a webhook change payload has no value object")
    if field_name and change.get("field") != field_name:
        raise MalformedEvent(f"expected a {field_name} change, not {change.get('field')!r}")
    return change["value"]


def _required_id(data: dict[str, Any], key: str, where: str) -> str:
    value = _optional_id(data, key, where)
    if value is None:
        raise MalformedEvent(f"{where} has no {key}")
    return value


def _optional_id(data: dict[str, Any], key: str, where: str) -> str | None:
    value = data.get(key)
    if value is None or value == "":
        return None
    if isinstance(value, bool) or not isinstance(value, str | int):
        raise MalformedEvent(f"{where}: {key} {value!r} is not an ID")
    return str(value)


def _optional_str(data: dict[str, Any], key: str, where: str) -> str:
    value = data.get(key)
    if value is None:
        return ""
    if not isinstance(value, str):
        raise MalformedEvent(f"{where}: {key} {value!r} is not a string")
    return value


def _graph_time(value: Any) -> dt.datetime | None:
    """Graph API times: "2024-05-01T12:00:00+0000" (or any ISO 8601 with an offset)."""
    if not isinstance(value, str) or not value:
        return None
    try:
        moment = dt.datetime.fromisoformat(value)
    except ValueError:
        return None
    return moment if moment.tzinfo else moment.replace(tzinfo=dt.UTC)


def _required_graph_time(node: dict[str, Any], where: str) -> dt.datetime:
    moment = _graph_time(node.get("created_time"))
    if moment is None:
        raise MalformedEvent(f"{where}: created_time {node.get('created_time')!r} is not a Graph API time")
    return moment


def _webhook_time(value: Any, fallback: Any, where: str) -> dt.datetime:
    """Webhook times are Unix seconds or milliseconds (Messenger); fall back to the entry time."""
    for candidate in (value, fallback):
        if isinstance(candidate, bool):
            continue
        if isinstance(candidate, int | float) and candidate > 0:
            seconds = candidate / 1000 if candidate > 10**11 else candidate
            try:
                return dt.datetime.fromtimestamp(seconds, dt.UTC)
            except (OverflowError, OSError, ValueError):
                continue
        if isinstance(candidate, str) and candidate:
            moment = _graph_time(candidate)
            if moment is not None:
                return moment
    raise MalformedEvent(f"{where} has no usable time")
