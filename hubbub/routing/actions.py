"""Assignment: "next case" (pull), push assignment, availability, and requeueing cases agents
left behind.

No case is ever handed to two agents. On PostgreSQL each department's queue is read in index
order with SELECT … FOR UPDATE SKIP LOCKED (hubbub.routing.postgres), so agents asking at once
each lock a different head of queue instead of waiting on one another; on SQLite the IMMEDIATE
transaction takes the database's write lock first, so requests run one at a time. Either way the
hand-out itself is a conditional UPDATE (still unassigned), which would refuse a second taker
even if the locking were bypassed, and the routing Assignment table has a unique constraint on
the active holder of a case.
"""

from __future__ import annotations

import logging
from collections import defaultdict
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from django.db import connection, transaction
from django.db.models import Count, Exists, F, OuterRef, Q, QuerySet, Subquery
from django.utils import timezone

from hubbub.accounts.models import Availability, Department, Membership, Organization
from hubbub.governance.actions import do_audit
from hubbub.inbox.models import OPEN_STATUSES, WORKING_STATUSES, Case, CaseStatus, Customer, Message, Note
from hubbub.routing import postgres
from hubbub.routing.models import Assignment, DepartmentRouting, ReleaseReason, RoutingMode
from hubbub.routing.rotation import Agent, Waiting
from hubbub.routing.rotation import plan as rotation_plan

log = logging.getLogger(__name__)

# A customer whose latest agent reply (Customer.last_agent) is this recent is that agent's
# customer ("sticky").
STICKY_WINDOW = timedelta(days=7)
# Stickiness looks at the agent's most recently answered customers only, so that an agent with a
# busy week does not make every "next case" walk hundreds of customers.
STICKY_CUSTOMERS = 100
# How long a sticky customer's new case waits for their agent before anyone may take it.
STICKY_HOLD = timedelta(minutes=15)
# An agent holding a case this long without a reply or a note gives it back to the queue.
DEFAULT_IDLE_LIMIT = timedelta(minutes=30)
HEAD_FIELDS = ("id", "priority", "first_response_due_at")


class RoutingError(Exception):
    """Why an agent got no case; the message is shown to them."""


@dataclass(frozen=True)
class NextCase:
    case_id: int
    route: str  # "sticky" (their own customer) or "queue"


def open_load(membership: Membership) -> int:
    """Cases the agent holds that still need them (including those waiting on the customer)."""
    return Case.objects.filter(
        organization_id=membership.organization_id, assignee_id=membership.user_id, status__in=OPEN_STATUSES
    ).count()


def _skills(membership: Membership) -> Q:
    # Unlabelled cases (no language or intent detected) stay workable by everyone.
    condition = Q()
    if membership.languages:
        condition &= Q(language__in=membership.languages) | Q(language="")
    if membership.channels:
        condition &= Q(account__network__in=membership.channels)
    if membership.topics:
        condition &= Q(intent__in=membership.topics) | Q(intent="")
    return condition


def _queue(membership: Membership, departments: list[int] | int) -> QuerySet[Case]:
    in_departments = Q(department_id__in=departments) if isinstance(departments, list) else Q(department_id=departments)
    return (
        Case.objects.filter(
            in_departments,
            organization_id=membership.organization_id,
            status__in=WORKING_STATUSES,
            assignee__isnull=True,
        )
        .filter(_skills(membership))
        .order_by("priority", F("first_response_due_at").asc(nulls_last=True), "id")
    )


def _lock_candidates(queryset: QuerySet[Case]) -> list[Case]:
    return list(queryset.select_for_update(skip_locked=True, of=("self",)).only(*HEAD_FIELDS)[:1])


def _take(case_id: int, user_id: int) -> bool:
    """Hand the case over if it is still free; False when someone else got it first."""
    taken = Case.objects.filter(pk=case_id, assignee__isnull=True, status__in=WORKING_STATUSES).update(
        assignee_id=user_id,
        status=CaseStatus.OPEN,
    )
    return taken == 1


def _queue_key(case: Case) -> tuple:
    due = case.first_response_due_at
    return (case.priority, due is None, due or datetime.min.replace(tzinfo=UTC), case.id)


def do_next_case(membership: Membership) -> NextCase:
    """Give the agent the most urgent unassigned working case they may work.

    Their own customers come first (stickiness); otherwise the head of their departments' queues,
    skipping cases held a while for another online agent whose customer wrote.
    """
    now = timezone.now()
    if connection.vendor == "postgresql":
        return _next_case_postgresql(membership.pk, now)
    return _next_case_portable(membership, now)


@transaction.atomic
def _next_case_portable(membership: Membership, now: datetime) -> NextCase:
    # One request per agent at a time, so two clicks cannot both pass the capacity check.
    # of=self: locking the organization row too would make every agent queue behind one another.
    membership = (
        Membership.objects.select_for_update(of=("self",)).select_related("organization", "user").get(pk=membership.pk)
    )
    if not membership.is_online:
        raise RoutingError(_REFUSALS["away"])
    department_ids = sorted(membership.visible_department_ids())
    if not department_ids:
        raise RoutingError(_REFUSALS["departments"])
    if open_load(membership) >= membership.capacity:
        raise RoutingError(_REFUSALS["capacity"].format(capacity=membership.capacity))
    picked = _pick_portable(membership, department_ids, now)
    if picked is None:
        raise RoutingError(_REFUSALS["empty"])
    case_id, route = picked
    _record_spell(membership.organization_id, case_id, membership.user_id, route, now)
    do_audit(membership.organization, membership.user, "case.routed", Case(pk=case_id), route=route)
    return NextCase(case_id=case_id, route=route)


_REFUSALS = {
    "away": "you are away: go online to take cases",
    "capacity": "you already hold {capacity} open cases, your capacity",
    "departments": "you work no department",
    "empty": "no case is waiting that you may work",
}


def _next_case_postgresql(membership_id: int, now: datetime) -> NextCase:
    """The same hand-out in one round trip of two prepared statements (see hubbub.routing.postgres):
    with 50 agents asking at once on two cores, the Python and round trips per call are what
    everyone waits on. Its own transaction unless the caller has one."""
    try:
        case_id, route = postgres.hand_out(
            membership_id,
            now,
            sticky_window=STICKY_WINDOW,
            sticky_hold=STICKY_HOLD,
            sticky_customers=STICKY_CUSTOMERS,
        )
    except postgres.Refusal as refusal:
        raise RoutingError(_REFUSALS[refusal.reason].format(capacity=refusal.capacity)) from None
    return NextCase(case_id=case_id, route=route)


def _record_spell(organization_id: int, case_id: int, user_id: int, route: str, now: datetime) -> None:
    # A spell the inbox ended (unassigned by hand) but requeue has not yet closed.
    Assignment.objects.filter(case_id=case_id, released_at__isnull=True).update(
        released_at=now, release_reason=ReleaseReason.DONE
    )
    Assignment.objects.create(
        organization_id=organization_id, case_id=case_id, user_id=user_id, route=route, assigned_at=now
    )


def _pick_portable(membership: Membership, department_ids: list[int], now: datetime) -> tuple[int, str] | None:
    """The ORM version, for SQLite: there the IMMEDIATE transaction holds the database's write
    lock, so nobody else can hand out a case between our read and our UPDATE."""
    mine = Customer.objects.filter(
        organization_id=membership.organization_id,
        last_agent_id=membership.user_id,
        last_answered_at__gte=now - STICKY_WINDOW,
    ).order_by("-last_answered_at")
    sticky = _lock_candidates(
        _queue(membership, department_ids).filter(customer_id__in=mine.values("pk")[:STICKY_CUSTOMERS])
    )
    if sticky and _take(sticky[0].pk, membership.user_id):
        return sticky[0].pk, "sticky"
    others_online = Membership.objects.filter(
        organization_id=membership.organization_id, availability=Availability.ONLINE
    ).exclude(pk=membership.pk)
    held_for_another = Q(
        last_message_at__gt=now - STICKY_HOLD,
        customer__last_answered_at__gte=now - STICKY_WINDOW,
        customer__last_agent_id__in=others_online.values("user_id"),
    )
    # Each department's queue is read in its own index order (case_queue), then the heads are
    # compared: one ORDER BY across several departments would sort all their cases instead.
    heads = []
    for department_id in department_ids:
        queue = _queue(membership, department_id).exclude(held_for_another & Q(customer__last_agent__isnull=False))
        heads += _lock_candidates(queue)
    for head in sorted(heads, key=_queue_key):
        if _take(head.pk, membership.user_id):
            return head.pk, "queue"
    return None


@transaction.atomic
def do_set_availability(membership: Membership, availability: str) -> Membership:
    if availability not in Availability.values:
        raise RoutingError(f"unknown availability {availability!r}")
    membership = (
        Membership.objects.select_for_update(of=("self",)).select_related("organization", "user").get(pk=membership.pk)
    )
    if membership.availability != availability:
        membership.availability = availability
        membership.availability_changed_at = timezone.now()
        membership.save(update_fields=["availability", "availability_changed_at"])
        do_audit(membership.organization, membership.user, "agent.availability", membership, availability=availability)
        if availability == Availability.ONLINE:
            # In a push department, an agent who comes online gets work now, not at the next minute's push.
            try:
                do_push_assign(membership.organization_id)  # its own savepoint: a failure undoes only the push
            except Exception:
                log.exception("pushing cases to %s failed; the worker tries again within a minute", membership.pk)
    return membership


def _release(assignments: list[Assignment], reason: str, now: datetime) -> int:
    released = 0
    for assignment in assignments:
        case = assignment.case
        # Only hand back what the agent still holds and still has to act on.
        requeued = Case.objects.filter(pk=case.pk, assignee_id=assignment.user_id, status__in=WORKING_STATUSES).update(
            assignee=None
        )
        Assignment.objects.filter(pk=assignment.pk).update(released_at=now, release_reason=reason)
        if requeued:
            released += 1
            do_audit(case.organization, None, "case.requeued", case, reason=reason, agent=assignment.user_id)
    return released


@transaction.atomic
def do_requeue_idle(
    organization_id: int, idle_limit: timedelta = DEFAULT_IDLE_LIMIT, now: datetime | None = None
) -> int:
    """Put back in the queue the cases of agents who went away, or who held a case past
    `idle_limit` without replying or writing a note. Returns how many cases were requeued."""
    now = now or timezone.now()
    cutoff = now - idle_limit
    active = Assignment.objects.filter(organization_id=organization_id, released_at__isnull=True).select_related(
        "case__organization"
    )
    # Cases that were resolved, transferred or reassigned in the inbox end their spell quietly.
    finished = active.exclude(case__assignee_id=F("user_id"), case__status__in=WORKING_STATUSES)
    finished.update(released_at=now, release_reason=ReleaseReason.DONE)

    away_users = Membership.objects.filter(organization_id=organization_id, availability=Availability.AWAY).values(
        "user_id"
    )
    away = list(active.filter(user_id__in=away_users).select_for_update(of=("self",)))
    count = _release(away, ReleaseReason.AWAY, now)

    worked_since = Exists(
        Message.objects.filter(case_id=OuterRef("case_id"), author_user_id=OuterRef("user_id"), created_at__gte=cutoff)
    ) | Exists(Note.objects.filter(case_id=OuterRef("case_id"), author_id=OuterRef("user_id"), created_at__gte=cutoff))
    idle = list(
        active.filter(assigned_at__lt=cutoff)
        .exclude(user_id__in=away_users)
        .exclude(worked_since)
        .select_for_update(of=("self",))
    )
    return count + _release(idle, ReleaseReason.IDLE, now)


# Push reads at most this many waiting cases of a department per round (more when its agents have
# more room), so that a round over a long queue stays short; what no agent may work stays behind.
PUSH_SCAN = 100


@transaction.atomic
def do_set_routing_mode(membership: Membership, department: Department, mode: str) -> DepartmentRouting:
    """A supervisor switches a department they supervise between pull and push."""
    if mode not in RoutingMode.values:
        raise RoutingError(f"unknown assignment mode {mode!r}")
    if department.organization_id != membership.organization_id:
        raise RoutingError("no such department")
    setting, _ = DepartmentRouting.objects.select_for_update().get_or_create(department=department)
    if setting.mode != mode:
        setting.mode = mode
        setting.updated_at = timezone.now()
        setting.updated_by = membership.user
        setting.save(update_fields=["mode", "updated_at", "updated_by"])
        do_audit(membership.organization, membership.user, "department.routing_mode", department, mode=mode)
    return setting


@transaction.atomic
def do_push_assign(organization_id: int, now: datetime | None = None) -> int:
    """Hand the waiting cases of the organization's push departments to their online agents with
    room and the skills for them: round robin, the customer's own agent first (see
    hubbub.routing.rotation). The worker calls it after each batch of posts that opened cases, and
    every minute's housekeeping after requeueing the cases of agents who went away (or came back
    online). Returns how many cases were assigned.

    Safe beside "next case" and other workers: push departments, agents and cases are all locked
    with SKIP LOCKED (one busy elsewhere is left for the next round), an agent's room is counted
    after their row is locked, and each hand-out is a conditional UPDATE.
    """
    now = now or timezone.now()
    departments = list(
        DepartmentRouting.objects.filter(department__organization_id=organization_id, mode=RoutingMode.PUSH)
        .select_for_update(skip_locked=True, of=("self",))
        .values_list("department_id", flat=True)
    )
    if not departments:
        return 0
    rotation = _push_rotation(organization_id, departments)
    room = {department: 0 for department in departments}
    for agent in rotation:
        for department in agent.departments:
            room[department] += max(agent.room, 0)
    waiting = []
    for department, space in room.items():
        if space > 0:
            waiting += _push_waiting(organization_id, department, max(PUSH_SCAN, 4 * space), now)
    waiting.sort(key=lambda item: item[0])
    choices = rotation_plan([case for _, case in waiting], rotation)
    taken = [choice for choice in choices if _take(choice.case_id, choice.user_id)]
    if not taken:
        return 0
    Assignment.objects.filter(case_id__in=[c.case_id for c in taken], released_at__isnull=True).update(
        released_at=now, release_reason=ReleaseReason.DONE
    )
    Assignment.objects.bulk_create(
        Assignment(organization_id=organization_id, case_id=choice.case_id, user_id=choice.user_id, route=choice.route)
        for choice in taken
    )
    organization = Organization(pk=organization_id)
    for choice in taken:
        do_audit(organization, None, "case.routed", Case(pk=choice.case_id), route=choice.route, agent=choice.user_id)
    return len(taken)


def _push_rotation(organization_id: int, departments: list[int]) -> list[Agent]:
    """The online agents of the push departments, least recently handed a case first, each with
    the room they have left. Their rows stay locked until the round commits."""
    links = Membership.departments.through.objects.filter(department_id__in=departments)
    last_assigned = Subquery(
        Assignment.objects.filter(user_id=OuterRef("user_id"), organization_id=organization_id)
        .order_by("-assigned_at")
        .values("assigned_at")[:1]
    )
    members = list(
        Membership.objects.filter(
            organization_id=organization_id,
            availability=Availability.ONLINE,
            pk__in=links.values("membership_id"),
        )
        .select_for_update(skip_locked=True, of=("self",))
        .annotate(last_assigned=last_assigned)
        .order_by("pk")
    )
    if not members:
        return []
    worked = defaultdict(set)
    for membership_id, department_id in links.filter(membership_id__in=[m.pk for m in members]).values_list(
        "membership_id", "department_id"
    ):
        worked[membership_id].add(department_id)
    loads = dict(
        Case.objects.filter(
            organization_id=organization_id, assignee_id__in=[m.user_id for m in members], status__in=OPEN_STATUSES
        )
        .values_list("assignee_id")
        .annotate(n=Count("id"))
        .order_by()
    )
    never = datetime.min.replace(tzinfo=UTC)
    members.sort(key=lambda m: (m.last_assigned or never, m.pk))
    return [
        Agent(
            user_id=m.user_id,
            departments=frozenset(worked[m.pk]),
            room=m.capacity - loads.get(m.user_id, 0),
            languages=frozenset(m.languages),
            channels=frozenset(m.channels),
            topics=frozenset(m.topics),
        )
        for m in members
    ]


def _push_waiting(organization_id: int, department_id: int, limit: int, now: datetime) -> list[tuple[tuple, Waiting]]:
    """The head of one department's queue, locked (SKIP LOCKED: a case someone is taking right now
    is theirs), with what push needs to choose an agent, keyed by queue order."""
    rows = (
        Case.objects.filter(
            organization_id=organization_id,
            department_id=department_id,
            status__in=WORKING_STATUSES,
            assignee__isnull=True,
        )
        .order_by("priority", F("first_response_due_at").asc(nulls_last=True), "id")
        .select_for_update(skip_locked=True, of=("self",))
        .annotate(
            network=F("account__network"),
            last_agent=F("customer__last_agent_id"),
            last_answered_at=F("customer__last_answered_at"),
        )
        .values_list(
            "id",
            "priority",
            "first_response_due_at",
            "language",
            "intent",
            "network",
            "last_agent",
            "last_answered_at",
            "last_message_at",
        )[:limit]
    )
    sticky_since, hold_since = now - STICKY_WINDOW, now - STICKY_HOLD
    never = datetime.max.replace(tzinfo=UTC)
    return [
        (
            (priority, due or never, case_id),
            Waiting(
                case_id=case_id,
                department_id=department_id,
                network=network,
                language=language,
                intent=intent,
                # The customer's agent only if they answered within the sticky window.
                last_agent=last_agent if answered_at is not None and answered_at >= sticky_since else None,
                recent=last_message_at > hold_since,
            ),
        )
        for case_id, priority, due, language, intent, network, last_agent, answered_at, last_message_at in rows
    ]
