"""The real `hubbub` processes: import with a progress bar, a worker that stops cleanly on SIGTERM."""

import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest

FIXTURE = Path(__file__).parents[2] / "connectors" / "twcs" / "tests" / "fixtures" / "sample.csv"
pytestmark = pytest.mark.sqlite_only


def hubbub(env, *args, **kwargs):
    return subprocess.run(
        [sys.executable, "-m", "hubbub", *args], env=env, capture_output=True, text=True, timeout=120, **kwargs
    )


@pytest.fixture
def env(tmp_path):
    environment = {k: v for k, v in os.environ.items() if not k.startswith("HUBBUB_")}
    environment["HUBBUB_VAR_DIR"] = str(tmp_path)
    environment.pop("DJANGO_SETTINGS_MODULE", None)
    assert hubbub(environment, "migrate", "-v0").returncode == 0
    return environment


def count(tmp_path, sql):
    with sqlite3.connect(tmp_path / "hubbub.sqlite3") as db:
        return db.execute(sql).fetchone()[0]


def test_import_reports_what_it_did_and_refuses_a_missing_file(env, tmp_path):
    result = hubbub(env, "import", str(FIXTURE))
    assert result.returncode == 0, result.stderr
    assert "9 rows read, 8 new events stored on 2 accounts" in result.stdout
    assert "line 11: no tweet_id" in result.stderr  # the file line, counting the quoted line break
    assert "rows/s" in result.stderr  # the progress bar
    missing = hubbub(env, "import", str(tmp_path / "nope.csv"))
    assert missing.returncode != 0 and "no such file" in missing.stderr


def test_worker_drains_then_stops_cleanly_on_sigterm(env, tmp_path):
    assert hubbub(env, "import", str(FIXTURE), "--no-progress").returncode == 0
    worker = subprocess.Popen(
        [sys.executable, "-m", "hubbub", "worker"], env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
    )
    try:
        deadline = time.monotonic() + 60
        while count(tmp_path, "select count(*) from connectors_inboundevent where state='pending'"):
            assert time.monotonic() < deadline, "the worker did not process the imported events"
            time.sleep(0.2)
        worker.send_signal(signal.SIGTERM)
        output, _ = worker.communicate(timeout=30)
    finally:
        worker.kill()
    assert worker.returncode == 0, output
    assert "worker stopped" in output
    assert count(tmp_path, "select count(*) from inbox_case") == 3
    assert count(tmp_path, "select count(*) from connectors_inboundevent where state='failed'") == 1
