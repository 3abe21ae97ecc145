from django.conf import settings
from django.db import models
from django.db.models import Q
from django.utils import timezone

from hubbub.accounts.models import Department, Organization
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
    # Indexed by assignment_agent_latest (user first).
    user = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="assignments", db_index=False
    )
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
            ),
            # Push's round robin: when each agent was last handed a case.
            models.Index(fields=["user", "organization", "-assigned_at"], name="assignment_agent_latest"),
        ]
        constraints = [
            # A case is held by at most one agent at a time: the database says so too.
            models.UniqueConstraint(
                fields=["case"], condition=Q(released_at__isnull=True), name="assignment_one_holder"
            )
        ]

    def __str__(self) -> str:
        return f"case {self.case_id} to {self.user_id}"


class RoutingMode(models.TextChoices):
    PULL = "pull", "Pull: agents press Next case"
    PUSH = "push", "Push: cases are assigned to agents as they have room"


class DepartmentRouting(models.Model):
    """How a department's queue reaches its agents. A department without a row is pull only.

    In push mode the worker hands each waiting case to an online agent of the department with
    room and the skills for it (round robin, the customer's own agent first); agents may still
    press Next case between rounds.
    """

    department = models.OneToOneField(Department, on_delete=models.CASCADE, primary_key=True, related_name="routing")
    mode = models.CharField(max_length=10, choices=RoutingMode.choices, default=RoutingMode.PULL)
    updated_at = models.DateTimeField(default=timezone.now)
    updated_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )

    def __str__(self) -> str:
        return f"{self.department}: {self.mode}"

    @property
    def is_push(self) -> bool:
        return self.mode == RoutingMode.PUSH
