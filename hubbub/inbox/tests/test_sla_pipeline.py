"""The pipeline runs the SLA clocks: opening starts them, a brand reply pauses the case and stops the
next-response clock, the customer's return resumes the case and starts the next-response clock.

Needs the Case SLA calls in hubbub/inbox/pipeline.py (start_sla, brand_replied, customer_wrote)."""

import pytest

from hubbub.accounts.actions import do_create_organization
from hubbub.connectors.actions import do_store_events
from hubbub.connectors.base import RawPost
from hubbub.connectors.models import Network, SocialAccount
from hubbub.inbox.models import Case, CaseStatus
from hubbub.playbook.actions import do_publish_playbook
from hubbub.worker import Worker

PLAYBOOK = """
business_hours:
  timezone: Europe/London
  hours: {mon: "09:00-17:00", tue: "09:00-17:00", wed: "09:00-17:00", thu: "09:00-17:00", fri: "09:00-17:00"}
default: {department: customer-service, priority: normal, first_response_minutes: 60}
sla:
  targets:
    public:
      normal: {first_response: 120, next_response: 30, resolution: 480}
"""


@pytest.fixture
def account(db):
    organization = do_create_organization("Acme", "acme")
    do_publish_playbook(organization, PLAYBOOK)
    return SocialAccount.objects.create(
        organization=organization,
        network=Network.TWITTER,
        handle="acme",
        settings={"imported": True},
        polling_enabled=False,
    )


def post(account, tweet_id: str, at: str, text: str, *, brand: bool = False, reply_to: str = "") -> None:
    row = {
        "tweet_id": tweet_id,
        "author_id": "acme" if brand else "7",
        "inbound": "False" if brand else "True",
        "created_at": at,
        "text": text,
        "response_tweet_id": "",
        "in_response_to_tweet_id": reply_to,
    }
    do_store_events(account, [RawPost(tweet_id, row)])
    Worker(poll=False).drain()


def test_the_pipeline_runs_pauses_and_resumes_the_clocks(account):
    # Monday 6 November 2017 (GMT), 09:00.
    post(account, "1", "2017-11-06T09:00:00Z", "where is my parcel?")
    case = Case.objects.get()
    assert case.first_response_due_at.isoformat() == "2017-11-06T11:00:00+00:00"  # the policy's 120 minutes
    assert case.resolution_due_at.isoformat() == "2017-11-06T17:00:00+00:00"
    # The worker's housekeeping looked at it: these 2017 clocks breached long ago, so nobody is paged.
    assert case.sla_flag == "breached" and not case.escalations.exists()

    post(account, "2", "2017-11-06T09:30:00Z", "@7 sorry, looking now", brand=True, reply_to="1")
    case.refresh_from_db()
    assert case.status == CaseStatus.PENDING_CUSTOMER
    assert case.sla_paused_at.isoformat() == "2017-11-06T09:30:00+00:00"

    # Back on Tuesday at 10:00: paused 7.5 business hours (Monday 09:30-17:00) + 1 (Tuesday 09:00-10:00).
    post(account, "3", "2017-11-07T10:00:00Z", "@acme still nothing", reply_to="2")
    case.refresh_from_db()
    assert case.status == CaseStatus.OPEN and case.sla_paused_at is None
    assert case.sla_paused_seconds == int(8.5 * 3600)
    # 7.5 business hours were left at the pause; from Tuesday 10:00 that is Wednesday 09:30.
    assert case.resolution_due_at.isoformat() == "2017-11-08T09:30:00+00:00"
    assert case.next_response_due_at.isoformat() == "2017-11-07T10:30:00+00:00"

    post(account, "4", "2017-11-07T10:10:00Z", "@7 found it, arriving today", brand=True, reply_to="3")
    case.refresh_from_db()
    assert case.next_response_due_at is None
    assert case.status == CaseStatus.PENDING_CUSTOMER
