"""The Crisis page, the inbox banner, and switching crisis mode on and off."""

from __future__ import annotations

from typing import Any

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.shortcuts import redirect, render
from django.views.decorators.http import require_GET, require_POST

from hubbub.accounts.models import Department
from hubbub.crisis import actions
from hubbub.crisis.access import access_alert, access_crisis_queue, access_mode
from hubbub.crisis.actions import CrisisError
from hubbub.crisis.models import AlertState, CrisisAlert, CrisisMode
from hubbub.governance.models import AuditEvent
from hubbub.inbox.access import can_supervise, check_supervisor
from hubbub.inbox.views import page, partial_login_required, run_action, with_membership
from hubbub.publishing.access import pending_replies

LIST_LIMIT = 50


def _notifications(organization_id: int) -> list[AuditEvent]:
    return list(
        AuditEvent.objects.filter(
            organization_id=organization_id, action__startswith="crisis.", data__has_key="notify"
        ).select_related("actor")[:LIST_LIMIT]
    )


@login_required
@require_GET
@with_membership
def home(request, membership):
    organization_id = membership.organization_id
    supervisor = can_supervise(membership)
    notified = actions.is_notified(membership)
    context: dict[str, Any] = {
        "active": actions.active_modes(organization_id),
        "notified": notified,
        "supervisor": supervisor,
    }
    if notified:
        context["alerts"] = list(
            CrisisAlert.objects.filter(organization_id=organization_id).exclude(state=AlertState.CLOSED)[:LIST_LIMIT]
        )
        context["notifications"] = _notifications(organization_id)
        context["ended"] = list(
            CrisisMode.objects.filter(organization_id=organization_id, ended_at__isnull=False).select_related(
                "started_by", "ended_by"
            )[:10]
        )
    if supervisor:
        context["topics"] = actions.topic_choices(organization_id)
        context["departments"] = Department.objects.filter(organization_id=organization_id).order_by("name")
        context["waiting"] = pending_replies(membership).count()
        context["max_statement"] = actions.MAX_HOLDING_STATEMENT
    return page(request, membership, "crisis/home.html", context)


@partial_login_required
@require_GET
@with_membership
def banner(request, membership):
    """The inbox's banner (loaded by htmx): crisis modes in force, and for those told, open alerts
    and, for supervisors, replies waiting for their approval."""
    context: dict[str, Any] = {"active": actions.active_modes(membership.organization_id)}
    if actions.is_notified(membership):
        context["open_alerts"] = CrisisAlert.objects.filter(
            organization_id=membership.organization_id, state=AlertState.OPEN
        ).count()
    if can_supervise(membership):
        context["waiting"] = pending_replies(membership).count()
    return render(request, "crisis/_banner.html", context)


@login_required
@require_POST
@with_membership
def start(request, membership):
    check_supervisor(membership)
    department = access_crisis_queue(membership, request.POST.get("department", ""))
    alert = access_alert(membership, request.POST["alert"]) if request.POST.get("alert") else None
    topic = request.POST.get("topic", "")
    try:
        mode = actions.do_start_crisis(
            membership.organization,
            request.user,
            topic,
            department=department,
            holding_statement=request.POST.get("holding_statement", ""),
            alert=alert,
        )
    except CrisisError as exc:
        messages.error(request, str(exc))
    else:
        messages.success(request, f"Crisis mode is on for {mode.topic_label}. Public replies now need approval.")
    return redirect("crisis:home")


@login_required
@require_POST
@with_membership
def end(request, membership, mode_id):
    mode = access_mode(membership, mode_id)
    if run_action(request, actions.do_end_crisis, mode, request.user, refusals=(CrisisError,)):
        messages.success(request, f"Crisis mode is off for {mode.topic_label}; the normal playbooks apply again.")
    return redirect("crisis:home")


@login_required
@require_POST
@with_membership
def acknowledge_alert(request, membership, alert_id):
    alert = access_alert(membership, alert_id)
    run_action(request, actions.do_acknowledge_alert, alert, request.user, refusals=(CrisisError,))
    return redirect("crisis:home")


@login_required
@require_POST
@with_membership
def close_alert(request, membership, alert_id):
    alert = access_alert(membership, alert_id)
    run_action(request, actions.do_close_alert, alert, request.user, refusals=(CrisisError,))
    return redirect("crisis:home")
