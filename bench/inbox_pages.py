"""Server time of the queue page and the case page with many cases.

    .venv/bin/python bench/inbox_pages.py --cases 100000 [--requests 300]
    HUBBUB_DATABASE_URL=postgres://... .venv/bin/python bench/inbox_pages.py --cases 100000

Fills a fresh database (SQLite in a temporary directory unless HUBBUB_DATABASE_URL is set;
PostgreSQL gets a throw-away database `hubbub_bench`) with N cases of 3 messages each, spread
over the seven departments, then times requests through Django's full stack (middleware,
session, authorisation, template) with the test client, as an agent of one department.
"""

import argparse
import datetime as dt
import os
import random
import statistics
import sys
import tempfile
import time
from pathlib import Path


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--cases", type=int, default=100_000)
    parser.add_argument("--requests", type=int, default=300)
    args = parser.parse_args()
    os.environ["HUBBUB_VAR_DIR"] = tempfile.mkdtemp(prefix="hubbub-bench-")
    if os.environ.get("HUBBUB_DATABASE_URL"):
        base = os.environ["HUBBUB_DATABASE_URL"].rsplit("/", 1)[0]
        os.environ["HUBBUB_DATABASE_URL"] = f"{base}/hubbub_bench"
        _recreate_postgres_database(base)
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "hubbub.settings")
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    import django

    django.setup()
    from django.conf import settings
    from django.core.management import call_command

    settings.ALLOWED_HOSTS = ["testserver"]
    call_command("migrate", verbosity=0)
    case_ids, agent = _fill(args.cases)

    from django.test import Client

    client = Client()
    client.force_login(agent)
    rng = random.Random(1)
    pages = {
        "queue page": lambda: "/",
        "queue rows (htmx refresh)": lambda: "/queue/rows/",
        "case page": lambda: f"/cases/{rng.choice(case_ids)}/",
    }
    for name, url in pages.items():
        for _ in range(10):  # warm caches and connections
            client.get(url())
        times = []
        for _ in range(args.requests):
            target = url()
            started = time.perf_counter()
            response = client.get(target)
            times.append((time.perf_counter() - started) * 1000)
            assert response.status_code == 200, (target, response.status_code)
        times.sort()
        p99 = times[int(len(times) * 0.99) - 1]
        print(f"{name:28} n={len(times)}  p50 {statistics.median(times):6.1f} ms  p99 {p99:6.1f} ms")


def _recreate_postgres_database(base_url: str) -> None:
    import psycopg

    with psycopg.connect(f"{base_url}/postgres", autocommit=True) as connection:
        connection.execute("DROP DATABASE IF EXISTS hubbub_bench")
        connection.execute("CREATE DATABASE hubbub_bench")


def _fill(count: int):
    from django.contrib.auth.models import User
    from django.db import transaction
    from django.utils import timezone

    from hubbub.accounts.actions import do_add_member, do_create_organization
    from hubbub.connectors.models import Network, SocialAccount
    from hubbub.db import db_value, insert_rows
    from hubbub.inbox.models import Case, Customer, Identity, Message

    started = time.perf_counter()
    org = do_create_organization("Bench", "bench")
    agent = User.objects.create_user("agent", password="x")
    do_add_member(org, agent, "agent", ["customer-service"])
    account = SocialAccount.objects.create(organization=org, network=Network.MASTODON, handle="bench")
    departments = list(org.departments.values_list("id", flat=True))
    rng = random.Random(7)
    now = timezone.now()
    customers = count // 2
    with transaction.atomic():
        insert_rows(
            Customer,
            ("organization", "display_name", "tier", "created_at"),
            ((org.pk, f"Customer {n}", "standard", db_value(now)) for n in range(customers)),
        )
        first_customer = Customer.objects.order_by("id").values_list("id", flat=True).first()
        insert_rows(
            Identity,
            ("organization", "customer", "network", "handle", "display_name", "external_id", "followers", "updated_at"),
            (
                (
                    org.pk,
                    first_customer + n,
                    "mastodon",
                    f"user{n}",
                    f"User {n}",
                    "",
                    rng.randint(0, 50000),
                    db_value(now),
                )
                for n in range(customers)
            ),
        )
        statuses = ["new", "open", "open", "pending_customer", "resolved", "closed"]
        intents = ["complaint", "question", "praise", "other"]
        case_fields = (
            "organization",
            "department",
            "account",
            "customer",
            "status",
            "priority",
            "subject",
            "intent",
            "intent_confidence",
            "sentiment",
            "sentiment_score",
            "language",
            "private_data",
            "reach",
            "playbook_rule",
            "labels",
            "sentiment_confidence",
            "severity",
            "severity_confidence",
            "needs_triage",
            "listening",
            "tags",
            "requires_approval",
            "priority_overridden",
            "opened_at",
            "last_message_at",
            "first_response_due_at",
            "sla_channel",
            "sla_paused_seconds",
            "sla_flag",
            "resolution_due_at",
            "reply_templates",
            "reply_privately",
        )
        rows = []
        for n in range(count):
            opened = now - dt.timedelta(minutes=rng.randint(0, 60 * 24 * 30))
            rows.append(
                (
                    org.pk,
                    rng.choice(departments),
                    account.pk,
                    first_customer + n % customers,
                    rng.choice(statuses),
                    rng.randint(1, 4),
                    f"case {n}: my order has not arrived <b>yet</b>",
                    rng.choice(intents),
                    0.8,
                    "negative",
                    -0.5,
                    "en",
                    "[]",
                    rng.randint(0, 50000),
                    "default",
                    '{"complaint": 0.8}',
                    0.7,
                    rng.randint(0, 4),
                    0.6,
                    rng.random() < 0.05,
                    "[]",
                    '["billing"]',
                    False,
                    False,
                    db_value(opened),
                    db_value(opened),
                    db_value(opened + dt.timedelta(hours=1)),
                    "public",
                    0,
                    rng.choice(["", "", "", "warning", "breached"]),
                    db_value(opened + dt.timedelta(days=1)),
                    "[]",
                    False,
                )
            )
        insert_rows(Case, case_fields, rows)
        case_ids = list(Case.objects.filter(department=departments[0]).values_list("id", flat=True))
        all_ids = Case.objects.values_list("id", "customer_id")
        message_fields = (
            "case",
            "account",
            "direction",
            "visibility",
            "external_id",
            "text",
            "html",
            "url",
            "classification",
            "created_at",
            "identity",
        )
        insert_rows(
            Message,
            message_fields,
            (
                (
                    case_id,
                    account.pk,
                    "in" if m != 1 else "out",
                    "public",
                    f"{case_id}-{m}",
                    f"message {m} of case {case_id}",
                    "",
                    "",
                    "{}",
                    db_value(now),
                    None,
                )
                for case_id, _ in all_ids
                for m in range(3)
            ),
        )
    from django.db import connection

    with connection.cursor() as cursor:
        # What autovacuum (PostgreSQL) or a periodic ANALYZE (SQLite) would have done by now.
        cursor.execute("ANALYZE")
    print(f"filled {count:,} cases, {count * 3:,} messages in {time.perf_counter() - started:.0f} s")
    return case_ids, agent


if __name__ == "__main__":
    main()
