"""What the connectors tell the noise rules: reposts, quotes and bots, read from documented payloads.

Fixtures are written from the platforms' documentation: Mastodon's Status entity (`reblog`,
`account.bot`, the 4.4 `quote`), X API v2 Post objects (`referenced_tweets` of type `retweeted`
and `quoted`), and Bluesky's `app.bsky.feed.repost` records (Jetstream commits and
listNotifications items with reason `repost`) and `app.bsky.embed.record` quotes.
"""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import pytest

from hubbub.connectors.base import AccountConfig, MalformedEvent
from hubbub.connectors.bluesky.connector import BlueskyConnector
from hubbub.connectors.mastodon.connector import MastodonConnector
from hubbub.connectors.x.connector import XConnector

FIXTURES = Path(__file__).with_name("fixtures") / "noise"


def fixture(name: str) -> dict[str, Any]:
    return json.loads((FIXTURES / name).read_text())


def mastodon() -> MastodonConnector:
    return MastodonConnector(AccountConfig(network="mastodon", handle="brand", base_url="https://social.example"))


def x() -> XConnector:
    return XConnector(AccountConfig(network="twitter", handle="brand"))


def bluesky() -> BlueskyConnector:
    return BlueskyConnector(AccountConfig(network="bluesky", handle="brand.test"))


def test_a_mastodon_boost_is_a_repost_of_the_boosted_status():
    post = mastodon().normalize(fixture("mastodon_reblog.json"))
    assert post.is_repost and post.repost_of_external_id == "109900000000000100"
    assert post.text == "" and post.author_handle == "booster@other.example"
    assert not post.author_is_bot


def test_an_ordinary_mastodon_status_is_no_repost_quote_or_bot():
    status = fixture("mastodon_reblog.json")["reblog"]
    post = mastodon().normalize(status)
    assert (post.is_repost, post.repost_of_external_id, post.quote_of_external_id, post.author_is_bot) == (
        False,
        None,
        None,
        False,
    )


def test_mastodon_says_which_accounts_are_bots():
    post = mastodon().normalize(fixture("mastodon_bot_status.json"))
    assert post.author_is_bot and not post.is_repost


def test_a_mastodon_quote_keeps_its_text_and_names_the_quoted_status():
    post = mastodon().normalize(fixture("mastodon_quote.json"))
    assert not post.is_repost
    assert post.quote_of_external_id == "109900000000000100"
    assert post.text == "Same here, three weeks and no parcel."
    shallow = fixture("mastodon_quote.json")
    shallow["quote"] = {"state": "accepted", "quoted_status_id": "109900000000000101"}
    assert mastodon().normalize(shallow).quote_of_external_id == "109900000000000101"


@pytest.mark.parametrize("bad", ["a string", 12, ["list"]])
def test_a_malformed_mastodon_reblog_is_a_dead_letter(bad):
    payload = fixture("mastodon_reblog.json")
    payload["reblog"] = bad
    with pytest.raises(MalformedEvent, match="reblog"):
        mastodon().normalize(payload)


def test_a_mastodon_bot_flag_that_is_not_true_is_not_a_bot():
    payload = fixture("mastodon_bot_status.json")
    payload["account"]["bot"] = "yes"
    assert not mastodon().normalize(payload).author_is_bot


def test_an_x_retweet_is_a_repost_of_the_retweeted_post():
    post = x().normalize(fixture("x_retweet.json"))
    assert post.is_repost and post.repost_of_external_id == "1892000000000000100"
    assert post.quote_of_external_id is None


def test_an_x_quote_is_kept_with_its_text():
    post = x().normalize(fixture("x_quote.json"))
    assert not post.is_repost
    assert post.quote_of_external_id == "1892000000000000100"
    assert post.text.startswith("Same here")


def test_an_x_reference_with_a_bad_id_is_a_dead_letter():
    payload = fixture("x_retweet.json")
    payload["data"]["referenced_tweets"] = [{"type": "retweeted", "id": "not-a-number"}]
    with pytest.raises(MalformedEvent, match="not an X id"):
        x().normalize(payload)


def test_a_bluesky_repost_from_jetstream_points_at_the_reposted_post():
    event = fixture("bluesky_jetstream_repost.json")
    post = bluesky().normalize({"source": "jetstream", "item": event})
    assert post.is_repost
    assert post.repost_of_external_id == "at://did:plc:carol0000000000000000000/app.bsky.feed.post/3lhpost11111"
    assert post.external_id == "at://did:plc:reposter000000000000000/app.bsky.feed.repost/3lhrepost2222"
    assert post.text == "" and post.url == ""
    # Stored raw, without the source wrapper, it is still recognised.
    assert bluesky().normalize(event).is_repost


def test_a_bluesky_repost_notification_points_at_the_reposted_post():
    post = bluesky().normalize({"source": "notification", "item": fixture("bluesky_notification_repost.json")})
    assert post.is_repost
    assert post.repost_of_external_id == "at://did:plc:brand000000000000000000/app.bsky.feed.post/3lhbrand1111"
    assert post.author_handle == "reposter.bsky.social"


def test_a_bluesky_quote_with_media_names_the_quoted_post():
    post = bluesky().normalize({"source": "jetstream", "item": fixture("bluesky_quote_post.json")})
    assert not post.is_repost
    assert post.quote_of_external_id == "at://did:plc:carol0000000000000000000/app.bsky.feed.post/3lhpost11111"
    plain = fixture("bluesky_quote_post.json")
    plain["commit"]["record"]["embed"] = plain["commit"]["record"]["embed"]["record"]
    assert bluesky().normalize(plain).quote_of_external_id == post.quote_of_external_id


@pytest.mark.parametrize(
    "subject",
    [None, "at://did:plc:x/app.bsky.feed.post/1", {"uri": "https://evil.example/"}, {"uri": 5}, {}],
)
def test_a_bluesky_repost_without_a_valid_subject_is_a_dead_letter(subject):
    event = copy.deepcopy(fixture("bluesky_jetstream_repost.json"))
    event["commit"]["record"]["subject"] = subject
    with pytest.raises(MalformedEvent, match="subject"):
        bluesky().normalize({"source": "jetstream", "item": event})


def test_a_bluesky_like_is_still_not_a_post():
    event = fixture("bluesky_jetstream_repost.json")
    event["commit"]["collection"] = "app.bsky.feed.like"
    with pytest.raises(MalformedEvent):
        bluesky().normalize({"source": "jetstream", "item": event})
