"""Assignment: "next case" (pull), availability, and requeueing cases agents left behind.

No case is ever handed to two agents. On PostgreSQL each department's queue is read in index
order with SELECT … FOR UPDATE SKIP LOCKED (one statement, see _PICK), so agents asking at once
each lock a different head of queue instead of waiting on one another; on SQLite the IMMEDIATE
transaction takes the database's write lock first, so requests run one at a time. Either way the
hand-out itself is a conditional UPDATE (still unassigned), which would refuse a second taker
even if the locking were bypassed, and the routing Assignment table has a unique constraint on
the active holder of a case.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from django.db import connection, transaction
from django.db.models import Exists, F, OuterRef, Q, QuerySet, Subquery
from django.utils import timezone

from hubbub.accounts.models import Availability, Membership
from hubbub.governance.actions import do_audit
from hubbub.inbox.models import OPEN_STATUSES, WORKING_STATUSES, Case, CaseStatus, Direction, Message, Note
from hubbub.routing.models import Assignment, ReleaseReason

# A customer answered by an agent within this window is that agent's customer ("sticky").
STICKY_WINDOW = timedelta(days=7)
# Stickiness looks at the customers of the agent's latest replies only, so that an agent with a
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


def _last_answered_by() -> Subquery:
    """The agent who last replied to the case's customer, within the sticky window."""
    return Subquery(
        Message.objects.filter(
            case__customer_id=OuterRef("customer_id"),
            case__organization_id=OuterRef("organization_id"),
            direction=Direction.OUTBOUND,
            author_user__isnull=False,
            created_at__gte=timezone.now() - STICKY_WINDOW,
        )
        .order_by("-created_at", "-id")
        .values("author_user_id")[:1]
    )


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


def _take(case_id: int, membership: Membership) -> bool:
    """Hand the case over if it is still free; False when someone else got it first."""
    taken = Case.objects.filter(pk=case_id, assignee__isnull=True, status__in=WORKING_STATUSES).update(
        assignee_id=membership.user_id,
        status=CaseStatus.OPEN,
    )
    return taken == 1


def _queue_key(case: Case) -> tuple:
    due = case.first_response_due_at
    return (case.priority, due is None, due or datetime.min.replace(tzinfo=UTC), case.id)


@transaction.atomic
def do_next_case(membership: Membership) -> NextCase:
    """Give the agent the most urgent unassigned working case they may work.

    Their own customers come first (stickiness); otherwise the head of their departments' queues,
    skipping cases held a while for another online agent whose customer wrote.
    """
    # One request per agent at a time, so two clicks cannot both pass the capacity check.
    # of=self: locking the organization row too would make every agent queue behind one another.
    membership = (
        Membership.objects.select_for_update(of=("self",)).select_related("organization", "user").get(pk=membership.pk)
    )
    if not membership.is_online:
        raise RoutingError("you are away: go online to take cases")
    if open_load(membership) >= membership.capacity:
        raise RoutingError(f"you already hold {membership.capacity} open cases, your capacity")
    department_ids = sorted(membership.visible_department_ids())
    if not department_ids:
        raise RoutingError("you work no department")
    pick = _pick_postgresql if connection.vendor == "postgresql" else _pick_portable
    picked = pick(membership, department_ids, timezone.now())
    if picked is None:
        raise RoutingError("no case is waiting that you may work")
    case_id, route = picked
    # A spell the inbox ended (unassigned by hand) but requeue has not yet closed.
    Assignment.objects.filter(case_id=case_id, released_at__isnull=True).update(
        released_at=timezone.now(), release_reason=ReleaseReason.DONE
    )
    Assignment.objects.create(
        organization_id=membership.organization_id, case_id=case_id, user_id=membership.user_id, route=route
    )
    do_audit(membership.organization, membership.user, "case.routed", Case(pk=case_id), route=route)
    return NextCase(case_id=case_id, route=route)


def _pick_portable(membership: Membership, department_ids: list[int], now: datetime) -> tuple[int, str] | None:
    """The ORM version, for SQLite: there the IMMEDIATE transaction holds the database's write
    lock, so nobody else can hand out a case between our read and our UPDATE."""
    mine = _queue(membership, department_ids).annotate(last_agent=_last_answered_by())
    sticky = _lock_candidates(
        mine.filter(
            customer_id__in=Message.objects.filter(
                case__organization_id=membership.organization_id,
                author_user_id=membership.user_id,
                direction=Direction.OUTBOUND,
                created_at__gte=now - STICKY_WINDOW,
            ).values("case__customer_id"),
            last_agent=membership.user_id,
        )
    )
    if sticky and _take(sticky[0].pk, membership):
        return sticky[0].pk, "sticky"
    others_online = Membership.objects.filter(
        organization_id=membership.organization_id, availability=Availability.ONLINE
    ).exclude(pk=membership.pk)
    held_for_another = Q(last_message_at__gt=now - STICKY_HOLD) & Q(last_agent__in=others_online.values("user_id"))
    # Each department's queue is read in its own index order (case_queue), then the heads are
    # compared: one ORDER BY across several departments would sort all their cases instead.
    heads = []
    for department_id in department_ids:
        queue = (
            _queue(membership, department_id)
            .annotate(last_agent=_last_answered_by())
            .exclude(held_for_another & Q(last_agent__isnull=False))
        )
        heads += _lock_candidates(queue)
    for head in sorted(heads, key=_queue_key):
        if _take(head.pk, membership):
            return head.pk, "queue"
    return None


# The same choice as _pick_portable in one statement, for PostgreSQL, where many agents ask at
# once: every department's head is read in index order (case_queue) by a LATERAL subquery with
# FOR UPDATE SKIP LOCKED, so concurrent requests lock different cases instead of waiting; the
# agent's own customers' cases rank first; the UPDATE hands over the best one. Written as SQL
# because the ORM cannot express LATERAL, and compiling the equivalent querysets cost more
# than the database's work.
_LAST_AGENT = """(
    SELECT m.author_user_id FROM inbox_message m JOIN inbox_case answered ON answered.id = m.case_id
    WHERE answered.customer_id = c.customer_id AND answered.organization_id = %(organization)s
      AND m.direction = %(outbound)s AND m.author_user_id IS NOT NULL AND m.created_at >= %(sticky_since)s
    ORDER BY m.created_at DESC, m.id DESC LIMIT 1)"""
_WORKABLE = """c.organization_id = %(organization)s AND c.status = ANY(%(working)s::text[]) AND c.assignee_id IS NULL"""
_PICK = f"""
WITH sticky AS (
    SELECT c.id, c.priority, c.first_response_due_at, 0 AS rank FROM inbox_case c
    WHERE c.department_id = ANY(%(departments)s::bigint[]) AND {_WORKABLE} {{skills}}
      AND c.customer_id IN (
          SELECT answered.customer_id FROM (
              SELECT m.case_id FROM inbox_message m
              WHERE m.author_user_id = %(user)s AND m.direction = %(outbound)s AND m.created_at >= %(sticky_since)s
              ORDER BY m.created_at DESC LIMIT %(sticky_customers)s
          ) AS replies JOIN inbox_case answered ON answered.id = replies.case_id
          WHERE answered.organization_id = %(organization)s)
      AND {_LAST_AGENT} = %(user)s
    ORDER BY c.priority, c.first_response_due_at, c.id
    LIMIT 1 FOR UPDATE OF c SKIP LOCKED
), heads AS (
    SELECT head.*, 1 AS rank FROM unnest(%(departments)s::bigint[]) AS departments(id) CROSS JOIN LATERAL (
        SELECT c.id, c.priority, c.first_response_due_at FROM inbox_case c
        WHERE c.department_id = departments.id AND {_WORKABLE} {{skills}}
          AND NOT (c.last_message_at > %(hold_since)s AND COALESCE({_LAST_AGENT} IN (
              SELECT user_id FROM accounts_membership WHERE organization_id = %(organization)s
                AND availability = %(online)s AND id <> %(membership)s), FALSE))
        ORDER BY c.priority, c.first_response_due_at, c.id
        LIMIT 1 FOR UPDATE OF c SKIP LOCKED
    ) AS head
), best AS (
    SELECT id, rank FROM (SELECT * FROM sticky UNION ALL SELECT * FROM heads) AS candidates
    ORDER BY rank, priority, first_response_due_at, id LIMIT 1
)
UPDATE inbox_case SET assignee_id = %(user)s, status = %(open)s FROM best
WHERE inbox_case.id = best.id AND inbox_case.assignee_id IS NULL
RETURNING inbox_case.id, best.rank
"""  # noqa: S608 - fixed fragments only; every value is a parameter


def _pick_postgresql(membership: Membership, department_ids: list[int], now: datetime) -> tuple[int, str] | None:
    skills = []
    if membership.languages:
        skills.append("AND (c.language = ANY(%(languages)s) OR c.language = '')")
    if membership.channels:
        skills.append(
            "AND c.account_id IN (SELECT id FROM connectors_socialaccount "
            "WHERE organization_id = %(organization)s AND network = ANY(%(channels)s))"
        )
    if membership.topics:
        skills.append("AND (c.intent = ANY(%(topics)s) OR c.intent = '')")
    params = {
        "organization": membership.organization_id,
        "membership": membership.pk,
        "user": membership.user_id,
        "departments": department_ids,
        "working": list(WORKING_STATUSES),
        "open": CaseStatus.OPEN.value,
        "online": Availability.ONLINE.value,
        "outbound": Direction.OUTBOUND.value,
        "sticky_since": now - STICKY_WINDOW,
        "hold_since": now - STICKY_HOLD,
        "languages": membership.languages,
        "channels": membership.channels,
        "topics": membership.topics,
        "sticky_customers": STICKY_CUSTOMERS,
    }
    connection.ensure_connection()
    # Django binds values client-side, so PostgreSQL would plan this statement afresh on every
    # call; a prepared statement on the same connection (and transaction) plans it once.
    with connection.connection.cursor() as cursor:
        # The planner's cost estimate for a million-case queue crosses the JIT threshold, and
        # compiling the plan takes seconds while running it takes a millisecond.
        cursor.execute("SET LOCAL jit = off")
        # Only fixed SQL fragments are spliced in; every value goes as a parameter.
        cursor.execute(_PICK.format(skills=" ".join(skills)), params, prepare=True)
        row = cursor.fetchone()
    if row is None:
        return None
    return row[0], "sticky" if row[1] == 0 else "queue"


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
