"""Approvals: supervisors approve waiting replies or send them back to their authors with a note."""

from __future__ import annotations

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.shortcuts import redirect
from django.urls import reverse
from django.views.decorators.http import require_GET, require_POST

from hubbub.inbox.access import parse_id
from hubbub.inbox.views import page, run_action, with_membership
from hubbub.publishing import actions
from hubbub.publishing.access import access_own_draft, access_pending_reply, pending_replies
from hubbub.publishing.actions import MAX_REVIEW_NOTE, ReplyError
from hubbub.publishing.models import OutboxState

PAGE_SIZE = 50


@login_required
@require_GET
@with_membership
def approvals(request, membership):
    # Oldest first: the customer who has waited longest for an answer is answered first.
    waiting = pending_replies(membership).select_related("case", "created_by", "account").order_by("id")
    after = request.GET.get("after")
    if after:
        waiting = waiting.filter(id__gt=parse_id(after))
    rows = list(waiting[: PAGE_SIZE + 1])
    shown = rows[:PAGE_SIZE]
    context = {
        "replies": shown,
        "next_url": f"{reverse('publishing:approvals')}?after={shown[-1].pk}" if len(rows) > PAGE_SIZE else "",
        "first_url": reverse("publishing:approvals") if after else "",
        "max_note_length": MAX_REVIEW_NOTE,
    }
    return page(request, membership, "publishing/approvals.html", context)


@login_required
@require_POST
@with_membership
def approve(request, membership, outbound_id):
    outbound = access_pending_reply(membership, outbound_id)
    if run_action(request, actions.do_approve_reply, outbound, request.user, refusals=(ReplyError,)):
        messages.success(request, f"Reply on case {outbound.case_id} approved; it will be published shortly.")
    return redirect("publishing:approvals")


@login_required
@require_POST
@with_membership
def send_back(request, membership, outbound_id):
    outbound = access_pending_reply(membership, outbound_id)
    note = request.POST.get("note", "")
    if run_action(request, actions.do_send_back_reply, outbound, request.user, note, refusals=(ReplyError,)):
        messages.success(request, f"Reply on case {outbound.case_id} sent back to its author.")
    return redirect("publishing:approvals")


@login_required
@require_POST
@with_membership
def resubmit(request, membership, outbound_id):
    outbound = access_own_draft(membership, request.user, outbound_id)
    text = request.POST.get("text", "")
    if run_action(request, actions.do_resubmit_reply, outbound, request.user, text, refusals=(ReplyError,)):
        waiting = outbound.state == OutboxState.PENDING_APPROVAL
        messages.success(request, "Reply sent for approval again." if waiting else "Reply queued.")
    return redirect("inbox:case", case_id=outbound.case_id)
