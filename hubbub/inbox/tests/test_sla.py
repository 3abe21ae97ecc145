"""SLA clocks on cases: next response, resolution, pauses, warnings and the escalation chain, and
what the case page and the queue show of them. Built through the same actions the product uses."""

from __future__ import annotations

import datetime as dt

import pytest
from django.urls import reverse
from django.utils import timezone

from hubbub.accounts.models import Availability, Membership, Role
from hubbub.connectors.models import Network, SocialAccount
from hubbub.governance.models import AuditEvent
from hubbub.inbox import escalation
from hubbub.inbox.actions import do_reopen, do_resolve, do_set_customer_tier, do_set_priority
from hubbub.inbox.escalation import case_clocks, do_escalate_due, notifications_for
from hubbub.inbox.models import Case, CaseStatus, Direction, Escalation, EscalationKind, Message, Priority, Tier
from hubbub.inbox.tests.test_views import HOSTILE, IMG, SCRIPT, make_account, make_case, make_member, make_org
from hubbub.lib.playbook import PlaybookError
from hubbub.playbook.actions import active_playbook, do_publish_playbook

pytestmark = pytest.mark.django_db

SLA_PLAYBOOK = """
default:
  department: customer-service
  priority: normal
  first_response_minutes: 60
sla:
  warn_at: 0.8
  targets:
    public:
      urgent: {first_response: 15, next_response: 30, resolution: 240}
      normal: {first_response: 100, next_response: 50, resolution: 1000}
    private:
      normal: {first_response: 200, next_response: 100, resolution: 2000}
  escalation:
    - notify_supervisor
    - raise_priority
    - reassign: supervisor
    - notify_department: legal
rules:
  - name: Legal threats
    when: {intent: legal_threat}
    then: {department: legal, first_response_minutes: 30}
"""
T0 = dt.datetime(2026, 6, 1, 9, tzinfo=dt.UTC)


@pytest.fixture
def org():
    organization = make_org("Acme", "acme")
    do_publish_playbook(organization, SLA_PLAYBOOK)
    return organization


@pytest.fixture
def account(org):
    return make_account(org)


@pytest.fixture
def supervisor(org):
    user = make_member(org, "sam", Role.SUPERVISOR, ["customer-service"])
    Membership.objects.filter(user=user).update(availability=Availability.ONLINE)
    return user


@pytest.fixture
def agent(org):
    return make_member(org, "alice")


def opened_case(account, at=T0, *, private=False, priority=Priority.NORMAL, intent="complaint") -> Case:
    """A case as the pipeline opens it: routed by the playbook, clocks started."""
    case = make_case(account, priority=priority)
    _version, playbook = active_playbook(account.organization_id)
    from hubbub.lib.playbook import PostFacts

    decision = playbook.route(PostFacts(text=case.subject, intent=intent))
    case.opened_at = case.last_message_at = at
    case.save(update_fields=["opened_at", "last_message_at", *case.start_sla(playbook, decision, private=private)])
    return case


def brand_replies(case: Case, at: dt.datetime) -> Case:
    case.save(update_fields=case.brand_replied(at))
    return case


def customer_writes(case: Case, at: dt.datetime, private=False) -> Case:
    _version, playbook = active_playbook(case.organization_id)
    case.save(update_fields=case.customer_wrote(at, playbook, private=private))
    return case


# --- the clocks ---------------------------------------------------------------------------------


def test_targets_come_from_the_policy_per_priority_and_channel(account):
    public = opened_case(account)
    assert public.first_response_due_at == T0 + dt.timedelta(minutes=100)
    assert public.first_response_warn_at == T0 + dt.timedelta(minutes=80)
    assert public.resolution_due_at == T0 + dt.timedelta(minutes=1000)
    private = opened_case(account, private=True)
    assert private.first_response_due_at == T0 + dt.timedelta(minutes=200)
    urgent = opened_case(account, priority=Priority.URGENT)
    assert urgent.first_response_due_at == T0 + dt.timedelta(minutes=15)
    # A rule's own minutes beat the policy.
    legal = opened_case(account, intent="legal_threat")
    assert legal.first_response_due_at == T0 + dt.timedelta(minutes=30)
    assert public.sla_alert_at == public.first_response_warn_at


def test_next_response_runs_from_the_customers_return_until_the_brand_answers(account):
    case = opened_case(account)
    brand_replies(case, T0 + dt.timedelta(minutes=10))
    assert case.status == CaseStatus.PENDING_CUSTOMER and case.sla_paused_at == T0 + dt.timedelta(minutes=10)
    assert case.next_response_due_at is None

    back = T0 + dt.timedelta(minutes=70)
    customer_writes(case, back)
    case.refresh_from_db()
    assert case.status == CaseStatus.OPEN and case.sla_paused_at is None
    assert case.next_response_due_at == back + dt.timedelta(minutes=50)
    assert case.next_response_warn_at == back + dt.timedelta(minutes=40)
    # A second message before the brand answers does not restart the clock.
    customer_writes(case, back + dt.timedelta(minutes=5))
    assert case.next_response_due_at == back + dt.timedelta(minutes=50)
    # The resolution clock stood still for the hour the customer was away.
    assert case.sla_paused_for == dt.timedelta(minutes=60)
    assert case.resolution_due_at == T0 + dt.timedelta(minutes=1060)
    # The first response was met: its due time is history and does not move.
    assert case.first_response_due_at == T0 + dt.timedelta(minutes=100)

    brand_replies(case, back + dt.timedelta(minutes=20))
    case.refresh_from_db()
    assert case.next_response_due_at is None and case.next_response_warn_at is None
    assert case.first_responded_at == T0 + dt.timedelta(minutes=10)


def test_a_private_message_runs_the_private_next_response_clock(account):
    case = brand_replies(opened_case(account), T0 + dt.timedelta(minutes=1))
    customer_writes(case, T0 + dt.timedelta(minutes=2), private=True)
    assert case.next_response_due_at == T0 + dt.timedelta(minutes=102)


def test_resolving_pauses_and_reopening_moves_the_resolution_clock(account, agent):
    case = opened_case(account, at=timezone.now() - dt.timedelta(minutes=30))
    due = case.resolution_due_at
    do_resolve(case, agent)
    case.refresh_from_db()
    assert case.sla_paused_at is not None and case.running_clocks() == []
    Case.objects.filter(pk=case.pk).update(sla_paused_at=timezone.now() - dt.timedelta(minutes=20))
    do_reopen(case, agent)
    case.refresh_from_db()
    assert case.status == CaseStatus.OPEN and case.sla_paused_at is None
    assert dt.timedelta(minutes=19) < case.resolution_due_at - due <= dt.timedelta(minutes=21)
    assert "case.reopened" in AuditEvent.objects.values_list("action", flat=True)


def test_a_priority_override_retargets_the_clocks_from_the_opening(account, supervisor):
    case = opened_case(account)
    do_set_priority(case, supervisor, Priority.URGENT)
    case.refresh_from_db()
    # Urgent's targets, counted from the opening: 15 minutes to answer, warned at 80 %.
    assert case.first_response_due_at == T0 + dt.timedelta(minutes=15)
    assert case.first_response_warn_at == T0 + dt.timedelta(minutes=12)
    assert case.resolution_due_at == T0 + dt.timedelta(minutes=240)
    assert case.sla_alert_at == case.first_response_warn_at
    # Lowered again, the clocks loosen: low has no targets of its own and takes normal's, the
    # nearest more urgent; the business time spent paused still counts in the customer's favour.
    Case.objects.filter(pk=case.pk).update(sla_paused_seconds=600)
    case.refresh_from_db()
    do_set_priority(case, supervisor, Priority.LOW)
    case.refresh_from_db()
    assert case.first_response_due_at == T0 + dt.timedelta(minutes=110)
    assert case.resolution_due_at == T0 + dt.timedelta(minutes=1010)


def test_a_priority_override_leaves_a_met_first_response_alone(account, supervisor):
    case = brand_replies(opened_case(account), T0 + dt.timedelta(minutes=5))
    do_set_priority(case, supervisor, Priority.URGENT)
    case.refresh_from_db()
    assert case.first_response_due_at == T0 + dt.timedelta(minutes=100)
    assert case.resolution_due_at == T0 + dt.timedelta(minutes=240)


def test_without_sla_targets_a_priority_override_keeps_the_due_times(org, account, supervisor):
    do_publish_playbook(org, "default: {department: customer-service, priority: normal, first_response_minutes: 60}")
    case = opened_case(account)
    assert case.first_response_due_at == T0 + dt.timedelta(minutes=60)
    do_set_priority(case, supervisor, Priority.URGENT)
    case.refresh_from_db()
    assert case.priority == Priority.URGENT and case.first_response_due_at == T0 + dt.timedelta(minutes=60)


def test_a_customer_made_vip_brings_the_raised_cases_clocks_forward(account, supervisor):
    case = opened_case(account)
    Case.objects.filter(pk=case.pk).update(severity=3)
    assert case.first_response_due_at == T0 + dt.timedelta(minutes=100)
    assert do_set_customer_tier(case.customer, supervisor, Tier.VIP) == [case.pk]
    case.refresh_from_db()
    assert case.priority < Priority.NORMAL
    # Raised above normal, the case takes the policy's nearest target at or above its priority:
    # urgent's, counted from the opening.
    assert case.first_response_due_at == T0 + dt.timedelta(minutes=15)
    assert case.resolution_due_at == T0 + dt.timedelta(minutes=240)


def test_an_escalation_raising_the_priority_keeps_the_breached_due_time(account):
    case = opened_case(account)
    due = case.first_response_due_at
    do_escalate_due(account.organization, now=due + dt.timedelta(minutes=1))
    case.refresh_from_db()
    assert case.priority == Priority.HIGH
    # The chain is recorded against the due time that breached: moving it would start it again.
    assert case.first_response_due_at == due
    do_escalate_due(account.organization, now=due + dt.timedelta(minutes=2))
    kinds = list(Escalation.objects.filter(case=case).values_list("kind", flat=True))
    assert kinds.count(EscalationKind.RAISE_PRIORITY) == 1


def test_the_case_page_reopens_a_resolved_case_and_strangers_cannot(client, org, account, agent):
    case = opened_case(account, at=timezone.now() - dt.timedelta(minutes=30))
    client.force_login(agent)
    client.post(reverse("inbox:resolve", args=[case.pk]))
    assert b"Reopen" in client.get(reverse("inbox:case", args=[case.pk])).content
    client.force_login(make_member(org, "otto", Role.AGENT, ["sales"]))
    assert client.post(reverse("inbox:reopen", args=[case.pk])).status_code == 404
    client.force_login(agent)
    client.post(reverse("inbox:reopen", args=[case.pk]))
    case.refresh_from_db()
    assert case.status == CaseStatus.OPEN and case.sla_paused_at is None


# --- warnings and escalation ---------------------------------------------------------------------


def escalations(case):
    return list(Escalation.objects.filter(case=case).order_by("position").values_list("clock", "position", "kind"))


def test_warning_at_80_percent_then_the_whole_chain_on_breach(org, account, agent, supervisor):
    case = opened_case(account)
    case.assignee = agent
    case.status = CaseStatus.OPEN
    case.save(update_fields=["assignee", "status"])

    assert do_escalate_due(org, T0 + dt.timedelta(minutes=79)) == 0
    assert do_escalate_due(org, T0 + dt.timedelta(minutes=80)) == 1
    case.refresh_from_db()
    assert case.sla_flag == "warning"
    assert escalations(case) == [("first_response", 0, EscalationKind.WARNING)]
    assert case.sla_alert_at == case.first_response_due_at

    breach = T0 + dt.timedelta(minutes=100)
    assert do_escalate_due(org, breach) == 4
    case.refresh_from_db()
    assert [kind for _c, _p, kind in escalations(case)] == [
        "warning",
        "notify_supervisor",
        "raise_priority",
        "reassign",
        "notify_department",
    ]
    assert case.priority == Priority.HIGH
    assert case.assignee == supervisor
    assert case.sla_flag == "breached"
    told = Escalation.objects.get(case=case, kind=EscalationKind.NOTIFY_DEPARTMENT)
    assert told.department.slug == "legal"
    assert Escalation.objects.get(case=case, kind=EscalationKind.NOTIFY_SUPERVISOR).detail["supervisors"] == [
        supervisor.pk
    ]
    actions = list(AuditEvent.objects.filter(organization=org, target_id=str(case.pk)).values_list("action", flat=True))
    assert {"case.sla_warning", "case.sla_notify_supervisor", "case.sla_raise_priority"} <= set(actions)
    # Nothing further to do for this clock: the case needs no more looks until the resolution clock warns.
    assert case.sla_alert_at == case.resolution_warn_at


def test_running_the_housekeeping_twice_gives_the_same_result(org, account, supervisor):
    case = opened_case(account)
    later = T0 + dt.timedelta(minutes=150)
    first = do_escalate_due(org, later)
    snapshot = (escalations(case), AuditEvent.objects.count())
    assert do_escalate_due(org, later) == 0
    assert do_escalate_due(org.pk, later + dt.timedelta(minutes=1)) == 0
    case.refresh_from_db()
    assert first == 4  # the warning was overtaken by the breach: skipped
    assert (escalations(case), AuditEvent.objects.count()) == snapshot
    assert case.priority == Priority.HIGH  # raised once


class Killed(BaseException):
    """The worker process dying in the middle of a step (not an Exception: nothing catches it)."""


def test_killed_midway_then_rerun_takes_each_step_once(org, account, supervisor, monkeypatch):
    case = opened_case(account)
    later = T0 + dt.timedelta(minutes=150)
    real = escalation._perform

    def dies_on_raise_priority(locked, alert):
        if alert.step is not None and alert.step.kind == "raise_priority":
            real(locked, alert)  # the priority is written … and then the process dies
            raise Killed
        return real(locked, alert)

    monkeypatch.setattr(escalation, "_perform", dies_on_raise_priority)
    with pytest.raises(Killed):
        do_escalate_due(org, later)
    case.refresh_from_db()
    # The supervisors were told; the raise died with its transaction, so nothing of it remains.
    assert [kind for _c, _p, kind in escalations(case)] == ["notify_supervisor"]
    assert case.priority == Priority.NORMAL
    assert case.sla_alert_at <= later  # still due for the next run

    monkeypatch.setattr(escalation, "_perform", real)
    assert do_escalate_due(org, later) == 3
    assert do_escalate_due(org, later) == 0
    case.refresh_from_db()
    assert [kind for _c, _p, kind in escalations(case)] == [
        "notify_supervisor",
        "raise_priority",
        "reassign",
        "notify_department",
    ]
    assert case.priority == Priority.HIGH
    assert AuditEvent.objects.filter(action="case.sla_raise_priority", target_id=str(case.pk)).count() == 1


def test_supervisors_and_the_notified_department_see_the_notifications(org, account, supervisor, agent):
    case = opened_case(account)
    do_escalate_due(org, T0 + dt.timedelta(minutes=150))
    sam = Membership.objects.get(user=supervisor)
    assert [e.kind for e in notifications_for(sam)] == ["notify_supervisor"]  # sam does not work legal
    lawyer = Membership.objects.get(user=make_member(org, "lou", Role.AGENT, ["legal"]))
    assert [(e.kind, e.case_id) for e in notifications_for(lawyer)] == [("notify_department", case.pk)]
    assert notifications_for(Membership.objects.get(user=agent)) == []  # agents are not paged


def test_an_answered_or_waiting_case_does_not_escalate(org, account):
    answered = opened_case(account)
    brand_replies(answered, T0 + dt.timedelta(minutes=5))
    assert do_escalate_due(org, T0 + dt.timedelta(days=30)) == 0
    assert not Escalation.objects.exists()


def test_the_next_response_clock_escalates_afresh_each_time(org, account, supervisor):
    case = brand_replies(opened_case(account), T0 + dt.timedelta(minutes=5))
    # Resolution is far away; the next response breaches 50 minutes after the customer's return.
    customer_writes(case, T0 + dt.timedelta(minutes=10))
    do_escalate_due(org, T0 + dt.timedelta(minutes=61))
    brand_replies(case, T0 + dt.timedelta(minutes=62))
    customer_writes(case, T0 + dt.timedelta(minutes=70))
    do_escalate_due(org, T0 + dt.timedelta(minutes=121))
    dues = set(Escalation.objects.filter(case=case, clock="next_response", position=1).values_list("due_at", flat=True))
    assert len(dues) == 2


def test_default_chain_without_an_sla_section(account):
    organization = make_org("Plain", "plain")
    plain_account = make_account(organization)
    case = opened_case(plain_account, intent="question")
    assert case.first_response_due_at == T0 + dt.timedelta(minutes=60)
    assert case.resolution_due_at is None  # no policy and no rule: no resolution clock
    do_escalate_due(organization, T0 + dt.timedelta(minutes=61))
    assert [kind for _c, _p, kind in escalations(case)] == ["notify_supervisor", "raise_priority"]


def test_a_bad_escalation_chain_is_refused_with_its_place(org):
    bad = SLA_PLAYBOOK.replace("notify_department: legal", "notify_department: nowhere")
    with pytest.raises(PlaybookError, match=r"sla\.escalation\[3\]\.notify_department: no department 'nowhere'"):
        do_publish_playbook(org, bad)


# --- pages ----------------------------------------------------------------------------------------


def test_case_page_shows_every_clock_and_escapes_customer_text(client, org, supervisor):
    account = SocialAccount.objects.create(organization=org, network=Network.META, handle="brandpage")
    now = timezone.now()
    case = opened_case(account, at=now - dt.timedelta(minutes=90))
    case.subject = HOSTILE
    case.save(update_fields=["subject"])
    Message.objects.filter(case=case).update(text=f"hi {HOSTILE}", created_at=now - dt.timedelta(hours=3))
    brand_replies(case, now - dt.timedelta(minutes=80))
    customer_writes(case, now - dt.timedelta(minutes=55))
    Message.objects.create(
        case=case, account=account, direction=Direction.INBOUND, text=IMG, created_at=now - dt.timedelta(minutes=55)
    )
    do_escalate_due(org, now)
    client.force_login(supervisor)

    html = client.get(reverse("inbox:case", args=[case.pk])).content.decode()
    assert SCRIPT not in html and "<img" not in html
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in html
    for label in ("First response", "Next response", "Resolution", "Messaging window"):
        assert label in html
    window = (now - dt.timedelta(minutes=55) + dt.timedelta(hours=24)).astimezone(dt.UTC)
    assert window.strftime("%Y-%m-%d %H:%M") in html
    assert "breached" in html  # the next response was due 50 minutes after the customer's return
    assert "Supervisors notified" in html and "Priority raised" in html

    rows = {row.name: row for row in case_clocks(Case.objects.get(pk=case.pk), now)}
    assert rows["First response"].state == "met"
    assert rows["Next response"].state == "breached"
    assert rows["Resolution"].state == "running"

    refresh = client.get(reverse("inbox:case_thread", args=[case.pk])).content.decode()
    assert 'id="sla-clocks"' in refresh and SCRIPT not in refresh

    queue = client.get(reverse("inbox:queue_rows")).content.decode()
    assert "SLA breached" in queue


def test_case_page_shows_a_paused_case(client, org, supervisor, account):
    case = brand_replies(opened_case(account, at=timezone.now() - dt.timedelta(minutes=5)), timezone.now())
    client.force_login(supervisor)
    html = client.get(reverse("inbox:case", args=[case.pk])).content.decode()
    assert "paused" in html and "the clocks stand still" in html
    assert "Messaging window" not in html  # Mastodon has no window
