"""Priority scores and the reasons behind them."""

from datetime import timedelta

import pytest

from hubbub.lib.priority import STANDARD_TIER, TIER_POINTS, TIERS, Reason, Signals, score


def _points(result, factor: str) -> int:
    return sum(reason.points for reason in result.reasons if reason.factor == factor)


def test_a_quiet_question_is_low_priority_with_one_reason():
    result = score(Signals(severity=0, sentiment="neutral"))
    assert result.level == 4
    assert result.reasons == [Reason("base", 10, "every case")]


def test_a_furious_vip_with_reach_near_breach_is_urgent_and_says_why():
    result = score(
        Signals(
            severity=4,
            sentiment="negative",
            sentiment_intensity=0.9,
            followers=250_000,
            tier="VIP",
            sla_left=timedelta(minutes=5),
            sla_target=timedelta(minutes=60),
            engagements_per_hour=400,
        )
    )
    assert result.level == 1
    assert result.score == 100  # capped
    factors = {reason.factor for reason in result.reasons}
    assert {"severity", "sentiment", "reach", "tier", "sla", "velocity", "cap"} <= factors
    assert sum(reason.points for reason in result.reasons) == result.score
    assert "250,000 followers" in {reason.detail for reason in result.reasons}
    # Biggest reasons first, so the case page leads with what matters most.
    assert [abs(r.points) for r in result.reasons] == sorted((abs(r.points) for r in result.reasons), reverse=True)


@pytest.mark.parametrize("factor_signals", ["severity", "followers", "engagements_per_hour", "sla_left"])
def test_more_of_a_signal_never_lowers_the_score(factor_signals):
    ladders = {
        "severity": [Signals(severity=level) for level in range(5)],
        "followers": [Signals(followers=n) for n in (0, 999, 1000, 10_000, 10**6, 10**9)],
        "engagements_per_hour": [Signals(engagements_per_hour=v) for v in (0, 1, 10, 100, 10**6)],
        # Less SLA time left is more urgent.
        "sla_left": [
            Signals(sla_left=timedelta(minutes=m), sla_target=timedelta(minutes=60)) for m in (60, 30, 10, 1, 0, -30)
        ],
    }
    scores = [score(signals).score for signals in ladders[factor_signals]]
    assert scores == sorted(scores)
    assert scores[-1] > scores[0]


def test_breach_outweighs_any_time_left():
    breached = score(Signals(sla_left=timedelta(minutes=-1), sla_target=timedelta(minutes=60)))
    last_minute = score(Signals(sla_left=timedelta(seconds=1), sla_target=timedelta(minutes=60)))
    assert _points(breached, "sla") > _points(last_minute, "sla")
    assert "breached" in next(r.detail for r in breached.reasons if r.factor == "sla")


def test_praise_is_less_urgent_than_neutral():
    assert score(Signals(sentiment="positive")).score < score(Signals(sentiment="neutral")).score


@pytest.mark.parametrize(
    "signals",
    [
        Signals(severity=99, followers=-5, engagements_per_hour=float("nan"), sentiment_intensity=float("inf")),
        Signals(severity=-3, sentiment="furious", tier="<script>", sla_left=timedelta(minutes=5), sla_target=None),
        Signals(followers=10**30, engagements_per_hour=1e300, sla_target=timedelta(0), sla_left=timedelta(1)),
        Signals(severity=True, sentiment_intensity=float("-inf"), engagements_per_hour=-1),
    ],
)
def test_hostile_or_impossible_signals_give_a_bounded_score(signals):
    result = score(signals)
    assert 0 <= result.score <= 100
    assert result.level in (1, 2, 3, 4)
    assert sum(reason.points for reason in result.reasons) == result.score


def test_every_tier_with_points_is_a_tier_and_standard_adds_nothing():
    assert set(TIER_POINTS) < set(TIERS)
    assert _points(score(Signals(tier=STANDARD_TIER)), "tier") == 0
    assert _points(score(Signals(tier="vip")), "tier") > _points(score(Signals(tier="premium")), "tier") > 0
    assert _points(score(Signals(tier="gold")), "tier") == 0  # not a tier
