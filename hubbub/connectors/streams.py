"""The long-running stream consumers: X's filtered stream and Bluesky's Jetstream.

Where they run: `hubbub worker` (and so `hubbub run`) starts a `StreamSupervisor` thread beside
its polling/pipeline/outbox loop; `hubbub worker --no-streams` leaves it out and `hubbub stream`
runs it alone (at scale: one or two stream processes, any number of workers). `hubbub worker
--drain` never starts it, since it must exit. Every few seconds (`refresh`) the supervisor reads
which accounts want a stream and starts, restarts or stops one thread per account:

- an X account (enabled, healthy) whose settings say `"listening_via": "stream"`: its rules are
  `stream_rules(account)` (the organisation's listening queries plus settings["listening_rules"]),
  synced when the consumer starts and again whenever they change;
- a Bluesky account (enabled, healthy) unless its settings say `"jetstream": false`.

What the consumers guarantee, whatever happens to the process:
- Every post is stored as a raw InboundEvent (do_store_events, committed) before the consumer
  counts it as handled; a redelivery hits the (account, external id) constraint and is skipped.
- The cursor (account.cursor["stream"] for X, ["jetstream"] for Bluesky) is saved at checkpoints
  (every second while posts flow, and on the way out), only ever covering posts already
  committed; on first start, where listening began is saved before connecting. A process killed
  between checkpoints replays from the older cursor on restart (X: recent search from a minute
  before it, up to X's seven days; Jetstream: the cursor rewound five seconds) and the
  constraint drops what was already stored.
- One consumer per account across processes: a lease (an advisory lock on PostgreSQL, a file lock
  under VAR_DIR with SQLite) that the database or the kernel frees when a process dies.
- Health: a checkpoint with no failed connection since the last one sets last_success_at; a
  failed connection sets last_error; a
  PermanentError (revoked token, refused plan) disables the account (healthy=False) with the
  reason, shown on the accounts page. Other failures restart the consumer after `restart_delay`.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import fcntl
import hashlib
import logging
import threading
import time
from pathlib import Path
from typing import IO, Any

from django.conf import settings
from django.db import close_old_connections, connection, connections

from hubbub.connectors.actions import do_record_stream_error, do_save_stream_cursor, do_store_events
from hubbub.connectors.base import PermanentError, RawPost, TransientError
from hubbub.connectors.models import Network, SocialAccount
from hubbub.lib.safehttp import BlockedAddress

log = logging.getLogger(__name__)

REFRESH_SECONDS = 5.0
# How often a consumer saves its cursor while posts flow (a kill replays at most about this much).
CHECKPOINT_SECONDS = 1.0
RESTART_DELAY = 30.0
# Namespace of the PostgreSQL advisory locks (two int4 keys: this and the account id), "hb".
LOCK_CLASS = 0x6862


def wants_stream(account: SocialAccount) -> bool:
    if not account.polling_enabled or not account.healthy or account.settings.get("imported"):
        return False
    if account.network == Network.TWITTER:
        return account.settings.get("listening_via") == "stream"
    if account.network == Network.BLUESKY:
        return account.settings.get("jetstream", True) is not False
    return False


def streaming_accounts() -> list[SocialAccount]:
    candidates = SocialAccount.objects.filter(
        polling_enabled=True, healthy=True, network__in=[Network.TWITTER, Network.BLUESKY]
    ).order_by("pk")
    return [account for account in candidates if wants_stream(account)]


def stream_rules(account: SocialAccount) -> dict[str, str]:
    """The X stream rules for an account: its organisation's listening queries, then its own settings."""
    from hubbub.connectors.x.connector import listening_rules

    rules: dict[str, str] = {}
    try:
        from hubbub.listening.actions import network_rules
    except ImportError:
        # Listening queries are an optional layer; the account's own rules still work without them.
        network_rules = None
    if network_rules is not None:
        rules.update(network_rules(account.organization_id, "twitter"))
    rules.update(listening_rules(account.settings.get("listening_rules")))
    return rules


class Lease:
    """Holds the right to consume one account's stream until released or the process dies."""

    def __init__(self, account_id: int):
        self.account_id = account_id
        self._file: IO[str] | None = None
        self._connection: Any = None

    def acquire(self) -> bool:
        if connection.vendor == "postgresql":
            return self._acquire_advisory()
        if connection.is_in_memory_db():
            return True  # an in-memory database lives in one process only
        return self._acquire_file(str(connection.settings_dict["NAME"]))

    def _acquire_advisory(self) -> bool:
        # A connection of its own, so that closing the thread's connection after a database error
        # does not drop the lock; the database frees it when the process dies.
        self._connection = connections["default"].copy()
        with self._connection.cursor() as cursor:
            cursor.execute("SELECT pg_try_advisory_lock(%s, %s)", [LOCK_CLASS, self.account_id])
            held = bool(cursor.fetchone()[0])
        if not held:
            self._connection.close()
            self._connection = None
        return held

    def _acquire_file(self, database: str) -> bool:
        directory = Path(settings.VAR_DIR) / "streams"
        directory.mkdir(parents=True, exist_ok=True)
        key = hashlib.sha256(database.encode()).hexdigest()[:12]
        handle = (directory / f"{key}-{self.account_id}.lock").open("a")
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            handle.close()
            return False
        self._file = handle
        return True

    def release(self) -> None:
        if self._connection is not None:
            self._connection.close()
            self._connection = None
        if self._file is not None:
            self._file.close()  # closing the descriptor drops the flock
            self._file = None


class AccountStream:
    """One account's consumer, run in a thread of its own by the supervisor."""

    cursor_key = ""

    def __init__(self, account: SocialAccount):
        self.account_id = account.pk
        self.label = str(account)
        self.fingerprint = config_fingerprint(account)
        self.stop_event = threading.Event()
        self.thread: threading.Thread | None = None
        self.stored = 0
        self.duplicates = 0
        # Set when the consumer ended on its own: the supervisor restarts it later, or never if permanent.
        self.failure = ""
        self.permanent = False
        self.account = account
        # A connection failed since the last checkpoint: that checkpoint is no sign of health.
        self._failed_since_checkpoint = False

    def start(self) -> None:
        self.thread = threading.Thread(target=self.run, name=f"stream-{self.account_id}", daemon=True)
        self.thread.start()

    def stop(self) -> None:
        self.stop_event.set()

    @property
    def alive(self) -> bool:
        return self.thread is not None and self.thread.is_alive()

    def run(self) -> None:
        lease = Lease(self.account_id)
        try:
            if not lease.acquire():
                self.failure = "another process consumes this stream"
                log.info("%s: %s", self.label, self.failure)
                return
            self.account = SocialAccount.objects.get(pk=self.account_id)
            log.info("stream of %s started", self.label)
            self.consume(self.account)
        except (PermanentError, BlockedAddress) as exc:
            permanent = getattr(exc, "affects_account", True)
            self._fail(str(exc), permanent)
        except SocialAccount.DoesNotExist:
            self.failure = "the account was deleted"
        except TransientError as exc:
            self._fail(str(exc), permanent=False)
        except Exception as exc:
            log.exception("stream of %s crashed", self.label)
            self._fail(f"internal error in the stream consumer: {exc!r}", permanent=False)
        finally:
            lease.release()
            connection.close()
            log.info(
                "stream of %s stopped (%d stored, %d redeliveries skipped)", self.label, self.stored, self.duplicates
            )

    def _fail(self, message: str, permanent: bool) -> None:
        self.failure, self.permanent = message, permanent
        log.error("stream of %s failed%s: %s", self.label, " permanently" if permanent else "", message)
        with contextlib.suppress(Exception):
            close_old_connections()
            do_record_stream_error(self.account_id, message, permanent=permanent)

    def consume(self, account: SocialAccount) -> None:
        raise NotImplementedError

    # -- callbacks the consumers call from this thread -------------------------------------

    def store(self, post: RawPost) -> None:
        """Store one post, committed before returning (the consumer then counts it handled)."""
        try:
            stored = do_store_events(self.account, [post])
        except Exception:
            # The consumer offers the post again; make sure that attempt gets a fresh connection.
            connection.close()
            raise
        self.stored += stored
        self.duplicates += 1 - stored
        # A post stored after an error: the stream works again, and the next checkpoint says so.
        self._failed_since_checkpoint = False

    def checkpoint(self, cursor: Any) -> bool:
        """Save the cursor; False when that failed (the consumer tries again later)."""
        success, self._failed_since_checkpoint = not self._failed_since_checkpoint, False
        try:
            do_save_stream_cursor(self.account_id, self.cursor_key, cursor, success=success)
        except Exception:
            # A missed checkpoint only means a longer replay after a restart.
            log.warning("could not save the stream cursor of %s", self.label, exc_info=True)
            connection.close()
            return False
        return True

    def record_error(self, message: str) -> None:
        self._failed_since_checkpoint = True
        try:
            do_record_stream_error(self.account_id, message, permanent=False)
        except Exception:
            log.warning("could not record a stream error of %s", self.label, exc_info=True)
            connection.close()

    def refresh(self, account: SocialAccount) -> None:
        """Called by the supervisor every few seconds with the account as it is now."""


class XStream(AccountStream):
    cursor_key = "stream"

    def __init__(self, account: SocialAccount, **options: Any):
        super().__init__(account)
        self.options = {"checkpoint_every": CHECKPOINT_SECONDS, **options}
        self.synced: dict[str, str] | None = None
        self._sync_lock = threading.Lock()
        self._rules_stream: Any = None

    def consume(self, account: SocialAccount) -> None:
        from hubbub.connectors.x.connector import snowflake_at
        from hubbub.connectors.x.stream import FilteredStream

        config = account.config()
        # Rule changes go through a client of their own: the consuming one is busy reading.
        self._rules_stream = FilteredStream(config)
        self.sync_rules(stream_rules(account))
        cursor = account.cursor.get(self.cursor_key) or {}
        if not cursor.get("since_id") and not cursor.get("recover_from"):
            # First start: record where listening began before connecting, so that a process
            # killed before its first checkpoint still recovers everything posted since.
            cursor = {"recover_from": snowflake_at(dt.datetime.now(dt.UTC))}
            do_save_stream_cursor(self.account_id, self.cursor_key, cursor, success=False)
        stream = FilteredStream(config, **self.options)
        stream.consume(
            self.store,
            self.stop_event,
            cursor,
            checkpoint=self.checkpoint,
            on_error=self.record_error,
        )
        self.duplicates += stream.duplicates

    def sync_rules(self, wanted: dict[str, str]) -> None:
        with self._sync_lock:
            if wanted == self.synced or self._rules_stream is None:
                return
            result = self._rules_stream.sync_rules(wanted)
            self.synced = dict(wanted)
        if result.added or result.deleted:
            log.info("X stream rules of %s: %d added, %d deleted", self.label, len(result.added), len(result.deleted))
        if result.errors:
            self.record_error(f"X refused stream rules: {result.errors[:3]}")

    def refresh(self, account: SocialAccount) -> None:
        if self.synced is None:
            return  # the consumer has not made its first sync yet
        try:
            self.sync_rules(stream_rules(account))
        except TransientError as exc:
            log.warning("X stream rules of %s not synced yet: %s", self.label, exc)
        except PermanentError as exc:
            self.record_error(f"X refused the stream rules: {exc}")


class JetstreamStream(AccountStream):
    cursor_key = "jetstream"

    def __init__(self, account: SocialAccount, **options: Any):
        super().__init__(account)
        self.options = {"checkpoint_interval": CHECKPOINT_SECONDS, **options}

    def consume(self, account: SocialAccount) -> None:
        from hubbub.connectors.registry import connector_for

        cursor = account.cursor.get(self.cursor_key)
        if isinstance(cursor, bool) or not isinstance(cursor, int):
            # First start (or a cursor that is not a time): listen from now, and say so before
            # connecting, so that a process killed before its first checkpoint replays from here.
            cursor = int(time.time() * 1_000_000)
            do_save_stream_cursor(self.account_id, self.cursor_key, cursor, success=False)
        consumer = connector_for(account).jetstream(  # type: ignore[attr-defined]
            self.store,
            cursor=cursor,
            on_cursor=self.checkpoint,
            on_error=self.record_error,
            stop=self.stop_event,
            **self.options,
        )
        consumer.run()


STREAM_CLASSES: dict[str, type[AccountStream]] = {Network.TWITTER: XStream, Network.BLUESKY: JetstreamStream}


def config_fingerprint(account: SocialAccount) -> str:
    """What, when changed, needs a new connection (rule changes are synced on the live one instead)."""
    relevant = {k: v for k, v in account.settings.items() if k != "listening_rules"}
    material = repr((account.base_url, account.handle, account.credentials_encrypted, sorted(relevant.items())))
    return hashlib.sha256(material.encode()).hexdigest()


class StreamSupervisor:
    """Keeps one running consumer per account that wants a stream; see the module notes."""

    def __init__(
        self,
        stop: threading.Event | None = None,
        *,
        refresh: float = REFRESH_SECONDS,
        restart_delay: float = RESTART_DELAY,
        options: dict[str, dict[str, Any]] | None = None,
    ):
        self.stop_event = stop or threading.Event()
        self.refresh_seconds = refresh
        self.restart_delay = restart_delay
        # Per network, extra keyword arguments for the consumers (tests shorten back-offs with them).
        self.options = options or {}
        self.streams: dict[int, AccountStream] = {}
        self._not_before: dict[int, float] = {}
        self.thread: threading.Thread | None = None

    def start(self) -> None:
        self.thread = threading.Thread(target=self.run, name="stream-supervisor", daemon=True)
        self.thread.start()

    def stop(self) -> None:
        self.stop_event.set()

    def join(self, timeout: float | None = None) -> None:
        if self.thread is not None:
            self.thread.join(timeout)

    def run(self) -> None:
        try:
            while not self.stop_event.is_set():
                close_old_connections()
                try:
                    self.refresh_once()
                except Exception:
                    # The database went away, most likely: keep the running consumers and try again.
                    log.exception("stream supervisor refresh failed")
                    connection.close()
                self.stop_event.wait(self.refresh_seconds)
        finally:
            for stream in self.streams.values():
                stream.stop()
            for stream in self.streams.values():
                if stream.thread is not None:
                    stream.thread.join(timeout=30)
            connection.close()

    def refresh_once(self) -> None:
        wanted = {account.pk: account for account in streaming_accounts()}
        now = time.monotonic()
        for pk, stream in list(self.streams.items()):
            account = wanted.get(pk)
            if not stream.alive:
                del self.streams[pk]
                # A permanent failure disabled the account, so it is not wanted any more; should
                # recording that have failed, the delay still keeps it from being retried in a loop.
                if stream.failure:
                    self._not_before[pk] = now + self.restart_delay
            elif account is None or config_fingerprint(account) != stream.fingerprint:
                log.info("stopping the stream of %s (disabled or reconfigured)", stream.label)
                stream.stop()
                if stream.thread is not None:
                    stream.thread.join(timeout=30)
                del self.streams[pk]
            else:
                stream.refresh(account)
        for pk, account in wanted.items():
            if pk in self.streams or self._not_before.get(pk, 0) > now or self.stop_event.is_set():
                continue
            stream = STREAM_CLASSES[account.network](account, **self.options.get(account.network, {}))
            self.streams[pk] = stream
            stream.start()
