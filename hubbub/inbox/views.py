"""The agent inbox: parse, authorise (hubbub.inbox.access), call one action, render or redirect."""

from __future__ import annotations

import datetime as dt
import functools
import json
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlencode

from django.conf import settings
from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.db.models import F, OuterRef, Q, Subquery
from django.http import Http404, HttpResponse
from django.shortcuts import redirect, render
from django.urls import reverse
from django.views.decorators.http import require_GET, require_POST

from hubbub.accounts.models import Department
from hubbub.connectors.models import InboundEvent, SocialAccount
from hubbub.crisis.actions import holding_statement_for
from hubbub.inbox import actions as inbox_actions
from hubbub.inbox.access import (
    access_assignee,
    access_case,
    access_case_to_read,
    access_event,
    access_outbound,
    access_transfer_target,
    can_supervise,
    check_supervisor,
    current_membership,
    dead_letters,
    department_members,
    parse_id,
    sees_triage,
    visible_cases,
    visible_departments,
)
from hubbub.inbox.actions import CaseActionError
from hubbub.inbox.escalation import case_clocks, escalation_history
from hubbub.inbox.models import WORKING_STATUSES, Case, Identity, Priority, Tier, Visibility
from hubbub.lib.playbook import ResponseTemplate
from hubbub.lib.priority import score as priority_score
from hubbub.publishing import actions as publishing_actions
from hubbub.publishing.actions import ReplyError
from hubbub.publishing.models import OutboxState
from hubbub.understanding.combine import LABEL_NAMES, SENTIMENTS, SEVERITY_NAMES

QUEUE_PAGE_SIZE = 50
DEAD_LETTER_PAGE_SIZE = 50
# The thread shows the latest messages only: a viral case must not make every refresh heavy.
THREAD_LIMIT = 200
PAYLOAD_LIMIT_BYTES = 10 * 1024
_EPOCH = dt.datetime(1970, 1, 1, tzinfo=dt.UTC)


# --- decorators and helpers -------------------------------------------------------------------


def with_membership(view):
    """Pass the request's Membership to the view; users in no organization get a polite 403."""

    @functools.wraps(view)
    def wrapper(request, *args, **kwargs):
        membership = current_membership(request)
        if membership is None:
            return render(request, "inbox/no_membership.html", status=403)
        return view(request, membership, *args, **kwargs)

    return wrapper


def partial_login_required(view):
    """For htmx partials: an expired session sends the whole page to the login form, instead of
    the login form being swapped into a table."""

    @functools.wraps(view)
    def wrapper(request, *args, **kwargs):
        if not request.user.is_authenticated:
            response = HttpResponse(status=401)
            response["HX-Redirect"] = reverse(settings.LOGIN_URL)
            return response
        return view(request, *args, **kwargs)

    return wrapper


def page(request, membership, template: str, context: dict[str, Any], status: int = 200) -> HttpResponse:
    """A full page of any app: adds what base.html's header needs."""
    header = {
        "membership": membership,
        "memberships": getattr(request, "memberships", [membership]),
        "is_supervisor": can_supervise(membership),
        "unhealthy_accounts": SocialAccount.objects.filter(
            organization_id=membership.organization_id, healthy=False
        ).count(),
    }
    return render(request, template, {**header, **context}, status=status)


def _url(name: str, params: dict[str, str], *args) -> str:
    url = reverse(name, args=args)
    params = {k: v for k, v in params.items() if v}
    return f"{url}?{urlencode(params)}" if params else url


def run_action(
    request, action, *args, refusals: tuple[type[Exception], ...] = (CaseActionError, ReplyError), **kwargs
) -> bool:
    """Call an action; its refusal (one of `refusals`) becomes a message for the member. True when it went through."""
    try:
        action(*args, **kwargs)
    except refusals as exc:
        messages.error(request, str(exc))
        return False
    return True


def _to_case(case: Case):
    return redirect("inbox:case", case_id=case.pk)


# --- the queue --------------------------------------------------------------------------------


@dataclass(frozen=True)
class QueueCursor:
    """Where a queue page ended, in queue order: priority, due time (nulls last), id."""

    priority: int
    due: dt.datetime | None
    pk: int

    @classmethod
    def of(cls, case: Case) -> QueueCursor:
        return cls(case.priority, case.first_response_due_at, case.pk)

    @classmethod
    def parse(cls, text: str) -> QueueCursor | None:
        try:
            priority, due, pk = text.split(".")
            due_at = None if due == "-" else _EPOCH + dt.timedelta(microseconds=int(due))
            return cls(int(priority), due_at, int(pk))
        except (ValueError, OverflowError):
            return None

    def __str__(self) -> str:
        due = "-" if self.due is None else str((self.due - _EPOCH) // dt.timedelta(microseconds=1))
        return f"{self.priority}.{due}.{self.pk}"

    def after(self) -> Q:
        if self.due is None:
            same_priority = Q(first_response_due_at__isnull=True, id__gt=self.pk)
        else:
            same_priority = (
                Q(first_response_due_at__gt=self.due)
                | Q(first_response_due_at__isnull=True)
                | Q(first_response_due_at=self.due, id__gt=self.pk)
            )
        return Q(priority__gt=self.priority) | (Q(priority=self.priority) & same_priority)


def queue_cases(
    organization_id: int, department_ids, cursor: QueueCursor | None, limit: int, *, triage: bool = False
) -> list[Case]:
    """Working cases in queue order, with the customer's handle on the case's network. No messages.

    triage=True: only cases waiting in triage. They are also in their (triage) department's queue,
    marked, so that no case ever drops out of the queues its department works.
    """
    handle = (
        Identity.objects.filter(customer_id=OuterRef("customer_id"), network=OuterRef("account__network"))
        .order_by("id")
        .values("handle")[:1]
    )
    if triage:
        scope = Q(needs_triage=True)
        if department_ids is not None:
            scope &= Q(department_id__in=department_ids)
    else:
        scope = Q(department_id__in=department_ids)
    cases = (
        Case.objects.filter(scope, organization_id=organization_id, status__in=WORKING_STATUSES)
        .select_related("customer", "account", "assignee", "department")
        .defer(
            "private_data",
            "labels",
            "reply_templates",
            "account__credentials_encrypted",
            "account__cursor",
            "account__settings",
        )
        .annotate(customer_handle=Subquery(handle))
        .order_by("priority", F("first_response_due_at").asc(nulls_last=True), "id")
    )
    if cursor is not None:
        cases = cases.filter(cursor.after())
    return list(cases[:limit])


def _queue_context(request, membership) -> dict[str, Any]:
    departments = list(visible_departments(membership))
    triage_visible = sees_triage(membership)
    triage = request.GET.get("triage") == "1"
    if triage and not triage_visible:
        raise Http404("no triage queue")
    slug = "" if triage else request.GET.get("dept", "")
    selected = next((d for d in departments if d.slug == slug), None)
    if slug and selected is None:
        raise Http404("no such department")
    after = request.GET.get("after", "")
    cursor = QueueCursor.parse(after)
    department_ids = [selected.pk] if selected else [d.pk for d in departments]
    if triage and can_supervise(membership):
        department_ids = None  # supervisors triage every department's unsure posts
    rows = queue_cases(membership.organization_id, department_ids, cursor, QUEUE_PAGE_SIZE + 1, triage=triage)
    shown, has_next = rows[:QUEUE_PAGE_SIZE], len(rows) > QUEUE_PAGE_SIZE
    params = {"dept": slug, "triage": "1" if triage else ""}
    return {
        "departments": departments,
        "selected": selected,
        "triage": triage,
        "triage_visible": triage_visible,
        "cases": shown,
        "rows_url": _url("inbox:queue_rows", {**params, "after": after if cursor else ""}),
        "next_url": _url("inbox:queue", {**params, "after": str(QueueCursor.of(shown[-1]))}) if has_next else "",
        "first_url": _url("inbox:queue", params) if cursor else "",
    }


@login_required
@require_GET
@with_membership
def queue(request, membership):
    return page(request, membership, "inbox/queue.html", _queue_context(request, membership))


@partial_login_required
@require_GET
@with_membership
def queue_rows(request, membership):
    return render(request, "inbox/_queue_table.html", _queue_context(request, membership))


# --- one case ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class TimelineEntry:
    kind: str  # "message" or "note"
    at: dt.datetime
    item: Any


def _thread_context(case: Case) -> dict[str, Any]:
    latest = list(
        case.messages.select_related("identity", "author_user", "account").order_by("-created_at", "-id")[
            : THREAD_LIMIT + 1
        ]
    )
    earlier_hidden = len(latest) > THREAD_LIMIT
    shown = latest[:THREAD_LIMIT][::-1]
    # Reposts and duplicates the noise rules folded onto a message count on its event.
    engagement = dict(
        InboundEvent.objects.filter(pk__in=[m.event_id for m in shown if m.event_id], engagement__gt=0).values_list(
            "pk", "engagement"
        )
    )
    for message in shown:
        message.engagement = engagement.get(message.event_id, 0)
    notes = case.notes.select_related("author")
    if earlier_hidden:
        notes = notes.filter(created_at__gte=shown[0].created_at)
    timeline = [TimelineEntry("message", m.created_at, m) for m in shown]
    timeline += [TimelineEntry("note", n.created_at, n) for n in notes]
    timeline.sort(key=lambda e: (e.at, e.kind == "note", e.item.pk))
    unsent = (
        case.outbox.exclude(state=OutboxState.SENT)
        .select_related("created_by", "reviewed_by")
        .order_by("created_at", "id")
    )
    return {
        "case": case,
        # The score moves as the SLA clock runs, so the live refresh recomputes it.
        "priority_score": priority_score(case.priority_signals(case.customer.tier)),
        "priorities": Priority.choices,
        "timeline": timeline,
        "earlier_hidden": earlier_hidden,
        "thread_limit": THREAD_LIMIT,
        "unsent_replies": list(unsent),
        "thread_url": reverse("inbox:case_thread", args=[case.pk]),
        # Every SLA clock, the platform's messaging window and what escalation did (live too).
        "sla_clocks": case_clocks(case),
        "escalations": escalation_history(case),
    }


def _understanding_context(case: Case, error: str = "", saved: bool = False) -> dict[str, Any]:
    labels = case.labels if isinstance(case.labels, dict) else {}
    return {
        "case": case,
        "label_rows": [(label, name, labels.get(label)) for label, name in LABEL_NAMES.items()],
        "sentiments": SENTIMENTS,
        "severity_rows": list(enumerate(SEVERITY_NAMES)),
        "severity_name": SEVERITY_NAMES[case.severity] if case.severity < len(SEVERITY_NAMES) else "",
        "labels_error": error,
        "labels_saved": saved,
    }


def _suggested_replies(case: Case, identities: list[Identity], user) -> list[tuple[str, str]]:
    """The playbook's suggested replies for the case, (name, text) with the placeholders filled in.
    Plain text: the page escapes it like any other."""
    handle = next((i.handle for i in identities if i.network == case.account.network), "")
    values = {
        "customer_name": case.customer.display_name or handle,
        "customer_handle": handle,
        "case_id": case.pk,
        "department": case.department.name,
        "agent_name": user.get_full_name() or user.get_username(),
        "brand": case.organization.name,
        "channel": case.account.get_network_display(),
    }
    suggested = []
    for template in case.reply_templates or []:
        if isinstance(template, dict) and isinstance(template.get("text"), str):
            text = ResponseTemplate(str(template.get("name", "")), template["text"]).render(values)
            suggested.append((str(template.get("name", "")), text[: publishing_actions.MAX_REPLY_LENGTH]))
    return suggested


def _case_context(case: Case, user) -> dict[str, Any]:
    identities = list(case.customer.identities.order_by("network", "handle"))
    return {
        **_thread_context(case),
        **_understanding_context(case),
        "identities": identities,
        "tiers": Tier.choices,
        "suggested_replies": _suggested_replies(case, identities, user),
        "members": list(department_members(case)),
        "transfer_targets": list(
            Department.objects.filter(organization_id=case.organization_id)
            .exclude(pk=case.department_id)
            .order_by("name")
        ),
        "max_reply_length": publishing_actions.MAX_REPLY_LENGTH,
        "holding_statement": holding_statement_for(case),
    }


@login_required
@require_GET
@with_membership
def case_detail(request, membership, case_id):
    case, works = access_case_to_read(membership, case_id)
    return page(request, membership, "inbox/case.html", _case_context(case, request.user) | {"can_work": works})


@partial_login_required
@require_GET
@with_membership
def case_thread(request, membership, case_id):
    case, _works = access_case_to_read(membership, case_id)
    context = _thread_context(case) | {"is_supervisor": can_supervise(membership)}
    return render(request, "inbox/_thread_refresh.html", context)


@login_required
@require_POST
@with_membership
def claim(request, membership, case_id):
    case = access_case(membership, case_id)
    if run_action(request, inbox_actions.do_claim, case, request.user):
        messages.success(request, f"You took case {case.pk}.")
    return _to_case(case)


@login_required
@require_POST
@with_membership
def assign(request, membership, case_id):
    case = access_case(membership, case_id)
    chosen = request.POST.get("membership", "")
    assignee = access_assignee(membership, chosen) if chosen else None
    if run_action(request, inbox_actions.do_assign, case, request.user, assignee):
        who = (assignee.user.get_full_name() or assignee.user.get_username()) if assignee else "nobody"
        messages.success(request, f"Case {case.pk} is assigned to {who}.")
    return _to_case(case)


@login_required
@require_POST
@with_membership
def reply(request, membership, case_id):
    case = access_case(membership, case_id)
    private = request.POST.get("visibility") == Visibility.PRIVATE
    if run_action(request, publishing_actions.do_reply, case, request.user, request.POST.get("text", ""), private):
        messages.success(request, "Private reply queued." if private else "Public reply queued.")
    return _to_case(case)


@login_required
@require_POST
@with_membership
def add_note(request, membership, case_id):
    case, _works = access_case_to_read(membership, case_id)
    if run_action(request, inbox_actions.do_add_note, case, request.user, request.POST.get("text", "")):
        messages.success(request, "Internal note added.")
    return _to_case(case)


@login_required
@require_POST
@with_membership
def transfer(request, membership, case_id):
    case = access_case(membership, case_id)
    department = access_transfer_target(membership, request.POST.get("department"))
    if not run_action(request, inbox_actions.do_transfer, case, request.user, department):
        return _to_case(case)
    messages.success(request, f"Case {case.pk} transferred to {department.name}.")
    if department.pk in membership.visible_department_ids():
        return _to_case(case)
    return redirect("inbox:queue")


@login_required
@require_POST
@with_membership
def set_priority(request, membership, case_id):
    case = access_case(membership, case_id)
    check_supervisor(membership)
    try:
        priority = int(request.POST.get("priority", ""))
    except ValueError:
        priority = 0
    if run_action(request, inbox_actions.do_set_priority, case, request.user, priority):
        messages.success(request, f"Case {case.pk} is now {case.get_priority_display().lower()}.")
    return _to_case(case)


@login_required
@require_POST
@with_membership
def set_customer_tier(request, membership, case_id):
    """A supervisor sets the tier of the case's customer (a customer is reached through a case they may read)."""
    case, _works = access_case_to_read(membership, case_id)
    check_supervisor(membership)
    tier = request.POST.get("tier", "")
    if run_action(request, inbox_actions.do_set_customer_tier, case.customer, request.user, tier):
        messages.success(request, f"The customer of case {case.pk} is now {Tier(tier).label}.")
    return _to_case(case)


@login_required
@require_POST
@with_membership
def resolve(request, membership, case_id):
    case = access_case(membership, case_id)
    if not run_action(request, inbox_actions.do_resolve, case, request.user):
        return _to_case(case)
    messages.success(request, f"Case {case.pk} resolved.")
    return redirect("inbox:queue")


@login_required
@require_POST
@with_membership
def reopen(request, membership, case_id):
    case = access_case(membership, case_id)
    if run_action(request, inbox_actions.do_reopen, case, request.user):
        messages.success(request, f"Case {case.pk} is open again; its SLA clocks run from now.")
    return _to_case(case)


@login_required
@require_POST
@with_membership
def correct_labels(request, membership, case_id):
    """The agent's labels for the case (an htmx form): training examples, and routing out of triage."""
    case = access_case(membership, case_id)
    post = request.POST
    error, routed = "", []
    try:
        routed = inbox_actions.do_correct_labels(
            case, request.user, post.getlist("labels"), post.get("sentiment", ""), post.get("severity", "")
        )
    except CaseActionError as exc:
        error = str(exc)
    if not visible_cases(membership).filter(pk=case.pk).exists():
        # Routed out of triage to a department this member does not work: back to the queue.
        messages.success(request, f"Case {case.pk} labelled and {', '.join(routed)}.")
        if request.headers.get("HX-Request"):
            response = HttpResponse(status=204)
            response["HX-Redirect"] = reverse("inbox:queue")
            return response
        return redirect("inbox:queue")
    if not request.headers.get("HX-Request"):
        if error:
            messages.error(request, error)
        else:
            messages.success(request, "Labels saved." + (f" Case {', '.join(routed)}." if routed else ""))
        return _to_case(case)
    case = access_case(membership, case.pk)
    return render(request, "inbox/_understanding.html", _understanding_context(case, error, saved=not error))


@login_required
@require_POST
@with_membership
def retry_reply(request, membership, case_id, outbound_id):
    case = access_case(membership, case_id)
    outbound = access_outbound(case, outbound_id)
    if outbound.state != OutboxState.FAILED:
        messages.error(request, "Only a failed reply can be retried.")
    elif run_action(request, publishing_actions.do_retry_reply, outbound, request.user):
        messages.success(request, "The reply will be sent again.")
    return _to_case(case)


# --- dead letters and accounts ----------------------------------------------------------------


def _payload_text(payload) -> str:
    text = json.dumps(payload, indent=2, ensure_ascii=False, sort_keys=True, default=str)
    raw = text.encode()
    if len(raw) <= PAYLOAD_LIMIT_BYTES:
        return text
    return raw[:PAYLOAD_LIMIT_BYTES].decode(errors="ignore") + "\n… (truncated)"


@login_required
@require_GET
@with_membership
def dead_letter_list(request, membership):
    events = dead_letters(membership).order_by("-id")
    before = request.GET.get("before")
    if before:
        events = events.filter(id__lt=parse_id(before))
    rows = list(events[: DEAD_LETTER_PAGE_SIZE + 1])
    shown = rows[:DEAD_LETTER_PAGE_SIZE]
    has_next = len(rows) > DEAD_LETTER_PAGE_SIZE
    context = {
        "entries": [(event, _payload_text(event.payload)) for event in shown],
        "next_url": _url("inbox:dead_letters", {"before": str(shown[-1].pk)}) if has_next else "",
        "first_url": reverse("inbox:dead_letters") if before else "",
    }
    return page(request, membership, "inbox/dead_letters.html", context)


@login_required
@require_POST
@with_membership
def retry_event(request, membership, event_id):
    event = access_event(membership, event_id)
    if run_action(request, inbox_actions.do_retry_event, event, request.user):
        messages.success(request, f"Event {event.external_id} will be processed again.")
    return redirect("inbox:dead_letters")


@login_required
@require_GET
@with_membership
def account_list(request, membership):
    accounts = (
        SocialAccount.objects.filter(organization_id=membership.organization_id)
        .defer("credentials_encrypted", "cursor", "settings")
        .order_by("network", "handle")
    )
    return page(request, membership, "inbox/accounts.html", {"accounts": accounts})
