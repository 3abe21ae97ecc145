"""Rules on the customer's tier, the brand account and business hours: the pipeline, the dry run
and publishing read the same facts, and the pages show the conditions."""

from __future__ import annotations

import datetime as dt

import pytest
from django.urls import reverse
from django.utils import timezone
from django.utils.html import escape

from hubbub.accounts.models import Role
from hubbub.connectors.actions import do_store_events
from hubbub.connectors.base import RawPost
from hubbub.connectors.models import Network, SocialAccount
from hubbub.inbox.actions import do_import_tiers
from hubbub.inbox.models import Case
from hubbub.inbox.tests.test_views import PASSWORD, SCRIPT, make_member, make_org
from hubbub.lib.playbook import PlaybookError
from hubbub.lib.tierlist import TierRow
from hubbub.playbook.actions import active_playbook, do_dry_run, do_publish_playbook, replayed_posts
from hubbub.worker import Worker

DEFAULT = "default: {department: customer-service, priority: normal, first_response_minutes: 60}\n"
RULES = """
business_hours:
  timezone: UTC
  hours: {mon: "09:00-17:00", tue: "09:00-17:00", wed: "09:00-17:00", thu: "09:00-17:00", fri: "09:00-17:00"}
rules:
  - name: VIPs at night
    when: {tier: vip, business_hours: false}
    then: {priority: urgent, tags: [vip-night]}
  - name: Help desk
    when: {account: "twitter:@Acme_Help"}
    then: {department: operations}
  - name: After hours
    when: {business_hours: false}
    then: {tags: [after-hours]}
"""


@pytest.fixture
def org(db):
    return make_org("Acme", "acme")


def _accounts(org) -> dict[str, SocialAccount]:
    return {
        handle: SocialAccount.objects.create(
            organization=org, network=Network.TWITTER, handle=handle, settings={"imported": True}
        )
        for handle in ("acme", "Acme_Help")
    }


def _post(account, tweet_id: str, author: str, at: dt.datetime) -> None:
    row = {
        "tweet_id": tweet_id,
        "author_id": author,
        "inbound": "True",
        "created_at": at.strftime("%Y-%m-%dT%H:%M:%SZ"),
        "text": f"@{account.handle} where is my order number {tweet_id}?",
        "response_tweet_id": "",
        "in_response_to_tweet_id": "",
    }
    do_store_events(account, [RawPost(tweet_id, row)])


def _last_monday() -> dt.datetime:
    today = timezone.now().replace(hour=0, minute=0, second=0, microsecond=0)
    return today - dt.timedelta(days=today.weekday() + 7)  # the Monday of last week


def test_a_dry_run_replays_the_facts_the_pipeline_routed_by(org):
    accounts = _accounts(org)
    do_publish_playbook(org, DEFAULT + RULES)
    do_import_tiers(org, [TierRow(1, "twitter", "vip", "vip")])
    monday = _last_monday()
    day, night = monday + dt.timedelta(hours=10), monday + dt.timedelta(hours=20)
    _post(accounts["acme"], "1", "vip", night)
    _post(accounts["acme"], "2", "ann", night)
    _post(accounts["Acme_Help"], "3", "bob", day)
    _post(accounts["acme"], "4", "cy", day)
    Worker(poll=False).drain()
    rules = dict(Case.objects.values_list("customer__identities__handle", "playbook_rule"))
    assert rules == {"vip": "VIPs at night", "ann": "After hours", "bob": "Help desk", "cy": "default"}
    assert Case.objects.get(customer__identities__handle="bob").department.slug == "operations"

    # Each replayed opening post routes as the pipeline routed it.
    _version, running = active_playbook(org.pk)
    replayed = list(replayed_posts(org.pk, monday - dt.timedelta(days=1)))
    assert len(replayed) == 4
    for post in replayed:
        assert running.route(post.facts).rule == Case.objects.get(pk=post.case_id).playbook_rule
    # So a draft without the rules is predicted to change exactly the three cases they claimed.
    report = do_dry_run(org, DEFAULT, None, days=14)
    assert (report.posts, report.changed) == (4, 3)
    assert report.moved_rows() == [("operations", "customer-service", 1)]


def test_publishing_refuses_an_account_the_organization_does_not_have(org):
    _accounts(org)
    do_publish_playbook(org, DEFAULT + RULES)  # twitter:@Acme_Help is theirs, whatever the case
    running = active_playbook(org.pk)[0]
    with pytest.raises(PlaybookError) as caught:
        do_publish_playbook(org, DEFAULT + "rules: [{when: {account: [acme, 'mastodon:acme']}, then: {tags: [x]}}]")
    assert caught.value.path == "rules[0].when.account"
    assert "no account 'mastodon:acme' (known: twitter:acme, twitter:acme_help)" in str(caught.value)
    sales = org.departments.get(slug="sales")
    with pytest.raises(PlaybookError) as caught:
        do_publish_playbook(org, "rules: [{when: {account: globex}, then: {tags: [x]}}]", department=sales)
    assert caught.value.path == "sales: rules[0].when.account"
    assert active_playbook(org.pk)[0] == running


def test_the_structured_view_shows_the_new_conditions_escaped(client, org):
    supervisor = make_member(org, "sue", Role.SUPERVISOR)
    assert client.login(username=supervisor.username, password=PASSWORD)
    source = (
        DEFAULT + "rules:\n"
        "  - {name: Night, when: {business_hours: false, tier: [vip, premium]}, then: {priority: high}}\n"
        "  - {name: Day, when: {business_hours: true}, then: {priority: low}}\n"
        f"  - {{name: Hostile, when: {{account: 'twitter:{SCRIPT}'}}, then: {{priority: low}}}}\n"
    )
    page = client.post(reverse("playbook:intake_validate"), {"source": source}).content.decode()
    pills = ["outside business hours", "tier: vip, premium", "in business hours", f"account: twitter:{escape(SCRIPT)}"]
    assert all(f'<span class="pill">{pill}</span>' in page for pill in pills)
    assert SCRIPT not in page
    bad = client.post(
        reverse("playbook:intake_validate"), {"source": DEFAULT + "rules: [{when: {tier: gold}, then: {tags: [x]}}]"}
    )
    assert "rules[0].when.tier" in bad.content.decode() and "gold" in bad.content.decode()
