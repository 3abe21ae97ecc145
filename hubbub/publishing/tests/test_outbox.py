"""Replies go out through the real Mastodon connector to a local Mastodon-format server."""

import datetime as dt

import pytest
from django.contrib.auth.models import User
from django.utils import timezone

from hubbub.accounts.actions import do_create_organization
from hubbub.connectors.actions import do_poll_account
from hubbub.connectors.models import Network, SocialAccount
from hubbub.inbox.models import Case, CaseStatus, Direction, Message
from hubbub.playbook.actions import do_publish_default_playbook
from hubbub.publishing import actions
from hubbub.publishing.actions import ReplyError, do_reply, do_retry_reply, publish_due
from hubbub.publishing.models import OutboundMessage, OutboxState
from hubbub.testing.fake_mastodon import FakeMastodon
from hubbub.worker import Worker


@pytest.fixture
def server():
    with FakeMastodon(access_token="secret-token", brand="acme") as instance:
        yield instance


@pytest.fixture
def account(db, server, settings):
    settings.HUBBUB_ALLOW_PRIVATE_URLS = True
    org = do_create_organization("Acme", "acme")
    do_publish_default_playbook(org)
    account = SocialAccount(organization=org, network=Network.MASTODON, handle="acme", base_url=server.url)
    account.credentials = {"access_token": "secret-token"}
    account.save()
    return account


@pytest.fixture
def agent(db):
    return User.objects.create_user("agent", password="x")


def case_from(server, account, text="my parcel is late", **fields):
    status = server.add_mention(text, acct="alice", **fields)
    do_poll_account(account)
    Worker(poll=False).drain()
    return Case.objects.get(messages__external_id=status["id"]), status


def make_due(outbound):
    OutboundMessage.objects.filter(pk=outbound.pk).update(next_attempt_at=timezone.now() - dt.timedelta(seconds=1))


def test_credentials_are_encrypted_at_rest(account):
    stored = SocialAccount.objects.filter(pk=account.pk).values_list("credentials_encrypted", flat=True).get()
    assert "secret-token" not in stored
    assert SocialAccount.objects.get(pk=account.pk).credentials == {"access_token": "secret-token"}


def test_public_reply_is_published_in_thread_once(server, account, agent):
    case, status = case_from(server, account)
    outbound = do_reply(case, agent, "Sorry Alice, we're on it")
    assert publish_due() == 1
    assert len(server.posted) == 1
    assert server.posted[0]["in_reply_to_id"] == status["id"]
    assert server.posted[0]["visibility"] == "public"
    outbound.refresh_from_db()
    assert outbound.state == OutboxState.SENT and outbound.external_id == server.posted[0]["id"]
    reply = Message.objects.get(external_id=outbound.external_id)
    assert (reply.case_id, reply.direction) == (case.pk, Direction.OUTBOUND)
    case.refresh_from_db()
    assert case.first_responded_at is not None and case.status == CaseStatus.PENDING_CUSTOMER
    # The customer's agent now, for routing's stickiness.
    assert (case.customer.last_agent_id, case.customer.last_answered_at) == (agent.pk, reply.created_at)
    assert publish_due() == 0
    assert len(server.posted) == 1


def test_private_reply_is_a_direct_message_to_the_customer(server, account, agent):
    case, _ = case_from(server, account, "my account number is 12345678, why was I charged?")
    do_reply(case, agent, "Let's take this private", private=True)
    publish_due()
    posted = server.posted[0]
    assert posted["visibility"] == "direct"
    assert "@alice" in posted["content"]


def test_worker_killed_after_sending_does_not_publish_twice(server, account, agent, monkeypatch):
    case, _ = case_from(server, account)
    outbound = do_reply(case, agent, "On it")
    real_record = actions._record_sent

    def killed(*args, **kwargs):
        raise KeyboardInterrupt("worker killed between the network's answer and our commit")

    monkeypatch.setattr(actions, "_record_sent", killed)
    with pytest.raises(KeyboardInterrupt):
        publish_due()
    outbound.refresh_from_db()
    assert outbound.state == OutboxState.SENDING and len(server.posted) == 1

    monkeypatch.setattr(actions, "_record_sent", real_record)
    make_due(outbound)  # the claim's lease ran out: another worker takes the reply over
    publish_due()
    outbound.refresh_from_db()
    assert outbound.state == OutboxState.SENT
    assert len(server.posted) == 1  # same idempotency key, same status
    assert Message.objects.filter(case=case, direction=Direction.OUTBOUND).count() == 1


def test_transient_errors_are_retried_with_backoff(server, account, agent):
    case, _ = case_from(server, account)
    outbound = do_reply(case, agent, "On it")
    server.fail_next(1, status=503)
    publish_due()
    outbound.refresh_from_db()
    assert outbound.state == OutboxState.APPROVED and outbound.attempts == 1
    assert "503" in outbound.last_error
    assert outbound.next_attempt_at > timezone.now()
    assert publish_due() == 0  # not due yet
    make_due(outbound)
    publish_due()
    outbound.refresh_from_db()
    assert outbound.state == OutboxState.SENT and len(server.posted) == 1


def test_rate_limit_waits_until_the_reset(server, account, agent):
    case, _ = case_from(server, account)
    outbound = do_reply(case, agent, "On it")
    server.fail_next(1, status=429, reset_in=120)
    publish_due()
    outbound.refresh_from_db()
    wait = (outbound.next_attempt_at - timezone.now()).total_seconds()
    assert outbound.state == OutboxState.APPROVED and 60 < wait <= 125


def test_revoked_token_fails_the_reply_and_marks_the_account_unhealthy(server, account, agent):
    case, _ = case_from(server, account)
    outbound = do_reply(case, agent, "On it")
    server.revoke_token()
    publish_due()
    outbound.refresh_from_db()
    account.refresh_from_db()
    assert outbound.state == OutboxState.FAILED and "access token" in outbound.last_error
    assert not account.healthy and "access token" in account.last_error
    # Once the token is fixed the agent retries, and the same key still prevents a double.
    server.revoked = False
    do_retry_reply(outbound, agent)
    publish_due()
    outbound.refresh_from_db()
    assert outbound.state == OutboxState.SENT


def test_reply_to_a_deleted_post_fails_only_that_reply(server, account, agent):
    case, status = case_from(server, account)
    del server.statuses[status["id"]]
    outbound = do_reply(case, agent, "On it")
    publish_due()
    outbound.refresh_from_db()
    account.refresh_from_db()
    assert outbound.state == OutboxState.FAILED and "404" in outbound.last_error
    assert account.healthy


def test_empty_and_huge_replies_are_refused(server, account, agent):
    case, _ = case_from(server, account)
    with pytest.raises(ReplyError):
        do_reply(case, agent, "   ")
    with pytest.raises(ReplyError):
        do_reply(case, agent, "x" * 100_000)
    assert OutboundMessage.objects.count() == 0


def test_polling_twice_doubles_nothing_and_resumes_from_the_cursor(server, account):
    case_from(server, account)
    assert do_poll_account(account) == 0
    server.add_mention("and another thing", acct="bob")
    assert do_poll_account(account) == 1
    Worker(poll=False).drain()
    assert Case.objects.count() == 2
