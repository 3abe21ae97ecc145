"""The Playbooks pages: who may see and edit, validate-as-you-type, dry run, publish, rollback, escaping."""

from __future__ import annotations

import pytest
from django.urls import reverse

from hubbub.accounts.models import Role
from hubbub.governance.models import AuditEvent
from hubbub.inbox.models import Case
from hubbub.inbox.tests.test_views import SCRIPT, make_account, make_case, make_member, make_org
from hubbub.playbook.actions import active_playbook, do_publish_playbook
from hubbub.playbook.models import Playbook

SALES = "rules: [{name: Contracts, when: {terms: [contract]}, then: {department: legal, tags: [contract]}}]"


@pytest.fixture
def org(db):
    return make_org("Acme", "acme")


@pytest.fixture
def supervisor(org):
    return make_member(org, "sam", Role.SUPERVISOR, ["sales"])


@pytest.fixture
def agent(org):
    return make_member(org, "alice", Role.AGENT, ["customer-service"])


def login(client, user):
    client.force_login(user)
    return client


def test_pages_need_login(client, org):
    response = client.get(reverse("playbook:list"))
    assert response.status_code == 302 and response["Location"].startswith(reverse("login"))
    assert client.post(reverse("playbook:intake_validate"), {"source": "x"}).status_code == 401


def test_an_agent_sees_the_intake_and_their_departments_but_edits_nothing(client, org, agent):
    login(client, agent)
    page = client.get(reverse("playbook:list"))
    assert page.status_code == 200
    assert b"Intake playbook" in page.content and b"Customer service playbook" in page.content
    assert b"Legal playbook" not in page.content
    intake = client.get(reverse("playbook:intake_detail"))
    assert intake.status_code == 200 and b"Legal threats go to legal" in intake.content
    assert b'name="source"' not in intake.content
    assert client.get(reverse("playbook:detail", args=["legal"])).status_code == 404
    assert client.post(reverse("playbook:intake_publish"), {"source": "rules: []"}).status_code == 404
    assert client.post(reverse("playbook:intake_dry_run"), {"source": "rules: []"}).status_code == 404
    first = Playbook.objects.get(organization=org)
    assert client.post(reverse("playbook:rollback", args=[first.pk])).status_code == 404


def test_another_organizations_playbooks_are_404(client, org, supervisor):
    other = make_org("Globex", "globex")
    theirs = Playbook.objects.get(organization=other)
    login(client, supervisor)
    assert client.get(reverse("playbook:version", args=[theirs.pk])).status_code == 404
    assert client.post(reverse("playbook:rollback", args=[theirs.pk])).status_code == 404
    assert client.get(reverse("playbook:detail", args=["no-such-dept"])).status_code == 404


def test_validation_as_you_type_names_the_mistake_and_shows_the_rules(client, org, supervisor):
    login(client, supervisor)
    url = reverse("playbook:validate", args=["sales"])
    bad = client.post(url, {"source": "rules: [{when: {intent: furious}, then: {priority: high}}]"})
    assert b"rules[0].when.intent" in bad.content and b"furious" in bad.content
    broken = client.post(url, {"source": "rules: [unclosed"})
    assert b"line 1, column" in broken.content
    good = client.post(url, {"source": SALES})
    assert b"The playbook is valid" in good.content and b"Contracts" in good.content


def test_customer_and_author_text_is_escaped(client, org, supervisor):
    login(client, supervisor)
    source = f"templates: {{x: '{SCRIPT}'}}\nrules: [{{name: '{SCRIPT}', then: {{templates: [x]}}}}]"
    response = client.post(reverse("playbook:validate", args=["sales"]), {"source": source})
    assert SCRIPT.encode() not in response.content and b"&lt;script&gt;" in response.content
    account = make_account(org)
    case = make_case(account, "sales", subject=f"contract {SCRIPT}", text=f"contract {SCRIPT}")
    Case.objects.filter(pk=case.pk).update(intent="sales_lead")
    dry = client.post(reverse("playbook:dry_run", args=["sales"]), {"source": SALES, "days": "7"})
    assert dry.status_code == 200 and b"&lt;script&gt;" in dry.content and SCRIPT.encode() not in dry.content


def test_a_dry_run_shows_moves_with_examples_only_from_visible_departments(client, org, supervisor):
    account = make_account(org)
    mine = make_case(account, "sales", subject="a contract for us", text="a contract for us")
    theirs = make_case(account, "marketing", subject="contract talk", text="contract talk")
    Case.objects.filter(pk__in=[mine.pk, theirs.pk]).update(intent="sales_lead")
    login(client, supervisor)
    for days in ["7", "junk", "-5", "99999"]:
        response = client.post(reverse("playbook:dry_run", args=["sales"]), {"source": SALES, "days": days})
        assert response.status_code == 200
        text = response.content.decode()
        assert "2 opening posts replayed" in text and '<td>sales</td><td>legal</td><td class="num">2</td>' in text
        assert f"Case {mine.pk}<" in text and f"Case {theirs.pk}<" not in text
    bad = client.post(reverse("playbook:dry_run", args=["sales"]), {"source": "rules: [{then: {department: x}}]"})
    assert b"no department" in bad.content


def test_publish_and_roll_back_from_the_page(client, org, supervisor):
    login(client, supervisor)
    response = client.post(reverse("playbook:publish", args=["sales"]), {"source": SALES})
    assert response.status_code == 302
    published = Playbook.objects.get(organization=org, department__slug="sales")
    assert active_playbook(org.pk)[0] == published.version
    refused = client.post(
        reverse("playbook:publish", args=["legal"]),
        {"source": "rules: [{then: {department: sales}}]"},
    )
    assert refused.status_code == 404  # the supervisor doesn't work legal
    do_publish_playbook(org, "rules: []", department=org.departments.get(slug="sales"))
    response = client.post(reverse("playbook:rollback", args=[published.pk]))
    assert response.status_code == 302
    running = Playbook.objects.get(organization=org, department__slug="sales", is_active=True)
    assert running.restored_from == published.version and running.source == SALES
    assert AuditEvent.objects.filter(action="playbook.rolled_back", actor=supervisor).exists()
    page = client.get(reverse("playbook:detail", args=["sales"]))
    assert f"restores v{published.version}".encode() in page.content


def test_a_bad_publish_keeps_the_running_version_and_shows_where(client, org, supervisor):
    login(client, supervisor)
    running = active_playbook(org.pk)[0]
    response = client.post(reverse("playbook:intake_publish"), {"source": "default: {priority: asap}"})
    assert response.status_code == 400 and b"default.priority" in response.content
    huge = client.post(reverse("playbook:intake_publish"), {"source": "#" * 300_000})
    assert huge.status_code == 400 and b"larger than 200 KB" in huge.content
    assert active_playbook(org.pk)[0] == running


def test_a_department_named_intake_does_not_shadow_the_intake_playbook(client, org):
    org.departments.create(slug="intake", name="Intake desk")
    admin = make_member(org, "ada", Role.ADMIN, [])
    login(client, admin)
    response = client.post(reverse("playbook:publish", args=["intake"]), {"source": "rules: []"})
    assert response.status_code == 302 and response["Location"] == reverse("playbook:detail", args=["intake"])
    assert Playbook.objects.filter(organization=org, department__slug="intake", is_active=True).exists()
    assert b"Legal threats go to legal" in client.get(reverse("playbook:intake_detail")).content
    assert b"Intake desk playbook" in client.get(reverse("playbook:detail", args=["intake"])).content
