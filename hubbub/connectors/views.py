from django.conf import settings
from django.http import HttpResponse, HttpResponseForbidden, JsonResponse
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_http_methods

from hubbub.connectors.webhooks import do_receive_meta_delivery
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
