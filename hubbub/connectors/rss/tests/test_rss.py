"""FeedConnector against a local fake feed server; no database, no internet."""

from __future__ import annotations

import datetime as dt
import email.utils
import io
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import feedparser
import pytest

from hubbub.connectors.base import (
    AccountConfig,
    MalformedEvent,
    PermanentError,
    Reply,
    TransientError,
)
from hubbub.connectors.rss import FeedConnector, FeedRejected
from hubbub.connectors.rss.connector import READ_ONLY_MESSAGE, entry_payload, external_id_for
from hubbub.testing.fake_feeds import FakeFeedServer

FIXTURES = Path(__file__).parent / "fixtures"
RSS = "application/rss+xml; charset=utf-8"
ATOM = "application/atom+xml"


def fixture(name: str) -> bytes:
    return (FIXTURES / name).read_bytes()


@pytest.fixture
def server() -> Iterator[FakeFeedServer]:
    with FakeFeedServer() as running:
        yield running


def connector(urls: list[str], **settings: Any) -> FeedConnector:
    settings.setdefault("allow_private", True)
    return FeedConnector(
        AccountConfig(network="rss", handle="Kettles Support", settings={"feed_urls": urls, **settings})
    )


def by_title(posts) -> dict[str, dict[str, Any]]:
    return {raw.payload["title"]: raw.payload for raw in posts}


def roundtrip(value: Any) -> Any:
    """What the worker stores and reads back."""
    return json.loads(json.dumps(value))


# -- formats -------------------------------------------------------------------------------------


def test_rss20_blog_feed(server: FakeFeedServer) -> None:
    server.set_feed("/feed", fixture("rss20.xml"), RSS)
    feeds = connector([server.url_for("/feed")])
    result = feeds.fetch({})

    assert len(result.posts) == 2
    assert roundtrip(result.cursor) == result.cursor
    # Oldest first.
    assert [raw.payload["title"] for raw in result.posts] == [
        "The Brewmaster 3000 leaks at the seam",
        "Five quiet kettles for early risers",
    ]
    leak = result.posts[0]
    assert roundtrip(leak.payload) == leak.payload
    assert leak.external_id == "https://kettles.example/?p=101"
    assert leak.payload["feed_title"] == "Kettle Reviews"
    assert leak.payload["format"] == "rss20"
    assert leak.payload["kind"] == "post"
    assert leak.payload["comment_feed"] == "https://kettles.example/2024/03/brewmaster-3000/feed/"
    assert leak.payload["comment_count"] == 7
    assert leak.payload["comments_url"] == "https://kettles.example/2024/03/brewmaster-3000/#comments"

    post = feeds.normalize(leak.payload)
    assert post.external_id == leak.external_id
    assert post.author_handle == "Priya Shah"
    assert post.created_at == dt.datetime(2024, 3, 4, 9, 15, tzinfo=dt.UTC)
    assert post.url == "https://kettles.example/2024/03/brewmaster-3000/"
    assert post.text.startswith("The Brewmaster 3000 leaks at the seam\n\nAfter two weeks the base started to leak")
    assert "“descale it” & wait." in post.text
    assert "<" not in post.text
    assert "<strong>leak</strong>" in post.html
    assert 'rel="nofollow noopener"' in post.html
    assert post.language == "en-gb"
    assert post.in_reply_to_external_id is None

    quiet = feeds.normalize(result.posts[1].payload)
    assert quiet.author_name == "Sam Ortega"
    assert quiet.author_external_id == "editor@kettles.example"
    assert quiet.created_at == dt.datetime(2024, 3, 5, 17, 0, tzinfo=dt.UTC)


def test_atom_feed_with_threading(server: FakeFeedServer) -> None:
    server.set_feed("/feed.atom", fixture("atom.xml"), ATOM)
    feeds = connector([server.url_for("/feed.atom")])
    payloads = by_title(feeds.fetch({}).posts)

    topic = payloads["Router drops Wi-Fi every night"]
    reply = payloads["Re: Router drops Wi-Fi every night"]
    note = payloads["Plain text note"]
    assert topic["kind"] == "post"
    assert topic["comment_feed"] == "https://forum.acme.example/t/412/feed.atom"
    assert topic["comment_count"] == 1
    assert reply["kind"] == "comment"
    assert reply["in_reply_to"] == {
        "ref": "tag:forum.acme.example,2024:topic-412",
        "href": "https://forum.acme.example/t/412",
    }

    topic_post = feeds.normalize(topic)
    reply_post = feeds.normalize(reply)
    assert topic_post.external_id == "tag:forum.acme.example,2024:topic-412"
    assert reply_post.in_reply_to_external_id == topic_post.external_id
    assert topic_post.author_handle == "Lena K."
    assert topic_post.author_external_id == "https://forum.acme.example/u/lena"
    assert topic_post.created_at == dt.datetime(2024, 3, 6, 7, 0, tzinfo=dt.UTC)
    assert reply_post.author_external_id == "marco@mail.example"
    assert "Turning off auto-channel helped." in reply_post.text
    assert "<code>auto-channel</code>" in reply_post.html

    note_post = feeds.normalize(note)
    assert note["content_type"] == "text/plain"
    assert note_post.url == ""
    assert "Line one <not a tag>\nLine two" in note_post.text
    assert "&lt;not a tag&gt;<br>Line two" in note_post.html


def test_rss10_rdf_feed(server: FakeFeedServer) -> None:
    server.set_feed("/latest.rdf", fixture("rss10.rdf"), "application/rdf+xml")
    feeds = connector([server.url_for("/latest.rdf")])
    result = feeds.fetch({})
    assert [raw.external_id for raw in result.posts] == [
        "https://boards.example/thread/77",
        "https://boards.example/thread/78",
    ]
    post = feeds.normalize(result.posts[0].payload)
    assert result.posts[0].payload["format"] == "rss10"
    assert post.author_handle == "dana_r"
    assert post.created_at == dt.datetime(2024, 3, 7, 13, 20, tzinfo=dt.UTC)
    assert post.text == ("Refund still not processed\n\nI returned the blender on 1 March and have heard nothing.")


def test_rss091_with_a_public_doctype_is_read(server: FakeFeedServer) -> None:
    # A DOCTYPE without entity declarations is ordinary in RSS 0.91 and must not be refused.
    server.set_feed("/news.xml", fixture("rss091.xml"), "text/xml")
    feeds = connector([server.url_for("/news.xml")])
    [raw] = feeds.fetch({}).posts
    post = feeds.normalize(raw.payload)
    assert post.text == "Café closed on Monday\n\nThe café is closed for repairs & painting."
    assert post.author_handle == "bakery.example"
    # No date in the feed: the time it was fetched stands in.
    assert post.created_at.tzinfo is not None


def test_wordpress_comment_feed_kinds(server: FakeFeedServer) -> None:
    server.set_feed("/comments", fixture("wp_comments.xml"), RSS)
    feeds = connector([server.url_for("/comments")])
    posts = feeds.fetch({}).posts
    kinds = {raw.payload["entry_id"]: raw.payload["kind"] for raw in posts}
    assert kinds == {
        "https://kettles.example/?p=101#comment-501": "comment",
        "https://kettles.example/?p=101#comment-502": "pingback",
        "https://kettles.example/?p=101#comment-503": "trackback",
    }
    pingback = feeds.normalize(posts[1].payload)
    assert pingback.author_handle == "Kitchen Gadget Weekly » Kettle recalls this month"
    assert "[…] reported a leaking seam on the Brewmaster 3000 […]" in pingback.text


def test_pingback_marked_by_comment_type_or_title() -> None:
    base = (
        b'<?xml version="1.0"?><rss version="2.0" xmlns:wp="http://wordpress.org/export/1.2/">'
        b"<channel><title>Blog</title><link>https://blog.example/</link><description>d</description>"
    )
    body = base + (
        b"<item><title>Nice</title><guid>https://blog.example/?c=1</guid>"
        b"<wp:comment_type>pingback</wp:comment_type><description>x</description></item>"
        b"<item><title>Pingback: Other blog</title><guid>https://blog.example/?c=2</guid>"
        b"<description>y</description></item></channel></rss>"
    )
    parsed = feedparser.parse(io.BytesIO(body), response_headers={"content-type": RSS})
    now = dt.datetime.now(dt.UTC)
    kinds = [entry_payload("https://blog.example/feed", parsed, e, now)["kind"] for e in parsed.entries]
    assert kinds == ["pingback", "pingback"]


# -- conditional GET and cursor ------------------------------------------------------------------


def test_conditional_get_sends_validators_and_304_returns_nothing(server: FakeFeedServer) -> None:
    modified = "Mon, 04 Mar 2024 10:00:00 GMT"
    server.set_feed("/feed", fixture("rss20.xml"), RSS, etag='"v1"', last_modified=modified)
    url = server.url_for("/feed")
    first = connector([url]).fetch({})
    assert len(first.posts) == 2
    assert first.cursor["feeds"][url]["etag"] == '"v1"'
    assert first.cursor["feeds"][url]["modified"] == modified

    second = connector([url]).fetch(roundtrip(first.cursor))
    assert second.posts == []
    headers = server.last_headers("/feed")
    assert headers["if-none-match"] == '"v1"'
    assert headers["if-modified-since"] == modified
    assert server.count("/feed") == 2
    assert second.cursor["feeds"][url]["seen"] == first.cursor["feeds"][url]["seen"]


def test_last_modified_alone_gives_304(server: FakeFeedServer) -> None:
    modified = "Mon, 04 Mar 2024 10:00:00 GMT"
    server.set_feed("/feed", fixture("rss20.xml"), RSS, last_modified=modified)
    url = server.url_for("/feed")
    first = connector([url]).fetch({})
    assert first.cursor["feeds"][url]["etag"] is None
    second = connector([url]).fetch(first.cursor)
    assert second.posts == []
    assert "if-none-match" not in server.last_headers("/feed")


def test_server_without_conditional_get_does_not_repeat_entries(server: FakeFeedServer) -> None:
    server.set_feed("/feed", fixture("rss20.xml"), RSS)
    url = server.url_for("/feed")
    first = connector([url]).fetch({})
    second = connector([url]).fetch(roundtrip(first.cursor))
    assert len(first.posts) == 2
    assert second.posts == []
    assert server.count("/feed") == 2


def rss_with(items: list[int]) -> bytes:
    start = dt.datetime(2024, 1, 1, tzinfo=dt.UTC)
    entries = "".join(
        f"<item><title>Item {n}</title><guid>https://shop.example/i/{n}</guid>"
        f"<pubDate>{email.utils.format_datetime(start + dt.timedelta(hours=n))}</pubDate>"
        f"<description>Body {n}</description></item>"
        for n in items
    )
    return (
        '<?xml version="1.0"?><rss version="2.0"><channel><title>Shop</title>'
        f"<link>https://shop.example/</link><description>d</description>{entries}</channel></rss>"
    ).encode()


def test_cursor_resume_across_restarts_without_repeats_or_skips(server: FakeFeedServer) -> None:
    url = server.url_for("/feed")
    server.set_feed("/feed", rss_with([2, 1]), RSS, etag='"a"')
    first = connector([url]).fetch({})
    assert [raw.payload["title"] for raw in first.posts] == ["Item 1", "Item 2"]
    stored = json.dumps(first.cursor)

    # Restart: a new connector, the cursor read back from storage; the feed moved on meanwhile.
    server.set_feed("/feed", rss_with([5, 4, 3, 2]), RSS, etag='"b"')
    second = connector([url]).fetch(json.loads(stored))
    assert [raw.payload["title"] for raw in second.posts] == ["Item 3", "Item 4", "Item 5"]

    # Item 1 dropped out of the feed; it is still remembered, so it is not returned if it comes back.
    server.set_feed("/feed", rss_with([6, 5, 1]), RSS, etag='"c"')
    third = connector([url]).fetch(roundtrip(second.cursor))
    assert [raw.payload["title"] for raw in third.posts] == ["Item 6"]


def test_seen_list_is_bounded(server: FakeFeedServer) -> None:
    url = server.url_for("/feed")
    cursor: dict[str, Any] = {}
    for start in range(0, 1200, 300):
        server.set_feed("/feed", rss_with(list(range(start + 299, start - 1, -1))), RSS)
        result = connector([url]).fetch(cursor)
        assert len(result.posts) == 300
        cursor = result.cursor
    assert len(cursor["feeds"][url]["seen"]) == 500


def test_feeds_removed_from_settings_leave_the_cursor(server: FakeFeedServer) -> None:
    server.set_feed("/feed", rss_with([1]), RSS)
    url = server.url_for("/feed")
    old = {"feeds": {"https://gone.example/feed": {"seen": ["abc"]}}}
    assert list(connector([url]).fetch(old).cursor["feeds"]) == [url]


def test_base_url_counts_as_a_feed(server: FakeFeedServer) -> None:
    server.set_feed("/feed", rss_with([1]), RSS)
    feeds = FeedConnector(
        AccountConfig(network="rss", handle="x", base_url=server.url_for("/feed"), settings={"allow_private": True})
    )
    assert len(feeds.fetch({}).posts) == 1


def test_entries_without_uri_ids_are_namespaced_by_feed(server: FakeFeedServer) -> None:
    body = (
        b'<?xml version="1.0"?><rss version="2.0"><channel><title>F</title><link>https://f.example/</link>'
        b"<description>d</description><item><title>Hello</title>"
        b'<guid isPermaLink="false">42</guid></item>'
        b"<item><title>No guid, no link</title><pubDate>Mon, 04 Mar 2024 09:00:00 GMT</pubDate></item>"
        b"</channel></rss>"
    )
    server.set_feed("/a", body, RSS)
    server.set_feed("/b", body, RSS)
    result = connector([server.url_for("/a"), server.url_for("/b")]).fetch({})
    ids = [raw.external_id for raw in result.posts]
    assert len(ids) == 4 == len(set(ids))
    assert all(external_id.startswith("feed:") for external_id in ids)
    assert external_id_for(server.url_for("/a"), "42") in ids
    # Only ids that are global by design are used as they are.
    assert external_id_for("https://a.example/feed", "post:42").startswith("feed:")
    assert external_id_for("https://a.example/feed", "urn:uuid:1") == "urn:uuid:1"


# -- hostile and broken bodies -------------------------------------------------------------------


@pytest.fixture(autouse=True)
def feedparser_never_sees_entities(monkeypatch: pytest.MonkeyPatch) -> None:
    """Hostile XML must be refused before feedparser is handed the bytes."""
    real_parse = feedparser.parse

    def guarded(source: Any, *args: Any, **kwargs: Any) -> Any:
        data = source.getvalue() if hasattr(source, "getvalue") else source
        assert b"<!ENTITY" not in data, "hostile XML reached feedparser"
        return real_parse(source, *args, **kwargs)

    monkeypatch.setattr(feedparser, "parse", guarded)


def test_billion_laughs_is_refused(server: FakeFeedServer) -> None:
    server.set_feed("/lol", fixture("billion_laughs.xml"), RSS)
    with pytest.raises(FeedRejected, match="declares XML entities") as caught:
        connector([server.url_for("/lol")]).fetch({})
    assert server.url_for("/lol") in str(caught.value)
    assert "lollollol" not in str(caught.value)


def xxe_feed(target: str, well_formed: bool) -> str:
    return (
        '<?xml version="1.0"?>\n'
        f'<!DOCTYPE rss [<!ENTITY xxe SYSTEM "{target}">]>\n'
        '<rss version="2.0"><channel><title>&xxe;</title><link>https://x.example/</link>'
        "<description>&xxe;</description><item><title>&xxe;</title><guid>https://x.example/1</guid>"
        "<description>&xxe;</description></item></channel>" + ("</rss>" if well_formed else "<broken")
    )


@pytest.mark.parametrize("well_formed", [True, False])
@pytest.mark.parametrize("target", ["secret", "file:///etc/passwd"])
def test_xxe_is_refused_and_the_file_never_appears(
    server: FakeFeedServer, tmp_path: Path, well_formed: bool, target: str
) -> None:
    if target == "secret":
        secret = tmp_path / "secret.txt"
        secret.write_text("TOP-SECRET-7f3a9c")
        target, marker = secret.as_uri(), "TOP-SECRET-7f3a9c"
    else:
        marker = "root:"
    server.set_feed("/xxe", xxe_feed(target, well_formed), RSS)
    server.set_feed("/good", rss_with([1]), RSS)
    xxe, good = server.url_for("/xxe"), server.url_for("/good")

    with pytest.raises(FeedRejected, match="declares XML entities") as caught:
        connector([xxe]).fetch({})
    assert marker not in str(caught.value)
    assert caught.value.__cause__ is None

    # With a healthy feed beside it, the healthy one is read and the hostile one reported.
    result = connector([xxe, good]).fetch({})
    assert [raw.payload["title"] for raw in result.posts] == ["Item 1"]
    error = result.cursor["feeds"][xxe]["last_error"]
    assert "declares XML entities" in error["message"]
    assert error["kind"] == "permanent"
    everything = json.dumps(result.cursor) + json.dumps([raw.payload for raw in result.posts])
    assert marker not in everything


def test_truncated_feed_keeps_only_whole_entries_and_refetches(server: FakeFeedServer) -> None:
    whole = rss_with([3, 2, 1])
    cut = whole[: whole.index(b"<item><title>Item 1")] + b"<item><title>Item 1</title><guid>https://sh"
    url = server.url_for("/feed")
    server.set_feed("/feed", cut, RSS, etag='"cut"')
    first = connector([url]).fetch({})
    # Item 1 was cut short: it is left for the next fetch, and the validators are not stored.
    assert [raw.payload["title"] for raw in first.posts] == ["Item 2", "Item 3"]
    assert first.cursor["feeds"][url].get("etag") is None

    server.set_feed("/feed", whole, RSS, etag='"whole"')
    second = connector([url]).fetch(first.cursor)
    assert [raw.payload["title"] for raw in second.posts] == ["Item 1"]
    assert second.cursor["feeds"][url]["etag"] == '"whole"'


def test_feed_cut_before_any_entry_is_transient(server: FakeFeedServer) -> None:
    server.set_feed("/feed", rss_with([1])[:120], RSS)
    with pytest.raises(TransientError, match="cut short"):
        connector([server.url_for("/feed")]).fetch({})


@pytest.mark.parametrize(
    ("body", "content_type"),
    [
        (b"<!DOCTYPE html><html><head><title>Login</title></head><body><p>Sign in<br></body>", "text/html"),
        (b'{"posts": [1, 2, 3]}', "application/json"),
        (b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR", "image/png"),
        (b'<?xml version="1.0"?><svg xmlns="http://www.w3.org/2000/svg"></svg>', "image/svg+xml"),
    ],
)
def test_non_feed_body_is_a_clear_error(server: FakeFeedServer, body: bytes, content_type: str) -> None:
    server.set_feed("/feed", body, content_type)
    with pytest.raises(FeedRejected, match="not (a readable )?(an )?RSS or Atom feed") as caught:
        connector([server.url_for("/feed")]).fetch({})
    assert server.url_for("/feed") in str(caught.value)


def test_empty_body_is_transient(server: FakeFeedServer) -> None:
    server.set_feed("/feed", b"", RSS)
    with pytest.raises(TransientError, match="empty body"):
        connector([server.url_for("/feed")]).fetch({})


@pytest.mark.parametrize("declare_length", [True, False])
def test_oversized_body_is_refused(server: FakeFeedServer, declare_length: bool) -> None:
    server.set_feed("/feed", rss_with([1]), RSS)
    server.oversize_next("/feed", 300_000, declare_length=declare_length)
    with pytest.raises(FeedRejected, match="max_bytes"):
        connector([server.url_for("/feed")], max_bytes=100_000).fetch({})
    # The next answer is the normal feed again.
    assert len(connector([server.url_for("/feed")], max_bytes=100_000).fetch({}).posts) == 1


# -- HTTP errors ---------------------------------------------------------------------------------


def test_429_with_retry_after_is_transient(server: FakeFeedServer) -> None:
    server.set_feed("/feed", rss_with([1]), RSS)
    server.fail_next("/feed", 429, retry_after="120")
    with pytest.raises(TransientError) as caught:
        connector([server.url_for("/feed")]).fetch({})
    assert caught.value.retry_after == 120


def test_503_with_http_date_retry_after(server: FakeFeedServer) -> None:
    server.set_feed("/feed", rss_with([1]), RSS)
    later = email.utils.format_datetime(dt.datetime.now(dt.UTC) + dt.timedelta(seconds=600), usegmt=True)
    server.fail_next("/feed", 503, retry_after=later)
    with pytest.raises(TransientError) as caught:
        connector([server.url_for("/feed")]).fetch({})
    assert caught.value.retry_after is not None and 500 < caught.value.retry_after <= 600


def test_500_is_transient(server: FakeFeedServer) -> None:
    server.set_feed("/feed", rss_with([1]), RSS)
    server.fail_next("/feed", 500)
    with pytest.raises(TransientError) as caught:
        connector([server.url_for("/feed")]).fetch({})
    assert caught.value.retry_after is None


@pytest.mark.parametrize("status", [404, 410])
def test_gone_feed_is_permanent_and_names_the_url(server: FakeFeedServer, status: int) -> None:
    server.fail_next("/feed", status)
    with pytest.raises(PermanentError, match="feed is gone") as caught:
        connector([server.url_for("/feed")]).fetch({})
    assert server.url_for("/feed") in str(caught.value)


def test_network_error_is_transient() -> None:
    with FakeFeedServer() as stopped:
        url = stopped.url_for("/feed")
    with pytest.raises(TransientError, match="network error"):
        connector([url]).fetch({})


def test_slow_feed_times_out_as_transient(server: FakeFeedServer) -> None:
    server.set_feed("/feed", rss_with([1]), RSS)
    server.slow_next("/feed", 2.0)
    with pytest.raises(TransientError):
        connector([server.url_for("/feed")], timeout=[2, 0.3]).fetch({})


def test_one_failing_feed_does_not_hide_the_others(server: FakeFeedServer) -> None:
    server.set_feed("/good", rss_with([1]), RSS)
    server.fail_next("/busy", 429, retry_after="120")
    good, busy, gone = server.url_for("/good"), server.url_for("/busy"), server.url_for("/gone")
    feeds = connector([good, busy, gone])
    result = feeds.fetch({})
    assert [raw.payload["title"] for raw in result.posts] == ["Item 1"]
    states = result.cursor["feeds"]
    assert "last_error" not in states[good]
    assert states[busy]["last_error"]["kind"] == "transient"
    assert states[busy]["last_error"]["retry_after"] == 120
    assert "retry_at" in states[busy]
    assert states[gone]["last_error"]["kind"] == "permanent"
    assert "404" in states[gone]["last_error"]["message"]

    # The busy feed is left alone until its Retry-After has passed; the others are asked again.
    server.set_feed("/busy", rss_with([2]), RSS)
    feeds.fetch(roundtrip(result.cursor))
    assert server.count("/busy") == 1
    assert server.count("/good") == 2
    assert server.count("/gone") == 2


def test_every_feed_failing_raises(server: FakeFeedServer) -> None:
    server.fail_next("/a", 503, retry_after="30")
    server.fail_next("/b", 429, retry_after="90")
    with pytest.raises(TransientError, match="every feed failed") as caught:
        connector([server.url_for("/a"), server.url_for("/b"), server.url_for("/c")]).fetch({})
    assert caught.value.retry_after == 30
    with pytest.raises(PermanentError, match="every feed failed"):
        connector([server.url_for("/x"), server.url_for("/y")]).fetch({})


def test_no_feed_configured_is_permanent() -> None:
    with pytest.raises(PermanentError, match="no feed URL"):
        connector([]).fetch({})


@pytest.mark.parametrize("allow_private", [False, None])
def test_private_addresses_are_refused_without_allow_private(
    server: FakeFeedServer, settings: Any, allow_private: bool | None
) -> None:
    settings.HUBBUB_ALLOW_PRIVATE_URLS = False
    server.set_feed("/feed", rss_with([1]), RSS)
    with pytest.raises(PermanentError, match="private or internal address"):
        connector([server.url_for("/feed")], allow_private=allow_private).fetch({})
    assert server.count("/feed") == 0


# -- HTML ----------------------------------------------------------------------------------------

HOSTILE_MARKERS = (
    "<script",
    "onerror",
    "onclick",
    "javascript:",
    "steal()",
    "document.cookie",
    "<iframe",
    "<style",
)


def test_hostile_html_from_a_feed_is_sanitised(server: FakeFeedServer) -> None:
    server.set_feed("/feed", fixture("hostile_html.xml"), RSS)
    feeds = connector([server.url_for("/feed")])
    [raw] = feeds.fetch({}).posts
    post = feeds.normalize(raw.payload)
    for marker in HOSTILE_MARKERS:
        assert marker not in post.html
        assert marker not in post.text
    assert '<a href="https://kettles.example/" rel="nofollow noopener">real link</a>' in post.html
    assert "Great kettle!" in post.text


def test_normalize_sanitises_a_raw_hostile_payload() -> None:
    # The stored payload may hold HTML no sanitiser has seen (older rows, other importers).
    feeds = connector(["https://x.example/feed"])
    payload = {
        "feed_url": "https://x.example/feed",
        "entry_id": "https://x.example/1",
        "title": "<b>Title</b> &amp; more<script>alert('t')</script>",
        "link": "javascript:alert(1)",
        "published": "2024-03-08T08:00:00+00:00",
        "content": (
            '<p onclick="steal()">Hi <em>there</em></p><script>alert(document.cookie)</script>'
            '<img src=x onerror="alert(1)"><a href="javascript:alert(2)">bad</a> '
            '<a href="https://ok.example/" target="_blank" rel="opener">ok</a><iframe src="//evil"></iframe>'
            "<style>p{}</style><blockquote>q</blockquote><pre><code>x &lt; y</code></pre>"
        ),
        "author": {"name": "", "email": "", "href": "javascript:alert(3)"},
    }
    post = feeds.normalize(payload)
    for marker in HOSTILE_MARKERS:
        assert marker not in post.html
        assert marker not in post.text
    assert post.url == ""
    assert post.author_external_id == ""
    assert post.author_handle == "x.example"
    assert post.text == "Title & more\n\nHi there\n\nbad ok\n\nq\n\nx < y"
    assert '<a href="https://ok.example/" rel="nofollow noopener">ok</a>' in post.html
    assert '<a rel="nofollow noopener">bad</a>' in post.html
    assert "<blockquote>q</blockquote><pre><code>x &lt; y</code></pre>" in post.html
    assert "<img" not in post.html


# -- normalize and publish -----------------------------------------------------------------------


@pytest.mark.parametrize(
    "change",
    [
        {"entry_id": ""},
        {"feed_url": None},
        {"published": None, "updated": None, "fetched_at": "yesterday"},
        {"title": "", "content": "<script>only()</script>", "summary": ""},
    ],
)
def test_normalize_refuses_payloads_missing_required_fields(change: dict[str, Any]) -> None:
    payload = {
        "feed_url": "https://x.example/feed",
        "entry_id": "https://x.example/1",
        "title": "T",
        "content": "<p>c</p>",
        "published": "2024-03-08T08:00:00+00:00",
        **change,
    }
    with pytest.raises(MalformedEvent):
        connector(["https://x.example/feed"]).normalize(payload)


def test_normalize_refuses_non_dict() -> None:
    with pytest.raises(MalformedEvent):
        connector(["https://x.example/feed"]).normalize(["not", "a", "dict"])  # type: ignore[arg-type]


def test_brand_author_is_from_brand(server: FakeFeedServer) -> None:
    server.set_feed("/comments", fixture("wp_comments.xml"), RSS)
    feeds = connector([server.url_for("/comments")], brand_authors=["Jo Bloggs"])
    flags = {
        feeds.normalize(raw.payload).author_handle: feeds.normalize(raw.payload).from_brand
        for raw in feeds.fetch({}).posts
    }
    assert flags["Jo Bloggs"] is True
    assert flags["Appliance Watch"] is False


def test_publish_is_refused_with_instructions() -> None:
    with pytest.raises(PermanentError) as caught:
        connector(["https://x.example/feed"]).publish(Reply(text="Thanks!", idempotency_key="k1"))
    assert str(caught.value) == READ_ONLY_MESSAGE
    assert str(caught.value) == (
        "replies to blog and forum posts are made on the site itself; copy the reply and post it there"
    )
