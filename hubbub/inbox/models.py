import dataclasses
import datetime as dt

from django.conf import settings
from django.db import models, transaction
from django.db.models import Q
from django.utils import timezone

from hubbub.accounts.models import Department, Organization
from hubbub.connectors.models import InboundEvent, SocialAccount
from hubbub.lib import sla
from hubbub.lib.priority import Signals


class Tier(models.TextChoices):
    """The same names as hubbub.lib.priority.TIERS: the priority score and playbook rules read them."""

    STANDARD = "standard", "Standard"
    PREMIUM = "premium", "Premium"
    VIP = "vip", "VIP"


class Customer(models.Model):
    """One person, however many networks they write from."""

    organization = models.ForeignKey(Organization, on_delete=models.CASCADE, related_name="customers")
    display_name = models.CharField(max_length=200, blank=True)
    # Set by a supervisor on the case page or by a loaded VIP list (hubbub import_tiers).
    tier = models.CharField(max_length=10, choices=Tier.choices, default=Tier.STANDARD)
    created_at = models.DateTimeField(default=timezone.now)
    # Whose reply to the customer is the latest, and when: routing gives the customer's new cases to
    # that agent and holds them a while for them. Kept by Message.save, so that "next case" reads one
    # row per customer instead of searching the customer's messages. Indexed by customer_last_agent.
    last_agent = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+", db_index=False
    )
    last_answered_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        indexes = [
            # An agent's customers, most recently answered first ("next case" stickiness).
            models.Index(
                fields=["last_agent", "-last_answered_at"],
                condition=Q(last_agent__isnull=False),
                name="customer_last_agent",
            ),
        ]

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


# Statuses where the SLA clocks stand still: the ball is in the customer's court (or the case is done).
SLA_PAUSED_STATUSES = (CaseStatus.PENDING_CUSTOMER, CaseStatus.RESOLVED)


class SlaFlag(models.TextChoices):
    NONE = "", "On time"
    WARNING = "warning", "Near breach"
    BREACHED = "breached", "Breached"


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
    # SLA clocks (hubbub.lib.sla), in the playbook's business hours. Each runs while the case is
    # working; pending-customer and resolved pause them (see pause_sla / resume_sla).
    # The channel whose targets apply: the opening post's (public or private).
    sla_channel = models.CharField(max_length=10, default="public")
    first_response_warn_at = models.DateTimeField(null=True, blank=True)
    # Running from the customer's first message after the brand answered until the brand answers.
    next_response_due_at = models.DateTimeField(null=True, blank=True)
    next_response_warn_at = models.DateTimeField(null=True, blank=True)
    # Routing's next-response minutes (a rule's or the default's); the policy decides when None.
    next_response_minutes = models.PositiveIntegerField(null=True, blank=True)
    resolution_due_at = models.DateTimeField(null=True, blank=True)
    resolution_warn_at = models.DateTimeField(null=True, blank=True)
    sla_paused_at = models.DateTimeField(null=True, blank=True)
    # Business time spent paused so far, in seconds (every due time was moved later by it).
    sla_paused_seconds = models.PositiveIntegerField(default=0)
    # The SLA housekeeping looks at the case no later than this (a warning, breach or escalation step).
    sla_alert_at = models.DateTimeField(null=True, blank=True)
    # The queue badge, kept by the housekeeping: near breach or breached.
    sla_flag = models.CharField(max_length=10, choices=SlaFlag.choices, default=SlaFlag.NONE, blank=True)
    # The playbook's suggested replies for this case, as written ({"name", "text"} with placeholders,
    # filled in when the case page shows them) and whether it asked to move the conversation private.
    reply_templates = models.JSONField(default=list, blank=True)
    reply_privately = models.BooleanField(default=False)

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
            # The SLA housekeeping: working cases with a warning or escalation due.
            models.Index(
                fields=["organization", "sla_alert_at"],
                condition=Q(status__in=WORKING_STATUSES, sla_alert_at__isnull=False),
                name="case_sla_alert",
            ),
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

    def priority_signals(self, tier: str, now: dt.datetime | None = None) -> Signals:
        """What the explainable priority score (hubbub.lib.priority) reads of this case, whose
        customer has `tier` (passed in: the pipeline knows it without loading the customer)."""
        signals = Signals(
            severity=self.severity,
            sentiment=self.sentiment,
            sentiment_intensity=abs(self.sentiment_score),
            followers=self.reach,
            tier=tier,
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

    # --- SLA clocks ---------------------------------------------------------------------------
    # These change the instance only and return the fields they changed, so the pipeline can
    # save a batch at once and an action can save(update_fields=...).

    @property
    def sla_paused(self) -> bool:
        return self.status in SLA_PAUSED_STATUSES

    @property
    def sla_paused_for(self) -> dt.timedelta:
        return dt.timedelta(seconds=self.sla_paused_seconds)

    def running_clocks(self) -> list[sla.RunningClock]:
        """The clocks that are counting down now (none while the case waits or is done)."""
        if self.status not in WORKING_STATUSES:
            return []
        clocks = []
        if self.first_response_due_at is not None and self.first_responded_at is None:
            clocks.append(
                sla.RunningClock(sla.ClockName.FIRST_RESPONSE, self.first_response_due_at, self.first_response_warn_at)
            )
        if self.next_response_due_at is not None:
            clocks.append(
                sla.RunningClock(sla.ClockName.NEXT_RESPONSE, self.next_response_due_at, self.next_response_warn_at)
            )
        if self.resolution_due_at is not None:
            clocks.append(sla.RunningClock(sla.ClockName.RESOLUTION, self.resolution_due_at, self.resolution_warn_at))
        return clocks

    def start_sla(self, playbook, decision, private: bool = False) -> list[str]:
        """Start the first-response and resolution clocks at opening, from routing's decision and the
        playbook's SLA policy for the case's priority and channel. `playbook` is a PlaybookSet or None."""
        policy = _policy(playbook)
        default = playbook.default if playbook is not None else None
        self.sla_channel = (sla.Channel.PRIVATE if private else sla.Channel.PUBLIC).value
        first = sla.choose_target(
            decision.first_response_minutes,
            default.first_response_minutes if default else None,
            policy.target(self.priority, self.sla_channel, "first_response"),
        )
        self.first_response_due_at, self.first_response_warn_at = _clock(self.opened_at, first, policy)
        resolution = sla.choose_target(
            decision.resolution_minutes,
            default.resolution_minutes if default else None,
            policy.target(self.priority, self.sla_channel, "resolution"),
        )
        self.resolution_due_at, self.resolution_warn_at = _clock(self.opened_at, resolution, policy)
        self.next_response_minutes = decision.next_response_minutes
        self.sla_alert_at = self._earliest_look()
        return [
            "sla_channel",
            "first_response_due_at",
            "first_response_warn_at",
            "resolution_due_at",
            "resolution_warn_at",
            "next_response_minutes",
            "sla_alert_at",
        ]

    def set_priority(self, level: int, playbook) -> list[str]:
        """A new priority, with its SLA policy's targets: the resolution clock, and the first-response
        clock while unanswered, are worked out again from the opening, later by the business time the
        case has spent paused. A clock whose priority has no target in the policy keeps its due time,
        as does a running next-response clock (its start is not kept). Returns the changed fields."""
        self.priority = level
        policy = _policy(playbook)
        paused = dt.timedelta(seconds=self.sla_paused_seconds)
        moved = []
        for clock in ("first_response", "resolution"):
            if clock == "first_response" and self.first_responded_at is not None:
                continue
            target = policy.target(self.priority, self.sla_channel, clock)
            if target is None:
                continue
            due = sla.due_at(self.opened_at, target + paused, policy.calendar)
            warn = sla.due_at(self.opened_at, target * policy.warn_at + paused, policy.calendar)
            setattr(self, f"{clock}_due_at", due)
            setattr(self, f"{clock}_warn_at", min(warn, due))
            moved += [f"{clock}_due_at", f"{clock}_warn_at"]
        if not moved:
            return ["priority"]
        self.sla_alert_at = self._earliest_look()
        # A new clock starts unflagged; the housekeeping flags it again if it is already late.
        self.sla_flag = SlaFlag.NONE
        return ["priority", *moved, "sla_alert_at", "sla_flag"]

    def brand_replied(self, at: dt.datetime) -> list[str]:
        """The brand answered: the first-response clock (if running) and the next-response clock stop,
        and a working case now waits on the customer, which pauses the other clocks."""
        if self.first_responded_at is None or at < self.first_responded_at:
            self.first_responded_at = at
        self.next_response_due_at = self.next_response_warn_at = None
        if self.status in WORKING_STATUSES:
            self.status = CaseStatus.PENDING_CUSTOMER
        paused = self.pause_sla(at)
        return ["first_responded_at", "status", "next_response_due_at", "next_response_warn_at", *paused]

    def customer_wrote(self, at: dt.datetime, playbook, private: bool = False) -> list[str]:
        """The customer wrote on this (existing) case: a waiting or resolved case opens again and its
        clocks resume; once the brand has answered, the next-response clock starts (if not running)."""
        fields = ["status", *SLA_STATE_FIELDS]
        policy = _policy(playbook)
        if self.status in SLA_PAUSED_STATUSES:
            self.status = CaseStatus.OPEN
            fields += self.resume_sla(at, policy.calendar)
        if self.first_responded_at is not None and self.next_response_due_at is None and self.is_working:
            default = playbook.default if playbook is not None else None
            channel = sla.Channel.PRIVATE if private else sla.Channel.PUBLIC
            target = sla.choose_target(
                self.next_response_minutes,
                default.next_response_minutes if default else None,
                policy.target(self.priority, channel, "next_response"),
            )
            self.next_response_due_at, self.next_response_warn_at = _clock(at, target, policy)
            fields += ["next_response_due_at", "next_response_warn_at"]
        self.sla_alert_at = self._earliest_look()
        return list(dict.fromkeys(fields))

    def pause_sla(self, at: dt.datetime) -> list[str]:
        """Stop the clocks from `at` while the case waits (status already set)."""
        if self.sla_paused_at is None and self.status in SLA_PAUSED_STATUSES:
            self.sla_paused_at = at
        self.sla_alert_at = self._earliest_look()
        self.sla_flag = SlaFlag.NONE if not self.running_clocks() else self.sla_flag
        # Not sla_paused_seconds: only resume_sla changes it, and a save must not overwrite its sum.
        return ["sla_paused_at", "sla_alert_at", "sla_flag"]

    def resume_sla(self, at: dt.datetime, calendar: sla.Calendar) -> list[str]:
        """Run the clocks again from `at`: every due and warning time moves later by the business
        time the pause lasted (hubbub.lib.sla.resume_due). A clock breached before the pause stays so."""
        paused_at, self.sla_paused_at = self.sla_paused_at, None
        fields = ["sla_paused_at", "sla_paused_seconds", "sla_alert_at"]
        if paused_at is not None and at > paused_at:
            self.sla_paused_seconds += int(sla.elapsed(paused_at, at, calendar).total_seconds())
            answered = self.first_responded_at is not None
            for name in SLA_TIME_FIELDS:
                value = getattr(self, name)
                # A met (or missed) first response is history: its due time stays as it was.
                if value is not None and not (answered and name.startswith("first_response")):
                    setattr(self, name, sla.resume_due(value, paused_at, at, calendar))
                    fields.append(name)
        self.sla_alert_at = self._earliest_look()
        return fields

    def _earliest_look(self) -> dt.datetime | None:
        # The housekeeping works out exactly what is due; this only has to be no later than that.
        times = [t for clock in self.running_clocks() for t in (clock.warn, clock.due) if t is not None]
        return min(times, default=None)


# Moved by a pause (resume_sla); the first-response ones only matter while it is unanswered.
SLA_TIME_FIELDS = (
    "first_response_due_at",
    "first_response_warn_at",
    "next_response_due_at",
    "next_response_warn_at",
    "resolution_due_at",
    "resolution_warn_at",
)
SLA_STATE_FIELDS = ("sla_paused_at", "sla_paused_seconds", "sla_alert_at", "sla_flag")
# Everything the SLA methods may change: what a bulk update of cases must write.
SLA_FIELDS = (*SLA_TIME_FIELDS, *SLA_STATE_FIELDS, "sla_channel", "next_response_minutes", "first_responded_at")


def _policy(playbook) -> sla.Policy:
    policy = getattr(playbook, "sla", None)
    if policy is not None:
        return policy
    calendar = getattr(playbook, "calendar", None) or sla.Calendar.always_open()
    return sla.Policy(name="sla", calendar=calendar, targets={}, warn_fraction=1 - sla.DEFAULT_WARN_AT)


def _clock(start: dt.datetime, target: dt.timedelta | None, policy: sla.Policy):
    """(due, warn) of a clock started at `start`; (None, None) without a target."""
    if target is None:
        return None, None
    due = sla.due_at(start, target, policy.calendar)
    return due, sla.warning_at(start, due, policy.warn_at, policy.calendar)


class SlaClock(models.TextChoices):
    FIRST_RESPONSE = "first_response", "First response"
    NEXT_RESPONSE = "next_response", "Next response"
    RESOLUTION = "resolution", "Resolution"
    # Not a clock: a playbook rule's `escalate`, taken when the case opens.
    PLAYBOOK_RULE = "rule", "Playbook rule"


class EscalationKind(models.TextChoices):
    WARNING = "warning", "Near-breach warning"
    NOTIFY_SUPERVISOR = "notify_supervisor", "Supervisors notified"
    RAISE_PRIORITY = "raise_priority", "Priority raised"
    REASSIGN = "reassign", "Reassigned"
    NOTIFY_DEPARTMENT = "notify_department", "Department notified"


class Escalation(models.Model):
    """One warning or escalation step taken on a case's clock: written once, in the transaction
    that took the step, so a housekeeping run that is repeated or killed halfway never doubles one.

    The supervisors' and departments' notifications are these rows (with the department told).
    """

    organization = models.ForeignKey(Organization, on_delete=models.CASCADE, related_name="escalations")
    case = models.ForeignKey(Case, on_delete=models.CASCADE, related_name="escalations", db_index=False)
    clock = models.CharField(max_length=20, choices=SlaClock.choices)
    # The due time the step is about: a clock that starts again (next response) escalates afresh.
    due_at = models.DateTimeField()
    # 0: the warning; 1..: the chain's steps in order.
    position = models.PositiveSmallIntegerField()
    kind = models.CharField(max_length=20, choices=EscalationKind.choices)
    # Told: the case's department (supervisors) or the department notified.
    department = models.ForeignKey(Department, null=True, blank=True, on_delete=models.SET_NULL, related_name="+")
    detail = models.JSONField(default=dict, blank=True)
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["case", "clock", "due_at", "position"], name="escalation_once"),
        ]
        indexes = [
            models.Index(fields=["department", "-created_at"], name="escalation_department_time"),
        ]
        ordering = ["created_at", "id"]

    def __str__(self) -> str:
        return f"{self.kind} on {self.clock} of case {self.case_id}"


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
            # An agent's replies, newest first: deleting a user clears their authorship through it.
            # (Routing's stickiness read it until Customer.last_agent kept the answer.)
            models.Index(
                fields=["author_user", "-created_at"], condition=Q(author_user__isnull=False), name="message_agent_time"
            ),
        ]
        ordering = ["created_at", "id"]

    def __str__(self) -> str:
        return f"{self.direction} {self.external_id or self.pk}"

    def save(self, *args, **kwargs) -> None:
        adding = self._state.adding
        with transaction.atomic(savepoint=False):
            super().save(*args, **kwargs)
            if adding and self.direction == Direction.OUTBOUND and self.author_user_id is not None:
                # The customer's last agent is whoever wrote the latest agent reply: one recorded
                # late, older than the reply on record, changes nothing. (bulk_create and raw
                # inserts skip this and must keep Customer.last_agent themselves.)
                Customer.objects.filter(cases=self.case_id).filter(
                    Q(last_answered_at__isnull=True) | Q(last_answered_at__lte=self.created_at)
                ).update(last_agent_id=self.author_user_id, last_answered_at=self.created_at)


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
