"""Listening pages: parse, authorise (hubbub.listening.access), call one action, render."""

from __future__ import annotations

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.http import HttpResponse
from django.shortcuts import redirect, render
from django.views.decorators.http import require_GET, require_http_methods, require_POST

from hubbub.inbox.access import can_supervise, check_supervisor
from hubbub.inbox.views import page, partial_login_required, with_membership
from hubbub.lib.query import MAX_QUERY, QuerySyntaxError, parse
from hubbub.listening import actions
from hubbub.listening.access import access_query, access_query_to_edit
from hubbub.listening.actions import ListeningError
from hubbub.listening.forms import QueryForm
from hubbub.listening.models import ListeningQuery


@login_required
@require_GET
@with_membership
def query_list(request, membership):
    queries = ListeningQuery.objects.filter(organization_id=membership.organization_id).select_related("department")
    return page(request, membership, "listening/list.html", {"queries": queries})


@login_required
@require_http_methods(["GET", "POST"])
@with_membership
def create(request, membership):
    check_supervisor(membership)
    form = QueryForm(membership.organization, request.POST or None)
    if request.method == "POST" and form.is_valid() and _save(request, membership, form, None):
        return redirect("listening:list")
    return _form_page(request, membership, form, None)


@login_required
@require_http_methods(["GET", "POST"])
@with_membership
def edit(request, membership, query_id):
    if request.method == "POST":
        listening_query = access_query_to_edit(membership, query_id)
    else:
        listening_query = access_query(membership, query_id)
    initial = {
        "name": listening_query.name,
        "query": listening_query.query,
        "enabled": listening_query.enabled,
        "department": listening_query.department_id,
    }
    form = QueryForm(membership.organization, request.POST or None, initial=initial)
    if request.method == "POST" and form.is_valid() and _save(request, membership, form, listening_query):
        return redirect("listening:list")
    return _form_page(request, membership, form, listening_query)


def _save(request, membership, form: QueryForm, listening_query: ListeningQuery | None) -> bool:
    data = form.cleaned_data
    try:
        saved = actions.do_save_query(
            membership.organization,
            request.user,
            name=data["name"],
            query=data["query"],
            enabled=data["enabled"],
            department=data["department"],
            listening_query=listening_query,
        )
    except ListeningError as exc:
        form.add_error("name", str(exc))
        return False
    messages.success(request, f"Saved {saved.name}; the workers use it from their next batch.")
    return True


def _form_page(request, membership, form: QueryForm, listening_query: ListeningQuery | None) -> HttpResponse:
    context = {
        "form": form,
        "listening_query": listening_query,
        "can_edit": can_supervise(membership),
        "error": form.syntax_error,
    }
    status = 400 if form.is_bound and form.errors else 200
    return page(request, membership, "listening/form.html", context, status=status)


@login_required
@require_POST
@with_membership
def set_enabled(request, membership, query_id):
    listening_query = access_query_to_edit(membership, query_id)
    enabled = request.POST.get("enabled") == "1"
    actions.do_set_enabled(listening_query, request.user, enabled)
    messages.success(request, f"{listening_query.name} is {'on' if enabled else 'off'}.")
    return redirect("listening:list")


@login_required
@require_POST
@with_membership
def delete(request, membership, query_id):
    listening_query = access_query_to_edit(membership, query_id)
    actions.do_delete_query(listening_query, request.user)
    messages.success(request, f"Deleted {listening_query.name}.")
    return redirect("listening:list")


# --- htmx partials ---------------------------------------------------------------------------


@partial_login_required
@require_POST
@with_membership
def validate(request, membership):
    query = request.POST.get("query", "")[: MAX_QUERY + 1]
    error = None
    try:
        parse(query)
    except QuerySyntaxError as exc:
        # An empty box is not a mistake yet: the form says so if it is submitted empty.
        error = exc if query.strip() else None
    return render(request, "listening/_validation.html", {"error": error, "query": query})


@partial_login_required
@require_POST
@with_membership
def preview(request, membership):
    check_supervisor(membership)
    query = request.POST.get("query", "")[: MAX_QUERY + 1]
    try:
        result = actions.do_preview(membership.organization_id, membership.visible_department_ids(), query)
    except QuerySyntaxError as exc:
        return render(request, "listening/_validation.html", {"error": exc, "query": query})
    return render(request, "listening/_preview.html", {"preview": result})
