"""Who may see what in the inbox.

Every lookup is scoped server-side to the member's organization and, for cases, to the
departments they work. Whatever a member may not see is a 404, never a 403, so that its
existence does not leak.
"""

from __future__ import annotations

from django.conf import settings
from django.db.models import Q, QuerySet
from django.http import Http404

from hubbub.accounts.models import Department, Membership, Role
from hubbub.connectors.models import EventState, InboundEvent
from hubbub.inbox.models import Case
from hubbub.playbook.models import HandOff
from hubbub.publishing.models import OutboundMessage

# The organization a member with several memberships chose with ?org=slug.
SESSION_KEY = "hubbub.organization_id"


def memberships_of(user) -> list[Membership]:
    return list(Membership.objects.filter(user=user).select_related("organization").order_by("id"))


def current_membership(request) -> Membership | None:
    """The membership the request works in: ?org=slug switches (and is remembered), else the
    one chosen earlier in this session, else the user's first. None when they have none."""
    memberships = memberships_of(request.user)
    request.memberships = memberships
    if not memberships:
        return None
    wanted = request.GET.get("org")
    if wanted is not None:
        for membership in memberships:
            if membership.organization.slug == wanted:
                request.session[SESSION_KEY] = membership.organization_id
                return membership
        raise Http404("no such organization")
    chosen = request.session.get(SESSION_KEY)
    return next((m for m in memberships if m.organization_id == chosen), memberships[0])


def parse_id(value) -> int:
    """A primary key from a URL or form; anything else is a 404."""
    try:
        number = int(value)
    except (TypeError, ValueError):
        raise Http404("not an id") from None
    if number <= 0:
        raise Http404("not an id")
    return number


def can_supervise(membership: Membership) -> bool:
    return membership.role in (Role.SUPERVISOR, Role.ADMIN)


def check_supervisor(membership: Membership) -> None:
    if not can_supervise(membership):
        raise Http404("supervisors only")


def visible_departments(membership: Membership) -> QuerySet[Department]:
    return Department.objects.filter(
        organization_id=membership.organization_id, id__in=membership.visible_department_ids()
    ).order_by("name")


def access_department_tab(membership: Membership, slug: str) -> Department:
    """A queue tab: a department the member works."""
    department = visible_departments(membership).filter(slug=slug).first()
    if department is None:
        raise Http404("no such department")
    return department


def access_transfer_target(membership: Membership, department_id) -> Department:
    """Any department of the organization: agents may hand a case to a queue they don't work."""
    department = Department.objects.filter(
        organization_id=membership.organization_id, pk=parse_id(department_id)
    ).first()
    if department is None:
        raise Http404("no such department")
    return department


def _case_scope(membership: Membership) -> Q:
    scope = Q(department_id__in=membership.visible_department_ids())
    if can_supervise(membership):
        scope |= Q(needs_triage=True)
    return scope


def visible_cases(membership: Membership) -> QuerySet[Case]:
    """Cases of the departments the member works; supervisors also see every case waiting in triage."""
    return Case.objects.filter(_case_scope(membership), organization_id=membership.organization_id)


def sees_triage(membership: Membership) -> bool:
    """Supervisors, and members of the department that owns triage, work the triage queue."""
    if can_supervise(membership) or membership.sees_all_departments:
        return True
    return membership.departments.filter(slug=settings.HUBBUB_TRIAGE_DEPARTMENT).exists()


def access_case(membership: Membership, case_id) -> Case:
    """A case the member works: of their departments (and, for supervisors, triage)."""
    case = (
        visible_cases(membership)
        .select_related("organization", "department", "account", "customer", "assignee")
        .filter(pk=parse_id(case_id))
        .first()
    )
    if case is None:
        raise Http404("no such case")
    return case


def access_case_to_read(membership: Membership, case_id) -> tuple[Case, bool]:
    """A case the member may read, and whether they work it. Besides the cases they work, members
    may read (and add notes to) a case a playbook handed to one of their departments (a HandOff)."""
    pk = parse_id(case_id)
    handed_to_them = HandOff.objects.filter(case_id=pk, department_id__in=membership.visible_department_ids())
    case = (
        Case.objects.filter(_case_scope(membership) | Q(pk__in=handed_to_them.values("case_id")))
        .filter(organization_id=membership.organization_id, pk=pk)
        .select_related("organization", "department", "account", "customer", "assignee")
        .first()
    )
    if case is None:
        raise Http404("no such case")
    works = case.department_id in membership.visible_department_ids() or (
        case.needs_triage and can_supervise(membership)
    )
    return case, works


def access_outbound(case: Case, outbound_id) -> OutboundMessage:
    """A reply of a case the member may already see."""
    outbound = (
        OutboundMessage.objects.select_related("organization")
        .filter(pk=parse_id(outbound_id), case_id=case.pk, organization_id=case.organization_id)
        .first()
    )
    if outbound is None:
        raise Http404("no such reply")
    return outbound


def department_members(case: Case) -> QuerySet[Membership]:
    """Members who may be assigned the case: admins, and members of its department."""
    return (
        Membership.objects.filter(organization_id=case.organization_id)
        .filter(Q(role=Role.ADMIN) | Q(departments=case.department_id))
        .select_related("user")
        .distinct()
        .order_by("user__username")
    )


def access_assignee(membership: Membership, membership_id) -> Membership:
    """A membership of the same organization (the action checks it works the department)."""
    assignee = (
        Membership.objects.select_related("user")
        .filter(organization_id=membership.organization_id, pk=parse_id(membership_id))
        .first()
    )
    if assignee is None:
        raise Http404("no such member")
    return assignee


def dead_letters(membership: Membership) -> QuerySet[InboundEvent]:
    check_supervisor(membership)
    return InboundEvent.objects.filter(
        account__organization_id=membership.organization_id, state=EventState.FAILED
    ).select_related("account")


def access_event(membership: Membership, event_id) -> InboundEvent:
    check_supervisor(membership)
    event = (
        InboundEvent.objects.select_related("account__organization")
        .filter(account__organization_id=membership.organization_id, pk=parse_id(event_id))
        .first()
    )
    if event is None:
        raise Http404("no such event")
    return event
