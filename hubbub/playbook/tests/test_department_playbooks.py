"""Department playbooks: publishing a set, refusing loops, rollback, and dry runs over stored cases."""

from __future__ import annotations

import datetime as dt

import pytest
from django.utils import timezone

from hubbub.governance.models import AuditEvent
from hubbub.inbox.models import Case
from hubbub.inbox.tests.test_views import make_account, make_case, make_org
from hubbub.lib.playbook import PlaybookError, PostFacts
from hubbub.playbook.actions import (
    active_playbook,
    do_dry_run,
    do_publish_playbook,
    do_rollback_playbook,
)
from hubbub.playbook.models import Playbook

SALES = """
templates:
  hello: "Hi {customer_name}, thanks for asking about case {case_id}."
rules:
  - name: Enterprise
    when: {terms: [enterprise]}
    then: {priority: urgent, tags: [enterprise], templates: [hello], first_response_minutes: 15}
  - name: Contracts are legal's
    when: {terms: [contract]}
    then: {department: legal}
"""
LEGAL_BACK_TO_SALES = "rules: [{name: Renewals, when: {terms: [renewal]}, then: {department: sales}}]"


@pytest.fixture
def org(db):
    return make_org("Acme", "acme")


def dept(org, slug):
    return org.departments.get(slug=slug)


def test_a_department_playbook_refines_routing_and_bumps_the_set_version(org):
    before, _ = active_playbook(org.pk)
    published = do_publish_playbook(org, SALES, department=dept(org, "sales"))
    version, playbook_set = active_playbook(org.pk)
    assert version == published.version == before + 1
    routed = playbook_set.route(PostFacts(text="enterprise plan please", intent="sales_lead"))
    assert (routed.department, routed.priority, routed.tags) == ("sales", 1, ("enterprise",))
    assert routed.templates[0].render({"customer_name": "Ann", "case_id": 7}).startswith("Hi Ann")
    # The intake playbook and the noise rules are untouched.
    assert playbook_set.noise == playbook_set.intake.noise
    assert AuditEvent.objects.filter(action="playbook.published", data__department="sales").count() == 1


def test_a_set_whose_hand_offs_loop_is_refused_and_the_running_set_stays(org):
    do_publish_playbook(org, SALES, department=dept(org, "sales"))
    running = active_playbook(org.pk)[0]
    with pytest.raises(PlaybookError, match="hand-offs loop between departments: legal → sales → legal"):
        do_publish_playbook(org, LEGAL_BACK_TO_SALES, department=dept(org, "legal"))
    assert active_playbook(org.pk)[0] == running
    assert not Playbook.objects.filter(organization=org, department=dept(org, "legal")).exists()


def test_missing_departments_and_bad_yaml_are_refused_with_their_place(org):
    with pytest.raises(PlaybookError) as caught:
        do_publish_playbook(org, "rules: [{then: {notify: [pr]}}]", department=dept(org, "sales"))
    assert caught.value.path == "sales: rules[0].then.notify"
    with pytest.raises(PlaybookError) as caught:
        do_publish_playbook(org, "rules: [{then: {tags: [x]}", department=dept(org, "sales"))
    assert caught.value.path.startswith("line 1, column")
    other = make_org("Globex", "globex")
    with pytest.raises(PlaybookError, match="no such department"):
        do_publish_playbook(org, SALES, department=dept(other, "sales"))
    assert not Playbook.objects.filter(organization=org, department__isnull=False).exists()


def test_rollback_publishes_a_copy_as_a_new_version_and_is_audited(org):
    first = do_publish_playbook(org, SALES, department=dept(org, "sales"))
    do_publish_playbook(org, "rules: []", department=dept(org, "sales"))
    restored = do_rollback_playbook(first)
    assert restored.version > first.version and restored.restored_from == first.version
    assert restored.source == first.source and restored.is_active
    assert Playbook.objects.filter(organization=org, department=dept(org, "sales"), is_active=True).count() == 1
    assert AuditEvent.objects.filter(action="playbook.rolled_back", data__restored_from=first.version).exists()
    routed = active_playbook(org.pk)[1].route(PostFacts(text="enterprise", intent="sales_lead"))
    assert routed.tags == ("enterprise",)


def test_a_department_playbook_needs_an_intake_playbook(db):
    from hubbub.accounts.actions import do_create_organization

    bare = do_create_organization("Bare", "bare")
    with pytest.raises(PlaybookError, match="intake playbook first"):
        do_publish_playbook(bare, SALES, department=bare.departments.get(slug="sales"))


def test_a_dry_run_replays_last_weeks_opening_posts(org):
    account = make_account(org)
    lead = make_case(account, "sales", subject="contract for 50 seats", text="We need a contract for 50 seats")
    Case.objects.filter(pk=lead.pk).update(intent="sales_lead")
    make_case(account, subject="where is my parcel")
    old = make_case(account, "sales", subject="contract, old", text="contract please")
    Case.objects.filter(pk=old.pk).update(intent="sales_lead", opened_at=timezone.now() - dt.timedelta(days=30))
    report = do_dry_run(org, SALES, dept(org, "sales"))
    assert report.posts == 2
    assert report.moved == {("sales", "legal"): 1}
    assert [c.post.case_id for c in report.examples["moved"]] == [lead.pk]
    # A member who may not see the case gets the counts without it as an example.
    hidden = do_dry_run(org, SALES, dept(org, "sales"), shown=lambda department, triage: False)
    assert hidden.moved == {("sales", "legal"): 1} and hidden.examples == {}
    assert do_dry_run(org, SALES, dept(org, "sales"), days=60).posts == 3
    with pytest.raises(PlaybookError):
        do_dry_run(org, LEGAL_BACK_TO_SALES.replace("sales", "nowhere"), dept(org, "legal"))
