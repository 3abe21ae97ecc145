from django.conf import settings
from django.db import models
from django.utils import timezone

from hubbub.accounts.models import Organization


class Playbook(models.Model):
    """One published version of an organization's routing rules. Versions are never edited."""

    organization = models.ForeignKey(Organization, on_delete=models.CASCADE, related_name="playbooks")
    version = models.PositiveIntegerField()
    source = models.TextField(help_text="The YAML as written")
    rules = models.JSONField(help_text="The validated rules, as the router reads them")
    is_active = models.BooleanField(default=False)
    created_at = models.DateTimeField(default=timezone.now)
    created_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["organization", "version"], name="playbook_unique_version"),
            models.UniqueConstraint(
                fields=["organization"], condition=models.Q(is_active=True), name="playbook_one_active"
            ),
        ]
        ordering = ["-version"]

    def __str__(self) -> str:
        return f"{self.organization} playbook v{self.version}"
