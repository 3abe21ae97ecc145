"""Spike detection from stored messages, alerts, and switching crisis mode on and off."""

import datetime as dt

import pytest
from django.utils import timezone

from hubbub.accounts.models import Role
from hubbub.crisis.actions import (
    CRISIS_TAG,
    CrisisError,
    crisis_decider,
    crisis_decision,
    crisis_for_case,
    do_acknowledge_alert,
    do_close_alert,
    do_detect_spikes,
    do_end_crisis,
    do_start_crisis,
    holding_statement_for,
    message_topics,
)
from hubbub.crisis.models import AlertState, CrisisAlert, TopicVolume
from hubbub.governance.models import AuditEvent
from hubbub.inbox.models import Direction, Message
from hubbub.lib.spikes import HOUR, WEEK, hour_of
from hubbub.playbook.actions import do_publish_playbook
from hubbub.routing.tests.helpers import make_account, make_agent, make_case, make_org

pytestmark = pytest.mark.django_db
NOW = dt.datetime(2026, 11, 25, 14, 40, tzinfo=dt.UTC)  # a Wednesday afternoon


@pytest.fixture
def org():
    return make_org()


@pytest.fixture
def case(org):
    return make_case(org, make_account(org))


@pytest.fixture
def supervisor(org):
    return make_agent(org, "sue", role=Role.SUPERVISOR)


def posts(case, when: dt.datetime, n: int, *, listening=("payments",), labels=None, direction=Direction.INBOUND):
    classification = {"listening": list(listening), "labels": labels or {"complaint": 0.8}}
    Message.objects.bulk_create(
        Message(
            case=case,
            account_id=case.account_id,
            direction=direction,
            text="the payments page is down",
            classification=classification,
            created_at=when + dt.timedelta(seconds=i),
        )
        for i in range(n)
    )


def usual_weeks(case, hour: dt.datetime, per_hour: int, weeks: int = 4):
    for k in range(1, weeks + 1):
        posts(case, hour - k * WEEK, per_hour)
        posts(case, hour - k * WEEK + HOUR, per_hour)


def test_a_burst_raises_one_alert_per_topic_and_hour_and_counts_each_message_once(org, case):
    hour = hour_of(NOW)
    usual_weeks(case, hour, 3)
    posts(case, hour, 40)
    alerts = do_detect_spikes(NOW)
    assert {a.topic for a in alerts} == {"payments", "complaint"}
    payments = CrisisAlert.objects.get(topic="payments")
    assert (payments.volume, payments.baseline, payments.hour) == (40, 3, hour)
    assert payments.ratio == pytest.approx(13.3) and "payments" in payments.reason

    # Run again (another minute, another worker): nothing new, nothing counted twice.
    assert do_detect_spikes(NOW + dt.timedelta(minutes=1)) == []
    assert TopicVolume.objects.get(topic="payments", hour=hour).count == 40
    posts(case, hour + dt.timedelta(minutes=45), 10)
    assert do_detect_spikes(NOW + dt.timedelta(minutes=10)) == []
    payments.refresh_from_db()
    assert payments.volume == 50 and CrisisAlert.objects.filter(topic="payments").count() == 1
    raised = AuditEvent.objects.filter(action="crisis.alert_raised", target_id=str(payments.pk))
    assert raised.count() == 1 and raised.get().data["notify"] == ["supervisors", "marketing"]


def test_ordinary_volume_and_a_quiet_topic_raise_nothing(org, case):
    hour = hour_of(NOW)
    usual_weeks(case, hour, 30)
    posts(case, hour, 34)  # a busy topic on an ordinary afternoon
    posts(case, hour, 3, listening=("rare-topic",), labels={})  # 1 → 3
    posts(case, hour, 200, direction=Direction.OUTBOUND)  # our own replies are not customer volume
    assert do_detect_spikes(NOW) == []
    assert not CrisisAlert.objects.exists()


def test_the_baseline_is_the_same_hour_in_the_playbooks_time_zone(org, case):
    do_publish_playbook(
        org,
        "default: {department: customer-service, priority: normal, first_response_minutes: 60}\n"
        "business_hours: {timezone: Europe/London, hours: {mon: '09:00-17:00', tue: '09:00-17:00'}}\n",
    )
    # Monday 30 March 2026, 09:40 in London: the clocks went forward the day before, so 09:00 is
    # now 08:00 UTC. Mondays at 09:00 were busy (25 posts), at 08:00 quiet (1 post).
    now = dt.datetime(2026, 3, 30, 8, 40, tzinfo=dt.UTC)
    for k in range(1, 5):
        posts(case, dt.datetime(2026, 3, 30, 9, tzinfo=dt.UTC) - k * WEEK, 25)
        posts(case, dt.datetime(2026, 3, 30, 8, tzinfo=dt.UTC) - k * WEEK, 1)
    posts(case, hour_of(now), 30)
    assert do_detect_spikes(now) == []
    # Without the time zone, 30 posts against the 1 of 08:00 UTC would have been a spike.
    do_publish_playbook(org, "default: {department: customer-service, priority: normal, first_response_minutes: 60}")
    alerts = do_detect_spikes(now + dt.timedelta(minutes=1))
    assert {a.topic for a in alerts} == {"payments", "complaint"}
    assert "Mon 30 Mar 08:00–09:00 UTC" in alerts[0].reason


def test_the_previous_hour_is_checked_too(org, case):
    hour = hour_of(NOW)
    posts(case, hour - HOUR, 60)
    alerts = do_detect_spikes(NOW)
    assert {a.hour for a in alerts} == {hour - HOUR}


def test_history_beyond_the_window_is_ignored_and_pruned(org, case):
    hour = hour_of(NOW)
    posts(case, hour - 10 * WEEK, 500)
    do_detect_spikes(NOW)
    assert not TopicVolume.objects.filter(hour__lt=hour - 5 * WEEK).exists()
    TopicVolume.objects.create(organization=org, topic="old", hour=hour - 20 * WEEK, count=5)
    do_detect_spikes(NOW)
    assert not TopicVolume.objects.filter(topic="old").exists()


@pytest.mark.parametrize(
    "classification",
    [
        "not a dict",
        ["a", "list"],
        {"listening": "payments", "labels": ["complaint"]},
        {"listening": [1, None, {"x": 1}], "labels": None},
        {"listening": ["<script>alert(1)</script>" * 50]},
        {},
    ],
)
def test_hostile_or_malformed_classifications_do_not_stop_detection(org, case, classification):
    Message.objects.create(
        case=case,
        account_id=case.account_id,
        direction=Direction.INBOUND,
        text="x",
        classification=classification,
        created_at=NOW,
    )
    assert do_detect_spikes(NOW) == []
    assert all(len(topic) <= 100 for topic in TopicVolume.objects.values_list("topic", flat=True))


def test_message_topics():
    assert message_topics({"listening": ["payments"], "labels": {"outage": 0.9, "praise": 0.7}}) == {
        "payments",
        "outage",
    }
    assert message_topics(None) == set()


def test_crisis_mode_on_and_off_decides_queue_priority_and_approval(org, case, supervisor):
    marketing = org.departments.get(slug="marketing")
    assert crisis_decision(org.pk, ["payments"], ["complaint"]) is None
    mode = do_start_crisis(org, supervisor.user, "payments", department=marketing, holding_statement="We know.")
    decision = crisis_decision(org.pk, ["payments"], [])
    assert decision == {
        "department": "marketing",
        "priority": 1,
        "requires_approval": True,
        "tag": CRISIS_TAG,
        "crisis_mode": mode.pk,
        "topic": "payments",
    }
    assert crisis_decision(org.pk, ["other"], ["praise"]) is None
    assert crisis_for_case(case) is None
    case.listening = ["payments"]
    assert crisis_for_case(case) == mode and holding_statement_for(case) == "We know."

    everything = do_start_crisis(org, supervisor.user, "")
    decide = crisis_decider(org.pk)
    assert decide(["payments"], [])["department"] == "marketing"  # the specific topic wins
    assert decide([], ["praise"])["crisis_mode"] == everything.pk and decide([], [])["department"] is None

    do_end_crisis(mode, supervisor.user)
    do_end_crisis(everything, supervisor.user)
    assert crisis_decision(org.pk, ["payments"], ["complaint"]) is None
    assert holding_statement_for(case) == ""
    with pytest.raises(CrisisError, match="already off"):
        do_end_crisis(mode, supervisor.user)
    notified = AuditEvent.objects.filter(action__in=["crisis.started", "crisis.ended"], data__has_key="notify")
    assert notified.count() == 4


def test_starting_a_crisis_refuses_bad_input(org, supervisor):
    do_start_crisis(org, supervisor.user, "payments")
    with pytest.raises(CrisisError, match="already in crisis"):
        do_start_crisis(org, supervisor.user, " payments ")
    with pytest.raises(CrisisError):
        do_start_crisis(org, supervisor.user, "x" * 101)
    with pytest.raises(CrisisError):
        do_start_crisis(org, supervisor.user, "t", holding_statement="x" * 100_000)
    other = make_org("Globex", "globex")
    with pytest.raises(CrisisError):
        do_start_crisis(org, supervisor.user, "t", department=other.departments.first())
    alert = CrisisAlert.objects.create(
        organization=other, topic="t", hour=hour_of(timezone.now()), volume=1, baseline=0, ratio=1, reason="r"
    )
    with pytest.raises(CrisisError):
        do_start_crisis(org, supervisor.user, "t", alert=alert)


def test_alerts_are_acknowledged_then_closed_and_starting_from_one_acknowledges_it(org, supervisor):
    make_alert = lambda topic: CrisisAlert.objects.create(  # noqa: E731
        organization=org, topic=topic, hour=hour_of(NOW), volume=50, baseline=2, ratio=25, reason="r"
    )
    alert = make_alert("a")
    do_acknowledge_alert(alert, supervisor.user)
    assert alert.state == AlertState.ACKNOWLEDGED and alert.handled_by_id == supervisor.user_id
    with pytest.raises(CrisisError):
        do_acknowledge_alert(alert, supervisor.user)
    do_close_alert(alert, supervisor.user)
    with pytest.raises(CrisisError):
        do_close_alert(alert, supervisor.user)
    other = make_alert("b")
    do_start_crisis(org, supervisor.user, "b", alert=other)
    other.refresh_from_db()
    assert other.state == AlertState.ACKNOWLEDGED
