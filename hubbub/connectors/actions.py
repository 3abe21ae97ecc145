"""Getting posts in: polling accounts and importing files. Both only store raw events."""

from __future__ import annotations

import datetime as dt
import logging
import time
from collections import defaultdict
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from itertools import batched
from pathlib import Path
from typing import Any

from django.db import transaction
from django.utils import timezone

from hubbub.accounts.models import Organization
from hubbub.connectors import twcs
from hubbub.connectors.base import MalformedEvent, PermanentError, RawPost, TransientError
from hubbub.connectors.models import InboundEvent, Network, SocialAccount
from hubbub.connectors.registry import connector_for
from hubbub.db import column_adapter, db_value, insert_rows

log = logging.getLogger(__name__)
STORE_BATCH = 2000


# What a new raw event is given; every other column gets its model default (see _event_columns).
EVENT_GIVEN = ("account", "external_id", "payload", "received_at")


def _event_columns() -> tuple[tuple[str, ...], tuple[Any, ...]]:
    """All InboundEvent columns and the defaults of those not given: the plain INSERT below bypasses
    the ORM, so a column added later with a default must still get its value."""
    rest = [f for f in InboundEvent._meta.concrete_fields if not f.primary_key and f.name not in EVENT_GIVEN]
    return (*EVENT_GIVEN, *(f.name for f in rest)), tuple(db_value(f.get_default()) for f in rest)


def do_store_events(account: SocialAccount, posts: Iterable[RawPost]) -> int:
    """Store raw posts; a post already stored for this account (a redelivery) is skipped. Returns new count."""
    to_json = column_adapter(InboundEvent._meta.get_field("payload"))
    received_at = column_adapter(InboundEvent._meta.get_field("received_at"))(timezone.now())
    fields, defaults = _event_columns()
    rows = ((account.pk, post.external_id[:255], to_json(post.payload), received_at, *defaults) for post in posts)
    total = 0
    # The unique (account, external_id) constraint turns a redelivery into a skipped row.
    for chunk in batched(rows, STORE_BATCH):
        total += insert_rows(InboundEvent, fields, chunk, ignore_conflicts=True)
    return total


# Cursor keys the stream consumers (hubbub/connectors/streams.py) own; a poll of the same account
# must neither overwrite them with the stale copy it read nor drop them.
STREAM_CURSOR_KEYS = ("stream", "jetstream")
# However long a platform asks us to wait, look again within the hour.
MAX_RETRY_WAIT = 3600.0


@dataclass
class PollOutcome:
    fetched: int = 0
    stored: int = 0
    # The platform has more for us right now.
    more: bool = False
    error: str = ""
    permanent: bool = False
    # Seconds until the next attempt after a transient error.
    retry_in: float | None = None


def do_poll_account(account: SocialAccount) -> int:
    """Fetch what is new on one account and store it with the cursor, in one transaction. Returns new count."""
    return do_poll_account_once(account).stored


def do_poll_account_once(account: SocialAccount) -> PollOutcome:
    """One fetch: posts and cursor stored together, or the error recorded on the account (health)."""
    connector = connector_for(account)
    now = timezone.now()
    try:
        result = connector.fetch(account.cursor)
    except TransientError as exc:
        wait = exc.retry_after if exc.retry_after is not None else account.poll_interval_seconds * 2
        wait = max(1.0, min(wait, MAX_RETRY_WAIT))
        account.mark_error(str(exc), permanent=False)
        account.next_poll_at = now + dt.timedelta(seconds=wait)
        account.save(update_fields=["last_error", "last_error_at", "next_poll_at"])
        log.warning("poll of %s failed, retrying in %.0fs: %s", account, wait, exc)
        return PollOutcome(error=str(exc), retry_in=wait)
    except PermanentError as exc:
        account.mark_error(str(exc), permanent=True)
        account.save(update_fields=["last_error", "last_error_at", "healthy"])
        log.error("poll of %s failed permanently: %s", account, exc)
        return PollOutcome(error=str(exc), permanent=True)
    with transaction.atomic():
        stored = do_store_events(account, result.posts)
        # Re-read under lock: a stream consumer of this account may have moved its own cursor meanwhile.
        current = (
            SocialAccount.objects.select_for_update().filter(pk=account.pk).values_list("cursor", flat=True).first()
        )
        account.cursor = _keep_stream_cursors(result.cursor, current or {})
        account.mark_success()
        account.next_poll_at = now if result.more else now + dt.timedelta(seconds=account.poll_interval_seconds)
        account.save(update_fields=["cursor", "healthy", "last_success_at", "next_poll_at"])
    return PollOutcome(fetched=len(result.posts), stored=stored, more=result.more)


def _keep_stream_cursors(polled: dict, current: dict) -> dict:
    cursor = {key: value for key, value in polled.items() if key not in STREAM_CURSOR_KEYS}
    cursor.update({key: current[key] for key in STREAM_CURSOR_KEYS if key in current})
    return cursor


def do_poll_due_accounts(limit: int = 20) -> int:
    due = SocialAccount.objects.filter(polling_enabled=True, healthy=True, next_poll_at__lte=timezone.now()).order_by(
        "next_poll_at"
    )[:limit]
    stored = 0
    for account in due:
        try:
            stored += do_poll_account(account)
        except Exception as exc:
            # A bug in one connector must not stop every other account from being polled: this
            # one waits a while (the error shows on the accounts page) and the others go on.
            log.exception("poll of %s crashed", account)
            _record_crash(account, exc)
    return stored


def _record_crash(account: SocialAccount, exc: Exception) -> None:
    account.mark_error(f"internal error while polling: {exc!r}", permanent=False)
    account.next_poll_at = timezone.now() + dt.timedelta(seconds=max(60, account.poll_interval_seconds * 5))
    account.save(update_fields=["last_error", "last_error_at", "next_poll_at"])


@dataclass
class BackfillReport:
    rounds: int = 0
    fetched: int = 0
    stored: int = 0
    error: str = ""
    permanent: bool = False


def do_backfill_account(
    account: SocialAccount,
    on_round: Callable[[PollOutcome], None] | None = None,
    wait: Callable[[float], bool] | None = None,
    max_wait: float = MAX_RETRY_WAIT,
) -> BackfillReport:
    """Fetch until the account has caught up (its first fetch, and every page the platform has ready).

    Each round commits its posts with the cursor, so an interrupted backfill resumes where it
    stopped. A rate limit is waited out (`wait(seconds)` returns True to give up instead).
    """
    wait = wait or _sleep
    report = BackfillReport()
    while True:
        outcome = do_poll_account_once(account)
        report.rounds += 1
        report.fetched += outcome.fetched
        report.stored += outcome.stored
        if on_round:
            on_round(outcome)
        if outcome.permanent:
            report.error, report.permanent = outcome.error, True
            return report
        if outcome.error:
            if outcome.retry_in is None or outcome.retry_in > max_wait or wait(outcome.retry_in):
                report.error = outcome.error
                return report
            continue
        if not outcome.more:
            return report


def _sleep(seconds: float) -> bool:
    time.sleep(seconds)
    return False


def do_save_stream_cursor(account_id: int, key: str, value: Any, success: bool = True) -> None:
    """Persist a stream consumer's cursor, only after the events it covers are committed.

    Only `key` is written (under a row lock), so polling and the stream share the cursor safely.
    `success`: the stream worked since the last checkpoint (the accounts page shows it).
    """
    with transaction.atomic():
        account = SocialAccount.objects.select_for_update().filter(pk=account_id).first()
        if account is None:
            return
        account.cursor = {**account.cursor, key: value}
        fields = ["cursor"]
        if success:
            account.last_success_at = timezone.now()
            fields.append("last_success_at")
        account.save(update_fields=fields)


def do_record_stream_error(account_id: int, message: str, permanent: bool) -> None:
    """Note a stream failure on the account; a permanent one disables it (healthy=False) with the reason."""
    changes: dict[str, Any] = {"last_error": message[:2000], "last_error_at": timezone.now()}
    if permanent:
        changes["healthy"] = False
    SocialAccount.objects.filter(pk=account_id).update(**changes)


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
