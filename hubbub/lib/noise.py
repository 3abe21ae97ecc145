"""Spam and noise rules: which posts of a batch become no case, and why.

Four rules, each with sensible defaults and each switched off per organization in the playbook's
`noise:` section (hubbub.lib.playbook parses it into `NoiseRules`):

- repost: a boost / retweet / repost carries no words of its own, so it is folded into the
  original (counted as engagement on it). A quote with text is a post in its own right and kept.
- duplicate: the same text from the same author within a window is folded onto the first.
- campaign: the same text from many authors within a short time (copy-paste campaigns) is folded
  onto the first post of the burst.
- bot: accounts the network marks as automated, handles that match a pattern, or authors posting
  faster than a person would, are dropped.

"The same text" means equal after normalising case, punctuation, links, mentions and spacing, so
"Boycott @brand!! https://t.co/x" and "boycott brand https://t.co/y" are the same text.

Nothing here deletes anything: the caller keeps every judged post with the verdict's rule and
reason, and a supervisor can restore it. The judge is pure and cheap (a batch of 2,000 posts
takes a few milliseconds); the memory of recent posts makes duplicates and campaigns visible
across batches within one worker process. When the memory is lost (a restart), a duplicate
becomes a case rather than a post being dropped by mistake.
"""

from __future__ import annotations

import bisect
import datetime as dt
import fnmatch
import functools
import hashlib
import re
import string
from collections import OrderedDict
from collections.abc import Hashable, Sequence
from dataclasses import dataclass, field

REPOST = "repost"
DUPLICATE = "duplicate"
CAMPAIGN = "campaign"
BOT = "bot"
RULES = (REPOST, DUPLICATE, CAMPAIGN, BOT)
RULE_LABELS = {
    REPOST: "Reposts and boosts",
    DUPLICATE: "Duplicates",
    CAMPAIGN: "Copy-paste campaigns",
    BOT: "Bots",
}

# Near-identical beyond this many characters is still near-identical; capping first keeps a
# 100 KB post as cheap to judge as a short one.
MAX_TEXT = 500
MAX_HANDLE = 200
# Recent posts remembered per organization; past this the oldest are forgotten.
MEMORY_SIZE = 100_000

# Links and mentions differ between copies of the same text (shorteners, who is addressed).
_NOT_WORDS = ("http://", "https://", "www.", "@")
_PUNCTUATION = string.punctuation + "\u201c\u201d\u2018\u2019\u00ab\u00bb\u2026\u2013\u2014\u00a1\u00bf"


@dataclass(frozen=True)
class NoiseRules:
    """One organization's switches and thresholds. Defaults are what a fresh install runs."""

    reposts: bool = True
    duplicates: bool = True
    duplicate_window_minutes: int = 60
    campaigns: bool = True
    campaign_min_authors: int = 5
    campaign_window_minutes: int = 10
    # Shorter texts ("thank you!", "is it down?") are said by many customers independently.
    campaign_min_length: int = 40
    bots: bool = True
    bot_handle_patterns: tuple[str, ...] = ("*_bot", "*-bot")
    # More posts than this from one author within an hour is a machine, not a customer; 0 turns it off.
    bot_max_posts_per_hour: int = 60

    def bot_pattern_for(self, handle: str) -> str | None:
        """The first pattern the handle, or its local part before an @domain, matches.

        Patterns are shell-style wildcards, not regexes: fnmatch escapes everything else, so no
        pattern an organization writes can backtrack catastrophically.
        """
        regex = _handle_regex(self.bot_handle_patterns)
        handle = handle[:MAX_HANDLE].casefold().lstrip("@")
        local = handle.split("@", 1)[0]
        if regex is None or not (regex.match(local) or regex.match(handle)):
            return None
        for pattern in self.bot_handle_patterns:
            folded = pattern.casefold()
            if fnmatch.fnmatchcase(local, folded) or fnmatch.fnmatchcase(handle, folded):
                return pattern
        return None


DEFAULT_RULES = NoiseRules()
_HOUR = dt.timedelta(hours=1)


@functools.lru_cache(maxsize=64)
def _handle_regex(patterns: tuple[str, ...]) -> re.Pattern[str] | None:
    # One regex for all patterns: the common case (no match) costs one call per handle.
    return re.compile("|".join(fnmatch.translate(p.casefold()) for p in patterns)) if patterns else None


@dataclass(slots=True)  # not frozen, for speed, like Post: one per post, never changed
class Item:
    """What the rules read of one post. `key` identifies it to the caller (an event id)."""

    key: Hashable
    account_id: int
    external_id: str
    # Unique within the organization across networks, e.g. "mastodon:alice@example.social".
    author: str
    text: str
    created_at: dt.datetime
    is_repost: bool = False
    repost_of: str | None = None
    quote_of: str | None = None
    author_is_bot: bool = False
    is_private: bool = False
    in_reply_to: str | None = None


@dataclass(frozen=True)
class Verdict:
    rule: str
    reason: str
    # (account id, external id) of the post this one is folded onto, when it is known.
    fold_onto: tuple[int, str] | None = None


@dataclass(slots=True)
class _Anchor:
    """The first post of a duplicate run or a campaign burst: the one that stays a case."""

    key: Hashable
    target: tuple[int, str]
    at: dt.datetime
    authors: set[str] = field(default_factory=set)


@dataclass
class NoiseMemory:
    """Recent posts of one organization, so a duplicate in the next batch is still a duplicate."""

    size: int = MEMORY_SIZE
    duplicates: OrderedDict[tuple[str, bytes, str], _Anchor] = field(default_factory=OrderedDict)
    campaigns: OrderedDict[bytes, _Anchor] = field(default_factory=OrderedDict)
    posting: OrderedDict[str, list[dt.datetime]] = field(default_factory=OrderedDict)

    def _trim(self) -> None:
        for table in (self.duplicates, self.campaigns, self.posting):
            while len(table) > self.size:
                table.popitem(last=False)


def normalize(text: str) -> str:
    """The words of a text, without case, links, mentions, surrounding punctuation or extra spaces."""
    words = (w.strip(_PUNCTUATION) for w in text[:MAX_TEXT].casefold().split() if not w.startswith(_NOT_WORDS))
    return " ".join([w for w in words if w])


def fingerprint(text: str) -> bytes:
    """Equal for texts that differ only in case, punctuation, links, mentions and spacing.

    Empty for a text with no words (only links or mentions): such posts are never judged the
    same as each other.
    """
    words = normalize(text)
    return hashlib.blake2b(words.encode(), digest_size=12).digest() if words else b""


def judge(
    items: Sequence[Item], rules: NoiseRules = DEFAULT_RULES, memory: NoiseMemory | None = None
) -> list[Verdict | None]:
    """One verdict per item, in order: None keeps the post, a Verdict filters it.

    Brand posts and restored posts are the caller's to leave out: everything given is judged.
    The memory is updated with the posts that are kept.
    """
    memory = memory if memory is not None else NoiseMemory()
    verdicts: list[Verdict | None] = [None] * len(items)
    if rules.bots:
        for i, item in enumerate(items):
            verdicts[i] = _bot(item, rules, memory)
    if rules.reposts:
        for i, item in enumerate(items):
            if verdicts[i] is None:
                verdicts[i] = _repost(item)
    words = [normalize(item.text) if verdicts[i] is None else "" for i, item in enumerate(items)]
    prints = [hashlib.blake2b(w.encode(), digest_size=12).digest() if w else b"" for w in words]
    order = sorted(range(len(items)), key=lambda i: items[i].created_at)
    if rules.duplicates:
        window = dt.timedelta(minutes=rules.duplicate_window_minutes)
        for i in order:
            if verdicts[i] is None and prints[i] and not items[i].is_private:
                verdicts[i] = _duplicate(items[i], prints[i], window, memory)
    if rules.campaigns:
        lengths = [len(w) for w in words]
        _campaigns(items, prints, lengths, order, verdicts, rules, memory)
    memory._trim()
    return verdicts


def _bot(item: Item, rules: NoiseRules, memory: NoiseMemory) -> Verdict | None:
    handle = item.author.partition(":")[2] or item.author
    if item.author_is_bot:
        return Verdict(BOT, f"the network marks @{handle[:MAX_HANDLE]} as an automated account")
    pattern = rules.bot_pattern_for(handle)
    if pattern is not None:
        return Verdict(BOT, f"the handle @{handle[:MAX_HANDLE]} matches the bot pattern {pattern!r}")
    if rules.bot_max_posts_per_hour <= 0:
        return None
    times = memory.posting.get(item.author)
    if times is None:
        times = memory.posting[item.author] = []
    else:
        memory.posting.move_to_end(item.author)
    bisect.insort(times, item.created_at)
    hour_ago = item.created_at - _HOUR
    within = len(times) - bisect.bisect_left(times, hour_ago)
    if len(times) > 2 * rules.bot_max_posts_per_hour:
        del times[: len(times) - 2 * rules.bot_max_posts_per_hour]
    if within > rules.bot_max_posts_per_hour:
        return Verdict(
            BOT,
            f"@{handle[:MAX_HANDLE]} posted more than {rules.bot_max_posts_per_hour} times within an hour",
        )
    return None


def _repost(item: Item) -> Verdict | None:
    if item.is_repost:
        if item.repost_of:
            return Verdict(
                REPOST,
                f"a repost of {item.repost_of[:300]} with no text of its own",
                (item.account_id, item.repost_of),
            )
        return Verdict(REPOST, "a repost with no text of its own")
    if item.quote_of and not normalize(item.text):
        return Verdict(
            REPOST, f"a quote of {item.quote_of[:300]} with no text of its own", (item.account_id, item.quote_of)
        )
    return None


def _duplicate(item: Item, print_: bytes, window: dt.timedelta, memory: NoiseMemory) -> Verdict | None:
    # A reply to another post is another answer, even in the same words.
    key = (item.author, print_, item.in_reply_to or "")
    anchor = memory.duplicates.get(key)
    # The same post delivered again (same external id) is a redelivery, not a duplicate: threading drops it.
    redelivery = anchor is not None and anchor.target == (item.account_id, item.external_id)
    if anchor is not None and anchor.key != item.key and not redelivery and abs(item.created_at - anchor.at) <= window:
        memory.duplicates.move_to_end(key)
        minutes = window // dt.timedelta(minutes=1)
        return Verdict(
            DUPLICATE,
            f"the same text as {anchor.target[1][:300]} from the same author within {minutes} minutes",
            anchor.target,
        )
    if anchor is None or anchor.key != item.key:
        memory.duplicates[key] = _Anchor(item.key, (item.account_id, item.external_id), item.created_at)
        memory.duplicates.move_to_end(key)
    return None


def _campaigns(
    items: Sequence[Item],
    prints: list[bytes],
    lengths: list[int],
    order: list[int],
    verdicts: list[Verdict | None],
    rules: NoiseRules,
    memory: NoiseMemory,
) -> None:
    window = dt.timedelta(minutes=rules.campaign_window_minutes)
    bursts: dict[bytes, list[int]] = {}
    for i in order:
        if verdicts[i] is None and prints[i] and not items[i].is_private:
            bursts.setdefault(prints[i], []).append(i)
    for print_, members in bursts.items():
        if lengths[members[0]] < rules.campaign_min_length:
            continue
        # A burst starts at its first post and lasts one window; a later post starts the next burst.
        anchor = memory.campaigns.get(print_)
        burst: list[int] = []
        for i in members:
            item = items[i]
            if anchor is None or item.created_at - anchor.at > window or item.created_at < anchor.at - window:
                _fold_burst(items, burst, anchor, verdicts, rules, window)
                anchor = _Anchor(item.key, (item.account_id, item.external_id), item.created_at)
                burst = []
            if len(anchor.authors) < 10_000:
                anchor.authors.add(item.author)
            if item.key != anchor.key:
                burst.append(i)
        _fold_burst(items, burst, anchor, verdicts, rules, window)
        if anchor is not None:
            memory.campaigns[print_] = anchor
            memory.campaigns.move_to_end(print_)


def _fold_burst(
    items: Sequence[Item],
    burst: list[int],
    anchor: _Anchor | None,
    verdicts: list[Verdict | None],
    rules: NoiseRules,
    window: dt.timedelta,
) -> None:
    if anchor is None or not burst or len(anchor.authors) < rules.campaign_min_authors:
        return
    minutes = window // dt.timedelta(minutes=1)
    reason = (
        f"the same text as {anchor.target[1][:300]}, posted by {len(anchor.authors)} authors within {minutes} minutes"
    )
    for i in burst:
        verdicts[i] = Verdict(CAMPAIGN, reason, anchor.target)
