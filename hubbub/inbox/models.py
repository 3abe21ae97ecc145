import dataclasses
import datetime as dt

from django.conf import settings
from django.db import models
from django.db.models import Q
from django.utils import timezone

from hubbub.accounts.models import Department, Organization
from hubbub.connectors.models import InboundEvent, SocialAccount
from hubbub.lib.priority import Signals


class Customer(models.Model):
    """One person, however many networks they write from."""

    organization = models.ForeignKey(Organization, on_delete=models.CASCADE, related_name="customers")
    display_name = models.CharField(max_length=200, blank=True)
    created_at = models.DateTimeField(default=timezone.now)

    def __str__(self) -> str:
        return self.display_name or f"customer {self.pk}"


class Identity(models.Model):
    """A customer's handle on one network, with the reach it gives their posts."""

    # Indexed by identity_unique_handle (organization first).
    organization = models.ForeignKey(Organization, on_delete=models.CASCADE, related_name="identities", db_index=False)
    customer = models.ForeignKey(Customer, on_delete=models.CASCADE, related_name="identities")
    network = models.CharField(max_length=20)
    handle = models.CharField(max_length=255)
    display_name = models.CharField(max_length=200, blank=True)
    external_id = models.CharField(max_length=255, blank=True)
    followers = models.PositiveIntegerField(null=True, blank=True)
    updated_at = models.DateTimeField(default=timezone.now)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["organization", "network", "handle"], name="identity_unique_handle")
        ]
        verbose_name_plural = "identities"

    def __str__(self) -> str:
        return f"{self.handle} ({self.network})"


class CaseStatus(models.TextChoices):
    NEW = "new", "New"
    OPEN = "open", "Open"
    PENDING_CUSTOMER = "pending_customer", "Pending customer"
    RESOLVED = "resolved", "Resolved"
    CLOSED = "closed", "Closed"


# Statuses an agent still has to act on: these are the queues.
WORKING_STATUSES = (CaseStatus.NEW, CaseStatus.OPEN)
# Statuses a customer's new post can join rather than open a fresh case.
OPEN_STATUSES = (CaseStatus.NEW, CaseStatus.OPEN, CaseStatus.PENDING_CUSTOMER)


class Priority(models.IntegerChoices):
    URGENT = 1, "Urgent"
    HIGH = 2, "High"
    NORMAL = 3, "Normal"
    LOW = 4, "Low"


class Case(models.Model):
    """A conversation with one customer on one account, worked by one department."""

    organization = models.ForeignKey(Organization, on_delete=models.CASCADE, related_name="cases")
    department = models.ForeignKey(Department, on_delete=models.PROTECT, related_name="cases")
    account = models.ForeignKey(SocialAccount, on_delete=models.PROTECT, related_name="cases")
    # Indexed by case_customer_open (customer first).
    customer = models.ForeignKey(Customer, on_delete=models.PROTECT, related_name="cases", db_index=False)
    status = models.CharField(max_length=20, choices=CaseStatus.choices, default=CaseStatus.NEW)
    assignee = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="cases"
    )
    priority = models.PositiveSmallIntegerField(choices=Priority.choices, default=Priority.NORMAL)
    # A supervisor set the priority by hand: the score no longer moves it.
    priority_overridden = models.BooleanField(default=False)
    # The opening post, cut short, so queue pages never load messages.
    subject = models.CharField(max_length=280, blank=True)
    # The opening post's understanding (see hubbub.understanding.combine), or what an agent set.
    intent = models.CharField(max_length=30, blank=True)
    intent_confidence = models.FloatField(default=0)
    # Every label that holds (multi-label taxonomy, hubbub.lib.classify.LABELS) -> confidence.
    labels = models.JSONField(default=dict, blank=True)
    sentiment = models.CharField(max_length=10, blank=True)
    sentiment_score = models.FloatField(default=0)
    sentiment_confidence = models.FloatField(default=0)
    severity = models.PositiveSmallIntegerField(default=0)
    severity_confidence = models.FloatField(default=0)
    # Routed to the triage queue because the understanding was too unsure to route by; a person
    # confirms or corrects the labels and the playbook then routes it.
    needs_triage = models.BooleanField(default=False)
    language = models.CharField(max_length=8, blank=True)
    private_data = models.JSONField(default=list, blank=True)
    # Names of the listening queries the opening post matched.
    listening = models.JSONField(default=list, blank=True)
    # Set by the playbook: labels for reporting and filtering.
    tags = models.JSONField(default=list, blank=True)
    # Set by the playbook (or crisis mode): a reply waits for a supervisor's approval before it is sent.
    requires_approval = models.BooleanField(default=False)
    reach = models.PositiveIntegerField(null=True, blank=True)
    playbook_rule = models.CharField(max_length=200, blank=True)
    playbook_version = models.PositiveIntegerField(null=True, blank=True)
    opened_at = models.DateTimeField(default=timezone.now)
    last_message_at = models.DateTimeField(default=timezone.now)
    first_response_due_at = models.DateTimeField(null=True, blank=True)
    first_responded_at = models.DateTimeField(null=True, blank=True)
    resolved_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        indexes = [
            # The queue: one department's working cases by priority, then SLA due time, read in
            # index order; only working cases are in it, so closed history doesn't slow it down.
            models.Index(
                fields=["department", "priority", "first_response_due_at", "id"],
                condition=Q(status__in=WORKING_STATUSES),
                name="case_queue",
            ),
            models.Index(fields=["customer", "account", "status"], name="case_customer_open"),
            # The triage queue: few rows, read in queue order.
            models.Index(
                fields=["organization", "priority", "first_response_due_at", "id"],
                condition=Q(needs_triage=True, status__in=WORKING_STATUSES),
                name="case_triage",
            ),
        ]

    def __str__(self) -> str:
        return f"case {self.pk}"

    @property
    def is_working(self) -> bool:
        return self.status in WORKING_STATUSES

    def label_list(self) -> list[tuple[str, float]]:
        """The labels, most confident first (for the case page)."""
        return sorted(self.labels.items(), key=lambda item: -item[1]) if isinstance(self.labels, dict) else []

    def priority_signals(self, now: dt.datetime | None = None) -> Signals:
        """What the explainable priority score (hubbub.lib.priority) reads of this case."""
        signals = Signals(
            severity=self.severity,
            sentiment=self.sentiment,
            sentiment_intensity=abs(self.sentiment_score),
            followers=self.reach,
        )
        if self.first_response_due_at is None or self.first_responded_at is not None:
            return signals
        now = now or timezone.now()
        return dataclasses.replace(
            signals,
            sla_left=self.first_response_due_at - now,
            sla_target=self.first_response_due_at - self.opened_at,
        )

    def sla_breached(self, now=None) -> bool:
        due = self.first_response_due_at
        if due is None:
            return False
        done = self.first_responded_at or now or timezone.now()
        return done > due


class Direction(models.TextChoices):
    INBOUND = "in", "Inbound"
    OUTBOUND = "out", "Outbound"


class Visibility(models.TextChoices):
    PUBLIC = "public", "Public"
    PRIVATE = "private", "Private"


class Message(models.Model):
    """One post in a case: the customer's (inbound) or the brand's (outbound), public or private."""

    # Indexed by message_case_time; a second index on case alone would only slow inserts.
    case = models.ForeignKey(Case, on_delete=models.CASCADE, related_name="messages", db_index=False)
    account = models.ForeignKey(SocialAccount, on_delete=models.PROTECT, related_name="messages")
    direction = models.CharField(max_length=3, choices=Direction.choices)
    visibility = models.CharField(max_length=10, choices=Visibility.choices, default=Visibility.PUBLIC)
    external_id = models.CharField(max_length=255, null=True, blank=True)
    in_reply_to_external_id = models.CharField(max_length=255, null=True, blank=True)
    identity = models.ForeignKey(Identity, null=True, blank=True, on_delete=models.SET_NULL)
    author_user = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, db_index=False
    )
    text = models.TextField()
    # Sanitised HTML (feeds); the template still escapes `text` and only shows this through the sanitiser.
    html = models.TextField(blank=True)
    url = models.URLField(max_length=1000, blank=True)
    classification = models.JSONField(default=dict, blank=True)
    created_at = models.DateTimeField(default=timezone.now)
    event = models.ForeignKey(InboundEvent, null=True, blank=True, on_delete=models.SET_NULL)

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["account", "external_id"],
                condition=Q(external_id__isnull=False),
                name="message_unique_external_id",
            )
        ]
        indexes = [
            models.Index(fields=["case", "created_at"], name="message_case_time"),
            # "Next case" prefers the customers an agent answered lately: their replies, newest first.
            models.Index(
                fields=["author_user", "-created_at"], condition=Q(author_user__isnull=False), name="message_agent_time"
            ),
        ]
        ordering = ["created_at", "id"]

    def __str__(self) -> str:
        return f"{self.direction} {self.external_id or self.pk}"


class Note(models.Model):
    """Internal: never published."""

    case = models.ForeignKey(Case, on_delete=models.CASCADE, related_name="notes")
    author = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, on_delete=models.SET_NULL)
    text = models.TextField()
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["created_at", "id"]

    def __str__(self) -> str:
        return f"note {self.pk} on case {self.case_id}"
