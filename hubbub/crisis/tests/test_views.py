"""The Crisis page and banner: who sees what, who may act, hostile input."""

import pytest
from django.urls import reverse
from django.utils import timezone

from hubbub.accounts.models import Role
from hubbub.crisis.actions import do_start_crisis
from hubbub.crisis.models import AlertState, CrisisAlert, CrisisMode
from hubbub.lib.spikes import hour_of
from hubbub.publishing.actions import do_reply
from hubbub.routing.tests.helpers import PASSWORD, make_account, make_agent, make_case, make_org

pytestmark = pytest.mark.django_db
HOSTILE = '<script>alert(1)</script>"><img src=x onerror=alert(1)>'


@pytest.fixture
def org():
    return make_org()


@pytest.fixture
def alert(org):
    return CrisisAlert.objects.create(
        organization=org, topic=HOSTILE, hour=hour_of(timezone.now()), volume=80, baseline=4, ratio=20, reason=HOSTILE
    )


def login(client, membership):
    assert client.login(username=membership.user.username, password=PASSWORD)
    return client


def test_supervisor_switches_crisis_on_from_an_alert_and_off_again(client, org, alert):
    login(client, make_agent(org, "sue", role=Role.SUPERVISOR))
    page = client.get(reverse("crisis:home")).content.decode()
    assert "onerror=alert(1)>" not in page and "&lt;script&gt;" in page
    assert "Switch crisis mode on" in page
    marketing = org.departments.get(slug="marketing")
    response = client.post(
        reverse("crisis:start"),
        {"topic": alert.topic, "alert": alert.pk, "department": marketing.pk, "holding_statement": HOSTILE},
        follow=True,
    )
    assert "Crisis mode is on" in response.content.decode()
    mode = CrisisMode.objects.get(organization=org, ended_at=None)
    assert (mode.topic, mode.department_id) == (alert.topic, marketing.pk)
    alert.refresh_from_db()
    assert alert.state == AlertState.ACKNOWLEDGED
    page = client.get(reverse("crisis:home")).content.decode()
    assert "<script>alert(1)" not in page  # the holding statement is escaped too
    banner = client.get(reverse("crisis:banner")).content.decode()
    assert "Crisis mode" in banner and "<script>alert(1)" not in banner

    response = client.post(reverse("crisis:start"), {"topic": alert.topic}, follow=True)
    assert "already in crisis mode" in response.content.decode()
    client.post(reverse("crisis:end", args=[mode.pk]))
    mode.refresh_from_db()
    assert mode.ended_at is not None
    response = client.post(reverse("crisis:end", args=[mode.pk]), follow=True)
    assert "already off" in response.content.decode()
    assert client.get(reverse("crisis:banner")).content.decode().strip() == ""


def test_agents_see_the_crisis_in_force_but_not_alerts_and_cannot_act(client, org, alert):
    sue = make_agent(org, "sue", role=Role.SUPERVISOR)
    mode = do_start_crisis(org, sue.user, "payments", holding_statement="We are aware of the outage.")
    login(client, make_agent(org, "ada"))
    page = client.get(reverse("crisis:home")).content.decode()
    assert "payments" in page and "We are aware of the outage." in page
    assert "Volume alerts" not in page and "Notifications" not in page and "Switch off" not in page
    assert "volume alert" not in client.get(reverse("crisis:banner")).content.decode()
    assert client.post(reverse("crisis:start"), {"topic": "x"}).status_code == 404
    assert client.post(reverse("crisis:end", args=[mode.pk])).status_code == 404
    assert client.post(reverse("crisis:acknowledge", args=[alert.pk])).status_code == 404
    assert CrisisMode.objects.filter(ended_at=None).count() == 1


def test_marketing_is_notified_but_cannot_switch(client, org, alert):
    sue = make_agent(org, "sue", role=Role.SUPERVISOR)
    do_start_crisis(org, sue.user, "payments")
    login(client, make_agent(org, "pat", departments=("marketing",)))
    page = client.get(reverse("crisis:home")).content.decode()
    assert "Volume alerts" in page and "Notifications" in page
    assert "Crisis mode is on for payments" in page
    assert "Switch crisis mode on" not in page
    assert "1 volume alert open" in client.get(reverse("crisis:banner")).content.decode()
    assert client.post(reverse("crisis:close", args=[alert.pk])).status_code == 404


def test_other_organizations_get_404_and_bad_ids_too(client, org, alert):
    sue = make_agent(org, "sue", role=Role.SUPERVISOR)
    mode = do_start_crisis(org, sue.user, "payments")
    other = make_org("Globex", "globex")
    login(client, make_agent(other, "gus", role=Role.ADMIN))
    page = client.get(reverse("crisis:home")).content.decode()
    assert "payments" not in page
    assert client.post(reverse("crisis:end", args=[mode.pk])).status_code == 404
    assert client.post(reverse("crisis:acknowledge", args=[alert.pk])).status_code == 404
    assert client.post(reverse("crisis:start"), {"topic": "t", "alert": alert.pk}).status_code == 404
    department = org.departments.first()
    assert client.post(reverse("crisis:start"), {"topic": "t", "department": department.pk}).status_code == 404
    assert client.post(reverse("crisis:start"), {"topic": "t", "department": "junk"}).status_code == 404
    response = client.post(reverse("crisis:start"), {"topic": "x" * 10_000}, follow=True)
    assert "at most 100" in response.content.decode()
    assert not CrisisMode.objects.filter(organization=other).exists()


def test_pages_need_login_and_the_right_method(client, org):
    assert client.get(reverse("crisis:home")).status_code == 302
    assert client.get(reverse("crisis:banner")).status_code == 401
    login(client, make_agent(org, "sue", role=Role.SUPERVISOR))
    assert client.get(reverse("crisis:start")).status_code == 405


def test_banner_tells_supervisors_about_replies_waiting_for_them(client, org):
    author = make_agent(org, "ada")
    case = make_case(org, make_account(org), requires_approval=True)
    do_reply(case, author.user, "We're sorry")
    login(client, author)
    assert "waiting for approval" not in client.get(reverse("crisis:banner")).content.decode()
    client.logout()
    login(client, make_agent(org, "sue", role=Role.SUPERVISOR))
    banner = client.get(reverse("crisis:banner")).content.decode()
    assert "1 reply waiting for approval" in banner and reverse("publishing:approvals") in banner
