"""The Meta webhook endpoint: signature on the raw body first, the delivery kept, posts filed as events."""

import json

import pytest

from hubbub.accounts.actions import do_create_organization
from hubbub.connectors.models import EventState, InboundEvent, Network, SocialAccount, WebhookDelivery
from hubbub.inbox.models import Case, Visibility
from hubbub.playbook.actions import do_publish_default_playbook
from hubbub.testing.fake_graph import FakeGraph, sign
from hubbub.worker import Worker

SECRET = "app-secret-for-tests"
URL = "/webhooks/meta/"


@pytest.fixture
def graph():
    return FakeGraph()  # only its payload builders are used: nothing is served


@pytest.fixture
def account(db, graph, settings):
    settings.HUBBUB_META_APP_SECRET = SECRET
    settings.HUBBUB_META_VERIFY_TOKEN = "verify-me"
    org = do_create_organization("Acme", "acme")
    do_publish_default_playbook(org)
    return SocialAccount.objects.create(
        organization=org,
        network=Network.META,
        handle="acme",
        settings={"page_id": graph.page["id"], "ig_user_id": graph.ig_account["id"]},
    )


def post(client, body, secret=SECRET, tamper=False):
    raw, headers = sign(body, secret)
    if tamper:
        raw = raw.replace(b"late", b"LATE")
    return client.post(
        URL, raw, content_type="application/json", headers={k: v for k, v in headers.items() if k != "Content-Type"}
    )


def test_handshake(client, account):
    ok = client.get(URL, {"hub.mode": "subscribe", "hub.verify_token": "verify-me", "hub.challenge": "1158201444"})
    assert ok.status_code == 200 and ok.content == b"1158201444"
    bad = client.get(URL, {"hub.mode": "subscribe", "hub.verify_token": "nope", "hub.challenge": "1"})
    assert bad.status_code == 403


def test_a_signed_comment_and_message_become_cases(client, account, graph):
    post_on_page = graph.add_post("Our winter timetable is out")
    comment = graph.add_comment(post_on_page["id"], "my parcel is late again, this is the third time")
    message = graph.add_message(
        "hi, my account number is 12345678 and I was charged twice", author=graph.user("Dana Private")
    )
    assert post(client, graph.feed_comment_webhook(comment)).status_code == 200
    assert post(client, graph.messaging_webhook(message)).status_code == 200
    # Meta redelivers: nothing is doubled.
    assert post(client, graph.messaging_webhook(message)).status_code == 200
    assert InboundEvent.objects.filter(account=account).count() == 2
    assert WebhookDelivery.objects.filter(state=EventState.DONE).count() == 3
    Worker(poll=False).drain()
    private = Case.objects.get(messages__visibility=Visibility.PRIVATE)
    assert "account_number" in private.private_data
    assert Case.objects.count() == 2


@pytest.mark.parametrize("secret, tamper", [("wrong-secret", False), (SECRET, True)])
def test_a_bad_signature_stores_nothing(client, account, graph, secret, tamper):
    comment = graph.add_comment(graph.add_post("x")["id"], "my parcel is late")
    response = post(client, graph.feed_comment_webhook(comment), secret=secret, tamper=tamper)
    assert response.status_code == 403
    assert WebhookDelivery.objects.count() == 0 and InboundEvent.objects.count() == 0


def test_missing_signature_and_huge_bodies_are_refused(client, account):
    assert client.post(URL, b"{}", content_type="application/json").status_code == 403
    huge = b"{" + b" " * (2 * 1024 * 1024) + b"}"
    raw, headers = sign(huge, SECRET)
    response = client.post(
        URL, raw, content_type="application/json", headers={"X-Hub-Signature-256": headers["X-Hub-Signature-256"]}
    )
    assert response.status_code in (403, 413)
    assert WebhookDelivery.objects.count() == 0


def test_unreadable_or_unattributed_deliveries_are_kept_as_failed(client, account, graph):
    assert post(client, b"{not json").status_code == 200
    assert post(client, {"object": "page", "entry": "nope"}).status_code == 200
    stranger = FakeGraph(page_id="999999")
    comment = stranger.add_comment(stranger.add_post("x")["id"], "hello")
    assert post(client, stranger.feed_comment_webhook(comment)).status_code == 200
    failed = list(WebhookDelivery.objects.filter(state=EventState.FAILED).order_by("id"))
    assert len(failed) == 3
    assert "JSONDecodeError" in failed[0].error and failed[0].body == "{not json"
    assert "no entry list" in failed[1].error
    assert "no account for page 999999" in failed[2].error
    assert json.loads(failed[2].body)["object"] == "page"
    assert InboundEvent.objects.count() == 0


def test_unconfigured_endpoint_is_not_found(client, db, settings):
    settings.HUBBUB_META_APP_SECRET = ""
    assert client.post(URL, b"{}", content_type="application/json").status_code == 404
