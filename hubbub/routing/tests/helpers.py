"""Building organizations, agents and queues for routing tests."""

from __future__ import annotations

import datetime as dt
import itertools

from django.contrib.auth.models import User
from django.utils import timezone

from hubbub.accounts.actions import do_add_member, do_create_organization
from hubbub.accounts.models import Availability, Membership, Organization, Role
from hubbub.connectors.models import Network, SocialAccount
from hubbub.inbox.models import Case, CaseStatus, Customer, Direction, Message, Priority

PASSWORD = "a long enough test password"
_serial = itertools.count(1)


def make_org(name: str = "Acme", slug: str = "acme") -> Organization:
    return do_create_organization(name, slug)


def make_account(organization: Organization, network: str = Network.MASTODON) -> SocialAccount:
    return SocialAccount.objects.create(
        organization=organization, network=network, handle=f"@brand{next(_serial)}", base_url="https://social.example"
    )


def make_agent(
    organization: Organization,
    username: str,
    role: str = Role.AGENT,
    departments: tuple[str, ...] = ("customer-service",),
    online: bool = True,
    **routing,
) -> Membership:
    user = User.objects.create_user(username, password=PASSWORD)
    membership = do_add_member(organization, user, role, list(departments))
    membership.availability = Availability.ONLINE if online else Availability.AWAY
    for field, value in routing.items():
        setattr(membership, field, value)
    membership.save()
    return membership


def make_case(
    organization: Organization,
    account: SocialAccount,
    department: str = "customer-service",
    priority: int = Priority.NORMAL,
    due_in_minutes: int | None = 60,
    customer: Customer | None = None,
    **fields,
) -> Case:
    now = timezone.now()
    return Case.objects.create(
        organization=organization,
        department=organization.departments.get(slug=department),
        account=account,
        customer=customer or Customer.objects.create(organization=organization),
        priority=priority,
        first_response_due_at=None if due_in_minutes is None else now + dt.timedelta(minutes=due_in_minutes),
        status=fields.pop("status", CaseStatus.NEW),
        **fields,
    )


def answered_by(case: Case, user: User, minutes_ago: int = 60) -> Message:
    return Message.objects.create(
        case=case,
        account=case.account,
        direction=Direction.OUTBOUND,
        author_user=user,
        text="We're on it.",
        created_at=timezone.now() - dt.timedelta(minutes=minutes_ago),
    )
