"""An explainable priority score: how urgent a case is, and why.

Each signal adds points; the case page lists the reasons with their points, so an agent or a
supervisor can see (and argue with) why one case comes before another. The score maps to the
inbox's priority levels (1 urgent … 4 low). Pure code: callers pass what they know, and a missing
signal simply adds nothing.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from datetime import timedelta

# Points are on a 0-100 scale; the weights below are where the points come from.
BASE = 10
SEVERITY_POINTS = (0, 5, 12, 20, 30)  # none, no explicit reproach, disapproval, accusation, blame
NEGATIVE_SENTIMENT_MAX = 10
POSITIVE_SENTIMENT = -5
REACH_MAX = 15
# A customer's tier (hubbub.inbox.models.Tier keeps the same names): set on the case page or by a
# loaded VIP list, and a playbook condition too.
STANDARD_TIER = "standard"
TIERS = (STANDARD_TIER, "premium", "vip")
TIER_POINTS = {"premium": 8, "vip": 15}
SLA_MAX = 20
SLA_BREACHED = 25
VELOCITY_MAX = 15

# Thresholds on the score for levels 1 (urgent), 2 (high), 3 (normal); below is 4 (low).
LEVELS = ((60, 1), (40, 2), (20, 3))


@dataclass(frozen=True)
class Reason:
    factor: str
    points: int
    detail: str


@dataclass(frozen=True)
class PriorityScore:
    score: int
    level: int
    reasons: list[Reason] = field(default_factory=list)


@dataclass(frozen=True)
class Signals:
    severity: int | None = None  # 0-4
    sentiment: str = ""  # negative / neutral / positive
    sentiment_intensity: float = 0.0  # 0-1, how strongly
    followers: int | None = None
    tier: str = ""  # the customer's tier, one of TIERS
    sla_left: timedelta | None = None
    sla_target: timedelta | None = None
    engagements_per_hour: float | None = None  # likes, replies and reposts the post is gathering


def _finite(value: float | None) -> float | None:
    if value is None or not isinstance(value, int | float) or isinstance(value, bool) or not math.isfinite(value):
        return None
    return float(value)


def _severity(signals: Signals) -> Reason | None:
    if signals.severity is None or isinstance(signals.severity, bool):
        return None
    level = min(max(int(signals.severity), 0), 4)
    if level == 0:
        return None
    return Reason("severity", SEVERITY_POINTS[level], f"severity {level} of 4")


def _sentiment(signals: Signals) -> Reason | None:
    intensity = min(max(_finite(signals.sentiment_intensity) or 0.0, 0.0), 1.0)
    if signals.sentiment == "negative":
        points = round(NEGATIVE_SENTIMENT_MAX * max(intensity, 0.3))
        return Reason("sentiment", points, f"negative sentiment ({intensity:.0%} intensity)")
    if signals.sentiment == "positive":
        return Reason("sentiment", POSITIVE_SENTIMENT, "positive sentiment")
    return None


def _reach(signals: Signals) -> Reason | None:
    followers = _finite(signals.followers)
    if followers is None or followers < 1000:
        return None
    # 1,000 followers: 5 points; each tenfold more: 5 more, up to the cap.
    points = min(REACH_MAX, round(5 * (math.log10(followers) - 2)))
    return Reason("reach", points, f"{int(followers):,} followers")


def _tier(signals: Signals) -> Reason | None:
    tier = (signals.tier or "").strip().lower()
    points = TIER_POINTS.get(tier)
    if not points:
        return None
    return Reason("tier", points, f"{tier} customer")


def _sla(signals: Signals) -> Reason | None:
    if signals.sla_left is None:
        return None
    left_minutes = signals.sla_left.total_seconds() / 60
    if signals.sla_left <= timedelta(0):
        return Reason("sla", SLA_BREACHED, f"SLA breached {-left_minutes:.0f} min ago")
    if not signals.sla_target or signals.sla_target <= timedelta(0):
        return None
    used = 1 - min(signals.sla_left / signals.sla_target, 1.0)
    # Quadratic: little while there is time, most of the points in the last stretch.
    points = round(SLA_MAX * used * used)
    if points == 0:
        return None
    return Reason("sla", points, f"{left_minutes:.0f} min left of the SLA")


def _velocity(signals: Signals) -> Reason | None:
    velocity = _finite(signals.engagements_per_hour)
    if velocity is None or velocity <= 0:
        return None
    points = min(VELOCITY_MAX, round(5 * math.log10(1 + velocity)))
    if points == 0:
        return None
    return Reason("velocity", points, f"{velocity:.0f} engagements per hour")


def score(signals: Signals) -> PriorityScore:
    reasons = [Reason("base", BASE, "every case")]
    for factor in (_severity, _sentiment, _reach, _tier, _sla, _velocity):
        reason = factor(signals)
        if reason is not None:
            reasons.append(reason)
    total = sum(reason.points for reason in reasons)
    clamped = min(max(total, 0), 100)
    if clamped != total:
        reasons.append(Reason("cap", clamped - total, "scores stay between 0 and 100"))
    level = next((level for threshold, level in LEVELS if clamped >= threshold), 4)
    reasons.sort(key=lambda reason: -abs(reason.points))
    return PriorityScore(score=clamped, level=level, reasons=reasons)
