"""The playbook editor in a real browser under the strict CSP: live validation, dry run, publish,
rollback — the supervisor's whole loop."""

import pytest
from django.contrib.auth.models import User

from hubbub.accounts.actions import do_add_member
from hubbub.inbox.models import Case
from hubbub.inbox.tests.test_views import make_account, make_case, make_org
from hubbub.playbook.models import Playbook
from hubbub.testing.browser import log_in

pytestmark = [pytest.mark.browser, pytest.mark.sqlite_only]


def open_sales_playbook(page, base_url: str, org) -> list[str]:
    """A sales lead in the queue, and its supervisor on the sales playbook's page; returns the
    page's console errors."""
    user = User.objects.create_user("sam", password="sam-pass-123")
    do_add_member(org, user, "supervisor", ["sales"])
    lead = make_case(make_account(org), "sales", subject="a contract for 50 seats", text="a contract for 50 seats")
    Case.objects.filter(pk=lead.pk).update(intent="sales_lead")
    errors = log_in(page, base_url, "sam", "sam-pass-123")
    page.click("nav.mainnav >> text=Playbooks")
    page.click("text=Sales playbook")
    return errors


def test_supervisor_writes_dry_runs_publishes_and_rolls_back(live_server, transactional_db, browser_page):
    org = make_org("Acme", "acme")
    page = browser_page
    errors = open_sales_playbook(page, live_server.url, org)

    source = page.locator("#playbook-source")
    source.fill("")
    source.press_sequentially("rules: [{when: {intent: furious}, then: {department: legal}}]")
    check = page.locator("#playbook-check")
    check.get_by_text("rules[0].when.intent").wait_for()
    source.fill("")
    source.press_sequentially("rules: [{name: Contracts, when: {terms: [contract]}, then: {department: legal}}]")
    check.get_by_text("The playbook is valid.").wait_for()
    check.get_by_text("terms: contract").wait_for()

    page.click("text=Dry run")
    report = page.locator("#dry-run")
    report.get_by_text("a contract for 50 seats").wait_for()
    assert "1 would be handled differently" in " ".join(report.inner_text().split())

    page.click("button[type=submit].primary")
    page.get_by_text("Published sales playbook version 2").wait_for()
    assert Playbook.objects.get(organization=org, department__slug="sales", is_active=True).version == 2

    page.locator("#playbook-source").fill("rules: []")
    page.click("button[type=submit].primary")
    page.get_by_text("Published sales playbook version 3").wait_for()
    page.click("text=Roll back to v2")
    page.get_by_text("Restored version 2 as version 4").wait_for()
    running = Playbook.objects.get(organization=org, department__slug="sales", is_active=True)
    assert (running.version, running.restored_from) == (4, 2)
    assert not [e for e in errors if "Content Security Policy" in e], errors


def test_supervisor_adds_a_rule_in_the_form_dry_runs_and_publishes_it(live_server, transactional_db, browser_page):
    org = make_org("Acme", "acme")
    page = browser_page
    errors = open_sales_playbook(page, live_server.url, org)

    page.click("#to-form")
    page.click("#add-rule")
    page.fill("#rules-0-name", "Contracts <b>to legal</b>")
    page.fill("#rules-0-when-terms", "contract\nlawyer")
    page.select_option("#rules-0-then-department", "legal")
    page.check("input[name=rules-0-then-notify][value=marketing]")

    page.click("text=Dry run")
    report = page.locator("#dry-run")
    report.get_by_text("a contract for 50 seats").first.wait_for()  # moved, and notified
    assert "1 would be handled differently" in " ".join(report.inner_text().split())

    page.click("button[type=submit].primary")
    page.get_by_text("Published sales playbook version 2").wait_for()
    check = page.locator("#playbook-check")
    check.get_by_text("Contracts <b>to legal</b>").wait_for()
    check.get_by_text("terms: contract, lawyer").wait_for()
    running = Playbook.objects.get(organization=org, department__slug="sales", is_active=True)
    assert running.rules["rules"] == [
        {
            "name": "Contracts <b>to legal</b>",
            "when": {"terms": ["contract", "lawyer"]},
            "then": {"department": "legal", "notify": ["marketing"]},
        }
    ]
    # The starter's comments are still in the published YAML.
    assert running.source.startswith("# Posts the intake playbook sends to this department")

    # A mistake in the form is shown at its field, and nothing is saved.
    page.goto(f"{live_server.url}/playbooks/departments/sales/?view=form")
    page.locator("summary", has_text="Contracts").click()
    page.fill("#rules-0-when-min_followers", "lots")
    page.click("#form-save")
    page.locator("#rules-0-when-min_followers-error").get_by_text("must be a whole number of followers").wait_for()
    assert Playbook.objects.get(organization=org, department__slug="sales", is_active=True).pk == running.pk
    assert not [e for e in errors if "Content Security Policy" in e], errors
