"""Who may see and change crisis mode. Every member sees which crisis modes are in force (their
public replies wait for approval); supervisors, admins and the PR department see alerts and
notifications; only supervisors and admins act. Anything else is a 404."""

from __future__ import annotations

from django.http import Http404

from hubbub.accounts.models import Department, Membership
from hubbub.crisis.models import CrisisAlert, CrisisMode
from hubbub.inbox.access import check_supervisor, parse_id


def access_alert(membership: Membership, alert_id) -> CrisisAlert:
    check_supervisor(membership)
    alert = (
        CrisisAlert.objects.select_related("organization")
        .filter(organization_id=membership.organization_id, pk=parse_id(alert_id))
        .first()
    )
    if alert is None:
        raise Http404("no such alert")
    return alert


def access_mode(membership: Membership, mode_id) -> CrisisMode:
    check_supervisor(membership)
    mode = (
        CrisisMode.objects.select_related("organization")
        .filter(organization_id=membership.organization_id, pk=parse_id(mode_id))
        .first()
    )
    if mode is None:
        raise Http404("no such crisis mode")
    return mode


def access_crisis_queue(membership: Membership, department_id) -> Department | None:
    """The dedicated queue chosen on the form: any department of the organization, or none."""
    check_supervisor(membership)
    if not department_id:
        return None
    department = Department.objects.filter(
        organization_id=membership.organization_id, pk=parse_id(department_id)
    ).first()
    if department is None:
        raise Http404("no such department")
    return department
