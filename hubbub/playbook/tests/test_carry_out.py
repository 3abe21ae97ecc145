"""Playbook actions that reach beyond the case: hand-offs to notified departments (with a receipt)
and automatic acknowledgements from a template, carried out by the pipeline exactly once."""

from __future__ import annotations

import datetime as dt

import pytest
from django.db import transaction
from django.urls import reverse
from django.utils import timezone

from hubbub.accounts.models import Role
from hubbub.connectors.actions import do_store_events
from hubbub.connectors.base import RawPost
from hubbub.connectors.models import Network, SocialAccount
from hubbub.governance.models import AuditEvent
from hubbub.inbox import pipeline
from hubbub.inbox.models import Case, Direction, Escalation, EscalationKind
from hubbub.inbox.tests.test_views import SCRIPT, make_member, make_org
from hubbub.playbook.actions import do_publish_playbook
from hubbub.playbook.models import HandOff
from hubbub.publishing import actions as publishing
from hubbub.publishing.models import OutboundMessage, OutboxState

INTAKE = """
templates:
  thanks: "Hi {customer_name}, thanks for telling {brand}. Case {case_id} is with our {department} team."
default:
  department: customer-service
  priority: normal
  first_response_minutes: 60
rules:
  - name: Lawyers
    when: {terms: [lawyer]}
    then: {department: customer-service, notify: [legal, marketing], acknowledge: thanks}
  - name: Refunds need a look
    when: {terms: [refund]}
    then: {requires_approval: true, acknowledge: thanks}
"""


@pytest.fixture
def org(db):
    organization = make_org("Acme", "acme")
    do_publish_playbook(organization, INTAKE)
    return organization


@pytest.fixture
def account(org):
    # A live account (an imported one has nobody to reply to, so it is never acknowledged).
    return SocialAccount.objects.create(
        organization=org, network=Network.MASTODON, handle="acme", base_url="https://social.example"
    )


def post(account, status_id: str, text: str, when: dt.datetime | None = None, author: str = "carol"):
    """Store a Mastodon Status entity (the fields hubbub reads) as a raw event."""
    when = when or timezone.now()
    payload = {
        "id": status_id,
        "created_at": when.strftime("%Y-%m-%dT%H:%M:%S.000Z"),
        "in_reply_to_id": None,
        "visibility": "public",
        "language": "en",
        "url": f"https://social.example/@{author}/{status_id}",
        "content": f"<p>{text}</p>",
        "reblog": None,
        "account": {"id": f"9{len(author)}{ord(author[0])}", "username": author, "acct": author},
    }
    do_store_events(account, [RawPost(status_id, payload)])


def drain():
    # The pipeline only: the outbox is left for the test to look at, not published.
    while pipeline.process_pending():
        pass


def test_a_notify_rule_hands_the_case_to_each_department_once(org, account):
    post(account, "1", "@acme my lawyer will hear about this")
    drain()
    case = Case.objects.get()
    assert case.department.slug == "customer-service"
    handed = HandOff.objects.filter(case=case)
    assert sorted(handed.values_list("department__slug", flat=True)) == ["legal", "marketing"]
    assert all(h.rule.startswith("Lawyers") and h.received_at is None for h in handed)


def test_a_recent_post_is_acknowledged_in_thread_and_an_old_one_is_not(org, account):
    post(account, "1", "@acme my lawyer will hear about this", author="carol")
    post(account, "2", "@acme my lawyer again", when=timezone.now() - dt.timedelta(days=3), author="dave")
    drain()
    acknowledgement = OutboundMessage.objects.get()
    case = Case.objects.get(messages__external_id="1")
    assert acknowledgement.case == case and acknowledgement.state == OutboxState.APPROVED
    assert acknowledgement.in_reply_to.external_id == "1"
    assert acknowledgement.in_reply_to.direction == Direction.INBOUND
    assert (
        acknowledgement.text == f"Hi carol, thanks for telling Acme. Case {case.pk} is with our Customer service team."
    )
    assert AuditEvent.objects.filter(action="reply.acknowledgement_queued").count() == 1


def test_an_acknowledgement_on_a_case_that_needs_approval_waits_for_it(org, account):
    post(account, "1", "@acme I want a refund")
    drain()
    assert OutboundMessage.objects.get().state == OutboxState.PENDING_APPROVAL


def test_a_batch_done_again_after_a_crash_writes_neither_twice(org, account, monkeypatch):
    post(account, "1", "@acme my lawyer will hear about this")
    original = pipeline.do_carry_out
    calls = []

    def crash_after(*args, **kwargs):
        original(*args, **kwargs)
        calls.append(1)
        if len(calls) == 1:
            raise RuntimeError("worker killed")

    monkeypatch.setattr(pipeline, "do_carry_out", crash_after)
    drain()
    assert (HandOff.objects.count(), OutboundMessage.objects.count()) == (2, 1)


def test_the_notified_department_reads_the_case_and_acknowledges_receipt(client, org, account):
    post(account, "1", f"@acme my lawyer will hear about this {SCRIPT}")
    drain()
    lawyer = make_member(org, "lena", Role.AGENT, ["legal"])
    outsider = make_member(org, "otto", Role.AGENT, ["sales"])
    handoff = HandOff.objects.get(department__slug="legal")

    client.force_login(lawyer)
    listing = client.get(reverse("playbook:handoffs"))
    assert listing.status_code == 200 and b"my lawyer will hear" in listing.content
    assert SCRIPT.encode() not in listing.content
    page = client.get(reverse("inbox:case", args=[handoff.case_id]))
    assert page.status_code == 200 and b"for information" in page.content
    # They read and add notes; the department that works the case does the rest.
    assert b"Send reply" not in page.content and b"Take this case" not in page.content
    client.post(reverse("inbox:note", args=[handoff.case_id]), {"text": "Legal is aware."})
    assert handoff.case.notes.get().text == "Legal is aware."
    for action in ("claim", "resolve", "reply"):
        response = client.post(reverse(f"inbox:{action}", args=[handoff.case_id]), {"text": "hi"})
        assert response.status_code == 404, action
    client.post(reverse("playbook:acknowledge_handoff", args=[handoff.pk]))
    handoff.refresh_from_db()
    assert handoff.received_by == lawyer and handoff.received_at is not None
    assert AuditEvent.objects.filter(action="handoff.received", actor=lawyer).count() == 1
    # A second click changes nothing: the receipt is the first one.
    client.post(reverse("playbook:acknowledge_handoff", args=[handoff.pk]))
    assert AuditEvent.objects.filter(action="handoff.received").count() == 1

    client.force_login(outsider)
    assert b"my lawyer" not in client.get(reverse("playbook:handoffs")).content
    assert client.get(reverse("inbox:case", args=[handoff.case_id])).status_code == 404
    assert client.post(reverse("playbook:acknowledge_handoff", args=[handoff.pk])).status_code == 404

    other = make_org("Globex", "globex")
    stranger = make_member(other, "gus", Role.ADMIN, ["legal"])
    client.force_login(stranger)
    assert client.get(reverse("inbox:case", args=[handoff.case_id])).status_code == 404
    assert client.post(reverse("playbook:acknowledge_handoff", args=[handoff.pk])).status_code == 404


def test_an_imported_account_is_never_acknowledged(org):
    imported = SocialAccount.objects.create(
        organization=org, network=Network.TWITTER, handle="acme-history", settings={"imported": True}
    )
    row = {
        "tweet_id": "7",
        "author_id": "9",
        "inbound": "True",
        "created_at": timezone.now().strftime("%a %b %d %H:%M:%S +0000 %Y"),
        "text": "@acme my lawyer will hear about this",
        "response_tweet_id": "",
        "in_response_to_tweet_id": "",
    }
    do_store_events(imported, [RawPost("7", row)])
    drain()
    assert HandOff.objects.count() == 2 and not OutboundMessage.objects.exists()


PRIVATE_DATA_RULE = """
templates:
  move_private: "Hi {customer_name}, {agent_name} here from {brand}: let's continue by direct message on {channel}."
default:
  department: customer-service
  priority: normal
  first_response_minutes: 60
rules:
  - name: Account numbers
    when: {terms: [account]}
    then: {private: true, templates: [move_private]}
"""


def test_the_case_page_offers_the_rules_replies_filled_in_and_escaped_and_defaults_to_private(client, org, account):
    do_publish_playbook(org, PRIVATE_DATA_RULE)
    post(account, "1", "@acme my account 12345678 is locked", author="mallory")
    drain()
    case = Case.objects.get()
    case.customer.display_name = SCRIPT
    case.customer.save()
    assert case.reply_privately and case.reply_templates[0]["name"] == "move_private"
    agent = make_member(org, "alice", Role.AGENT, ["customer-service"])
    agent.first_name, agent.last_name = "Alice", "Agent"
    agent.save()
    client.force_login(agent)
    page = client.get(reverse("inbox:case", args=[case.pk])).content.decode()
    assert "Alice Agent here from Acme" in page and "Mastodon" in page
    assert SCRIPT not in page and "&lt;script&gt;" in page
    assert 'value="private" checked' in page and 'value="public" checked' not in page


ESCALATING = """
default:
  department: customer-service
  priority: normal
  first_response_minutes: 60
rules:
  - name: Journalists
    when: {terms: [journalist]}
    then: {escalate: true}
"""


def test_an_escalate_rule_tells_the_departments_supervisors_once(client, org, account):
    do_publish_playbook(org, ESCALATING)
    post(account, "1", "@acme I am a journalist writing about your refunds")
    drain()
    case = Case.objects.get()
    step = Escalation.objects.get(case=case)
    assert step.kind == EscalationKind.NOTIFY_SUPERVISOR and step.department_id == case.department_id
    assert step.clock == "rule" and step.detail["rule"].startswith("Journalists")
    supervisor = make_member(org, "sam", Role.SUPERVISOR, ["customer-service"])
    client.force_login(supervisor)
    listing = client.get(reverse("playbook:handoffs")).content.decode()
    assert "journalist writing" in listing and "playbook rule Journalists" in listing
    case_page = client.get(reverse("inbox:case", args=[case.pk])).content.decode()
    assert "Supervisors notified" in case_page
    # An agent of another department hears nothing of it.
    client.force_login(make_member(org, "otto", Role.AGENT, ["sales"]))
    assert "journalist writing" not in client.get(reverse("playbook:handoffs")).content.decode()


def test_a_sent_acknowledgement_leaves_the_case_waiting_for_a_person(org, account, monkeypatch):
    post(account, "1", "@acme my lawyer will hear about this")
    drain()
    acknowledgement = OutboundMessage.objects.get()
    acknowledgement.move_to(OutboxState.SENDING)
    acknowledgement.save()
    with transaction.atomic():
        publishing._record_sent(acknowledgement, "ack-1", "https://social.example/@acme/ack-1")
    case = Case.objects.get()
    # Sent, and on the thread, but no person has answered: the case stays in the queue on its clock.
    assert case.messages.filter(direction=Direction.OUTBOUND).count() == 1
    assert case.first_responded_at is None and case.status == "new"
