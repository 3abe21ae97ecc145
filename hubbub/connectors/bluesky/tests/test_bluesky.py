"""The Bluesky connector and Jetstream consumer against the local fake Bluesky (no database, no network)."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from hubbub.connectors.base import AccountConfig, MalformedEvent, PermanentError, RawPost, Reply, TransientError
from hubbub.connectors.bluesky import BlueskyConnector, JetstreamConsumer, PostFilter, RateLimited, rkey_for
from hubbub.connectors.bluesky.connector import forget_sessions, tid
from hubbub.lib.safehttp import BlockedAddress
from hubbub.testing.fake_bluesky import FakeBluesky


@pytest.fixture
def server() -> Iterator[FakeBluesky]:
    # A new fake may get an old one's port: start without sessions cached for that address.
    forget_sessions()
    with FakeBluesky() as fake:
        yield fake


def connect(server: FakeBluesky, password: str | None = None, **settings: Any) -> BlueskyConnector:
    settings.setdefault("allow_private", True)
    return BlueskyConnector(
        AccountConfig(
            network="bluesky",
            handle="brand.test",
            base_url=server.url,
            credentials={"app_password": server.password if password is None else password},
            settings=settings,
        )
    )


def wait_until(condition: Callable[[], bool], timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError("condition not met in time")
        time.sleep(0.01)


def ids(posts: list[RawPost]) -> list[str]:
    return [post.external_id for post in posts]


class Consumer:
    """A JetstreamConsumer running in a thread, recording what it delivers."""

    def __init__(self, server: FakeBluesky, *, cursor: int | None = None, **options: Any):
        self.delivered: list[RawPost] = []
        self.cursors: list[int] = []
        self.stop = threading.Event()
        options.setdefault(
            "post_filter", PostFilter(brand_did=server.brand["did"], brand_handle="brand.test", keywords=["widget"])
        )
        self.consumer = JetstreamConsumer(
            server.jetstream_url,
            on_post=self.delivered.append,
            cursor=cursor,
            on_cursor=self.cursors.append,
            stop=self.stop,
            allow_private=True,
            backoff_initial=0.02,
            backoff_max=0.1,
            checkpoint_interval=0,
            poll_timeout=0.05,
            **options,
        )
        self.thread = threading.Thread(target=self.consumer.run, daemon=True)

    def __enter__(self) -> Consumer:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop.set()
        self.thread.join(timeout=5)
        assert not self.thread.is_alive()

    def texts(self) -> list[str]:
        return [p.payload["item"]["commit"]["record"].get("text", "") for p in self.delivered]


def post_event(did: str, text: str, time_us: int, **record: Any) -> dict[str, Any]:
    return {
        "did": did,
        "time_us": time_us,
        "kind": "commit",
        "commit": {
            "rev": tid(time_us, 1),
            "operation": "create",
            "collection": "app.bsky.feed.post",
            "rkey": tid(time_us),
            "record": {"$type": "app.bsky.feed.post", "text": text, "createdAt": "2024-05-01T12:00:00.000Z", **record},
            "cid": "bafyreitest",
        },
    }


# -- Jetstream -----------------------------------------------------------------------------------


def test_jetstream_delivers_posts_that_concern_the_brand(server: FakeBluesky) -> None:
    brand_post = server.add_post("Our spring update is out", handle="brand.test")
    with Consumer(server) as run:
        wait_until(lambda: run.consumer.connects == 1)
        server.add_post("@brand.test my parcel is lost", handle="alice.test")  # mention facet
        server.add_post("hey @BRAND.test anyone there?", handle="bob.test", facets=[])  # text only
        server.add_post("nice", handle="carol.test", reply_to=brand_post["uri"])  # reply to the brand
        server.add_post("this widget broke", handle="dave.test")  # keyword
        server.add_post("widgets are fine", handle="erin.test")  # not the whole word
        server.add_post("@brand.testing is someone else", handle="frank.test", facets=[])
        server.add_post("our own post about a widget", handle="brand.test")  # the brand itself
        other_post = server.add_post("unrelated thoughts", handle="harry.test")
        for subject in (brand_post, other_post):  # a repost of the brand's post, and of someone else's
            server.add_raw_event(
                {
                    "did": "did:plc:reposter",
                    "kind": "commit",
                    "commit": {
                        "operation": "create",
                        "collection": "app.bsky.feed.repost",
                        "rkey": f"3repost{len(subject['uri'])}{subject['uri'][-4:]}",
                        "record": {
                            "$type": "app.bsky.feed.repost",
                            "subject": {"uri": subject["uri"], "cid": "bafyreitest"},
                            "createdAt": "2024-05-01T12:00:00.000Z",
                        },
                    },
                }
            )
        server.add_raw_event({"did": "did:plc:x", "kind": "identity", "identity": {"did": "did:plc:x"}})
        server.add_raw_event(
            {
                "did": "did:plc:x",
                "kind": "commit",
                "commit": {"operation": "delete", "collection": "app.bsky.feed.post"},
            }
        )
        last = server.add_post("a last widget post", handle="gina.test")
        wait_until(lambda: len(run.delivered) == 6)
        time.sleep(0.1)
    assert run.texts() == [
        "@brand.test my parcel is lost",
        "hey @BRAND.test anyone there?",
        "nice",
        "this widget broke",
        "",  # the repost of the brand's post, folded into it as engagement by the noise rules
        "a last widget post",
    ]
    repost = run.delivered[4]
    assert "/app.bsky.feed.repost/" in repost.external_id
    assert run.delivered[-1].external_id == last["uri"]
    assert json.loads(json.dumps(run.delivered[0].payload)) == run.delivered[0].payload
    assert server.jetstream.connects[0]["wantedCollections"] == ["app.bsky.feed.post", "app.bsky.feed.repost"]
    # The cursor covers every event read, not only the delivered ones, and is reported on stop.
    assert run.cursors[-1] == server.events[-1]["time_us"] == run.consumer.cursor


def test_a_disconnect_mid_stream_resumes_from_the_rewound_cursor_without_loss_or_doubles(
    server: FakeBluesky,
) -> None:
    with Consumer(server) as run:
        wait_until(lambda: run.consumer.connects == 1)
        server.disconnect_jetstream_after(2)
        posts = [server.add_post(f"widget problem {n}", handle="alice.test") for n in range(5)]
        wait_until(lambda: run.consumer.connects >= 2)
        server.disconnect_jetstream()  # and once more, with the client idle
        wait_until(lambda: run.consumer.connects >= 3)
        more = [server.add_post(f"widget problem {n}", handle="bob.test") for n in range(5, 7)]
        wait_until(lambda: len(run.delivered) >= 7)
        time.sleep(0.2)
    assert ids(run.delivered) == [p["uri"] for p in posts + more]
    # Each reconnect asked for the cursor it had reached, rewound by 5 seconds.
    second = int(server.jetstream.connects[1]["cursor"][0])
    second_event = next(e for e in server.events if e["commit"]["record"]["text"] == "widget problem 1")
    assert second == second_event["time_us"] - 5_000_000


def test_a_restart_resumes_from_the_stored_cursor(server: FakeBluesky) -> None:
    did = server.account("alice.test")["did"]
    base = 1_714_564_800_000_000
    for n in range(3):
        server.add_raw_event(post_event(did, f"widget {n}", base + n * 10_000_000))
    with Consumer(server, cursor=base - 1) as first:
        wait_until(lambda: len(first.delivered) == 3)
    stored = first.cursors[-1]
    assert stored == base + 20_000_000
    for n in range(3, 5):
        server.add_raw_event(post_event(did, f"widget {n}", base + n * 10_000_000))
    with Consumer(server, cursor=stored) as second:
        wait_until(lambda: len(second.delivered) == 3)
        time.sleep(0.1)
    # The rewind replays the last 5 s: "widget 2" comes again in the new process; the worker's
    # (account, external id) key stores it once. Nothing older, nothing lost.
    assert second.texts() == ["widget 2", "widget 3", "widget 4"]
    assert server.jetstream.connects[-1]["cursor"] == [str(stored - 5_000_000)]


def test_a_failing_on_post_is_retried_and_the_cursor_waits_for_it(server: FakeBluesky) -> None:
    calls: list[str] = []
    stop = threading.Event()

    def on_post(post: RawPost) -> None:
        calls.append(post.external_id)
        if len(calls) == 1:
            raise RuntimeError("database is locked")

    consumer = JetstreamConsumer(
        server.jetstream_url,
        on_post=on_post,
        post_filter=PostFilter(keywords=["widget"]),
        stop=stop,
        cursor=1,
        allow_private=True,
        backoff_initial=0.02,
        poll_timeout=0.05,
    )
    post = server.add_post("widget", handle="alice.test")
    thread = threading.Thread(target=consumer.run, daemon=True)
    thread.start()
    wait_until(lambda: len(calls) == 2)
    stop.set()
    thread.join(timeout=5)
    assert calls == [post["uri"], post["uri"]]
    assert consumer.cursor == server.events[-1]["time_us"]


def test_the_consumer_handles_hostile_frames_and_refuses_private_addresses() -> None:
    delivered: list[RawPost] = []
    consumer = JetstreamConsumer("ws://127.0.0.1:9/subscribe", on_post=delivered.append, match=lambda d, r: True)
    for frame in ["not json", "[1]", '{"time_us": "soon"}', '{"time_us": 5, "kind": "commit", "commit": null}']:
        assert consumer.handle_frame(frame) is None
    bad = post_event("did:plc:abc", "x", 10)
    bad["commit"]["rkey"] = "../../etc"
    assert consumer.handle_frame(json.dumps(bad)) is None
    good = post_event("did:plc:abc", "x", 11)
    assert consumer.handle_frame(json.dumps(good)) is not None
    assert consumer.handle_frame(json.dumps(good)) is None  # the same post again: dropped
    assert len(delivered) == 1 and consumer.cursor == 11
    assert "cursor=0" in consumer.subscribe_url()  # rewound, never negative
    with pytest.raises(BlockedAddress):
        consumer.run()


def test_post_filter() -> None:
    brand = "did:plc:brand"
    f = PostFilter(brand_did=brand, brand_handle="@Brand.Test", keywords=["refund", "#help"])
    mention = {"$type": "app.bsky.richtext.facet#mention", "did": brand}
    assert f.matches("did:plc:a", {"text": "hi", "facets": [{"features": [mention]}]})
    assert f.matches("did:plc:a", {"text": "hi @brand.test."})
    assert not f.matches("did:plc:a", {"text": "hi @brand.test.more"})
    assert not f.matches("did:plc:a", {"text": "mail brand.test"})
    assert f.matches("did:plc:a", {"text": "", "reply": {"root": {"uri": f"at://{brand}/app.bsky.feed.post/1"}}})
    assert f.matches("did:plc:a", {"text": "", "embed": {"record": {"uri": f"at://{brand}/app.bsky.feed.post/1"}}})
    assert f.matches("did:plc:a", {"text": "I want a REFUND!"})
    assert f.matches("did:plc:a", {"text": "please", "tags": ["help"]})
    assert not f.matches("did:plc:a", {"text": "refunds"})
    assert not f.matches(brand, {"text": "refund policy @brand.test"})
    assert not f.matches("did:plc:a", {"text": None, "facets": "nonsense", "reply": [1], "embed": "x"})


# -- fetch ---------------------------------------------------------------------------------------


def test_fetch_reads_notifications_search_and_direct_messages(server: FakeBluesky) -> None:
    mention = server.add_post("@brand.test where is my order?", handle="alice.test", followers_count=85)
    keyword = server.add_post("Is the Acme widget any good?", handle="bob.test")
    server.add_post("our widget launch", handle="brand.test")  # the brand's own post
    server.add_post("nothing to see", handle="carol.test")
    dm = server.add_chat_message("my account is locked", handle="dave.test")

    connector = connect(server, keywords=["widget"])
    result = connector.fetch({})

    assert ids(result.posts)[:2] == [mention["uri"], keyword["uri"]]
    chat_id = ids(result.posts)[2]
    assert chat_id.startswith("chat:") and chat_id.endswith(dm["id"])
    assert set(result.cursor) == {"notifications", "search:widget", "chat"}
    assert result.cursor["notifications"]["mark"]["uris"] == [mention["uri"]]
    assert result.more is False
    assert result.posts[0].payload["profile"]["followersCount"] == 85
    for post in result.posts:
        assert json.loads(json.dumps(post.payload)) == post.payload

    # Only what is new comes next time; search is asked `since` the mark.
    assert connector.fetch(result.cursor).posts == []
    newer = server.add_post("@brand.test hello again", handle="alice.test")
    other = server.add_post("widget follow-up", handle="erin.test")
    dm2 = server.add_chat_message("still locked", handle="dave.test")
    second = connect(server, keywords=["widget"]).fetch(result.cursor)
    assert ids(second.posts) == [newer["uri"], other["uri"], f"chat:{chat_id.split(':')[1]}:{dm2['id']}"]
    assert server.xrpc_requests("app.bsky.feed.searchPosts")[-1]["query"]["since"]


def test_a_busy_source_is_drained_over_several_fetches_without_gaps(server: FakeBluesky) -> None:
    server.add_post("@brand.test first", handle="alice.test")
    connector = connect(server, backfill_limit=2, chat=False, fetch_profiles=False)
    cursor = connector.fetch({}).cursor
    burst = [server.add_post(f"@brand.test burst {n}", handle="bob.test") for n in range(5)]

    seen: list[str] = []
    rounds = 0
    more = True
    while more:
        result = connector.fetch(cursor)
        seen += ids(result.posts)
        cursor, more = result.cursor, result.more
        rounds += 1
        if more:
            late = server.add_post("@brand.test arrived while draining", handle="carol.test") if rounds == 1 else None
            if late:
                burst.append(late)
    seen += ids(connector.fetch(cursor).posts)
    assert sorted(seen) == sorted(p["uri"] for p in burst)
    assert len(seen) == len(set(seen))
    assert rounds == 3


def test_a_first_fetch_backfills_only_the_limit(server: FakeBluesky) -> None:
    posts = [server.add_post(f"@brand.test old {n}", handle="alice.test") for n in range(4)]
    result = connect(server, backfill_limit=2, chat=False).fetch({})
    assert ids(result.posts) == [posts[3]["uri"], posts[2]["uri"]]
    assert result.more is False


# -- normalize -----------------------------------------------------------------------------------


def test_normalize_reads_each_source(server: FakeBluesky) -> None:
    root = server.add_post("@brand.test the app crashes", handle="alice.test", langs=["de"])
    reply = server.add_post("@brand.test and again", handle="alice.test", reply_to=root["uri"])
    server.add_chat_message("private details", handle="bob.test")
    connector = connect(server)
    result = connector.fetch({})
    posts = {p.external_id: connector.normalize(p.payload) for p in result.posts}

    first = posts[root["uri"]]
    assert first.author_handle == "alice.test"
    assert first.author_external_id == server.account("alice.test")["did"]
    assert first.language == "de"
    assert first.url == f"https://bsky.app/profile/alice.test/post/{root['uri'].rsplit('/', 1)[1]}"
    assert first.created_at.tzinfo is not None
    assert not first.is_private and first.in_reply_to_external_id is None
    assert posts[reply["uri"]].in_reply_to_external_id == root["uri"]
    private = [p for p in posts.values() if p.is_private]
    assert len(private) == 1 and private[0].author_handle == "bob.test" and private[0].text == "private details"

    event = post_event(server.account("carol.test")["did"], "from the stream", 1_714_564_800_000_000)
    streamed = connector.normalize({"source": "jetstream", "item": event})
    assert streamed.author_handle == event["did"]  # Jetstream has no handles
    assert streamed.external_id == f"at://{event['did']}/app.bsky.feed.post/{event['commit']['rkey']}"
    with_profile = connector.normalize({"source": "jetstream", "item": event, "profile": server.account("carol.test")})
    assert with_profile.author_handle == "carol.test"


def test_normalize_hostile_text(server: FakeBluesky) -> None:
    hostile = "<script>alert(1)</script>\x00\x07 \u202eevil\n" + "x" * 20_000
    post = server.add_post(hostile, handle="alice.test", facets=[])
    view = server.post_view(post["uri"])
    view["author"]["handle"] = "evil/../../x?y"
    result = connect(server).normalize({"source": "search", "item": view})
    assert result.text.startswith("<script>alert(1)</script> \u202eevil\n")  # kept as text: the inbox escapes
    assert "\x00" not in result.text and "\x07" not in result.text
    assert len(result.text) <= 10_000
    assert result.author_handle == view["author"]["did"]  # an invalid handle is not used
    assert "evil" not in result.url


@pytest.mark.parametrize(
    "payload",
    [
        [],
        {"source": "carrier-pigeon", "item": {}},
        {"source": "search", "item": "post"},
        {"source": "search", "item": {"uri": "https://example.com/x"}},
        {"source": "chat", "item": {"convoId": "c", "message": {"id": "m", "text": 5}}},
        {"source": "jetstream", "item": {"kind": "identity", "did": "did:plc:x"}},
    ],
)
def test_normalize_rejects_malformed_payloads(server: FakeBluesky, payload: Any) -> None:
    with pytest.raises(MalformedEvent):
        connect(server).normalize(payload)


def test_normalize_rejects_broken_fields(server: FakeBluesky) -> None:
    post = server.add_post("hello", handle="alice.test")
    connector = connect(server)
    for mutate in (
        lambda v: v["record"].pop("text"),
        lambda v: v["author"].update(did="did:plc:someoneelse"),
        lambda v: (v["record"].update(createdAt="yesterday"), v.update(indexedAt=None)),
        lambda v: v["record"].update(reply={"parent": {"uri": "javascript:alert(1)"}}),
    ):
        view = server.post_view(post["uri"])
        mutate(view)
        with pytest.raises(MalformedEvent):
            connector.normalize({"source": "search", "item": view})


# -- publish -------------------------------------------------------------------------------------


def test_a_reply_to_a_reply_keeps_the_thread_root(server: FakeBluesky) -> None:
    root = server.add_post("@brand.test my order never came", handle="alice.test")
    connector = connect(server)
    first = connector.publish(Reply(text="Sorry! DM us?", idempotency_key="r1", in_reply_to_external_id=root["uri"]))
    follow_up = server.add_post("ok, done", handle="alice.test", reply_to=first.external_id)
    connector.publish(Reply(text="Thanks, on it.", idempotency_key="r2", in_reply_to_external_id=follow_up["uri"]))

    one, two = (p["value"]["reply"] for p in server.posted)
    assert one == {"root": {"uri": root["uri"], "cid": root["cid"]}, "parent": {"uri": root["uri"], "cid": root["cid"]}}
    assert two == {
        "root": {"uri": root["uri"], "cid": root["cid"]},
        "parent": {"uri": follow_up["uri"], "cid": follow_up["cid"]},
    }
    assert first.external_id == server.posted[0]["uri"]
    assert first.url.startswith("https://bsky.app/profile/brand.test/post/")


def test_a_retry_with_the_same_idempotency_key_writes_once(server: FakeBluesky) -> None:
    post = server.add_post("@brand.test help", handle="alice.test")
    reply = Reply(text="On it!", idempotency_key="outbox-42", in_reply_to_external_id=post["uri"])
    first = connect(server).publish(reply)
    again = connect(server).publish(reply)  # e.g. the worker died before recording the first answer
    assert again.external_id == first.external_id
    assert len(server.posted) == 1
    assert first.external_id.endswith("/" + rkey_for("outbox-42"))
    assert [r["nsid"] for r in server.xrpc_requests()][-2:] == [
        "com.atproto.repo.createRecord",
        "com.atproto.repo.getRecord",
    ]


def test_a_server_that_answers_a_duplicate_with_400_is_handled_too() -> None:
    forget_sessions()
    with FakeBluesky(duplicate_status=400) as server:
        post = server.add_post("@brand.test help", handle="alice.test")
        reply = Reply(text="On it!", idempotency_key="k", in_reply_to_external_id=post["uri"])
        assert connect(server).publish(reply) == connect(server).publish(reply)
        assert len(server.posted) == 1


def test_rkeys_are_tids() -> None:
    key = rkey_for("some outbox key")
    assert key == rkey_for("some outbox key") != rkey_for("another key")
    assert len(key) == 13 and key[0] in "234567abcdefghij"
    assert rkey_for("3kr23nddhnwxb") == "3kr23nddhnwxb"  # already a TID


def test_a_reply_to_a_deleted_post_fails_only_that_reply(server: FakeBluesky) -> None:
    missing = f"at://{server.account('alice.test')['did']}/app.bsky.feed.post/3kr23nddhnwxb"
    with pytest.raises(PermanentError) as caught:
        connect(server).publish(Reply(text="hi", idempotency_key="x", in_reply_to_external_id=missing))
    assert caught.value.affects_account is False


def test_a_private_reply_is_a_chat_message(server: FakeBluesky) -> None:
    server.account("alice.test")
    connector = connect(server)
    sent = connector.publish(
        Reply(text="Your order number?", idempotency_key="p1", private=True, to_handle="alice.test")
    )
    assert len(server.sent_messages) == 1
    message = server.sent_messages[0]
    assert message["text"] == "Your order number?"
    assert sent.external_id == f"chat:{message['convoId']}:{message['id']}"
    assert set(server.convos[message["convoId"]]["members"]) == {
        server.brand["did"],
        server.account("alice.test")["did"],
    }
    assert all(
        r["headers"].get("atproto-proxy") == "did:web:api.bsky.chat#bsky_chat"
        for r in server.xrpc_requests()
        if r["nsid"].startswith("chat.")
    )
    # A retry finds the message the first attempt sent.
    again = connector.publish(
        Reply(text="Your order number?", idempotency_key="p1", private=True, to_handle="alice.test")
    )
    assert again.external_id == sent.external_id and len(server.sent_messages) == 1

    # Answering a direct message goes to its conversation.
    incoming = server.add_chat_message("12345", handle="alice.test")
    in_reply_to = f"chat:{message['convoId']}:{incoming['id']}"
    connector.publish(Reply(text="Thanks!", idempotency_key="p2", private=True, in_reply_to_external_id=in_reply_to))
    assert server.sent_messages[-1]["convoId"] == message["convoId"]


def test_a_customer_who_refuses_messages_fails_only_that_reply(server: FakeBluesky) -> None:
    server.account("quiet.test", accepts_chat=False)
    with pytest.raises(PermanentError) as caught:
        connect(server).publish(Reply(text="hi", idempotency_key="q", private=True, to_handle="quiet.test"))
    assert caught.value.affects_account is False


# -- errors --------------------------------------------------------------------------------------


def test_rate_limit_is_transient_with_retry_after(server: FakeBluesky) -> None:
    connector = connect(server, chat=False)
    connector.fetch({})
    server.fail_next(status=429, reset_in=30)
    with pytest.raises(RateLimited) as caught:
        connector.fetch({})
    assert isinstance(caught.value, TransientError)
    assert 25 <= (caught.value.retry_after or 0) <= 31


def test_server_errors_are_transient(server: FakeBluesky) -> None:
    connector = connect(server)
    connector.fetch({})
    server.fail_next(status=503)
    with pytest.raises(TransientError):
        connector.fetch({})


def test_expired_tokens_log_in_again(server: FakeBluesky) -> None:
    connector = connect(server, chat=False)
    connector.fetch({})
    assert connect(server, chat=False).fetch({}) is not None
    assert server.sessions_created == 1  # the second connector reused the session
    server.expire_tokens()
    server.add_post("@brand.test hi", handle="alice.test")
    assert len(connector.fetch({}).posts) == 1
    assert server.sessions_created == 2


def test_an_expired_session_before_a_chat_call_logs_in_again(server: FakeBluesky) -> None:
    incoming = server.add_chat_message("hello?", handle="alice.test")
    convo_id = next(iter(server.convos))
    connector = connect(server)
    connector.fetch({})
    server.expire_tokens()
    in_reply_to = f"chat:{convo_id}:{incoming['id']}"
    connector.publish(Reply(text="Hi!", idempotency_key="c1", private=True, in_reply_to_external_id=in_reply_to))
    assert len(server.sent_messages) == 1 and server.sessions_created == 2


def test_an_app_password_without_dm_access_skips_chat_only(server: FakeBluesky) -> None:
    server.chat_allowed = False
    mention = server.add_post("@brand.test hi", handle="alice.test")
    assert ids(connect(server).fetch({}).posts) == [mention["uri"]]
    asked = len(server.xrpc_requests("chat.bsky.convo.getLog"))
    assert ids(connect(server).fetch({}).posts) == [mention["uri"]]
    assert len(server.xrpc_requests("chat.bsky.convo.getLog")) == asked  # not asked again for a while
    assert server.sessions_created == 1
    with pytest.raises(PermanentError) as caught:
        connect(server).publish(Reply(text="hi", idempotency_key="d", private=True, to_handle="alice.test"))
    assert caught.value.affects_account is False


def test_a_revoked_app_password_is_permanent(server: FakeBluesky) -> None:
    connector = connect(server)
    connector.fetch({})
    server.revoke_session()
    with pytest.raises(PermanentError) as caught:
        connector.fetch({})
    assert caught.value.affects_account is True
    with pytest.raises(PermanentError):
        connect(server, password="wrong").fetch({})


def test_a_taken_down_account_is_permanent(server: FakeBluesky) -> None:
    server.take_down()
    with pytest.raises(PermanentError) as caught:
        connect(server).fetch({})
    assert caught.value.affects_account is True


def test_private_addresses_are_refused_unless_allowed(server: FakeBluesky) -> None:
    with pytest.raises(PermanentError) as caught:
        connect(server, allow_private=False).fetch({})
    assert "private" in str(caught.value)
    assert server.requests == []


def test_missing_credentials_are_a_configuration_error() -> None:
    connector = BlueskyConnector(AccountConfig(network="bluesky", handle="brand.test"))
    with pytest.raises(PermanentError):
        connector.fetch({})


def test_the_connector_builds_its_jetstream_consumer(server: FakeBluesky) -> None:
    connector = connect(server, keywords=["widget"], jetstream_url=server.jetstream_url)
    consumer = connector.jetstream(lambda post: None, cursor=10_000_000)
    assert consumer.url == server.jetstream_url
    assert consumer.match(server.account("alice.test")["did"], {"text": "@brand.test hi"})
    assert consumer.match(server.account("alice.test")["did"], {"text": "a widget"})
    assert not consumer.match(server.brand["did"], {"text": "a widget"})
    assert consumer.subscribe_url().endswith("cursor=5000000")
