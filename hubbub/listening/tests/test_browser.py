"""The query editor in a real browser: validation as you type and the preview, under the strict CSP."""

import pytest
from django.contrib.auth.models import User

from hubbub.accounts.actions import do_add_member
from hubbub.inbox.tests.test_views import make_account, make_case, make_org
from hubbub.listening.models import ListeningQuery
from hubbub.testing.browser import log_in

pytestmark = [pytest.mark.browser, pytest.mark.sqlite_only]


def test_supervisor_writes_a_query_with_live_errors_and_a_preview(live_server, transactional_db, browser_page):
    org = make_org("Acme", "acme")
    user = User.objects.create_user("sam", password="sam-pass-123")
    do_add_member(org, user, "supervisor", ["customer-service"])
    make_case(make_account(org), text="acme took my money, I want a refund")
    make_case(make_account(org, handle="@other@social.example"), text="acme is great")

    page = browser_page
    errors = log_in(page, live_server.url, "sam", "sam-pass-123")
    page.click("nav.mainnav >> text=Listening")
    page.click("text=New query")

    page.fill("#id_name", "Refunds")
    page.locator("#id_query").press_sequentially("acme AND (refund")
    check = page.locator("#query-check")
    check.get_by_text("this ( is never closed (at character 10)").wait_for()
    assert check.locator("pre.caret").inner_text() == "acme AND (refund\n         ^"

    page.locator("#id_query").press_sequentially(")")
    check.get_by_text("The query is valid.").wait_for()
    page.click("text=Preview on recent posts")
    preview = page.locator("#preview")
    preview.get_by_text("I want a refund").wait_for()
    assert "1 of the last 2 inbound posts" in " ".join(preview.inner_text().split())

    page.click("button[type=submit].primary")
    page.locator("table.listening").get_by_text("Refunds").wait_for()
    assert ListeningQuery.objects.get().query == "acme AND (refund)"
    assert not [e for e in errors if "Content Security Policy" in e], errors
