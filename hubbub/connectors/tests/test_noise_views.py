"""The Filtered page: supervisors of the organization only, hostile text escaped, restores audited."""

from __future__ import annotations

import pytest
from django.contrib.auth.models import User
from django.urls import reverse

from hubbub.accounts.actions import do_add_member, do_create_organization
from hubbub.accounts.models import Role
from hubbub.connectors import noise
from hubbub.connectors.models import EventState, InboundEvent
from hubbub.connectors.tests.test_noise_sift import make_account, read, status, store
from hubbub.governance.models import AuditEvent
from hubbub.playbook.actions import do_publish_default_playbook

HOSTILE = "&lt;script&gt;alert(1)&lt;/script&gt; &quot;&gt;&lt;img src=x onerror=alert(1)&gt;"


@pytest.fixture(autouse=True)
def fresh_memory():
    noise._memories.clear()
    yield
    noise._memories.clear()


@pytest.fixture
def org(db):
    organization = do_create_organization("Acme", "acme")
    do_publish_default_playbook(organization)
    return organization


@pytest.fixture
def account(org):
    return make_account(org)


def member(organization, username: str, role: str) -> User:
    user = User.objects.create_user(username, password="a long enough test password")
    do_add_member(organization, user, role, ["customer-service"])
    return user


@pytest.fixture
def filtered(org, account) -> list[InboundEvent]:
    """Two boosts of a hostile post, and a bot's post."""
    events = store(
        account,
        status(HOSTILE, acct="booster1", reblog_of="1"),
        status(HOSTILE, acct="booster2", reblog_of="1"),
        status(HOSTILE, acct="pricewatch", bot=True),
    )
    assert noise.sift(org.pk, read(account, events)) == []
    return list(InboundEvent.objects.filter(pk__in=[e.pk for e in events]).order_by("pk"))


def test_a_supervisor_sees_filtered_posts_by_rule_with_counts(client, org, filtered):
    client.force_login(member(org, "sam", Role.SUPERVISOR))
    response = client.get(reverse("noise:filtered"))
    assert response.status_code == 200
    page = response.content.decode()
    assert 'Reposts and boosts <span class="badge">2</span>' in page
    assert 'Bots <span class="badge">1</span>' in page
    assert page.count("no text of its own") == 2
    assert 'href="/filtered/"' in page  # the nav link
    bots = client.get(reverse("noise:filtered"), {"rule": "bot"}).content.decode()
    assert "automated account" in bots and "pricewatch" in bots


def test_customer_text_is_escaped(client, org, filtered):
    client.force_login(member(org, "sam", Role.SUPERVISOR))
    page = client.get(reverse("noise:filtered"), {"rule": "bot"}).content.decode()
    assert "<script>alert(1)" not in page and "<img src=x" not in page
    assert "&lt;script&gt;alert(1)" in page


@pytest.mark.parametrize("role", [Role.AGENT])
def test_agents_get_404_everywhere(client, org, filtered, role):
    client.force_login(member(org, "alice", role))
    event = filtered[0]
    assert client.get(reverse("noise:filtered")).status_code == 404
    assert client.post(reverse("noise:restore", args=[event.pk])).status_code == 404
    assert client.post(reverse("noise:restore_rule"), {"rule": "repost"}).status_code == 404
    event.refresh_from_db()
    assert event.state == EventState.FILTERED
    assert "Filtered" not in client.get(reverse("inbox:queue")).content.decode()


def test_another_organizations_supervisor_cannot_see_or_restore(client, filtered):
    other = do_create_organization("Other", "other")
    do_publish_default_playbook(other)
    client.force_login(member(other, "olga", Role.SUPERVISOR))
    page = client.get(reverse("noise:filtered")).content.decode()
    assert "booster1" not in page and "Nothing filtered" in page
    assert client.post(reverse("noise:restore", args=[filtered[0].pk])).status_code == 404
    client.post(reverse("noise:restore_rule"), {"rule": "repost"})
    assert set(InboundEvent.objects.values_list("state", flat=True)) == {EventState.FILTERED}


def test_login_is_required(client, filtered):
    response = client.get(reverse("noise:filtered"))
    assert response.status_code == 302 and reverse("login") in response["Location"]
    assert client.post(reverse("noise:restore", args=[filtered[0].pk])).status_code == 302
    assert InboundEvent.objects.get(pk=filtered[0].pk).state == EventState.FILTERED


def test_restore_one_post(client, org, filtered):
    supervisor = member(org, "sam", Role.SUPERVISOR)
    client.force_login(supervisor)
    event = filtered[0]
    assert client.get(reverse("noise:restore", args=[event.pk])).status_code == 405
    response = client.post(reverse("noise:restore", args=[event.pk]), follow=True)
    assert response.status_code == 200 and "will become a case" in response.content.decode()
    event.refresh_from_db()
    assert (event.state, event.noise_exempt) == (EventState.PENDING, True)
    audit = AuditEvent.objects.get(action="event.restored")
    assert audit.actor == supervisor and audit.target_id == str(event.pk)
    # Restoring it again finds nothing to restore.
    assert client.post(reverse("noise:restore", args=[event.pk])).status_code == 404


def test_an_admin_restores_all_of_a_rule(client, org, filtered):
    client.force_login(member(org, "ada", Role.ADMIN))
    response = client.post(reverse("noise:restore_rule"), {"rule": "repost"}, follow=True)
    assert "2 posts restored" in response.content.decode()
    states = dict(InboundEvent.objects.values_list("pk", "state"))
    assert [states[e.pk] for e in filtered] == [EventState.PENDING, EventState.PENDING, EventState.FILTERED]
    assert AuditEvent.objects.get(action="noise.restored").data == {"rule": "repost", "count": 2}


@pytest.mark.parametrize(
    ("method", "name", "params"),
    [
        ("get", "noise:filtered", {"rule": "everything"}),
        ("get", "noise:filtered", {"rule": "repost", "before": "x' OR 1=1"}),
        ("get", "noise:filtered", {"rule": "repost", "before": "-5"}),
        ("post", "noise:restore_rule", {"rule": "<script>"}),
        ("post", "noise:restore_rule", {}),
    ],
)
def test_bad_input_is_a_404(client, org, filtered, method, name, params):
    client.force_login(member(org, "sam", Role.SUPERVISOR))
    assert getattr(client, method)(reverse(name), params).status_code == 404


def test_the_list_pages_by_keyset(client, org, account):
    events = store(account, *(status(acct=f"b{i}", reblog_of="1") for i in range(55)))
    noise.sift(org.pk, read(account, events))
    client.force_login(member(org, "sam", Role.SUPERVISOR))
    first = client.get(reverse("noise:filtered"), {"rule": "repost"})
    assert first.content.decode().count("/restore/") == 50
    older = first.context["next_url"]
    second = client.get(older).content.decode()
    assert second.count("/restore/") == 5
