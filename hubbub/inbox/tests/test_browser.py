"""End to end in a real browser: Debian's Chromium driven by Playwright (no browser download).

A customer posts on a local Mastodon-format server; the worker polls it through the real
connector; an agent logs in, finds the post in the customer-service queue, replies, and the
reply arrives on the server in the customer's thread.
"""

import pytest
from django.contrib.auth.models import User

from hubbub.accounts.actions import do_add_member, do_create_organization
from hubbub.connectors.actions import do_poll_account
from hubbub.connectors.models import Network, SocialAccount
from hubbub.playbook.actions import do_publish_default_playbook
from hubbub.testing.fake_mastodon import FakeMastodon
from hubbub.worker import Worker

pytestmark = [pytest.mark.browser, pytest.mark.sqlite_only]


def test_agent_answers_a_mastodon_post_from_the_queue(live_server, transactional_db, settings, browser_page):
    settings.HUBBUB_ALLOW_PRIVATE_URLS = True
    with FakeMastodon(access_token="e2e-token", brand="acme") as server:
        org = do_create_organization("Acme", "acme")
        do_publish_default_playbook(org)
        agent = User.objects.create_user("carla", password="carla-pass-123")
        do_add_member(org, agent, "agent", ["customer-service"])
        account = SocialAccount(organization=org, network=Network.MASTODON, handle="acme", base_url=server.url)
        account.credentials = {"access_token": "e2e-token"}
        account.save()

        question = server.add_mention("how do I change the address on my order?", acct="dana", followers_count=321)
        server.add_mention("I will sue you, my lawyer is on it", acct="eve")  # routed to legal
        do_poll_account(account)
        Worker(poll=False).drain()

        page = browser_page
        page.goto(f"{live_server.url}/login/")
        page.fill("#id_username", "carla")
        page.fill("#id_password", "carla-pass-123")
        page.click("button[type=submit]")

        queue = page.locator("#queue-table")
        queue.get_by_text("change the address on my order").wait_for()
        assert "lawyer" not in queue.inner_text()  # the legal case is not in this agent's queue
        assert "default-src 'self'" in (page.context.request.get(f"{live_server.url}/").headers or {}).get(
            "content-security-policy", ""
        )

        queue.get_by_text("change the address on my order").click()
        page.get_by_text("dana").first.wait_for()
        page.fill("#reply-text", "Hi Dana, you can change it under Orders > Address.")
        page.click("form.compose button[type=submit]")

        Worker(poll=False).drain()
        assert len(server.posted) == 1
        posted = server.posted[0]
        assert posted["in_reply_to_id"] == question["id"]
        assert "you can change it under Orders" in posted["content"]

        # The case page shows the reply as published once the thread refreshes.
        page.reload()
        page.get_by_text("you can change it under Orders").first.wait_for()
