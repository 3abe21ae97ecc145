"""The Meta connector: webhook splitting, normalizing, polling and publishing against FakeGraph."""

from __future__ import annotations

import datetime as dt
import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from hubbub.connectors.base import AccountConfig, MalformedEvent, PermanentError, Reply, TransientError
from hubbub.connectors.meta import MetaConnector, RateLimited, split_webhook
from hubbub.lib.webhooks import verify_hub_signature
from hubbub.testing.fake_graph import IG_USER_ID, PAGE_ID, FakeGraph, sign

FIXTURES = Path(__file__).parent / "fixtures"
HOUR = 3600
DAY = 24 * HOUR


def fixture(name: str) -> dict[str, Any]:
    return json.loads((FIXTURES / name).read_text())


@pytest.fixture
def graph() -> Iterator[FakeGraph]:
    with FakeGraph() as fake:
        yield fake


def connect(graph: FakeGraph | None = None, token: str | None = None, credentials: dict | None = None, **settings):
    settings.setdefault("allow_private", True)
    settings.setdefault("page_id", PAGE_ID)
    settings.setdefault("ig_user_id", IG_USER_ID)
    creds = {"access_token": graph.access_token if token is None and graph else (token or "t")}
    creds.update(credentials or {})
    return MetaConnector(
        AccountConfig(
            network="meta",
            handle="brand",
            base_url=f"{graph.url}/v25.0" if graph else "",
            credentials=creds,
            settings=settings,
        )
    )


def ids(result) -> list[str]:
    return [post.external_id for post in result.posts]


def reply(target: str, text: str = "We're on it!", **fields) -> Reply:
    return Reply(text=text, idempotency_key="k-" + target[-8:], in_reply_to_external_id=target, **fields)


# -- split_webhook ----------------------------------------------------------------------------


def test_split_page_feed_comments() -> None:
    result = split_webhook(fixture("page_feed_comment.json"))
    assert [p.external_id for p in result.posts] == [
        "998877665544_1122334455667788",
        "998877665544_1122334455667799",
    ]
    # The Page's own reply, a reaction and a removal are not posts and are not dead letters.
    assert result.skipped == []
    assert result.ignored == 3
    first = result.posts[0].payload
    assert first["kind"] == "page_comment" and first["via"] == "webhook"
    assert first["object"] == "page" and first["entry_id"] == PAGE_ID and first["entry_time"] == 1714564800
    assert first["change"]["value"]["comment_id"] == first["change"]["value"]["comment_id"]
    for post in result.posts:
        assert json.loads(json.dumps(post.payload)) == post.payload


def test_split_page_post_and_its_edit_is_one_post() -> None:
    posts, skipped = split_webhook(fixture("page_feed_post.json"))
    assert [p.external_id for p in posts] == ["1061234567890_555666777888"]
    assert posts[0].payload["kind"] == "page_post"
    assert skipped == []


def test_split_messenger_keeps_messages_and_drops_echoes_and_receipts() -> None:
    result = split_webhook(fixture("messenger_messages.json"))
    assert [p.payload["kind"] for p in result.posts] == ["messenger_message", "messenger_message"]
    assert result.posts[0].external_id.startswith("m_AG5H")
    assert result.ignored == 3  # echo, delivery, read
    assert result.skipped == []


def test_split_instagram_comments_and_messages() -> None:
    comments = split_webhook(fixture("instagram_comment.json"))
    assert [p.external_id for p in comments.posts] == ["17865799348089039", "17865799348089040"]
    assert {p.payload["kind"] for p in comments.posts} == {"ig_comment"}
    assert comments.posts[0].payload["object"] == "instagram"
    messages = split_webhook(fixture("instagram_message.json"))
    assert len(messages.posts) == 1 and messages.posts[0].payload["kind"] == "ig_message"
    assert messages.ignored == 1  # the unsent (is_deleted) message


def test_unknown_events_are_reported_for_the_dead_letter_view() -> None:
    result = split_webhook(fixture("unknown_events.json"))
    assert result.posts == []
    reasons = [reason for reason, _ in result.skipped]
    assert len(reasons) == 5
    assert "unsupported page field 'leadgen'" in reasons
    assert "unsupported feed item 'hologram'" in reasons
    assert "unsupported feed verb 'teleport'" in reasons
    assert "a feed comment without its id" in reasons
    assert "unsupported messaging event" in reasons
    for _, fragment in result.skipped:
        json.dumps(fragment)
    assert split_webhook({"object": "user", "entry": []}).skipped[0][0] == "unsupported webhook object 'user'"


@pytest.mark.parametrize(
    "body",
    [
        [],
        "page",
        {"object": "page"},
        {"object": "page", "entry": {"id": "1"}},
        {"object": "page", "entry": ["x"]},
        {"object": "page", "entry": [{"time": 1, "changes": []}]},
        {"object": "page", "entry": [{"id": "1", "changes": {"field": "feed"}}]},
        {"object": "page", "entry": [{"id": "1", "messaging": ["x"]}]},
    ],
)
def test_malformed_deliveries_raise(body: Any) -> None:
    with pytest.raises(MalformedEvent):
        split_webhook(body)


def test_a_huge_unknown_fragment_is_truncated() -> None:
    body = {"object": "page", "entry": [{"id": "1", "changes": [{"field": "x", "value": {"a": "y" * 10000}}]}]}
    ((_, fragment),) = split_webhook(body).skipped
    assert "truncated" in fragment and len(fragment["truncated"]) <= 4000


# -- normalize --------------------------------------------------------------------------------


def test_normalize_page_comments_and_replies() -> None:
    connector = connect()
    top, reply_post = (connector.normalize(p.payload) for p in split_webhook(fixture("page_feed_comment.json")).posts)
    assert top.external_id == "998877665544_1122334455667788"
    assert top.author_handle == "6543210987654321" and top.author_name == "Alice Example"
    assert top.text == "My order #4521 arrived broken. Who do I talk to?"
    assert top.in_reply_to_external_id == "1061234567890_998877665544"
    assert top.created_at == dt.datetime(2024, 5, 1, 11, 59, 58, tzinfo=dt.UTC)
    assert not top.is_private and not top.from_brand
    assert top.url == "https://www.facebook.com/998877665544_1122334455667788"
    assert reply_post.in_reply_to_external_id == "998877665544_1122334455667788"


def test_normalize_page_post() -> None:
    post = connect().normalize(split_webhook(fixture("page_feed_post.json")).posts[0].payload)
    assert post.text.startswith("Your app logs me out") and post.in_reply_to_external_id is None


def test_normalize_messenger_messages() -> None:
    first, second = (connect().normalize(p.payload) for p in split_webhook(fixture("messenger_messages.json")).posts)
    assert first.is_private and not first.from_brand
    assert first.author_handle == first.author_external_id == "24681357913579246"
    assert first.created_at == dt.datetime.fromtimestamp(1714572000.001, dt.UTC)
    assert second.text == "[image attachment]"
    assert second.in_reply_to_external_id == first.external_id


def test_normalize_instagram_comment_and_message() -> None:
    connector = connect()
    top, child = (connector.normalize(p.payload) for p in split_webhook(fixture("instagram_comment.json")).posts)
    assert top.author_handle == "carol.example" and top.author_external_id == "232323232323232"
    assert top.in_reply_to_external_id == "17890012345678901"  # the media
    assert child.in_reply_to_external_id == "17865799348089039"  # the parent comment
    # The comments webhook has no time of its own: the entry time stands in.
    assert top.created_at == dt.datetime.fromtimestamp(1714575600, dt.UTC)
    dm = connector.normalize(split_webhook(fixture("instagram_message.json")).posts[0].payload)
    assert dm.is_private and dm.author_handle == "1029384756473829" and not dm.from_brand


def test_normalize_marks_the_brand() -> None:
    body = fixture("messenger_messages.json")
    echo = {"kind": "messenger_message", "via": "webhook", "object": "page", "entry_id": PAGE_ID}
    echo["messaging"] = body["entry"][0]["messaging"][2]
    assert connect().normalize(echo).from_brand
    body = fixture("page_feed_comment.json")
    own = {"kind": "page_comment", "via": "webhook", "object": "page", "entry_id": PAGE_ID}
    own["change"] = body["entry"][0]["changes"][2]
    assert connect().normalize(own).from_brand


def test_normalize_hostile_text() -> None:
    body = fixture("page_feed_comment.json")
    value = body["entry"][0]["changes"][0]["value"]
    value["message"] = "<script>alert(1)</script>\x00 \u202eevil\r\nline two\x07"
    value["from"]["name"] = "<img src=x onerror=alert(1)>"
    post = connect().normalize(split_webhook(body).posts[0].payload)
    # Kept as plain text (the inbox escapes it); NUL and control characters are gone.
    assert post.text == "<script>alert(1)</script> \u202eevil\nline two"
    assert post.author_name == "<img src=x onerror=alert(1)>"


@pytest.mark.parametrize(
    "payload",
    [
        None,
        {},
        {"kind": "page_comment", "via": "webhook"},
        {"kind": "page_comment", "via": "webhook", "change": {"field": "feed", "value": {"comment_id": "1_2"}}},
        {"kind": "page_comment", "via": "webhook", "change": {"field": "feed", "value": {"comment_id": ["x"]}}},
        {"kind": "messenger_message", "via": "webhook", "messaging": {"sender": {"id": "1"}, "message": {}}},
        {"kind": "messenger_message", "via": "webhook", "messaging": {"message": {"mid": "m_1"}, "timestamp": 1}},
        {"kind": "ig_comment", "via": "webhook", "change": {"field": "comments", "value": {"id": "1"}}},
        {"kind": "page_post", "via": "graph", "node": {"id": "1_2", "created_time": "yesterday"}},
        {"kind": "page_post", "via": "graph"},
        {"kind": "telepathy", "via": "graph", "node": {}},
    ],
)
def test_normalize_refuses_malformed_payloads(payload: Any) -> None:
    with pytest.raises(MalformedEvent):
        connect().normalize(payload)


# -- fetch ------------------------------------------------------------------------------------


def test_fetch_backfills_posts_comments_and_messages(graph: FakeGraph) -> None:
    own = graph.add_post("Our new store opens Saturday", author=graph.page)
    visitor = graph.add_post("Where is my refund??", author=graph.user("Erin"))
    question = graph.add_comment(own["id"], "Will there be parking?", author=graph.user("Alice"))
    answer = graph.add_comment(question["id"], "Yes, 40 spaces", author=graph.page)
    follow_up = graph.add_comment(question["id"], "Great, thanks", author=graph.user("Alice"))
    dm = graph.add_message("my order #1234 hasn't arrived", author=graph.user("Bob"))
    ig_dm = graph.add_message("do you ship to Canada?", author=graph.user("Cleo"), platform="instagram")
    graph.add_message("reply from us", author=graph.page)  # a Page message with no customer: not a customer's

    connector = connect(graph)
    result = connector.fetch({})

    assert set(ids(result)) == {visitor["id"], question["id"], follow_up["id"], dm["id"], ig_dm["id"]}
    assert answer["id"] not in ids(result) and own["id"] not in ids(result)
    assert result.more is False
    json.dumps(result.cursor)
    assert set(result.cursor["watch"]) == {own["id"], visitor["id"]}
    posts = {p.external_id: connector.normalize(p.payload) for p in result.posts}
    assert posts[follow_up["id"]].in_reply_to_external_id == question["id"]
    assert posts[question["id"]].in_reply_to_external_id == own["id"]
    assert posts[dm["id"]].is_private and posts[dm["id"]].author_name == "Bob"
    assert posts[ig_dm["id"]].is_private and posts[ig_dm["id"]].author_name == "cleo"
    assert posts[visitor["id"]].url.startswith("https://www.facebook.com/")

    # Nothing new: nothing returned.
    again = connector.fetch(result.cursor)
    assert again.posts == [] and again.more is False


def test_the_same_comment_from_webhook_and_poll_has_one_external_id(graph: FakeGraph) -> None:
    post = graph.add_post("launch", author=graph.page)
    comment = graph.add_comment(post["id"], "love it")
    from_hook = split_webhook(graph.feed_comment_webhook(comment)).posts[0]
    from_poll = next(p for p in connect(graph).fetch({}).posts if p.payload["kind"] == "page_comment")
    assert from_hook.external_id == from_poll.external_id == comment["id"]
    connector = connect(graph)
    assert connector.normalize(from_hook.payload).text == connector.normalize(from_poll.payload).text


def drain(graph: FakeGraph, cursor: dict, limit: int, rounds: int = 30) -> tuple[list[str], dict]:
    """Fetch until nothing more, rebuilding the connector each time as a restarted worker would."""
    seen: list[str] = []
    for _ in range(rounds):
        result = connect(graph, backfill_limit=limit).fetch(json.loads(json.dumps(cursor)))
        seen.extend(ids(result))
        cursor = result.cursor
        if not result.more:
            return seen, cursor
    raise AssertionError("fetch never finished")


def test_comments_page_and_resume_without_repeats_or_gaps(graph: FakeGraph) -> None:
    post = graph.add_post("big announcement", author=graph.page, created=time.time() - HOUR)
    _, cursor = drain(graph, {}, limit=3)
    stamp = int(time.time()) - 60
    # Eleven comments, several in the same second, more than three pages of the limit.
    added = [graph.add_comment(post["id"], f"comment {i}", created=stamp + i // 3)["id"] for i in range(11)]

    seen, cursor = drain(graph, cursor, limit=3)

    assert sorted(seen) == sorted(added) and len(seen) == len(set(seen))
    late = graph.add_comment(post["id"], "late one", created=stamp + 3)  # same second as earlier ones
    seen, _ = drain(graph, cursor, limit=3)
    assert seen == [late["id"]]


def test_feed_pages_and_resume_with_a_paging_cursor(graph: FakeGraph) -> None:
    _, cursor = drain(graph, {}, limit=2)
    stamp = int(time.time()) - 30
    added = [graph.add_post(f"visitor post {i}", created=stamp + i // 2)["id"] for i in range(7)]
    first = connect(graph, backfill_limit=2).fetch(cursor)
    assert first.more is True and "after" in first.cursor["feed"]
    # New posts arriving mid-window are picked up afterwards, not lost.
    newer = graph.add_post("arrived while paging")["id"]

    seen, cursor = drain(graph, first.cursor, limit=2)
    assert "after" not in cursor["feed"]
    # The window being read is finished first; the post that arrived meanwhile opens the next one.
    later, cursor = drain(graph, cursor, limit=2)

    everything = ids(first) + seen + later
    assert later == [newer]
    assert sorted(everything) == sorted([*added, newer]) and len(everything) == len(set(everything))


def test_an_expired_feed_cursor_rereads_the_window(graph: FakeGraph) -> None:
    _, cursor = drain(graph, {}, limit=2)
    added = [graph.add_post(f"p{i}")["id"] for i in range(5)]
    first = connect(graph, backfill_limit=2).fetch(cursor)
    graph.fail_next(code=100, subcode=33, path="/feed")  # Graph refuses the old cursor
    seen, _ = drain(graph, first.cursor, limit=2)
    assert set(ids(first) + seen) == set(added)


def test_a_first_fetch_backfills_only_the_limit(graph: FakeGraph) -> None:
    for i in range(6):
        graph.add_post(f"old {i}", created=time.time() - DAY + i)
    result = connect(graph, backfill_limit=4, messenger=False, instagram_messages=False).fetch({})
    assert len([p for p in result.posts if p.payload["kind"] == "page_post"]) == 4
    assert result.more is False
    assert connect(graph, backfill_limit=4).fetch(result.cursor).posts == []


def test_conversations_page_oldest_first_across_restarts(graph: FakeGraph) -> None:
    _, cursor = drain(graph, {}, limit=3)
    stamp = int(time.time())
    sent = []
    for i in range(8):
        sent.append(graph.add_message(f"msg {i}", author=graph.user(f"user{i % 3}"), created=stamp + i // 2)["id"])
    seen, cursor = drain(graph, cursor, limit=3)
    assert sorted(seen) == sorted(sent) and len(seen) == len(set(seen))
    assert drain(graph, cursor, limit=3)[0] == []


def test_a_deleted_post_stops_being_watched(graph: FakeGraph) -> None:
    post = graph.add_post("soon gone", author=graph.page)
    cursor = connect(graph).fetch({}).cursor
    del graph.posts[post["id"]]
    result = connect(graph).fetch(cursor)
    assert post["id"] not in result.cursor["watch"]


@pytest.mark.parametrize("code", [4, 17, 32, 613, 80001])
def test_throttling_codes_are_transient_with_meta_estimate(graph: FakeGraph, code: int) -> None:
    graph.fail_next(code=code, regain_minutes=7)
    with pytest.raises(RateLimited) as caught:
        connect(graph).fetch({})
    assert isinstance(caught.value, TransientError)
    assert caught.value.retry_after == 7 * 60


def test_http_429_without_estimate_has_a_default_wait(graph: FakeGraph) -> None:
    graph.fail_next(status=429, code=4)
    with pytest.raises(RateLimited) as caught:
        connect(graph).fetch({})
    assert caught.value.retry_after == 300


def test_usage_headers_near_the_limit_stop_further_calls(graph: FakeGraph) -> None:
    graph.set_usage(call_count=97)
    connector = connect(graph)
    with pytest.raises(RateLimited):
        connector.fetch({})
    assert len(graph.api_requests()) == 1  # the first answer said 97%: no second call was made


def test_throttling_mid_fetch_keeps_what_was_read(graph: FakeGraph) -> None:
    graph.add_post("first", created=time.time() - 10)
    graph.fail_next(code=32, path="/comments")
    graph.add_post("second", created=time.time() - 5)
    result = connect(graph).fetch({})
    assert len(result.posts) == 2 and result.more is False
    assert "feed" in result.cursor


def test_an_invalid_token_is_permanent(graph: FakeGraph) -> None:
    with pytest.raises(PermanentError) as caught:
        connect(graph, token="wrong").fetch({})
    assert caught.value.affects_account
    graph.revoke_token()
    with pytest.raises(PermanentError, match="190") as caught:
        connect(graph).fetch({})
    assert caught.value.affects_account


def test_permission_errors_are_permanent_for_the_account(graph: FakeGraph) -> None:
    graph.fail_next(code=10)
    with pytest.raises(PermanentError) as caught:
        connect(graph).fetch({})
    assert caught.value.affects_account
    graph.fail_next(code=200)
    with pytest.raises(PermanentError):
        connect(graph).fetch({})


@pytest.mark.parametrize("failure", [{"status": 502, "raw": True}, {"status": 500}, {"status": 503, "code": 2}])
def test_server_errors_are_transient(graph: FakeGraph, failure: dict) -> None:
    graph.fail_next(**failure)
    with pytest.raises(TransientError):
        connect(graph).fetch({})


def test_appsecret_proof_is_sent_when_configured() -> None:
    with FakeGraph(app_secret="s3cret") as graph:
        graph.add_post("hello")
        assert len(connect(graph, credentials={"app_secret": "s3cret"}).fetch({}).posts) == 1
        assert all(r["query"].get("appsecret_proof") for r in graph.api_requests())
        with pytest.raises(PermanentError):
            connect(graph).fetch({})  # without the proof the Graph API refuses


def test_the_token_is_not_put_in_urls(graph: FakeGraph) -> None:
    connect(graph).fetch({})
    assert all("access_token" not in r["query"] for r in graph.requests)
    assert all(r["headers"]["Authorization"] == f"Bearer {graph.access_token}" for r in graph.requests)


def test_private_addresses_are_refused_without_allow_private(graph: FakeGraph) -> None:
    connector = connect(graph, allow_private=False)
    with pytest.raises(PermanentError, match="refusing"):
        connector.fetch({})
    with pytest.raises(PermanentError, match="refusing"):
        connector.publish(reply("998877665544_1"))
    assert graph.requests == []


def test_misconfiguration_is_a_permanent_error() -> None:
    with pytest.raises(PermanentError, match="page_id"):
        MetaConnector(AccountConfig(network="meta", handle="x", credentials={"access_token": "t"})).fetch({})
    with pytest.raises(PermanentError, match="numeric"):
        connect(None, page_id="../admin").fetch({})


# -- publish ----------------------------------------------------------------------------------


def test_public_reply_to_a_comment_and_no_double_publish(graph: FakeGraph) -> None:
    post = graph.add_post("launch", author=graph.page)
    comment = graph.add_comment(post["id"], "is it vegan?")
    connector = connect(graph)

    first = connector.publish(reply(comment["id"], "Yes, fully vegan!"))
    # The response was lost; the worker retries with the same reply.
    second = connect(graph).publish(reply(comment["id"], "Yes, fully vegan!"))

    assert len(graph.posted) == 1
    assert first.external_id == second.external_id == graph.posted[0]["id"]
    assert graph.posted[0]["parent_id"] == comment["id"] and graph.posted[0]["from"]["id"] == PAGE_ID
    assert first.url == f"https://www.facebook.com/{first.external_id}"


def test_public_reply_to_a_visitor_post(graph: FakeGraph) -> None:
    post = graph.add_post("Where is my refund??")
    published = connect(graph).publish(reply(post["id"]))
    assert graph.posted[0]["post_id"] == post["id"] and graph.posted[0]["id"] == published.external_id


def test_reply_to_an_instagram_comment(graph: FakeGraph) -> None:
    comment = graph.add_ig_comment("back in stock?", username="carol")
    first = connect(graph).publish(reply(comment["id"], "Next week!"))
    again = connect(graph).publish(reply(comment["id"], "Next week!"))
    assert [p["kind"] for p in graph.posted] == ["ig_reply"]
    assert first.external_id == again.external_id


def test_private_reply_to_a_comment_once(graph: FakeGraph) -> None:
    post = graph.add_post("launch", author=graph.page)
    comment = graph.add_comment(post["id"], "my card was charged twice", author=graph.user("Alice"))

    first = connect(graph).publish(reply(comment["id"], "Sorry! Sending you a DM.", private=True))
    again = connect(graph).publish(reply(comment["id"], "Sorry! Sending you a DM.", private=True))

    assert len(graph.posted) == 1
    assert graph.posted[0]["recipient"] == {"comment_id": comment["id"]}
    assert first.external_id == again.external_id == graph.posted[0]["id"]
    # A different text is a second private reply, which Meta does not allow.
    with pytest.raises(PermanentError, match="one private reply") as caught:
        connect(graph).publish(reply(comment["id"], "Another thing", private=True))
    assert not caught.value.affects_account


def test_private_reply_to_an_old_comment_is_refused(graph: FakeGraph) -> None:
    post = graph.add_post("old", author=graph.page, created=time.time() - 10 * DAY)
    comment = graph.add_comment(post["id"], "hello?", created=time.time() - 8 * DAY)
    with pytest.raises(PermanentError, match="7 days") as caught:
        connect(graph).publish(reply(comment["id"], private=True))
    assert not caught.value.affects_account
    assert graph.posted == []


def test_messenger_reply_inside_the_window_once(graph: FakeGraph) -> None:
    customer = graph.user("Bob")
    message = graph.add_message("where's my order?", author=customer, created=time.time() - 2 * HOUR)

    first = connect(graph).publish(reply(message["id"], "It ships today.", to_handle=customer["id"]))
    again = connect(graph).publish(reply(message["id"], "It ships today."))  # no handle: asked of the API

    assert len(graph.posted) == 1
    sent = graph.api_requests("POST", "/messages")[0]
    body = json.loads(sent["body"])
    assert body["messaging_type"] == "RESPONSE" and body["recipient"] == {"id": customer["id"]}
    assert first.external_id == again.external_id == graph.posted[0]["id"]


def test_messenger_reply_outside_the_window_is_refused(graph: FakeGraph) -> None:
    customer = graph.user("Bob")
    message = graph.add_message("hello?", author=customer, created=time.time() - 30 * HOUR)
    with pytest.raises(PermanentError, match="24 hours") as caught:
        connect(graph).publish(reply(message["id"], to_handle=customer["id"]))
    assert not caught.value.affects_account
    assert graph.api_requests("POST") == []


def test_human_agent_tag_extends_the_window_to_seven_days(graph: FakeGraph) -> None:
    customer = graph.user("Bob")
    message = graph.add_message("hello?", author=customer, created=time.time() - 3 * DAY)
    connect(graph, human_agent_tag=True).publish(reply(message["id"], to_handle=customer["id"]))
    body = json.loads(graph.api_requests("POST", "/messages")[0]["body"])
    assert body["messaging_type"] == "MESSAGE_TAG" and body["tag"] == "HUMAN_AGENT"
    old = graph.add_message("anyone?", author=graph.user("Zed"), created=time.time() - 8 * DAY)
    with pytest.raises(PermanentError, match="7 days"):
        connect(graph, human_agent_tag=True).publish(reply(old["id"]))


def test_the_server_window_error_is_not_an_account_error(graph: FakeGraph) -> None:
    customer = graph.user("Bob")
    message = graph.add_message("hi", author=customer)
    graph.fail_next(code=10, subcode=2018278, path="/messages")
    with pytest.raises(PermanentError) as caught:
        connect(graph).publish(reply(message["id"], to_handle=customer["id"]))
    assert not caught.value.affects_account


def test_instagram_direct_reply(graph: FakeGraph) -> None:
    customer = graph.user("Cleo")
    message = graph.add_message("do you ship to Canada?", author=customer, platform="instagram")
    published = connect(graph).publish(reply(message["id"], "We do!", to_handle=customer["id"]))
    assert graph.posted[0]["from"]["id"] == IG_USER_ID and published.external_id == graph.posted[0]["id"]


def test_publish_errors(graph: FakeGraph) -> None:
    with pytest.raises(PermanentError) as caught:
        connect(graph).publish(reply("998877665544_404"))  # deleted comment: Graph error 100
    assert not caught.value.affects_account
    graph.fail_next(status=503, raw=True, path="/comments")
    post = graph.add_post("hi")
    with pytest.raises(TransientError):
        connect(graph).publish(reply(post["id"]))
    with pytest.raises(PermanentError):
        connect(graph).publish(Reply(text="x", idempotency_key="k"))


def test_target_kind_from_id_shape() -> None:
    connector = connect()
    assert connector.target_kind(f"{PAGE_ID}_123") == "page_post"
    assert connector.target_kind("998877_123") == "page_comment"
    assert connector.target_kind("17865799348089039") == "ig_comment"
    assert connector.target_kind("m_AG5Hz2Uq7tuw") == "messenger_message"
    assert connector.target_kind("aWdfZAG1faXRlbToxOklHTW") == "ig_message"
    assert connector.target_kind("17865799348089039", "ig_message") == "ig_message"


# -- the fake's webhook delivery --------------------------------------------------------------


def test_fake_webhook_bodies_are_signed_and_split(graph: FakeGraph) -> None:
    post = graph.add_post("launch", author=graph.page)
    comment = graph.add_comment(post["id"], "caf\u00e9 is closed?")
    for body in (
        graph.feed_comment_webhook(comment),
        graph.feed_post_webhook(graph.add_post("visitor")),
        graph.messaging_webhook(graph.add_message("hi")),
        graph.messaging_webhook(graph.add_message("hi", platform="instagram")),
        graph.ig_comment_webhook(graph.add_ig_comment("nice")),
    ):
        raw, headers = sign(body, "app-secret")
        verify_hub_signature(raw, headers["X-Hub-Signature-256"], "app-secret")
        result = split_webhook(json.loads(raw))
        assert len(result.posts) == 1 and not result.skipped
        connect(graph).normalize(result.posts[0].payload)
    assert b"\\u00e9" in sign(graph.feed_comment_webhook(comment), "s")[0]


def test_fake_deliver_posts_signed_bytes(graph: FakeGraph) -> None:
    from http.server import BaseHTTPRequestHandler

    from hubbub.testing.server import LocalHTTPServer

    received: list[tuple[bytes, str]] = []

    class Receiver(BaseHTTPRequestHandler):
        def do_POST(self) -> None:  # noqa: N802
            raw = self.rfile.read(int(self.headers["Content-Length"]))
            received.append((raw, self.headers["X-Hub-Signature-256"]))
            self.send_response(200)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, *args: Any) -> None:
            pass

    with LocalHTTPServer(Receiver) as endpoint:
        response = graph.deliver(endpoint.url + "/hooks/meta", graph.messaging_webhook(graph.add_message("x")), "sec")
    assert response.status_code == 200
    raw, header = received[0]
    verify_hub_signature(raw, header, "sec")
