from django.conf import settings
from django.db import models
from django.db.models import Q
from django.utils import timezone

from hubbub.accounts.models import Department, Organization
from hubbub.inbox.models import Case


class Playbook(models.Model):
    """One published version of an organization's routing rules: its intake playbook (no
    department), which picks the department, or one department's. Versions are never edited.

    Version numbers count every publish of the organization, whichever playbook it changed, so
    the highest active version names the whole set a case was routed by (Case.playbook_version).
    """

    organization = models.ForeignKey(Organization, on_delete=models.CASCADE, related_name="playbooks")
    # Null: the intake playbook. PROTECT: a department with playbook history is kept for the audit trail.
    department = models.ForeignKey(
        Department, null=True, blank=True, on_delete=models.PROTECT, related_name="playbooks"
    )
    version = models.PositiveIntegerField()
    source = models.TextField(help_text="The YAML as written")
    rules = models.JSONField(help_text="The validated rules, as the router reads them")
    is_active = models.BooleanField(default=False)
    # A rollback publishes a copy of an earlier version; this says which.
    restored_from = models.PositiveIntegerField(null=True, blank=True)
    created_at = models.DateTimeField(default=timezone.now)
    created_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["organization", "version"], name="playbook_unique_version"),
            # Two constraints rather than one with nulls_distinct=False, which SQLite lacks.
            models.UniqueConstraint(
                fields=["organization"],
                condition=Q(is_active=True, department__isnull=True),
                name="playbook_one_active_intake",
            ),
            models.UniqueConstraint(
                fields=["organization", "department"],
                condition=Q(is_active=True, department__isnull=False),
                name="playbook_one_active_per_department",
            ),
        ]
        ordering = ["-version"]

    def __str__(self) -> str:
        scope = self.department.slug if self.department_id else "intake"
        return f"{self.organization} {scope} playbook v{self.version}"

    @property
    def scope(self) -> str | None:
        """The department slug the playbook belongs to; None for the intake playbook."""
        return self.department.slug if self.department_id else None


class PlaybookDraft(models.Model):
    """A playbook being written and not yet published: one per playbook of the set, kept between
    visits so a supervisor can dry-run today and publish tomorrow. It may not parse yet; it is
    validated when published. Publishing that playbook deletes it."""

    organization = models.ForeignKey(Organization, on_delete=models.CASCADE, related_name="playbook_drafts")
    # Null: the intake playbook's draft.
    department = models.ForeignKey(
        Department, null=True, blank=True, on_delete=models.CASCADE, related_name="playbook_drafts"
    )
    source = models.TextField()
    updated_at = models.DateTimeField(default=timezone.now)
    updated_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL)

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["organization"], condition=Q(department__isnull=True), name="playbook_draft_one_intake"
            ),
            models.UniqueConstraint(
                fields=["organization", "department"],
                condition=Q(department__isnull=False),
                name="playbook_draft_one_per_department",
            ),
        ]

    def __str__(self) -> str:
        scope = self.department.slug if self.department_id else "intake"
        return f"{self.organization} {scope} playbook draft"


class HandOff(models.Model):
    """A department told of a case it does not work (legal, PR, …) by a playbook rule's `notify`.

    The receipt is the moment one of that department's members acknowledges it: until then the
    hand-off is open on the department's Hand-offs page. Its members may read the case.
    """

    organization = models.ForeignKey(Organization, on_delete=models.CASCADE, related_name="handoffs")
    case = models.ForeignKey(Case, on_delete=models.CASCADE, related_name="handoffs")
    department = models.ForeignKey(Department, on_delete=models.CASCADE, related_name="handoffs")
    # The playbook rule that asked for it, as Case.playbook_rule names rules.
    rule = models.CharField(max_length=200, blank=True)
    created_at = models.DateTimeField(default=timezone.now)
    received_at = models.DateTimeField(null=True, blank=True)
    received_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )

    class Meta:
        constraints = [models.UniqueConstraint(fields=["case", "department"], name="handoff_once_per_department")]
        indexes = [models.Index(fields=["department", "received_at", "-created_at"], name="handoff_inbox")]
        ordering = ["-created_at", "-id"]

    def __str__(self) -> str:
        return f"case {self.case_id} handed to {self.department_id}"
