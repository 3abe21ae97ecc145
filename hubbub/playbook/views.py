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
from hubbub.lib.playbook_form import PlaybookForm, apply_op, bind, form_from_post, form_from_yaml, yaml_from_form
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
from hubbub.playbook.describe import describe, form_choices
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
    as_form = request.GET.get("view") == "form" and can_supervise(membership)
    return _editor(request, membership, scope, None, as_form=as_form)


def _starter(scope: Scope) -> str:
    return DEPARTMENT_STARTER if scope.department is not None else actions.DEFAULT_PLAYBOOK.read_text()


def _draft(membership, scope: Scope) -> PlaybookDraft | None:
    return (
        PlaybookDraft.objects.select_related("updated_by")
        .filter(organization_id=membership.organization_id, department=scope.department)
        .first()
    )


def _editor(
    request,
    membership,
    scope: Scope,
    source: str | None,
    error: PlaybookError | None = None,
    status: int = 200,
    form: PlaybookForm | None = None,
    as_form: bool = False,
) -> HttpResponse:
    """The editor page: the YAML view of `source`, or the structured form (`form`, else read from
    `source`), with `error` shown where it points. No `source`: what the editor opens on, the
    supervisor's draft, else the running version, else a starter."""
    versions = list(_versions(membership, scope)[:100])
    active = next((v for v in versions if v.is_active), None)
    can_edit = can_supervise(membership)
    draft = _draft(membership, scope) if can_edit else None
    if source is None:
        source = draft.source if draft else active.source if active else _starter(scope)
    context = {
        "scope": scope,
        "source": source,
        "versions": versions,
        "active": active,
        "draft": draft,
        "can_edit": can_edit,
        **_checked(source, scope, error),
    }
    if can_edit and (as_form or form is not None):
        # Read from `source`, the form has its rules in the same places; a posted form was written
        # into `source`, so `error` points at its fields too. A re-ordered unsaved form has no error.
        pointing = context["error"] if form is None else error
        context["form"] = _bound_form(membership, scope, source, form, pointing)
    return page(request, membership, "playbook/edit.html", context, status=status)


def _bound_form(membership, scope: Scope, source: str, form: PlaybookForm | None, error: PlaybookError | None):
    """The structured form as the page shows it; a YAML the form cannot show gives its reason instead."""
    if form is None:
        try:
            form = form_from_yaml(source)
        except PlaybookError as exc:
            return {"unreadable": exc}
    slug = scope.department.slug if scope.department is not None else None
    return bind(form, form_choices(membership.organization), error, department=slug)


def _posted_form(request) -> PlaybookForm | None:
    """The structured form, when the page posted it (it carries the YAML it was read from as `base`)."""
    if "base" not in request.POST:
        return None
    return form_from_post(request.POST, request.POST.getlist)


def _posted_source(request, form: PlaybookForm | None) -> str:
    """The draft as YAML: the YAML editor's text, or the form written into its YAML (PlaybookError
    when that YAML is not one the form can edit)."""
    if form is None:
        return request.POST.get("source", "")[:MAX_SOURCE]
    return yaml_from_form(form)[:MAX_SOURCE]


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
    form = _posted_form(request)
    source = form.base if form is not None else ""
    try:
        source = _posted_source(request, form)
        published = actions.do_publish_playbook(
            membership.organization, source, user=request.user, department=scope.department
        )
    except PlaybookError as exc:
        return _editor(request, membership, scope, source, error=exc, status=400, form=form)
    messages.success(request, f"Published {scope.title.lower()} version {published.version}; new posts follow it.")
    return redirect(scope.detail_url)


@login_required
@require_POST
@with_membership
def save_draft(request, membership, scope_slug):
    """From the YAML view, the text as written; from the form, only a draft that could be published."""
    scope = access_scope_to_edit(membership, scope_slug)
    form = _posted_form(request)
    source = form.base if form is not None else ""
    try:
        source = _posted_source(request, form)
        actions.do_save_draft(
            membership.organization, source, user=request.user, department=scope.department, check=form is not None
        )
    except PlaybookError as exc:
        return _editor(request, membership, scope, source, error=exc, status=400, form=form)
    messages.success(request, "Draft saved. It is not running until you publish it.")
    return redirect(scope.form_url if form is not None else scope.detail_url)


@login_required
@require_POST
@with_membership
def edit_form(request, membership, scope_slug):
    """The structured form's own buttons, which save nothing: add, remove or move a rule (`op`),
    switch to the YAML view (`op=yaml`), or open the YAML editor's text as a form (no `base`)."""
    scope = access_scope_to_edit(membership, scope_slug)
    form = _posted_form(request)
    source = form.base if form is not None else request.POST.get("source", "")[:MAX_SOURCE]
    op = request.POST.get("op", "")
    try:
        form = form if form is not None else form_from_yaml(source)
        if op == "yaml":
            return _editor(request, membership, scope, _posted_source(request, form))
    except PlaybookError as exc:
        # The YAML view keeps the text, with the reason the form cannot show it.
        return _editor(request, membership, scope, source, error=exc, status=400)
    changed = apply_op(form, op)
    # The structured view beside the form describes the unsaved rules as they now stand.
    return _editor(request, membership, scope, _posted_source(request, changed), form=changed)


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
    form = _posted_form(request)
    source = form.base if form is not None else ""
    days = _days(request.POST.get("days"))
    visible = membership.visible_department_ids()
    sees_triage = can_supervise(membership)

    def shown(department_id: int, needs_triage: bool) -> bool:
        return department_id in visible or (needs_triage and sees_triage)

    try:
        source = _posted_source(request, form)
        report = actions.do_dry_run(membership.organization, source, scope.department, days=days, shown=shown)
    except PlaybookError as exc:
        context = {"scope": scope, "source": source, "error": exc, "in_form": form is not None}
        return render(request, "playbook/_checked.html", context)
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
