"""A playbook dry run over a week of traffic: 50,000 opening posts through a 30-rule draft.

    .venv/bin/python bench/dry_run.py [--posts 50000] [--database-url postgres://postgres@127.0.0.1:5432/x]

Fills a fresh database (SQLite in a temporary directory by default; with --database-url, a
throw-away PostgreSQL database `hubbub_bench_dry_run` on that server) with N cases opened over the
last seven days on a daily rhythm, each with its opening post and, for most, a brand reply and a
follow-up, written from phrase pools (complaints, questions, praise, sales leads, legal threats,
outages, staff matters, press) with the understanding a pipeline would have stored (intent,
sentiment, severity, labels, language, reach, private data, listening matches). The running set is
a 30-rule intake playbook plus sales and legal department playbooks; the draft changes six intake
rules. Times `do_dry_run()` end to end (the same call the Dry run button makes: load the posts,
route each through both sets, count), then each half alone.
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import random
import sys
import tempfile
import time
from pathlib import Path

DATABASE = "hubbub_bench_dry_run"

PRODUCTS = ["router", "X200 phone", "smart kettle", "fibre plan", "laptop", "app", "card", "account", "parcel"]
POOLS: dict[str, list[str]] = {
    "complaint": [
        "My {p} stopped working after two days and nobody answers my emails",
        "Third time my {p} order is late, really disappointed with @brand",
        "Charged twice for the {p}, I want a refund now",
        "Your {p} is a joke, worst customer service ever",
        "Still waiting on a replacement {p}, this is unacceptable",
    ],
    "question": [
        "Does the {p} work with older models? Can't find it in the FAQ",
        "How do I reset my {p}? The manual is unclear",
        "When will the new {p} be back in stock?",
        "Is there a student discount on the {p}?",
    ],
    "praise": [
        "Loving my new {p}, setup took two minutes!",
        "Shout out to the support team, fixed my {p} in no time",
        "Best {p} I have owned, thank you @brand",
    ],
    "sales_lead": [
        "Looking to buy 40 {p}s for our office, who do I talk to?",
        "Do you offer enterprise pricing on the {p}? We need a quote",
        "Interested in a contract for {p} across our stores",
    ],
    "legal_threat": [
        "If my {p} is not refunded I will see you in court",
        "My lawyer will be in touch about the faulty {p}",
        "Reporting you to the regulator over the {p} billing",
    ],
    "other": [
        "Anyone else seeing the {p} outage in Leeds? Service is down",
        "Your employee was rude to me in the store about my {p}",
        "Journalist here, writing a piece on the {p} recall, can you comment?",
        "Are you hiring? Would love to work for you",
        "lol the {p} ad on TV",
    ],
}
INTENT_WEIGHTS = {"complaint": 35, "question": 25, "praise": 12, "sales_lead": 8, "legal_threat": 2, "other": 18}
SENTIMENT = {"complaint": "negative", "legal_threat": "negative", "praise": "positive"}
LANGUAGES = ["en"] * 8 + ["fr", "de", "es"]
NETWORKS = ["mastodon", "twitter", "bluesky", "rss", "email"]


def playbook(changed: bool) -> str:
    """A 30-rule intake playbook; `changed` is the draft, with six rules edited."""
    rules = [
        ("Legal threats", "intent: legal_threat", "department: legal, priority: urgent, first_response_minutes: 30"),
        ("Regulator", "terms: [regulator, ombudsman]", "department: legal, priority: urgent"),
        ("Private data", "private_data: true", "priority: urgent, first_response_minutes: 15, private: true"),
        ("Outages", "terms: [outage, 'is down', 'not working']", "department: operations, priority: high"),
        ("Recall watch", "listening: [Recall]", "department: operations, priority: urgent, escalate: true"),
        ("Staff", "terms: [your employee, rude, hiring, work for you]", "department: hr, priority: high"),
        ("Press", "labels: [press]", "department: marketing, priority: high, notify: [legal]"),
        ("Enterprise", "terms: [enterprise, contract, quote]", "department: sales, priority: high"),
        ("Leads", "intent: sales_lead", "department: sales, priority: high, tags: [lead]"),
        ("Big angry", "{sentiment: negative, min_followers: 10000}", "priority: urgent, first_response_minutes: 15"),
        ("Blame", "min_severity: 4", "priority: urgent, tags: [blame]"),
        ("Accusation", "min_severity: 3", "priority: high, tags: [accusation]"),
        ("Refunds", "terms: [refund, charged twice, money back]", "priority: high, tags: [billing]"),
        ("Late orders", "terms: [late, still waiting, never arrived]", "priority: high, tags: [delivery]"),
        ("French", "language: fr", "tags: [fr], first_response_minutes: 120"),
        ("German", "language: de", "tags: [de], first_response_minutes: 120"),
        ("Spanish", "language: es", "tags: [es], first_response_minutes: 120"),
        ("Email", "channel: email", "first_response_minutes: 240, next_response_minutes: 480"),
        ("Feeds", "channel: rss", "priority: low, first_response_minutes: 480"),
        ("Mastodon complaints", "{channel: mastodon, intent: complaint}", "priority: high, tags: [fediverse]"),
        ("Bluesky complaints", "{channel: bluesky, intent: complaint}", "priority: high, tags: [bluesky]"),
        ("Influencers", "min_followers: 50000", "priority: high, tags: [influencer]"),
        ("Small accounts", "max_followers: 10", "priority: low"),
        ("Feature requests", "labels: [feature_request]", "department: product, priority: normal"),
        ("Resets", "terms: [reset, manual, setup]", "tags: [how-to]"),
        ("Stock", "terms: [in stock, back in stock]", "department: sales, priority: normal"),
        ("Discounts", "terms: [discount, student]", "department: sales, priority: low"),
        ("Complaints", "intent: complaint", "priority: high, first_response_minutes: 30"),
        ("Questions", "intent: question", "priority: normal, first_response_minutes: 60"),
        ("Praise", "intent: praise", "department: marketing, priority: low, first_response_minutes: 240"),
    ]
    if changed:
        rules[3] = (rules[3][0], rules[3][1], "department: operations, priority: urgent, first_response_minutes: 20")
        rules[7] = (rules[7][0], rules[7][1], "department: sales, priority: urgent, requires_approval: true")
        rules[12] = (rules[12][0], "terms: [refund, charged twice, money back, chargeback]", "department: sales")
        rules[14] = (rules[14][0], rules[14][1], "department: customer-service, tags: [fr], resolution_minutes: 2880")
        rules[27] = (rules[27][0], rules[27][1], "priority: normal, first_response_minutes: 45")
        rules[29] = (rules[29][0], rules[29][1], "department: marketing, priority: low, tags: [praise]")
    lines = ["default: {department: customer-service, priority: normal, first_response_minutes: 60}", "rules:"]
    for name, when, then in rules:
        when = when if when.startswith("{") else "{" + when + "}"
        lines.append(f"  - {{name: {name}, when: {when}, then: {{{then}}}}}")
    assert len(rules) == 30
    return "\n".join(lines) + "\n"


SALES = """
rules:
  - name: Contracts are legal's
    when: {terms: [contract]}
    then: {department: legal, tags: [contract]}
  - name: Big orders
    when: {terms: [office, stores]}
    then: {priority: urgent, first_response_minutes: 15}
"""
LEGAL = "default: {requires_approval: true, tags: [legal]}\n"


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--posts", type=int, default=50_000)
    parser.add_argument("--database-url", help="postgres://… (default: SQLite in a temporary directory)")
    args = parser.parse_args()
    os.environ["HUBBUB_VAR_DIR"] = tempfile.mkdtemp(prefix="hubbub-bench-")
    if args.database_url:
        base = args.database_url.rsplit("/", 1)[0]
        _recreate_postgres_database(base)
        os.environ["HUBBUB_DATABASE_URL"] = f"{base}/{DATABASE}"
    else:
        os.environ.pop("HUBBUB_DATABASE_URL", None)
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "hubbub.settings")
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    import django

    django.setup()
    from django.core.management import call_command
    from django.db import connection
    from django.utils import timezone

    call_command("migrate", verbosity=0)
    started = time.perf_counter()
    org = _fill(args.posts)
    print(f"{connection.vendor}: filled {args.posts:,} cases in {time.perf_counter() - started:.1f} s")

    from hubbub.lib.playbook import dry_run
    from hubbub.playbook.actions import active_playbook, candidate_set, do_dry_run, replayed_posts

    draft = playbook(changed=True)
    do_dry_run(org, draft, None)  # warm: compile the running set once, as a web process would have
    started = time.perf_counter()
    report = do_dry_run(org, draft, None)
    total = time.perf_counter() - started
    print(
        f"dry run, 30-rule draft vs running set: {report.posts:,} posts in {total:.2f} s "
        f"({report.posts / total:,.0f} posts/s); {report.changed:,} would change "
        f"({sum(report.moved.values()):,} moved, {sum(report.priorities.values()):,} priority, "
        f"{sum(report.sla.values()):,} SLA targets)"
    )
    since = timezone.now() - dt.timedelta(days=7)
    started = time.perf_counter()
    posts = list(replayed_posts(org.pk, since))
    loaded = time.perf_counter() - started
    running = active_playbook(org.pk)[1]
    candidate = candidate_set(org, draft, None)
    started = time.perf_counter()
    dry_run(posts, running, candidate)
    routed = time.perf_counter() - started
    print(f"  of which: load {loaded:.2f} s, route both sets and compare {routed:.2f} s")


def _recreate_postgres_database(base_url: str) -> None:
    import psycopg

    with psycopg.connect(f"{base_url}/postgres", autocommit=True) as connection:
        connection.execute(f"DROP DATABASE IF EXISTS {DATABASE}")
        connection.execute(f"CREATE DATABASE {DATABASE}")


def _fill(count: int):
    from django.db import transaction
    from django.utils import timezone

    from hubbub.accounts.actions import do_create_organization
    from hubbub.connectors.models import SocialAccount
    from hubbub.db import db_value, insert_rows
    from hubbub.inbox.models import Case, Customer, Identity, Message
    from hubbub.playbook.actions import do_publish_playbook

    org = do_create_organization("Bench", "bench")
    do_publish_playbook(org, playbook(changed=False))
    do_publish_playbook(org, SALES, department=org.departments.get(slug="sales"))
    do_publish_playbook(org, LEGAL, department=org.departments.get(slug="legal"))
    accounts = {
        network: SocialAccount.objects.create(organization=org, network=network, handle=f"brand-{network}").pk
        for network in NETWORKS
    }
    departments = dict(org.departments.values_list("slug", "id"))
    rng = random.Random(5)
    now = timezone.now()
    customers = max(1, count // 3)
    with transaction.atomic():
        insert_rows(
            Customer,
            ("organization", "display_name", "tier", "created_at"),
            ((org.pk, f"Customer {n}", "standard", db_value(now)) for n in range(customers)),
        )
        first_customer = Customer.objects.filter(organization=org).order_by("id").values_list("id", flat=True)[0]
        followers = [int(rng.paretovariate(1.2) * 40) for _ in range(customers)]
        insert_rows(
            Identity,
            ("organization", "customer", "network", "handle", "display_name", "external_id", "followers", "updated_at"),
            (
                (org.pk, first_customer + n, "mastodon", f"user{n}", f"User {n}", "", followers[n], db_value(now))
                for n in range(customers)
            ),
        )
        intents = list(INTENT_WEIGHTS)
        weights = list(INTENT_WEIGHTS.values())
        cases = []
        texts = []
        for _ in range(count):
            intent = rng.choices(intents, weights)[0]
            text = rng.choice(POOLS[intent]).format(p=rng.choice(PRODUCTS))
            if rng.random() < 0.03:
                text += f" my account number is {rng.randint(10**7, 10**8)}"
            texts.append(text)
            # A daily rhythm: most posts in the day, few at night.
            day = rng.randint(0, 6)
            hour = min(23, max(0, int(rng.gauss(14, 4))))
            opened = (now - dt.timedelta(days=day)).replace(hour=hour, minute=rng.randint(0, 59))
            opened = min(opened, now - dt.timedelta(minutes=rng.randint(1, 60)))
            labels = {intent: 0.8} if intent != "other" else {}
            if "Journalist" in text:
                labels["press"] = 0.7
            if rng.random() < 0.05:
                labels["feature_request"] = 0.6
            network = rng.choice(NETWORKS)
            customer = rng.randrange(customers)
            cases.append(
                Case(
                    organization_id=org.pk,
                    department_id=departments["customer-service"],
                    account_id=accounts[network],
                    customer_id=first_customer + customer,
                    status="open",
                    priority=3,
                    subject=text[:280],
                    intent=intent,
                    intent_confidence=0.8,
                    labels=labels,
                    sentiment=SENTIMENT.get(intent, "neutral"),
                    severity=rng.choice([0, 0, 1, 2, 3, 4]) if intent in ("complaint", "legal_threat") else 0,
                    language=rng.choice(LANGUAGES),
                    private_data=["account_number"] if "account number" in text else [],
                    listening=["Recall"] if "recall" in text else [],
                    reach=followers[customer],
                    opened_at=opened,
                    last_message_at=opened,
                )
            )
        Case.objects.bulk_create(cases, batch_size=2000)
        rows = Case.objects.filter(organization=org).order_by("id").values_list("id", "account_id", "opened_at")
        messages = []
        for (case_id, account_id, opened), text in zip(rows, texts, strict=True):
            messages.append(
                Message(case_id=case_id, account_id=account_id, direction="in", text=text, created_at=opened)
            )
            if rng.random() < 0.6:
                later = opened + dt.timedelta(minutes=rng.randint(5, 300))
                messages.append(
                    Message(
                        case_id=case_id, account_id=account_id, direction="out", text="Sorry, DM us", created_at=later
                    )
                )
                messages.append(
                    Message(
                        case_id=case_id,
                        account_id=account_id,
                        direction="in",
                        text="Sent you a DM",
                        created_at=later + dt.timedelta(minutes=3),
                    )
                )
        Message.objects.bulk_create(messages, batch_size=2000)
    return org


if __name__ == "__main__":
    main()
