"""Many agents pressing "next case" at the same moment, each on its own database connection.

PostgreSQL only: that is where requests really run side by side (SKIP LOCKED). On SQLite the
write lock runs them one at a time, which the sequential tests already cover.
"""

from __future__ import annotations

import threading
import time
from collections import Counter

import pytest
from django.db import OperationalError, connection, connections, transaction

from hubbub.accounts.models import Membership
from hubbub.inbox.models import Case, CaseStatus, Priority
from hubbub.routing.actions import RoutingError, do_next_case
from hubbub.routing.models import Assignment
from hubbub.routing.tests.helpers import make_account, make_agent, make_case, make_org

pytestmark = [
    pytest.mark.django_db(transaction=True),
    pytest.mark.skipif(connection.vendor != "postgresql", reason="concurrent connections: PostgreSQL"),
]

AGENTS = 24
CAPACITY = 3


def _ask_until_refused(membership, start: threading.Barrier, handed: list[int], errors: list[BaseException]):
    try:
        start.wait(timeout=30)
        while True:
            try:
                handed.append(do_next_case(membership).case_id)
            except RoutingError:
                return
    except BaseException as exc:  # any other failure must fail the test, not vanish with the thread
        errors.append(exc)
    finally:
        connections.close_all()


def _run_agents(memberships) -> tuple[list[int], list[BaseException]]:
    start = threading.Barrier(len(memberships))
    handed: list[int] = []
    errors: list[BaseException] = []
    threads = [threading.Thread(target=_ask_until_refused, args=(m, start, handed, errors)) for m in memberships]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    assert not any(thread.is_alive() for thread in threads)
    return handed, errors


def test_no_case_is_handed_to_two_agents_when_all_ask_at_once():
    org = make_org()
    account = make_account(org)
    departments = ("customer-service", "sales")
    cases = [
        make_case(org, account, department=departments[n % 2], priority=Priority.values[n % 4], due_in_minutes=n)
        for n in range(50)
    ]
    agents = [make_agent(org, f"agent{n}", departments=departments, capacity=CAPACITY) for n in range(AGENTS)]

    handed, errors = _run_agents(agents)

    assert errors == []
    assert len(handed) == len(set(handed)), "a case was handed out twice"
    # 24 agents x 3 = 72 places for 50 cases: every case went to someone.
    assert sorted(handed) == sorted(case.pk for case in cases)
    holders = Counter(Case.objects.filter(pk__in=handed).values_list("assignee_id", flat=True))
    assert None not in holders and max(holders.values()) <= CAPACITY
    assert Assignment.objects.filter(released_at__isnull=True).count() == len(cases)


def test_capacity_holds_when_the_cases_outnumber_the_agents():
    org = make_org()
    account = make_account(org)
    for n in range(40):
        make_case(org, account, due_in_minutes=n)
    # The same agent on several connections at once (double clicks, two tabs) stays within capacity.
    agent = make_agent(org, "ada", capacity=CAPACITY)
    others = [make_agent(org, f"agent{n}", capacity=CAPACITY) for n in range(5)]

    handed, errors = _run_agents([agent] * 6 + others)

    assert errors == []
    assert len(handed) == len(set(handed))
    holders = Counter(Case.objects.filter(assignee__isnull=False).values_list("assignee_id", flat=True))
    assert holders[agent.user_id] == CAPACITY
    assert all(count == CAPACITY for count in holders.values())
    assert len(handed) == CAPACITY * 6


def test_a_click_that_waits_for_the_agents_lock_counts_what_the_click_before_took():
    # The capacity check must read a snapshot taken once the lock is held: one taken before the
    # wait would still count the agent's cases as they were when the second click arrived.
    org = make_org()
    account = make_account(org)
    taken_first = make_case(org, account, priority=Priority.URGENT)
    make_case(org, account)
    agent = make_agent(org, "ada", capacity=1)
    outcome: list[object] = []

    def second_click():
        try:
            outcome.append(do_next_case(agent))
        except BaseException as exc:
            outcome.append(exc)
        finally:
            connections.close_all()

    waiter = threading.Thread(target=second_click)
    with transaction.atomic():
        # The first click, holding the agent's lock while it hands out a case.
        Membership.objects.select_for_update().get(pk=agent.pk)
        waiter.start()
        _wait_until_a_request_waits_for_a_lock()
        Case.objects.filter(pk=taken_first.pk).update(assignee=agent.user, status=CaseStatus.OPEN)
    waiter.join(timeout=60)

    assert len(outcome) == 1 and isinstance(outcome[0], RoutingError), outcome
    assert "capacity" in str(outcome[0])
    assert list(Case.objects.filter(assignee=agent.user).values_list("pk", flat=True)) == [taken_first.pk]


def test_a_database_error_while_handing_out_is_djangos_and_leaves_the_connection_usable():
    # hand_out runs on a raw psycopg cursor; its errors must still be Django's, as every caller
    # (and Django's own connection bookkeeping) expects.
    org = make_org()
    account = make_account(org)
    make_case(org, account)
    agent = make_agent(org, "ada")
    outcome: list[object] = []

    def click_with_a_short_timeout():
        try:
            with connection.cursor() as cursor:
                cursor.execute("SET statement_timeout = 200")
            try:
                do_next_case(agent)
            except BaseException as exc:
                outcome.append(exc)
            outcome.append(Case.objects.count())  # the same connection answers afterwards
        finally:
            connections.close_all()

    waiter = threading.Thread(target=click_with_a_short_timeout)
    with transaction.atomic():
        Membership.objects.select_for_update().get(pk=agent.pk)  # another click holds the agent's lock
        waiter.start()
        waiter.join(timeout=60)
    assert len(outcome) == 2, outcome
    assert isinstance(outcome[0], OperationalError) and "statement timeout" in str(outcome[0]), outcome
    assert outcome[1] == 1


def _wait_until_a_request_waits_for_a_lock() -> None:
    deadline = time.monotonic() + 60
    with connection.cursor() as cursor:
        while time.monotonic() < deadline:
            cursor.execute("SELECT count(*) FROM pg_locks WHERE NOT granted")
            if cursor.fetchone()[0]:
                return
            time.sleep(0.01)
    raise AssertionError("the second request never waited for the agent's lock")


def test_push_rounds_and_next_case_at_once_never_hand_a_case_twice():
    from hubbub.accounts.models import Role
    from hubbub.routing.actions import do_push_assign, do_set_routing_mode
    from hubbub.routing.models import RoutingMode

    org = make_org()
    account = make_account(org)
    supervisor = make_agent(org, "sue", role=Role.SUPERVISOR, online=False)
    do_set_routing_mode(supervisor, org.departments.get(slug="customer-service"), RoutingMode.PUSH)
    cases = [make_case(org, account, priority=Priority.values[n % 4], due_in_minutes=n) for n in range(60)]
    pullers = [make_agent(org, f"puller{n}", capacity=CAPACITY) for n in range(8)]
    make_agent(org, "pushed-only", capacity=CAPACITY, departments=("customer-service",))
    for n in range(4):
        make_agent(org, f"idle{n}", capacity=CAPACITY)
    start = threading.Barrier(len(pullers) + 4)
    handed: list[int] = []
    errors: list[BaseException] = []
    pushed: list[int] = []

    def pusher():
        try:
            start.wait(timeout=30)
            for _ in range(5):
                pushed.append(do_push_assign(org.pk))
        except BaseException as exc:
            errors.append(exc)
        finally:
            connections.close_all()

    threads = [threading.Thread(target=_ask_until_refused, args=(m, start, handed, errors)) for m in pullers]
    threads += [threading.Thread(target=pusher) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    assert not any(thread.is_alive() for thread in threads)

    assert errors == []
    assert len(handed) == len(set(handed)), "next case handed a case out twice"
    assigned = Case.objects.filter(assignee__isnull=False)
    assert assigned.count() == len(handed) + sum(pushed)
    # A round skips agents another round or a "next case" has locked; a quiet round fills them:
    # 13 agents x 3 = 39 places for 60 cases.
    do_push_assign(org.pk)
    assert assigned.count() == 13 * CAPACITY
    assert max(Counter(assigned.values_list("assignee_id", flat=True)).values()) == CAPACITY
    active = Assignment.objects.filter(released_at__isnull=True)
    assert active.count() == assigned.count()
    assert set(active.values_list("case_id", "user_id")) == set(assigned.values_list("id", "assignee_id"))
    assert Case.objects.filter(pk__in=[c.pk for c in cases], assignee__isnull=True).count() == 60 - 13 * CAPACITY
