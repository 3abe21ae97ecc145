"""What agents do to cases. Each action checks the rule it owns and writes an audit event."""

from __future__ import annotations

from django.db import transaction
from django.utils import timezone

from hubbub.accounts.models import Department, Membership
from hubbub.connectors.models import EventState, InboundEvent
from hubbub.governance.actions import do_audit
from hubbub.inbox.models import Case, CaseStatus, Note


class CaseActionError(ValueError):
    pass


@transaction.atomic
def do_claim(case: Case, user) -> None:
    case = Case.objects.select_for_update().get(pk=case.pk)
    if case.assignee_id not in (None, user.pk):
        raise CaseActionError(f"case {case.pk} is already assigned to {case.assignee}")
    case.assignee = user
    if case.status == CaseStatus.NEW:
        case.status = CaseStatus.OPEN
    case.save(update_fields=["assignee", "status"])
    do_audit(case.organization, user, "case.claimed", case)


@transaction.atomic
def do_assign(case: Case, actor, membership: Membership | None) -> None:
    """Assign to a member who works the case's department, or unassign with None."""
    if membership is not None and not (
        membership.sees_all_departments or membership.departments.filter(pk=case.department_id).exists()
    ):
        raise CaseActionError(f"{membership.user} does not work the {case.department} queue")
    case.assignee = membership.user if membership else None
    case.save(update_fields=["assignee"])
    do_audit(case.organization, actor, "case.assigned", case, assignee=case.assignee_id)


@transaction.atomic
def do_add_note(case: Case, user, text: str) -> Note:
    text = text.strip()
    if not text:
        raise CaseActionError("a note needs some text")
    note = Note.objects.create(case=case, author=user, text=text[:10000])
    do_audit(case.organization, user, "case.note_added", case, note=note.pk)
    return note


@transaction.atomic
def do_transfer(case: Case, user, department: Department) -> None:
    """Hand a case to another department's queue; it leaves the agent who held it."""
    if department.organization_id != case.organization_id:
        raise CaseActionError("that department belongs to another organization")
    previous = case.department
    case.department = department
    case.assignee = None
    case.save(update_fields=["department", "assignee"])
    do_audit(case.organization, user, "case.transferred", case, source=previous.slug, destination=department.slug)


@transaction.atomic
def do_resolve(case: Case, user) -> None:
    if case.status in (CaseStatus.RESOLVED, CaseStatus.CLOSED):
        raise CaseActionError(f"case {case.pk} is already {case.get_status_display().lower()}")
    case.status = CaseStatus.RESOLVED
    case.resolved_at = timezone.now()
    case.save(update_fields=["status", "resolved_at"])
    do_audit(case.organization, user, "case.resolved", case)


@transaction.atomic
def do_retry_event(event: InboundEvent, user) -> None:
    """Send a dead-lettered event through the pipeline again."""
    if event.state != EventState.FAILED:
        raise CaseActionError("only failed events can be retried")
    event.state = EventState.PENDING
    event.save(update_fields=["state"])
    do_audit(event.account.organization, user, "event.retried", event, error=event.error[:500])
