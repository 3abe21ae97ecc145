"""Crisis mode: spotting volume spikes per topic, and switching the crisis playbook on and off.

Volumes are counted incrementally: each run reads only the messages stored since the last one
(by id, so posts imported with old dates still land in their own hour) and adds them to hourly
per-topic counts. Detection then compares the current and previous hour with the same hours of
earlier weeks (hubbub.lib.spikes). Everything that changes is audited; the audit events whose
action starts with "crisis." and that carry a `notify` list are the notifications the Crisis
page shows to supervisors and to marketing (PR).
"""

from __future__ import annotations

import datetime as dt
import logging
from collections import Counter
from collections.abc import Callable, Iterable
from itertools import batched
from typing import Any

from django.conf import settings
from django.db import IntegrityError, transaction
from django.db.models import Min
from django.utils import timezone

from hubbub.accounts.models import Department, Membership, Organization
from hubbub.crisis.models import ALL_TOPICS, AlertState, CrisisAlert, CrisisMode, SpikeScan, TopicVolume
from hubbub.governance.actions import do_audit
from hubbub.inbox.access import can_supervise
from hubbub.inbox.models import Case, Direction, Message, Priority
from hubbub.lib.spikes import HOUR, WEEK, SpikeRule, baseline_hours, detect, hour_of
from hubbub.listening.models import ListeningQuery

log = logging.getLogger(__name__)

# Labels of the understanding taxonomy whose volume is watched, besides every listening query.
WATCHED_LABELS = ("complaint", "outage", "legal_threat", "press")
# Who is told about alerts and crisis mode: supervisors, and the department that speaks for the brand.
PR_DEPARTMENT = "marketing"
NOTIFY = ["supervisors", PR_DEPARTMENT]
MAX_TOPIC = 100
MAX_HOLDING_STATEMENT = 5000
SCAN_BATCH = 20_000
# A first run on a large install catches up over several runs rather than in one long transaction.
SCAN_BATCHES_PER_RUN = 10
CRISIS_TAG = "crisis"


class CrisisError(ValueError):
    pass


def spike_rule() -> SpikeRule:
    return SpikeRule(**getattr(settings, "HUBBUB_SPIKE_RULE", {}))


# --- topics ----------------------------------------------------------------------------------


def message_topics(classification: Any) -> set[str]:
    """The topics one stored customer post counts towards: its listening matches and watched labels."""
    if not isinstance(classification, dict):
        return set()
    listening = classification.get("listening")
    labels = classification.get("labels")
    topics = {name[:MAX_TOPIC] for name in listening if isinstance(name, str)} if isinstance(listening, list) else set()
    if isinstance(labels, dict):
        topics.update(label for label in WATCHED_LABELS if label in labels)
    return topics


def case_topics(case: Case) -> set[str]:
    """What a case is about, as crisis mode sees it: listening matches, labels and intent."""
    topics = set(case.listening) if isinstance(case.listening, list) else set()
    if isinstance(case.labels, dict):
        topics.update(case.labels)
    if case.intent:
        topics.add(case.intent)
    return {t for t in topics if isinstance(t, str)}


def topic_choices(organization_id: int) -> list[str]:
    """Topics a supervisor may put in crisis: the listening queries and the watched labels."""
    names = ListeningQuery.objects.filter(organization_id=organization_id).values_list("name", flat=True)
    return sorted({*WATCHED_LABELS, *names})


# --- detection -------------------------------------------------------------------------------


def do_detect_spikes(now: dt.datetime | None = None) -> list[CrisisAlert]:
    """Count the messages stored since the last run, then raise an alert for every topic whose
    volume this hour or last hour is a spike. Idempotent per topic and hour. Returns new alerts."""
    now = now or timezone.now()
    rule = spike_rule()
    with transaction.atomic():
        scan, _ = SpikeScan.objects.get_or_create(name="spikes")
        # Held to the end of the run: two workers never count one message twice.
        scan = SpikeScan.objects.select_for_update().get(pk=scan.pk)
        oldest = hour_of(now) - WEEK * (rule.weeks + 1)
        _count_new_messages(scan, oldest)
        alerts = _raise_alerts(now, rule)
        TopicVolume.objects.filter(hour__lt=oldest).delete()
        scan.ran_at = now
        scan.save(update_fields=["last_message_id", "ran_at"])
    return alerts


def _count_new_messages(scan: SpikeScan, oldest: dt.datetime) -> None:
    counts: Counter[tuple[int, str, dt.datetime]] = Counter()
    for _ in range(SCAN_BATCHES_PER_RUN):
        rows = list(
            Message.objects.filter(pk__gt=scan.last_message_id)
            .order_by("pk")
            .values_list("pk", "case__organization_id", "direction", "created_at", "classification")[:SCAN_BATCH]
        )
        if not rows:
            break
        for _pk, organization_id, direction, created_at, classification in rows:
            if direction != Direction.INBOUND or created_at < oldest:
                continue
            hour = hour_of(created_at)
            for topic in message_topics(classification):
                counts[(organization_id, topic, hour)] += 1
        scan.last_message_id = rows[-1][0]
        if len(rows) < SCAN_BATCH:
            break
    _add_volumes(counts)


def _add_volumes(counts: Counter[tuple[int, str, dt.datetime]]) -> None:
    """Add to the stored counts. The caller holds the scan lock, so nobody else writes them meanwhile,
    and the totals can be written with one upsert rather than row-by-row updates."""
    if not counts:
        return
    keys = list(counts)
    existing = dict.fromkeys(keys, 0)
    for chunk in batched(keys, 500):
        for organization_id, topic, hour, count in TopicVolume.objects.filter(
            organization_id__in={k[0] for k in chunk},
            topic__in={k[1] for k in chunk},
            hour__in={k[2] for k in chunk},
        ).values_list("organization_id", "topic", "hour", "count"):
            if (organization_id, topic, hour) in existing:
                existing[(organization_id, topic, hour)] = count
    TopicVolume.objects.bulk_create(
        [
            TopicVolume(organization_id=org_id, topic=topic, hour=hour, count=existing[(org_id, topic, hour)] + n)
            for (org_id, topic, hour), n in counts.items()
        ],
        batch_size=1000,
        update_conflicts=True,
        unique_fields=["organization", "topic", "hour"],
        update_fields=["count"],
    )


def _zone(organization_id: int) -> dt.tzinfo:
    """The organisation's time zone: its playbook's business-hours calendar's (UTC without one)."""
    # Imported here: playbook actions import publishing, which imports this module.
    from hubbub.playbook.actions import active_playbook

    _version, playbook = active_playbook(organization_id)
    return playbook.sla.calendar.zone if playbook is not None else dt.UTC


def _raise_alerts(now: dt.datetime, rule: SpikeRule) -> list[CrisisAlert]:
    current = hour_of(now)
    hours = [current - HOUR, current]
    candidates = set(
        TopicVolume.objects.filter(hour__in=hours, count__gte=rule.min_volume).values_list("organization_id", "topic")
    )
    raised = []
    history_starts: dict[int, dt.datetime | None] = {}
    zones: dict[int, dt.tzinfo] = {}
    for organization_id, topic in sorted(candidates):
        if organization_id not in history_starts:
            history_starts[organization_id] = TopicVolume.objects.filter(organization_id=organization_id).aggregate(
                start=Min("hour")
            )["start"]
            zones[organization_id] = _zone(organization_id)
        zone = zones[organization_id]
        wanted = {*hours, *(earlier for h in hours for earlier in baseline_hours(h, rule.weeks, zone))}
        counts = dict(
            TopicVolume.objects.filter(organization_id=organization_id, topic=topic, hour__in=wanted).values_list(
                "hour", "count"
            )
        )
        for hour in hours:
            spike = detect(topic, counts, hour, rule, history_starts[organization_id], zone)
            if spike is None:
                continue
            alert, created = CrisisAlert.objects.get_or_create(
                organization_id=organization_id,
                topic=topic,
                hour=spike.hour,
                defaults={
                    "detected_at": now,
                    "volume": spike.volume,
                    "baseline": spike.baseline,
                    "spread": spike.spread,
                    "ratio": spike.ratio,
                    "reason": spike.reason,
                },
            )
            if created:
                do_audit(
                    alert.organization,
                    None,
                    "crisis.alert_raised",
                    alert,
                    topic=topic,
                    volume=spike.volume,
                    ratio=spike.ratio,
                    message=spike.reason,
                    notify=NOTIFY,
                )
                raised.append(alert)
            elif spike.volume > alert.volume:
                # The hour is still filling up: the alert shows the latest figures, and nobody is told twice.
                alert.volume, alert.ratio, alert.reason = spike.volume, spike.ratio, spike.reason
                alert.save(update_fields=["volume", "ratio", "reason"])
    return raised


# --- alerts ----------------------------------------------------------------------------------


@transaction.atomic
def do_acknowledge_alert(alert: CrisisAlert, user) -> None:
    _move_alert(alert, user, AlertState.ACKNOWLEDGED, "crisis.alert_acknowledged")


@transaction.atomic
def do_close_alert(alert: CrisisAlert, user) -> None:
    _move_alert(alert, user, AlertState.CLOSED, "crisis.alert_closed")


def _move_alert(alert: CrisisAlert, user, state: str, action: str) -> None:
    locked = CrisisAlert.objects.select_for_update().get(pk=alert.pk)
    try:
        locked.move_to(state, user)
    except ValueError as exc:
        raise CrisisError(f"this alert is already {locked.get_state_display().lower()}") from exc
    locked.save(update_fields=["state", "handled_by", "handled_at"])
    alert.state, alert.handled_by, alert.handled_at = locked.state, locked.handled_by, locked.handled_at
    do_audit(alert.organization, user, action, alert, topic=alert.topic)


# --- crisis mode -----------------------------------------------------------------------------


def do_start_crisis(
    organization: Organization,
    user,
    topic: str,
    department: Department | None = None,
    holding_statement: str = "",
    alert: CrisisAlert | None = None,
) -> CrisisMode:
    """Put a topic (or, with ALL_TOPICS, every post) in crisis mode."""
    topic = (topic or "").strip()
    holding_statement = (holding_statement or "").strip()
    if len(topic) > MAX_TOPIC:
        raise CrisisError(f"a topic can be at most {MAX_TOPIC} characters")
    if len(holding_statement) > MAX_HOLDING_STATEMENT:
        raise CrisisError(f"a holding statement can be at most {MAX_HOLDING_STATEMENT} characters")
    if department is not None and department.organization_id != organization.pk:
        raise CrisisError("the crisis queue must be one of your departments")
    if alert is not None and alert.organization_id != organization.pk:
        raise CrisisError("no such alert")
    try:
        with transaction.atomic():
            mode = CrisisMode.objects.create(
                organization=organization,
                topic=topic,
                department=department,
                holding_statement=holding_statement,
                alert=alert,
                started_by=user,
            )
            if alert is not None and alert.state == AlertState.OPEN:
                _move_alert(alert, user, AlertState.ACKNOWLEDGED, "crisis.alert_acknowledged")
            do_audit(
                organization,
                user,
                "crisis.started",
                mode,
                topic=mode.topic_label,
                queue=department.name if department else "",
                message=f"Crisis mode is on for {mode.topic_label}: public replies need approval.",
                notify=NOTIFY,
            )
    except IntegrityError:
        raise CrisisError(f"{topic or 'every post'} is already in crisis mode") from None
    return mode


@transaction.atomic
def do_end_crisis(mode: CrisisMode, user) -> None:
    """Switch crisis mode off: the normal playbooks apply again, and replies publish directly."""
    locked = CrisisMode.objects.select_for_update().get(pk=mode.pk)
    if locked.ended_at is not None:
        raise CrisisError("this crisis mode is already off")
    locked.ended_at, locked.ended_by = timezone.now(), user
    locked.save(update_fields=["ended_at", "ended_by"])
    mode.ended_at, mode.ended_by = locked.ended_at, locked.ended_by
    do_audit(
        mode.organization,
        user,
        "crisis.ended",
        mode,
        topic=mode.topic_label,
        message=f"Crisis mode is off for {mode.topic_label}: the normal playbooks apply again.",
        notify=NOTIFY,
    )


def active_modes(organization_id: int) -> list[CrisisMode]:
    # Specific topics first: they name their own queue and statement; "every post" is the fallback.
    modes = CrisisMode.objects.filter(organization_id=organization_id, ended_at=None).select_related("department")
    return sorted(modes, key=lambda m: (m.topic == ALL_TOPICS, m.started_at, m.pk))


def _covering(modes: list[CrisisMode], topics: Iterable[str]) -> CrisisMode | None:
    topics = set(topics)
    return next((mode for mode in modes if mode.covers(topics)), None)


def crisis_for_case(case: Case) -> CrisisMode | None:
    """The crisis mode in force for a case's topics, if any."""
    return _covering(active_modes(case.organization_id), case_topics(case))


def holding_statement_for(case: Case) -> str:
    mode = crisis_for_case(case)
    return mode.holding_statement if mode else ""


def _decision(mode: CrisisMode) -> dict[str, Any]:
    return {
        "department": mode.department.slug if mode.department else None,
        "priority": int(Priority.URGENT),
        "requires_approval": True,
        "tag": CRISIS_TAG,
        "crisis_mode": mode.pk,
        "topic": mode.topic_label,
    }


def crisis_decider(organization_id: int) -> Callable[[Iterable[str], Iterable[str]], dict[str, Any] | None]:
    """crisis_decision for a whole batch of posts, reading the modes in force once."""
    modes = active_modes(organization_id)

    def decide(topics: Iterable[str], labels: Iterable[str]) -> dict[str, Any] | None:
        if not modes:
            return None
        mode = _covering(modes, {*topics, *labels})
        return _decision(mode) if mode else None

    return decide


def crisis_decision(organization_id: int, topics: list[str], labels: Iterable[str]) -> dict[str, Any] | None:
    """What the crisis playbook does with a new post about these topics (listening matches) and
    labels, or None when no crisis mode covers it: the normal playbook applies."""
    return crisis_decider(organization_id)(topics, labels)


# --- who is told -----------------------------------------------------------------------------


def is_notified(membership: Membership) -> bool:
    """Supervisors, admins and the PR department see alerts and crisis notifications."""
    if can_supervise(membership):
        return True
    return membership.departments.filter(slug=PR_DEPARTMENT).exists()
