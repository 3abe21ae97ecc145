"""The structured playbook form: who may use it, and that it writes its draft through the same
validate → save draft → dry run → publish path as the YAML editor."""

from __future__ import annotations

import pytest
import yaml
from django.urls import reverse

from hubbub.accounts.models import Role
from hubbub.governance.models import AuditEvent
from hubbub.inbox.models import Case
from hubbub.inbox.tests.test_views import SCRIPT, make_account, make_case, make_member, make_org
from hubbub.lib.playbook_form import ACTION_FIELDS, CONDITION_FIELDS, field_name
from hubbub.listening.models import ListeningQuery
from hubbub.playbook.actions import active_playbook, do_publish_playbook
from hubbub.playbook.models import Playbook, PlaybookDraft

SALES = """# Sales: big deals first.
templates:
  thanks: "Thanks {customer_name}!"
rules:
  - name: Big deals
    when: {terms: [enterprise]}
    then: {priority: high, tags: [deal]}  # the deal desk watches this tag
"""


@pytest.fixture
def org(db):
    org = make_org("Acme", "acme")
    do_publish_playbook(org, SALES, department=org.departments.get(slug="sales"))
    return org


@pytest.fixture
def supervisor(client, org):
    user = make_member(org, "sam", Role.SUPERVISOR, ["sales"])
    client.force_login(user)
    return user


def form_post(rules: list[dict], base: str = SALES, default: dict | None = None, **extra) -> dict:
    """What the page posts: every field of every rule, as the browser sends them."""
    data: dict = {"base": base, **extra}

    def fill(rule_index, section, specs, values):
        for spec in specs:
            value = values.get(spec.key)
            if value is not None:
                data[field_name(rule_index, section, spec.key)] = value

    for index, rule in enumerate(rules):
        data[f"rules-{index}-origin"] = rule.get("origin", "")
        data[f"rules-{index}-name"] = rule.get("name", "")
        fill(index, "when", CONDITION_FIELDS, rule.get("when", {}))
        fill(index, "then", ACTION_FIELDS, rule.get("then", {}))
    fill(None, "then", ACTION_FIELDS, default or {})
    return data


BIG_DEALS = {
    "origin": "0",
    "name": "Big deals",
    "when": {"terms": "enterprise"},
    "then": {"priority": "high", "tags": "deal"},
}


def test_the_form_shows_the_playbooks_rules_with_the_organizations_choices(client, org, supervisor):
    ListeningQuery.objects.create(organization=org, name="Brand mentions", query="acme")
    make_account(org)
    page = client.get(reverse("playbook:detail", args=["sales"]) + "?view=form")
    text = page.content.decode()
    assert page.status_code == 200 and 'name="base"' in text
    assert 'name="rules-0-name" id="rules-0-name" value="Big deals"' in text
    assert '<textarea name="rules-0-when-terms" id="rules-0-when-terms" rows="3">enterprise</textarea>' in text
    assert '<option value="high" selected>high</option>' in text
    # Departments, intents, listening queries, brand accounts and the playbook's own templates.
    for option in ['value="legal"', 'value="legal_threat"', 'value="Brand mentions"', 'value="thanks"']:
        assert option in text, option
    assert 'value="mastodon:' in text


def test_saving_the_form_writes_a_draft_that_keeps_comments_and_runs_nothing_until_published(client, org, supervisor):
    running = active_playbook(org.pk)[0]
    new = {
        "name": "Legal words",
        "when": {"terms": "lawyer\nsue", "intent": ["legal_threat"]},
        "then": {"department": "legal", "notify": ["marketing"]},
    }
    response = client.post(reverse("playbook:draft", args=["sales"]), form_post([BIG_DEALS, new]))
    assert response.status_code == 302 and response["Location"].endswith("?view=form")
    draft = PlaybookDraft.objects.get(organization=org, department__slug="sales")
    assert draft.source.startswith("# Sales: big deals first.\ntemplates:\n")
    assert "# the deal desk watches this tag" in draft.source
    assert yaml.safe_load(draft.source)["rules"][1] == {
        "name": "Legal words",
        "when": {"intent": ["legal_threat"], "terms": ["lawyer", "sue"]},
        "then": {"department": "legal", "notify": ["marketing"]},
    }
    assert active_playbook(org.pk)[0] == running
    assert AuditEvent.objects.filter(action="playbook.draft_saved", actor=supervisor).count() == 1
    # The YAML view opens on that draft.
    assert b"Legal words" in client.get(reverse("playbook:detail", args=["sales"])).content

    # Publishing from the form goes the same way as from the YAML editor.
    response = client.post(reverse("playbook:publish", args=["sales"]), form_post([new], base=draft.source))
    assert response.status_code == 302
    published = Playbook.objects.get(organization=org, department__slug="sales", is_active=True)
    assert [rule["name"] for rule in published.rules["rules"]] == ["Legal words"]
    assert not PlaybookDraft.objects.exists()


def test_a_bad_form_saves_nothing_points_at_the_field_and_the_running_version_stays(client, org, supervisor):
    running = active_playbook(org.pk)[0]
    bad = {**BIG_DEALS, "when": {"min_followers": "lots"}}
    for url in [reverse("playbook:draft", args=["sales"]), reverse("playbook:publish", args=["sales"])]:
        response = client.post(url, form_post([{"name": "Fine", "then": {"priority": "low"}}, bad]))
        text = response.content.decode()
        assert response.status_code == 400
        assert (
            '<a href="#rules-1-when-min_followers">Rule 2 › Conditions › Followers at least</a>: '
            "must be a whole number of followers" in text
        )
        assert 'id="rules-1-when-min_followers" value="lots"' in text and 'aria-invalid="true"' in text
        assert 'id="rules-1-when-min_followers-error"' in text
    assert not PlaybookDraft.objects.exists()
    assert active_playbook(org.pk)[0] == running
    # A department the organization lacks is refused at its field too (the set's check).
    response = client.post(
        reverse("playbook:draft", args=["sales"]), form_post([{"name": "X", "then": {"department": "nowhere"}}])
    )
    assert (
        response.status_code == 400 and "Rule 1 › Actions › Department</a>: no department" in response.content.decode()
    )
    assert not PlaybookDraft.objects.exists()


def test_add_move_and_remove_save_nothing(client, org, supervisor):
    url = reverse("playbook:form", args=["sales"])
    added = client.post(url, form_post([BIG_DEALS], op="add"))
    assert added.status_code == 200 and 'name="rules-1-name" id="rules-1-name" value="Rule 2"' in added.content.decode()
    two = [BIG_DEALS, {"origin": "", "name": "Second", "then": {"priority": "low"}}]
    moved = client.post(url, form_post(two, op="up:1")).content.decode()
    assert moved.index('value="Second"') < moved.index('value="Big deals"')
    # The structured view beside the form follows the unsaved order too.
    panel = moved[moved.index('id="playbook-check"') :]
    assert panel.index("<strong>Second</strong>") < panel.index("<strong>Big deals</strong>")
    removed = client.post(url, form_post(two, op="remove:0")).content.decode()
    assert 'value="Big deals"' not in removed and 'value="Second"' in removed
    as_yaml = client.post(url, form_post(two, op="yaml")).content.decode()
    assert "- name: Second" in as_yaml and "# the deal desk watches this tag" in as_yaml
    assert not PlaybookDraft.objects.exists()


def test_the_yaml_editors_text_opens_as_a_form_and_yaml_it_cannot_show_stays_in_the_yaml_view(client, org, supervisor):
    url = reverse("playbook:form", args=["sales"])
    opened = client.post(url, {"source": "rules: [{name: Typed, then: {priority: low}}]"})
    assert opened.status_code == 200 and 'value="Typed"' in opened.content.decode()
    broken = client.post(url, {"source": "rules: [unclosed"})
    assert broken.status_code == 400 and b"rules: [unclosed</textarea>" in broken.content
    assert b"YAML view" in broken.content
    # A saved draft the form cannot read says so in the form view.
    client.post(reverse("playbook:draft", args=["sales"]), {"source": "rules: [unclosed"})
    page = client.get(reverse("playbook:detail", args=["sales"]) + "?view=form")
    assert page.status_code == 200 and b"not valid YAML" in page.content and b'name="base"' not in page.content


def test_a_dry_run_from_the_form_replays_the_forms_rules(client, org, supervisor):
    case = make_case(make_account(org), "sales", subject="we will sue", text="we will sue")
    Case.objects.filter(pk=case.pk).update(intent="sales_lead")
    rule = {"name": "Suits", "when": {"terms": "sue"}, "then": {"department": "legal"}}
    response = client.post(reverse("playbook:dry_run", args=["sales"]), form_post([rule], days="7"))
    text = response.content.decode()
    assert response.status_code == 200 and '<td>sales</td><td>legal</td><td class="num">1</td>' in text
    bad = client.post(reverse("playbook:dry_run", args=["sales"]), form_post([{"name": "No action"}]))
    assert b"rules[0].then" in bad.content


def test_text_in_the_form_is_escaped(client, org, supervisor):
    rule = {"name": SCRIPT, "when": {"terms": SCRIPT}, "then": {"tags": SCRIPT, "priority": "low"}}
    response = client.post(reverse("playbook:draft", args=["sales"]), form_post([rule]))
    assert response.status_code == 302
    draft = PlaybookDraft.objects.get()
    assert yaml.safe_load(draft.source)["rules"][0]["name"] == SCRIPT
    page = client.get(reverse("playbook:detail", args=["sales"]) + "?view=form")
    assert SCRIPT.encode() not in page.content and b"&lt;script&gt;" in page.content
    bad = client.post(reverse("playbook:draft", args=["sales"]), form_post([{**rule, "then": {"priority": SCRIPT}}]))
    assert bad.status_code == 400 and SCRIPT.encode() not in bad.content


def test_agents_and_other_organizations_cannot_use_the_form(client, org):
    agent = make_member(org, "alice", Role.AGENT, ["sales"])
    client.force_login(agent)
    page = client.get(reverse("playbook:detail", args=["sales"]) + "?view=form")
    assert page.status_code == 200 and b'name="base"' not in page.content
    for name in ["form", "draft", "publish", "dry_run"]:
        response = client.post(reverse(f"playbook:{name}", args=["sales"]), form_post([BIG_DEALS], op="add"))
        assert response.status_code == 404, name
    assert client.post(reverse("playbook:intake_form"), {"source": "rules: []"}).status_code == 404

    other = make_org("Globex", "globex")
    olga = make_member(other, "olga", Role.SUPERVISOR, ["sales"])
    client.force_login(olga)
    # Her sales playbook is Globex's: the form shows and writes hers, never Acme's.
    page = client.get(reverse("playbook:detail", args=["sales"]) + "?view=form")
    assert b"Big deals" not in page.content
    client.post(reverse("playbook:draft", args=["sales"]), form_post([BIG_DEALS], base=SALES))
    assert not PlaybookDraft.objects.filter(organization=org).exists()
    assert client.post(reverse("playbook:form", args=["legal"]), form_post([])).status_code == 404


def test_a_long_playbook_posts_in_one_piece(client, org, supervisor):
    rules = [{"name": f"Rule {n}", "when": {"terms": f"word{n}"}, "then": {"priority": "low"}} for n in range(80)]
    response = client.post(reverse("playbook:draft", args=["sales"]), form_post(rules))
    assert response.status_code == 302
    assert len(yaml.safe_load(PlaybookDraft.objects.get().source)["rules"]) == 80
