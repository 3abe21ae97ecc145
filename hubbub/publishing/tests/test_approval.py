"""Reply approval: what waits, who may approve, sending back with a note, and the Approvals page."""

import pytest
from django.urls import reverse

from hubbub.accounts.models import Role
from hubbub.connectors.actions import do_poll_account
from hubbub.connectors.models import Network, SocialAccount
from hubbub.crisis.actions import do_end_crisis, do_start_crisis
from hubbub.governance.models import AuditEvent
from hubbub.inbox.models import Case
from hubbub.playbook.actions import do_publish_default_playbook
from hubbub.publishing.actions import (
    ReplyError,
    do_approve_reply,
    do_reply,
    do_resubmit_reply,
    do_send_back_reply,
    publish_due,
)
from hubbub.publishing.models import OutboundMessage, OutboxState
from hubbub.routing.tests.helpers import PASSWORD, make_account, make_agent, make_case, make_org
from hubbub.testing.fake_mastodon import FakeMastodon
from hubbub.worker import Worker

HOSTILE = '<script>alert(1)</script>"><img src=x onerror=alert(1)>'


@pytest.fixture
def server():
    with FakeMastodon(access_token="secret-token", brand="acme") as instance:
        yield instance


@pytest.fixture
def org(db):
    return make_org()


@pytest.fixture
def account(org, server, settings):
    settings.HUBBUB_ALLOW_PRIVATE_URLS = True
    do_publish_default_playbook(org)
    account = SocialAccount(organization=org, network=Network.MASTODON, handle="acme", base_url=server.url)
    account.credentials = {"access_token": "secret-token"}
    account.save()
    return account


@pytest.fixture
def agent(org):
    return make_agent(org, "ada")


@pytest.fixture
def supervisor(org):
    return make_agent(org, "sue", role=Role.SUPERVISOR)


def case_from(server, account, text="my parcel is late"):
    status = server.add_mention(text, acct="alice")
    do_poll_account(account)
    Worker(poll=False).drain()
    return Case.objects.get(messages__external_id=status["id"])


def login(client, membership):
    assert client.login(username=membership.user.username, password=PASSWORD)
    return client


def test_a_case_requiring_approval_publishes_only_once_approved(server, account, agent, supervisor):
    case = case_from(server, account)
    Case.objects.filter(pk=case.pk).update(requires_approval=True)
    case.refresh_from_db()
    outbound = do_reply(case, agent.user, "Sorry Alice, we're on it", private=True)
    assert outbound.state == OutboxState.PENDING_APPROVAL  # the playbook's rule covers private replies too
    assert publish_due() == 0 and server.posted == []
    do_approve_reply(outbound, supervisor.user)
    assert outbound.state == OutboxState.APPROVED and outbound.reviewed_by_id == supervisor.user_id
    assert publish_due() == 1
    outbound.refresh_from_db()
    assert outbound.state == OutboxState.SENT and len(server.posted) == 1
    actions = list(AuditEvent.objects.filter(target_id=str(outbound.pk)).values_list("action", flat=True))
    assert {"reply.queued", "reply.approval_requested", "reply.approved"} <= set(actions)


def test_nobody_approves_their_own_reply(server, account, supervisor):
    case = case_from(server, account)
    Case.objects.filter(pk=case.pk).update(requires_approval=True)
    case.refresh_from_db()
    outbound = do_reply(case, supervisor.user, "On it")
    with pytest.raises(ReplyError, match="own reply"):
        do_approve_reply(outbound, supervisor.user)
    outbound.refresh_from_db()
    assert outbound.state == OutboxState.PENDING_APPROVAL


def test_sent_back_reply_is_a_draft_with_a_note_and_can_be_resubmitted(server, account, agent, supervisor):
    case = case_from(server, account)
    Case.objects.filter(pk=case.pk).update(requires_approval=True)
    case.refresh_from_db()
    outbound = do_reply(case, agent.user, "It's not our fault")
    with pytest.raises(ReplyError):
        do_send_back_reply(outbound, supervisor.user, "   ")
    with pytest.raises(ReplyError):
        do_send_back_reply(outbound, supervisor.user, "x" * 100_000)
    do_send_back_reply(outbound, supervisor.user, "Apologise first, no blame")
    assert outbound.state == OutboxState.DRAFT and outbound.review_note == "Apologise first, no blame"
    with pytest.raises(ReplyError, match="no longer waiting"):
        do_approve_reply(outbound, supervisor.user)
    with pytest.raises(ReplyError, match="author"):
        do_resubmit_reply(outbound, supervisor.user, "Sorry!")
    do_resubmit_reply(outbound, agent.user, "We're sorry, Alice: we're fixing it")
    assert outbound.state == OutboxState.PENDING_APPROVAL and outbound.text.startswith("We're sorry")
    assert publish_due() == 0 and server.posted == []


def test_crisis_holds_public_replies_only_and_ending_it_restores_direct_publishing(
    server, account, org, agent, supervisor
):
    case = case_from(server, account, "your app is down and I can't pay")
    mode = do_start_crisis(org, supervisor.user, "")  # every post
    public = do_reply(case, agent.user, "We're looking into it")
    private = do_reply(case, agent.user, "Could you DM us your order number?", private=True)
    assert public.state == OutboxState.PENDING_APPROVAL
    assert private.state == OutboxState.APPROVED
    reason = AuditEvent.objects.get(action="reply.approval_requested", target_id=str(public.pk)).data["reason"]
    assert "crisis" in reason
    do_end_crisis(mode, supervisor.user)
    after = do_reply(case, agent.user, "Fixed now, sorry for the trouble")
    assert after.state == OutboxState.APPROVED


# --- the Approvals page ------------------------------------------------------------------------


@pytest.fixture
def waiting(org):
    account = make_account(org)
    case = make_case(org, account, requires_approval=True, subject=HOSTILE)
    author = make_agent(org, "ada")
    return do_reply(case, author.user, HOSTILE + " we're sorry")


def test_approvals_page_lists_waiting_replies_escaped_with_their_case(client, org, waiting):
    login(client, make_agent(org, "sue", role=Role.SUPERVISOR))
    page = client.get(reverse("publishing:approvals")).content.decode()
    assert reverse("inbox:case", args=[waiting.case_id]) in page
    assert "<script>alert(1)" not in page and "&lt;script&gt;alert(1)&lt;/script&gt;" in page
    assert "onerror=alert(1)>" not in page


def test_supervisor_approves_and_sends_back_through_the_page(client, org, waiting):
    login(client, make_agent(org, "sue", role=Role.SUPERVISOR))
    assert client.get(reverse("publishing:approve", args=[waiting.pk])).status_code == 405
    response = client.post(reverse("publishing:send_back", args=[waiting.pk]), {"note": ""}, follow=True)
    assert "say what should change" in response.content.decode()
    response = client.post(reverse("publishing:approve", args=[waiting.pk]))
    assert response.status_code == 302
    waiting.refresh_from_db()
    assert waiting.state == OutboxState.APPROVED
    # Already decided: no longer on the page, so a second click is a 404 rather than a second decision.
    response = client.post(reverse("publishing:send_back", args=[waiting.pk]), {"note": "too late"})
    assert response.status_code == 404


def test_author_sees_own_reply_without_an_approve_button(client, org, waiting):
    author = org.memberships.get(user__username="ada")
    author.role = Role.SUPERVISOR
    author.save()
    login(client, author)
    page = client.get(reverse("publishing:approvals")).content.decode()
    assert "another supervisor must approve it" in page
    assert reverse("publishing:approve", args=[waiting.pk]) not in page
    response = client.post(reverse("publishing:approve", args=[waiting.pk]), follow=True)
    assert "own reply" in response.content.decode()
    waiting.refresh_from_db()
    assert waiting.state == OutboxState.PENDING_APPROVAL


def test_agents_other_departments_and_other_organizations_get_404(client, org, waiting):
    login(client, org.memberships.get(user__username="ada"))  # an agent, the author
    assert client.get(reverse("publishing:approvals")).status_code == 404
    assert client.post(reverse("publishing:approve", args=[waiting.pk])).status_code == 404

    client.logout()
    login(client, make_agent(org, "sal", role=Role.SUPERVISOR, departments=("sales",)))
    page = client.get(reverse("publishing:approvals")).content.decode()
    assert reverse("inbox:case", args=[waiting.case_id]) not in page
    assert client.post(reverse("publishing:approve", args=[waiting.pk])).status_code == 404

    client.logout()
    other = make_org("Globex", "globex")
    login(client, make_agent(other, "gus", role=Role.ADMIN))
    assert client.post(reverse("publishing:approve", args=[waiting.pk])).status_code == 404
    assert client.post(reverse("publishing:send_back", args=[waiting.pk]), {"note": "x"}).status_code == 404
    for junk in ("0", "99999999999999999999", "abc"):
        assert client.post(f"/approvals/{junk}/approve/").status_code == 404
    waiting.refresh_from_db()
    assert waiting.state == OutboxState.PENDING_APPROVAL


def test_only_the_author_resubmits_a_draft_through_the_case(client, org, waiting):
    sue = make_agent(org, "sue", role=Role.SUPERVISOR)
    do_send_back_reply(waiting, sue.user, "Too defensive")
    login(client, sue)
    assert client.post(reverse("publishing:resubmit", args=[waiting.pk]), {"text": "hi"}).status_code == 404
    client.logout()
    login(client, org.memberships.get(user__username="ada"))
    response = client.post(reverse("publishing:resubmit", args=[waiting.pk]), {"text": "x" * 100_000}, follow=True)
    assert "at most" in response.content.decode()
    response = client.post(reverse("publishing:resubmit", args=[waiting.pk]), {"text": "We're sorry"})
    assert response["Location"] == reverse("inbox:case", args=[waiting.case_id])
    assert OutboundMessage.objects.get(pk=waiting.pk).state == OutboxState.PENDING_APPROVAL
