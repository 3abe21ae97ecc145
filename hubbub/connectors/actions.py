"""Getting posts in: polling accounts and importing files. Both only store raw events."""

from __future__ import annotations

import datetime as dt
import logging
from collections import defaultdict
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from itertools import batched
from pathlib import Path

from django.db import transaction
from django.utils import timezone

from hubbub.accounts.models import Organization
from hubbub.connectors import twcs
from hubbub.connectors.base import MalformedEvent, PermanentError, RawPost, TransientError
from hubbub.connectors.models import EventState, InboundEvent, Network, SocialAccount
from hubbub.connectors.registry import connector_for
from hubbub.db import db_value, insert_rows

log = logging.getLogger(__name__)
STORE_BATCH = 2000


EVENT_FIELDS = ("account", "external_id", "payload", "received_at", "state", "error", "attempts")


def do_store_events(account: SocialAccount, posts: Iterable[RawPost]) -> int:
    """Store raw posts; a post already stored for this account (a redelivery) is skipped. Returns new count."""
    received_at = db_value(timezone.now())
    rows = (
        (account.pk, post.external_id[:255], db_value(post.payload), received_at, EventState.PENDING, "", 0)
        for post in posts
    )
    total = 0
    # The unique (account, external_id) constraint turns a redelivery into a skipped row.
    for chunk in batched(rows, STORE_BATCH):
        total += insert_rows(InboundEvent, EVENT_FIELDS, chunk, ignore_conflicts=True)
    return total


def do_poll_account(account: SocialAccount) -> int:
    """Fetch what is new on one account and store it with the cursor, in one transaction."""
    connector = connector_for(account)
    now = timezone.now()
    try:
        result = connector.fetch(account.cursor)
    except TransientError as exc:
        account.mark_error(str(exc), permanent=False)
        wait = exc.retry_after if exc.retry_after is not None else account.poll_interval_seconds * 2
        account.next_poll_at = now + dt.timedelta(seconds=max(1.0, min(wait, 3600)))
        account.save(update_fields=["last_error", "last_error_at", "next_poll_at"])
        log.warning("poll of %s failed, retrying in %.0fs: %s", account, wait, exc)
        return 0
    except PermanentError as exc:
        account.mark_error(str(exc), permanent=True)
        account.save(update_fields=["last_error", "last_error_at", "healthy"])
        log.error("poll of %s failed permanently: %s", account, exc)
        return 0
    with transaction.atomic():
        stored = do_store_events(account, result.posts)
        account.cursor = result.cursor
        account.mark_success()
        account.next_poll_at = now if result.more else now + dt.timedelta(seconds=account.poll_interval_seconds)
        account.save(update_fields=["cursor", "healthy", "last_success_at", "next_poll_at"])
    return stored


def do_poll_due_accounts(limit: int = 20) -> int:
    due = SocialAccount.objects.filter(polling_enabled=True, healthy=True, next_poll_at__lte=timezone.now()).order_by(
        "next_poll_at"
    )[:limit]
    return sum(do_poll_account(account) for account in due)


@dataclass
class ImportReport:
    read: int = 0
    stored: int = 0
    duplicates: int = 0
    unrouted: int = 0
    rejected: list[twcs.Rejected] = field(default_factory=list)
    accounts: set[str] = field(default_factory=set)


def do_import_file(
    path: Path, organization: Organization, progress: Callable[[int], None] | None = None
) -> ImportReport:
    """Import a Customer Support on Twitter file (CSV or JSONL) as raw events on one account per brand.

    Posts are stored in time order, so the pipeline sees a question before its answer.
    """
    report = ImportReport()
    rows: list[twcs.Row] = []
    for item in twcs.read_rows(path):
        if isinstance(item, twcs.Rejected):
            report.rejected.append(item)
        else:
            rows.append(item)
        if progress:
            progress(1)
    report.read = len(rows) + len(report.rejected)
    brand_posts = twcs.file_brands(rows)
    brands = set(brand_posts.values())
    replies_to: dict[str, list[str]] = defaultdict(list)
    for row in rows:
        replies_to[row.data["tweet_id"]].extend(filter(None, row.data["response_tweet_id"].split(",")))

    by_brand: dict[str, list[tuple[dt.datetime | None, twcs.Row]]] = defaultdict(list)
    for row in rows:
        brand = twcs.brand_of(row, brand_posts, replies_to, brands)
        if not brand:
            report.unrouted += 1
            brand = "unknown-brand"
        by_brand[brand].append((_sort_key(row), row))

    epoch = dt.datetime.min.replace(tzinfo=dt.UTC)
    with transaction.atomic():
        accounts = _import_accounts(organization, set(by_brand))
        for brand, items in sorted(by_brand.items()):
            items.sort(key=lambda pair: (pair[0] or epoch, pair[1].line))
            stored = do_store_events(accounts[brand], (twcs.raw_post(row) for _, row in items))
            report.stored += stored
            report.duplicates += len(items) - stored
            report.accounts.add(brand)
    return report


def _import_accounts(organization: Organization, handles: set[str]) -> dict[str, SocialAccount]:
    """One import-only account per brand handle; an account that exists already is kept as it is."""
    SocialAccount.objects.bulk_create(
        (
            SocialAccount(
                organization=organization,
                network=Network.TWITTER,
                handle=handle,
                polling_enabled=False,
                settings={"imported": True},
            )
            for handle in sorted(handles)
        ),
        ignore_conflicts=True,
    )
    accounts = SocialAccount.objects.filter(organization=organization, network=Network.TWITTER, handle__in=handles)
    return {a.handle: a for a in accounts}


def _sort_key(row: twcs.Row) -> dt.datetime | None:
    try:
        return twcs.parse_time(row.data["created_at"])
    except MalformedEvent:
        return None
