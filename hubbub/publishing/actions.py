"""The outbox: replies are rows first, and a worker publishes them.

A reply is never published twice: its idempotency key is stored before the first attempt and
sent with every attempt (the network answers a repeated key with the post it already made),
and the platform's id is stored, with the case's message, once the network has answered.
"""

from __future__ import annotations

import datetime as dt
import logging

from django.db import connection, transaction
from django.utils import timezone

from hubbub.connectors.base import PermanentError, Reply, TransientError
from hubbub.connectors.models import SocialAccount
from hubbub.connectors.registry import connector_for
from hubbub.crisis.actions import crisis_for_case
from hubbub.governance.actions import do_audit
from hubbub.inbox.models import Case, CaseStatus, Direction, Message, Visibility
from hubbub.publishing.models import OutboundMessage, OutboxState

log = logging.getLogger(__name__)

MAX_ATTEMPTS = 8
MAX_REPLY_LENGTH = 5000
MAX_REVIEW_NOTE = 2000
# How long a claimed reply is left to its worker before another may take it over.
SENDING_LEASE = dt.timedelta(minutes=5)


class ReplyError(ValueError):
    pass


def _clean_text(text: str) -> str:
    text = (text or "").strip()
    if not text:
        raise ReplyError("a reply needs some text")
    if len(text) > MAX_REPLY_LENGTH:
        raise ReplyError(f"a reply can be at most {MAX_REPLY_LENGTH} characters")
    return text


def approval_reason(case: Case, private: bool) -> str:
    """Why a reply on this case must wait for a supervisor, or "" when it may go out directly."""
    if case.requires_approval:
        return "the playbook requires approval for this case"
    if not private:
        mode = crisis_for_case(case)
        if mode is not None:
            # In a crisis what the brand says in public is what gets quoted: every public word is checked.
            return f"crisis mode is on for {mode.topic_label}"
    return ""


@transaction.atomic
def do_reply(case: Case, user, text: str, private: bool = False) -> OutboundMessage:
    """Queue an agent's reply to the latest customer message of a case; it waits for approval
    when the case requires it or, for a public reply, when a crisis mode covers the case."""
    text = _clean_text(text)
    reason = approval_reason(case, private)
    last_inbound = (
        case.messages.filter(direction=Direction.INBOUND).exclude(external_id=None).order_by("-created_at").first()
    )
    outbound = OutboundMessage.objects.create(
        organization_id=case.organization_id,
        case=case,
        account_id=case.account_id,
        in_reply_to=last_inbound,
        visibility=Visibility.PRIVATE if private else Visibility.PUBLIC,
        text=text,
        state=OutboxState.PENDING_APPROVAL if reason else OutboxState.APPROVED,
        created_by=user,
    )
    if case.assignee_id is None:
        case.assignee = user
    if case.status == CaseStatus.NEW:
        case.status = CaseStatus.OPEN
    case.save(update_fields=["assignee", "status"])
    do_audit(case.organization, user, "reply.queued", outbound, case=case.pk, visibility=outbound.visibility)
    if reason:
        do_audit(case.organization, user, "reply.approval_requested", outbound, case=case.pk, reason=reason)
    return outbound


def _locked_pending(outbound: OutboundMessage) -> OutboundMessage:
    locked = OutboundMessage.objects.select_for_update().get(pk=outbound.pk)
    if locked.state != OutboxState.PENDING_APPROVAL:
        raise ReplyError("this reply is no longer waiting for approval")
    return locked


@transaction.atomic
def do_approve_reply(outbound: OutboundMessage, user) -> None:
    """A supervisor approves a waiting reply; the worker publishes it on its next round."""
    locked = _locked_pending(outbound)
    if locked.created_by_id is not None and locked.created_by_id == user.pk:
        raise ReplyError("you cannot approve your own reply: another supervisor must")
    locked.move_to(OutboxState.APPROVED)
    locked.next_attempt_at = timezone.now()
    locked.reviewed_by, locked.reviewed_at, locked.review_note = user, timezone.now(), ""
    locked.save(update_fields=["state", "next_attempt_at", "reviewed_by", "reviewed_at", "review_note"])
    do_audit(locked.organization, user, "reply.approved", locked, case=locked.case_id)
    outbound.refresh_from_db()


@transaction.atomic
def do_send_back_reply(outbound: OutboundMessage, user, note: str) -> None:
    """A supervisor returns a waiting reply to its author as a draft, saying what to change."""
    note = (note or "").strip()
    if not note:
        raise ReplyError("say what should change: the author sees the note on the case")
    if len(note) > MAX_REVIEW_NOTE:
        raise ReplyError(f"a note can be at most {MAX_REVIEW_NOTE} characters")
    locked = _locked_pending(outbound)
    locked.move_to(OutboxState.DRAFT)
    locked.reviewed_by, locked.reviewed_at, locked.review_note = user, timezone.now(), note
    locked.save(update_fields=["state", "reviewed_by", "reviewed_at", "review_note"])
    do_audit(locked.organization, user, "reply.sent_back", locked, case=locked.case_id, note=note[:500])
    outbound.refresh_from_db()


@transaction.atomic
def do_resubmit_reply(outbound: OutboundMessage, user, text: str) -> None:
    """The author sends a draft that was sent back again, edited; it goes out directly if nothing
    requires approval any more (the crisis ended), else it waits for approval again."""
    text = _clean_text(text)
    locked = OutboundMessage.objects.select_for_update().select_related("case").get(pk=outbound.pk)
    if locked.state != OutboxState.DRAFT:
        raise ReplyError("only a reply that was sent back can be edited and sent again")
    if locked.created_by_id != user.pk:
        raise ReplyError("only the author of a reply can send it again")
    reason = approval_reason(locked.case, private=not locked.is_public)
    locked.move_to(OutboxState.PENDING_APPROVAL if reason else OutboxState.APPROVED)
    locked.text, locked.next_attempt_at = text, timezone.now()
    locked.save(update_fields=["state", "text", "next_attempt_at"])
    do_audit(locked.organization, user, "reply.resubmitted", locked, case=locked.case_id, reason=reason)
    outbound.refresh_from_db()


def publish_due(limit: int = 20) -> int:
    """Publish replies that are due. Returns how many were attempted."""
    attempted = 0
    for outbound_id in _claim(limit):
        _publish(outbound_id)
        attempted += 1
    return attempted


def _claim(limit: int) -> list[int]:
    now = timezone.now()
    with transaction.atomic():
        due = OutboundMessage.objects.filter(
            state__in=(OutboxState.APPROVED, OutboxState.SENDING), next_attempt_at__lte=now
        ).order_by("next_attempt_at", "id")
        if connection.features.has_select_for_update_skip_locked:
            due = due.select_for_update(skip_locked=True)
        claimed = list(due[:limit])
        for outbound in claimed:
            # A reply still SENDING here was interrupted (its worker died): try again, same key.
            if outbound.state == OutboxState.APPROVED:
                outbound.move_to(OutboxState.SENDING)
            outbound.attempts += 1
            outbound.next_attempt_at = now + SENDING_LEASE
        OutboundMessage.objects.bulk_update(claimed, ["state", "attempts", "next_attempt_at"])
    return [o.pk for o in claimed]


def _publish(outbound_id: int) -> None:
    outbound = OutboundMessage.objects.select_related("account", "in_reply_to__identity", "case").get(pk=outbound_id)
    account = outbound.account
    reply = Reply(
        text=outbound.text,
        idempotency_key=outbound.idempotency_key,
        private=outbound.visibility == Visibility.PRIVATE,
        in_reply_to_external_id=outbound.in_reply_to.external_id if outbound.in_reply_to else None,
        to_handle=_customer_handle(outbound),
    )
    try:
        published = connector_for(account).publish(reply)
    except TransientError as exc:
        _retry_later(outbound, str(exc), exc.retry_after)
        return
    except PermanentError as exc:
        _fail(outbound, str(exc), account if exc.affects_account else None)
        return
    except Exception as exc:  # a bug in a connector must not stop the outbox
        log.exception("publishing outbound %s failed", outbound.pk)
        _retry_later(outbound, f"{type(exc).__name__}: {exc}", None)
        return
    _record_sent(outbound, published.external_id, published.url)


def _customer_handle(outbound: OutboundMessage) -> str:
    if outbound.in_reply_to and outbound.in_reply_to.identity:
        return outbound.in_reply_to.identity.handle
    identity = outbound.case.customer.identities.filter(network=outbound.account.network).first()
    return identity.handle if identity else ""


@transaction.atomic
def _record_sent(outbound: OutboundMessage, external_id: str, url: str) -> None:
    now = timezone.now()
    case = Case.objects.select_for_update().get(pk=outbound.case_id)
    # Our own reply may already have come back through polling and been threaded: keep that one.
    message = Message.objects.filter(account_id=outbound.account_id, external_id=external_id).first()
    if message is None:
        message = Message.objects.create(
            case=case,
            account_id=outbound.account_id,
            direction=Direction.OUTBOUND,
            visibility=outbound.visibility,
            external_id=external_id,
            in_reply_to_external_id=outbound.in_reply_to.external_id if outbound.in_reply_to else None,
            author_user_id=outbound.created_by_id,
            text=outbound.text,
            url=url[:1000],
            created_at=now,
        )
    outbound.move_to(OutboxState.SENT)
    outbound.external_id = external_id
    outbound.message = message
    outbound.sent_at = now
    outbound.last_error = ""
    outbound.save(update_fields=["state", "external_id", "message", "sent_at", "last_error"])
    if outbound.created_by_id is not None:
        case.save(update_fields=case.brand_replied(now))
    # else a playbook's automatic acknowledgement: no person has answered yet, so the case stays in
    # the queue and its first-response clock keeps running.
    SocialAccount.objects.filter(pk=outbound.account_id).update(healthy=True, last_success_at=now)


def _retry_later(outbound: OutboundMessage, error: str, retry_after: float | None) -> None:
    if outbound.attempts >= MAX_ATTEMPTS:
        _fail(outbound, f"gave up after {outbound.attempts} attempts: {error}", None)
        return
    # Exponential backoff from 10 s, capped at an hour, unless the network said when.
    wait = retry_after if retry_after is not None else min(3600, 10 * 2 ** (outbound.attempts - 1))
    outbound.move_to(OutboxState.APPROVED)
    outbound.last_error = error[:2000]
    outbound.next_attempt_at = timezone.now() + dt.timedelta(seconds=wait)
    outbound.save(update_fields=["state", "last_error", "next_attempt_at"])
    log.warning("outbound %s: %s; next attempt in %.0fs", outbound.pk, error, wait)


@transaction.atomic
def _fail(outbound: OutboundMessage, error: str, account: SocialAccount | None) -> None:
    outbound.move_to(OutboxState.FAILED)
    outbound.last_error = error[:2000]
    outbound.save(update_fields=["state", "last_error"])
    if account is not None:
        account.mark_error(error, permanent=True)
        account.save(update_fields=["last_error", "last_error_at", "healthy"])
    do_audit(outbound.organization, None, "reply.failed", outbound, error=error[:500])


@transaction.atomic
def do_retry_reply(outbound: OutboundMessage, user) -> None:
    outbound.move_to(OutboxState.APPROVED)
    outbound.next_attempt_at = timezone.now()
    outbound.attempts = 0
    outbound.save(update_fields=["state", "next_attempt_at", "attempts"])
    do_audit(outbound.organization, user, "reply.retried", outbound)
