"""End to end: weeks of ordinary traffic, then an outage burst, through the real pipeline.

Posts are stored as raw events (do_store_events) and processed by the worker exactly as polled
ones are; the spike detector raises an alert, a supervisor switches crisis mode on, a public reply
then waits for approval, and switching crisis mode off restores direct publishing.
"""

import datetime as dt
import itertools
import random

import pytest
from django.utils import timezone

from hubbub.accounts.models import Role
from hubbub.connectors.actions import do_store_events
from hubbub.connectors.base import RawPost
from hubbub.connectors.models import Network, SocialAccount
from hubbub.crisis.actions import do_detect_spikes, do_end_crisis, do_start_crisis, holding_statement_for
from hubbub.crisis.models import CrisisAlert
from hubbub.governance.models import AuditEvent
from hubbub.inbox.models import Case
from hubbub.lib.spikes import HOUR, WEEK, hour_of
from hubbub.listening.models import ListeningQuery
from hubbub.playbook.actions import do_publish_default_playbook
from hubbub.publishing.actions import do_approve_reply, do_reply, publish_due
from hubbub.publishing.models import OutboxState
from hubbub.routing.tests.helpers import make_agent, make_org
from hubbub.testing.fake_mastodon import FakeMastodon
from hubbub.worker import Worker

ORDINARY = [
    "how do I change my delivery address",
    "is the shop open on sunday",
    "my payment went through twice, can you refund one",
    "love the new checkout, so quick",
    "where is my order, tracking has not moved",
    "can I pay with a gift card at checkout",
]
OPENINGS = ["ugh", "seriously", "again?!", "help", "come on", "hello?", "wow", "great…"]
PROBLEMS = [
    "payment keeps failing",
    "checkout is down",
    "my card payment was declined three times",
    "the payment page just spins",
    "checkout shows an error 500",
    "cannot pay for my basket",
    "payments broken on the app",
    "checkout crashed and took my money",
]
ENDINGS = ["fix it", "what is going on", "is this an outage", "I need this today", "losing patience", "anyone there"]


@pytest.fixture
def server():
    with FakeMastodon(access_token="secret-token", brand="acme") as instance:
        yield instance


@pytest.fixture
def setup(db, server, settings):
    settings.HUBBUB_ALLOW_PRIVATE_URLS = True
    org = make_org()
    do_publish_default_playbook(org)
    ListeningQuery.objects.create(organization=org, name="payments", query="payment* OR checkout OR pay")
    account = SocialAccount(organization=org, network=Network.MASTODON, handle="acme", base_url=server.url)
    account.credentials = {"access_token": "secret-token"}
    account.save()
    return org, account


def store(server, account, texts_and_times, authors):
    raw = []
    for (text, when), author in zip(texts_and_times, authors, strict=True):
        status = server.add_mention(text, acct=author, created_at=when)
        raw.append(RawPost(external_id=status["id"], payload=status))
    return do_store_events(account, raw)


def test_a_replayed_outage_burst_puts_public_replies_behind_approval_until_crisis_mode_ends(server, setup):
    org, account = setup
    rng = random.Random(5)
    now = hour_of(timezone.now()) - dt.timedelta(days=1) + dt.timedelta(minutes=40)
    burst_hour = hour_of(now)

    # Four ordinary weeks: a post or two every few hours, a few in the hours around this one.
    baseline = []
    for h in range(0, 4 * 7 * 24, 3):
        when = burst_hour - 4 * WEEK + HOUR * h + dt.timedelta(minutes=rng.randrange(60))
        baseline += [(rng.choice(ORDINARY), when)] * rng.randint(1, 2)
    for k in range(1, 5):
        for offset in (-HOUR, 0 * HOUR, HOUR):
            for i in range(3):
                baseline.append((ORDINARY[i * 2], burst_hour - k * WEEK + offset + dt.timedelta(minutes=10 + 7 * i)))
    regulars = (f"regular{i}" for i in itertools.count())
    assert store(server, account, baseline, [next(regulars) for _ in baseline]) == len(baseline)
    Worker(poll=False).drain()
    assert do_detect_spikes(now - HOUR) == []  # an ordinary hour: no false alarm

    # The outage: 70 different customers in forty minutes.
    phrases = list(itertools.product(OPENINGS, PROBLEMS, ENDINGS))
    rng.shuffle(phrases)
    burst = [(f"{a} {p}, {e}", burst_hour + dt.timedelta(seconds=30 * i)) for i, (a, p, e) in enumerate(phrases[:70])]
    assert store(server, account, burst, [f"customer{i}" for i in range(70)]) == 70
    Worker(poll=False).drain()
    burst_cases = Case.objects.filter(opened_at__gte=burst_hour)
    assert burst_cases.count() == 70 and all("payments" in c.listening for c in burst_cases)

    alerts = do_detect_spikes(now)
    alert = next(a for a in alerts if a.topic == "payments")
    assert alert.volume == 70 and alert.hour == burst_hour and alert.ratio >= 5
    assert do_detect_spikes(now + dt.timedelta(minutes=1)) == []  # once per topic and hour
    assert CrisisAlert.objects.filter(topic="payments").count() == 1

    supervisor = make_agent(org, "sue", role=Role.SUPERVISOR)
    agent = make_agent(org, "ada")
    mode = do_start_crisis(org, supervisor.user, "payments", alert=alert, holding_statement="We know, we're on it.")
    case = burst_cases.order_by("id").first()
    assert holding_statement_for(case) == "We know, we're on it."

    held = do_reply(case, agent.user, holding_statement_for(case))
    assert held.state == OutboxState.PENDING_APPROVAL
    publish_due()
    assert server.posted == []
    do_approve_reply(held, supervisor.user)
    publish_due()
    held.refresh_from_db()
    assert held.state == OutboxState.SENT and len(server.posted) == 1

    do_end_crisis(mode, supervisor.user)
    other = burst_cases.order_by("id")[1]
    direct = do_reply(other, agent.user, "It's fixed now, sorry for the trouble")
    assert direct.state == OutboxState.APPROVED
    publish_due()
    direct.refresh_from_db()
    assert direct.state == OutboxState.SENT and len(server.posted) == 2

    told = AuditEvent.objects.filter(organization=org, data__has_key="notify").values_list("action", flat=True)
    assert {"crisis.alert_raised", "crisis.started", "crisis.ended"} <= set(told)
