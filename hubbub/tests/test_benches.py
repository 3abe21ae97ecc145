"""The benchmarks under bench/ still run, at a tiny size: they fill their databases with raw
INSERTs, so a new NOT NULL column breaks them without any other test noticing (the customer tier
column did). Nothing here is timed; the figures come from running them at full size."""

from __future__ import annotations

import csv
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def run_bench(*args: str, database_url: str | None = None) -> str:
    env = {
        key: value for key, value in os.environ.items() if key not in ("HUBBUB_DATABASE_URL", "DJANGO_SETTINGS_MODULE")
    }
    if database_url:
        env["HUBBUB_DATABASE_URL"] = database_url
    done = subprocess.run(
        [sys.executable, *args], cwd=ROOT, env=env, capture_output=True, text=True, timeout=600, check=False
    )
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-4000:]
    return done.stdout


@pytest.mark.sqlite_only
def test_the_inbox_pages_bench_runs():
    out = run_bench("bench/inbox_pages.py", "--cases", "200", "--requests", "3")
    assert "queue page" in out and "case page" in out


@pytest.mark.sqlite_only
def test_the_dry_run_bench_runs():
    out = run_bench("bench/dry_run.py", "--posts", "300")
    assert "300 posts in" in out


@pytest.mark.sqlite_only
def test_the_import_and_drain_bench_runs(tmp_path):
    path = tmp_path / "twcs.csv"
    with path.open("w", newline="") as file:
        writer = csv.writer(file)
        writer.writerow(
            ["tweet_id", "author_id", "inbound", "created_at", "text", "response_tweet_id", "in_response_to_tweet_id"]
        )
        writer.writerow(["1", "115712", "True", "Tue Oct 31 22:10:47 +0000 2017", "@acme my parcel is late", "2", ""])
        writer.writerow(["2", "AcmeHelp", "False", "Tue Oct 31 22:12:00 +0000 2017", "Sorry! DM us", "", "1"])
    out = run_bench("bench/import_drain.py", str(path), "--repeat", "1")
    assert "2 rows -> 2 events -> 1 cases, 2 messages" in out


@pytest.mark.sqlite_only
def test_the_listening_bench_runs():
    out = run_bench("bench/listening.py", "--queries", "50", "--posts", "500", "--repeat", "1")
    assert "posts/s" in out


@pytest.mark.skipif(not os.environ.get("HUBBUB_DATABASE_URL"), reason="measures PostgreSQL")
def test_the_next_case_bench_runs():
    out = run_bench(
        "bench/next_case.py",
        "--cases",
        "2000",
        "--agents",
        "3",
        "--asks",
        "3",
        "--database",
        "hubbub_bench_routing_smoke",  # not the full-size one a benchmark may --reuse
        database_url=os.environ["HUBBUB_DATABASE_URL"],
    )
    assert "handed twice: 0" in out
