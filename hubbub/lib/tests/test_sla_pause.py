"""Pausing SLA clocks, warnings and the escalation schedule: pure functions, property-tested across
time zones, holidays and daylight-saving changes. No database."""

from datetime import UTC, date, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from hubbub.lib.sla import (
    DEFAULT_ESCALATION,
    Alert,
    Calendar,
    ClockName,
    EscalationStep,
    Flag,
    RunningClock,
    SlaError,
    StepKind,
    choose_target,
    due_alerts,
    due_at,
    elapsed,
    flag,
    next_look,
    resume_due,
    schedule,
    warning_at,
)
from hubbub.lib.tests.test_sla import OFFICE, calendars, instants

LONDON = ZoneInfo("Europe/London")
NEW_YORK = ZoneInfo("America/New_York")
# Both zones' clock changes, and the days the holidays below fall on.
DST_CALENDARS = st.builds(
    lambda zone, holidays: Calendar.weekly(zone, OFFICE | {"sat": "10:00-14:00"}, holidays),
    st.sampled_from(["Europe/London", "America/New_York"]),
    st.lists(st.sampled_from([date(2026, 3, 30), date(2026, 3, 9), date(2026, 10, 26), date(2026, 11, 2)]), max_size=3),
)
any_calendar = st.one_of(calendars(), DST_CALENDARS)
targets = st.integers(min_value=0, max_value=10 * 24 * 60)
pauses = st.integers(min_value=0, max_value=10 * 24 * 60)


@st.composite
def paused_clocks(draw):
    """A due time set at `start`, a pause from `paused_at` and a resume, in one calendar."""
    calendar = draw(any_calendar)
    start = draw(instants)
    due = due_at(start, draw(targets), calendar)
    paused_at = start + timedelta(minutes=draw(pauses))
    resumed_at = paused_at + timedelta(minutes=draw(pauses))
    return calendar, start, due, paused_at, resumed_at


@settings(max_examples=200, deadline=None, database=None)
@given(paused_clocks())
def test_a_pause_never_makes_a_due_time_earlier_and_lands_in_business_hours(example):
    calendar, _start, due, paused_at, resumed_at = example
    moved = resume_due(due, paused_at, resumed_at, calendar)
    assert moved >= due
    assert calendar.is_open(moved)


@settings(max_examples=200, deadline=None, database=None)
@given(paused_clocks())
def test_the_business_time_left_at_the_pause_is_left_at_the_resume(example):
    calendar, _start, due, paused_at, resumed_at = example
    assume(due > paused_at)  # a breached clock does not move
    moved = resume_due(due, paused_at, resumed_at, calendar)
    left_at_pause = elapsed(paused_at, due, calendar)
    if resumed_at <= moved:
        assert elapsed(resumed_at, moved, calendar) == left_at_pause
    # Moved by exactly the business time the pause lasted.
    assert elapsed(due, moved, calendar) == elapsed(paused_at, resumed_at, calendar)


@settings(max_examples=150, deadline=None, database=None)
@given(paused_clocks())
def test_a_zero_length_pause_is_the_identity(example):
    calendar, _start, due, paused_at, _resumed_at = example
    assert resume_due(due, paused_at, paused_at, calendar) == due


@settings(max_examples=150, deadline=None, database=None)
@given(paused_clocks(), pauses)
def test_two_pauses_move_a_due_time_by_their_sum(example, second):
    calendar, _start, due, paused_at, resumed_at = example
    assume(due > paused_at)
    once = resume_due(due, paused_at, resumed_at, calendar)
    again_at = resumed_at + timedelta(minutes=second)
    assume(once > again_at)
    twice = resume_due(once, again_at, again_at + timedelta(minutes=second), calendar)
    paused_total = elapsed(paused_at, resumed_at, calendar) + elapsed(
        again_at, again_at + timedelta(minutes=second), calendar
    )
    assert elapsed(due, twice, calendar) == paused_total


@settings(max_examples=150, deadline=None, database=None)
@given(any_calendar, instants, targets, st.floats(min_value=0, max_value=1))
def test_the_warning_comes_before_the_breach_in_business_hours(calendar, start, minutes, fraction):
    due = due_at(start, minutes, calendar)
    warn = warning_at(start, due, fraction, calendar)
    assert start <= warn <= due
    assert calendar.is_open(warn)
    assert abs(elapsed(start, warn, calendar) - elapsed(start, due, calendar) * fraction) < timedelta(seconds=1)


def test_a_weekend_pause_moves_the_due_time_by_the_business_time_only():
    calendar = Calendar.weekly("Europe/London", OFFICE)
    due = datetime(2026, 6, 5, 16, tzinfo=LONDON)  # Friday 16:00
    # Paused Friday 15:00, back Monday 10:00: two business hours of pause.
    moved = resume_due(due, datetime(2026, 6, 5, 15, tzinfo=LONDON), datetime(2026, 6, 8, 10, tzinfo=LONDON), calendar)
    assert moved == datetime(2026, 6, 8, 11, tzinfo=LONDON)


def test_a_pause_across_the_autumn_clock_change_in_new_york():
    calendar = Calendar.weekly("America/New_York", {"sun": "00:00-24:00", "mon": "09:00-17:00"})
    # Sunday 1 November 2026 has 25 hours; a pause over the whole of it is worth 25 business hours.
    paused_at = datetime(2026, 11, 1, 0, tzinfo=NEW_YORK)
    resumed_at = datetime(2026, 11, 2, 0, tzinfo=NEW_YORK)
    due = datetime(2026, 11, 1, 12, tzinfo=NEW_YORK)
    moved = resume_due(due, paused_at, resumed_at, calendar)
    assert elapsed(due, moved, calendar) == timedelta(hours=25)
    # The rest of Sunday after noon (12 h), Monday 09:00-17:00 (8 h), then 5 h into the next Sunday.
    assert moved == datetime(2026, 11, 8, 5, tzinfo=NEW_YORK)


def test_a_breached_clock_stays_breached_through_a_pause():
    calendar = Calendar()
    due = datetime(2026, 6, 1, 9, tzinfo=UTC)
    assert resume_due(due, due + timedelta(hours=1), due + timedelta(days=2), calendar) == due


def test_resume_due_wants_aware_datetimes():
    with pytest.raises(SlaError, match="timezone-aware"):
        resume_due(datetime(2026, 1, 1), datetime(2026, 1, 1, tzinfo=UTC), datetime(2026, 1, 2, tzinfo=UTC), Calendar())


def test_choose_target_rule_beats_policy_beats_default():
    policy = timedelta(minutes=15)
    assert choose_target(30, 60, policy) == timedelta(minutes=30)  # the rule's own
    assert choose_target(60, 60, policy) == policy  # the default's yields to the policy
    assert choose_target(60, 60, None) == timedelta(minutes=60)  # no policy target: the default's
    assert choose_target(None, None, policy) == policy
    assert choose_target(None, None, None) is None


def test_the_escalation_schedule_warns_then_walks_the_chain():
    calendar = Calendar.weekly("Europe/London", OFFICE)
    due = datetime(2026, 6, 5, 16, tzinfo=LONDON)
    clock = RunningClock(ClockName.FIRST_RESPONSE, due, warn=due - timedelta(minutes=12))
    chain = (
        EscalationStep(StepKind.NOTIFY_SUPERVISOR),
        EscalationStep(StepKind.RAISE_PRIORITY),
        EscalationStep(StepKind.NOTIFY_DEPARTMENT, after=timedelta(minutes=90), department="legal"),
    )
    alerts = schedule([clock], chain, calendar)
    assert [a.position for a in alerts] == [0, 1, 2, 3]
    # 90 business minutes after Friday 16:00 is Monday 09:30.
    assert alerts[-1].at == datetime(2026, 6, 8, 9, 30, tzinfo=LONDON)

    before = due - timedelta(minutes=20)
    assert due_alerts(alerts, before, set()) == []
    assert next_look([clock], alerts, before, set()) == clock.warn
    assert flag([clock], before) == Flag.NONE

    warned = due_alerts(alerts, clock.warn, set())
    assert [a.position for a in warned] == [0]
    assert flag([clock], clock.warn) == Flag.WARNING
    done = {warned[0].key}
    assert next_look([clock], alerts, clock.warn, done) == due

    at_breach = due_alerts(alerts, due, done)
    assert [a.position for a in at_breach] == [1, 2]
    assert flag([clock], due) == Flag.BREACHED
    done |= {a.key for a in at_breach}
    assert next_look([clock], alerts, due, done) == alerts[-1].at
    done.add(alerts[-1].key)
    assert next_look([clock], alerts, alerts[-1].at, done) is None


def test_a_warning_overtaken_by_the_breach_is_skipped():
    due = datetime(2026, 6, 1, 9, tzinfo=UTC)
    clock = RunningClock(ClockName.RESOLUTION, due, warn=due - timedelta(hours=1))
    alerts = schedule([clock], DEFAULT_ESCALATION, Calendar())
    late = due + timedelta(hours=3)
    assert [a.position for a in due_alerts(alerts, late, set())] == [1, 2]
    done = {a.key for a in alerts if a.position}
    assert next_look([clock], alerts, late, done) is None


@settings(max_examples=100, deadline=None, database=None)
@given(any_calendar, instants, targets, st.lists(st.integers(min_value=0, max_value=5000), max_size=4), instants)
def test_every_alert_is_due_once_and_the_next_look_is_never_late(calendar, start, minutes, afters, now):
    due = due_at(start, minutes, calendar)
    clock = RunningClock(ClockName.NEXT_RESPONSE, due, warning_at(start, due, 0.8, calendar))
    chain = tuple(EscalationStep(StepKind.NOTIFY_SUPERVISOR, after=timedelta(minutes=m)) for m in afters)
    alerts = schedule([clock], chain, calendar)
    done: set = set()
    taken: list[Alert] = []
    look = now
    for _ in range(len(alerts) + 2):
        batch = due_alerts(alerts, look, done)
        taken += batch
        done |= {a.key for a in batch}
        following = next_look([clock], alerts, look, done)
        if following is None:
            break
        assert following > look or due_alerts(alerts, look, done) == []
        look = max(following, look + timedelta(microseconds=1))
    assert len(taken) == len({a.key for a in taken})
    # Every step of the chain happens; the warning too unless the first look was already past due.
    assert {a.position for a in taken} >= set(range(1, len(chain) + 1))
