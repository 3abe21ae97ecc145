"""The real `hubbub` processes: import with a progress bar, a worker that stops cleanly on SIGTERM,
and a worker whose streams survive SIGKILL without losing or doubling a post."""

import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest

from hubbub.connectors.bluesky.connector import forget_sessions
from hubbub.testing.fake_bluesky import FakeBluesky
from hubbub.testing.fake_x import FakeX

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


ACCOUNTS_SCRIPT = """
import datetime as dt
import json
from django.utils import timezone
from hubbub.accounts.actions import do_create_organization
from hubbub.connectors.models import SocialAccount
spec = json.loads({spec!r})
org = do_create_organization("Acme", "acme")
for fields in spec:
    credentials = fields.pop("credentials")
    # Polling is put off so that only the streams bring posts in during the test.
    account = SocialAccount(organization=org, next_poll_at=timezone.now() + dt.timedelta(days=1), **fields)
    account.credentials = credentials
    account.save()
    print(account.network, account.pk)
"""


def stored_ids(tmp_path, network):
    with sqlite3.connect(tmp_path / "hubbub.sqlite3") as db:
        rows = db.execute(
            "select e.external_id from connectors_inboundevent e join connectors_socialaccount a on a.id = e.account_id"
            " where a.network = ? order by e.id",
            (network,),
        ).fetchall()
    return [row[0] for row in rows]


def stream_cursor(tmp_path, network, key):
    with sqlite3.connect(tmp_path / "hubbub.sqlite3") as db:
        (cursor,) = db.execute("select cursor from connectors_socialaccount where network = ?", (network,)).fetchone()
    return json.loads(cursor).get(key)


def wait_for(condition, what, timeout=60):
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.1)


def start_worker(env, log_path):
    log = log_path.open("a")
    return subprocess.Popen(
        [sys.executable, "-m", "hubbub", "worker"], env=env, stdout=log, stderr=subprocess.STDOUT, text=True
    )


def test_a_worker_killed_mid_stream_loses_and_doubles_no_post(env, tmp_path):
    """SIGKILL between checkpoints, posts sent while it is down, a redelivery: every post stored once."""
    env["HUBBUB_ALLOW_PRIVATE_URLS"] = "1"
    log_path = tmp_path / "worker.log"
    forget_sessions()
    with FakeX(keepalive_interval=0.1) as x, FakeBluesky() as bsky:
        spec = [
            {
                "network": "twitter",
                "handle": "brand",
                "base_url": x.url,
                "settings": {"listening_via": "stream", "listening_rules": {"brand": "brand"}},
                "credentials": x.credentials(),
            },
            {
                "network": "bluesky",
                "handle": "brand.test",
                "base_url": bsky.url,
                "settings": {"did": bsky.brand["did"], "jetstream_url": bsky.jetstream_url},
                "credentials": {"app_password": bsky.password},
            },
        ]
        created = hubbub(env, "shell", "-c", ACCOUNTS_SCRIPT.format(spec=json.dumps(spec)))
        assert created.returncode == 0, created.stderr
        # A drain must end, so it never starts the streams.
        drained = hubbub(env, "worker", "--drain", "--no-progress")
        assert drained.returncode == 0, drained.stderr
        assert x.stream_connections == 0 and not bsky.jetstream.connects

        tweets: list[str] = []
        skeets: list[str] = []

        def send(count, start):
            for n in range(start, start + count):
                tweets.append(x.add_tweet(f"brand order {n} is late", username=f"user{n}")["id"])
                skeets.append(bsky.add_post(f"@brand.test parcel {n} lost", handle=f"user{n}.test")["uri"])
            x.add_tweet("nothing about us", username="eve")
            bsky.add_post("nothing about us either", handle="eve.test")

        worker = start_worker(env, log_path)
        try:
            assert x.wait_for_stream(1, timeout=60), log_path.read_text()
            wait_for(lambda: bsky.jetstream.connects, "the Jetstream connection")
            send(5, 0)
            wait_for(lambda: len(stored_ids(tmp_path, "twitter")) == 5, "the first X posts")
            wait_for(lambda: len(stored_ids(tmp_path, "bluesky")) == 5, "the first Bluesky posts")
            send(5, 5)
            wait_for(lambda: len(stored_ids(tmp_path, "twitter")) > 5, "a post of the second batch")
            worker.send_signal(signal.SIGKILL)  # no checkpoint, no goodbye
            worker.wait(timeout=30)
        finally:
            worker.kill()

        send(5, 10)  # while nobody listens: X must recover them by search, Jetstream replays them
        x.redeliver_on_reconnect(3)  # and X sends the last three again on the new connection
        worker = start_worker(env, log_path)
        try:
            wait_for(lambda: len(stored_ids(tmp_path, "twitter")) == 15, "every X post after the restart")
            wait_for(lambda: len(stored_ids(tmp_path, "bluesky")) == 15, "every Bluesky post after the restart")
            # More posts on the live connections, after the replays: they come through too.
            send(2, 15)
            wait_for(lambda: len(stored_ids(tmp_path, "twitter")) == 17, "the live X posts")
            wait_for(lambda: len(stored_ids(tmp_path, "bluesky")) == 17, "the live Bluesky posts")
            worker.send_signal(signal.SIGTERM)
            worker.wait(timeout=60)
        finally:
            worker.kill()
        output = log_path.read_text()
        assert worker.returncode == 0, output
        assert x.stream_connections >= 2
        # The posts sent while it was down came back by X's recent search and Jetstream's replay.
        assert x.api_requests("GET", "/2/tweets/search/recent")
        assert all("cursor" in query for query in bsky.jetstream.connects)

    assert sorted(stored_ids(tmp_path, "twitter"), key=int) == tweets
    assert sorted(stored_ids(tmp_path, "bluesky")) == sorted(skeets)
    # Stopped cleanly: each cursor covers the newest post, so the next start replays nothing new.
    assert stream_cursor(tmp_path, "twitter", "stream")["since_id"] == tweets[-1]
    assert stream_cursor(tmp_path, "bluesky", "jetstream") == bsky.events[-1]["time_us"]
    assert "worker stopped" in output


def test_stream_command_runs_the_streams_alone_and_stops_cleanly(env, tmp_path):
    env["HUBBUB_ALLOW_PRIVATE_URLS"] = "1"
    with FakeX(keepalive_interval=0.1) as x:
        spec = [
            {
                "network": "twitter",
                "handle": "brand",
                "base_url": x.url,
                "settings": {"listening_via": "stream", "listening_rules": {"brand": "brand"}},
                "credentials": x.credentials(),
            }
        ]
        assert hubbub(env, "shell", "-c", ACCOUNTS_SCRIPT.format(spec=json.dumps(spec))).returncode == 0
        streams = subprocess.Popen(
            [sys.executable, "-m", "hubbub", "stream", "--refresh", "0.5"],
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        try:
            assert x.wait_for_stream(1, timeout=60)
            tweet = x.add_tweet("brand refund please", username="amy")["id"]
            wait_for(lambda: stored_ids(tmp_path, "twitter") == [tweet], "the streamed post")
            streams.send_signal(signal.SIGTERM)
            output, _ = streams.communicate(timeout=60)
        finally:
            streams.kill()
    assert streams.returncode == 0, output
    assert "streams stopped" in output
    # It stores raw events only: turning them into cases is the worker's job.
    assert count(tmp_path, "select count(*) from connectors_inboundevent where state='pending'") == 1
    assert stream_cursor(tmp_path, "twitter", "stream")["since_id"] == tweet
