"""One verified Meta webhook delivery -> one RawPost per post, comment or message (pure).

A delivery is ``{"object": "page"|"instagram", "entry": [...]}``; each entry is one Page or
Instagram professional account (``entry.id``) and carries either ``changes`` (Page ``feed``,
Instagram ``comments``/``live_comments``) or ``messaging`` (Messenger and Instagram Direct).

Every RawPost payload has the same envelope, shared with what `MetaConnector.fetch` stores, so
`MetaConnector.normalize` reads both alike::

    {"kind": "page_post" | "page_comment" | "ig_comment" | "messenger_message" | "ig_message",
     "via": "webhook",
     "object": "page" | "instagram",
     "entry_id": "<page or IG account id>",
     "entry_time": <int, as Meta sent it>,
     "change": {"field": ..., "value": {...}}      # for changes[]
     "messaging": {...}}                           # for messaging[]

External IDs are the ones the Graph API uses for the same object (``post_id``, ``comment_id``,
the message ``mid``), so a webhook and a later polling fetch of the same comment collide on
(account, external id) and are stored once.

What is left out:
- *ignored*: known events that are not posts (reactions, likes, read and delivery receipts,
  removals, hides, edits of something already delivered are kept though) and everything the
  brand itself wrote, including Messenger echoes of our own replies. Counted, not reported.
- *skipped*: anything we do not understand, as ``(reason, fragment)`` pairs for the caller to
  dead-letter. The fragment is the smallest part of the body that shows the problem.
A body whose structure is wrong (not an object, no entry list, an entry without an id) raises
MalformedEvent: the caller should dead-letter the whole delivery.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from hubbub.connectors.base import MalformedEvent, RawPost

OBJECTS = ("page", "instagram")

# Page feed `item` values that are a post someone wrote (the rest are reactions, page changes, ...).
POST_ITEMS = frozenset({"status", "post", "photo", "video", "share", "link", "note", "question", "story"})
IGNORED_ITEMS = frozenset({"reaction", "like", "event", "rating", "page", "milestone", "coupon", "album"})
# Verbs that make or change content; "remove", "hide", "unhide", "block", "unblock" do not.
CONTENT_VERBS = frozenset({"add", "edited", "edit"})
IGNORED_VERBS = frozenset({"remove", "hide", "unhide", "block", "unblock", "mute", "unmute"})
# Page fields we do not subscribe to for posts but may receive when an app subscribes widely.
IGNORED_PAGE_FIELDS = frozenset({"ratings", "mention", "name", "picture", "category", "website", "videos"})
IGNORED_IG_FIELDS = frozenset({"story_insights", "messaging_seen", "message_reactions", "messaging_referral"})
# messaging[] events that are not a message (receipts, postbacks, referrals, opt-ins, handovers).
IGNORED_MESSAGING_KEYS = (
    "read",
    "delivery",
    "reaction",
    "postback",
    "referral",
    "optin",
    "account_linking",
    "pass_thread_control",
    "take_thread_control",
    "request_thread_control",
    "app_roles",
    "policy-enforcement",
    "policy_enforcement",
    "standby",
)
# Keep fragments in dead-letter reports small.
_FRAGMENT_CHARS = 4000


@dataclass
class SplitResult:
    posts: list[RawPost] = field(default_factory=list)
    # (reason, fragment) for each event we could not use; dead-letter these.
    skipped: list[tuple[str, Any]] = field(default_factory=list)
    # Known events that are not posts, and the brand's own posts/echoes.
    ignored: int = 0

    def __iter__(self):
        # `posts, skipped = split_webhook(body)` reads naturally.
        return iter((self.posts, self.skipped))


def split_webhook(body: Any) -> SplitResult:
    """Split one delivery (already signature-checked and parsed from JSON)."""
    if not isinstance(body, dict):
        raise MalformedEvent(f"a webhook delivery must be a JSON object, not {type(body).__name__}")
    obj = body.get("object")
    entries = body.get("entry")
    if not isinstance(entries, list):
        raise MalformedEvent("the delivery has no entry list")
    result = SplitResult()
    if obj not in OBJECTS:
        result.skipped.append((f"unsupported webhook object {obj!r}", _small({"object": obj})))
        return result
    seen: set[str] = set()
    for index, entry in enumerate(entries):
        if not isinstance(entry, dict):
            raise MalformedEvent(f"entry {index} is not an object")
        entry_id = _id(entry.get("id"))
        if entry_id is None:
            raise MalformedEvent(f"entry {index} has no id")
        base = {"object": obj, "entry_id": entry_id, "entry_time": _int_or_none(entry.get("time"))}
        changes = entry.get("changes")
        messaging = entry.get("messaging")
        standby = entry.get("standby")
        if changes is None and messaging is None and standby is None:
            result.skipped.append(("entry has neither changes nor messaging", _small(entry)))
            continue
        for key, items in (("changes", changes), ("messaging", messaging)):
            if items is None:
                continue
            if not isinstance(items, list):
                raise MalformedEvent(f"entry {index}: {key} is not a list")
            for item in items:
                if not isinstance(item, dict):
                    raise MalformedEvent(f"entry {index}: an item of {key} is not an object")
                if key == "changes":
                    _change(obj, base, item, result, seen)
                else:
                    _message(obj, base, item, result, seen)
        if standby is not None:
            # Messages another app owns the thread for (handover protocol): not ours to answer.
            result.ignored += len(standby) if isinstance(standby, list) else 1
    return result


def _change(obj: str, base: dict[str, Any], change: dict[str, Any], result: SplitResult, seen: set[str]) -> None:
    field_name = change.get("field")
    value = change.get("value")
    if not isinstance(field_name, str) or not isinstance(value, dict):
        result.skipped.append(("a change without a field name and a value object", _small(change)))
        return
    author = _author_id(value.get("from"))
    if obj == "page":
        if field_name != "feed":
            if field_name in IGNORED_PAGE_FIELDS:
                result.ignored += 1
            else:
                result.skipped.append((f"unsupported page field {field_name!r}", _small(change)))
            return
        item, verb = value.get("item"), value.get("verb")
        if verb in IGNORED_VERBS or item in IGNORED_ITEMS:
            result.ignored += 1
            return
        if verb not in CONTENT_VERBS:
            result.skipped.append((f"unsupported feed verb {verb!r}", _small(change)))
            return
        if item == "comment":
            kind, external_id = "page_comment", _id(value.get("comment_id"))
        elif item in POST_ITEMS:
            kind, external_id = "page_post", _id(value.get("post_id"))
        else:
            result.skipped.append((f"unsupported feed item {item!r}", _small(change)))
            return
        if external_id is None:
            result.skipped.append((f"a feed {item} without its id", _small(change)))
            return
    else:
        if field_name not in ("comments", "live_comments"):
            if field_name in IGNORED_IG_FIELDS:
                result.ignored += 1
            else:
                result.skipped.append((f"unsupported instagram field {field_name!r}", _small(change)))
            return
        kind, external_id = "ig_comment", _id(value.get("id"))
        if external_id is None:
            result.skipped.append(("an Instagram comment without its id", _small(change)))
            return
    if author is not None and author == base["entry_id"]:
        result.ignored += 1  # the brand's own post or reply
        return
    if external_id in seen:
        return  # the same object twice in one delivery (an add and an edit)
    seen.add(external_id)
    payload = {"kind": kind, "via": "webhook", **base, "change": {"field": field_name, "value": value}}
    result.posts.append(RawPost(external_id=external_id, payload=payload))


def _message(obj: str, base: dict[str, Any], event: dict[str, Any], result: SplitResult, seen: set[str]) -> None:
    message = event.get("message")
    if message is None:
        if any(key in event for key in IGNORED_MESSAGING_KEYS):
            result.ignored += 1
        else:
            result.skipped.append(("unsupported messaging event", _small(event)))
        return
    if not isinstance(message, dict):
        result.skipped.append(("a messaging event whose message is not an object", _small(event)))
        return
    mid = _id(message.get("mid"))
    if mid is None:
        result.skipped.append(("a message without its mid", _small(event)))
        return
    if message.get("is_deleted"):
        result.ignored += 1  # Instagram: the customer unsent it
        return
    sender = _author_id(event.get("sender"))
    if message.get("is_echo") or (sender is not None and sender == base["entry_id"]):
        result.ignored += 1  # sent by the Page/account itself (including our own replies)
        return
    if mid in seen:
        return
    seen.add(mid)
    kind = "messenger_message" if obj == "page" else "ig_message"
    payload = {"kind": kind, "via": "webhook", **base, "messaging": event}
    result.posts.append(RawPost(external_id=mid, payload=payload))


def _author_id(value: Any) -> str | None:
    return _id(value.get("id")) if isinstance(value, dict) else None


def _id(value: Any) -> str | None:
    if isinstance(value, bool) or value is None:
        return None
    if isinstance(value, int):
        return str(value)
    if isinstance(value, str) and value.strip() and len(value) <= 256:
        return value.strip()
    return None


def _int_or_none(value: Any) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def _small(fragment: Any) -> Any:
    """The fragment itself when small, else a truncated repr (dead-letter rows stay bounded)."""
    try:
        text = json.dumps(fragment, ensure_ascii=False)
    except (TypeError, ValueError):
        return {"unserialisable": repr(fragment)[:_FRAGMENT_CHARS]}
    if len(text) <= _FRAGMENT_CHARS:
        return fragment
    return {"truncated": text[:_FRAGMENT_CHARS]}
