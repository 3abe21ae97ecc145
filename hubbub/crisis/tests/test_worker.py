"""The worker looks for spikes at most once a minute, never stops draining for it, and survives it failing."""

import pytest

from hubbub import worker as worker_module
from hubbub.worker import HOUSEKEEPING_INTERVAL, Worker

pytestmark = pytest.mark.django_db


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock(monkeypatch):
    clock = Clock()
    monkeypatch.setattr(worker_module.time, "monotonic", clock)
    return clock


def test_detection_runs_at_most_once_a_minute_and_drain_still_ends(monkeypatch, clock):
    runs = []
    monkeypatch.setattr(worker_module, "do_detect_spikes", lambda: runs.append(clock.now) or [])
    worker = Worker(poll=False)
    worker.drain()  # nothing pending: one step, and it returns
    worker.step()
    assert runs == [1000.0]
    clock.now += HOUSEKEEPING_INTERVAL - 1
    worker.step()
    assert len(runs) == 1
    clock.now += 1
    worker.step()
    assert len(runs) == 2


def test_a_failing_detector_does_not_stop_the_worker(monkeypatch, clock):
    def broken():
        raise RuntimeError("detector bug")

    monkeypatch.setattr(worker_module, "do_detect_spikes", broken)
    worker = Worker(poll=False)
    assert worker.step() == 0
    assert worker.drain().alerts == 0


def test_housekeeping_requeues_idle_cases_for_every_organization(monkeypatch, clock):
    from hubbub.accounts.actions import do_create_organization

    first, second = do_create_organization("A", "a"), do_create_organization("B", "b")
    asked = []
    monkeypatch.setattr(worker_module, "do_requeue_idle", lambda organization_id: asked.append(organization_id) or 2)
    worker = Worker(poll=False)
    worker.step()
    assert sorted(asked) == sorted([first.pk, second.pk]) and worker.tally.requeued == 4
    worker.step()  # not again within the minute
    assert len(asked) == 2
