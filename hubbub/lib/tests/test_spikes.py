"""Spike detection on replayed traffic: weeks of ordinary volume, then an outage; and quiet weeks.

Property tests keep no example database (database=None): nothing is written into the checkout.
"""

import datetime as dt
import math
import random
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from hubbub.lib.spikes import (
    HOUR,
    WEEK,
    SpikeRule,
    baseline,
    baseline_hours,
    detect,
    detect_all,
    hour_of,
    threshold,
)

START = dt.datetime(2026, 10, 5, tzinfo=dt.UTC)  # a Monday


def poisson(rng: random.Random, mean: float) -> int:
    # Knuth's method: fine for the small means of one topic's hourly volume.
    limit, k, p = math.exp(-mean), 0, 1.0
    while True:
        p *= rng.random()
        if p <= limit:
            return k
        k += 1


def usual_rate(hour: dt.datetime, busiest: float) -> float:
    """A weekly rhythm: quiet nights, busy working hours, quieter weekends."""
    daytime = 0.15 + 0.85 * max(0.0, math.sin(math.pi * (hour.hour - 6) / 16)) if 6 <= hour.hour <= 22 else 0.1
    weekend = 0.6 if hour.weekday() >= 5 else 1.0
    return busiest * daytime * weekend


def ordinary_weeks(rng: random.Random, weeks: int, busiest: float) -> dict[dt.datetime, int]:
    counts = {}
    for h in range(weeks * 7 * 24):
        hour = START + HOUR * h
        counts[hour] = poisson(rng, usual_rate(hour, busiest))
    return counts


def test_a_replayed_outage_burst_is_raised_with_its_ratio_and_reason():
    rng = random.Random(7)
    counts = ordinary_weeks(rng, 5, busiest=12)
    # Week 5, Wednesday 14:00: the payment service goes down; complaints pile up for three hours.
    outage = START + 4 * WEEK + dt.timedelta(days=2, hours=14)
    burst = {outage: 95, outage + HOUR: 160, outage + 2 * HOUR: 70}
    counts.update({hour: counts[hour] + extra for hour, extra in burst.items()})

    alerts = [a for hour in sorted(counts) if hour >= START + 4 * WEEK and (a := detect("outage", counts, hour))]
    assert [a.hour for a in alerts] == [outage, outage + HOUR, outage + 2 * HOUR]
    peak = alerts[1]
    assert peak.volume >= 160 and peak.ratio >= 10
    assert "outage" in peak.reason and "Wed" in peak.reason and "14:00" not in peak.reason
    assert "15:00–16:00 UTC" in peak.reason and "last 4 weeks" in peak.reason


def test_a_quiet_ordinary_week_raises_nothing():
    rng = random.Random(11)
    counts = ordinary_weeks(rng, 6, busiest=12)
    last_week = [START + 5 * WEEK + HOUR * h for h in range(7 * 24)]
    assert detect_all({"complaint": counts}, last_week) == []


def test_a_busy_topic_wobbling_is_not_a_crisis():
    rng = random.Random(3)
    counts = ordinary_weeks(rng, 6, busiest=150)
    last_week = [START + 5 * WEEK + HOUR * h for h in range(7 * 24)]
    assert detect_all({"complaint": counts}, last_week) == []


def test_a_quiet_topic_going_from_one_to_three_is_not_a_crisis():
    hour = START + 4 * WEEK
    counts = {hour - WEEK * k: 1 for k in range(1, 5)} | {hour: 3}
    assert detect("billing", counts, hour) is None
    # A small rule would call it one: the minimum volume is what keeps it quiet.
    assert detect("billing", counts, hour, SpikeRule(min_volume=3, min_ratio=2, spreads=1)) is not None


def test_a_topic_with_no_history_needs_the_minimum_volume_and_says_so():
    hour = START + 4 * WEEK
    assert detect("new-launch", {hour: 19}, hour, history_start=hour) is None
    alert = detect("new-launch", {hour: 40}, hour, history_start=hour)
    assert alert is not None and alert.baseline == 0 and "no earlier weeks" in alert.reason


def test_weeks_before_the_history_started_are_unknown_not_silent():
    hour = START + 4 * WEEK
    counts = {hour - WEEK: 30, hour: 60}
    # Counted as silence, the three weeks before would make 60 look like 8× the usual.
    assert detect("complaint", counts, hour) is not None
    assert detect("complaint", counts, hour, history_start=hour - WEEK) is None


def test_baseline_is_the_same_hour_of_the_week():
    hour = dt.datetime(2026, 11, 4, 14, tzinfo=dt.UTC)
    assert baseline_hours(hour, 2) == [hour - WEEK, hour - 2 * WEEK]
    counts = {hour - WEEK: 10, hour - 2 * WEEK: 20, hour - HOUR: 999}
    assert baseline(counts, hour, 2) == baseline(counts | {hour - dt.timedelta(days=1): 500}, hour, 2)
    assert baseline(counts, hour, 2).mean == 15


LONDON = ZoneInfo("Europe/London")


def test_after_the_clocks_change_the_baseline_is_the_same_local_hour():
    # Monday 30 March 2026, 09:00 in London (BST, 08:00 UTC): the clocks went forward the day before.
    hour = dt.datetime(2026, 3, 30, 8, tzinfo=dt.UTC)
    mondays_at_nine_gmt = [dt.datetime(2026, 3, 23, 9, tzinfo=dt.UTC), dt.datetime(2026, 3, 16, 9, tzinfo=dt.UTC)]
    assert baseline_hours(hour, 2, LONDON) == mondays_at_nine_gmt
    counts = {mondays_at_nine_gmt[0]: 30, mondays_at_nine_gmt[1]: 30, hour - WEEK: 2, hour: 40}
    # Against 08:00 GMT (a quiet hour before opening) 40 posts would look like a spike; against 09:00 they are not.
    assert detect("complaint", counts, hour) is not None
    assert detect("complaint", counts, hour, zone=LONDON) is None


def test_a_local_hour_the_clocks_skipped_is_left_out_of_the_baseline():
    # Sunday 5 April 2026, 01:30 BST: a week earlier, 01:00-02:00 did not exist in London.
    hour = dt.datetime(2026, 4, 5, 0, tzinfo=dt.UTC)
    assert baseline_hours(hour, 2, LONDON) == [dt.datetime(2026, 3, 22, 1, tzinfo=dt.UTC)]


def test_the_reason_gives_the_local_time():
    hour = dt.datetime(2026, 7, 1, 13, tzinfo=dt.UTC)
    alert = detect("payments", {hour: 50}, hour, zone=LONDON)
    assert alert is not None and "Wed 01 Jul 14:00–15:00 Europe/London" in alert.reason


@settings(database=None, max_examples=300)
@given(
    st.datetimes(min_value=dt.datetime(2020, 1, 1), max_value=dt.datetime(2030, 12, 31)),
    st.sampled_from(["Europe/London", "America/New_York", "Australia/Sydney", "Asia/Kolkata", "UTC"]),
)
def test_property_every_baseline_hour_is_the_same_local_hour_of_the_week(moment, zone_name):
    zone = ZoneInfo(zone_name)
    hour = hour_of(moment.replace(tzinfo=dt.UTC))
    local = hour.astimezone(zone)
    earlier = baseline_hours(hour, 4, zone)
    assert len(earlier) >= 3  # at most one week in four can fall in a skipped hour
    for k, before in enumerate(earlier):
        seen = before.astimezone(zone)
        assert (seen.weekday(), seen.hour, seen.minute) == (local.weekday(), local.hour, local.minute)
        assert before < hour and (k == 0 or before < earlier[k - 1])


def test_bad_input_is_refused():
    with pytest.raises(ValueError):
        hour_of(dt.datetime(2026, 1, 1, 12))  # naive: which hour would it be?
    with pytest.raises(ValueError):
        SpikeRule(weeks=0)
    with pytest.raises(ValueError):
        SpikeRule(min_volume=0)
    assert hour_of(dt.datetime(2026, 1, 1, 12, 59, 59, tzinfo=dt.timezone(dt.timedelta(hours=2)))) == dt.datetime(
        2026, 1, 1, 10, tzinfo=dt.UTC
    )


def test_huge_volumes_do_not_break_the_maths():
    hour = START + 4 * WEEK
    counts = {hour - WEEK * k: 10**12 for k in range(1, 5)} | {hour: 10**15}
    alert = detect("viral", counts, hour)
    assert alert is not None and alert.ratio == 1000


weekly_counts = st.lists(st.integers(min_value=0, max_value=5000), min_size=1, max_size=8)


@settings(database=None, max_examples=200)
@given(weekly_counts, st.integers(min_value=0, max_value=20000), st.integers(min_value=0, max_value=167))
def test_property_more_volume_never_clears_an_alert(history, volume, hour_of_week):
    hour = START + 8 * WEEK + HOUR * hour_of_week
    counts = {hour - WEEK * (k + 1): n for k, n in enumerate(history)}
    rule = SpikeRule(weeks=len(history))
    if detect("t", counts | {hour: volume}, hour, rule):
        assert detect("t", counts | {hour: volume + 1}, hour, rule) is not None


@settings(database=None, max_examples=200)
@given(weekly_counts, st.integers(min_value=0, max_value=20000))
def test_property_an_alert_is_above_every_floor(history, volume):
    hour = START + 8 * WEEK
    counts = {hour - WEEK * (k + 1): n for k, n in enumerate(history)} | {hour: volume}
    rule = SpikeRule(weeks=len(history))
    alert = detect("t", counts, hour, rule)
    base = baseline(counts, hour, rule.weeks)
    assert (alert is not None) == (volume >= threshold(base, rule))
    if alert is not None:
        assert alert.volume >= rule.min_volume
        assert alert.volume >= rule.min_ratio * base.mean
        assert alert.ratio >= 1


@settings(database=None, max_examples=100)
@given(st.integers(min_value=0, max_value=10_000), st.integers(min_value=1, max_value=8))
def test_property_a_steady_topic_at_its_usual_volume_is_never_a_spike(usual, weeks):
    hour = START + 8 * WEEK
    counts = {hour - WEEK * k: usual for k in range(1, weeks + 1)} | {hour: usual}
    assert detect("t", counts, hour, SpikeRule(weeks=weeks)) is None
