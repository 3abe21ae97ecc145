""""Next case" latency with a million open cases and 50 agents asking at once, on PostgreSQL.

    HUBBUB_DATABASE_URL=postgres://postgres@127.0.0.1:5432/hubbub \
        .venv/bin/python bench/next_case.py [--cases 1000000] [--agents 50] [--asks 40]

Drops and creates a throw-away database `hubbub_bench_routing` on that server, migrates it, and
fills it with generate_series (one INSERT … SELECT per table, no Python loop): N working,
unassigned cases over the seven departments, with priorities, SLA due times, languages, intents
and two networks, plus past replies by the agents so that stickiness is in play. Then A agent
processes (each its own connection, several departments each, some with language or channel
skills) call do_next_case() K times each: by default in K rounds, all A agents asking at the same
moment (they meet at a barrier before each round: the target's "50 agents asking at once");
with --back-to-back each agent asks again as soon as it has its case, a saturation test far
beyond a contact centre's pace (A agents x hundreds of asks a minute). Prints p50/p95/p99 of the
calls (also without each connection's first call, which pays for a new backend's caches and for
preparing the statements; the web server keeps its connections, see CONN_MAX_AGE in settings),
the CPU each call cost in the agent process and in its PostgreSQL backend (read from /proc, so
only when the server runs on this machine), and checks in the database that no case went to two
agents.

All A calls of a round share the cores: on a machine doing nothing else the slowest call of a
round takes about agents x CPU per call / cores, which the script also prints, so that a run on a
busy shared machine still says what the code costs.
"""

from __future__ import annotations

import argparse
import multiprocessing
import os
import statistics
import sys
import time
from pathlib import Path

DATABASE = "hubbub_bench_routing"


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--cases", type=int, default=1_000_000)
    parser.add_argument("--agents", type=int, default=50)
    parser.add_argument("--asks", type=int, default=40, help="next-case requests per agent")
    parser.add_argument("--reuse", action="store_true", help="keep the filled database of the last run")
    parser.add_argument("--database", default=DATABASE, help="the throw-away database's name")
    parser.add_argument(
        "--back-to-back",
        action="store_true",
        help="each agent asks again as soon as it has its case (saturation), instead of all at once, round by round",
    )
    args = parser.parse_args()
    url = os.environ.get("HUBBUB_DATABASE_URL", "")
    if not url.startswith(("postgres://", "postgresql://")):
        sys.exit("set HUBBUB_DATABASE_URL=postgres://…: this benchmark measures PostgreSQL")
    base = url.rsplit("/", 1)[0]
    if not args.database.replace("_", "").isalnum():
        sys.exit("--database: letters, digits and underscores only")
    os.environ["HUBBUB_DATABASE_URL"] = f"{base}/{args.database}"
    if not args.reuse:
        _recreate_database(base, args.database)
    _setup_django()
    from django.core.management import call_command

    if not args.reuse:
        call_command("migrate", verbosity=0)
        started = time.perf_counter()
        _fill(args.cases, args.agents)
        print(f"filled {args.cases:,} open cases in {time.perf_counter() - started:.0f} s")
    else:
        _reset_assignments()
    memberships = _memberships(args.agents)

    from django.db import connections

    connections.close_all()  # each agent process opens its own connection
    context = multiprocessing.get_context("fork")
    barrier = context.Barrier(len(memberships))
    results = context.Queue()
    workers = [
        context.Process(target=_agent, args=(pk, args.asks, barrier, results, args.back_to_back)) for pk in memberships
    ]
    started = time.perf_counter()
    for worker in workers:
        worker.start()
    latencies: list[float] = []
    later: list[float] = []  # all but each connection's first call
    handed: list[int] = []
    refusals: dict[str, int] = {}
    client_cpu = server_cpu = 0.0
    for _ in workers:
        times, cases, refused, cpu, backend_cpu = results.get(timeout=600)
        client_cpu += cpu
        server_cpu += backend_cpu
        latencies += times
        later += times[1:]
        handed += cases
        for reason, count in refused.items():
            refusals[reason] = refusals.get(reason, 0) + count
    for worker in workers:
        worker.join()
    wall = time.perf_counter() - started
    print("agents asked back to back" if args.back_to_back else f"{args.asks} rounds, all agents asking at once")
    _report(latencies, later, handed, refusals, wall, len(memberships))
    calls = max(len(latencies), 1)
    client_ms, server_ms = client_cpu / calls * 1000, server_cpu / calls * 1000
    print(
        f"CPU per call: client (Django) {client_ms:.2f} ms, server (PostgreSQL backend) {server_ms:.2f} ms; "
        f"load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores"
    )
    # Each call waits for the other agents' calls to get the CPU: on an otherwise idle machine the
    # slowest call of a round (and the median of back-to-back asks) is about agents x CPU per call / cores.
    quiet = len(memberships) * (client_ms + server_ms) / (os.cpu_count() or 1)
    print(f"expected on an idle machine (agents x CPU per call / cores): {quiet:.0f} ms")


def _setup_django() -> None:
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "hubbub.settings")
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    import django

    django.setup()


def _recreate_database(base_url: str, name: str) -> None:
    import psycopg

    with psycopg.connect(f"{base_url}/postgres", autocommit=True) as connection:
        connection.execute(f"DROP DATABASE IF EXISTS {name}")
        connection.execute(f"CREATE DATABASE {name}")


def _constant_columns(model, generated: set[str]) -> tuple[list[str], list]:
    """Every other column of the model with its default, so columns added later still load."""
    from django.db import connection

    template = model()
    columns, values = [], []
    for field in model._meta.concrete_fields:
        if field.primary_key or field.attname in generated:
            continue
        columns.append(connection.ops.quote_name(field.column))
        values.append(field.get_db_prep_save(getattr(template, field.attname), connection))
    return columns, values


def _fill(count: int, agents: int) -> None:
    from django.contrib.auth.models import User
    from django.db import connection, transaction

    from hubbub.accounts.actions import do_add_member, do_create_organization
    from hubbub.accounts.models import Availability, Membership
    from hubbub.connectors.models import Network, SocialAccount
    from hubbub.inbox.models import Case, Customer, Message

    org = do_create_organization("Bench", "bench")
    mastodon = SocialAccount.objects.create(organization=org, network=Network.MASTODON, handle="bench")
    twitter = SocialAccount.objects.create(organization=org, network=Network.TWITTER, handle="bench")
    departments = list(org.departments.order_by("id").values_list("id", flat=True))
    slugs = list(org.departments.order_by("id").values_list("slug", flat=True))
    customers = count // 4
    with transaction.atomic(), connection.cursor() as cursor:
        columns, values = _constant_columns(Customer, {"organization_id", "display_name"})
        cursor.execute(
            f"INSERT INTO inbox_customer (organization_id, display_name, {', '.join(columns)}) "  # noqa: S608
            f"SELECT %s, 'customer ' || g, {', '.join(['%s'] * len(values))} "
            "FROM generate_series(1::bigint, %s::bigint) g",
            [org.pk, *values, customers],
        )
        cursor.execute("SELECT min(id) FROM inbox_customer")
        first_customer = cursor.fetchone()[0]
        generated = {
            "organization_id",
            "department_id",
            "account_id",
            "customer_id",
            "status",
            "priority",
            "subject",
            "intent",
            "language",
            "opened_at",
            "last_message_at",
            "first_response_due_at",
        }
        columns, values = _constant_columns(Case, generated)
        # Spread like a real queue: mostly normal priority, due times over the next few days (some
        # already breached), a tenth in French, a third on X, a mix of intents.
        cursor.execute(
            f"""
            INSERT INTO inbox_case (organization_id, department_id, account_id, customer_id, status, priority,
                subject, intent, language, opened_at, last_message_at, first_response_due_at, {", ".join(columns)})
            SELECT %s, (%s::bigint[])[1 + g %% %s],
                CASE WHEN g %% 3 = 0 THEN %s ELSE %s END,
                %s + (g * 7919) %% %s,
                CASE WHEN g %% 2 = 0 THEN 'new' ELSE 'open' END,
                (ARRAY[1, 2, 2, 3, 3, 3, 3, 4])[1 + (g * 104729) %% 8],
                'case ' || g || ': my order has not arrived',
                (ARRAY['complaint', 'question', 'praise', 'other'])[1 + g %% 4],
                CASE WHEN g %% 10 = 0 THEN 'fr' ELSE 'en' END,
                now() - ((g * 31) %% 10080) * interval '1 minute',
                now() - ((g * 31) %% 10080) * interval '1 minute',
                now() + (((g * 7907) %% 5760) - 720) * interval '1 minute',
                {", ".join(["%s"] * len(values))}
            FROM generate_series(1::bigint, %s::bigint) g
            """,  # noqa: S608
            [org.pk, departments, len(departments), twitter.pk, mastodon.pk, first_customer, customers, *values, count],
        )
    users = []
    for n in range(agents):
        user = User.objects.create_user(f"agent{n}", password="x")
        # Each agent works two or three departments, customer service most of all.
        chosen = [slugs[0], slugs[1 + n % (len(slugs) - 1)]] + ([slugs[2 + n % 5]] if n % 3 == 0 else [])
        membership = do_add_member(org, user, "agent", chosen)
        membership.availability = Availability.ONLINE
        membership.capacity = 10_000
        membership.languages = ["en"] if n % 4 == 1 else []
        membership.channels = ["mastodon"] if n % 5 == 2 else []
        membership.save()
        users.append(user.pk)
    # Past replies by the agents, so that some customers are sticky to one of them.
    with transaction.atomic(), connection.cursor() as cursor:
        columns, values = _constant_columns(
            Message, {"case_id", "account_id", "direction", "author_user_id", "text", "created_at"}
        )
        cursor.execute(
            f"""
            INSERT INTO inbox_message (case_id, account_id, direction, author_user_id, text, created_at,
                {", ".join(columns)})
            SELECT c.id, c.account_id, 'out', (%s::bigint[])[1 + (c.id / 200) %% %s], 'we are on it',
                now() - interval '1 day', {", ".join(["%s"] * len(values))}
            FROM inbox_case c WHERE c.id %% 200 = 0
            """,  # noqa: S608
            [users, len(users), *values],
        )
        # A raw INSERT skips Message.save, which keeps each customer's last agent: set it here.
        cursor.execute(
            """
            UPDATE inbox_customer cu SET last_agent_id = latest.author_user_id, last_answered_at = latest.created_at
            FROM (
                SELECT DISTINCT ON (c.customer_id) c.customer_id, m.author_user_id, m.created_at
                FROM inbox_message m JOIN inbox_case c ON c.id = m.case_id
                WHERE m.direction = 'out' AND m.author_user_id IS NOT NULL
                ORDER BY c.customer_id, m.created_at DESC, m.id DESC
            ) AS latest
            WHERE cu.id = latest.customer_id
            """
        )
        cursor.execute("ANALYZE")
    assert Membership.objects.filter(availability=Availability.ONLINE).count() == agents
    assert Case.objects.count() == count


def _reset_assignments() -> None:
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute("UPDATE inbox_case SET assignee_id = NULL WHERE assignee_id IS NOT NULL")
        cursor.execute("DELETE FROM routing_assignment")


def _memberships(agents: int) -> list[int]:
    from hubbub.accounts.models import Membership

    return list(Membership.objects.order_by("id").values_list("pk", flat=True)[:agents])


def _agent(membership_id: int, asks: int, barrier, results, back_to_back: bool) -> None:
    from hubbub.accounts.models import Membership
    from hubbub.routing.actions import RoutingError, do_next_case

    membership = Membership.objects.get(pk=membership_id)
    backend = _backend_cpu_reader()
    times: list[float] = []
    cases: list[int] = []
    refused: dict[str, int] = {}
    barrier.wait()
    cpu_started = time.process_time()
    backend_started = backend()
    for ask in range(asks):
        if ask and not back_to_back:
            barrier.wait()  # the next round: every agent asks at the same moment again
        started = time.perf_counter()
        try:
            cases.append(do_next_case(membership).case_id)
        except RoutingError as error:
            refused[str(error)] = refused.get(str(error), 0) + 1
        times.append((time.perf_counter() - started) * 1000)
    results.put((times, cases, refused, time.process_time() - cpu_started, backend() - backend_started))


def _backend_cpu_reader():
    """A function giving the CPU seconds this connection's PostgreSQL backend has used so far
    (from /proc when the server runs on this machine, else always 0)."""
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_backend_pid()")
        (pid,) = cursor.fetchone()
    path = Path(f"/proc/{pid}/stat")
    ticks = os.sysconf("SC_CLK_TCK")

    def read() -> float:
        try:
            fields = path.read_text().rsplit(")", 1)[1].split()
        except OSError:
            return 0.0
        return (int(fields[11]) + int(fields[12])) / ticks  # utime, stime

    return read


def _percentiles(latencies: list[float]) -> str:
    latencies = sorted(latencies)

    def pct(p: float) -> float:
        return latencies[min(len(latencies) - 1, int(len(latencies) * p))]

    return (
        f"p50 {statistics.median(latencies):.1f} ms  p95 {pct(0.95):.1f} ms  "
        f"p99 {pct(0.99):.1f} ms  max {latencies[-1]:.1f} ms"
    )


def _report(
    latencies: list[float], later: list[float], handed: list[int], refusals: dict[str, int], wall: float, agents: int
) -> None:
    from django.db import connection

    print(f"{agents} agents, {len(latencies):,} next-case calls in {wall:.1f} s ({len(latencies) / wall:.0f}/s)")
    print(f"latency {_percentiles(latencies)}")
    # A connection's first call also fills the new backend's catalog caches and prepares the
    # statements: one call in `asks`, which a web process's persistent connection pays once.
    if later:
        print(f"latency without each connection's first call {_percentiles(later)}")
    with connection.cursor() as cursor:
        cursor.execute("SELECT count(*), count(DISTINCT case_id) FROM routing_assignment")
        assignments, distinct_cases = cursor.fetchone()
        cursor.execute("SELECT count(*) FROM inbox_case WHERE assignee_id IS NOT NULL")
        (assigned,) = cursor.fetchone()
    twice = len(handed) - len(set(handed))
    print(
        f"handed out {len(handed):,}; handed twice: {twice}; assignments {assignments:,} "
        f"for {distinct_cases:,} distinct cases; cases with an assignee {assigned:,}"
    )
    if refusals:
        print("refused:", refusals)
    if twice or assignments != distinct_cases or assigned != len(handed):
        sys.exit("FAIL: a case was handed to two agents")


if __name__ == "__main__":
    main()
