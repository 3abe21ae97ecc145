from __future__ import annotations

from django.conf import settings
from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.http import HttpResponse, HttpResponseForbidden, JsonResponse
from django.shortcuts import redirect
from django.urls import path, reverse
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_GET, require_http_methods, require_POST

from hubbub.connectors import noise
from hubbub.connectors.base import Connector, Post
from hubbub.connectors.models import InboundEvent
from hubbub.connectors.registry import connector_for
from hubbub.connectors.webhooks import do_receive_meta_delivery
from hubbub.inbox.access import check_supervisor, parse_id
from hubbub.inbox.views import _payload_text, _url, page, with_membership
from hubbub.lib.noise import RULE_LABELS
from hubbub.lib.webhooks import (
    MAX_WEBHOOK_BODY,
    SIGNATURE_HEADER,
    SignatureError,
    VerificationError,
    verification_challenge,
    verify_hub_signature,
)


@csrf_exempt  # authenticated by the signature over the raw body instead
@require_http_methods(["GET", "POST"])
def meta_webhook(request):
    if not settings.HUBBUB_META_APP_SECRET:
        return HttpResponse("Meta webhooks are not configured", status=404, content_type="text/plain")
    if request.method == "GET":
        try:
            challenge = verification_challenge(request.GET, settings.HUBBUB_META_VERIFY_TOKEN)
        except VerificationError:
            return HttpResponseForbidden("verification failed", content_type="text/plain")
        return HttpResponse(challenge, content_type="text/plain")
    declared = request.headers.get("Content-Length", "")
    if declared.isdigit() and int(declared) > MAX_WEBHOOK_BODY:
        return HttpResponse("body too large", status=413, content_type="text/plain")
    raw = request.body
    try:
        verify_hub_signature(raw, request.headers.get(SIGNATURE_HEADER), settings.HUBBUB_META_APP_SECRET)
    except SignatureError:
        # Nothing is stored for a body we cannot trust.
        return HttpResponseForbidden("bad signature", content_type="text/plain")
    intake = do_receive_meta_delivery(raw)
    # 200 even for what we could not use: it is kept for the dead-letter view, and a non-200 makes Meta resend.
    return JsonResponse({"stored": intake.stored, "skipped": intake.skipped, "unattributed": intake.unattributed})


# --- the Filtered page ------------------------------------------------------------------------

FILTERED_PAGE_SIZE = 50


def _read(events: list[InboundEvent]) -> list[Post | None]:
    """The posts as the inbox would show them; None where a payload cannot be read."""
    connectors: dict[int, Connector] = {}
    posts: list[Post | None] = []
    for event in events:
        try:
            if event.account_id not in connectors:
                connectors[event.account_id] = connector_for(event.account)
            posts.append(connectors[event.account_id].normalize(event.payload))
        except Exception:
            posts.append(None)
    return posts


@login_required
@require_GET
@with_membership
def filtered_list(request, membership):
    counts = noise.filtered_counts(membership)
    rule = noise.access_rule(request.GET.get("rule") or next((r for r, n in counts.items() if n), "repost"))
    events = noise.filtered_events(membership).filter(noise_rule=rule).order_by("-id")
    before = request.GET.get("before")
    if before:
        events = events.filter(id__lt=parse_id(before))
    rows = list(events[: FILTERED_PAGE_SIZE + 1])
    shown = rows[:FILTERED_PAGE_SIZE]
    context = {
        "rule": rule,
        "rule_label": RULE_LABELS[rule],
        "tabs": [(r, RULE_LABELS[r], counts.get(r, 0)) for r in RULE_LABELS],
        "entries": [(e, post, _payload_text(e.payload)) for e, post in zip(shown, _read(shown), strict=True)],
        "next_url": _url("noise:filtered", {"rule": rule, "before": str(shown[-1].pk)})
        if len(rows) > FILTERED_PAGE_SIZE
        else "",
        "first_url": _url("noise:filtered", {"rule": rule}) if before else "",
    }
    return page(request, membership, "noise/filtered.html", context)


@login_required
@require_POST
@with_membership
def restore_filtered(request, membership, event_id):
    event = noise.access_filtered_event(membership, event_id)
    try:
        noise.do_restore_filtered(event, request.user)
    except noise.NoiseActionError as exc:
        messages.error(request, str(exc))
    else:
        messages.success(request, f"Post {event.external_id} will become a case.")
    return redirect(_url("noise:filtered", {"rule": event.noise_rule}))


@login_required
@require_POST
@with_membership
def restore_rule(request, membership):
    check_supervisor(membership)
    rule = noise.access_rule(request.POST.get("rule", ""))
    count = noise.do_restore_rule(membership.organization, rule, request.user)
    messages.success(request, f"{count} post{'s' if count != 1 else ''} restored; they will become cases.")
    return redirect(reverse("noise:filtered") + f"?rule={rule}")


noise_urlpatterns = (
    [
        path("", filtered_list, name="filtered"),
        path("<int:event_id>/restore/", restore_filtered, name="restore"),
        path("restore-all/", restore_rule, name="restore_rule"),
    ],
    "noise",
)
