"""Push assignment: do_push_assign, the department setting, and its page."""

from __future__ import annotations

import datetime as dt
from collections import Counter

import pytest
from django.urls import reverse
from django.utils import timezone

from hubbub.accounts.models import Availability, Role
from hubbub.connectors.actions import do_store_events
from hubbub.connectors.base import RawPost
from hubbub.connectors.models import Network
from hubbub.governance.models import AuditEvent
from hubbub.inbox.models import Case, CaseStatus, Priority
from hubbub.routing.actions import (
    RoutingError,
    do_next_case,
    do_push_assign,
    do_requeue_idle,
    do_set_availability,
    do_set_routing_mode,
)
from hubbub.routing.models import Assignment, DepartmentRouting, RoutingMode
from hubbub.routing.tests.helpers import PASSWORD, answered_by, make_account, make_agent, make_case, make_org
from hubbub.worker import Worker

pytestmark = pytest.mark.django_db


@pytest.fixture
def org():
    return make_org()


@pytest.fixture
def account(org):
    return make_account(org)


@pytest.fixture
def supervisor(org):
    return make_agent(org, "sue", role=Role.SUPERVISOR, departments=("customer-service", "sales"), online=False)


def push(org, supervisor, slug: str = "customer-service") -> None:
    do_set_routing_mode(supervisor, org.departments.get(slug=slug), RoutingMode.PUSH)


def holders(*cases) -> list[int | None]:
    return [Case.objects.get(pk=case.pk).assignee_id for case in cases]


def test_pull_departments_are_left_alone(org, account):
    make_agent(org, "ada")
    case = make_case(org, account)
    assert do_push_assign(org.pk) == 0
    assert holders(case) == [None]


def test_round_robin_over_several_cases_with_audit_and_spells(org, account, supervisor):
    push(org, supervisor)
    agents = [make_agent(org, name) for name in ("ada", "bob", "cy")]
    cases = [make_case(org, account, due_in_minutes=n) for n in range(6)]
    assert do_push_assign(org.pk) == 6
    owners = holders(*cases)
    assert Counter(owners) == {agent.user_id: 2 for agent in agents}
    # In turn: nobody gets a second case before everyone has had one.
    assert len(set(owners[:3])) == 3 and owners[3:] == owners[:3]
    assert all(Case.objects.get(pk=case.pk).status == CaseStatus.OPEN for case in cases)
    events = AuditEvent.objects.filter(action="case.routed")
    assert sorted(int(event.target_id) for event in events) == sorted(case.pk for case in cases)
    assert {event.data["route"] for event in events} == {"push"} and all(event.actor_id is None for event in events)
    assert Assignment.objects.filter(released_at__isnull=True, route="push").count() == 6

    # The next round starts with whoever was served least recently.
    later = [make_case(org, account, due_in_minutes=100 + n) for n in range(3)]
    Case.objects.filter(pk__in=[c.pk for c in cases]).update(status=CaseStatus.RESOLVED)
    assert do_push_assign(org.pk) == 3
    assert holders(*later) == owners[:3]


def test_full_and_away_agents_are_skipped(org, account, supervisor):
    push(org, supervisor)
    full = make_agent(org, "full", capacity=1)
    make_case(org, account, assignee=full.user, status=CaseStatus.PENDING_CUSTOMER)
    away = make_agent(org, "away", online=False)
    roomy = make_agent(org, "roomy", capacity=2)
    cases = [make_case(org, account, due_in_minutes=n) for n in range(3)]
    assert do_push_assign(org.pk) == 2
    assert holders(*cases) == [roomy.user_id, roomy.user_id, None]
    assert not Case.objects.filter(assignee=away.user).exists()
    # Nobody has room: nothing happens, and nothing is held.
    assert do_push_assign(org.pk) == 0
    # Coming online is enough: the waiting case is pushed to them at once.
    do_set_availability(away, Availability.ONLINE)
    assert holders(cases[2]) == [away.user_id]
    assert do_push_assign(org.pk) == 0


def test_language_and_channel_skills(org, account, supervisor):
    push(org, supervisor)
    twitter = make_account(org, Network.TWITTER)
    french = make_agent(org, "fr", languages=["fr"])
    mastodon_only = make_agent(org, "ma", channels=["mastodon"])
    german = make_case(org, account, priority=Priority.URGENT, language="de")
    on_x = make_case(org, twitter, priority=Priority.HIGH, language="en")
    in_french = make_case(org, twitter, priority=Priority.NORMAL, language="fr")
    assert do_push_assign(org.pk) == 2
    assert holders(german, on_x, in_french) == [mastodon_only.user_id, None, french.user_id]


def test_the_customers_own_agent_gets_their_case_when_they_have_room(org, account, supervisor):
    push(org, supervisor)
    make_agent(org, "ada")
    bob = make_agent(org, "bob")
    earlier = make_case(org, account, status=CaseStatus.RESOLVED)
    answered_by(earlier, bob.user)
    returning = make_case(org, account, customer=earlier.customer, priority=Priority.LOW)
    assert do_push_assign(org.pk) == 1
    assert holders(returning) == [bob.user_id]
    assert Assignment.objects.get(case=returning).route == "push-sticky"


def test_a_returning_customer_waits_a_while_for_their_full_agent(org, account, supervisor):
    push(org, supervisor)
    ada = make_agent(org, "ada")
    bob = make_agent(org, "bob", capacity=1)
    make_case(org, account, assignee=bob.user, status=CaseStatus.OPEN)
    earlier = make_case(org, account, status=CaseStatus.RESOLVED)
    answered_by(earlier, bob.user)
    returning = make_case(org, account, customer=earlier.customer)
    assert do_push_assign(org.pk) == 0
    # The customer wrote an hour ago: the hold is over, and Ada takes it.
    Case.objects.filter(pk=returning.pk).update(last_message_at=timezone.now() - dt.timedelta(hours=1))
    assert do_push_assign(org.pk) == 1
    assert holders(returning) == [ada.user_id]


def test_only_the_departments_agents_and_their_push_setting(org, account, supervisor):
    push(org, supervisor, "sales")
    service_agent = make_agent(org, "ada", departments=("customer-service",))
    sales_agent = make_agent(org, "bob", departments=("sales",))
    service_case = make_case(org, account, department="customer-service")
    sales_case = make_case(org, account, department="sales")
    assert do_push_assign(org.pk) == 1
    assert holders(service_case, sales_case) == [None, sales_agent.user_id]
    assert do_next_case(service_agent).case_id == service_case.pk  # pull still works


def test_an_agent_who_goes_away_has_their_cases_pushed_to_someone_else(org, account, supervisor):
    push(org, supervisor)
    ada = make_agent(org, "ada")
    case = make_case(org, account)
    assert do_push_assign(org.pk) == 1
    bob = make_agent(org, "bob")
    do_set_availability(ada, Availability.AWAY)
    # What the worker's housekeeping does each round: requeue, then push.
    assert do_requeue_idle(org.pk) == 1
    assert do_push_assign(org.pk) == 1
    assert holders(case) == [bob.user_id]
    spells = list(Assignment.objects.filter(case=case).order_by("id").values_list("user_id", "release_reason"))
    assert spells == [(ada.user_id, "away"), (bob.user_id, "")]


def test_a_case_unassigned_in_the_inbox_is_pushed_again(org, account, supervisor):
    push(org, supervisor)
    ada = make_agent(org, "ada", capacity=1)
    case = make_case(org, account)
    do_push_assign(org.pk)
    Case.objects.filter(pk=case.pk).update(assignee=None)  # the inbox's "unassign"
    assert do_push_assign(org.pk) == 1
    assert Assignment.objects.filter(case=case, released_at__isnull=True).get().user_id == ada.user_id
    assert Assignment.objects.filter(case=case).count() == 2


def test_a_failed_push_does_not_keep_an_agent_from_coming_online(org, account, supervisor, monkeypatch):
    push(org, supervisor)
    away = make_agent(org, "away", online=False)
    make_case(org, account)

    def broken(organization_id):
        raise RuntimeError("database hiccup")

    monkeypatch.setattr("hubbub.routing.actions.do_push_assign", broken)
    do_set_availability(away, Availability.ONLINE)
    away.refresh_from_db()
    assert away.availability == Availability.ONLINE


def test_the_worker_pushes_a_new_post_as_soon_as_it_becomes_a_case(org, account, supervisor):
    push(org, supervisor)
    ada = make_agent(org, "ada")
    worker = Worker(poll=False)
    worker.step()  # this round's housekeeping is done: the next is a minute away
    do_store_events(
        account,
        [
            RawPost(
                "109",
                {
                    "id": "109",
                    "created_at": "2026-11-30T10:00:00Z",
                    "content": "<p>my order never came</p>",
                    "account": {"acct": "kim"},
                },
            )
        ],
    )
    assert worker.step() == 1
    case = Case.objects.get()
    assert case.assignee_id == ada.user_id and worker.tally.pushed == 1


def test_setting_is_validated_scoped_and_audited(org, supervisor):
    sales = org.departments.get(slug="sales")
    do_set_routing_mode(supervisor, sales, RoutingMode.PUSH)
    do_set_routing_mode(supervisor, sales, RoutingMode.PUSH)  # no change, no second record
    assert DepartmentRouting.objects.get(department=sales).is_push
    assert AuditEvent.objects.filter(action="department.routing_mode").count() == 1
    with pytest.raises(RoutingError, match="unknown assignment mode"):
        do_set_routing_mode(supervisor, sales, "<script>")
    other = make_org("Other", "other")
    with pytest.raises(RoutingError, match="no such department"):
        do_set_routing_mode(supervisor, other.departments.get(slug="sales"), RoutingMode.PUSH)


def test_supervisors_set_the_mode_on_the_routing_page(client, org, supervisor):
    assert client.login(username="sue", password=PASSWORD)
    page = client.get(reverse("routing:home")).content.decode()
    assert 'action="/routing/mode/"' in page and "Push: cases are assigned" in page
    sales = org.departments.get(slug="sales")
    response = client.post(reverse("routing:assignment_mode"), {"department": sales.pk, "mode": "push"}, follow=True)
    assert "Sales: Push" in response.content.decode()
    assert DepartmentRouting.objects.get(department=sales).mode == RoutingMode.PUSH
    rows = {row.department.slug: row for row in client.get(reverse("routing:board")).context["rows"]}
    assert rows["sales"].is_push and not rows["customer-service"].is_push
    # A department they do not supervise, another organization's, or junk: 404.
    legal = org.departments.get(slug="legal")
    assert client.post(reverse("routing:assignment_mode"), {"department": legal.pk, "mode": "push"}).status_code == 404
    other = make_org("Other", "other").departments.get(slug="sales")
    assert client.post(reverse("routing:assignment_mode"), {"department": other.pk, "mode": "push"}).status_code == 404
    assert client.post(reverse("routing:assignment_mode"), {"department": "x", "mode": "push"}).status_code == 404
    response = client.post(reverse("routing:assignment_mode"), {"department": sales.pk, "mode": "x" * 500}, follow=True)
    assert "unknown assignment mode" in response.content.decode()


def test_agents_may_not_set_the_mode(client, org):
    make_agent(org, "ada")
    assert client.login(username="ada", password=PASSWORD)
    sales = org.departments.get(slug="customer-service")
    assert client.post(reverse("routing:assignment_mode"), {"department": sales.pk, "mode": "push"}).status_code == 404
    assert client.get(reverse("routing:assignment_mode")).status_code == 405
    assert not DepartmentRouting.objects.exists()
