"""The routing page: availability, "next case", and the supervisor's board with its access rules."""

from __future__ import annotations

import datetime as dt

import pytest
from django.urls import reverse
from django.utils import timezone

from hubbub.accounts.models import Availability, Role
from hubbub.inbox.models import Case, Customer, Priority
from hubbub.routing.tests.helpers import PASSWORD, make_account, make_agent, make_case, make_org

pytestmark = pytest.mark.django_db
HOSTILE = '<script>alert(1)</script>"><img src=x onerror=alert(1)>'


@pytest.fixture
def org():
    return make_org()


@pytest.fixture
def account(org):
    return make_account(org)


def login(client, membership):
    assert client.login(username=membership.user.username, password=PASSWORD)
    return client


def test_next_case_button_opens_the_case_and_explains_a_refusal(client, org, account):
    agent = make_agent(org, "ada", online=False)
    login(client, agent)
    case = make_case(org, account, priority=Priority.URGENT)
    response = client.post(reverse("routing:next_case"), follow=True)
    assert "you are away" in response.content.decode()
    client.post(reverse("routing:availability"), {"availability": Availability.ONLINE})
    agent.refresh_from_db()
    assert agent.is_online
    response = client.post(reverse("routing:next_case"))
    assert response.status_code == 302 and response["Location"] == reverse("inbox:case", args=[case.pk])
    assert Case.objects.get(pk=case.pk).assignee_id == agent.user_id
    # htmx asks for a client-side redirect instead of a swapped-in page.
    make_case(org, account)
    response = client.post(reverse("routing:next_case"), HTTP_HX_REQUEST="true")
    assert response.status_code == 204 and response["HX-Redirect"].startswith("/cases/")


def test_routing_actions_need_post_and_login(client, org):
    make_agent(org, "ada")
    assert client.get(reverse("routing:next_case")).status_code == 302  # to the login page
    login(client, org.memberships.get(user__username="ada"))
    assert client.get(reverse("routing:next_case")).status_code == 405
    assert client.get(reverse("routing:availability")).status_code == 405
    response = client.post(reverse("routing:availability"), {"availability": "x" * 10_000}, follow=True)
    assert "unknown availability" in response.content.decode()
    assert client.post(reverse("routing:next_case"), {"junk": HOSTILE}).status_code == 302


def test_agents_see_their_controls_but_not_the_board(client, org):
    login(client, make_agent(org, "ada"))
    page = client.get(reverse("routing:home")).content.decode()
    assert "Next case" in page and "Go away" in page
    assert 'id="board"' not in page
    assert client.get(reverse("routing:board")).status_code == 404


def test_supervisor_board_counts_per_department(client, org, account):
    supervisor = make_agent(org, "sue", role=Role.SUPERVISOR, departments=("customer-service", "sales"), online=False)
    busy = make_agent(org, "ada", departments=("customer-service",), capacity=2)
    make_agent(org, "bob", departments=("customer-service",), online=False)
    now = timezone.now()
    make_case(org, account, due_in_minutes=-30)  # breached
    make_case(org, account, due_in_minutes=5)  # near breach
    make_case(org, account, due_in_minutes=600, assignee=busy.user, status="open")
    make_case(
        org, account, due_in_minutes=600, opened_at=now - dt.timedelta(hours=3), department="sales"
    )  # oldest waiting in sales
    make_case(org, account, department="legal", due_in_minutes=-5)  # not supervised by sue
    login(client, supervisor)
    page = client.get(reverse("routing:home")).content.decode()
    assert 'hx-get="/routing/board/"' in page and 'hx-trigger="every 5s"' in page
    response = client.get(reverse("routing:board"))
    assert response.status_code == 200
    rows = {row.department.slug: row for row in response.context["rows"]}
    assert set(rows) == {"customer-service", "sales"}
    service = rows["customer-service"]
    assert (service.waiting, service.in_progress, service.near_breach, service.breached) == (2, 1, 1, 1)
    assert [(agent.membership.user.username, agent.load, agent.full) for agent in service.online] == [("ada", 1, False)]
    assert service.away == 2  # bob and sue
    assert rows["sales"].oldest_waiting == now - dt.timedelta(hours=3)
    html = response.content.decode()
    assert "ada 1/2" in html and "Legal" not in html


def test_board_is_scoped_to_the_organization_and_escapes_names(client, org, account):
    other = make_org("Other", "other")
    make_case(other, make_account(other), due_in_minutes=-30)
    customer = Customer.objects.create(organization=org, display_name=HOSTILE)
    make_case(org, account, customer=customer)
    org.departments.filter(slug="customer-service").update(name=HOSTILE)
    admin = make_agent(org, "root", role=Role.ADMIN, departments=())
    login(client, admin)
    response = client.get(reverse("routing:board"))
    rows = {row.department.slug: row for row in response.context["rows"]}
    assert len(rows) == 7  # an admin sees every department of their own organization only
    assert rows["customer-service"].breached == 0 and rows["customer-service"].waiting == 1
    html = response.content.decode()
    assert "<script>alert(1)" not in html and "&lt;script&gt;" in html


def test_board_partial_asks_an_expired_session_to_log_in_again(client):
    response = client.get(reverse("routing:board"))
    assert response.status_code == 401 and "HX-Redirect" in response
