"""The Listening pages: who may see and edit, the validate-as-you-type and preview partials, escaping."""

from __future__ import annotations

import datetime as dt

import pytest
from django.urls import reverse
from django.utils import timezone

from hubbub.accounts.models import Role
from hubbub.governance.models import AuditEvent
from hubbub.inbox.models import Direction, Message
from hubbub.inbox.tests.test_views import HOSTILE, SCRIPT, make_account, make_case, make_member, make_org
from hubbub.listening.actions import do_save_query
from hubbub.listening.models import ListeningQuery


@pytest.fixture
def org(db):
    return make_org("Acme", "acme")


@pytest.fixture
def other_org(db):
    return make_org("Globex", "globex")


@pytest.fixture
def supervisor(org):
    return make_member(org, "sam", Role.SUPERVISOR, ["customer-service"])


@pytest.fixture
def agent(org):
    return make_member(org, "alice")


@pytest.fixture
def query(org, supervisor):
    return do_save_query(org, supervisor, name="Refunds", query="acme refund*")


def login(client, user):
    client.force_login(user)
    return client


def edit_url(query) -> str:
    return reverse("listening:edit", args=[query.pk])


def test_pages_need_login(client, query):
    for url in [reverse("listening:list"), reverse("listening:create"), edit_url(query)]:
        response = client.get(url)
        assert response.status_code == 302 and response["Location"].startswith(reverse("login"))
    response = client.post(reverse("listening:validate"), {"query": "acme"})
    assert response.status_code == 401


def test_agents_see_queries_but_cannot_change_them(client, agent, query):
    login(client, agent)
    page = client.get(reverse("listening:list"))
    assert page.status_code == 200 and b"acme refund*" in page.content
    assert b"New query" not in page.content and b"Disable" not in page.content
    detail = client.get(edit_url(query))
    assert detail.status_code == 200 and b"Only supervisors and admins" in detail.content
    assert b"<textarea" not in detail.content
    assert client.get(reverse("listening:create")).status_code == 404
    assert client.post(reverse("listening:create"), {"name": "x", "query": "acme"}).status_code == 404
    assert client.post(edit_url(query), {"name": "x", "query": "acme"}).status_code == 404
    assert client.post(reverse("listening:set_enabled", args=[query.pk]), {"enabled": "0"}).status_code == 404
    assert client.post(reverse("listening:delete", args=[query.pk])).status_code == 404
    assert client.post(reverse("listening:preview"), {"query": "acme"}).status_code == 404
    query.refresh_from_db()
    assert query.name == "Refunds" and query.enabled


def test_another_organizations_query_is_a_404(client, other_org, query):
    admin = make_member(other_org, "olga", Role.ADMIN)
    login(client, admin)
    assert client.get(edit_url(query)).status_code == 404
    assert client.post(edit_url(query), {"name": "mine", "query": "acme"}).status_code == 404
    assert client.post(reverse("listening:delete", args=[query.pk])).status_code == 404
    assert client.post(reverse("listening:set_enabled", args=[query.pk]), {"enabled": "0"}).status_code == 404
    assert b"acme refund" not in client.get(reverse("listening:list")).content
    assert client.get("/listening/99999999999999999999/").status_code == 404
    assert ListeningQuery.objects.get(pk=query.pk).name == "Refunds"


def test_supervisor_creates_edits_toggles_and_deletes(client, org, supervisor):
    login(client, supervisor)
    legal = org.departments.get(slug="legal")
    response = client.post(
        reverse("listening:create"),
        {"name": "Legal threats", "query": "acme (lawyer OR lawsuit)", "enabled": "on", "department": legal.pk},
    )
    assert response.status_code == 302
    query = ListeningQuery.objects.get(organization=org)
    assert (query.name, query.enabled, query.department, query.created_by) == ("Legal threats", True, legal, supervisor)

    response = client.post(edit_url(query), {"name": "Legal threats", "query": "acme lawyer"})
    assert response.status_code == 302
    query.refresh_from_db()
    assert query.query == "acme lawyer" and not query.enabled and query.department is None

    client.post(reverse("listening:set_enabled", args=[query.pk]), {"enabled": "1"})
    query.refresh_from_db()
    assert query.enabled
    client.post(reverse("listening:delete", args=[query.pk]))
    assert not ListeningQuery.objects.exists()
    actions = list(
        AuditEvent.objects.filter(organization=org, action__startswith="listening.")
        .order_by("id")
        .values_list("action", flat=True)
    )
    assert actions == ["listening.create", "listening.edit", "listening.enable", "listening.delete"]


def test_a_bad_query_is_not_saved_and_the_form_points_at_the_mistake(client, org, supervisor):
    login(client, supervisor)
    response = client.post(reverse("listening:create"), {"name": "Refunds", "query": "acme AND (refund"})
    assert response.status_code == 400
    assert "this ( is never closed (at character 10)" in response.text
    assert "acme AND (refund\n         ^" in response.text
    assert not ListeningQuery.objects.exists()


def test_another_organizations_department_is_not_a_choice(client, org, other_org, supervisor):
    login(client, supervisor)
    foreign = other_org.departments.first()
    response = client.post(reverse("listening:create"), {"name": "x", "query": "acme", "department": foreign.pk})
    assert response.status_code == 400
    assert not ListeningQuery.objects.exists()


def test_duplicate_name_is_a_form_error(client, supervisor, query):
    login(client, supervisor)
    response = client.post(reverse("listening:create"), {"name": "Refunds", "query": "acme"})
    assert response.status_code == 400 and "already a query named" in response.text


def test_validate_as_you_type(client, supervisor):
    login(client, supervisor)
    ok = client.post(reverse("listening:validate"), {"query": "acme refund*"})
    assert ok.status_code == 200 and "The query is valid" in ok.text
    bad = client.post(reverse("listening:validate"), {"query": "acme NEAR/3 (a OR b)"})
    assert "NEAR joins two terms or phrases (at character 6)" in bad.text
    assert "acme NEAR/3 (a OR b)\n     ^" in bad.text
    hostile = client.post(reverse("listening:validate"), {"query": f"acme {SCRIPT} ("})
    assert SCRIPT not in hostile.text and "&lt;script&gt;" in hostile.text
    huge = client.post(reverse("listening:validate"), {"query": "acme " * 100_000})
    assert huge.status_code == 200 and "at most 4,000 characters" in huge.text
    assert client.post(reverse("listening:validate"), {}).text.strip() == ""


def inbound(case, text, minutes_ago=0):
    return Message.objects.create(
        case=case,
        account=case.account,
        direction=Direction.INBOUND,
        text=text,
        created_at=timezone.now() - dt.timedelta(minutes=minutes_ago),
        classification={"language": "en"},
    )


def test_preview_counts_matches_and_shows_escaped_examples(client, org, other_org, supervisor):
    login(client, supervisor)
    account = make_account(org)
    case = make_case(account, text="unrelated first post")
    for i in range(12):
        inbound(case, f"acme refund number {i} {HOSTILE}", minutes_ago=i)
    inbound(case, "acme refund from last month", minutes_ago=60 * 24 * 8)  # older than the window
    inbound(make_case(account, "legal"), "acme refund in a department sam does not work")
    other = make_case(make_account(other_org, handle="@globex@social.example"))
    inbound(other, "acme refund at another organization")
    Message.objects.create(case=case, account=account, direction=Direction.OUTBOUND, text="acme refund (our reply)")

    response = client.post(reverse("listening:preview"), {"query": "acme refund* lang:en"})
    assert response.status_code == 200
    assert "<strong>12</strong> of the last 13 inbound posts" in response.text
    assert response.text.count("<li>") == 10
    assert "acme refund number 0" in response.text  # newest first
    assert SCRIPT not in response.text and "&lt;script&gt;" in response.text
    for absent in ("last month", "does not work", "another organization", "our reply"):
        assert absent not in response.text

    bad = client.post(reverse("listening:preview"), {"query": "acme OR"})
    assert "OR needs a term after it" in bad.text


def test_hostile_names_and_queries_are_escaped(client, org, supervisor, agent):
    do_save_query(org, supervisor, name=HOSTILE, query=f'acme "{SCRIPT}"')
    for user in (supervisor, agent):
        login(client, user)
        for url in [reverse("listening:list"), edit_url(ListeningQuery.objects.get())]:
            response = client.get(url)
            assert response.status_code == 200
            assert SCRIPT not in response.text and "<img src=x" not in response.text


def test_nav_links_to_listening(client, agent):
    login(client, agent)
    page = client.get(reverse("inbox:queue"))
    assert reverse("listening:list").encode() in page.content
