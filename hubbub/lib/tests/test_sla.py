"""SLA maths across calendars, holidays and daylight-saving changes.

Property tests keep no example database (database=None): nothing is written into the checkout.
"""

from datetime import UTC, date, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from hubbub.lib.sla import (
    Calendar,
    Channel,
    Clock,
    ClockState,
    Policy,
    SlaError,
    due_at,
    earliest_deadline,
    elapsed,
    platform_window_closes,
)

LONDON = ZoneInfo("Europe/London")
NEW_YORK = ZoneInfo("America/New_York")
OFFICE = {day: "09:00-17:00" for day in ("mon", "tue", "wed", "thu", "fri")}

# Instants around the 2026 transitions (London: 29 Mar and 25 Oct; New York: 8 Mar and 1 Nov),
# where off-by-an-hour mistakes live, plus anywhere in a few years.
TRANSITIONS = [
    datetime(2026, 3, 29, 1, tzinfo=UTC),
    datetime(2026, 10, 25, 1, tzinfo=UTC),
    datetime(2026, 3, 8, 7, tzinfo=UTC),
    datetime(2026, 11, 1, 6, tzinfo=UTC),
]
near_transition = st.builds(
    lambda base, minutes: base + timedelta(minutes=minutes),
    st.sampled_from(TRANSITIONS),
    st.integers(min_value=-3 * 24 * 60, max_value=3 * 24 * 60),
)
anywhere = st.datetimes(min_value=datetime(2024, 1, 1), max_value=datetime(2029, 1, 1), timezones=st.just(UTC))
instants = st.one_of(near_transition, anywhere)

spans = st.lists(st.integers(min_value=0, max_value=24 * 4), min_size=2, max_size=6, unique=True).map(
    lambda quarters: sorted(quarters)
)


def _day_spans(quarters: list[int]) -> list[str]:
    # Pairs of quarter-hours into "HH:MM-HH:MM" spans: e.g. [36, 68] is 09:00-17:00.
    pairs = list(zip(quarters[::2], quarters[1::2], strict=False))
    return [f"{a // 4:02d}:{a % 4 * 15:02d}-{b // 4:02d}:{b % 4 * 15:02d}" for a, b in pairs]


@st.composite
def calendars(draw) -> Calendar:
    timezone = draw(st.sampled_from(["Europe/London", "America/New_York", "UTC", "Asia/Kolkata", "Australia/Sydney"]))
    days = draw(st.lists(st.sampled_from(["mon", "tue", "wed", "thu", "fri", "sat", "sun"]), min_size=1, unique=True))
    hours = {day: _day_spans(draw(spans)) for day in days}
    holidays = draw(st.lists(st.dates(min_value=date(2024, 1, 1), max_value=date(2029, 1, 1)), max_size=20))
    # A calendar around the transitions, with a holiday on the day itself sometimes.
    holidays += draw(st.lists(st.sampled_from([d.date() for d in TRANSITIONS]), max_size=2))
    return Calendar.weekly(timezone, hours, holidays)


minutes = st.integers(min_value=0, max_value=30 * 24 * 60)


@settings(max_examples=150, deadline=None, database=None)
@given(calendars(), instants, minutes, minutes)
def test_due_at_is_monotonic_in_minutes(calendar, start, a, b):
    low, high = sorted((a, b))
    assert due_at(start, low, calendar) <= due_at(start, high, calendar)


@settings(max_examples=150, deadline=None, database=None)
@given(calendars(), instants, minutes)
def test_due_at_lands_in_business_hours_and_elapsed_inverts_it(calendar, start, m):
    due = due_at(start, m, calendar)
    assert due >= start
    assert calendar.is_open(due)
    assert elapsed(start, due, calendar) == timedelta(minutes=m)


@settings(max_examples=100, deadline=None, database=None)
@given(calendars(), instants, st.integers(min_value=0, max_value=3 * 24 * 60), st.integers(min_value=0, max_value=7))
def test_pausing_never_shortens_the_time_left(calendar, start, run_minutes, paused_days):
    clock = Clock.start(start, timedelta(hours=8))
    due_before = clock.due(calendar)
    paused_at = start + timedelta(minutes=run_minutes)
    left_at_pause = clock.left(paused_at, calendar)
    paused = clock.pause(paused_at, calendar)
    assert paused.due(calendar) is None
    resumed_at = paused_at + timedelta(days=paused_days, minutes=run_minutes)
    assert paused.left(resumed_at, calendar) == left_at_pause  # a paused clock does not run
    resumed = paused.resume(resumed_at)
    assert resumed.left(resumed_at, calendar) == left_at_pause
    if left_at_pause > timedelta(0):
        assert resumed.due(calendar) >= due_before


@settings(max_examples=150, deadline=None, database=None)
@given(st.sampled_from(["UTC", "Europe/London", "America/New_York"]), instants, minutes, instants)
def test_a_24_7_calendar_is_wall_clock_arithmetic(timezone, start, m, other):
    calendar = Calendar.always_open(timezone)
    assert due_at(start, m, calendar) == start + timedelta(minutes=m)
    assert elapsed(start, other, calendar) == max(other - start, timedelta(0))
    # The same answer as the general path, which walks the days one by one.
    walked = Calendar(timezone=timezone, hours=calendar.hours, holidays=frozenset({date(1999, 1, 1)}))
    assert due_at(start, m, walked) == start + timedelta(minutes=m)


@settings(max_examples=100, deadline=None, database=None)
@given(calendars(), st.lists(instants, min_size=1, max_size=30), st.integers(min_value=0, max_value=24 * 60))
def test_is_open_remembers_periods_without_changing_answers(calendar, starts, spread):
    # Posts close together (the remembered period answers) and far apart (it must not), in any order.
    moments = [start + timedelta(minutes=spread * i) for i, start in enumerate(starts)]
    moments += [moments[0] + timedelta(minutes=m) for m in (-1, 0, 1, 59, 60, 61, -60, -6 * 60, -23 * 60)]
    for at in moments:
        start, end = next(calendar.open_intervals(at))
        assert calendar.is_open(at) == (start <= at <= end), at


def test_is_open_at_the_edges_of_a_day_of_business():
    calendar = Calendar.weekly("Europe/London", OFFICE)
    monday = datetime(2026, 7, 6, tzinfo=LONDON)
    # Asked in this order, each answer after one the calendar remembered: Tuesday morning's closed
    # stretch must not reach back into Monday's opening hours, nor Monday's into the evening.
    asked = [
        (24 + 8, False),
        (12, True),
        (17, True),
        (18, False),
        (24 + 9, True),
        (24 + 8.99, False),
        (5 * 24 + 9, False),
    ]
    assert [calendar.is_open(monday + timedelta(hours=hour)) for hour, _ in asked] == [open_ for _, open_ in asked]
    with pytest.raises(SlaError):
        calendar.is_open(datetime(2026, 7, 6, 12))


def test_office_hours_carry_over_the_weekend():
    calendar = Calendar.weekly("Europe/London", OFFICE)
    friday_4pm = datetime(2026, 6, 5, 16, tzinfo=LONDON)
    # One hour left on Friday, one more hour on Monday morning.
    assert due_at(friday_4pm, 120, calendar) == datetime(2026, 6, 8, 10, tzinfo=LONDON)
    saturday = datetime(2026, 6, 6, 12, tzinfo=LONDON)
    assert due_at(saturday, 0, calendar) == datetime(2026, 6, 8, 9, tzinfo=LONDON)
    assert elapsed(friday_4pm, datetime(2026, 6, 8, 10, tzinfo=LONDON), calendar) == timedelta(hours=2)


def test_a_holiday_is_skipped_whole():
    calendar = Calendar.weekly("Europe/London", OFFICE, ["2026-12-25"])
    thursday = datetime(2026, 12, 24, 16, 30, tzinfo=LONDON)
    # Friday the 25th is closed: the second half hour lands on Monday.
    assert due_at(thursday, 60, calendar) == datetime(2026, 12, 28, 9, 30, tzinfo=LONDON)


def test_new_york_follows_its_own_clock_change():
    calendar = Calendar.weekly("America/New_York", {"sun": "00:00-24:00"})
    # 8 March 2026 loses an hour at 02:00: the Sunday has 23 business hours.
    start = datetime(2026, 3, 8, 0, tzinfo=NEW_YORK)
    assert elapsed(start, datetime(2026, 3, 9, 0, tzinfo=NEW_YORK), calendar) == timedelta(hours=23)
    # 1 November gains one: 25 hours.
    start = datetime(2026, 11, 1, 0, tzinfo=NEW_YORK)
    assert elapsed(start, datetime(2026, 11, 2, 0, tzinfo=NEW_YORK), calendar) == timedelta(hours=25)


def test_bad_calendars_are_refused_with_a_reason():
    with pytest.raises(SlaError, match="time zone"):
        Calendar.weekly("Mars/Olympus", OFFICE)
    with pytest.raises(SlaError, match="09:00-17:30"):
        Calendar.weekly("UTC", {"mon": "nine to five"})
    with pytest.raises(SlaError, match="open before it closes"):
        Calendar.weekly("UTC", {"mon": "17:00-09:00"})
    with pytest.raises(SlaError, match="unknown weekday"):
        Calendar.weekly("UTC", {"funday": "09:00-17:00"})
    with pytest.raises(SlaError, match="at least one weekday"):
        Calendar.weekly("UTC", {})
    with pytest.raises(SlaError, match="non-overlapping"):
        Calendar.weekly("UTC", {"mon": ["09:00-12:00", "11:00-13:00"]})
    with pytest.raises(SlaError, match="2026-12-25"):
        Calendar.weekly("UTC", OFFICE, ["Christmas"])
    with pytest.raises(SlaError, match="timezone-aware"):
        due_at(datetime(2026, 1, 1), 5, Calendar())
    with pytest.raises(SlaError, match="negative"):
        due_at(datetime(2026, 1, 1, tzinfo=UTC), -5, Calendar())


def test_a_calendar_that_never_opens_again_stops_searching():
    every_day = [date(2026, 1, 1) + timedelta(days=n) for n in range(4 * 366)]
    calendar = Calendar.weekly("UTC", OFFICE, every_day)
    with pytest.raises(SlaError, match="no opening hours"):
        due_at(datetime(2026, 1, 1, tzinfo=UTC), 1, calendar)


POLICY = {
    "calendar": {"timezone": "Europe/London", "hours": OFFICE, "holidays": ["2026-12-25"]},
    "warn_fraction": 0.25,
    "targets": {
        "public": {1: {"first_response": 30, "next_response": 60, "resolution": 480}, 3: {
            "first_response": 120, "next_response": 240, "resolution": 2400}},
        "private": {1: {"first_response": 60, "next_response": 120, "resolution": 960}},
    },
}  # fmt: skip


def test_policy_targets_per_priority_and_channel():
    policy = Policy.from_dict("standard", POLICY)
    assert policy.targets_for(1, "public").first_response == timedelta(minutes=30)
    assert policy.targets_for(1, Channel.PRIVATE).first_response == timedelta(minutes=60)
    # Priority 2 has no targets of its own: it gets the stricter priority 1 clock, never a laxer one.
    assert policy.targets_for(2, "public").first_response == timedelta(minutes=30)
    assert policy.targets_for(4, "public").first_response == timedelta(minutes=120)
    assert policy.warning_threshold(3, "public") == timedelta(minutes=30)
    opened = datetime(2026, 6, 5, 16, 30, tzinfo=LONDON)
    clock = policy.first_response_clock(opened, 1, "public")
    assert clock.due(policy.calendar) == datetime(2026, 6, 5, 17, tzinfo=LONDON)  # due at closing time
    assert policy.first_response_clock(opened, 3, "public").due(policy.calendar) == datetime(
        2026, 6, 8, 10, 30, tzinfo=LONDON
    )


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ({"targets": {"carrier-pigeon": {}}}, "unknown channel"),
        ({"targets": {}}, "targets must map"),
        ({"targets": {"public": {"high": {}}}}, "priority must be a number"),
        ({"targets": {"public": {1: {"first_response": "soon"}}}}, r"targets.public.1.first_response"),
        ({"targets": {"public": {1: {"first_response": True}}}}, "minutes"),
        ({"targets": {"public": {1: {"first_response": -1}}}}, "minutes"),
        ({"calendar": "always", "targets": {}}, "calendar must be a mapping"),
        ({"calendar": {"hours": ["mon"]}, "targets": {}}, "calendar.hours"),
        ({"warn_fraction": 3, "targets": POLICY["targets"]}, "warn_fraction"),
        ("public: 30", "must be a mapping"),
    ],
)
def test_bad_policies_say_what_is_wrong(data, message):
    with pytest.raises(SlaError, match=message):
        Policy.from_dict("broken", data)


def test_clock_states_warn_before_breach_and_pause():
    calendar = Calendar()
    start = datetime(2026, 6, 1, 9, tzinfo=UTC)
    clock = Clock.start(start, timedelta(minutes=60))
    assert clock.state(start + timedelta(minutes=10), calendar, 0.25) == ClockState.RUNNING
    assert clock.state(start + timedelta(minutes=45), calendar, 0.25) == ClockState.WARNING
    assert clock.state(start + timedelta(minutes=61), calendar, 0.25) == ClockState.BREACHED
    assert clock.left(start + timedelta(minutes=61), calendar) == timedelta(minutes=-1)
    paused = clock.pause(start + timedelta(minutes=20), calendar)
    assert paused.state(start + timedelta(days=3), calendar, 0.25) == ClockState.PAUSED
    met = clock.stop(start + timedelta(minutes=30), calendar)
    assert met.state(start + timedelta(days=3), calendar, 0.25) == ClockState.STOPPED
    late = clock.stop(start + timedelta(minutes=90), calendar)
    assert late.state(start + timedelta(days=3), calendar, 0.25) == ClockState.BREACHED


def test_meta_messaging_window_is_a_wall_clock_deadline():
    last = datetime(2026, 6, 5, 18, tzinfo=LONDON)
    closes = platform_window_closes("meta", last)
    assert closes == datetime(2026, 6, 6, 18, tzinfo=LONDON)
    assert platform_window_closes("mastodon", last) is None
    assert platform_window_closes("meta", None) is None
    sla_due = datetime(2026, 6, 8, 10, tzinfo=LONDON)
    assert earliest_deadline(sla_due, closes, None) == closes
    assert earliest_deadline(None, None) is None
