from django.contrib.auth.models import User
from django.db import transaction

from hubbub.accounts.models import DEFAULT_DEPARTMENTS, Department, Membership, Organization, Role


@transaction.atomic
def do_create_organization(name: str, slug: str = "") -> Organization:
    organization = Organization.objects.create(name=name, slug=slug)
    Department.objects.bulk_create(
        Department(organization=organization, slug=dept_slug, name=dept_name)
        for dept_slug, dept_name in DEFAULT_DEPARTMENTS
    )
    return organization


@transaction.atomic
def do_add_member(
    organization: Organization, user: User, role: str = Role.AGENT, department_slugs: list[str] | None = None
) -> Membership:
    membership, _ = Membership.objects.update_or_create(user=user, organization=organization, defaults={"role": role})
    if department_slugs is not None:
        membership.departments.set(organization.departments.filter(slug__in=department_slugs))
    return membership
