"""Polling through the worker's actions (Mastodon, RSS/Atom): the same guarantees as the streams.

Cursor persisted with the posts, resume after a restart, redeliveries stored once, rate limits
honoured as the next poll time, health recorded, permanent errors disable the account with the
reason, and one broken account never holds up the others. `hubbub connect` backfills with a bar.
"""

from __future__ import annotations

import datetime as dt
import io
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError
from django.utils import timezone

from hubbub.accounts.actions import do_create_organization
from hubbub.connectors.actions import do_backfill_account, do_poll_account, do_poll_due_accounts
from hubbub.connectors.models import InboundEvent, Network, SocialAccount
from hubbub.testing.fake_feeds import FakeFeedServer
from hubbub.testing.fake_mastodon import FakeMastodon

RSS_FIXTURES = Path(__file__).parents[1] / "rss" / "tests" / "fixtures"
RSS = "application/rss+xml"


@pytest.fixture
def org(db):
    return do_create_organization("Acme", "acme")


@pytest.fixture
def mastodon() -> Iterator[FakeMastodon]:
    with FakeMastodon() as fake:
        yield fake


@pytest.fixture
def feeds() -> Iterator[FakeFeedServer]:
    with FakeFeedServer() as fake:
        yield fake


def mastodon_account(org, server: FakeMastodon, **settings: Any) -> SocialAccount:
    account = SocialAccount(
        organization=org,
        network=Network.MASTODON,
        handle="brand",
        base_url=server.url,
        settings={"allow_private": True, **settings},
    )
    account.credentials = {"access_token": server.access_token}
    account.save()
    return account


def feed_account(org, urls: list[str], handle: str = "Blog watch") -> SocialAccount:
    return SocialAccount.objects.create(
        organization=org, network=Network.RSS, handle=handle, settings={"feed_urls": urls, "allow_private": True}
    )


def stored(account: SocialAccount) -> list[str]:
    return list(InboundEvent.objects.filter(account=account).order_by("id").values_list("external_id", flat=True))


def reloaded(account: SocialAccount) -> SocialAccount:
    return SocialAccount.objects.get(pk=account.pk)


def rss_with(items: list[int]) -> bytes:
    entries = "".join(
        f"<item><title>Item {n}</title><guid>https://shop.example/i/{n}</guid>"
        f"<pubDate>Mon, 0{1 + n % 8} Jan 2024 10:00:00 GMT</pubDate><description>Body {n}</description></item>"
        for n in items
    )
    return (
        '<?xml version="1.0"?><rss version="2.0"><channel><title>Shop</title>'
        f"<link>https://shop.example/</link><description>d</description>{entries}</channel></rss>"
    ).encode()


# -- Mastodon ------------------------------------------------------------------------------------


def test_mastodon_cursor_is_stored_with_the_posts_and_a_restart_resumes_from_it(org, mastodon) -> None:
    account = mastodon_account(org, mastodon)
    first = mastodon.add_mention("where is my parcel?", acct="alice")
    assert do_poll_account(account) == 1
    cursor = reloaded(account).cursor
    assert cursor["notifications"] == mastodon.notifications[-1]["id"]

    second = mastodon.add_mention("still nothing", acct="alice")
    # A restart: a fresh row read from the database, as a new worker process would.
    assert do_poll_account(reloaded(account)) == 1
    assert stored(account) == [first["id"], second["id"]]
    account = reloaded(account)
    assert account.healthy and account.last_success_at is not None


def test_mastodon_redelivery_of_an_old_page_is_stored_once(org, mastodon) -> None:
    account = mastodon_account(org, mastodon)
    posts = [mastodon.add_mention(f"message {n}", acct="bob")["id"] for n in range(3)]
    assert do_poll_account(account) == 3
    # The cursor is lost (an old backup, a crash between fetch and commit): everything comes again.
    SocialAccount.objects.filter(pk=account.pk).update(cursor={})
    assert do_poll_account(reloaded(account)) == 0
    assert stored(account) == posts


def test_mastodon_rate_limit_sets_the_next_poll_to_the_reset_time(org, mastodon) -> None:
    account = mastodon_account(org, mastodon)
    mastodon.fail_next(status=429, reset_in=300)
    before = timezone.now()
    assert do_poll_account(account) == 0
    account = reloaded(account)
    assert account.healthy  # a rate limit is not the account's fault
    assert "rate limit" in account.last_error.lower() or "429" in account.last_error
    wait = (account.next_poll_at - before).total_seconds()
    assert 250 <= wait <= 320
    # Not due: the worker does not ask again before the reset.
    assert do_poll_due_accounts() == 0
    assert len(mastodon.api_requests()) == 1


def test_mastodon_revoked_token_disables_the_account_with_the_reason(org, mastodon) -> None:
    account = mastodon_account(org, mastodon)
    mastodon.revoke_token()
    assert do_poll_account(account) == 0
    account = reloaded(account)
    assert not account.healthy
    assert account.last_error and account.last_error_at is not None
    # Disabled accounts are not polled again until someone fixes them.
    SocialAccount.objects.filter(pk=account.pk).update(next_poll_at=timezone.now() - dt.timedelta(minutes=1))
    requests_before = len(mastodon.api_requests())
    assert do_poll_due_accounts() == 0
    assert len(mastodon.api_requests()) == requests_before


def test_the_accounts_page_shows_why_an_account_was_disabled(org, mastodon, client, django_user_model) -> None:
    from hubbub.accounts.actions import do_add_member
    from hubbub.accounts.models import Role

    account = mastodon_account(org, mastodon)
    mastodon.revoke_token()
    do_poll_account(account)
    user = django_user_model.objects.create_user("admin", password="pw")
    do_add_member(org, user, Role.ADMIN)
    client.force_login(user)
    page = client.get("/accounts/").content.decode()
    assert "unhealthy" in page
    assert reloaded(account).last_error[:40] in page


# -- RSS / Atom ------------------------------------------------------------------------------------


def test_feed_validators_and_seen_entries_persist_across_restarts(org, feeds) -> None:
    url = feeds.url_for("/feed")
    feeds.set_feed("/feed", rss_with([2, 1]), RSS, etag='"a"')
    account = feed_account(org, [url])
    assert do_poll_account(account) == 2
    assert reloaded(account).cursor["feeds"][url]["etag"] == '"a"'

    # Unchanged: the stored ETag gets a 304 and nothing new.
    assert do_poll_account(reloaded(account)) == 0
    assert feeds.last_headers("/feed")["if-none-match"] == '"a"'

    # The feed moves on and repeats old entries: only the new one is stored.
    feeds.set_feed("/feed", rss_with([3, 2, 1]), RSS, etag='"b"')
    assert do_poll_account(reloaded(account)) == 1
    assert stored(account) == ["https://shop.example/i/1", "https://shop.example/i/2", "https://shop.example/i/3"]


def test_feed_retry_after_is_honoured(org, feeds) -> None:
    feeds.set_feed("/feed", rss_with([1]), RSS)
    feeds.fail_next("/feed", 429, retry_after="900")
    account = feed_account(org, [feeds.url_for("/feed")])
    before = timezone.now()
    assert do_poll_account(account) == 0
    account = reloaded(account)
    assert account.healthy and "429" in account.last_error
    assert 880 <= (account.next_poll_at - before).total_seconds() <= 920


def test_a_gone_feed_disables_the_account_and_names_the_url(org, feeds) -> None:
    feeds.fail_next("/feed", 410)
    account = feed_account(org, [feeds.url_for("/feed")])
    do_poll_account(account)
    account = reloaded(account)
    assert not account.healthy
    assert feeds.url_for("/feed") in account.last_error


def test_a_hostile_feed_is_an_error_on_the_account_not_a_crash(org, feeds) -> None:
    feeds.set_feed("/feed", (RSS_FIXTURES / "billion_laughs.xml").read_bytes(), RSS)
    account = feed_account(org, [feeds.url_for("/feed")])
    assert do_poll_account(account) == 0
    assert reloaded(account).last_error


# -- the worker's round ------------------------------------------------------------------------------


def test_one_crashing_account_does_not_stop_the_others(org, feeds, mastodon, monkeypatch) -> None:
    broken = feed_account(org, [feeds.url_for("/broken")], handle="Broken")
    SocialAccount.objects.filter(pk=broken.pk).update(next_poll_at=timezone.now() - dt.timedelta(hours=1))
    account = mastodon_account(org, mastodon)
    mastodon.add_mention("hello", acct="alice")

    from hubbub.connectors.rss.connector import FeedConnector

    def explode(self, cursor):
        raise RuntimeError("a bug in a connector")

    monkeypatch.setattr(FeedConnector, "fetch", explode)
    assert do_poll_due_accounts() == 1
    assert len(stored(account)) == 1
    broken = reloaded(broken)
    assert "a bug in a connector" in broken.last_error
    assert broken.healthy  # a bug of ours is not the account's fault
    assert broken.next_poll_at > timezone.now()


# -- backfill on connect ------------------------------------------------------------------------------


def test_backfill_runs_until_caught_up_and_waits_out_a_rate_limit(org, mastodon) -> None:
    account = mastodon_account(org, mastodon, backfill_limit=20)
    mastodon.add_mention("before", acct="zoe")
    assert do_poll_account(account) == 1  # connected: the cursor starts here
    added = [mastodon.add_mention(f"message {n}", acct=f"user{n % 5}")["id"] for n in range(45)]
    mastodon.fail_next(status=429, reset_in=30)
    waits: list[float] = []

    report = do_backfill_account(reloaded(account), wait=lambda seconds: waits.append(seconds) or False)

    assert stored(account)[1:] == added
    assert report.stored == 45 and not report.error
    assert len(waits) == 1 and 20 <= waits[0] <= 35
    assert report.rounds >= 4  # the rate-limited round, then three of at most 20


def test_an_interrupted_backfill_resumes_without_repeats(org, mastodon) -> None:
    account = mastodon_account(org, mastodon, backfill_limit=20)
    mastodon.add_mention("before", acct="zoe")
    do_poll_account(account)
    added = [mastodon.add_mention(f"message {n}", acct="carol")["id"] for n in range(45)]
    # Interrupted after the first round: what it stored is kept with its cursor.
    do_poll_account(reloaded(account))
    assert len(stored(account)) == 21

    report = do_backfill_account(reloaded(account))

    assert report.stored == 25
    assert sorted(stored(account)[1:], key=int) == added


def test_connect_command_shows_a_progress_bar_and_reports(org, mastodon, capsys) -> None:
    account = mastodon_account(org, mastodon)
    mastodon.add_mention("one", acct="dan")
    out = io.StringIO()
    call_command("connect", str(account.pk), stdout=out)
    assert "has caught up: 1 posts fetched, 1 new" in out.getvalue()
    assert "backfilling brand on Mastodon: 1 posts" in capsys.readouterr().err  # the tqdm bar

    with pytest.raises(CommandError, match="no account"):
        call_command("connect", "999999")
    mastodon.revoke_token()
    with pytest.raises(CommandError, match="was disabled"):
        call_command("connect", str(account.pk), "--no-progress", stdout=out)
    with pytest.raises(CommandError, match="is disabled"):
        call_command("connect", str(account.pk), "--no-progress", stdout=out)


def test_stored_payloads_survive_json(org, mastodon) -> None:
    account = mastodon_account(org, mastodon)
    mastodon.add_mention("emoji 🎉 and <script>alert(1)</script>", acct="eve")
    do_poll_account(account)
    payload = InboundEvent.objects.get(account=account).payload
    assert json.loads(json.dumps(payload))["content"].count("script") >= 1
