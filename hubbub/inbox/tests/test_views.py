"""The agent inbox pages: access rules, escaping, the actions behind each button, pagination."""

from __future__ import annotations

import datetime as dt
import re

import pytest
from django.contrib.auth.models import User
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.urls import reverse
from django.utils import timezone

from hubbub.accounts.actions import do_add_member, do_create_organization
from hubbub.accounts.models import Role
from hubbub.connectors.models import EventState, InboundEvent, Network, SocialAccount
from hubbub.governance.models import AuditEvent
from hubbub.inbox.models import (
    Case,
    CaseStatus,
    Customer,
    Direction,
    Identity,
    Message,
    Note,
    Priority,
    Visibility,
)
from hubbub.inbox.templatetags.inbox import human_duration, sanitize
from hubbub.playbook.actions import do_publish_default_playbook
from hubbub.publishing.models import OutboundMessage, OutboxState

PASSWORD = "a long enough test password"
SCRIPT = "<script>alert(1)</script>"
IMG = '"><img src=x onerror=alert(1)>'
HOSTILE = f"{SCRIPT} {IMG}"


# --- building data ------------------------------------------------------------------------------


def make_org(name: str, slug: str):
    organization = do_create_organization(name, slug)
    do_publish_default_playbook(organization)
    return organization


def make_account(organization, handle="@brand@social.example", **fields) -> SocialAccount:
    return SocialAccount.objects.create(
        organization=organization,
        network=Network.MASTODON,
        handle=handle,
        base_url="https://social.example",
        **fields,
    )


def make_member(organization, username, role=Role.AGENT, departments=("customer-service",)) -> User:
    user = User.objects.create_user(username, password=PASSWORD)
    do_add_member(organization, user, role, list(departments))
    return user


def make_case(
    account,
    department="customer-service",
    *,
    subject="My parcel never arrived",
    priority=Priority.NORMAL,
    due_minutes: int | None = 30,
    customer_name="Chris Customer",
    text="",
    html="",
    status=CaseStatus.NEW,
) -> Case:
    organization = account.organization
    now = timezone.now()
    customer = Customer.objects.create(organization=organization, display_name=customer_name)
    identity = Identity.objects.create(
        organization=organization,
        customer=customer,
        network=account.network,
        handle=f"@customer{customer.pk}@elsewhere.example",
        followers=1234,
    )
    case = Case.objects.create(
        organization=organization,
        department=organization.departments.get(slug=department),
        account=account,
        customer=customer,
        status=status,
        priority=priority,
        subject=subject,
        intent="complaint",
        intent_confidence=0.82,
        sentiment="negative",
        sentiment_score=-0.6,
        language="en",
        reach=1234,
        playbook_rule="Complaints",
        playbook_version=1,
        first_response_due_at=now + dt.timedelta(minutes=due_minutes) if due_minutes is not None else None,
    )
    Message.objects.create(
        case=case,
        account=account,
        direction=Direction.INBOUND,
        external_id=f"post-{case.pk}",
        identity=identity,
        text=text or subject,
        html=html,
        classification={
            "intent": "complaint",
            "intent_confidence": 0.82,
            "sentiment": "negative",
            "sentiment_score": -0.6,
            "sentiment_confidence": 0.7,
            "language": "en",
            "language_confidence": 0.99,
            "private_data": [],
        },
    )
    return case


@pytest.fixture
def org(db):
    return make_org("Acme", "acme")


@pytest.fixture
def account(org):
    return make_account(org)


@pytest.fixture
def agent(org):
    return make_member(org, "alice")


@pytest.fixture
def supervisor(org):
    return make_member(org, "sam", Role.SUPERVISOR, ["customer-service", "legal"])


@pytest.fixture
def agent_client(client, agent):
    client.force_login(agent)
    return client


def case_url(name: str, case: Case) -> str:
    return reverse(f"inbox:{name}", args=[case.pk])


def audit_actions(org) -> list[str]:
    return list(AuditEvent.objects.filter(organization=org).values_list("action", flat=True))


# --- login and the page frame -------------------------------------------------------------------


def test_pages_require_login(client, account):
    case = make_case(account)
    pages = [reverse("inbox:queue"), reverse("inbox:dead_letters"), reverse("inbox:accounts"), case_url("case", case)]
    for url in pages:
        response = client.get(url)
        assert response.status_code == 302
        assert response["Location"].startswith(reverse("login"))
    response = client.post(case_url("note", case), {"text": "hello"})
    assert response.status_code == 302
    assert response["Location"].startswith(reverse("login"))
    assert not Note.objects.exists()


def test_partials_send_an_expired_session_to_the_login_page(client, account):
    case = make_case(account)
    for url in [reverse("inbox:queue_rows"), case_url("case_thread", case)]:
        response = client.get(url, headers={"HX-Request": "true"})
        assert response.status_code == 401
        assert response["HX-Redirect"] == reverse("login")


def test_login_and_logout(client, agent):
    page = client.get(reverse("login"))
    assert page.status_code == 200
    assert b'name="password"' in page.content
    response = client.post(reverse("login"), {"username": "alice", "password": PASSWORD})
    assert response.status_code == 302
    assert response["Location"] == reverse("inbox:queue")
    assert client.get(reverse("inbox:queue")).status_code == 200
    assert client.get(reverse("logout")).status_code == 405  # logging out is a POST form
    client.post(reverse("logout"))
    assert client.get(reverse("inbox:queue")).status_code == 302


def test_user_without_organization_gets_a_clear_page(client, db):
    client.force_login(User.objects.create_user("nobody", password=PASSWORD))
    response = client.get(reverse("inbox:queue"))
    assert response.status_code == 403
    assert b"No organization" in response.content


def test_csp_header_and_no_inline_script_or_style(agent_client, supervisor, account):
    case = make_case(account)
    pages = [reverse("inbox:queue"), case_url("case", case), reverse("inbox:accounts")]
    for url in pages:
        response = agent_client.get(url)
        assert response.status_code == 200
        csp = response["Content-Security-Policy"]
        assert "script-src 'self'" in csp
        assert "style-src 'self'" in csp
        html = response.content.decode()
        assert not re.search(r"<script(?![^>]*\bsrc=)", html), url
        assert "<style" not in html
        assert " style=" not in html
        assert "hx-on" not in html
        assert '"includeIndicatorStyles": false' in html
    assert "Content-Security-Policy" in agent_client.get(reverse("login"))


def test_header_warns_when_an_account_is_unhealthy(agent_client, org, account):
    assert b"unhealthy" not in agent_client.get(reverse("inbox:queue")).content
    make_account(org, handle="@broken@social.example", healthy=False, last_error="token revoked")
    page = agent_client.get(reverse("inbox:queue")).content.decode()
    assert 'class="alert-link"' in page
    assert "1 account unhealthy" in page


# --- the queue ----------------------------------------------------------------------------------


def test_queue_orders_by_priority_then_due_time(agent_client, account):
    later_normal = make_case(account, priority=Priority.NORMAL, due_minutes=50)
    no_sla = make_case(account, priority=Priority.NORMAL, due_minutes=None)
    low = make_case(account, priority=Priority.LOW, due_minutes=1)
    urgent_later = make_case(account, priority=Priority.URGENT, due_minutes=60)
    soon_normal = make_case(account, priority=Priority.NORMAL, due_minutes=10)
    urgent_soon = make_case(account, priority=Priority.URGENT, due_minutes=5)
    make_case(account, status=CaseStatus.RESOLVED)
    make_case(account, status=CaseStatus.PENDING_CUSTOMER)

    response = agent_client.get(reverse("inbox:queue"))

    assert [c.pk for c in response.context["cases"]] == [
        urgent_soon.pk,
        urgent_later.pk,
        soon_normal.pk,
        later_normal.pk,
        no_sla.pk,
        low.pk,
    ]
    assert response.context["next_url"] == ""


def test_queue_shows_the_columns_an_agent_needs(agent_client, agent, account):
    case = make_case(account, subject="Where is my refund?", customer_name="Dana Doe", due_minutes=-20)
    case.assignee = agent
    case.save()
    html = agent_client.get(reverse("inbox:queue")).content.decode()
    assert "Where is my refund?" in html
    assert "Dana Doe" in html
    assert f"@customer{case.customer_id}@elsewhere.example" in html
    assert "@brand@social.example" in html
    assert "complaint" in html and "negative" in html
    assert "sla-overdue" in html and "overdue by 20 min" in html
    assert "alice" in html
    assert reverse("inbox:case", args=[case.pk]) in html


def test_queue_never_loads_messages(agent_client, account):
    for _ in range(3):
        make_case(account)
    with CaptureQueriesContext(connection) as queries:
        agent_client.get(reverse("inbox:queue"))
        agent_client.get(reverse("inbox:queue_rows"))
    assert not [q["sql"] for q in queries.captured_queries if "inbox_message" in q["sql"]]


def test_queue_partial_refreshes_rows(agent_client, account):
    response = agent_client.get(reverse("inbox:queue"))
    assert 'hx-trigger="every 3s"' in response.content.decode()
    assert reverse("inbox:queue_rows") in response.content.decode()

    make_case(account, subject="A brand new case")
    partial = agent_client.get(reverse("inbox:queue_rows"), headers={"HX-Request": "true"})
    assert partial.status_code == 200
    body = partial.content.decode()
    assert "A brand new case" in body
    assert "<html" not in body
    assert 'id="queue-table"' in body and 'hx-trigger="every 3s"' in body


def test_queue_department_tabs(client, org, account):
    both = make_member(org, "bob", departments=["customer-service", "marketing"])
    client.force_login(both)
    service = make_case(account, "customer-service")
    marketing = make_case(account, "marketing")
    make_case(account, "legal")

    everything = client.get(reverse("inbox:queue"))
    assert {d.slug for d in everything.context["departments"]} == {"customer-service", "marketing"}
    assert {c.pk for c in everything.context["cases"]} == {service.pk, marketing.pk}

    only_marketing = client.get(reverse("inbox:queue"), {"dept": "marketing"})
    assert [c.pk for c in only_marketing.context["cases"]] == [marketing.pk]
    assert client.get(reverse("inbox:queue_rows"), {"dept": "marketing"}).context["cases"][0].pk == marketing.pk
    assert client.get(reverse("inbox:queue"), {"dept": "legal"}).status_code == 404


def test_admin_sees_every_department(client, org, account):
    admin = make_member(org, "ada", Role.ADMIN, departments=[])
    client.force_login(admin)
    legal = make_case(account, "legal")
    hr = make_case(account, "hr")
    response = client.get(reverse("inbox:queue"))
    assert {c.pk for c in response.context["cases"]} == {legal.pk, hr.pk}
    assert client.get(case_url("case", legal)).status_code == 200


def test_keyset_pagination_walks_every_case_once(agent_client, account):
    priorities = [Priority.URGENT, Priority.HIGH, Priority.NORMAL, Priority.LOW]
    created = []
    for i in range(57):
        # Ties on due time and missing due times on page boundaries are the hard part.
        due = None if i % 7 == 0 else (i % 5) * 10
        created.append(make_case(account, priority=priorities[i % 4], due_minutes=due))
    expected = list(
        Case.objects.filter(pk__in=[c.pk for c in created])
        .order_by("priority", "first_response_due_at", "id")
        .values_list("pk", "priority", "first_response_due_at")
    )
    expected.sort(key=lambda row: (row[1], row[2] is None, row[2] or timezone.now(), row[0]))

    seen: list[int] = []
    url = reverse("inbox:queue")
    pages = 0
    while url:
        response = agent_client.get(url)
        assert response.status_code == 200
        assert len(response.context["cases"]) <= 50
        seen += [c.pk for c in response.context["cases"]]
        url = response.context["next_url"]
        pages += 1
        assert pages < 5
    assert pages == 2
    assert len(seen) == len(set(seen)) == 57
    assert seen == [row[0] for row in expected]

    # The partial of page two refreshes page two.
    second = agent_client.get(reverse("inbox:queue"), {"after": response.wsgi_request.GET["after"]})
    rows = agent_client.get(second.context["rows_url"])
    assert [c.pk for c in rows.context["cases"]] == seen[50:]


def test_a_malformed_cursor_shows_the_first_page(agent_client, account):
    case = make_case(account)
    response = agent_client.get(reverse("inbox:queue"), {"after": "not.a.cursor"})
    assert [c.pk for c in response.context["cases"]] == [case.pk]


def test_organization_switch_is_remembered(client, org, account):
    other = make_org("Globex", "globex")
    other_account = make_account(other, handle="@globex@social.example")
    user = make_member(org, "multi")
    do_add_member(other, user, Role.AGENT, ["customer-service"])
    acme_case = make_case(account)
    globex_case = make_case(other_account)
    client.force_login(user)

    assert [c.pk for c in client.get(reverse("inbox:queue")).context["cases"]] == [acme_case.pk]
    switched = client.get(reverse("inbox:queue"), {"org": "globex"})
    assert [c.pk for c in switched.context["cases"]] == [globex_case.pk]
    assert [c.pk for c in client.get(reverse("inbox:queue")).context["cases"]] == [globex_case.pk]
    assert client.get(case_url("case", acme_case)).status_code == 404
    assert client.get(reverse("inbox:queue"), {"org": "initech"}).status_code == 404


# --- who may see what ---------------------------------------------------------------------------


def test_agent_cannot_see_or_touch_a_legal_case(agent_client, org, agent, supervisor, account):
    legal = make_case(account, "legal", subject="We will sue you")

    queue = agent_client.get(reverse("inbox:queue"))
    assert legal.pk not in [c.pk for c in queue.context["cases"]]
    assert b"We will sue you" not in queue.content
    assert b"We will sue you" not in agent_client.get(reverse("inbox:queue_rows")).content
    assert agent_client.get(case_url("case", legal)).status_code == 404
    assert agent_client.get(case_url("case_thread", legal)).status_code == 404

    service = org.departments.get(slug="customer-service")
    sam = supervisor.memberships.get()
    posts = {
        "claim": {},
        "reply": {"text": "hello", "visibility": "public"},
        "note": {"text": "psst"},
        "resolve": {},
        "transfer": {"department": service.pk},
        "assign": {"membership": sam.pk},
    }
    for name, data in posts.items():
        assert agent_client.post(case_url(name, legal), data).status_code == 404, name
    outbound = OutboundMessage.objects.create(
        organization=org, case=legal, account=account, text="x", state=OutboxState.FAILED
    )
    retry = reverse("inbox:retry_reply", args=[legal.pk, outbound.pk])
    assert agent_client.post(retry).status_code == 404

    legal.refresh_from_db()
    assert legal.assignee is None and legal.status == CaseStatus.NEW and legal.department.slug == "legal"
    assert not Note.objects.exists()
    assert OutboundMessage.objects.filter(case=legal).count() == 1
    assert not [a for a in audit_actions(org) if a.startswith(("case.", "reply."))]


def test_nothing_of_another_organization_is_reachable(client, org, account, supervisor):
    other = make_org("Globex", "globex")
    other_account = make_account(other, handle="@globex@social.example")
    their_case = make_case(other_account, subject="Globex secret")
    their_member = make_member(other, "gina").memberships.get()
    event = InboundEvent.objects.create(
        account=other_account, external_id="e1", payload={}, state=EventState.FAILED, error="boom"
    )
    mine = make_case(account)
    client.force_login(supervisor)

    assert b"Globex secret" not in client.get(reverse("inbox:queue")).content
    assert client.get(case_url("case", their_case)).status_code == 404
    assert client.post(case_url("claim", their_case)).status_code == 404
    assert client.post(case_url("reply", their_case), {"text": "hi"}).status_code == 404
    assert b"boom" not in client.get(reverse("inbox:dead_letters")).content
    assert client.post(reverse("inbox:retry_event", args=[event.pk])).status_code == 404
    assert b"@globex@social.example" not in client.get(reverse("inbox:accounts")).content
    # Nor can their departments or members be used on our cases.
    their_legal = other.departments.get(slug="legal")
    assert client.post(case_url("transfer", mine), {"department": their_legal.pk}).status_code == 404
    assert client.post(case_url("assign", mine), {"membership": their_member.pk}).status_code == 404
    assert client.post(case_url("assign", mine), {"membership": "abc"}).status_code == 404
    event.refresh_from_db()
    mine.refresh_from_db()
    assert event.state == EventState.FAILED
    assert mine.department.slug == "customer-service" and mine.assignee is None


# --- escaping -----------------------------------------------------------------------------------


def test_hostile_text_is_escaped_on_every_page(client, org, supervisor):
    account = make_account(org, handle=f"@x{IMG}", healthy=False, last_error=HOSTILE)
    case = make_case(
        account,
        subject=HOSTILE,
        customer_name=HOSTILE,
        text=f"hello {HOSTILE}",
        html=f'<p>hi</p>{SCRIPT}<img src=x onerror=alert(1)><a href="javascript:alert(1)">x</a>',
    )
    Message.objects.create(
        case=case,
        account=account,
        direction=Direction.INBOUND,
        text=f"plain {HOSTILE}",
        url="javascript:alert(1)",
        classification={"intent": IMG, "sentiment": IMG, "language": IMG, "private_data": [SCRIPT]},
    )
    identity = case.customer.identities.get()
    identity.display_name = HOSTILE
    identity.save()
    Note.objects.create(case=case, author=supervisor, text=HOSTILE)
    OutboundMessage.objects.create(
        organization=org, case=case, account=account, text=HOSTILE, state=OutboxState.FAILED, last_error=HOSTILE
    )
    InboundEvent.objects.create(
        account=account, external_id=IMG, payload={"content": HOSTILE}, state=EventState.FAILED, error=HOSTILE
    )
    client.force_login(supervisor)

    urls = [
        reverse("inbox:queue"),
        reverse("inbox:queue_rows"),
        case_url("case", case),
        case_url("case_thread", case),
        reverse("inbox:accounts"),
        reverse("inbox:dead_letters"),
    ]
    for url in urls:
        response = client.get(url)
        assert response.status_code == 200, url
        html = response.content.decode()
        assert SCRIPT not in html, url
        assert "<img" not in html, url
        assert "javascript:" not in html, url
        assert "&lt;script&gt;alert(1)&lt;/script&gt;" in html, url
    case_page = client.get(case_url("case", case)).content.decode()
    assert "&lt;img src=x onerror=alert(1)&gt;" in case_page
    assert "<p>hi</p>" in case_page  # the sanitised HTML body is shown as HTML


def test_sanitize_keeps_a_small_allowlist():
    cleaned = str(
        sanitize(
            '<p onclick="x()">Hi <a href="https://example.com/a" target="_top">link</a>'
            '<a href="javascript:alert(1)">bad</a><iframe src="https://evil.example"></iframe>'
            '<span style="color:red">text</span><script>alert(1)</script></p>'
        )
    )
    assert cleaned.startswith("<p>Hi ")
    assert '<a href="https://example.com/a" rel="nofollow noopener noreferrer">link</a>' in cleaned
    for forbidden in ("onclick", "javascript:", "<iframe", "style=", "<script", "alert(1)", "target="):
        assert forbidden not in cleaned
    assert sanitize("") == ""


def test_human_duration():
    assert human_duration(dt.timedelta(seconds=30)) == "under a minute"
    assert human_duration(dt.timedelta(minutes=12, seconds=59)) == "12 min"
    assert human_duration(dt.timedelta(hours=3, minutes=5)) == "3 h 5 min"
    assert human_duration(dt.timedelta(hours=2)) == "2 h"
    assert human_duration(-dt.timedelta(days=2, hours=4, minutes=1)) == "2 d 4 h"


# --- the case page and its actions --------------------------------------------------------------


def test_case_page_shows_thread_customer_classification_and_sla(agent_client, agent, org, account):
    case = make_case(account, subject="Broken blender", due_minutes=-5)
    Message.objects.create(
        case=case,
        account=account,
        direction=Direction.OUTBOUND,
        visibility=Visibility.PRIVATE,
        external_id="dm-1",
        author_user=agent,
        text="Sorry! Can you DM us your order number?",
    )
    Note.objects.create(case=case, author=agent, text="Customer called before, see CRM")
    OutboundMessage.objects.create(
        organization=org,
        case=case,
        account=account,
        text="We're on it",
        state=OutboxState.FAILED,
        last_error="the post was deleted",
        created_by=agent,
    )
    html = agent_client.get(case_url("case", case)).content.decode()
    for expected in [
        "Broken blender",
        "Customer",
        "Brand",
        "Private",
        "Public",
        "Internal note",
        "Customer called before, see CRM",
        "We&#x27;re on it",
        "Failed",
        "the post was deleted",
        reverse("inbox:retry_reply", args=[case.pk, OutboundMessage.objects.get().pk]),
        f"@customer{case.customer_id}@elsewhere.example",
        "1234",
        "82%",  # intent confidence
        "99%",  # language confidence
        "Complaints",
        "v1",
        "overdue by 5 min",
        "not yet",
        "Customer service",
        'hx-trigger="every 5s"',
        reverse("inbox:case_thread", args=[case.pk]),
    ]:
        assert expected in html, expected


def test_thread_partial_refreshes_the_reply_state_and_the_case_facts(agent_client, org, account):
    case = make_case(account)
    outbound = OutboundMessage.objects.create(
        organization=org, case=case, account=account, text="On its way", state=OutboxState.APPROVED
    )
    first = agent_client.get(case_url("case_thread", case), headers={"HX-Request": "true"}).content.decode()
    assert "On its way" in first and "Approved" in first
    assert 'id="case-facts"' in first and 'hx-swap-oob="true"' in first
    assert "<html" not in first and "Take this case" not in first

    outbound.state = OutboxState.SENT
    outbound.save()
    Message.objects.create(
        case=case, account=account, direction=Direction.OUTBOUND, external_id="r1", text="On its way"
    )
    second = agent_client.get(case_url("case_thread", case)).content.decode()
    assert "Approved" not in second
    assert "On its way" in second


@pytest.mark.parametrize(("visibility", "private"), [("public", False), ("private", True)])
def test_reply_queues_an_approved_outbound_message(agent_client, agent, org, account, visibility, private):
    case = make_case(account)
    response = agent_client.post(case_url("reply", case), {"text": "  We're sorry!  ", "visibility": visibility})
    assert response.status_code == 302
    assert response["Location"] == case_url("case", case)
    outbound = OutboundMessage.objects.get(case=case)
    assert outbound.state == OutboxState.APPROVED
    assert outbound.visibility == (Visibility.PRIVATE if private else Visibility.PUBLIC)
    assert outbound.text == "We're sorry!"
    assert outbound.created_by == agent
    assert "reply.queued" in audit_actions(org)
    assert "Approved" in agent_client.get(case_url("case", case)).content.decode()


def test_an_empty_reply_is_refused_with_a_message(agent_client, account):
    case = make_case(account)
    response = agent_client.post(case_url("reply", case), {"text": "   "}, follow=True)
    assert "a reply needs some text" in response.content.decode()
    assert not OutboundMessage.objects.exists()


def test_note_is_added_and_marked_internal(agent_client, agent, org, account):
    case = make_case(account)
    agent_client.post(case_url("note", case), {"text": "VIP, handle with care"})
    note = Note.objects.get(case=case)
    assert note.author == agent and note.text == "VIP, handle with care"
    assert "case.note_added" in audit_actions(org)
    page = agent_client.get(case_url("case", case)).content.decode()
    assert "Internal note" in page and "VIP, handle with care" in page

    response = agent_client.post(case_url("note", case), {"text": ""}, follow=True)
    assert "a note needs some text" in response.content.decode()


def test_claim(agent_client, agent, org, account):
    case = make_case(account)
    agent_client.post(case_url("claim", case))
    case.refresh_from_db()
    assert case.assignee == agent and case.status == CaseStatus.OPEN
    assert "case.claimed" in audit_actions(org)


def test_claiming_a_case_someone_else_holds_shows_an_error(agent_client, org, account):
    case = make_case(account)
    case.assignee = make_member(org, "carol")
    case.save()
    response = agent_client.post(case_url("claim", case), follow=True)
    assert "already assigned to carol" in response.content.decode()
    case.refresh_from_db()
    assert case.assignee.username == "carol"


def test_assign_to_a_member_of_the_department_and_unassign(agent_client, org, account):
    case = make_case(account)
    colleague = make_member(org, "dave").memberships.get()
    outsider = make_member(org, "erin", departments=["legal"]).memberships.get()

    page = agent_client.get(case_url("case", case)).content.decode()
    assert "dave" in page and "erin" not in page  # only members of the department are offered

    agent_client.post(case_url("assign", case), {"membership": colleague.pk})
    case.refresh_from_db()
    assert case.assignee == colleague.user
    assert "case.assigned" in audit_actions(org)

    response = agent_client.post(case_url("assign", case), {"membership": outsider.pk}, follow=True)
    assert "does not work the Customer service queue" in response.content.decode()
    case.refresh_from_db()
    assert case.assignee == colleague.user

    agent_client.post(case_url("assign", case), {"membership": ""})
    case.refresh_from_db()
    assert case.assignee is None


def test_transfer_to_a_department_the_agent_works_stays_on_the_case(client, org, account):
    both = make_member(org, "bob", departments=["customer-service", "sales"])
    client.force_login(both)
    case = make_case(account)
    sales = org.departments.get(slug="sales")
    response = client.post(case_url("transfer", case), {"department": sales.pk})
    assert response["Location"] == case_url("case", case)
    case.refresh_from_db()
    assert case.department == sales


def test_transfer_away_from_the_agent_returns_to_the_queue(agent_client, org, account):
    case = make_case(account)
    case.assignee = User.objects.get(username="alice")
    case.save()
    legal = org.departments.get(slug="legal")
    response = agent_client.post(case_url("transfer", case), {"department": legal.pk})
    assert response.status_code == 302
    assert response["Location"] == reverse("inbox:queue")
    case.refresh_from_db()
    assert case.department == legal and case.assignee is None
    assert "case.transferred" in audit_actions(org)
    assert agent_client.get(case_url("case", case)).status_code == 404


def test_resolve(agent_client, org, account):
    case = make_case(account)
    response = agent_client.post(case_url("resolve", case))
    assert response["Location"] == reverse("inbox:queue")
    case.refresh_from_db()
    assert case.status == CaseStatus.RESOLVED and case.resolved_at is not None
    assert "case.resolved" in audit_actions(org)
    assert case.pk not in [c.pk for c in agent_client.get(reverse("inbox:queue")).context["cases"]]
    again = agent_client.post(case_url("resolve", case), follow=True)
    assert "already resolved" in again.content.decode()


def test_actions_are_post_only(agent_client, account):
    case = make_case(account)
    for name in ["claim", "reply", "note", "transfer", "resolve", "assign"]:
        assert agent_client.get(case_url(name, case)).status_code == 405, name


def test_retry_a_failed_reply(agent_client, org, account):
    case = make_case(account)
    outbound = OutboundMessage.objects.create(
        organization=org, case=case, account=account, text="hi", state=OutboxState.FAILED, attempts=8
    )
    agent_client.post(reverse("inbox:retry_reply", args=[case.pk, outbound.pk]))
    outbound.refresh_from_db()
    assert outbound.state == OutboxState.APPROVED and outbound.attempts == 0
    assert "reply.retried" in audit_actions(org)

    response = agent_client.post(reverse("inbox:retry_reply", args=[case.pk, outbound.pk]), follow=True)
    assert "Only a failed reply can be retried" in response.content.decode()


# --- dead letters and accounts ------------------------------------------------------------------


def test_dead_letters_are_for_supervisors(client, agent_client, org, account, supervisor):
    older = InboundEvent.objects.create(
        account=account, external_id="old", payload={"n": 1}, state=EventState.FAILED, error="bad date"
    )
    newer = InboundEvent.objects.create(
        account=account,
        external_id="new",
        payload={"text": "x" * 20000},
        state=EventState.FAILED,
        error="KeyError: 'id'",
        attempts=3,
    )
    InboundEvent.objects.create(account=account, external_id="fine", payload={}, state=EventState.DONE)

    assert agent_client.get(reverse("inbox:dead_letters")).status_code == 404
    assert agent_client.post(reverse("inbox:retry_event", args=[older.pk])).status_code == 404
    assert b"Dead letters" not in agent_client.get(reverse("inbox:queue")).content

    client.force_login(supervisor)
    response = client.get(reverse("inbox:dead_letters"))
    assert response.status_code == 200
    assert [event.pk for event, _ in response.context["entries"]] == [newer.pk, older.pk]
    html = response.content.decode()
    assert "KeyError: &#x27;id&#x27;" in html and "bad date" in html
    assert "<details>" in html and "(truncated)" in html
    assert len(response.context["entries"][0][1].encode()) < 10 * 1024 + 100

    client.post(reverse("inbox:retry_event", args=[older.pk]))
    older.refresh_from_db()
    assert older.state == EventState.PENDING
    assert "event.retried" in audit_actions(org)
    assert [e.pk for e, _ in client.get(reverse("inbox:dead_letters")).context["entries"]] == [newer.pk]

    again = client.post(reverse("inbox:retry_event", args=[older.pk]), follow=True)
    assert "only failed events can be retried" in again.content.decode()


def test_accounts_page(agent_client, org, account):
    now = timezone.now()
    account.last_success_at = now
    account.save()
    make_account(org, handle="@down@social.example", healthy=False, last_error="401 token revoked")
    response = agent_client.get(reverse("inbox:accounts"))
    assert response.status_code == 200
    html = response.content.decode()
    assert "@brand@social.example" in html and "@down@social.example" in html
    assert "badge healthy" in html and "badge unhealthy" in html
    assert "401 token revoked" in html


def test_case_page_counts_reposts_and_copies_folded_onto_a_post(agent_client, account):
    case = make_case(account, subject="Your app lost my photos")
    message = case.messages.get()
    event = InboundEvent.objects.create(account=account, external_id="post-x", payload={"text": "x"}, engagement=3)
    Message.objects.filter(pk=message.pk).update(event=event)
    page = agent_client.get(case_url("case", case)).content.decode()
    assert "+3 reposts/copies" in page
    InboundEvent.objects.filter(pk=event.pk).update(engagement=0)
    assert "reposts/copies" not in agent_client.get(case_url("case", case)).content.decode()


def test_next_case_from_the_queue_hands_the_most_urgent_case(agent_client, agent, account):
    later = make_case(account, subject="later", priority=Priority.LOW)
    urgent = make_case(account, subject="urgent", priority=Priority.URGENT)
    page = agent_client.get(reverse("inbox:queue")).content.decode()
    assert reverse("routing:next_case") in page
    # Agents start away: the routing page says so and has the switch.
    assert agent_client.post(reverse("routing:next_case")).url == reverse("routing:home")
    agent_client.post(reverse("routing:availability"), {"availability": "online"})
    response = agent_client.post(reverse("routing:next_case"))
    assert response.status_code == 302 and response.url == case_url("case", urgent)
    urgent.refresh_from_db()
    later.refresh_from_db()
    assert urgent.assignee == agent and later.assignee is None


def test_case_page_explains_the_priority_and_supervisors_override_it(client, agent_client, supervisor, org, account):
    case = make_case(account, priority=Priority.NORMAL)
    Case.objects.filter(pk=case.pk).update(severity=4, reach=250_000)
    page = agent_client.get(case_url("case", case)).content.decode()
    assert "severity 4 of 4: +30" in page and "250,000 followers" in page
    assert case_url("priority", case) not in page  # agents see why, not the override
    assert agent_client.post(case_url("priority", case), {"priority": "1"}).status_code == 404

    client.force_login(supervisor)
    assert client.post(case_url("priority", case), {"priority": "urgent!"}).status_code == 302
    case.refresh_from_db()
    assert case.priority == Priority.NORMAL and not case.priority_overridden
    client.post(case_url("priority", case), {"priority": "1"})
    case.refresh_from_db()
    assert case.priority == Priority.URGENT and case.priority_overridden
    assert "case.priority_set" in audit_actions(org)
    assert "set by a supervisor" in client.get(case_url("case", case)).content.decode()


def test_supervisors_find_approvals_in_the_menu_and_agents_do_not(client, agent_client, supervisor, account):
    approvals = reverse("publishing:approvals")
    assert approvals not in agent_client.get(reverse("inbox:queue")).content.decode()
    client.force_login(supervisor)
    assert f'href="{approvals}"' in client.get(reverse("inbox:queue")).content.decode()
