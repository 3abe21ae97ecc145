"""The stream supervisor against the local fake X and Bluesky: stored once, cursor after commit, health."""

from __future__ import annotations

import sys
import time
import types
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from django.db import connection

from hubbub.accounts.actions import do_create_organization
from hubbub.connectors.actions import do_poll_account, do_save_stream_cursor
from hubbub.connectors.bluesky.connector import forget_sessions
from hubbub.connectors.models import InboundEvent, Network, SocialAccount
from hubbub.connectors.streams import Lease, StreamSupervisor, stream_rules, wants_stream
from hubbub.connectors.x.stream import Backoff
from hubbub.testing.fake_bluesky import FakeBluesky
from hubbub.testing.fake_mastodon import FakeMastodon
from hubbub.testing.fake_x import FakeX

FAST = {
    Network.TWITTER: {"backoff": Backoff(scale=0.01), "checkpoint_every": 0.05},
    Network.BLUESKY: {"checkpoint_interval": 0.05, "backoff_initial": 0.02, "poll_timeout": 0.1},
}


def wait_until(condition: Callable[[], Any], timeout: float = 15.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError("condition not met in time")
        time.sleep(0.02)


@pytest.fixture
def org(transactional_db):
    return do_create_organization("Acme", "acme")


@pytest.fixture
def x_server() -> Iterator[FakeX]:
    # Short keep-alives: a dropped client is noticed at once, as X notices within 20 s.
    with FakeX(keepalive_interval=0.1) as fake:
        yield fake


@pytest.fixture
def bsky_server() -> Iterator[FakeBluesky]:
    forget_sessions()
    with FakeBluesky() as fake:
        yield fake


def x_account(org, server: FakeX, **settings: Any) -> SocialAccount:
    account = SocialAccount(
        organization=org,
        network=Network.TWITTER,
        handle="brand",
        base_url=server.url,
        settings={"listening_via": "stream", "listening_rules": {"brand": "brand"}, "allow_private": True, **settings},
    )
    account.credentials = server.credentials()
    account.save()
    return account


def bluesky_account(org, server: FakeBluesky) -> SocialAccount:
    account = SocialAccount(
        organization=org,
        network=Network.BLUESKY,
        handle="brand.test",
        base_url=server.url,
        settings={"did": server.brand["did"], "jetstream_url": server.jetstream_url, "allow_private": True},
    )
    account.credentials = {"app_password": server.password}
    account.save()
    return account


@pytest.fixture
def supervisor() -> Iterator[StreamSupervisor]:
    running = StreamSupervisor(refresh=0.1, restart_delay=0.2, options=FAST)
    running.start()
    yield running
    running.stop()
    running.join(timeout=30)
    assert running.thread is not None and not running.thread.is_alive()


def events(account: SocialAccount) -> list[str]:
    return list(InboundEvent.objects.filter(account=account).order_by("id").values_list("external_id", flat=True))


def test_x_stream_stores_every_post_once_and_saves_the_cursor_after_them(org, x_server: FakeX, supervisor) -> None:
    account = x_account(org, x_server)
    assert x_server.wait_for_stream(1, timeout=15)
    tweets = [x_server.add_tweet(f"the brand app is broken {n}", username=f"user{n}")["id"] for n in range(3)]
    x_server.add_tweet("nothing to do with us", username="eve")
    wait_until(lambda: len(events(account)) == 3)

    # X redelivers the last two after a disconnect: still stored once.
    x_server.redeliver_on_reconnect(2)
    x_server.disconnect_stream(partial=True)
    assert x_server.wait_for_stream(2, timeout=15)
    last = x_server.add_tweet("brand support is slow", username="zed")["id"]
    wait_until(lambda: len(events(account)) == 4)
    wait_until(lambda: SocialAccount.objects.get(pk=account.pk).cursor.get("stream", {}).get("since_id") == last)

    assert events(account) == [*tweets, last]
    account.refresh_from_db()
    assert account.last_success_at is not None and account.healthy
    # The raw stream message is what was stored, untouched.
    stored = InboundEvent.objects.get(account=account, external_id=last)
    assert stored.payload["data"]["text"] == "brand support is slow"
    assert stored.payload["matching_rules"][0]["tag"] == "hubbub:brand:brand"
    # The dropped connection is on record for the accounts page.
    assert "X stream" in account.last_error


def test_x_stream_rules_follow_the_settings_while_running(org, x_server: FakeX, supervisor) -> None:
    account = x_account(org, x_server)
    assert x_server.wait_for_stream(1, timeout=15)
    assert sorted(r["value"] for r in x_server.rules.values()) == ["brand"]

    account.settings = {**account.settings, "listening_rules": {"refund": "refund OR chargeback"}}
    account.save()
    wait_until(lambda: sorted(r["value"] for r in x_server.rules.values()) == ["refund OR chargeback"])
    # Synced on the live connection: no reconnect was needed.
    assert x_server.stream_connections == 1
    hit = x_server.add_tweet("I want a refund", username="amy")["id"]
    wait_until(lambda: events(account) == [hit])


def test_x_stream_rules_come_from_the_listening_queries(org, x_server: FakeX, supervisor) -> None:
    from hubbub.listening.actions import do_save_query, do_set_enabled

    account = x_account(org, x_server, listening_rules={})
    assert x_server.wait_for_stream(1, timeout=15)
    query = do_save_query(org, None, name="outage", query="outage")
    wait_until(lambda: [r["value"] for r in x_server.rules.values()] == ["outage"])
    assert [r["tag"] for r in x_server.rules.values()] == ["hubbub:brand:outage"]
    hit = x_server.add_tweet("a big outage again", username="amy")["id"]
    wait_until(lambda: events(account) == [hit])
    # Switched off: its rule leaves X too.
    do_set_enabled(query, None, enabled=False)
    wait_until(lambda: not x_server.rules)


def test_a_revoked_x_token_disables_the_account_with_the_reason(org, x_server: FakeX, supervisor) -> None:
    x_server.revoke()
    account = x_account(org, x_server)
    wait_until(lambda: not SocialAccount.objects.get(pk=account.pk).healthy)
    account.refresh_from_db()
    assert "401" in account.last_error or "refused" in account.last_error
    time.sleep(0.5)  # several refreshes: a disabled account is not retried
    assert account.pk not in supervisor.streams
    assert x_server.stream_connections == 0


def test_an_account_disabled_while_running_stops_its_stream(org, x_server: FakeX, supervisor) -> None:
    account = x_account(org, x_server)
    assert x_server.wait_for_stream(1, timeout=15)
    SocialAccount.objects.filter(pk=account.pk).update(polling_enabled=False)
    wait_until(lambda: account.pk not in supervisor.streams)
    wait_until(lambda: not x_server._streams)
    # Its cursor was saved on the way out.
    assert "stream" in SocialAccount.objects.get(pk=account.pk).cursor


def test_jetstream_stores_each_post_once_across_a_reconnect(org, bsky_server: FakeBluesky, supervisor) -> None:
    account = bluesky_account(org, bsky_server)
    wait_until(lambda: bsky_server.jetstream.connects)
    posts = [bsky_server.add_post(f"@brand.test order {n} is late", handle="alice.test")["uri"] for n in range(3)]
    bsky_server.add_post("unrelated chatter", handle="bob.test")
    wait_until(lambda: len(events(account)) == 3)

    bsky_server.disconnect_jetstream()
    wait_until(lambda: len(bsky_server.jetstream.connects) >= 2)
    # The reconnect asked for the stored cursor rewound, so the last posts came again: stored once.
    assert "cursor" in bsky_server.jetstream.connects[-1]
    last = bsky_server.add_post("@brand.test still waiting", handle="carol.test")["uri"]
    wait_until(lambda: len(events(account)) == 4)
    newest = bsky_server.events[-1]["time_us"]
    wait_until(lambda: SocialAccount.objects.get(pk=account.pk).cursor.get("jetstream") == newest)
    assert events(account) == [*posts, last]


def test_stream_rules_merge_listening_queries_with_the_account_settings(monkeypatch) -> None:
    account = SocialAccount(organization_id=7, network=Network.TWITTER, settings={"listening_rules": {"own": "ours"}})
    # Before the listening app lands, the account's own rules still work.
    monkeypatch.setitem(sys.modules, "hubbub.listening.actions", None)
    assert stream_rules(account) == {"own": "ours"}

    calls = []

    def network_rules(organization_id: int, network: str) -> dict[str, str]:
        calls.append((organization_id, network))
        return {"outage": "outage OR down", "own": "theirs"}

    monkeypatch.setitem(sys.modules, "hubbub.listening.actions", types.SimpleNamespace(network_rules=network_rules))
    assert stream_rules(account) == {"outage": "outage OR down", "own": "ours"}
    assert calls == [(7, "twitter")]


def test_which_accounts_want_a_stream() -> None:
    def account(network: str, **fields: Any) -> SocialAccount:
        return SocialAccount(network=network, **fields)

    assert wants_stream(account(Network.TWITTER, settings={"listening_via": "stream"}))
    assert not wants_stream(account(Network.TWITTER, settings={}))
    assert not wants_stream(account(Network.TWITTER, settings={"listening_via": "stream"}, healthy=False))
    assert wants_stream(account(Network.BLUESKY, settings={}))
    assert not wants_stream(account(Network.BLUESKY, settings={"jetstream": False}))
    assert not wants_stream(account(Network.BLUESKY, settings={}, polling_enabled=False))
    assert not wants_stream(account(Network.MASTODON, settings={}))


def test_a_poll_keeps_the_cursor_the_stream_saved_meanwhile(db) -> None:
    org = do_create_organization("Acme", "acme")
    with FakeMastodon() as server:
        account = SocialAccount(
            organization=org,
            network=Network.MASTODON,
            handle="brand",
            base_url=server.url,
            settings={"allow_private": True},
        )
        account.credentials = {"access_token": server.access_token}
        account.save()
        server.add_mention("hello", acct="alice")
        # The stream writes its key after this copy of the account was loaded.
        do_save_stream_cursor(account.pk, "jetstream", 123)
        assert do_poll_account(account) == 1
    cursor = SocialAccount.objects.get(pk=account.pk).cursor
    assert cursor["jetstream"] == 123
    assert "notifications" in cursor


def test_only_one_process_holds_an_account_stream(db, settings, tmp_path) -> None:
    settings.VAR_DIR = tmp_path
    first, second = Lease(1), Lease(1)
    other = Lease(2)
    # PostgreSQL: an advisory lock; SQLite: a file lock beside the database (the test one is in memory).
    acquire: Callable[[Lease], bool] = (
        Lease.acquire
        if connection.vendor == "postgresql"
        else (lambda lease: lease._acquire_file(str(tmp_path / "db.sqlite3")))
    )
    try:
        assert acquire(first)
        assert not acquire(second)
        assert acquire(other)
        first.release()
        assert acquire(second)
    finally:
        for lease in (first, second, other):
            lease.release()
