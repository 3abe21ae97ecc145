from django.conf import settings
from django.db import models
from django.db.models import Q
from django.utils import timezone

from hubbub.accounts.models import Organization
from hubbub.inbox.models import Case


class ReleaseReason(models.TextChoices):
    AWAY = "away", "Agent went away"
    IDLE = "idle", "Agent sat idle on it"
    DONE = "done", "Worked"


class Assignment(models.Model):
    """One spell of an agent holding a case handed out by routing.

    Kept apart from Case so that routing can tell how long an agent has held a case, and
    requeue it when they sit on it, without touching the inbox's model.
    """

    organization = models.ForeignKey(Organization, on_delete=models.CASCADE, related_name="assignments")
    case = models.ForeignKey(Case, on_delete=models.CASCADE, related_name="assignments")
    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="assignments")
    assigned_at = models.DateTimeField(default=timezone.now)
    released_at = models.DateTimeField(null=True, blank=True)
    release_reason = models.CharField(max_length=10, choices=ReleaseReason.choices, blank=True)
    # How the case was chosen (sticky, queue), for the audit trail and the supervisor.
    route = models.CharField(max_length=20, blank=True)

    class Meta:
        indexes = [
            models.Index(
                fields=["organization", "assigned_at"],
                condition=Q(released_at__isnull=True),
                name="assignment_active",
            )
        ]
        constraints = [
            # A case is held by at most one agent at a time: the database says so too.
            models.UniqueConstraint(
                fields=["case"], condition=Q(released_at__isnull=True), name="assignment_one_holder"
            )
        ]

    def __str__(self) -> str:
        return f"case {self.case_id} to {self.user_id}"
