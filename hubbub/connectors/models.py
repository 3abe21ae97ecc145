from django.conf import settings
from django.db import models
from django.utils import timezone

from hubbub.accounts.models import Organization
from hubbub.connectors.base import AccountConfig
from hubbub.lib.crypto import decrypt_json, encrypt_json


class Network(models.TextChoices):
    MASTODON = "mastodon", "Mastodon"
    RSS = "rss", "Blogs, forums and reviews (RSS/Atom)"
    TWITTER = "twitter", "X / Twitter"
    REDDIT = "reddit", "Reddit"
    META = "meta", "Facebook Page and Instagram"
    BLUESKY = "bluesky", "Bluesky"
    EMAIL = "email", "Email"


class SocialAccount(models.Model):
    """A brand's presence on one network, and the state of our connection to it."""

    organization = models.ForeignKey(Organization, on_delete=models.CASCADE, related_name="social_accounts")
    network = models.CharField(max_length=20, choices=Network.choices)
    handle = models.CharField(max_length=200)
    base_url = models.URLField(blank=True)
    # Tokens never sit in the database in clear: see `credentials`.
    credentials_encrypted = models.TextField(blank=True, editable=False)
    settings = models.JSONField(default=dict, blank=True)
    cursor = models.JSONField(default=dict, blank=True)
    # Import-only accounts (a CSV of past traffic) are never polled or published to.
    polling_enabled = models.BooleanField(default=True)
    poll_interval_seconds = models.PositiveIntegerField(default=60)
    next_poll_at = models.DateTimeField(default=timezone.now)
    healthy = models.BooleanField(default=True)
    last_success_at = models.DateTimeField(null=True, blank=True)
    last_error = models.TextField(blank=True)
    last_error_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["organization", "network", "handle"], name="account_unique_handle")
        ]

    def __str__(self) -> str:
        return f"{self.handle} on {self.get_network_display()}"

    @property
    def credentials(self) -> dict:
        return decrypt_json(self.credentials_encrypted, settings.ENCRYPTION_KEY)

    @credentials.setter
    def credentials(self, value: dict) -> None:
        self.credentials_encrypted = encrypt_json(value, settings.ENCRYPTION_KEY) if value else ""

    def config(self) -> AccountConfig:
        return AccountConfig(
            network=self.network,
            handle=self.handle,
            base_url=self.base_url,
            credentials=self.credentials,
            settings={"allow_private": settings.HUBBUB_ALLOW_PRIVATE_URLS, **self.settings},
        )

    def mark_success(self) -> None:
        self.healthy = True
        self.last_success_at = timezone.now()

    def mark_error(self, message: str, permanent: bool) -> None:
        self.last_error = message[:2000]
        self.last_error_at = timezone.now()
        if permanent:
            self.healthy = False


class EventState(models.TextChoices):
    PENDING = "pending", "Pending"
    DONE = "done", "Done"
    FAILED = "failed", "Failed"
    # Judged spam or noise by a rule (hubbub.lib.noise): kept, with its reason, for a supervisor to restore.
    FILTERED = "filtered", "Filtered"


class InboundEvent(models.Model):
    """A post exactly as the network sent it, stored before anything interprets it."""

    # Indexed by the (account, external_id) constraint.
    account = models.ForeignKey(SocialAccount, on_delete=models.CASCADE, related_name="events", db_index=False)
    external_id = models.CharField(max_length=255)
    payload = models.JSONField()
    received_at = models.DateTimeField(default=timezone.now)
    state = models.CharField(max_length=10, choices=EventState.choices, default=EventState.PENDING)
    error = models.TextField(blank=True)
    attempts = models.PositiveIntegerField(default=0)
    processed_at = models.DateTimeField(null=True, blank=True)
    # Set when a noise rule filtered the event; kept after a restore, as its history.
    noise_rule = models.CharField(max_length=20, blank=True)
    noise_reason = models.CharField(max_length=500, blank=True)
    # External id of the post a repost or duplicate was folded onto, when known.
    folded_onto = models.CharField(max_length=255, blank=True)
    # Reposts and duplicates folded onto this post: engagement the case can show.
    engagement = models.PositiveIntegerField(default=0)
    # A supervisor restored it: the noise rules never filter it again.
    noise_exempt = models.BooleanField(default=False)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["account", "external_id"], name="event_unique_per_account")]
        indexes = [
            models.Index(fields=["state", "id"], name="event_state_id"),
            # The Filtered page lists and counts one rule's events.
            models.Index(fields=["state", "noise_rule", "id"], name="event_state_rule_id"),
        ]

    def __str__(self) -> str:
        return f"{self.account_id}:{self.external_id} ({self.state})"

    def restore(self) -> None:
        """Send a filtered event back through the pipeline, past the noise rules."""
        if self.state != EventState.FILTERED:
            raise ValueError("only filtered events can be restored")
        self.state = EventState.PENDING
        self.noise_exempt = True
        self.processed_at = None


class WebhookDelivery(models.Model):
    """A webhook body exactly as received (after its signature checked), kept before it is split into events.

    A delivery that cannot be read or attributed to an account stays here, failed, with its error:
    nothing a network pushed to us is lost.
    """

    source = models.CharField(max_length=20)
    body = models.TextField()
    received_at = models.DateTimeField(default=timezone.now)
    state = models.CharField(max_length=10, choices=EventState.choices, default=EventState.PENDING)
    error = models.TextField(blank=True)

    class Meta:
        indexes = [models.Index(fields=["state", "id"], name="delivery_state_id")]

    def __str__(self) -> str:
        return f"{self.source} delivery {self.pk} ({self.state})"
