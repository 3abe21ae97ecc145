"""Who may see and edit playbooks. Every member sees the intake playbook (it says where posts go)
and the playbooks of the departments they work; supervisors and admins edit those. Anything else
is a 404, like the inbox (hubbub.inbox.access)."""

from __future__ import annotations

from dataclasses import dataclass

from django.http import Http404
from django.urls import reverse

from hubbub.accounts.models import Department, Membership
from hubbub.inbox.access import check_supervisor, parse_id, visible_departments
from hubbub.playbook.models import HandOff, Playbook


@dataclass(frozen=True)
class Scope:
    """One playbook of the set: the intake's (department None) or a department's."""

    department: Department | None

    def url(self, name: str) -> str:
        """The intake's pages live under intake/ and departments' under departments/<slug>/, so no
        department slug, however it is edited, can shadow the intake."""
        if self.department is None:
            return reverse(f"playbook:intake_{name}")
        return reverse(f"playbook:{name}", args=[self.department.slug])

    @property
    def detail_url(self) -> str:
        return self.url("detail")

    @property
    def publish_url(self) -> str:
        return self.url("publish")

    @property
    def validate_url(self) -> str:
        return self.url("validate")

    @property
    def dry_run_url(self) -> str:
        return self.url("dry_run")

    @property
    def draft_url(self) -> str:
        return self.url("draft")

    @property
    def discard_url(self) -> str:
        return self.url("discard")

    @property
    def edit_form_url(self) -> str:
        """Where the structured form's add, remove, move and switch buttons post."""
        return self.url("form")

    @property
    def form_url(self) -> str:
        """The editor opened on the structured form."""
        return f"{self.detail_url}?view=form"

    @property
    def title(self) -> str:
        return f"{self.department.name} playbook" if self.department is not None else "Intake playbook"


def access_scope(membership: Membership, slug: str | None) -> Scope:
    """`slug` None is the intake playbook."""
    if slug is None:
        return Scope(None)
    department = visible_departments(membership).filter(slug=slug).first()
    if department is None:
        raise Http404("no such playbook")
    return Scope(department)


def access_scope_to_edit(membership: Membership, slug: str | None) -> Scope:
    check_supervisor(membership)
    return access_scope(membership, slug)


def access_version(membership: Membership, playbook_id) -> Playbook:
    found = (
        Playbook.objects.select_related("organization", "department", "created_by")
        .filter(organization_id=membership.organization_id, pk=parse_id(playbook_id))
        .first()
    )
    if found is None or (
        found.department_id is not None and found.department_id not in membership.visible_department_ids()
    ):
        raise Http404("no such playbook version")
    return found


def access_version_to_edit(membership: Membership, playbook_id) -> Playbook:
    check_supervisor(membership)
    return access_version(membership, playbook_id)


def visible_handoffs(membership: Membership):
    """Hand-offs to the departments the member works."""
    return HandOff.objects.filter(
        organization_id=membership.organization_id, department_id__in=membership.visible_department_ids()
    )


def access_handoff(membership: Membership, handoff_id) -> HandOff:
    found = visible_handoffs(membership).select_related("organization").filter(pk=parse_id(handoff_id)).first()
    if found is None:
        raise Http404("no such hand-off")
    return found
