"""The background loop: poll accounts, process events, publish replies (and, beside it, the streams).

Each step claims its own rows, so several workers can run against PostgreSQL, and a worker
killed at any moment leaves every row in a state the next one picks up.
"""

from __future__ import annotations

import logging
import signal
import threading
import time
from dataclasses import dataclass

from django.db import close_old_connections

from hubbub.accounts.models import Organization
from hubbub.connectors.actions import do_poll_due_accounts
from hubbub.connectors.streams import StreamSupervisor
from hubbub.crisis.actions import do_detect_spikes
from hubbub.inbox.escalation import do_escalate_due
from hubbub.inbox.pipeline import process_pending
from hubbub.publishing.actions import publish_due
from hubbub.routing.actions import do_push_assign, do_requeue_idle
from hubbub.routing.models import DepartmentRouting, RoutingMode

log = logging.getLogger(__name__)
# Volumes are compared per hour and idle limits are minutes: doing these more often finds nothing new.
HOUSEKEEPING_INTERVAL = 60.0


@dataclass
class Tally:
    polled: int = 0
    processed: int = 0
    published: int = 0
    alerts: int = 0
    requeued: int = 0
    pushed: int = 0
    escalated: int = 0


class Worker:
    def __init__(self, poll: bool = True, idle_sleep: float = 1.0, batch_size: int = 2000, streams: bool = False):
        self.poll = poll
        self.idle_sleep = idle_sleep
        self.batch_size = batch_size
        # Long-running stream consumers (X filtered stream, Jetstream) in threads beside the loop;
        # only run_forever starts them, as drain must end.
        self.streams = streams
        self.stopping = False
        self._stopped = threading.Event()
        self.tally = Tally()
        self._next_housekeeping = 0.0

    def stop(self, *_args) -> None:
        # Finish the step in hand (its transaction commits or rolls back whole), then leave.
        self.stopping = True
        self._stopped.set()

    def step(self) -> int:
        """One round of every loop. Returns how much work it found."""
        work = 0
        if self.poll:
            polled = do_poll_due_accounts()
            self.tally.polled += polled
            work += polled
        processed = process_pending(self.batch_size)
        self.tally.processed += processed
        if processed:
            self._push_new_cases()
        published = publish_due()
        self.tally.published += published
        self._housekeeping()
        # Not counted as work: drain must end, and a detection run always finds "something" to count.
        return work + processed + published

    def _push_new_cases(self) -> None:
        """New cases in push departments go to an agent at once, not at the next housekeeping."""
        try:
            organizations = DepartmentRouting.objects.filter(mode=RoutingMode.PUSH).values_list(
                "department__organization_id", flat=True
            )
            for organization_id in sorted(set(organizations)):
                self.tally.pushed += do_push_assign(organization_id)
        except Exception:
            log.exception("pushing new cases failed")

    def _housekeeping(self) -> None:
        """Once a minute: look for volume spikes, warn and escalate on SLA clocks, put idle agents'
        cases back in the queue, and push waiting cases to agents in departments that assign by push."""
        if time.monotonic() < self._next_housekeeping:
            return
        self._next_housekeeping = time.monotonic() + HOUSEKEEPING_INTERVAL
        # A failure here must not hold up posts and replies; each is tried again next minute.
        try:
            self.tally.alerts += len(do_detect_spikes())
        except Exception:
            log.exception("spike detection failed")
        # Before the requeue and push: a breach may hand a case back to the queue.
        try:
            for organization_id in Organization.objects.values_list("id", flat=True):
                self.tally.escalated += do_escalate_due(organization_id)
        except Exception:
            log.exception("SLA warnings and escalation failed")
        try:
            for organization_id in Organization.objects.values_list("id", flat=True):
                self.tally.requeued += do_requeue_idle(organization_id)
                # After the requeue, so that an away agent's cases go to someone online.
                self.tally.pushed += do_push_assign(organization_id)
        except Exception:
            log.exception("requeueing idle cases or pushing new ones failed")

    def drain(self, on_progress=None) -> Tally:
        """Process everything pending, then return."""
        while not self.stopping and self.step():
            if on_progress:
                on_progress(self.tally)
        return self.tally

    def run_forever(self) -> None:
        signal.signal(signal.SIGTERM, self.stop)
        signal.signal(signal.SIGINT, self.stop)
        supervisor = None
        if self.streams:
            supervisor = StreamSupervisor(self._stopped)
            supervisor.start()
        log.info("worker started%s", " with streams" if supervisor else "")
        try:
            self._loop()
        finally:
            if supervisor is not None:
                # Each consumer saves its cursor on the way out.
                supervisor.stop()
                supervisor.join(timeout=60)
        log.info("worker stopped: %s", self.tally)

    def _loop(self) -> None:
        while not self.stopping:
            # A long-running loop must notice a database restart, as a web request would.
            close_old_connections()
            try:
                busy = self.step()
            except Exception:
                # The database went away or a bug escaped an action: wait and carry on.
                log.exception("worker step failed")
                busy = 0
                self._stopped.wait(5)
            if not busy:
                self._stopped.wait(self.idle_sleep)
