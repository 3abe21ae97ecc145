"""Routing pages: an agent's availability and "next case"; the supervisor's live board."""

from __future__ import annotations

from typing import Any

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.http import Http404, HttpResponse
from django.shortcuts import redirect, render
from django.urls import reverse
from django.utils import timezone
from django.views.decorators.http import require_GET, require_POST

from hubbub.inbox.access import can_supervise, check_supervisor, parse_id, visible_departments
from hubbub.inbox.views import page, partial_login_required, with_membership
from hubbub.routing import actions
from hubbub.routing.actions import RoutingError
from hubbub.routing.board import department_board, warning_window
from hubbub.routing.models import RoutingMode

BOARD_REFRESH_SECONDS = 5


def _board_context(membership) -> dict[str, Any]:
    return {
        "rows": department_board(membership),
        "now": timezone.now(),
        "warning_minutes": int(warning_window().total_seconds() // 60),
        "refresh_seconds": BOARD_REFRESH_SECONDS,
        "modes": RoutingMode.choices,
    }


@login_required
@require_GET
@with_membership
def home(request, membership):
    context: dict[str, Any] = {"load": actions.open_load(membership)}
    if can_supervise(membership):
        context.update(_board_context(membership))
    return page(request, membership, "routing/home.html", context)


@partial_login_required
@require_GET
@with_membership
def board(request, membership):
    check_supervisor(membership)
    return render(request, "routing/_board.html", _board_context(membership))


@login_required
@require_POST
@with_membership
def next_case(request, membership):
    try:
        handed = actions.do_next_case(membership)
    except RoutingError as exc:
        messages.error(request, str(exc))
        return redirect("routing:home")
    messages.success(request, f"Case {handed.case_id} is yours.")
    url = reverse("inbox:case", args=[handed.case_id])
    if request.headers.get("HX-Request"):
        response = HttpResponse(status=204)
        response["HX-Redirect"] = url
        return response
    return redirect(url)


@login_required
@require_POST
@with_membership
def availability(request, membership):
    try:
        actions.do_set_availability(membership, request.POST.get("availability", ""))
    except RoutingError as exc:
        messages.error(request, str(exc))
    return redirect("routing:home")


@login_required
@require_POST
@with_membership
def assignment_mode(request, membership):
    """A supervisor sets one of their departments to pull (Next case) or push (the worker assigns)."""
    check_supervisor(membership)
    department = visible_departments(membership).filter(pk=parse_id(request.POST.get("department"))).first()
    if department is None:
        raise Http404("no such department")
    try:
        setting = actions.do_set_routing_mode(membership, department, request.POST.get("mode", ""))
    except RoutingError as exc:
        messages.error(request, str(exc))
    else:
        messages.success(request, f"{department.name}: {setting.get_mode_display()}.")
    return redirect("routing:home")
