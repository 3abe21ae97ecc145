"""The spam and noise rules, without a database."""

from __future__ import annotations

import datetime as dt
import itertools

import pytest

from hubbub.lib.noise import (
    BOT,
    CAMPAIGN,
    DUPLICATE,
    REPOST,
    Item,
    NoiseMemory,
    NoiseRules,
    fingerprint,
    judge,
    normalize,
)

T0 = dt.datetime(2026, 3, 1, 12, 0, tzinfo=dt.UTC)
CAMPAIGN_TEXT = "Boycott @brand until they stop testing on animals, share this everywhere! https://t.co/abc"
_keys = itertools.count(1)


def post(text="My parcel never arrived, order 1234", author="alice", minutes=0.0, **fields) -> Item:
    key = next(_keys)
    return Item(
        key=key,
        account_id=fields.pop("account_id", 1),
        external_id=fields.pop("external_id", str(key)),
        author=f"1:{author}",
        text=text,
        created_at=T0 + dt.timedelta(minutes=minutes),
        **fields,
    )


def rules_of(verdicts) -> list[str | None]:
    return [v.rule if v else None for v in verdicts]


def test_an_ordinary_post_is_kept():
    assert judge([post()]) == [None]


def test_a_repost_without_text_is_folded_into_the_original():
    (verdict,) = judge([post("", is_repost=True, repost_of="109")])
    assert verdict.rule == REPOST
    assert verdict.fold_onto == (1, "109")
    assert "109" in verdict.reason and "no text of its own" in verdict.reason


def test_a_quote_with_text_is_kept_and_an_empty_quote_is_a_repost():
    assert judge([post("This is exactly what happened to me too", quote_of="109")]) == [None]
    (verdict,) = judge([post("  @brand https://t.co/x ", quote_of="109")])
    assert verdict.rule == REPOST and verdict.fold_onto == (1, "109")


def test_same_text_same_author_within_the_window_is_a_duplicate_of_the_first():
    first = post("Where is my refund???", external_id="a1")
    again = post("where is my refund", minutes=5, external_id="a2")
    verdicts = judge([first, again])
    assert verdicts[0] is None
    assert verdicts[1].rule == DUPLICATE and verdicts[1].fold_onto == (1, "a1")
    assert "a1" in verdicts[1].reason and "60 minutes" in verdicts[1].reason


def test_a_duplicate_outside_the_window_or_from_another_author_is_kept():
    assert judge([post("Where is my refund"), post("Where is my refund", minutes=61)]) == [None, None]
    assert judge([post("Where is my refund"), post("Where is my refund", author="bob")]) == [None, None]


def test_the_same_words_in_reply_to_different_posts_are_not_duplicates():
    items = [post("Yes, that is right", in_reply_to="1"), post("Yes, that is right", in_reply_to="2")]
    assert judge(items) == [None, None]


def test_private_messages_are_never_duplicates_or_campaigns():
    items = [post("yes please", is_private=True), post("yes please", is_private=True, minutes=1)]
    assert judge(items) == [None, None]
    burst = [post(CAMPAIGN_TEXT, author=f"user{i}", is_private=True) for i in range(10)]
    assert judge(burst) == [None] * 10


def test_duplicates_are_found_across_batches_with_the_memory():
    memory = NoiseMemory()
    assert judge([post("Still waiting on my refund", external_id="x1")], memory=memory) == [None]
    (verdict,) = judge([post("Still waiting on my refund!", minutes=10)], memory=memory)
    assert verdict.rule == DUPLICATE and verdict.fold_onto == (1, "x1")


def test_judging_the_same_post_again_does_not_make_it_its_own_duplicate():
    """A batch that failed is judged again: its first post must stay the one kept."""
    memory = NoiseMemory()
    first = post("Still waiting on my refund")
    assert judge([first], memory=memory) == [None]
    assert judge([first], memory=memory) == [None]


def test_a_redelivery_of_the_same_post_under_another_event_is_not_a_duplicate():
    """The network sent the same post twice: threading drops the second, noise must not hide it as a copy."""
    memory = NoiseMemory()
    assert judge([post("Still waiting on my refund", external_id="x1")], memory=memory) == [None]
    assert judge([post("Still waiting on my refund", external_id="x1")], memory=memory) == [None]


def test_a_copy_paste_campaign_is_folded_onto_its_first_post():
    items = [post(CAMPAIGN_TEXT.replace("abc", str(i)), author=f"user{i}", minutes=i) for i in range(6)]
    verdicts = judge(items)
    assert verdicts[0] is None
    assert rules_of(verdicts[1:]) == [CAMPAIGN] * 5
    assert {v.fold_onto for v in verdicts[1:]} == {(1, items[0].external_id)}
    assert "6 authors" in verdicts[1].reason


def test_a_campaign_needs_enough_authors_enough_text_and_a_short_time():
    few = [post(CAMPAIGN_TEXT, author=f"user{i}") for i in range(4)]
    assert judge(few) == [None] * 4
    short = [post("Is the app down?", author=f"user{i}") for i in range(20)]
    assert judge(short) == [None] * 20
    slow = [post(CAMPAIGN_TEXT, author=f"user{i}", minutes=11 * i) for i in range(6)]
    assert judge(slow) == [None] * 6


def test_a_campaign_spanning_batches_is_folded_once_it_is_one():
    memory = NoiseMemory()
    first = [post(CAMPAIGN_TEXT, author=f"user{i}") for i in range(3)]
    assert judge(first, memory=memory) == [None] * 3
    later = [post(CAMPAIGN_TEXT, author=f"other{i}", minutes=2) for i in range(3)]
    verdicts = judge(later, memory=memory)
    assert rules_of(verdicts) == [CAMPAIGN] * 3
    assert {v.fold_onto for v in verdicts} == {(1, first[0].external_id)}


def test_bots_the_network_marks_are_dropped_without_folding():
    (verdict,) = judge([post(author="newsfeed", author_is_bot=True)])
    assert verdict.rule == BOT and verdict.fold_onto is None
    assert "@newsfeed" in verdict.reason


@pytest.mark.parametrize(
    ("handle", "is_bot"),
    [
        ("weather_bot", True),
        ("Weather-Bot@botsin.space", True),
        ("@price_bot@example.social", True),
        ("abbot", False),
        ("talbot@example.social", False),
        ("robotics_fan", False),
    ],
)
def test_bot_handle_patterns(handle, is_bot):
    (verdict,) = judge([post(author=handle)])
    assert (verdict is not None and verdict.rule == BOT) is is_bot


def test_an_author_posting_faster_than_a_person_is_a_bot_after_the_limit():
    rules = NoiseRules(bot_max_posts_per_hour=3, duplicates=False)
    items = [post(f"post number {i}", author="spammer", minutes=i) for i in range(5)]
    verdicts = judge(items, rules)
    assert rules_of(verdicts) == [None, None, None, BOT, BOT]
    assert "more than 3 times within an hour" in verdicts[3].reason


def test_every_rule_can_be_switched_off():
    off = NoiseRules(reposts=False, duplicates=False, campaigns=False, bots=False)
    items = [
        post("", is_repost=True, repost_of="1"),
        post("Where is my refund"),
        post("Where is my refund", minutes=1),
        post(author="weather_bot", author_is_bot=True),
        *[post(CAMPAIGN_TEXT, author=f"user{i}") for i in range(6)],
    ]
    assert judge(items, off) == [None] * len(items)


def test_handle_patterns_can_be_emptied():
    assert judge([post(author="weather_bot")], NoiseRules(bot_handle_patterns=())) == [None]


def test_fingerprint_ignores_case_punctuation_links_mentions_and_spacing():
    assert fingerprint("Boycott @brand!! https://t.co/x") == fingerprint("boycott @other https://bit.ly/z")
    assert fingerprint("“Boycott” them…") == fingerprint("boycott them")
    assert fingerprint("boycott them") != fingerprint("boycott us")
    assert fingerprint("@brand https://t.co/x") == b""


def test_huge_and_hostile_text_is_capped_before_normalising():
    huge = "spam " * 200_000 + "tail"
    assert len(normalize(huge)) <= 500
    assert fingerprint(huge) == fingerprint("spam " * 200_000 + "different tail")
    emoji = "😡" * 100_000
    assert normalize(emoji) == "😡" * 500
    assert judge([post(huge), post("\x00<script>alert(1)</script>" * 1000)]) == [None, None]


def test_verdicts_follow_the_order_of_the_batch_even_when_times_do_not():
    late = post("Where is my refund", minutes=10, external_id="late")
    items = [late, post("Where is my refund", external_id="early")]
    verdicts = judge(items)
    assert verdicts[1] is None
    assert verdicts[0].rule == DUPLICATE and verdicts[0].fold_onto == (1, "early")


def test_the_memory_is_bounded():
    memory = NoiseMemory(size=100)
    judge([post(f"distinct text number {i} for the memory test", author=f"a{i}") for i in range(1000)], memory=memory)
    assert len(memory.duplicates) <= 100 and len(memory.campaigns) <= 100 and len(memory.posting) <= 100
