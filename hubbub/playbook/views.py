"""Playbook pages: parse, authorise (hubbub.playbook.access), call one action, render."""

from __future__ import annotations

from typing import Any

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.http import HttpResponse
from django.shortcuts import redirect, render
from django.views.decorators.http import require_GET, require_POST

from hubbub.inbox.access import can_supervise, visible_departments
from hubbub.inbox.escalation import notifications_for
from hubbub.inbox.views import page, partial_login_required, with_membership
from hubbub.lib.playbook import PlaybookError, parse_yaml
from hubbub.playbook import actions
from hubbub.playbook.access import (
    Scope,
    access_handoff,
    access_scope,
    access_scope_to_edit,
    access_version,
    access_version_to_edit,
    visible_handoffs,
)
from hubbub.playbook.describe import describe
from hubbub.playbook.models import Playbook, PlaybookDraft

MAX_SOURCE = 200_001
# What a department's editor starts from before its first version.
DEPARTMENT_STARTER = """# Posts the intake playbook sends to this department run through these rules; the first that
# matches refines the decision (priority, SLA minutes, tags, approval, templates) or hands the
# post to another department with `department:`.
rules: []
"""


def _versions(membership, scope: Scope):
    return Playbook.objects.filter(
        organization_id=membership.organization_id, department=scope.department
    ).select_related("created_by")


@login_required
@require_GET
@with_membership
def playbook_list(request, membership):
    active = {
        p.department_id: p for p in Playbook.objects.filter(organization_id=membership.organization_id, is_active=True)
    }
    rows = [(Scope(None), active.get(None))] + [
        (Scope(department), active.get(department.pk)) for department in visible_departments(membership)
    ]
    return page(request, membership, "playbook/list.html", {"rows": rows})


@login_required
@require_GET
@with_membership
def detail(request, membership, scope_slug):
    scope = access_scope(membership, scope_slug)
    versions = list(_versions(membership, scope)[:100])
    active = next((v for v in versions if v.is_active), None)
    draft = _draft(membership, scope) if can_supervise(membership) else None
    if draft is not None:
        source = draft.source
    elif active is not None:
        source = active.source
    else:
        source = DEPARTMENT_STARTER if scope.department is not None else actions.DEFAULT_PLAYBOOK.read_text()
    return _editor(request, membership, scope, source, versions, active, draft=draft)


def _draft(membership, scope: Scope) -> PlaybookDraft | None:
    return (
        PlaybookDraft.objects.select_related("updated_by")
        .filter(organization_id=membership.organization_id, department=scope.department)
        .first()
    )


def _editor(
    request, membership, scope: Scope, source: str, versions, active, error=None, status=200, draft=None
) -> HttpResponse:
    context = {
        "scope": scope,
        "source": source,
        "versions": versions,
        "active": active,
        "draft": draft,
        "can_edit": can_supervise(membership),
        **_checked(source, scope, error),
    }
    return page(request, membership, "playbook/edit.html", context, status=status)


def _checked(source: str, scope: Scope, error: PlaybookError | None = None) -> dict[str, Any]:
    """The validation result and the structured view of `source`."""
    if error is not None:
        return {"error": error, "rules": None}
    if not source.strip() and scope.department is None:
        return {"error": None, "rules": None}
    try:
        data = parse_yaml(source, department=scope.department.slug if scope.department else None)
    except PlaybookError as exc:
        return {"error": exc, "rules": None}
    return {"error": None, "rules": describe(data)}


@login_required
@require_GET
@with_membership
def version(request, membership, playbook_id):
    playbook = access_version(membership, playbook_id)
    scope = Scope(playbook.department)
    context = {
        "scope": scope,
        "playbook": playbook,
        "can_edit": can_supervise(membership),
        **_checked(playbook.source, scope),
    }
    return page(request, membership, "playbook/version.html", context)


@login_required
@require_POST
@with_membership
def publish(request, membership, scope_slug):
    scope = access_scope_to_edit(membership, scope_slug)
    source = request.POST.get("source", "")[:MAX_SOURCE]
    try:
        published = actions.do_publish_playbook(
            membership.organization, source, user=request.user, department=scope.department
        )
    except PlaybookError as exc:
        versions = list(_versions(membership, scope)[:100])
        active = next((v for v in versions if v.is_active), None)
        return _editor(request, membership, scope, source, versions, active, error=exc, status=400)
    messages.success(request, f"Published {scope.title.lower()} version {published.version}; new posts follow it.")
    return redirect(scope.detail_url)


@login_required
@require_POST
@with_membership
def save_draft(request, membership, scope_slug):
    scope = access_scope_to_edit(membership, scope_slug)
    source = request.POST.get("source", "")[:MAX_SOURCE]
    actions.do_save_draft(membership.organization, source, user=request.user, department=scope.department)
    messages.success(request, "Draft saved. It is not running until you publish it.")
    return redirect(scope.detail_url)


@login_required
@require_POST
@with_membership
def discard_draft(request, membership, scope_slug):
    scope = access_scope_to_edit(membership, scope_slug)
    if actions.do_discard_draft(membership.organization, user=request.user, department=scope.department):
        messages.success(request, "Draft discarded; the editor shows the running version.")
    return redirect(scope.detail_url)


@login_required
@require_POST
@with_membership
def rollback(request, membership, playbook_id):
    earlier = access_version_to_edit(membership, playbook_id)
    scope = Scope(earlier.department)
    try:
        published = actions.do_rollback_playbook(earlier, user=request.user)
    except PlaybookError as exc:
        messages.error(request, f"Version {earlier.version} can no longer be published: {exc}")
        return redirect(scope.detail_url)
    messages.success(request, f"Restored version {earlier.version} as version {published.version}.")
    return redirect(scope.detail_url)


# --- htmx partials ---------------------------------------------------------------------------


@partial_login_required
@require_POST
@with_membership
def validate(request, membership, scope_slug):
    scope = access_scope(membership, scope_slug)
    source = request.POST.get("source", "")[:MAX_SOURCE]
    return render(request, "playbook/_checked.html", {"scope": scope, "source": source, **_checked(source, scope)})


@partial_login_required
@require_POST
@with_membership
def dry_run(request, membership, scope_slug):
    scope = access_scope_to_edit(membership, scope_slug)
    source = request.POST.get("source", "")[:MAX_SOURCE]
    days = _days(request.POST.get("days"))
    visible = membership.visible_department_ids()
    sees_triage = can_supervise(membership)

    def shown(department_id: int, needs_triage: bool) -> bool:
        return department_id in visible or (needs_triage and sees_triage)

    try:
        report = actions.do_dry_run(membership.organization, source, scope.department, days=days, shown=shown)
    except PlaybookError as exc:
        return render(request, "playbook/_checked.html", {"scope": scope, "source": source, "error": exc})
    return render(request, "playbook/_dry_run.html", {"report": report, "days": days})


def _days(value: str | None) -> int:
    try:
        days = int(value or actions.DRY_RUN_DAYS)
    except ValueError:
        return actions.DRY_RUN_DAYS
    return max(1, min(days, actions.MAX_DRY_RUN_DAYS))


# --- hand-offs -------------------------------------------------------------------------------


@login_required
@require_GET
@with_membership
def handoffs(request, membership):
    rows = visible_handoffs(membership).select_related("case", "department", "received_by")
    waiting = list(rows.filter(received_at=None)[:200])
    received = list(rows.exclude(received_at=None)[:50])
    context = {"waiting": waiting, "received": received, "escalations": notifications_for(membership)}
    return page(request, membership, "playbook/handoffs.html", context)


@login_required
@require_POST
@with_membership
def acknowledge_handoff(request, membership, handoff_id):
    handoff = access_handoff(membership, handoff_id)
    if not actions.do_acknowledge_handoff(handoff, request.user):
        messages.info(request, "Someone in the department had already acknowledged it.")
    return redirect("playbook:handoffs")
