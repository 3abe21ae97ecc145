"""Volume spikes per topic: is this hour's volume far above what this hour of the week usually sees?

Social traffic has a strong weekly rhythm (Monday mornings are busy, Sunday nights quiet), so an
hour is compared with the same hour of the week in the previous weeks, not with the day before.
Three tests must all hold before a spike is raised, so that a quiet topic going from 1 post to 3
is not a crisis and a busy topic's ordinary wobble is not one either:

- a minimum volume in the hour (absolute),
- a minimum ratio to the baseline mean (relative),
- a margin above the mean of several spreads, where the spread is never taken below the Poisson
  noise of the mean (a topic that had exactly 10 posts every week has a spread of 0, yet 13 is
  not surprising).

Counts are kept per whole UTC hour; "the same hour of the week" is the same local hour in the
organisation's time zone, so that after a daylight-saving change Monday 09:00 is still compared
with the Mondays at 09:00 before it. Pure: counts come in as mappings, nothing is read from a
database.
"""

from __future__ import annotations

import datetime as dt
import math
import statistics
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from zoneinfo import ZoneInfo

WEEK = dt.timedelta(days=7)
HOUR = dt.timedelta(hours=1)


@dataclass(frozen=True)
class SpikeRule:
    weeks: int = 4
    min_volume: int = 20
    min_ratio: float = 3.0
    spreads: float = 3.0

    def __post_init__(self) -> None:
        if self.weeks < 1 or self.min_volume < 1 or self.min_ratio < 1 or self.spreads < 0:
            raise ValueError("a spike rule needs at least one week, a volume of 1, a ratio of 1 and spreads ≥ 0")


@dataclass(frozen=True)
class Baseline:
    mean: float
    spread: float
    # How many earlier weeks had data for this hour: 0 for a topic with no history yet.
    weeks: int


@dataclass(frozen=True)
class SpikeAlert:
    topic: str
    hour: dt.datetime
    volume: int
    baseline: float
    spread: float
    ratio: float
    reason: str


def hour_of(moment: dt.datetime) -> dt.datetime:
    """The start of the UTC hour a moment falls in."""
    if moment.tzinfo is None:
        raise ValueError("spike detection needs aware datetimes")
    return moment.astimezone(dt.UTC).replace(minute=0, second=0, microsecond=0)


def baseline_hours(hour: dt.datetime, weeks: int, zone: dt.tzinfo = dt.UTC) -> list[dt.datetime]:
    """The UTC hours that were the same local hour of the week in each of the previous `weeks` weeks,
    most recent first. A week in which that local hour did not exist (the clocks went forward
    through it) is left out."""
    wall = hour.astimezone(zone).replace(tzinfo=None)
    hours = []
    for k in range(1, weeks + 1):
        earlier = wall - WEEK * k
        moment = earlier.replace(tzinfo=zone).astimezone(dt.UTC)
        if moment.astimezone(zone).replace(tzinfo=None) == earlier:
            hours.append(hour_of(moment))
    return hours


def baseline(
    counts: Mapping[dt.datetime, int],
    hour: dt.datetime,
    weeks: int,
    history_start: dt.datetime | None = None,
    zone: dt.tzinfo = dt.UTC,
) -> Baseline:
    """Mean and spread of the same hour of the week over earlier weeks.

    An hour absent from `counts` had no posts, but only from `history_start` on: before it we
    know nothing, and counting unknown weeks as silent would make every topic look like a spike.
    """
    samples = [
        counts.get(earlier, 0)
        for earlier in baseline_hours(hour, weeks, zone)
        if history_start is None or earlier >= hour_of(history_start)
    ]
    if not samples:
        return Baseline(0.0, 0.0, 0)
    mean = statistics.fmean(samples)
    spread = statistics.pstdev(samples) if len(samples) > 1 else 0.0
    return Baseline(mean, spread, len(samples))


def threshold(base: Baseline, rule: SpikeRule) -> float:
    """The smallest volume that is a spike for this baseline."""
    noise = max(base.spread, math.sqrt(base.mean), 1.0)
    return max(float(rule.min_volume), base.mean * rule.min_ratio, base.mean + rule.spreads * noise)


def detect(
    topic: str,
    counts: Mapping[dt.datetime, int],
    hour: dt.datetime,
    rule: SpikeRule = SpikeRule(),
    history_start: dt.datetime | None = None,
    zone: dt.tzinfo = dt.UTC,
) -> SpikeAlert | None:
    """An alert when the hour's volume for the topic is a spike, else None."""
    hour = hour_of(hour)
    volume = counts.get(hour, 0)
    if volume < rule.min_volume:
        return None  # cheap exit: most topics, most hours
    base = baseline(counts, hour, rule.weeks, history_start, zone)
    if volume < threshold(base, rule):
        return None
    ratio = volume / max(base.mean, 1.0)
    return SpikeAlert(
        topic=topic,
        hour=hour,
        volume=volume,
        baseline=round(base.mean, 2),
        spread=round(base.spread, 2),
        ratio=round(ratio, 1),
        reason=_reason(topic, hour.astimezone(zone), volume, base, ratio),
    )


def detect_all(
    counts_by_topic: Mapping[str, Mapping[dt.datetime, int]],
    hours: Iterable[dt.datetime],
    rule: SpikeRule = SpikeRule(),
    history_start: dt.datetime | None = None,
    zone: dt.tzinfo = dt.UTC,
) -> list[SpikeAlert]:
    """Every spike among the given hours, strongest first."""
    alerts = [
        alert
        for topic, counts in counts_by_topic.items()
        for hour in hours
        if (alert := detect(topic, counts, hour, rule, history_start, zone)) is not None
    ]
    return sorted(alerts, key=lambda a: (-a.ratio, a.topic, a.hour))


def _reason(topic: str, hour: dt.datetime, volume: int, base: Baseline, ratio: float) -> str:
    """`hour` is in the organisation's time zone."""
    zone = hour.tzinfo.key if isinstance(hour.tzinfo, ZoneInfo) else hour.tzname()
    end = (hour.astimezone(dt.UTC) + HOUR).astimezone(hour.tzinfo)
    when = f"{hour:%a %d %b %H:%M}–{end:%H:%M} {zone}"
    if base.weeks == 0:
        return f"{volume} posts about “{topic}” {when}, with no earlier weeks to compare with"
    return (
        f"{volume} posts about “{topic}” {when}: {ratio:.1f}× the usual {base.mean:.1f} "
        f"(spread {base.spread:.1f}) for this hour of the week over the last {base.weeks} "
        f"week{'s' if base.weeks != 1 else ''}"
    )
