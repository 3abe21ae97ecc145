"""SLA clocks in business time: calendars, due times, pauses, targets, warnings and platform windows.

Pure code (no database). Every instant in and out is a timezone-aware datetime; business time is
real elapsed time spent inside a calendar's opening hours, so an hour lost or gained to a
daylight-saving change is lost or gained from the clock too, exactly as the customer lives it.
"""

from __future__ import annotations

import enum
import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field, replace
from datetime import UTC, date, datetime, time, timedelta
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

MINUTES_PER_DAY = 24 * 60
WEEKDAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
ZERO = timedelta(0)

# A calendar with no opening time would leave a clock running forever; past this many days
# without one opening (holidays are finite, so only a bad calendar gets here) we give up.
_MAX_SEARCH_DAYS = 3 * 366


class SlaError(ValueError):
    """A calendar or policy that cannot be used; the message names the offending part."""


def _require_aware(value: datetime, name: str) -> None:
    if value.tzinfo is None or value.utcoffset() is None:
        raise SlaError(f"{name} must be timezone-aware")


Interval = tuple[int, int]  # minutes from local midnight, end exclusive, 0 <= start < end <= 1440


@dataclass(frozen=True)
class Calendar:
    """Weekly opening hours in one IANA time zone, minus whole-day holidays (local dates)."""

    timezone: str = "UTC"
    # Seven entries, Monday first; each a sorted tuple of non-overlapping (start, end) minutes.
    hours: tuple[tuple[Interval, ...], ...] = (((0, MINUTES_PER_DAY),),) * 7
    holidays: frozenset[date] = field(default_factory=frozenset)

    def __post_init__(self) -> None:
        # (closed from, opens, closes) of the period is_open() last looked up; not part of equality.
        object.__setattr__(self, "_last_period", None)
        try:
            object.__setattr__(self, "_zone", ZoneInfo(self.timezone))
        except (ZoneInfoNotFoundError, ValueError) as error:
            raise SlaError(f"unknown time zone {self.timezone!r}") from error
        if len(self.hours) != 7:
            raise SlaError("opening hours need one entry per weekday")
        for weekday, intervals in zip(WEEKDAYS, self.hours, strict=True):
            previous_end = 0
            for start, end in intervals:
                if not (0 <= start < end <= MINUTES_PER_DAY) or start < previous_end:
                    raise SlaError(f"{weekday}: opening hours must be ordered, non-overlapping times within the day")
                previous_end = end
        if not any(self.hours):
            raise SlaError("a calendar needs opening hours on at least one weekday")

    @classmethod
    def always_open(cls, timezone: str = "UTC") -> Calendar:
        return cls(timezone=timezone)

    @classmethod
    def weekly(
        cls, timezone: str, hours: Mapping[str, str | list[str]], holidays: list[date | str] | None = None
    ) -> Calendar:
        """From {"mon": "09:00-17:00", "sat": ["10:00-12:00", "13:00-16:00"]}; absent days are closed."""
        unknown = set(hours) - set(WEEKDAYS)
        if unknown:
            raise SlaError(f"unknown weekday {sorted(unknown)[0]!r}; use {', '.join(WEEKDAYS)}")
        table = []
        for weekday in WEEKDAYS:
            spec = hours.get(weekday) or []
            spans = [spec] if isinstance(spec, str) else list(spec)
            table.append(tuple(sorted(_parse_span(weekday, span) for span in spans)))
        return cls(timezone=timezone, hours=tuple(table), holidays=frozenset(_parse_date(d) for d in holidays or []))

    @property
    def zone(self) -> ZoneInfo:
        return self._zone  # type: ignore[attr-defined]

    @property
    def is_always_open(self) -> bool:
        return not self.holidays and all(day == ((0, MINUTES_PER_DAY),) for day in self.hours)

    def _instant(self, day: date, minute: int) -> datetime:
        # A wall time that a spring-forward skips resolves with the offset before the change
        # (zoneinfo's fold=0), i.e. just after it; the merge in open_intervals keeps order.
        local = datetime.combine(day, time(), tzinfo=self.zone) + timedelta(minutes=minute)
        return local.astimezone(UTC)

    def open_intervals(self, since: datetime) -> Iterator[tuple[datetime, datetime]]:
        """Opening periods (UTC, ascending, disjoint) from the one containing `since` onwards."""
        _require_aware(since, "since")
        since = since.astimezone(UTC)
        day = since.astimezone(self.zone).date() - timedelta(days=1)
        last_end: datetime | None = None
        idle_days = 0
        while idle_days <= _MAX_SEARCH_DAYS:
            yielded = False
            if day not in self.holidays:
                for start_minute, end_minute in self.hours[day.weekday()]:
                    start, end = self._instant(day, start_minute), self._instant(day, end_minute)
                    if last_end is not None and start < last_end:
                        start = last_end
                    if end <= start:
                        continue
                    last_end = end
                    if end < since:
                        continue
                    yielded = True
                    yield start, end
            idle_days = 0 if yielded else idle_days + 1
            day += timedelta(days=1)
        raise SlaError("the calendar has no opening hours in the next three years")

    def is_open(self, at: datetime) -> bool:
        """Within opening hours, closing instant included (a clock may fall due at closing time)."""
        _require_aware(at, "at")
        # Routing asks this for posts, which come close together in time: walking the calendar
        # costs 30-60 µs, so remember the last opening period and the closed stretch seen before it.
        known = self._last_period  # type: ignore[attr-defined]
        if known is not None and known[0] <= at <= known[2]:
            return at >= known[1]
        start, end = next(self.open_intervals(at))
        # Every earlier period closed before `at`, so from min(at, start) to `start` is closed time.
        object.__setattr__(self, "_last_period", (min(at, start), start, end))
        return start <= at <= end


def _parse_span(weekday: str, span: str) -> Interval:
    match = re.fullmatch(r"\s*(\d{1,2}):(\d{2})\s*-\s*(\d{1,2}):(\d{2})\s*", span)
    if not match:
        raise SlaError(f"{weekday}: {span!r} is not like 09:00-17:30")
    sh, sm, eh, em = (int(part) for part in match.groups())
    start, end = sh * 60 + sm, eh * 60 + em
    if sm > 59 or em > 59 or start >= MINUTES_PER_DAY or end > MINUTES_PER_DAY or end <= start:
        raise SlaError(f"{weekday}: {span!r} must open before it closes, between 00:00 and 24:00")
    return start, end


def _parse_date(value: date | str) -> date:
    if isinstance(value, date):
        return value
    try:
        return date.fromisoformat(str(value))
    except ValueError as error:
        raise SlaError(f"holiday {value!r} is not a date like 2026-12-25") from error


def due_at(start: datetime, minutes: float | timedelta, calendar: Calendar) -> datetime:
    """The instant when `minutes` of business time have passed since `start` (UTC)."""
    _require_aware(start, "start")
    remaining = minutes if isinstance(minutes, timedelta) else timedelta(minutes=minutes)
    if remaining < ZERO:
        raise SlaError("an SLA target cannot be negative")
    start = start.astimezone(UTC)
    if calendar.is_always_open:
        return start + remaining
    for opens, closes in calendar.open_intervals(start):
        opens = max(opens, start)
        available = closes - opens
        if remaining <= available:
            return opens + remaining
        remaining -= available
    raise AssertionError("open_intervals never ends without raising")  # pragma: no cover


def elapsed(start: datetime, end: datetime, calendar: Calendar) -> timedelta:
    """Business time between two instants; zero when `end` is not after `start`."""
    _require_aware(start, "start")
    _require_aware(end, "end")
    start, end = start.astimezone(UTC), end.astimezone(UTC)
    if end <= start:
        return ZERO
    if calendar.is_always_open:
        return end - start
    total = ZERO
    for opens, closes in calendar.open_intervals(start):
        if opens >= end:
            break
        total += min(closes, end) - max(opens, start)
    return total


class ClockState(enum.StrEnum):
    RUNNING = "running"
    WARNING = "warning"  # due within the warning threshold
    BREACHED = "breached"
    PAUSED = "paused"  # waiting on the customer
    STOPPED = "stopped"  # met: the response or resolution it measured happened


@dataclass(frozen=True)
class Clock:
    """One SLA target being measured. Immutable: pause/resume/stop return a new clock.

    While waiting on the customer the clock is paused and keeps the business time it had left;
    it resumes from there, so a pause can only move the due time later.
    """

    target: timedelta
    consumed: timedelta = ZERO  # business time used before the current run
    running_since: datetime | None = None
    stopped_at: datetime | None = None

    @classmethod
    def start(cls, at: datetime, target: timedelta) -> Clock:
        _require_aware(at, "at")
        if target < ZERO:
            raise SlaError("an SLA target cannot be negative")
        return cls(target=target, running_since=at)

    @property
    def paused(self) -> bool:
        return self.running_since is None and self.stopped_at is None

    def used(self, at: datetime, calendar: Calendar) -> timedelta:
        if self.running_since is None:
            return self.consumed
        return self.consumed + elapsed(self.running_since, at, calendar)

    def left(self, at: datetime, calendar: Calendar) -> timedelta:
        """Business time left; negative once breached (by how much)."""
        return self.target - self.used(at, calendar)

    def pause(self, at: datetime, calendar: Calendar) -> Clock:
        if self.running_since is None:
            return self
        return replace(self, consumed=self.used(at, calendar), running_since=None)

    def resume(self, at: datetime) -> Clock:
        _require_aware(at, "at")
        if not self.paused:
            return self
        return replace(self, running_since=at)

    def stop(self, at: datetime, calendar: Calendar) -> Clock:
        if self.stopped_at is not None:
            return self
        return replace(self, consumed=self.used(at, calendar), running_since=None, stopped_at=at)

    def due(self, calendar: Calendar) -> datetime | None:
        """When it breaches if nothing happens; None while paused or stopped."""
        if self.running_since is None:
            return None
        left = self.target - self.consumed
        if left <= ZERO:
            return self.running_since.astimezone(UTC)
        return due_at(self.running_since, left, calendar)

    def state(self, at: datetime, calendar: Calendar, warn_fraction: float) -> ClockState:
        if self.stopped_at is not None:
            return ClockState.BREACHED if self.consumed > self.target else ClockState.STOPPED
        left = self.left(at, calendar)
        if left < ZERO or (left == ZERO and self.target > ZERO):
            return ClockState.BREACHED
        if self.paused:
            return ClockState.PAUSED
        if left <= self.target * warn_fraction:
            return ClockState.WARNING
        return ClockState.RUNNING


class Channel(enum.StrEnum):
    """A public reply is seen by everyone and usually has a tighter clock than a private one."""

    PUBLIC = "public"
    PRIVATE = "private"


@dataclass(frozen=True)
class Targets:
    first_response: timedelta
    next_response: timedelta
    resolution: timedelta


@dataclass(frozen=True)
class Policy:
    """First/next response and resolution targets per (priority, channel), in one calendar."""

    name: str
    calendar: Calendar
    targets: Mapping[tuple[int, Channel], Targets]
    # Warn when this fraction of a target or less is left (0.25: the last quarter).
    warn_fraction: float = 0.25
    # What happens, in order, when a clock breaches.
    escalation: tuple[EscalationStep, ...] = field(default_factory=lambda: DEFAULT_ESCALATION)

    @property
    def warn_at(self) -> float:
        """The fraction of a target elapsed when the warning comes (0.8: at 80 %)."""
        return 1 - self.warn_fraction

    def target(self, priority: int, channel: str, clock: str) -> timedelta | None:
        """One clock's target for this priority and channel (see targets_for), None where the policy
        sets none for the channel."""
        try:
            return getattr(self.targets_for(priority, channel), clock)
        except SlaError:
            return None

    def targets_for(self, priority: int, channel: str) -> Targets:
        """The targets of this priority and channel; for a priority with none, the nearest
        more urgent one that has them (never a laxer clock than asked for), else the laxest."""
        channel = Channel(channel)
        defined = sorted(p for p, c in self.targets if c == channel)
        if not defined:
            raise SlaError(f"policy {self.name!r} has no {channel} targets")
        more_urgent = [p for p in defined if p <= priority]
        chosen = more_urgent[-1] if more_urgent else defined[0]
        return self.targets[(chosen, channel)]

    def first_response_clock(self, opened_at: datetime, priority: int, channel: str) -> Clock:
        return Clock.start(opened_at, self.targets_for(priority, channel).first_response)

    def next_response_clock(self, customer_wrote_at: datetime, priority: int, channel: str) -> Clock:
        return Clock.start(customer_wrote_at, self.targets_for(priority, channel).next_response)

    def resolution_clock(self, opened_at: datetime, priority: int, channel: str) -> Clock:
        return Clock.start(opened_at, self.targets_for(priority, channel).resolution)

    def warning_threshold(self, priority: int, channel: str) -> timedelta:
        """How long before a first-response breach a case counts as near breach."""
        return self.targets_for(priority, channel).first_response * self.warn_fraction

    @classmethod
    def from_dict(cls, name: str, data: Mapping[str, Any]) -> Policy:
        """From playbook YAML:

        calendar: {timezone: Europe/London, hours: {mon: "09:00-17:00", ...}, holidays: [2026-12-25]}
        warn_fraction: 0.25
        targets: {public: {1: {first_response: 30, next_response: 60, resolution: 480}}, private: {...}}
        (minutes of business time). No calendar means 24/7 in UTC.
        """
        if not isinstance(data, Mapping):
            raise SlaError(f"policy {name!r} must be a mapping")
        calendar_spec = data.get("calendar")
        if calendar_spec is None:
            calendar = Calendar.always_open()
        elif isinstance(calendar_spec, Mapping):
            hours = calendar_spec.get("hours")
            timezone = str(calendar_spec.get("timezone", "UTC"))
            if hours is None:
                calendar = Calendar.always_open(timezone)
                if calendar_spec.get("holidays"):
                    raise SlaError(f"policy {name!r}: holidays need opening hours")
            elif isinstance(hours, Mapping):
                calendar = Calendar.weekly(timezone, hours, list(calendar_spec.get("holidays") or []))
            else:
                raise SlaError(f"policy {name!r}: calendar.hours must map weekdays to times")
        else:
            raise SlaError(f"policy {name!r}: calendar must be a mapping")
        targets: dict[tuple[int, Channel], Targets] = {}
        raw_targets = data.get("targets")
        if not isinstance(raw_targets, Mapping) or not raw_targets:
            raise SlaError(f"policy {name!r}: targets must map public/private to priorities")
        for channel_name, per_priority in raw_targets.items():
            try:
                channel = Channel(str(channel_name))
            except ValueError:
                raise SlaError(f"policy {name!r}: unknown channel {channel_name!r}; use public or private") from None
            if not isinstance(per_priority, Mapping):
                raise SlaError(f"policy {name!r}: targets.{channel} must map priorities to targets")
            for priority, spec in per_priority.items():
                where = f"policy {name!r}: targets.{channel}.{priority}"
                try:
                    priority_number = int(priority)
                except (TypeError, ValueError):
                    raise SlaError(f"{where}: priority must be a number") from None
                if not isinstance(spec, Mapping):
                    raise SlaError(f"{where} must give first_response, next_response and resolution")
                minutes = {}
                for key in ("first_response", "next_response", "resolution"):
                    value = spec.get(key)
                    if isinstance(value, bool) or not isinstance(value, int | float) or not 0 <= value <= 10**7:
                        raise SlaError(f"{where}.{key} must be a number of minutes")
                    minutes[key] = timedelta(minutes=value)
                targets[(priority_number, channel)] = Targets(**minutes)
        warn_fraction = data.get("warn_fraction", 0.25)
        if isinstance(warn_fraction, bool) or not isinstance(warn_fraction, int | float) or not 0 <= warn_fraction < 1:
            raise SlaError(f"policy {name!r}: warn_fraction must be between 0 and 1")
        return cls(name=name, calendar=calendar, targets=targets, warn_fraction=float(warn_fraction))


# Platforms that only let a brand message a customer privately for a while after the customer's
# last message. These are wall-clock windows set by the network, not business time.
PLATFORM_WINDOWS: dict[str, timedelta] = {
    "meta": timedelta(hours=24),  # Messenger and Instagram standard messaging window
}


def platform_window_closes(network: str, last_customer_message_at: datetime | None) -> datetime | None:
    """When the network stops accepting our private reply, or None where it has no window."""
    window = PLATFORM_WINDOWS.get(network)
    if window is None or last_customer_message_at is None:
        return None
    _require_aware(last_customer_message_at, "last_customer_message_at")
    return last_customer_message_at.astimezone(UTC) + window


def earliest_deadline(*deadlines: datetime | None) -> datetime | None:
    """The deadline the agent must beat: the sooner of an SLA due time and a platform window."""
    present = [d for d in deadlines if d is not None]
    return min(present) if present else None


# --- pauses ------------------------------------------------------------------------------------


def resume_due(due: datetime, paused_at: datetime, resumed_at: datetime, calendar: Calendar) -> datetime:
    """Where a due time set before a pause lands when its clock runs again.

    It moves later by the business time the pause lasted, so the business time that was left when
    the clock paused is what is left when it resumes. A pause can only move a due time later, and a
    moved due time is inside business hours. A clock that had already breached when it paused stays
    breached: its due time does not move. A pause of no business time changes nothing.
    """
    _require_aware(due, "due")
    _require_aware(paused_at, "paused_at")
    _require_aware(resumed_at, "resumed_at")
    due = due.astimezone(UTC)
    if due <= paused_at:
        return due
    paused = elapsed(paused_at, resumed_at, calendar)
    if paused == ZERO:
        return due
    return due_at(due, paused, calendar)


def warning_at(start: datetime, due: datetime, warn_at: float, calendar: Calendar) -> datetime:
    """The instant `warn_at` (0.8: 80 %) of the business time from `start` to `due` has passed."""
    if not 0 <= warn_at <= 1:
        raise SlaError("warn_at must be between 0 and 1")
    span = elapsed(start, due, calendar)
    return min(due_at(start, span * warn_at, calendar), due.astimezone(UTC))


def choose_target(decided: int | None, default: int | None, policy_target: timedelta | None) -> timedelta | None:
    """One clock's target for a case.

    `decided` is what routing decided (a rule's minutes, or else the playbook default's), `default`
    the playbook default's own minutes, `policy_target` the SLA policy's for the case's priority and
    channel. A rule's own minutes win; then the policy's target; then the default's. (A rule that
    sets the default's value is indistinguishable from the default and yields to the policy.)
    """
    if decided is not None and decided != default:
        return timedelta(minutes=decided)
    if policy_target is not None:
        return policy_target
    return None if decided is None else timedelta(minutes=decided)


# --- warnings and escalation -------------------------------------------------------------------


class ClockName(enum.StrEnum):
    FIRST_RESPONSE = "first_response"
    NEXT_RESPONSE = "next_response"
    RESOLUTION = "resolution"


class StepKind(enum.StrEnum):
    NOTIFY_SUPERVISOR = "notify_supervisor"
    RAISE_PRIORITY = "raise_priority"
    REASSIGN = "reassign"
    NOTIFY_DEPARTMENT = "notify_department"


class ReassignTo(enum.StrEnum):
    QUEUE = "queue"  # unassigned: routing hands it to the next free agent
    SUPERVISOR = "supervisor"  # one of the department's supervisors, online ones first


@dataclass(frozen=True)
class EscalationStep:
    """One step of the chain walked when a clock breaches, `after` business time past the breach."""

    kind: StepKind
    after: timedelta = ZERO
    department: str = ""  # notify_department: whom to tell
    to: ReassignTo = ReassignTo.QUEUE  # reassign: where the case goes

    def describe(self) -> str:
        text = {
            StepKind.NOTIFY_SUPERVISOR: "notify the supervisors",
            StepKind.RAISE_PRIORITY: "raise the priority",
            StepKind.REASSIGN: f"reassign to the {self.to}",
            StepKind.NOTIFY_DEPARTMENT: f"notify {self.department}",
        }[self.kind]
        if self.after:
            text += f" ({int(self.after.total_seconds() // 60)} min after the breach)"
        return text


# Warn at 80 % of a target; on breach tell the supervisors and make the case more urgent.
DEFAULT_WARN_AT = 0.8
DEFAULT_ESCALATION = (EscalationStep(StepKind.NOTIFY_SUPERVISOR), EscalationStep(StepKind.RAISE_PRIORITY))


@dataclass(frozen=True)
class RunningClock:
    """A case's clock as stored: when it breaches, and when it warns (None: no warning)."""

    name: ClockName
    due: datetime
    warn: datetime | None = None


@dataclass(frozen=True)
class Alert:
    """Something to do about one clock at `at`: position 0 is the warning, 1.. the chain's steps."""

    clock: ClockName
    due: datetime
    position: int
    at: datetime
    step: EscalationStep | None = None

    @property
    def key(self) -> tuple[str, datetime, int]:
        return (str(self.clock), self.due, self.position)


def schedule(clocks: list[RunningClock], chain: tuple[EscalationStep, ...], calendar: Calendar) -> list[Alert]:
    """Every warning and escalation step of these clocks, in the order they fall due."""
    alerts = []
    for clock in clocks:
        if clock.warn is not None and clock.warn < clock.due:
            alerts.append(Alert(clock.name, clock.due, 0, clock.warn))
        for position, step in enumerate(chain, start=1):
            at = clock.due if not step.after else due_at(clock.due, step.after, calendar)
            alerts.append(Alert(clock.name, clock.due, position, at, step))
    return sorted(alerts, key=lambda a: (a.at, a.position, a.clock))


def _wanted(alert: Alert, now: datetime, done: set, stale: timedelta | None) -> bool:
    if alert.key in done:
        return False
    # A warning that a breach overtook (the case was first looked at late) is skipped, not sent.
    if alert.position == 0 and now >= alert.due:
        return False
    # So is a step long past: imported history, not something a supervisor can still act on.
    return stale is None or alert.at >= now - stale


def due_alerts(alerts: list[Alert], now: datetime, done: set, stale: timedelta | None = None) -> list[Alert]:
    """The alerts to act on now: fallen due, not done yet (`done` holds Alert.key of those done),
    and, with `stale`, fallen due no longer ago than that."""
    return [a for a in alerts if a.at <= now and _wanted(a, now, done, stale)]


def next_look(
    clocks: list[RunningClock], alerts: list[Alert], now: datetime, done: set, stale: timedelta | None = None
) -> datetime | None:
    """When the case next needs looking at: its next alert, or its next warning or breach (for the
    queue's badge); None when nothing is left to happen."""
    times = [a.at for a in alerts if _wanted(a, now, done, stale)]
    times += [t for clock in clocks for t in (clock.warn, clock.due) if t is not None and t > now]
    return min(times, default=None)


class Flag(enum.StrEnum):
    NONE = ""
    WARNING = "warning"
    BREACHED = "breached"


def flag(clocks: list[RunningClock], now: datetime) -> Flag:
    """The queue badge: breached when any running clock is past due, warning when any is past its warning."""
    if any(clock.due <= now for clock in clocks):
        return Flag.BREACHED
    if any(clock.warn is not None and clock.warn <= now for clock in clocks):
        return Flag.WARNING
    return Flag.NONE
