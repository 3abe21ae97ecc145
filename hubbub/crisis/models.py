from __future__ import annotations

from collections.abc import Iterable

from django.conf import settings
from django.db import models
from django.db.models import Q
from django.utils import timezone

from hubbub.accounts.models import Department, Organization

# A crisis mode with this topic covers every post of the organization.
ALL_TOPICS = ""


class AlertState(models.TextChoices):
    OPEN = "open", "Open"
    ACKNOWLEDGED = "acknowledged", "Acknowledged"
    CLOSED = "closed", "Closed"


ALERT_TRANSITIONS = {
    AlertState.OPEN: {AlertState.ACKNOWLEDGED, AlertState.CLOSED},
    AlertState.ACKNOWLEDGED: {AlertState.CLOSED},
    AlertState.CLOSED: set(),
}


class TopicVolume(models.Model):
    """How many customer posts about a topic arrived in one UTC hour: the spike detector's input,
    kept up to date incrementally so that detection never rescans weeks of messages."""

    organization = models.ForeignKey(Organization, on_delete=models.CASCADE, related_name="+", db_index=False)
    topic = models.CharField(max_length=100)
    hour = models.DateTimeField()
    count = models.PositiveIntegerField(default=0)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["organization", "topic", "hour"], name="topic_volume_unique"),
        ]
        indexes = [models.Index(fields=["hour"], name="topic_volume_hour")]

    def __str__(self) -> str:
        return f"{self.topic} {self.hour:%Y-%m-%d %H}:00 {self.count}"


class SpikeScan(models.Model):
    """How far the detector has counted messages. One row; workers lock it, so two of them never
    count the same message twice."""

    name = models.CharField(max_length=20, unique=True)
    last_message_id = models.BigIntegerField(default=0)
    ran_at = models.DateTimeField(null=True, blank=True)

    def __str__(self) -> str:
        return f"{self.name} up to message {self.last_message_id}"


class CrisisAlert(models.Model):
    """A volume spike on one topic in one hour; raised once per topic and hour."""

    organization = models.ForeignKey(Organization, on_delete=models.CASCADE, related_name="crisis_alerts")
    topic = models.CharField(max_length=100)
    hour = models.DateTimeField()
    detected_at = models.DateTimeField(default=timezone.now)
    volume = models.PositiveIntegerField()
    baseline = models.FloatField()
    spread = models.FloatField(default=0)
    ratio = models.FloatField()
    reason = models.TextField()
    state = models.CharField(max_length=20, choices=AlertState.choices, default=AlertState.OPEN)
    handled_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    handled_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["organization", "topic", "hour"], name="crisis_alert_once_per_hour"),
        ]
        ordering = ["-hour", "-id"]

    def __str__(self) -> str:
        return f"spike on {self.topic} at {self.hour:%Y-%m-%d %H}:00"

    def move_to(self, state: str, user) -> None:
        if state not in ALERT_TRANSITIONS[AlertState(self.state)]:
            raise ValueError(f"an alert cannot go from {self.state} to {state}")
        self.state = state
        self.handled_by = user
        self.handled_at = timezone.now()


class CrisisMode(models.Model):
    """A crisis playbook in force for one topic (or every post) from started_at until ended_at.

    While it is in force, posts on the topic go to its queue at top priority, and every public
    reply on such a case waits for a supervisor's approval.
    """

    organization = models.ForeignKey(Organization, on_delete=models.CASCADE, related_name="crisis_modes")
    topic = models.CharField(max_length=100, blank=True, help_text="empty: every post")
    # The dedicated queue; empty keeps the department the playbook chose.
    department = models.ForeignKey(Department, null=True, blank=True, on_delete=models.SET_NULL, related_name="+")
    holding_statement = models.TextField(blank=True)
    alert = models.ForeignKey(CrisisAlert, null=True, blank=True, on_delete=models.SET_NULL, related_name="+")
    started_at = models.DateTimeField(default=timezone.now)
    started_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    ended_at = models.DateTimeField(null=True, blank=True)
    ended_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )

    class Meta:
        constraints = [
            # One crisis per topic at a time: two would disagree about the queue.
            models.UniqueConstraint(
                fields=["organization", "topic"], condition=Q(ended_at__isnull=True), name="crisis_one_active_per_topic"
            ),
        ]
        ordering = ["-started_at", "-id"]

    def __str__(self) -> str:
        return f"crisis on {self.topic_label}"

    def save(self, *args, **kwargs) -> None:
        if self.department_id is not None and self.department.organization_id != self.organization_id:
            raise ValueError("a crisis queue must be one of the organization's departments")
        super().save(*args, **kwargs)

    @property
    def topic_label(self) -> str:
        return self.topic or "every post"

    @property
    def is_active(self) -> bool:
        return self.ended_at is None

    def covers(self, topics: Iterable[str]) -> bool:
        return self.topic == ALL_TOPICS or self.topic in set(topics)
