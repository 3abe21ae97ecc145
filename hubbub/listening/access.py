"""Who may see and edit listening queries: members of the organization see them, supervisors
and admins edit them. Anything else is a 404, like the inbox (hubbub.inbox.access)."""

from __future__ import annotations

from django.http import Http404

from hubbub.accounts.models import Membership
from hubbub.inbox.access import check_supervisor, parse_id
from hubbub.listening.models import ListeningQuery


def access_query(membership: Membership, query_id) -> ListeningQuery:
    found = (
        ListeningQuery.objects.select_related("organization", "department", "created_by")
        .filter(organization_id=membership.organization_id, pk=parse_id(query_id))
        .first()
    )
    if found is None:
        raise Http404("no such listening query")
    return found


def access_query_to_edit(membership: Membership, query_id) -> ListeningQuery:
    check_supervisor(membership)
    return access_query(membership, query_id)
