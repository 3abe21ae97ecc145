"""The Mastodon connector against the local fake Mastodon server (no database, no network)."""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Iterator
from typing import Any

import pytest

from hubbub.connectors.base import (
    AccountConfig,
    MalformedEvent,
    PermanentError,
    Reply,
    TransientError,
)
from hubbub.connectors.mastodon import MastodonConnector, RateLimited
from hubbub.testing.fake_mastodon import FakeMastodon


@pytest.fixture
def server() -> Iterator[FakeMastodon]:
    with FakeMastodon() as fake:
        yield fake


def connect(server: FakeMastodon, handle: str = "brand", token: str | None = None, **settings: Any):
    settings.setdefault("allow_private", True)
    return MastodonConnector(
        AccountConfig(
            network="mastodon",
            handle=handle,
            base_url=server.url,
            credentials={"access_token": server.access_token if token is None else token},
            settings=settings,
        )
    )


def ids(result) -> list[str]:
    return [post.external_id for post in result.posts]


# -- fetch ------------------------------------------------------------------------------------


def test_fetch_returns_mentions_and_hashtag_posts(server: FakeMastodon) -> None:
    mention = server.add_mention("where is my parcel?", acct="alice")
    tagged = server.add_status("the new #Brand app is great", acct="bob")
    own = server.add_status("our own announcement #brand", acct="brand")  # the brand itself: skipped
    server.add_status("nothing to do with us #other", acct="carol")
    server.add_status("quietly #brand", acct="dave", visibility="unlisted")  # not on tag timelines

    result = connect(server, hashtags=["#brand"]).fetch({})

    assert ids(result) == [mention["id"], tagged["id"]]
    # The cursor moves past skipped statuses too.
    assert result.cursor == {"notifications": server.notifications[-1]["id"], "tag:brand": own["id"]}
    assert result.more is False
    # Stored as-is by the worker, so it must survive JSON.
    for post in result.posts:
        assert json.loads(json.dumps(post.payload))["id"] == post.external_id


def test_a_status_found_twice_is_returned_once(server: FakeMastodon) -> None:
    both = server.add_mention("help with #brand please", acct="alice")

    result = connect(server, hashtags=["brand"]).fetch({})

    assert ids(result) == [both["id"]]
    assert set(result.cursor) == {"notifications", "tag:brand"}


def test_second_fetch_returns_only_new_posts(server: FakeMastodon) -> None:
    connector = connect(server, hashtags=["brand"])
    first = connector.fetch({})
    assert len(first.posts) == 0
    old = server.add_mention("first", acct="alice")
    second = connector.fetch(first.cursor)
    new_mention = server.add_mention("second", acct="alice")
    new_tagged = server.add_status("#brand third", acct="bob")

    third = connector.fetch(second.cursor)

    assert ids(second) == [old["id"]]
    assert ids(third) == [new_mention["id"], new_tagged["id"]]
    assert connector.fetch(third.cursor).posts == []


def test_restart_from_stored_cursor_neither_repeats_nor_skips(server: FakeMastodon) -> None:
    server.add_mention("before we started", acct="alice")
    stored = connect(server, backfill_limit=20).fetch({}).cursor
    # More than a page (40) and more than one fetch's limit (20) arrive while the worker is down.
    added = [server.add_mention(f"message {n}", acct=f"user{n % 7}")["id"] for n in range(45)]

    seen: list[str] = []
    for _ in range(10):
        result = connect(server, backfill_limit=20).fetch(stored)  # a fresh connector each poll
        seen += ids(result)
        stored = json.loads(json.dumps(result.cursor))  # as the database would keep it
        if not result.more:
            break

    assert seen == added
    assert connect(server).fetch(stored).posts == []


def test_first_fetch_backfills_at_most_the_limit(server: FakeMastodon) -> None:
    added = [server.add_mention(f"old {n}", acct="alice")["id"] for n in range(30)]

    result = connect(server, backfill_limit=10).fetch({})

    assert ids(result) == added[-10:]
    assert result.more is False
    assert connect(server, backfill_limit=10).fetch(result.cursor).posts == []


def test_direct_mention_is_a_private_message(server: FakeMastodon) -> None:
    public = server.add_mention("public question", acct="alice")
    direct = server.add_mention("my account number is 1234", acct="bob", visibility="direct")
    connector = connect(server)

    posts = {post.external_id: connector.normalize(post.payload) for post in connector.fetch({}).posts}

    assert posts[public["id"]].is_private is False
    assert posts[direct["id"]].is_private is True


def test_keyword_search(server: FakeMastodon) -> None:
    match = server.add_status("I want a REFUND now", acct="alice")
    server.add_status("all good here", acct="bob")

    result = connect(server, keywords=["refund"]).fetch({})

    assert ids(result) == [match["id"]]
    assert result.cursor["search:refund"] == match["id"]


def test_keywords_are_skipped_when_the_instance_refuses_search(server: FakeMastodon) -> None:
    mention = server.add_mention("still needs an answer", acct="alice")
    server.add_status("refund please", acct="bob")
    server.fail_next(1, status=404, path="/api/v2/search")
    connector = connect(server, keywords=["refund"])

    result = connector.fetch({})

    assert ids(result) == [mention["id"]]
    assert "search:refund" not in result.cursor
    # Not asked again by this connector.
    assert connector.fetch(result.cursor).posts == []
    assert len(server.api_requests("GET", "/api/v2/search")) == 1


def test_instance_without_full_text_search_finds_nothing_quietly() -> None:
    with FakeMastodon(full_text_search=False) as server:
        server.add_status("refund please", acct="bob")
        assert connect(server, keywords=["refund"]).fetch({}).posts == []


# -- normalize --------------------------------------------------------------------------------


def test_normalize_reads_the_status(server: FakeMastodon) -> None:
    question = server.add_mention(
        "hello\nsecond line\n\nnew paragraph",
        acct="alice@other.example",
        display_name="Alice A.",
        followers_count=85,
    )
    reply = server.add_status("@alice@other.example on it", acct="brand", in_reply_to_id=question["id"])
    connector = connect(server)

    post = connector.normalize(connector.fetch({}).posts[0].payload)
    own = connector.normalize(server.statuses[reply["id"]])  # the raw wire JSON reads the same way

    assert post.external_id == question["id"]
    assert post.author_handle == "alice@other.example"
    assert post.author_name == "Alice A."
    assert post.author_external_id == question["account"]["id"]
    assert post.author_followers == 85
    assert post.text == "@brand hello\nsecond line\n\nnew paragraph"
    assert post.html == question["content"]
    assert post.created_at.tzinfo is not None
    assert post.created_at == dt.datetime.fromisoformat(question["created_at"])
    assert post.url == question["url"] and post.language == "en"
    assert post.from_brand is False and post.in_reply_to_external_id is None
    assert own.from_brand is True
    assert own.in_reply_to_external_id == question["id"]


@pytest.mark.parametrize("handle", ["brand", "@brand", "Brand@127.0.0.1"])
def test_brand_recognised_however_the_handle_is_written(server: FakeMastodon, handle: str) -> None:
    own = server.add_status("hello", acct="brand")
    assert connect(server, handle=handle).normalize(own).from_brand is True


def test_normalize_hostile_html(server: FakeMastodon) -> None:
    hostile = (
        '<p>Hi &amp; welcome<script>alert("x")</script><br>line two<style>p{color:red}</style></p>'
        '<p>&lt;b&gt;not bold&lt;/b&gt; &quot;quoted&quot; caf&#233; <img src=x onerror="alert(1)">'
        '<a href="javascript:alert(1)">link</a></p><script>document.cookie'
    )
    status = server.add_status(html_content=hostile, acct="mallory")

    post = connect(server).normalize(status)

    assert post.text == 'Hi & welcome\nline two\n\n<b>not bold</b> "quoted" café link'
    assert "alert" not in post.text and "cookie" not in post.text
    assert post.html == hostile


def valid_status() -> dict[str, Any]:
    return {
        "id": "110",
        "created_at": "2024-05-01T10:00:00.000Z",
        "content": "<p>hi</p>",
        "visibility": "public",
        "account": {
            "id": "7",
            "acct": "alice",
            "display_name": "",
            "username": "alice",
            "followers_count": 3,
        },
    }


def test_normalize_minimal_status(server: FakeMastodon) -> None:
    post = connect(server).normalize(valid_status())
    assert (post.text, post.author_name, post.url, post.language) == ("hi", "alice", "", "")
    assert post.created_at == dt.datetime(2024, 5, 1, 10, tzinfo=dt.UTC)


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda s: s.pop("id"), "no id"),
        (lambda s: s.update(id={"x": 1}), "not an ID"),
        (lambda s: s.pop("account"), "no account"),
        (lambda s: s.update(account="alice"), "no account"),
        (lambda s: s["account"].pop("acct"), "no acct"),
        (lambda s: s["account"].update(acct="  "), "no acct"),
        (lambda s: s.pop("content"), "content"),
        (lambda s: s.update(content=None), "content"),
        (lambda s: s.pop("created_at"), "created_at"),
        (lambda s: s.update(created_at="yesterday"), "created_at"),
        (lambda s: s["account"].update(followers_count="many"), "followers_count"),
        (lambda s: s.update(visibility=3), "visibility"),
        (lambda s: s.update(in_reply_to_id=["1"]), "in_reply_to_id"),
    ],
)
def test_normalize_malformed_payload(server: FakeMastodon, change, message: str) -> None:
    status = valid_status()
    change(status)
    with pytest.raises(MalformedEvent, match=message):
        connect(server).normalize(status)


@pytest.mark.parametrize("payload", [None, [], "status"])
def test_normalize_non_object(server: FakeMastodon, payload: Any) -> None:
    with pytest.raises(MalformedEvent):
        connect(server).normalize(payload)


# -- publish ----------------------------------------------------------------------------------


def test_publish_public_reply_in_thread(server: FakeMastodon) -> None:
    question = server.add_mention("where is my parcel?", acct="alice")

    published = connect(server).publish(
        Reply(
            text="Sorry! It ships today.",
            idempotency_key="r-1",
            in_reply_to_external_id=question["id"],
            to_handle="alice",
        )
    )

    [status] = server.posted
    assert published.external_id == status["id"]
    assert published.url == status["url"]
    assert published.payload["id"] == status["id"]
    assert status["in_reply_to_id"] == question["id"]
    assert status["visibility"] == "public"
    assert connect(server).normalize(status).text == "@alice Sorry! It ships today."


def test_publish_unlisted_when_configured(server: FakeMastodon) -> None:
    question = server.add_mention("hi", acct="alice")
    connect(server, reply_visibility="unlisted").publish(
        Reply(text="hello", idempotency_key="r-1", in_reply_to_external_id=question["id"], to_handle="alice")
    )
    assert server.posted[0]["visibility"] == "unlisted"


def test_publish_private_reply_is_direct_and_mentions_the_customer(server: FakeMastodon) -> None:
    question = server.add_mention("my account number is 1234", acct="bob@other.example", visibility="direct")
    connector = connect(server)

    connector.publish(
        Reply(
            text="We have fixed it.",
            idempotency_key="p-1",
            private=True,
            in_reply_to_external_id=question["id"],
            to_handle="@bob@other.example",
        )
    )
    connector.publish(
        Reply(
            text="@bob@other.example anything else?",
            idempotency_key="p-2",
            private=True,
            to_handle="bob@other.example",
        )
    )

    first, second = server.posted
    assert first["visibility"] == second["visibility"] == "direct"
    assert first["in_reply_to_id"] == question["id"]
    assert [m["acct"] for m in first["mentions"]] == ["bob@other.example"]
    assert connector.normalize(first).text == "@bob We have fixed it."  # Mastodon shows the username
    assert second["content"].count("@<span>bob</span>") == 1


def test_private_reply_needs_a_handle(server: FakeMastodon) -> None:
    with pytest.raises(PermanentError, match="to_handle"):
        connect(server).publish(Reply(text="hi", idempotency_key="p-1", private=True))
    assert server.posted == []


def test_publishing_twice_with_one_idempotency_key_creates_one_status(server: FakeMastodon) -> None:
    question = server.add_mention("hello?", acct="alice")
    reply = Reply(text="Hello!", idempotency_key="outbox-42", in_reply_to_external_id=question["id"], to_handle="alice")
    connector = connect(server)

    first = connector.publish(reply)
    again = connect(server).publish(reply)  # e.g. the worker crashed before recording the first

    assert len(server.api_requests("POST", "/api/v1/statuses")) == 2
    assert len(server.posted) == 1
    assert again.external_id == first.external_id
    other = connector.publish(
        Reply(
            text="Hello!",
            idempotency_key="outbox-43",
            in_reply_to_external_id=question["id"],
            to_handle="alice",
        )
    )
    assert other.external_id != first.external_id and len(server.posted) == 2


def test_reply_to_a_missing_status_is_permanent(server: FakeMastodon) -> None:
    with pytest.raises(PermanentError, match="404"):
        connect(server).publish(
            Reply(text="hi", idempotency_key="r-1", in_reply_to_external_id="999", to_handle="alice")
        )


# -- errors -----------------------------------------------------------------------------------


def test_revoked_token_is_permanent(server: FakeMastodon) -> None:
    server.add_mention("hi", acct="alice")
    server.revoke_token()
    connector = connect(server)

    with pytest.raises(PermanentError, match="401"):
        connector.fetch({})
    with pytest.raises(PermanentError, match="access token"):
        connector.publish(Reply(text="hi", idempotency_key="r-1", to_handle="alice"))


def test_wrong_token_is_permanent(server: FakeMastodon) -> None:
    with pytest.raises(PermanentError):
        connect(server, token="not-the-token").fetch({})


def test_429_is_transient_with_the_reset_time(server: FakeMastodon) -> None:
    server.fail_next(status=429, reset_in=120)

    with pytest.raises(TransientError) as caught:
        connect(server).fetch({})

    assert isinstance(caught.value, RateLimited)
    assert caught.value.retry_after is not None and 110 <= caught.value.retry_after <= 125


def test_429_on_publish_is_transient(server: FakeMastodon) -> None:
    server.fail_next(status=429, reset_in=30, path="/api/v1/statuses")
    with pytest.raises(TransientError) as caught:
        connect(server).publish(Reply(text="hi", idempotency_key="r-1", to_handle="alice"))
    assert caught.value.retry_after is not None and 20 <= caught.value.retry_after <= 35
    assert server.posted == []


def test_used_up_rate_limit_stops_before_the_next_request(server: FakeMastodon) -> None:
    server.set_rate_limit(remaining=1, reset_in=90)  # the notifications request takes the last one

    with pytest.raises(RateLimited) as caught:
        connect(server, hashtags=["brand"]).fetch({})

    assert 80 <= caught.value.retry_after <= 95
    assert [r["path"] for r in server.api_requests()] == ["/api/v1/notifications"]


def test_rate_limit_mid_fetch_keeps_what_was_read(server: FakeMastodon) -> None:
    mention = server.add_mention("hi", acct="alice")
    server.add_status("#brand later", acct="bob")
    server.set_rate_limit(remaining=1, reset_in=90)
    connector = connect(server, hashtags=["brand"])

    result = connector.fetch({})

    assert ids(result) == [mention["id"]]
    assert result.cursor == {"notifications": server.notifications[-1]["id"]}
    assert result.more is False
    with pytest.raises(RateLimited):
        connector.fetch(result.cursor)
    with pytest.raises(RateLimited):
        connect(server, hashtags=["brand"]).fetch(result.cursor)  # a new connector meets the server's 429


@pytest.mark.parametrize("status", [500, 502, 503, 504])
def test_server_errors_are_transient(server: FakeMastodon, status: int) -> None:
    mention = server.add_mention("hi", acct="alice")
    server.fail_next(status=status)
    connector = connect(server)

    with pytest.raises(TransientError) as caught:
        connector.fetch({})
    assert not isinstance(caught.value, RateLimited)

    assert ids(connector.fetch({})) == [mention["id"]]


def test_server_error_on_publish_is_transient(server: FakeMastodon) -> None:
    server.fail_next(status=503, path="/api/v1/statuses")
    with pytest.raises(TransientError):
        connect(server).publish(Reply(text="hi", idempotency_key="r-1", to_handle="alice"))


def test_unreachable_instance_is_transient() -> None:
    server = FakeMastodon()
    server.stop()  # the port is closed: connection refused
    with pytest.raises(TransientError, match="cannot reach"):
        connect(server).fetch({})


def test_private_address_is_refused_without_allow_private(server: FakeMastodon) -> None:
    server.add_mention("hi", acct="alice")
    connector = connect(server, allow_private=False)

    # A configuration error: retrying will never reach a private address, so the account is marked unhealthy.
    with pytest.raises(PermanentError, match="private or internal address"):
        connector.fetch({})
    with pytest.raises(PermanentError):
        connector.publish(Reply(text="hi", idempotency_key="r-1", to_handle="alice"))
    assert server.api_requests() == []


@pytest.mark.parametrize(
    ("settings", "credentials", "message"),
    [
        ({"hashtags": ["two words"]}, {"access_token": "t"}, "hashtag"),
        ({"backfill_limit": "lots"}, {"access_token": "t"}, "backfill_limit"),
        ({"reply_visibility": "direct"}, {"access_token": "t"}, "reply_visibility"),
        ({}, {}, "access token"),
    ],
)
def test_bad_configuration_is_permanent(server: FakeMastodon, settings, credentials, message) -> None:
    connector = MastodonConnector(
        AccountConfig(
            network="mastodon",
            handle="brand",
            base_url=server.url,
            credentials=credentials,
            settings={"allow_private": True, **settings},
        )
    )  # the constructor does not raise: the worker builds connectors outside its error handling
    with pytest.raises(PermanentError, match=message):
        connector.fetch({})
    with pytest.raises(PermanentError, match=message):
        connector.publish(Reply(text="hi", idempotency_key="r-1", to_handle="alice"))


def test_a_token_naming_a_file_is_not_read(server: FakeMastodon, tmp_path) -> None:
    secret = tmp_path / "secret.txt"
    secret.write_text(f"{server.access_token}\n")
    # Mastodon.py would read a token that names an existing file; a user-supplied token must not.
    with pytest.raises(PermanentError):
        connect(server, token=str(secret)).fetch({})
