"""Needs the lead's changes to hubbub/inbox (pipeline, case page, queue): crisis routing and UI."""

import pytest
from django.urls import reverse

from hubbub.accounts.models import Role
from hubbub.connectors.actions import do_store_events
from hubbub.connectors.base import RawPost
from hubbub.connectors.models import Network, SocialAccount
from hubbub.crisis.actions import do_end_crisis, do_start_crisis
from hubbub.inbox.models import Case
from hubbub.listening.models import ListeningQuery
from hubbub.playbook.actions import do_publish_default_playbook
from hubbub.publishing.actions import do_reply, do_send_back_reply
from hubbub.routing.tests.helpers import PASSWORD, make_agent, make_org
from hubbub.testing.fake_mastodon import FakeMastodon
from hubbub.worker import Worker

HOSTILE = '<script>alert(1)</script>"><img src=x onerror=alert(1)>'


@pytest.fixture
def server():
    with FakeMastodon(access_token="t", brand="acme") as instance:
        yield instance


@pytest.fixture
def org(db):
    org = make_org()
    do_publish_default_playbook(org)
    ListeningQuery.objects.create(organization=org, name="payments", query="payment* OR checkout")
    return org


def post(server, org, text, acct):
    account = SocialAccount.objects.filter(organization=org).first() or SocialAccount.objects.create(
        organization=org, network=Network.MASTODON, handle="acme", base_url=server.url
    )
    status = server.add_mention(text, acct=acct)
    do_store_events(account, [RawPost(status["id"], status)])
    Worker(poll=False).drain()
    return Case.objects.get(messages__external_id=status["id"])


def test_crisis_routes_new_posts_to_its_queue_until_switched_off(server, org):
    sue = make_agent(org, "sue", role=Role.SUPERVISOR)
    marketing = org.departments.get(slug="marketing")
    mode = do_start_crisis(org, sue.user, "payments", department=marketing)
    case = post(server, org, "my payment failed again", "alice")
    assert (case.department_id, case.priority, case.tags) == (marketing.pk, 1, ["crisis"])
    other = post(server, org, "where is my parcel", "bob")
    assert other.department_id != marketing.pk and other.tags == []
    do_end_crisis(mode, sue.user)
    later = post(server, org, "is checkout working now, where is my parcel", "carol")
    assert later.department_id != marketing.pk and later.tags == [] and "payments" in later.listening


def test_case_page_offers_the_holding_statement_escaped_and_the_sent_back_draft(client, server, org):
    sue = make_agent(org, "sue", role=Role.SUPERVISOR)
    ada = make_agent(org, "ada", departments=("customer-service", "marketing"))
    do_start_crisis(org, sue.user, "payments", holding_statement=HOSTILE)
    case = post(server, org, "my payment failed", "alice")
    outbound = do_reply(case, ada.user, "not our fault")
    do_send_back_reply(outbound, sue.user, "Apologise " + HOSTILE)
    assert client.login(username="ada", password=PASSWORD)
    page = client.get(reverse("inbox:case", args=[case.pk])).content.decode()
    assert "Use the holding statement" in page and "reply-box.js" in page
    assert "<script>alert(1)" not in page and "onerror=alert(1)>" not in page
    assert "Your reply was sent back" in page and reverse("publishing:resubmit", args=[outbound.pk]) in page
    queue = client.get(reverse("inbox:queue")).content.decode()
    assert reverse("crisis:banner") in queue
