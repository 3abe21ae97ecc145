import uuid

from django.conf import settings
from django.db import models
from django.utils import timezone

from hubbub.accounts.models import Organization
from hubbub.connectors.models import SocialAccount
from hubbub.inbox.models import Case, Message, Visibility


class OutboxState(models.TextChoices):
    DRAFT = "draft", "Draft"
    PENDING_APPROVAL = "pending_approval", "Pending approval"
    APPROVED = "approved", "Approved"
    SENDING = "sending", "Sending"
    SENT = "sent", "Sent"
    FAILED = "failed", "Failed"


# Allowed moves; anything else is a bug.
TRANSITIONS = {
    OutboxState.DRAFT: {OutboxState.PENDING_APPROVAL, OutboxState.APPROVED},
    OutboxState.PENDING_APPROVAL: {OutboxState.APPROVED, OutboxState.DRAFT},
    OutboxState.APPROVED: {OutboxState.SENDING},
    OutboxState.SENDING: {OutboxState.SENT, OutboxState.APPROVED, OutboxState.FAILED},
    OutboxState.FAILED: {OutboxState.APPROVED},
    OutboxState.SENT: set(),
}


class OutboundMessage(models.Model):
    """A reply on its way to a network. The idempotency key is stored before the first attempt."""

    organization = models.ForeignKey(Organization, on_delete=models.CASCADE, related_name="outbox")
    case = models.ForeignKey(Case, on_delete=models.CASCADE, related_name="outbox")
    account = models.ForeignKey(SocialAccount, on_delete=models.PROTECT, related_name="outbox")
    in_reply_to = models.ForeignKey(Message, null=True, blank=True, on_delete=models.SET_NULL, related_name="+")
    visibility = models.CharField(max_length=10, choices=Visibility.choices, default=Visibility.PUBLIC)
    text = models.TextField()
    state = models.CharField(max_length=20, choices=OutboxState.choices, default=OutboxState.DRAFT)
    idempotency_key = models.CharField(max_length=64, unique=True, default=uuid.uuid4, editable=False)
    attempts = models.PositiveIntegerField(default=0)
    next_attempt_at = models.DateTimeField(default=timezone.now)
    last_error = models.TextField(blank=True)
    external_id = models.CharField(max_length=255, blank=True)
    message = models.OneToOneField(Message, null=True, blank=True, on_delete=models.SET_NULL, related_name="+")
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    created_at = models.DateTimeField(default=timezone.now)
    sent_at = models.DateTimeField(null=True, blank=True)
    # The approval decision: who approved it or sent it back, and the note for its author.
    reviewed_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    reviewed_at = models.DateTimeField(null=True, blank=True)
    review_note = models.TextField(blank=True)

    class Meta:
        indexes = [
            models.Index(fields=["state", "next_attempt_at"], name="outbox_due"),
            # The approvals page: few rows waiting, read newest first per organization.
            models.Index(
                fields=["organization", "id"],
                condition=models.Q(state="pending_approval"),
                name="outbox_pending_approval",
            ),
        ]

    def __str__(self) -> str:
        return f"outbound {self.pk} ({self.state})"

    @property
    def is_public(self) -> bool:
        return self.visibility == Visibility.PUBLIC

    def move_to(self, state: str) -> None:
        if state not in TRANSITIONS[OutboxState(self.state)]:
            raise ValueError(f"an outbound message cannot go from {self.state} to {state}")
        self.state = state
