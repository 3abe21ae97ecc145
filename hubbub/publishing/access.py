"""Who may act on a reply waiting for approval: supervisors and admins, for cases they may see.

Anything else is a 404, like the inbox (hubbub.inbox.access).
"""

from __future__ import annotations

from django.db.models import QuerySet
from django.http import Http404

from hubbub.accounts.models import Membership
from hubbub.inbox.access import check_supervisor, parse_id, visible_cases
from hubbub.publishing.models import OutboundMessage, OutboxState


def pending_replies(membership: Membership) -> QuerySet[OutboundMessage]:
    check_supervisor(membership)
    return OutboundMessage.objects.filter(
        organization_id=membership.organization_id,
        state=OutboxState.PENDING_APPROVAL,
        case__in=visible_cases(membership),
    )


def access_pending_reply(membership: Membership, outbound_id) -> OutboundMessage:
    outbound = (
        pending_replies(membership)
        .select_related("organization", "case", "created_by")
        .filter(pk=parse_id(outbound_id))
        .first()
    )
    if outbound is None:
        raise Http404("no such reply waiting for approval")
    return outbound


def access_own_draft(membership: Membership, user, outbound_id) -> OutboundMessage:
    """A reply the user wrote, sent back to them, on a case they may still see."""
    outbound = (
        OutboundMessage.objects.select_related("organization", "case")
        .filter(
            pk=parse_id(outbound_id),
            organization_id=membership.organization_id,
            created_by=user,
            state=OutboxState.DRAFT,
            case__in=visible_cases(membership),
        )
        .first()
    )
    if outbound is None:
        raise Http404("no such draft")
    return outbound
