"""Webhook intake: verify the signature on the raw body, store it, split it into raw events."""

from __future__ import annotations

import json
from dataclasses import dataclass

from django.db import transaction

from hubbub.connectors.actions import do_store_events
from hubbub.connectors.base import MalformedEvent
from hubbub.connectors.meta.webhook import split_webhook
from hubbub.connectors.models import EventState, Network, SocialAccount, WebhookDelivery


@dataclass
class Intake:
    stored: int = 0
    unattributed: int = 0
    skipped: int = 0


@transaction.atomic
def do_receive_meta_delivery(raw: bytes) -> Intake:
    """Keep the delivery, then file each post under the Page or Instagram account it belongs to."""
    delivery = WebhookDelivery.objects.create(source="meta", body=raw.decode("utf-8", errors="replace"))
    intake = Intake()
    try:
        result = split_webhook(json.loads(raw))
    except (ValueError, MalformedEvent) as exc:
        _fail(delivery, f"{type(exc).__name__}: {exc}")
        return intake
    accounts = _meta_accounts()
    by_account: dict[int, list] = {}
    problems = [f"{reason}: {json.dumps(fragment)[:500]}" for reason, fragment in result.skipped]
    for post in result.posts:
        account = accounts.get((post.payload.get("object"), str(post.payload.get("entry_id"))))
        if account is None:
            intake.unattributed += 1
            problems.append(f"no account for {post.payload.get('object')} {post.payload.get('entry_id')}")
            continue
        by_account.setdefault(account.pk, [account, []])[1].append(post)
    for account, posts in by_account.values():
        intake.stored += do_store_events(account, posts)
    intake.skipped = len(result.skipped)
    if problems:
        _fail(delivery, "\n".join(problems))
    else:
        delivery.state = EventState.DONE
        delivery.save(update_fields=["state"])
    return intake


def _fail(delivery: WebhookDelivery, error: str) -> None:
    delivery.state = EventState.FAILED
    delivery.error = error[:4000]
    delivery.save(update_fields=["state", "error"])


def _meta_accounts() -> dict[tuple[str, str], SocialAccount]:
    accounts = {}
    for account in SocialAccount.objects.filter(network=Network.META):
        if account.settings.get("page_id"):
            accounts[("page", str(account.settings["page_id"]))] = account
        if account.settings.get("ig_user_id"):
            accounts[("instagram", str(account.settings["ig_user_id"]))] = account
    return accounts
