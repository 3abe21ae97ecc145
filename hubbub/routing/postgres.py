"""The "next case" hand-out on PostgreSQL: two prepared statements, no model instances.

Many agents ask at once, so the hand-out is kept to what the database must do plus a few
microseconds of Python (bench/next_case.py: 50 agents on 2 cores wait on each other's CPU):

1. LOCK_AGENT locks the agent's membership row (one request per agent at a time, so two clicks
   cannot both pass the capacity check) and reads their availability, capacity, skills and
   departments (and the accounts on the networks they are certified for). It also sets, for the
   transaction only, JIT off (the planner's cost estimate for a million-case queue crosses the
   JIT threshold, and compiling the plan takes far longer than running it) and generic plans
   for prepared statements (planning HAND_OUT cost as much as running it; the statuses are
   literals so that the generic plan still reads the partial index case_routing_queue).
2. HAND_OUT, a new statement and so, under READ COMMITTED, a snapshot taken after that lock,
   counts the agent's open cases, picks (sticky customer first, then the heads of their
   departments' queues read in index order with FOR UPDATE SKIP LOCKED, so agents asking at once
   lock different cases instead of waiting), claims the case with a conditional UPDATE, and
   writes the routing Assignment and the audit event, all in the one round trip.

Both are prepared on the connection (psycopg's prepare=True on a server-binding cursor: Django's
own cursors bind client-side and never prepare), so PostgreSQL plans each once per connection.
The portable ORM version in actions.py makes the same choice; the tests run against both.
"""

from __future__ import annotations

import re
import time
from datetime import datetime
from functools import cache

import psycopg
from django.db import connection, models

from hubbub.accounts.models import Availability, Membership, Role
from hubbub.governance.models import AuditEvent
from hubbub.inbox.models import OPEN_STATUSES, WORKING_STATUSES, CaseStatus, Direction
from hubbub.routing.models import Assignment

LOCK_AGENT = """
SELECT set_config('jit', 'off', true), set_config('plan_cache_mode', 'force_generic_plan', true),
    m.user_id, m.organization_id, m.availability, m.capacity,
    ARRAY(SELECT jsonb_array_elements_text(m.languages)),
    ARRAY(SELECT a.id FROM connectors_socialaccount a WHERE a.organization_id = m.organization_id
          AND a.network IN (SELECT jsonb_array_elements_text(m.channels))),
    jsonb_array_length(m.channels) > 0,
    ARRAY(SELECT jsonb_array_elements_text(m.topics)),
    ARRAY(SELECT d.id FROM accounts_department d WHERE d.organization_id = m.organization_id AND (
        m.role = %(admin)s
        OR d.id IN (SELECT md.department_id FROM accounts_membership_departments md WHERE md.membership_id = m.id)
    ) ORDER BY d.id)
FROM accounts_membership m WHERE m.id = %(membership)s
FOR UPDATE OF m
"""

# The agent who last replied to the customer of case `c`, within the sticky window.
_LAST_AGENT = """(
    SELECT msg.author_user_id FROM inbox_message msg JOIN inbox_case answered ON answered.id = msg.case_id
    WHERE answered.customer_id = c.customer_id AND answered.organization_id = %(organization)s
      AND msg.direction = %(outbound)s AND msg.author_user_id IS NOT NULL AND msg.created_at >= %(sticky_since)s
    ORDER BY msg.created_at DESC, msg.id DESC LIMIT 1)"""


def _statuses(statuses) -> str:
    """A status list as SQL literals: the planner must see the values to use a partial index
    (case_routing_queue) in a generic plan. They are the model's constants, never input."""
    if not all(str(status).replace("_", "").isalpha() for status in statuses):
        raise ValueError(f"not a status: {statuses!r}")
    return "(" + ", ".join(f"'{status}'" for status in statuses) + ")"


# Unassigned and waiting for an agent: exactly the rows of the case_routing_queue index (migration 0002).
_WORKABLE = (
    f"c.organization_id = %(organization)s AND c.status IN {_statuses(WORKING_STATUSES)} AND c.assignee_id IS NULL"
)
# Nothing is picked, or locked, once the agent holds their capacity: an InitPlan evaluated once.
_ROOM = "(SELECT n FROM load) < %(capacity)s"

_HAND_OUT = f"""
WITH load AS (
    SELECT count(*) AS n FROM inbox_case
    WHERE organization_id = %(organization)s AND assignee_id = %(user)s AND status IN {_statuses(OPEN_STATUSES)}
), sticky AS (
    -- The agent's own customers: those of their latest replies whose last answer was theirs.
    SELECT c.id, c.priority, c.first_response_due_at, 0 AS rank FROM inbox_case c
    WHERE {_ROOM} AND c.department_id = ANY(%(departments)s::bigint[]) AND {_WORKABLE} {{skills}}
      AND c.customer_id IN (
          -- Several replies in one conversation look its case up once.
          SELECT answered.customer_id FROM (SELECT DISTINCT latest.case_id FROM (
              SELECT msg.case_id FROM inbox_message msg
              WHERE msg.author_user_id = %(user)s AND msg.direction = %(outbound)s
                AND msg.created_at >= %(sticky_since)s
              ORDER BY msg.created_at DESC LIMIT %(sticky_customers)s
          ) AS latest) AS replies JOIN inbox_case answered ON answered.id = replies.case_id
          WHERE answered.organization_id = %(organization)s)
      AND {_LAST_AGENT} = %(user)s
    ORDER BY c.priority, c.first_response_due_at, c.id
    LIMIT 1 FOR UPDATE OF c SKIP LOCKED
), heads AS (
    -- Each department's queue in index order; cases a while held for another online agent's
    -- customer are passed over.
    SELECT head.*, 1 AS rank FROM unnest(%(departments)s::bigint[]) AS departments(id) CROSS JOIN LATERAL (
        SELECT c.id, c.priority, c.first_response_due_at FROM inbox_case c
        WHERE {_ROOM} AND c.department_id = departments.id AND {_WORKABLE} {{skills}}
          AND NOT (c.last_message_at > %(hold_since)s AND COALESCE({_LAST_AGENT} IN (
              SELECT user_id FROM accounts_membership WHERE organization_id = %(organization)s
                AND availability = %(online)s AND id <> %(membership)s), FALSE))
        ORDER BY c.priority, c.first_response_due_at, c.id
        LIMIT 1 FOR UPDATE OF c SKIP LOCKED
    ) AS head
), best AS (
    SELECT id, rank FROM (SELECT * FROM sticky UNION ALL SELECT * FROM heads) AS candidates
    ORDER BY rank, priority, first_response_due_at, id LIMIT 1
), taken AS (
    UPDATE inbox_case SET assignee_id = %(user)s, status = %(open)s FROM best
    WHERE inbox_case.id = best.id AND inbox_case.assignee_id IS NULL
    RETURNING inbox_case.id, best.rank
), spell AS (
    -- A spell the inbox ended (unassigned by hand) but requeue has not closed yet makes this a
    -- no-op; the caller then closes that spell and writes this one.
    INSERT INTO routing_assignment ({{spell_columns}}) SELECT {{spell_values}} FROM taken
    ON CONFLICT (case_id) WHERE released_at IS NULL DO NOTHING
    RETURNING case_id
), audit AS (
    INSERT INTO governance_auditevent ({{audit_columns}}) SELECT {{audit_values}} FROM taken
)
SELECT (SELECT n FROM load), taken.id, taken.rank, EXISTS (SELECT FROM spell)
FROM (VALUES (1)) AS one LEFT JOIN taken ON TRUE
"""  # noqa: S608 - fixed fragments only; every value is a parameter

# Whether anything the agent may work is unassigned, locked or not (read without locking).
_STILL_WAITING = f"""
SELECT EXISTS (
    SELECT FROM inbox_case c WHERE c.department_id = ANY(%(departments)s::bigint[]) AND {_WORKABLE} {{skills}}
)"""  # noqa: S608 - fixed fragments only; every value is a parameter

_ROUTE = "CASE taken.rank WHEN 0 THEN 'sticky' ELSE 'queue' END"


def _insert(model: type[models.Model], given: dict[str, str]) -> tuple[str, str, list[models.Field]]:
    """Column list and SELECT list for a raw INSERT of `model`: the `given` SQL expressions,
    and a parameter (filled with the field's default) for every other column, so that a column
    someone adds to the model later still gets its value."""
    columns, values, defaulted = [], [], []
    for field in model._meta.concrete_fields:
        if field.primary_key and field.attname not in given:
            continue
        columns.append(connection.ops.quote_name(field.column))
        if field.attname in given:
            values.append(given[field.attname])
        else:
            # Typed, as INSERT … SELECT does not infer a parameter's type from its column.
            values.append(f"CAST(%(default_{field.attname})s AS {field.cast_db_type(connection)})")
            defaulted.append(field)
    return ", ".join(columns), ", ".join(values), defaulted


@cache
def _hand_out(skills: str) -> tuple[str, list[models.Field]]:
    spell_columns, spell_values, spell_defaults = _insert(
        Assignment,
        {
            "organization_id": "%(organization)s",
            "case_id": "taken.id",
            "user_id": "%(user)s",
            "assigned_at": "%(now)s",
            "route": _ROUTE,
        },
    )
    audit_columns, audit_values, audit_defaults = _insert(
        AuditEvent,
        {
            "organization_id": "%(organization)s",
            "actor_id": "%(user)s",
            "action": "'case.routed'",
            "target_type": "'case'",
            "target_id": "taken.id::text",
            "data": f"jsonb_build_object('route', {_ROUTE})",
            "created_at": "%(now)s",
        },
    )
    sql = _HAND_OUT.format(
        skills=skills,
        spell_columns=spell_columns,
        spell_values=spell_values,
        audit_columns=audit_columns,
        audit_values=audit_values,
    )
    return _compact(sql), spell_defaults + audit_defaults


def _compact(sql: str) -> str:
    """Without comments and needless spaces: psycopg caches its parse of a statement only up to
    4 KB (MAX_CACHED_STATEMENT_LENGTH), and parsing this one afresh cost more Python than the
    rest of the call. (No string literal here holds a space next to punctuation.)"""
    sql = " ".join(re.sub(r"--[^\n]*", "", sql).split())
    return re.sub(r" ?([(),=<>]) ?", r"\1", sql)


def _skill_conditions(languages: list[str], certified: bool, topics: list[str]) -> str:
    # Unlabelled cases (no language or intent detected) stay workable by everyone.
    skills = []
    if languages:
        skills.append("AND (c.language = ANY(%(languages)s::text[]) OR c.language = '')")
    if certified:
        # Only agents trained for a public channel may post on it: the accounts on their networks.
        skills.append("AND c.account_id = ANY(%(accounts)s::bigint[])")
    if topics:
        skills.append("AND (c.intent = ANY(%(topics)s::text[]) OR c.intent = '')")
    return " ".join(skills)


_NEVER = 2**31
# How often "next case" looks again when everything it could take was locked by other requests.
HAND_OUT_ATTEMPTS = 3
RETRY_PAUSE = 0.005  # seconds, times the attempt


class Refusal(Exception):
    """Why nothing was handed out: "away", "capacity", "departments" or "empty"."""

    def __init__(self, reason: str, capacity: int = 0):
        super().__init__(reason)
        self.reason = reason
        self.capacity = capacity


_FIXED = {
    "admin": Role.ADMIN.value,
    "open": CaseStatus.OPEN.value,
    "online": Availability.ONLINE.value,
    "outbound": Direction.OUTBOUND.value,
}


def hand_out(
    membership_id: int, now: datetime, *, sticky_window, sticky_hold, sticky_customers: int
) -> tuple[int, int, int, str, bool]:
    """Pick and claim a case for the agent inside the caller's transaction.

    Returns (case id, organization id, user id, route, spell written); raises Refusal when there
    is none to give.
    """
    connection.ensure_connection()
    raw = connection.connection
    if raw.prepare_threshold is None:
        # Django turns psycopg's prepared statements off (for connection poolers that predate
        # protocol-level prepares). A threshold no statement reaches prepares only those asked
        # for with prepare=True, that is these two.
        raw.prepare_threshold = _NEVER
    # Django's cursors bind parameters client-side, which cannot prepare: this one binds them on
    # the server, on Django's connection and so in its transaction.
    with psycopg.Cursor(raw) as cursor:
        cursor.execute(LOCK_AGENT, {"membership": membership_id, "admin": _FIXED["admin"]}, prepare=True)
        agent = cursor.fetchone()
        if agent is None:
            raise Membership.DoesNotExist
        (_jit, _plans, user_id, organization_id, availability, capacity) = agent[:6]
        (languages, accounts, certified, topics, departments) = agent[6:]
        if availability != Availability.ONLINE:
            raise Refusal("away")
        if not departments:
            raise Refusal("departments")
        skills = _skill_conditions(languages, certified, topics)
        sql, defaulted = _hand_out(skills)
        params = {
            **_FIXED,
            "organization": organization_id,
            "membership": membership_id,
            "user": user_id,
            "capacity": capacity,
            "departments": departments,
            "languages": languages,
            "accounts": accounts,
            "topics": topics,
            "now": now,
            "sticky_since": now - sticky_window,
            "hold_since": now - sticky_hold,
            "sticky_customers": sticky_customers,
        }
        for field in defaulted:
            params[f"default_{field.attname}"] = field.get_db_prep_save(field.get_default(), connection)
        for attempt in range(1, HAND_OUT_ATTEMPTS + 1):
            cursor.execute(sql, params, prepare=True)
            load, case_id, rank, spell_written = cursor.fetchone()
            if case_id is not None or load >= capacity or attempt == HAND_OUT_ATTEMPTS:
                break
            # SKIP LOCKED passes over every case another request has locked, including the heads
            # of queues it locked but did not take. When the queue runs short that can be all
            # that is left: if a case they may work is still waiting, try again once those
            # requests have committed, rather than telling the agent there is none.
            cursor.execute(_STILL_WAITING.format(skills=skills), params, prepare=True)
            if not cursor.fetchone()[0]:
                break
            time.sleep(RETRY_PAUSE * attempt)
    if case_id is None:
        raise Refusal("capacity" if load >= capacity else "empty", capacity)
    return case_id, organization_id, user_id, "sticky" if rank == 0 else "queue", spell_written
