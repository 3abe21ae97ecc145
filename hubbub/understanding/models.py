from django.conf import settings
from django.db import models
from django.db.models import Q
from django.utils import timezone

from hubbub.accounts.models import Organization
from hubbub.lib.severity import SEVERITY_LABELS


class Task(models.TextChoices):
    COMPLAINT = "complaint", "Complaint (0/1)"
    SENTIMENT = "sentiment", "Sentiment"
    SEVERITY = "severity", "Complaint severity (0-4)"


# The labels of each task, in the order reports and confusion matrices show them.
TASK_LABELS: dict[str, tuple[str, ...]] = {
    Task.COMPLAINT: ("0", "1"),
    Task.SENTIMENT: ("negative", "neutral", "positive"),
    Task.SEVERITY: SEVERITY_LABELS,
}


class ModelState(models.TextChoices):
    CANDIDATE = "candidate", "Candidate"  # trained, never in use
    ACTIVE = "active", "Active"  # what the pipeline uses
    RETIRED = "retired", "Retired"  # was active once; a rollback can bring it back


class TrainedModel(models.Model):
    """One version of an organisation's classifier for one task, trained on its labelled posts."""

    organization = models.ForeignKey(Organization, on_delete=models.CASCADE, related_name="trained_models")
    task = models.CharField(max_length=20, choices=Task.choices)
    version = models.PositiveIntegerField()
    state = models.CharField(max_length=10, choices=ModelState.choices, default=ModelState.CANDIDATE)
    created_at = models.DateTimeField(default=timezone.now)
    created_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL)
    # Set each time the version becomes active; a rollback returns to the one active before.
    activated_at = models.DateTimeField(null=True, blank=True)
    training_size = models.PositiveIntegerField()
    # Figures on the held-out set for this model and for the one it was compared with.
    metrics = models.JSONField(default=dict, blank=True)
    # hubbub.lib.textmodel bytes (npz + JSON header, read without pickle).
    model = models.BinaryField()

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["organization", "task", "version"], name="trainedmodel_unique_version"),
            models.UniqueConstraint(
                fields=["organization", "task"],
                condition=Q(state="active"),
                name="trainedmodel_one_active",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.task} v{self.version} ({self.state})"


class LabelCorrection(models.Model):
    """An agent's label for a post: the training data of the organisation's own models."""

    # Indexed by labelcorrection_org_task (organization first).
    organization = models.ForeignKey(
        Organization, on_delete=models.CASCADE, related_name="label_corrections", db_index=False
    )
    task = models.CharField(max_length=20, choices=Task.choices)
    text = models.TextField()
    label = models.CharField(max_length=20)
    message = models.ForeignKey(
        "inbox.Message", null=True, blank=True, on_delete=models.SET_NULL, related_name="label_corrections"
    )
    corrected_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL)
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        indexes = [models.Index(fields=["organization", "task", "created_at"], name="labelcorrection_org_task")]

    def __str__(self) -> str:
        return f"{self.task}={self.label}"
