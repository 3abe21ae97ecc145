"""Playbook drafts: kept between visits, private to supervisors, replaced by a publish."""

from __future__ import annotations

import pytest
from django.urls import reverse

from hubbub.accounts.models import Role
from hubbub.governance.models import AuditEvent
from hubbub.inbox.tests.test_views import SCRIPT, make_member, make_org
from hubbub.playbook.actions import active_playbook
from hubbub.playbook.models import Playbook, PlaybookDraft
from hubbub.playbook.views import MAX_SOURCE

SALES_DRAFT = "rules: [{name: Big deals, when: {terms: [enterprise]}, then: {priority: high, tags: [deal]}}]"


@pytest.fixture
def org(db):
    return make_org("Acme", "acme")


@pytest.fixture
def supervisor(client, org):
    user = make_member(org, "sam", Role.SUPERVISOR, ["sales"])
    client.force_login(user)
    return user


def test_a_saved_draft_is_what_the_editor_opens_on_until_it_is_published(client, org, supervisor):
    running = Playbook.objects.get(organization=org, is_active=True)
    response = client.post(reverse("playbook:draft", args=["sales"]), {"source": SALES_DRAFT})
    assert response.status_code == 302
    page = client.get(reverse("playbook:detail", args=["sales"]))
    assert b"Big deals" in page.content and b"Saved draft from" in page.content
    # Saving a draft changes nothing that runs.
    assert active_playbook(org.pk)[0] == running.version
    assert AuditEvent.objects.filter(action="playbook.draft_saved", actor=supervisor).count() == 1

    client.post(reverse("playbook:publish", args=["sales"]), {"source": SALES_DRAFT})
    assert not PlaybookDraft.objects.exists()
    page = client.get(reverse("playbook:detail", args=["sales"]))
    assert b"Saved draft from" not in page.content and b"Big deals" in page.content


def test_a_draft_may_not_parse_yet_and_saving_again_replaces_it(client, org, supervisor):
    client.post(reverse("playbook:intake_draft"), {"source": "rules: [unclosed"})
    client.post(reverse("playbook:intake_draft"), {"source": "rules: [still unclosed"})
    draft = PlaybookDraft.objects.get(organization=org, department=None)
    assert draft.source == "rules: [still unclosed" and draft.updated_by == supervisor
    page = client.get(reverse("playbook:intake_detail"))
    assert page.status_code == 200 and b"still unclosed" in page.content


def test_discarding_a_draft_goes_back_to_the_running_version(client, org, supervisor):
    client.post(reverse("playbook:draft", args=["sales"]), {"source": SALES_DRAFT})
    client.post(reverse("playbook:discard", args=["sales"]))
    assert not PlaybookDraft.objects.exists()
    assert b"Big deals" not in client.get(reverse("playbook:detail", args=["sales"])).content
    assert AuditEvent.objects.filter(action="playbook.draft_discarded").count() == 1


def test_drafts_are_escaped_and_capped(client, org, supervisor):
    client.post(reverse("playbook:intake_draft"), {"source": f"# {SCRIPT}\n" + "x" * (MAX_SOURCE + 500)})
    page = client.get(reverse("playbook:intake_detail"))
    assert SCRIPT.encode() not in page.content
    assert len(PlaybookDraft.objects.get().source) == MAX_SOURCE


def test_agents_and_other_organizations_cannot_see_or_write_drafts(client, org):
    other = make_org("Globex", "globex")
    olga = make_member(other, "olga", Role.SUPERVISOR, ["sales"])
    sam = make_member(org, "sam", Role.SUPERVISOR, ["sales"])
    client.force_login(sam)
    client.post(reverse("playbook:draft", args=["sales"]), {"source": SALES_DRAFT})

    agent = make_member(org, "alice", Role.AGENT, ["sales"])
    client.force_login(agent)
    assert client.post(reverse("playbook:draft", args=["sales"]), {"source": "rules: []"}).status_code == 404
    assert client.post(reverse("playbook:discard", args=["sales"])).status_code == 404
    # An agent reads the running playbook, not a supervisor's unpublished draft.
    assert b"Big deals" not in client.get(reverse("playbook:detail", args=["sales"])).content

    client.force_login(olga)
    assert b"Big deals" not in client.get(reverse("playbook:detail", args=["sales"])).content
    client.post(reverse("playbook:draft", args=["sales"]), {"source": "rules: []"})
    assert PlaybookDraft.objects.get(organization=org).source == SALES_DRAFT
