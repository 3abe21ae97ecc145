"""The supervisor's board: per department, how the queue stands and who is working it."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta

from django.conf import settings
from django.db.models import Count, Min, Q
from django.utils import timezone

from hubbub.accounts.models import Availability, Department, Membership
from hubbub.inbox.access import visible_departments
from hubbub.inbox.models import OPEN_STATUSES, WORKING_STATUSES, Case
from hubbub.routing.models import DepartmentRouting, RoutingMode


def warning_window() -> timedelta:
    """Cases due within this are near breach (until playbook SLA policies give their own)."""
    return timedelta(minutes=getattr(settings, "HUBBUB_SLA_WARNING_MINUTES", 15))


@dataclass
class AgentLoad:
    membership: Membership
    load: int

    @property
    def full(self) -> bool:
        return self.load >= self.membership.capacity


@dataclass
class DepartmentRow:
    department: Department
    waiting: int = 0  # unassigned working cases: the queue depth
    in_progress: int = 0  # working cases an agent holds
    oldest_waiting: datetime | None = None
    near_breach: int = 0
    breached: int = 0
    online: list[AgentLoad] = field(default_factory=list)
    away: int = 0
    mode: str = RoutingMode.PULL  # how cases reach the agents: pull or push

    @property
    def is_push(self) -> bool:
        return self.mode == RoutingMode.PUSH


def department_board(membership: Membership, now: datetime | None = None) -> list[DepartmentRow]:
    now = now or timezone.now()
    rows = {d.pk: DepartmentRow(department=d) for d in visible_departments(membership)}
    if not rows:
        return []
    for department_id, mode in DepartmentRouting.objects.filter(department_id__in=list(rows)).values_list(
        "department_id", "mode"
    ):
        rows[department_id].mode = mode
    unanswered = Q(first_responded_at__isnull=True)
    stats = (
        Case.objects.filter(
            organization_id=membership.organization_id, department_id__in=list(rows), status__in=WORKING_STATUSES
        )
        .values("department_id")
        .annotate(
            waiting=Count("id", filter=Q(assignee__isnull=True)),
            working=Count("id"),
            oldest=Min("opened_at", filter=Q(assignee__isnull=True)),
            near=Count(
                "id",
                filter=unanswered & Q(first_response_due_at__gt=now, first_response_due_at__lte=now + warning_window()),
            ),
            breached=Count("id", filter=unanswered & Q(first_response_due_at__lte=now)),
        )
        .order_by()
    )
    for stat in stats:
        row = rows[stat["department_id"]]
        row.waiting = stat["waiting"]
        row.in_progress = stat["working"] - stat["waiting"]
        row.oldest_waiting = stat["oldest"]
        row.near_breach = stat["near"]
        row.breached = stat["breached"]

    loads = dict(
        Case.objects.filter(
            organization_id=membership.organization_id, status__in=OPEN_STATUSES, assignee__isnull=False
        )
        .values_list("assignee_id")
        .annotate(n=Count("id"))
        .order_by()
    )
    links = Membership.departments.through.objects.filter(
        membership__organization_id=membership.organization_id, department_id__in=list(rows)
    ).select_related("membership__user")
    for link in links.order_by("membership__user__username"):
        member = link.membership
        row = rows[link.department_id]
        if member.availability == Availability.ONLINE:
            row.online.append(AgentLoad(membership=member, load=loads.get(member.user_id, 0)))
        else:
            row.away += 1
    return list(rows.values())
