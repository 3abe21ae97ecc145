"""'Next case', availability and requeueing, through the actions agents trigger."""

from __future__ import annotations

import datetime as dt

import pytest
from django.utils import timezone

from hubbub.accounts.models import Availability, Role
from hubbub.connectors.models import Network
from hubbub.governance.models import AuditEvent
from hubbub.inbox.models import Case, CaseStatus, Note, Priority
from hubbub.routing import actions
from hubbub.routing.actions import RoutingError, do_next_case, do_requeue_idle, do_set_availability
from hubbub.routing.models import Assignment, ReleaseReason
from hubbub.routing.tests.helpers import answered_by, make_account, make_agent, make_case, make_org

pytestmark = pytest.mark.django_db


@pytest.fixture
def org():
    return make_org()


@pytest.fixture
def account(org):
    return make_account(org)


def test_gives_the_most_urgent_case_then_the_next(org, account):
    agent = make_agent(org, "ada")
    later = make_case(org, account, priority=Priority.NORMAL, due_in_minutes=10)
    urgent = make_case(org, account, priority=Priority.URGENT, due_in_minutes=120)
    sooner = make_case(org, account, priority=Priority.NORMAL, due_in_minutes=5)
    no_due = make_case(org, account, priority=Priority.NORMAL, due_in_minutes=None)
    handed = [do_next_case(agent).case_id for _ in range(4)]
    assert handed == [urgent.pk, sooner.pk, later.pk, no_due.pk]
    case = Case.objects.get(pk=urgent.pk)
    assert case.assignee_id == agent.user_id and case.status == CaseStatus.OPEN
    audit = AuditEvent.objects.filter(action="case.routed", target_id=str(urgent.pk)).get()
    assert audit.actor_id == agent.user_id and audit.data["route"] == "queue"
    assert Assignment.objects.filter(case=urgent, user=agent.user, released_at__isnull=True).exists()
    with pytest.raises(RoutingError, match="no case is waiting"):
        do_next_case(agent)


def test_only_the_agents_departments_and_organization(org, account):
    agent = make_agent(org, "ada", departments=("sales",))
    make_case(org, account, department="legal", priority=Priority.URGENT)
    other = make_org("Other", "other")
    make_case(other, make_account(other), department="sales", priority=Priority.URGENT)
    mine = make_case(org, account, department="sales", priority=Priority.LOW)
    assert do_next_case(agent).case_id == mine.pk
    with pytest.raises(RoutingError):
        do_next_case(agent)


def test_skips_assigned_resolved_and_pending_cases(org, account):
    agent = make_agent(org, "ada")
    other = make_agent(org, "bob")
    make_case(org, account, priority=Priority.URGENT, assignee=other.user, status=CaseStatus.OPEN)
    make_case(org, account, priority=Priority.URGENT, status=CaseStatus.RESOLVED)
    make_case(org, account, priority=Priority.URGENT, status=CaseStatus.PENDING_CUSTOMER)
    free = make_case(org, account, priority=Priority.LOW)
    assert do_next_case(agent).case_id == free.pk


def test_away_agents_get_nothing_and_capacity_is_respected(org, account):
    agent = make_agent(org, "ada", online=False, capacity=2)
    for _ in range(4):
        make_case(org, account)
    with pytest.raises(RoutingError, match="away"):
        do_next_case(agent)
    do_set_availability(agent, Availability.ONLINE)
    do_next_case(agent)
    do_next_case(agent)
    with pytest.raises(RoutingError, match="capacity"):
        do_next_case(agent)
    assert Case.objects.filter(assignee=agent.user).count() == 2
    # Waiting on the customer still counts against capacity: the agent owes them an answer.
    Case.objects.filter(assignee=agent.user).update(status=CaseStatus.PENDING_CUSTOMER)
    with pytest.raises(RoutingError, match="capacity"):
        do_next_case(agent)
    Case.objects.filter(assignee=agent.user).update(status=CaseStatus.RESOLVED)
    assert Case.objects.get(pk=do_next_case(agent).case_id).assignee_id == agent.user_id


def test_skills_language_channel_certification_and_topic(org, account):
    reddit = make_account(org, Network.REDDIT)
    french_only = make_agent(org, "fr", languages=["fr"])
    mastodon_only = make_agent(org, "ma", channels=["mastodon"])
    sales_talk = make_agent(org, "st", topics=["purchase_intent"])
    german = make_case(org, account, priority=Priority.URGENT, language="de", intent="complaint")
    on_reddit = make_case(org, reddit, priority=Priority.HIGH, language="fr", intent="purchase_intent")
    # The most urgent case the French speaker may work is the French one, though it is on Reddit.
    assert do_next_case(french_only).case_id == on_reddit.pk
    assert do_next_case(mastodon_only).case_id == german.pk
    unlabelled = make_case(org, reddit, priority=Priority.LOW, language="", intent="")
    make_case(org, account, priority=Priority.URGENT, language="en", intent="complaint")
    # Only topic-matching or unlabelled cases for the sales specialist.
    assert do_next_case(sales_talk).case_id == unlabelled.pk


def test_a_customer_goes_back_to_the_agent_who_answered_them(org, account):
    ada = make_agent(org, "ada")
    make_agent(org, "bob")  # online, but not the one who answered
    customer_case = make_case(org, account, status=CaseStatus.RESOLVED)
    answered_by(customer_case, ada.user)
    make_case(org, account, priority=Priority.URGENT)  # more urgent, but a stranger's
    returning = make_case(org, account, priority=Priority.LOW, customer=customer_case.customer)
    handed = do_next_case(ada)
    assert (handed.case_id, handed.route) == (returning.pk, "sticky")


def test_stickiness_looks_at_the_agents_most_recently_answered_customers_only(org, account, monkeypatch):
    monkeypatch.setattr(actions, "STICKY_CUSTOMERS", 1)
    ada = make_agent(org, "ada")
    earlier = make_case(org, account, status=CaseStatus.RESOLVED)
    recent = make_case(org, account, status=CaseStatus.RESOLVED)
    answered_by(earlier, ada.user, minutes_ago=90)
    answered_by(recent, ada.user, minutes_ago=30)
    urgent = make_case(org, account, priority=Priority.URGENT, customer=earlier.customer)
    low = make_case(org, account, priority=Priority.LOW, customer=recent.customer)
    # With room for one customer only the latest is sticky; the other's case is an ordinary one.
    handed = [do_next_case(ada) for _ in range(2)]
    assert [(h.case_id, h.route) for h in handed] == [(low.pk, "sticky"), (urgent.pk, "queue")]


def test_a_sticky_case_waits_a_while_for_its_online_agent_then_anyone_may_take_it(org, account):
    ada = make_agent(org, "ada")
    bob = make_agent(org, "bob")
    earlier = make_case(org, account, status=CaseStatus.RESOLVED)
    answered_by(earlier, ada.user)
    returning = make_case(org, account, priority=Priority.URGENT, customer=earlier.customer)
    stranger = make_case(org, account, priority=Priority.LOW)
    assert do_next_case(bob).case_id == stranger.pk  # held for Ada, who is online
    do_set_availability(ada, Availability.AWAY)
    assert do_next_case(bob).case_id == returning.pk  # Ada is away: nobody waits for her


def test_a_sticky_hold_ends(org, account):
    ada = make_agent(org, "ada")
    bob = make_agent(org, "bob")
    earlier = make_case(org, account, status=CaseStatus.RESOLVED)
    answered_by(earlier, ada.user)
    returning = make_case(
        org, account, customer=earlier.customer, last_message_at=timezone.now() - dt.timedelta(hours=1)
    )
    assert do_next_case(bob).case_id == returning.pk


def test_admins_work_every_department_agents_with_none_get_a_reason(org, account):
    admin = make_agent(org, "root", role=Role.ADMIN, departments=())
    nowhere = make_agent(org, "nobody", departments=())
    legal = make_case(org, account, department="legal")
    assert do_next_case(admin).case_id == legal.pk
    with pytest.raises(RoutingError, match="no department"):
        do_next_case(nowhere)


def test_availability_is_audited_and_validated(org):
    agent = make_agent(org, "ada", online=False)
    do_set_availability(agent, Availability.ONLINE)
    do_set_availability(agent, Availability.ONLINE)  # no change, no second record
    assert AuditEvent.objects.filter(action="agent.availability").count() == 1
    agent.refresh_from_db()
    assert agent.is_online and agent.availability_changed_at is not None
    with pytest.raises(RoutingError, match="unknown availability"):
        do_set_availability(agent, "<script>")


def test_requeue_cases_of_agents_who_went_away(org, account):
    ada = make_agent(org, "ada")
    case = make_case(org, account)
    waiting = make_case(org, account)
    do_next_case(ada)
    do_next_case(ada)
    Case.objects.filter(pk=waiting.pk).update(status=CaseStatus.PENDING_CUSTOMER)
    assert do_requeue_idle(org.pk) == 0
    do_set_availability(ada, Availability.AWAY)
    assert do_requeue_idle(org.pk) == 1
    case.refresh_from_db()
    assert case.assignee_id is None and case.status == CaseStatus.OPEN
    # A case waiting on the customer stays with the agent who will get the answer.
    assert Case.objects.get(pk=waiting.pk).assignee_id == ada.user_id
    assert Assignment.objects.get(case=case).release_reason == ReleaseReason.AWAY
    assert AuditEvent.objects.filter(action="case.requeued", target_id=str(case.pk)).exists()


def test_requeue_cases_an_agent_sat_on(org, account):
    ada = make_agent(org, "ada")
    idle = make_case(org, account, priority=Priority.URGENT)
    busy = make_case(org, account, priority=Priority.HIGH)
    noted = make_case(org, account, priority=Priority.NORMAL)
    for _ in range(3):
        do_next_case(ada)
    Assignment.objects.update(assigned_at=timezone.now() - dt.timedelta(hours=2))
    answered_by(busy, ada.user, minutes_ago=5)
    Note.objects.create(case=noted, author=ada.user, text="checking with billing")
    assert do_requeue_idle(org.pk, idle_limit=dt.timedelta(minutes=30)) == 1
    assert Case.objects.get(pk=idle.pk).assignee_id is None
    assert Case.objects.get(pk=busy.pk).assignee_id == ada.user_id
    assert Case.objects.get(pk=noted.pk).assignee_id == ada.user_id
    assert do_next_case(make_agent(org, "bob")).case_id == idle.pk


def test_cases_finished_in_the_inbox_end_their_assignment_without_requeue(org, account):
    ada = make_agent(org, "ada")
    resolved = make_case(org, account)
    moved = make_case(org, account)
    do_next_case(ada)
    do_next_case(ada)
    Case.objects.filter(pk=resolved.pk).update(status=CaseStatus.RESOLVED)
    Case.objects.filter(pk=moved.pk).update(assignee=None)
    Assignment.objects.update(assigned_at=timezone.now() - dt.timedelta(hours=2))
    assert do_requeue_idle(org.pk, idle_limit=dt.timedelta(minutes=30)) == 0
    assert set(Assignment.objects.values_list("release_reason", flat=True)) == {ReleaseReason.DONE}
    assert Case.objects.get(pk=resolved.pk).status == CaseStatus.RESOLVED


def test_membership_skills_are_cleaned(org):
    agent = make_agent(org, "ada")
    agent.languages = [" EN", "fr", "en"]
    agent.full_clean()
    assert agent.languages == ["en", "fr"]
    agent.channels = "mastodon"
    with pytest.raises(Exception, match="list of short names"):
        agent.full_clean()


def test_a_case_unassigned_in_the_inbox_can_be_handed_out_again(org, account):
    ada = make_agent(org, "ada")
    bob = make_agent(org, "bob")
    case = make_case(org, account)
    do_next_case(ada)
    Case.objects.filter(pk=case.pk).update(assignee=None)  # the inbox's "unassign"
    assert do_next_case(bob).case_id == case.pk
    spells = list(Assignment.objects.filter(case=case).order_by("id").values_list("user_id", "release_reason"))
    assert spells == [(ada.user_id, ReleaseReason.DONE), (bob.user_id, "")]
