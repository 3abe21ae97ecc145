"""The Reddit connector against the local fake Reddit (no database, no network)."""

from __future__ import annotations

import datetime as dt
import json
import time
from collections.abc import Iterator
from typing import Any

import pytest

from hubbub.connectors.base import AccountConfig, MalformedEvent, PermanentError, Reply, TransientError
from hubbub.connectors.reddit import RateLimited, RedditConnector
from hubbub.testing.fake_reddit import FakeReddit

BRAND = "BrandSupport"


@pytest.fixture
def server() -> Iterator[FakeReddit]:
    with FakeReddit(brand=BRAND) as fake:
        yield fake


def connect(server: FakeReddit, credentials: dict[str, Any] | None = None, **settings: Any) -> RedditConnector:
    settings.setdefault("allow_private", True)
    settings.setdefault("subreddits", ["brand"])
    settings.setdefault("keywords", ["refund", "late delivery"])
    return RedditConnector(
        AccountConfig(
            network="reddit",
            handle=BRAND,
            base_url=server.url,
            credentials=server.credentials() if credentials is None else credentials,
            settings=settings,
        )
    )


def ids(result) -> list[str]:
    return [post.external_id for post in result.posts]


def stored(cursor: dict[str, Any]) -> dict[str, Any]:
    return json.loads(json.dumps(cursor))  # as the database keeps it


# -- fetch ------------------------------------------------------------------------------------


def test_fetch_reads_search_comments_and_inbox(server: FakeReddit) -> None:
    t0 = time.time() - 300
    post = server.add_submission("Where is my REFUND?", "ordered in May", author="alice", created_utc=t0)
    server.add_submission("Love the product", "no complaints", author="dave", created_utc=t0 + 1)
    elsewhere = server.add_submission("refund elsewhere", author="erin", subreddit="other", created_utc=t0 + 2)
    comment = server.add_comment(post["name"], "Same, a late   delivery here", author="bob", created_utc=t0 + 3)
    server.add_comment(post["name"], "nothing to see", author="carol", created_utc=t0 + 4)
    own = server.add_comment(post["name"], "We are on it (refund)", author=BRAND, created_utc=t0 + 5)
    reply = server.add_comment(own["name"], "thanks, still waiting", author="alice", created_utc=t0 + 6)
    mention = server.add_comment(post["name"], f"u/{BRAND} help?", author="frank", created_utc=t0 + 7)
    message = server.add_message("Account", "my account number is 1234", author="gina", created_utc=t0 + 8)

    result = connect(server).fetch({})

    assert ids(result) == [
        post["name"],
        comment["name"],
        reply["name"],
        mention["name"],
        message["name"],
    ]
    assert elsewhere["name"] not in ids(result)
    assert set(result.cursor) == {"inbox", "submissions", "comments"}
    assert result.more is False
    sources = {post.external_id: post.payload["hubbub"]["source"] for post in result.posts}
    assert sources[post["name"]] == "submissions"
    assert sources[comment["name"]] == "comments"
    assert sources[message["name"]] == "inbox"
    for raw in result.posts:
        assert json.loads(json.dumps(raw.payload)) == raw.payload
    search = server.api_requests("GET", "/r/brand/search")[0]["query"]
    assert search["q"] == 'refund OR "late delivery"'
    assert (search["sort"], search["restrict_sr"]) == ("new", "on")


def test_without_keywords_every_new_submission_and_comment(server: FakeReddit) -> None:
    post = server.add_submission("Hello", author="alice")
    comment = server.add_comment(post["name"], "hi", author="bob")

    result = connect(server, keywords=[]).fetch({})

    assert set(ids(result)) == {post["name"], comment["name"]}
    assert server.api_requests("GET", "/r/brand/new") and not server.api_requests("GET", "/r/brand/search")


def test_inbox_only_without_subreddits(server: FakeReddit) -> None:
    message = server.add_message("hi", "question", author="alice")
    server.add_submission("refund", author="bob")

    result = connect(server, subreddits=[]).fetch({})

    assert ids(result) == [message["name"]]
    assert set(result.cursor) == {"inbox"}


def test_a_post_seen_by_two_sources_is_returned_once(server: FakeReddit) -> None:
    post = server.add_submission("hello", author="alice")
    both = server.add_comment(post["name"], f"u/{BRAND} I want a refund", author="bob")  # inbox and comments

    result = connect(server).fetch({})

    assert ids(result) == [both["name"]]
    assert both["name"] in result.cursor["inbox"]["seen"] and both["name"] in result.cursor["comments"]["seen"]
    assert connect(server).fetch(stored(result.cursor)).posts == []


def test_second_fetch_returns_only_new_posts(server: FakeReddit) -> None:
    connector = connect(server)
    first = connector.fetch({})
    old = server.add_submission("refund one", author="alice")
    second = connector.fetch(first.cursor)
    new_post = server.add_submission("refund two", author="alice")
    new_message = server.add_message("hi", "there", author="bob")

    third = connector.fetch(second.cursor)

    assert first.posts == []
    assert ids(second) == [old["name"]]
    assert sorted(ids(third)) == sorted([new_post["name"], new_message["name"]])
    assert connector.fetch(third.cursor).posts == []


def test_restart_from_stored_cursor_neither_repeats_nor_skips(server: FakeReddit) -> None:
    base = time.time() - 1000
    server.add_submission("refund before we started", author="alice", created_utc=base)
    cursor = stored(connect(server, backfill_limit=20).fetch({}).cursor)
    # While the worker is down, more than a page and more than one fetch's limit arrive, many
    # of them within the same created_utc second.
    added = [
        server.add_submission(f"refund {n}", author=f"user{n % 7}", created_utc=base + 10 + n // 5)["name"]
        for n in range(130)
    ]

    seen: list[str] = []
    for _ in range(20):
        result = connect(server, backfill_limit=20).fetch(cursor)  # a fresh connector for every poll
        seen += ids(result)
        cursor = stored(result.cursor)
        if not result.more:
            break

    assert seen == added
    assert connect(server, backfill_limit=20).fetch(cursor).posts == []


def test_first_fetch_backfills_at_most_the_limit(server: FakeReddit) -> None:
    base = time.time() - 1000
    added = [server.add_submission(f"old refund {n}", created_utc=base + n)["name"] for n in range(30)]

    result = connect(server, backfill_limit=10).fetch({})

    assert ids(result) == added[-10:]
    assert result.more is False
    assert connect(server, backfill_limit=10).fetch(stored(result.cursor)).posts == []


def test_late_search_results_are_found_once(server: FakeReddit) -> None:
    now = time.time()
    first = server.add_submission("refund A", created_utc=now - 10)
    cursor = stored(connect(server).fetch({}).cursor)
    # Reddit's search index lags: a post made before the newest one we saw appears only now.
    late = server.add_submission("refund B", created_utc=now - 60)

    again = connect(server).fetch(cursor)

    assert ids(again) == [late["name"]]
    assert first["name"] not in ids(again)
    assert connect(server).fetch(stored(again.cursor)).posts == []


def test_deleting_the_newest_seen_item_does_not_stall_a_source(server: FakeReddit) -> None:
    newest = server.add_submission("refund A", created_utc=time.time() - 100)
    cursor = stored(connect(server).fetch({}).cursor)
    server.delete(newest["name"])
    later = server.add_submission("refund B")

    assert ids(connect(server).fetch(cursor)) == [later["name"]]


def test_fetch_with_an_unreadable_cursor_starts_over(server: FakeReddit) -> None:
    post = server.add_submission("refund", author="alice")
    result = connect(server).fetch({"submissions": "garbage", "inbox": {"newest": "x"}})
    assert ids(result) == [post["name"]]


# -- normalize --------------------------------------------------------------------------------


def test_normalize_reads_submissions_comments_and_messages(server: FakeReddit) -> None:
    server.user("alice", link_karma=40, comment_karma=2)
    post = server.add_submission("Refund?", "Paid **twice** for [order](https://example.com/1)", author="alice")
    comment = server.add_comment(post["name"], "a refund > nothing", author="bob")
    message = server.add_message("Order 55", "Please call me", author="carol")
    connector = connect(server)
    posts = {raw.external_id: connector.normalize(raw.payload) for raw in connector.fetch({}).posts}

    sub, com, pm = posts[post["name"]], posts[comment["name"]], posts[message["name"]]
    assert sub.text == "Refund?\n\nPaid **twice** for [order](https://example.com/1)"  # markdown kept
    assert sub.author_handle == "alice" and sub.author_external_id == post["author_fullname"]
    assert sub.author_followers == 42  # karma as reach
    assert sub.created_at == dt.datetime.fromtimestamp(post["created_utc"], dt.UTC)
    assert sub.url == f"{server.url}{post['permalink']}"
    assert sub.in_reply_to_external_id is None and sub.is_private is False and sub.from_brand is False
    assert com.text == "a refund > nothing"  # raw_json: not HTML-escaped
    assert com.in_reply_to_external_id == post["name"]
    assert pm.is_private is True and pm.text == "Order 55\n\nPlease call me"
    assert pm.url.endswith(f"/message/messages/{message['id']}")


def test_normalize_without_karma_has_no_reach(server: FakeReddit) -> None:
    post = server.add_submission("refund", author="alice")
    assert connect(server).normalize(server.thing(post["name"])).author_followers is None


def test_brand_and_inbox_reply_fields(server: FakeReddit) -> None:
    post = server.add_submission("hello", author="alice")
    own = server.add_comment(post["name"], "Hi, we can help\n\n[](#hb-0123456789abcdef)", author=BRAND)
    reply = server.add_comment(own["name"], "thanks", author="alice")
    connector = connect(server, subreddits=[])

    [raw] = connector.fetch({}).posts
    from_inbox = connector.normalize(raw.payload)
    brand_post = connector.normalize(server.thing(own["name"]))

    assert raw.payload["data"]["type"] == "comment_reply"
    assert from_inbox.external_id == reply["name"] and from_inbox.in_reply_to_external_id == own["name"]
    assert from_inbox.url.startswith(f"{server.url}/r/brand/comments/")
    assert brand_post.from_brand is True
    assert brand_post.text == "Hi, we can help"  # the idempotency marker is not shown


def test_normalize_hostile_text(server: FakeReddit) -> None:
    hostile = (
        "<script>alert('x')</script> &amp; <img src=x onerror=alert(1)>\x00\x1b[31m\r\n"
        "[click](javascript:alert(1)) \u202eevil\u202c [](#hb-0123456789abcdef) "
    )
    post = server.add_submission("<b>title</b>", hostile, author="mallory")

    result = connect(server, keywords=[]).normalize(server.thing(post["name"]))

    # Kept as text (the inbox escapes it), with control characters and hidden markers removed.
    assert result.text.startswith("<b>title</b>\n\n<script>alert('x')</script> &amp; <img src=x onerror=alert(1)>")
    assert "\x00" not in result.text and "\x1b" not in result.text and "\r" not in result.text
    assert "#hb-" not in result.text
    assert result.html == ""


def test_a_link_post_keeps_its_link() -> None:
    connector = RedditConnector(AccountConfig(network="reddit", handle=BRAND))
    thing = {
        "kind": "t3",
        "data": {
            "name": "t3_abc",
            "author": "alice",
            "title": "Look at this",
            "selftext": "",
            "is_self": False,
            "url": "https://example.com/review",
            "created_utc": 1714557600,
            "permalink": "/r/brand/comments/abc/look/",
        },
    }
    post = connector.normalize(thing)  # normalize needs no credentials or server
    assert post.text == "Look at this\n\nhttps://example.com/review"
    assert post.url == "https://www.reddit.com/r/brand/comments/abc/look/"


def valid_comment() -> dict[str, Any]:
    return {
        "kind": "t1",
        "data": {
            "name": "t1_abc",
            "id": "abc",
            "author": "alice",
            "author_fullname": "t2_x1",
            "body": "hi",
            "created_utc": 1714557600.0,
            "parent_id": "t3_def",
            "permalink": "/r/brand/comments/def/t/abc/",
        },
    }


def test_normalize_minimal_comment(server: FakeReddit) -> None:
    post = connect(server).normalize(valid_comment())
    assert post.created_at == dt.datetime(2024, 5, 1, 10, tzinfo=dt.UTC)
    assert post.url == f"{server.url}/r/brand/comments/def/t/abc/"
    assert post.author_followers is None


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda t: t.update(kind="t5"), "kind"),
        (lambda t: t.pop("data"), "no data"),
        (lambda t: t["data"].pop("name"), "fullname"),
        (lambda t: t["data"].update(name="t3_abc"), "fullname"),
        (lambda t: t["data"].pop("author"), "no author"),
        (lambda t: t["data"].update(author=7), "no author"),
        (lambda t: t["data"].pop("body"), "no body"),
        (lambda t: t["data"].update(body=["x"]), "body"),
        (lambda t: t["data"].pop("created_utc"), "created_utc"),
        (lambda t: t["data"].update(created_utc="yesterday"), "created_utc"),
        (lambda t: t["data"].update(created_utc=float("nan")), "created_utc"),
        (lambda t: t["data"].update(created_utc=True), "created_utc"),
        (lambda t: t["data"].update(parent_id="not-a-fullname"), "parent_id"),
        (lambda t: t["data"].update(permalink=3), "permalink"),
        (lambda t: t["data"].update(author_fullname={"a": 1}), "author_fullname"),
    ],
)
def test_normalize_malformed_payload(server: FakeReddit, change, message: str) -> None:
    thing = valid_comment()
    change(thing)
    with pytest.raises(MalformedEvent, match=message):
        connect(server).normalize(thing)


@pytest.mark.parametrize("payload", [None, [], "t1_abc", {"kind": "t3", "data": {"name": "t3_x", "author": "a"}}])
def test_normalize_non_things(server: FakeReddit, payload: Any) -> None:
    with pytest.raises(MalformedEvent):
        connect(server).normalize(payload)


# -- publish ----------------------------------------------------------------------------------


def test_public_reply_to_a_submission_and_a_comment(server: FakeReddit) -> None:
    post = server.add_submission("refund?", author="alice")
    comment = server.add_comment(post["name"], "me too", author="bob")
    connector = connect(server)

    to_post = connector.publish(
        Reply(text="Sorry! Refund sent.", idempotency_key="r-1", in_reply_to_external_id=post["name"])
    )
    to_comment = connector.publish(
        Reply(text="Checking.", idempotency_key="r-2", in_reply_to_external_id=comment["name"])
    )

    first, second = server.posted
    assert (first["data"]["parent_id"], second["data"]["parent_id"]) == (post["name"], comment["name"])
    assert first["data"]["author"] == BRAND
    assert to_post.external_id == first["data"]["name"] and to_comment.external_id == second["data"]["name"]
    assert to_post.url == f"{server.url}{first['data']['permalink']}"
    assert connector.normalize(to_post.payload).text == "Sorry! Refund sent."
    assert server.api_requests("POST", "/api/comment")[0]["form"]["thing_id"] == post["name"]


def test_private_message_is_composed_to_the_customer(server: FakeReddit) -> None:
    post = server.add_submission("my account is locked", author="alice")

    published = connect(server).publish(
        Reply(
            text="Please send us your email.",
            idempotency_key="p-1",
            private=True,
            to_handle="u/alice",
            in_reply_to_external_id=post["name"],
        )
    )

    [message] = server.posted
    form = server.api_requests("POST", "/api/compose")[0]["form"]
    assert (form["to"], form["subject"]) == ("alice", "Following up on your post")
    assert message["kind"] == "t4" and message["data"]["dest"] == "alice"
    assert published.external_id == message["data"]["name"]
    assert connect(server).normalize(published.payload).is_private is True


def test_reply_in_a_message_conversation(server: FakeReddit) -> None:
    message = server.add_message("help", "my order", author="carol")

    published = connect(server).publish(
        Reply(
            text="On it.",
            idempotency_key="m-1",
            private=True,
            to_handle="carol",
            in_reply_to_external_id=message["name"],
        )
    )

    [sent] = server.posted
    assert sent["data"]["parent_id"] == message["name"] and sent["data"]["dest"] == "carol"
    assert published.external_id == sent["data"]["name"]
    assert not server.api_requests("POST", "/api/compose")


@pytest.mark.parametrize("kind", ["submission", "comment", "message", "conversation"])
def test_publishing_twice_with_one_idempotency_key_posts_once(server: FakeReddit, kind: str) -> None:
    post = server.add_submission("refund?", author="alice")
    parent = {
        "submission": post["name"],
        "comment": server.add_comment(post["name"], "me too", author="bob")["name"],
        "message": None,
        "conversation": server.add_message("hi", "help", author="carol")["name"],
    }[kind]
    reply = Reply(
        text="Hello!",
        idempotency_key="outbox-42",
        private=kind in ("message", "conversation"),
        in_reply_to_external_id=parent,
        to_handle="carol",
    )

    first = connect(server).publish(reply)
    again = connect(server).publish(reply)  # e.g. the worker crashed before recording the first

    assert len(server.posted) == 1
    assert again.external_id == first.external_id
    other = connect(server).publish(Reply(**{**reply.__dict__, "idempotency_key": "outbox-43"}))
    assert other.external_id != first.external_id and len(server.posted) == 2


def test_reply_to_a_deleted_post_fails_only_that_reply(server: FakeReddit) -> None:
    post = server.add_submission("refund?", author="alice")
    server.delete(post["name"])

    with pytest.raises(PermanentError, match="DELETED_LINK") as caught:
        connect(server).publish(Reply(text="hi", idempotency_key="r-1", in_reply_to_external_id=post["name"]))

    assert caught.value.affects_account is False


@pytest.mark.parametrize(
    ("reply", "message"),
    [
        (Reply(text="hi", idempotency_key="r-1"), "needs the post or comment"),
        (Reply(text="hi", idempotency_key="r-1", private=True), "to_handle"),
        (Reply(text="hi", idempotency_key="r-1", in_reply_to_external_id="12345"), "fullname"),
        (Reply(text="  ", idempotency_key="r-1", in_reply_to_external_id="t3_abc"), "empty"),
    ],
)
def test_replies_that_cannot_be_sent(server: FakeReddit, reply: Reply, message: str) -> None:
    with pytest.raises(PermanentError, match=message) as caught:
        connect(server).publish(reply)
    assert caught.value.affects_account is False
    assert server.posted == []


def test_unknown_user_for_a_private_message(server: FakeReddit) -> None:
    with pytest.raises(PermanentError, match="USER_DOESNT_EXIST"):
        connect(server).publish(Reply(text="hi", idempotency_key="p-1", private=True, to_handle="nobody_here"))


# -- errors and rate limits -------------------------------------------------------------------


def test_429_is_transient_with_the_reset_time(server: FakeReddit) -> None:
    server.fail_next(429, reset_in=120)

    with pytest.raises(RateLimited) as caught:
        connect(server).fetch({})

    assert caught.value.retry_after is not None and 110 <= caught.value.retry_after <= 125
    assert len(server.api_requests()) == 1  # prawcore did not wait and retry


def test_429_on_publish_is_transient(server: FakeReddit) -> None:
    post = server.add_submission("refund?", author="alice")
    server.fail_next(429, reset_in=30, path="/api/comment")
    with pytest.raises(TransientError) as caught:
        connect(server).publish(Reply(text="hi", idempotency_key="r-1", in_reply_to_external_id=post["name"]))
    assert caught.value.retry_after is not None and 20 <= caught.value.retry_after <= 35
    assert server.posted == []


def test_used_up_rate_limit_stops_before_the_next_request(server: FakeReddit) -> None:
    connector = connect(server)
    server.set_rate_limit(remaining=1, reset_in=90)  # the inbox request takes the last one

    with pytest.raises(RateLimited) as caught:
        connector.fetch({})

    assert 80 <= caught.value.retry_after <= 95
    assert [r["path"] for r in server.api_requests()] == ["/message/inbox"]


def test_rate_limit_mid_fetch_keeps_what_was_read(server: FakeReddit) -> None:
    message = server.add_message("hi", "help", author="alice")
    server.add_submission("refund", author="bob")
    server.set_rate_limit(remaining=1, reset_in=90)
    connector = connect(server)

    result = connector.fetch({})

    assert ids(result) == [message["name"]]
    assert set(result.cursor) == {"inbox"}
    assert result.more is False
    with pytest.raises(RateLimited):
        connector.fetch(result.cursor)
    with pytest.raises(RateLimited):
        connect(server).fetch(result.cursor)  # a new connector meets the server's 429


def test_reddit_ratelimit_api_error_is_transient(server: FakeReddit, monkeypatch) -> None:
    post = server.add_submission("refund?", author="alice")

    def slow_down(form):
        return {"json": {"errors": [["RATELIMIT", "Take a break for 9 minutes before trying again.", "ratelimit"]]}}

    monkeypatch.setattr(server, "_post_comment", slow_down)
    with pytest.raises(RateLimited) as caught:
        connect(server).publish(Reply(text="hi", idempotency_key="r-1", in_reply_to_external_id=post["name"]))
    assert caught.value.retry_after == 540


def test_revoked_token_is_permanent(server: FakeReddit) -> None:
    connector = connect(server)
    connector.fetch({})  # has a token now
    server.revoke_token()

    with pytest.raises(PermanentError, match="credentials") as caught:
        connector.fetch({})
    assert caught.value.affects_account is True
    with pytest.raises(PermanentError):
        connect(server).publish(Reply(text="hi", idempotency_key="r-1", in_reply_to_external_id="t3_abc"))


def test_an_access_token_refused_once_is_renewed(server: FakeReddit) -> None:
    connector = connect(server)
    connector.fetch({})
    server._tokens.clear()  # the token expired early; the credentials still work
    message = server.add_message("hi", "help", author="alice")

    assert message["name"] in ids(connector.fetch({}))


@pytest.mark.parametrize("credentials", [{"password": "wrong"}, {"client_secret": "wrong"}])
def test_wrong_credentials_are_permanent(server: FakeReddit, credentials: dict[str, str]) -> None:
    with pytest.raises(PermanentError):
        connect(server, credentials={**server.credentials(), **credentials}).fetch({})


def test_suspended_account_is_permanent(server: FakeReddit) -> None:
    server.suspend()
    with pytest.raises(PermanentError, match="403") as caught:
        connect(server).fetch({})
    assert caught.value.affects_account is True


def test_refresh_token_credentials(server: FakeReddit) -> None:
    message = server.add_message("hi", "help", author="alice")
    connector = connect(server, credentials=server.credentials(refresh=True))
    assert ids(connector.fetch({})) == [message["name"]]
    grant = [r["form"] for r in server.requests if r["path"] == "/api/v1/access_token"][0]
    assert grant["grant_type"] == "refresh_token"


@pytest.mark.parametrize("status", [500, 502, 503, 504])
def test_server_errors_are_transient(server: FakeReddit, status: int) -> None:
    message = server.add_message("hi", "help", author="alice")
    server.fail_next(status)
    connector = connect(server)

    with pytest.raises(TransientError) as caught:
        connector.fetch({})
    assert not isinstance(caught.value, RateLimited)
    assert len(server.api_requests()) == 1  # no retry (and so no sleep) inside prawcore

    assert message["name"] in ids(connector.fetch({}))


def test_server_error_on_publish_is_transient(server: FakeReddit) -> None:
    post = server.add_submission("refund?", author="alice")
    server.fail_next(503, path="/api/comment")
    with pytest.raises(TransientError):
        connect(server).publish(Reply(text="hi", idempotency_key="r-1", in_reply_to_external_id=post["name"]))
    assert server.posted == []


def test_unreachable_server_is_transient() -> None:
    server = FakeReddit()
    server.stop()  # the port is closed: connection refused
    with pytest.raises(TransientError, match="cannot reach"):
        connect(server).fetch({})


def test_private_address_is_refused_without_allow_private(server: FakeReddit) -> None:
    server.add_message("hi", "help", author="alice")
    connector = connect(server, allow_private=False)

    with pytest.raises(PermanentError, match="private or internal address") as caught:
        connector.fetch({})
    assert caught.value.affects_account is True
    with pytest.raises(PermanentError):
        connector.publish(Reply(text="hi", idempotency_key="r-1", in_reply_to_external_id="t3_abc"))
    assert server.requests == []


@pytest.mark.parametrize(
    ("settings", "credentials", "message"),
    [
        ({"subreddits": ["no spaces allowed"]}, None, "subreddit"),
        ({"backfill_limit": "lots"}, None, "backfill_limit"),
        ({"keywords": ["x" * 600]}, None, "512"),
        ({}, {"client_id": "c", "client_secret": "s"}, "username and password or a refresh_token"),
        ({}, {"client_id": "c", "username": "u", "password": "p"}, "client_secret"),
        ({}, {}, "client_id"),
    ],
)
def test_bad_configuration_is_permanent(server: FakeReddit, settings, credentials, message) -> None:
    connector = connect(server, credentials=credentials, **settings)  # the constructor does not raise
    with pytest.raises(PermanentError, match=message):
        connector.fetch({})
    with pytest.raises(PermanentError, match=message):
        connector.publish(Reply(text="hi", idempotency_key="r-1", in_reply_to_external_id="t3_abc"))
    assert server.requests == []
