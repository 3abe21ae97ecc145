"""SLA warnings and escalation: what the worker's housekeeping does about clocks near or past due.

`do_escalate_due` looks at the cases whose `sla_alert_at` has come. For each clock (first response,
next response, resolution) it records a warning once a configured fraction of the target has
elapsed, and on a breach walks the playbook's escalation chain: notify the supervisors, raise the
priority, reassign, notify a department. Each step is its own transaction that writes an
Escalation row (unique per case, clock, due time and position) with the step's effect and its
audit event, so a run repeated, or killed halfway and run again, takes every step exactly once.
The schedule itself is pure (hubbub.lib.sla.schedule / due_alerts / next_look).
"""

from __future__ import annotations

import datetime as dt
import logging
from dataclasses import dataclass

from django.db import IntegrityError, transaction
from django.db.models import Q
from django.utils import timezone

from hubbub.accounts.models import Department, Membership, Organization, Role
from hubbub.governance.actions import do_audit
from hubbub.inbox.models import (
    WORKING_STATUSES,
    Case,
    CaseStatus,
    Direction,
    Escalation,
    EscalationKind,
    Priority,
)
from hubbub.lib import sla
from hubbub.lib.playbook import default_policy
from hubbub.playbook.actions import active_playbook
from hubbub.playbook.models import HandOff

log = logging.getLogger(__name__)

# Cases looked at per run; the rest wait for the next minute (oldest alert first).
BATCH_SIZE = 500
# Steps that fell due longer ago than this are not taken (the badge still shows the breach): an
# import of old posts must not page every supervisor, nor raise the priority of history.
STALE_AFTER = dt.timedelta(days=1)


def sla_policy(organization_id: int) -> sla.Policy:
    """The organization's SLA policy: its playbook's, else 24/7 with the default warning and chain."""
    _version, playbook = active_playbook(organization_id)
    return playbook.sla if playbook is not None else default_policy(sla.Calendar.always_open())


def do_escalate_due(organization: Organization | int, now: dt.datetime | None = None) -> int:
    """Take every warning and escalation step that has fallen due. Returns how many were taken."""
    organization_id = organization if isinstance(organization, int) else organization.pk
    now = now or timezone.now()
    policy = sla_policy(organization_id)
    case_ids = list(
        Case.objects.filter(organization_id=organization_id, status__in=WORKING_STATUSES, sla_alert_at__lte=now)
        .order_by("sla_alert_at", "id")
        .values_list("id", flat=True)[:BATCH_SIZE]
    )
    taken = 0
    for case_id in case_ids:
        try:
            taken += _escalate_case(case_id, policy, now)
        except Exception:
            # One case's failure must not hold up the others; its alert time stays, so it is retried.
            log.exception("escalating case %s failed", case_id)
    return taken


def _escalate_case(case_id: int, policy: sla.Policy, now: dt.datetime) -> int:
    case = Case.objects.get(pk=case_id)
    done = _done(case_id)
    taken = 0
    alerts = sla.schedule(case.running_clocks(), policy.escalation, policy.calendar)
    for alert in sla.due_alerts(alerts, now, done, STALE_AFTER):
        if _take(case_id, alert, policy, now):
            taken += 1
    # Last, so that a run killed before here leaves the case due for the next run.
    with transaction.atomic():
        case = Case.objects.select_for_update().get(pk=case_id)
        clocks = case.running_clocks()
        alerts = sla.schedule(clocks, policy.escalation, policy.calendar)
        case.sla_alert_at = sla.next_look(clocks, alerts, now, _done(case_id), STALE_AFTER)
        case.sla_flag = sla.flag(clocks, now).value
        case.save(update_fields=["sla_alert_at", "sla_flag"])
    return taken


def _done(case_id: int) -> set:
    return {
        (clock, due_at, position)
        for clock, due_at, position in Escalation.objects.filter(case_id=case_id).values_list(
            "clock", "due_at", "position"
        )
    }


def _take(case_id: int, alert: sla.Alert, policy: sla.Policy, now: dt.datetime) -> bool:
    """One warning or step, with its record, in one transaction. False when it no longer applies or
    another run took it first."""
    try:
        with transaction.atomic():
            case = Case.objects.select_for_update().select_related("organization", "department").get(pk=case_id)
            # The brand may have answered, or the case moved on, since the run read it.
            current = {(str(c.name), c.due) for c in case.running_clocks()}
            if (str(alert.clock), alert.due) not in current:
                return False
            if Escalation.objects.filter(
                case_id=case_id, clock=alert.clock, due_at=alert.due, position=alert.position
            ).exists():
                return False
            kind, department, detail = _perform(case, alert)
            Escalation.objects.create(
                organization_id=case.organization_id,
                case=case,
                clock=alert.clock,
                due_at=alert.due,
                position=alert.position,
                kind=kind,
                department=department,
                detail=detail,
                created_at=now,
            )
            action = "case.sla_warning" if kind == EscalationKind.WARNING else f"case.sla_{kind}"
            do_audit(
                case.organization,
                None,
                action,
                case,
                **{"clock": str(alert.clock), "due": alert.due.isoformat(), **detail},
            )
    except IntegrityError:
        return False  # another worker recorded this step in the meantime (and took it)
    return True


def _perform(case: Case, alert: sla.Alert) -> tuple[str, Department | None, dict]:
    """Do the step to the (locked) case; returns what to record: kind, department told, details."""
    step = alert.step
    if step is None:
        case.sla_flag = sla.Flag.WARNING.value
        case.save(update_fields=["sla_flag"])
        return EscalationKind.WARNING, case.department, {}
    if case.sla_flag != sla.Flag.BREACHED:
        case.sla_flag = sla.Flag.BREACHED.value
        case.save(update_fields=["sla_flag"])
    if step.kind == sla.StepKind.NOTIFY_SUPERVISOR:
        supervisors = list(_supervisors(case).values_list("user_id", flat=True))
        return EscalationKind.NOTIFY_SUPERVISOR, case.department, {"supervisors": supervisors}
    if step.kind == sla.StepKind.RAISE_PRIORITY:
        before = case.priority
        # Not case.set_priority: the clocks keep their due times, because the chain's steps are
        # recorded against the due time that breached, and a new one would start the chain again.
        case.priority = max(Priority.URGENT, case.priority - 1)
        case.save(update_fields=["priority"])
        return EscalationKind.RAISE_PRIORITY, None, {"before": before, "after": case.priority}
    if step.kind == sla.StepKind.REASSIGN:
        before = case.assignee_id
        target = _supervisors(case).first() if step.to == sla.ReassignTo.SUPERVISOR else None
        case.assignee_id = target.user_id if target is not None else None
        case.save(update_fields=["assignee"])
        return EscalationKind.REASSIGN, None, {"before": before, "after": case.assignee_id, "to": str(step.to)}
    department = Department.objects.filter(organization_id=case.organization_id, slug=step.department).first()
    detail = {"department": step.department}
    if department is None:
        detail["error"] = "no such department"
    elif department.pk != case.department_id:
        # Told of it, the department may read the case and add notes, as after a playbook's notify.
        HandOff.objects.get_or_create(
            case=case,
            department=department,
            defaults={"organization_id": case.organization_id, "rule": f"SLA escalation ({step.department})"},
        )
    return EscalationKind.NOTIFY_DEPARTMENT, department, detail


def _supervisors(case: Case):
    """The case's department's supervisors (and the admins), online ones first."""
    return (
        Membership.objects.filter(organization_id=case.organization_id)
        .filter(Q(role=Role.ADMIN) | Q(role=Role.SUPERVISOR, departments=case.department_id))
        # online before away, supervisors before admins, then the longest-standing
        .order_by("-availability", "-role", "id")
        .distinct()
    )


def notifications_for(membership: Membership, limit: int = 50) -> list[Escalation]:
    """What escalation told this member, newest first: supervisors (and admins) hear of breaches in
    the departments they work; everyone hears of cases escalated to their departments."""
    departments = membership.visible_department_ids()
    told = Q(kind=EscalationKind.NOTIFY_DEPARTMENT, department_id__in=departments)
    if membership.role in (Role.SUPERVISOR, Role.ADMIN):
        told |= Q(kind=EscalationKind.NOTIFY_SUPERVISOR, department_id__in=departments)
    return list(
        Escalation.objects.filter(told, organization_id=membership.organization_id)
        .select_related("case", "department")
        .order_by("-created_at", "-id")[:limit]
    )


# --- the case page ------------------------------------------------------------------------------


@dataclass(frozen=True)
class ClockRow:
    """One line of the case page's SLA panel."""

    name: str
    due: dt.datetime | None
    state: str  # running, warning, breached, paused, met, late, none
    note: str = ""


def case_clocks(case: Case, now: dt.datetime | None = None) -> list[ClockRow]:
    """Every clock of the case as the agent should see it, and the platform's messaging window."""
    now = now or timezone.now()
    paused = case.sla_paused

    def running(name: str, due: dt.datetime | None, warn: dt.datetime | None) -> ClockRow:
        if due is None:
            return ClockRow(name, None, "none")
        if paused:
            return ClockRow(name, due, "paused", "paused while the customer is away; moves later when they write")
        if due <= now:
            return ClockRow(name, due, "breached")
        return ClockRow(name, due, "warning" if warn is not None and warn <= now else "running")

    rows = []
    if case.first_responded_at is not None:
        late = case.first_response_due_at is not None and case.first_responded_at > case.first_response_due_at
        rows.append(ClockRow("First response", case.first_response_due_at, "late" if late else "met"))
    else:
        rows.append(running("First response", case.first_response_due_at, case.first_response_warn_at))
    if case.next_response_due_at is not None:
        rows.append(running("Next response", case.next_response_due_at, case.next_response_warn_at))
    elif case.first_responded_at is not None:
        rows.append(ClockRow("Next response", None, "none", "starts when the customer writes again"))
    if case.status in (CaseStatus.RESOLVED, CaseStatus.CLOSED) and case.resolution_due_at is not None:
        late = (case.resolved_at or now) > case.resolution_due_at
        rows.append(ClockRow("Resolution", case.resolution_due_at, "late" if late else "met"))
    else:
        rows.append(running("Resolution", case.resolution_due_at, case.resolution_warn_at))
    window = platform_window(case)
    if window is not None:
        hours = sla.PLATFORM_WINDOWS[case.account.network] // dt.timedelta(hours=1)
        state = "breached" if window <= now else ("warning" if window - now <= dt.timedelta(hours=2) else "running")
        rows.append(
            ClockRow(
                "Messaging window",
                window,
                state,
                f"{case.account.get_network_display()}: private replies only within "
                f"{hours} h of the customer's last message",
            )
        )
    return rows


def platform_window(case: Case) -> dt.datetime | None:
    """When the network stops taking our private replies (Meta: 24 h after the customer's last message)."""
    if case.account.network not in sla.PLATFORM_WINDOWS:
        return None
    last = (
        case.messages.filter(direction=Direction.INBOUND)
        .order_by("-created_at", "-id")
        .values_list("created_at", flat=True)
        .first()
    )
    return sla.platform_window_closes(case.account.network, last)


def escalation_history(case: Case) -> list[Escalation]:
    return list(case.escalations.select_related("department").order_by("created_at", "id"))
