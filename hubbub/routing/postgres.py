"""The "next case" hand-out on PostgreSQL: two prepared statements sent in one round trip.

Many agents ask at once, so the hand-out is kept to what the database must do plus a few
microseconds of Python (bench/next_case.py: 50 agents on 2 cores wait on each other's CPU). Both
statements go out together in a psycopg pipeline; outside a transaction the pipeline is one
implicit transaction, committed by its Sync, so a call is one round trip with no BEGIN or COMMIT
(inside the caller's transaction it is just two more statements of it).

1. LOCK_AGENT locks the agent's membership row: one request per agent at a time, so two clicks
   cannot both pass the capacity check (and push skips an agent being handed a case). It also
   sets, for the transaction only, JIT off (the planner's cost estimate for a million-case queue
   crosses the JIT threshold, and compiling the plan takes far longer than running it) and
   generic plans for prepared statements (planning HAND_OUT cost as much as running it; the
   statuses are literals so that the generic plan still reads the partial indexes).
2. HAND_OUT is a statement of its own so that, under READ COMMITTED, its snapshot is taken once
   that lock is held and sees the cases the agent's previous request handed out (one statement
   takes its snapshot before it waits for a lock). It reads the agent (availability, capacity,
   departments, and the skills as SQL conditions, so that one statement text serves every agent),
   counts their open cases (case_open_load holds only those), and picks: their own customers first
   (Customer.last_agent, the agent's most recently answered customers), else, and only then, the
   heads of their departments' queues (case_routing_queue), each read in index order with FOR
   UPDATE SKIP LOCKED so that agents asking at once lock different cases instead of waiting;
   cases held a while for another online agent's customer are passed over. It claims the case
   with a conditional UPDATE, closes a spell the inbox ended but requeue has not, and writes the
   routing Assignment and the audit event.

Both are prepared on the connection (psycopg's prepare=True on a server-binding cursor: Django's
own cursors bind client-side and never prepare), so PostgreSQL plans each once per connection;
a rollback on the connection makes psycopg deallocate them, which is why a refusal commits
(nothing was written) instead of rolling back. STILL_WAITING, a third, runs only when every case
the agent could take was locked by others. The portable ORM version in actions.py makes the same
choices; the tests run against both.
"""

from __future__ import annotations

import re
import time
from datetime import datetime, timedelta
from functools import cache

import psycopg
from django.db import connection, models
from psycopg.types.numeric import Int8

from hubbub.accounts.models import Availability, Membership, Role
from hubbub.governance.models import AuditEvent
from hubbub.inbox.models import OPEN_STATUSES, WORKING_STATUSES, CaseStatus
from hubbub.routing.models import Assignment, ReleaseReason

LOCK_AGENT = """
SELECT set_config('jit', 'off', true), set_config('plan_cache_mode', 'force_generic_plan', true)
FROM accounts_membership WHERE id = %(membership)s
FOR UPDATE
"""


def _literal(value) -> str:
    """A model constant (status, role …) as an SQL literal: the planner must see the statuses to
    use a partial index (case_routing_queue) in a generic plan. Never input."""
    if not str(value).replace("_", "").isalpha():
        raise ValueError(f"not a constant: {value!r}")
    return f"'{value}'"


def _statuses(statuses) -> str:
    return "(" + ", ".join(_literal(status) for status in statuses) + ")"


# Unassigned and waiting for an agent: exactly the rows of the case_routing_queue index (migration 0002).
_WORKABLE = f"c.status IN {_statuses(WORKING_STATUSES)} AND c.assignee_id IS NULL"

# The agent, read (not locked: LOCK_AGENT holds the row) by both statements below. Each skill is
# NULL when the agent has none, which does not restrict, else the values allowed: their languages
# and topics plus '' (cases with no language or intent detected stay workable by everyone), and
# the accounts on the networks they are certified to post on publicly.
_AGENT = f"""agent AS (
    SELECT m.id, m.user_id, m.organization_id, m.availability = {_literal(Availability.ONLINE)} AS online,
        m.capacity, ARRAY(SELECT d.id FROM accounts_department d WHERE d.organization_id = m.organization_id AND (
            m.role = {_literal(Role.ADMIN)}
            OR d.id IN (SELECT md.department_id FROM accounts_membership_departments md WHERE md.membership_id = m.id)
        ) ORDER BY d.id) AS departments,
        CASE WHEN m.languages <> '[]' THEN ARRAY(SELECT jsonb_array_elements_text(m.languages || '[""]')) END
            AS languages,
        CASE WHEN m.channels <> '[]' THEN ARRAY(SELECT s.id FROM connectors_socialaccount s
            WHERE s.organization_id = m.organization_id AND m.channels ? s.network) END AS accounts,
        CASE WHEN m.topics <> '[]' THEN ARRAY(SELECT jsonb_array_elements_text(m.topics || '[""]')) END AS topics,
        %(now)s::timestamptz - {{window}} AS since
    FROM accounts_membership m WHERE m.id = %(membership)s
)"""  # noqa: S608 - fixed fragments only; every value is a parameter
_SKILLS = """AND COALESCE(c.language = ANY(a.languages), TRUE) AND COALESCE(c.account_id = ANY(a.accounts), TRUE)
    AND COALESCE(c.intent = ANY(a.topics), TRUE)"""

_HAND_OUT = f"""
WITH {_AGENT}, free AS (
    -- Nothing is picked, or locked, for an agent who is away or holds their capacity.
    SELECT * FROM agent a WHERE online AND (
        SELECT count(*) FROM inbox_case WHERE organization_id = a.organization_id AND assignee_id = a.user_id
            AND status IN {_statuses(OPEN_STATUSES)}
    ) < capacity
), sticky AS (
    -- The agent's own customers: those whose latest agent reply, within the window, was theirs
    -- (the organization's customers, so their cases are its cases). The agent joins from outside
    -- the locking query, which would otherwise copy the agent's row into every candidate row (for
    -- a recheck of the lock).
    SELECT s.* FROM free a CROSS JOIN LATERAL (
        SELECT c.id, c.priority, c.first_response_due_at, 0 AS rank FROM inbox_case c
        WHERE c.customer_id IN (
            SELECT cu.id FROM inbox_customer cu
            WHERE cu.last_agent_id = a.user_id AND cu.last_answered_at >= a.since
              AND cu.organization_id = a.organization_id
            ORDER BY cu.last_answered_at DESC LIMIT {{customers}}
        ) AND c.department_id = ANY(a.departments) AND {_WORKABLE} {_SKILLS}
        ORDER BY c.priority, c.first_response_due_at, c.id
        LIMIT 1 FOR UPDATE OF c SKIP LOCKED
    ) s
), heads AS (
    -- Only without a sticky case (so no queue head is locked for nothing): each department's queue
    -- in index order; cases a while held for another online agent's customer are passed over.
    SELECT head.*, 1 AS rank FROM free a CROSS JOIN LATERAL unnest(a.departments) AS departments(id)
    CROSS JOIN LATERAL (
        SELECT c.id, c.priority, c.first_response_due_at FROM inbox_case c
        WHERE NOT EXISTS (SELECT FROM sticky) AND c.department_id = departments.id
          AND c.organization_id = a.organization_id AND {_WORKABLE} {_SKILLS}
          AND NOT (c.last_message_at > %(now)s::timestamptz - {{hold}} AND COALESCE((
              SELECT cu.last_agent_id FROM inbox_customer cu
              WHERE cu.id = c.customer_id AND cu.last_answered_at >= a.since
          ) IN (
              SELECT user_id FROM accounts_membership WHERE organization_id = a.organization_id
                AND availability = {_literal(Availability.ONLINE)} AND id <> a.id
          ), FALSE))
        ORDER BY c.priority, c.first_response_due_at, c.id
        LIMIT 1 FOR UPDATE OF c SKIP LOCKED
    ) head
), best AS (
    SELECT id, rank FROM (SELECT * FROM sticky UNION ALL SELECT * FROM heads) candidates
    ORDER BY rank, priority, first_response_due_at, id LIMIT 1
), taken AS (
    UPDATE inbox_case t SET assignee_id = a.user_id, status = {_literal(CaseStatus.OPEN)} FROM best, agent a
    WHERE t.id = best.id AND t.assignee_id IS NULL
    RETURNING t.id, a.organization_id, a.user_id, CASE best.rank WHEN 0 THEN 'sticky' ELSE 'queue' END AS route
), ended AS (
    -- A spell the inbox ended (unassigned by hand) but requeue has not closed yet.
    UPDATE routing_assignment r SET released_at = %(now)s, release_reason = {_literal(ReleaseReason.DONE)} FROM taken
    WHERE r.case_id = taken.id AND r.released_at IS NULL
    RETURNING r.id
), spell AS (
    -- Waits for `ended` (an InitPlan runs it to the end first): the case's one active spell is new.
    INSERT INTO routing_assignment ({{spell_columns}}) SELECT {{spell_values}} FROM taken
    WHERE (SELECT count(*) FROM ended) >= 0
), audit AS (
    INSERT INTO governance_auditevent ({{audit_columns}}) SELECT {{audit_values}} FROM taken
)
SELECT agent.online, cardinality(agent.departments) > 0, agent.capacity, EXISTS (SELECT FROM free),
    taken.id, taken.route
FROM (VALUES (1)) one LEFT JOIN agent ON TRUE LEFT JOIN taken ON TRUE
"""  # noqa: S608 - fixed fragments only; every value is a parameter

# Whether anything the agent may work is unassigned, locked or not (read without locking).
_STILL_WAITING = f"""
WITH {_AGENT} SELECT EXISTS (
    SELECT FROM agent a JOIN inbox_case c ON c.department_id = ANY(a.departments)
    WHERE c.organization_id = a.organization_id AND {_WORKABLE} {_SKILLS}
)"""  # noqa: S608 - fixed fragments only; every value is a parameter


def _insert(model: type[models.Model], given: dict[str, str]) -> tuple[str, str, list[models.Field]]:
    """Column list and SELECT list for a raw INSERT of `model`: the `given` SQL expressions, and a
    parameter (filled with the field's default) for every other column but those that default to
    NULL, so that a column someone adds to the model later still gets its value."""
    columns, values, defaulted = [], [], []
    for field in model._meta.concrete_fields:
        if field.attname in given:
            values.append(given[field.attname])
        elif field.primary_key or (field.null and field.get_default() is None):
            continue
        else:
            # Typed, as INSERT … SELECT does not infer a parameter's type from its column.
            values.append(f"CAST(%(d_{field.attname})s AS {field.cast_db_type(connection)})")
            defaulted.append(field)
        columns.append(connection.ops.quote_name(field.column))
    return ", ".join(columns), ", ".join(values), defaulted


def _interval(span: timedelta) -> str:
    return f"'{int(span.total_seconds())}s'::interval"


@cache
def _statements(window: timedelta, hold: timedelta, customers: int) -> tuple[str, str, list[models.Field]]:
    """HAND_OUT, STILL_WAITING, and the fields whose defaults HAND_OUT's INSERTs take as parameters."""
    spell_columns, spell_values, spell_defaults = _insert(
        Assignment,
        {
            "organization_id": "taken.organization_id",
            "case_id": "taken.id",
            "user_id": "taken.user_id",
            "assigned_at": "%(now)s",
            "route": "taken.route",
        },
    )
    audit_columns, audit_values, audit_defaults = _insert(
        AuditEvent,
        {
            "organization_id": "taken.organization_id",
            "actor_id": "taken.user_id",
            "action": "'case.routed'",
            "target_type": "'case'",
            "target_id": "taken.id::text",
            "data": "jsonb_build_object('route', taken.route)",
            "created_at": "%(now)s",
        },
    )
    hand_out = _HAND_OUT.format(
        window=_interval(window),
        hold=_interval(hold),
        customers=int(customers),
        spell_columns=spell_columns,
        spell_values=spell_values,
        audit_columns=audit_columns,
        audit_values=audit_values,
    )
    still_waiting = _STILL_WAITING.format(window=_interval(window))
    return _compact(hand_out), _compact(still_waiting), spell_defaults + audit_defaults


def _compact(sql: str) -> str:
    """Without comments and needless spaces: psycopg caches its parse of a statement only up to
    4 KB (MAX_CACHED_STATEMENT_LENGTH), and parsing this one afresh cost more Python than the
    rest of the call. (No string literal here holds a space next to punctuation.)"""
    sql = " ".join(re.sub(r"--[^\n]*", "", sql).split())
    return re.sub(r" ?([(),=<>]) ?", r"\1", sql)


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


def hand_out(
    membership_id: int, now: datetime, *, sticky_window: timedelta, sticky_hold: timedelta, sticky_customers: int
) -> tuple[int, str]:
    """Pick and claim a case for the agent: in one implicit transaction of its own, or in the
    caller's transaction if there is one.

    Returns (case id, route); raises Refusal when there is none to give.
    """
    connection.ensure_connection()
    raw = connection.connection
    if raw.prepare_threshold is None:
        # Django turns psycopg's prepared statements off (for connection poolers that predate
        # protocol-level prepares). A threshold no statement reaches prepares only those asked
        # for with prepare=True, that is ours.
        raw.prepare_threshold = _NEVER
    sql, still_waiting, defaulted = _statements(sticky_window, sticky_hold, sticky_customers)
    # Int8: psycopg sends a small int as int2 and a larger one as int4, and each type would be a
    # statement of its own to prepare and plan.
    params = {"membership": Int8(membership_id), "now": now}
    for field in defaulted:
        params[f"d_{field.attname}"] = field.get_db_prep_save(field.get_default(), connection)
    # Django's cursors bind parameters client-side, which cannot prepare: this one binds them on
    # the server, on Django's connection and so in its transaction if it has one. Its errors are
    # turned into Django's, as a Django cursor's would be.
    with connection.wrap_database_errors, psycopg.Cursor(raw) as cursor:
        for attempt in range(1, HAND_OUT_ATTEMPTS + 1):
            with raw.pipeline():
                cursor.execute(LOCK_AGENT, params, prepare=True)
                cursor.execute(sql, params, prepare=True)
            online, departments, capacity, room, case_id, route = cursor.fetchone()
            if case_id is not None:
                return case_id, route
            if online is None:
                raise Membership.DoesNotExist
            if not online:
                raise Refusal("away")
            if not departments:
                raise Refusal("departments")
            if not room:
                raise Refusal("capacity", capacity)
            if attempt == HAND_OUT_ATTEMPTS:
                break
            # SKIP LOCKED passes over every case another request has locked, including the heads
            # of queues it locked but did not take. When the queue runs short that can be all
            # that is left: if a case they may work is still waiting, try again once those
            # requests have committed, rather than telling the agent there is none.
            cursor.execute(still_waiting, params, prepare=True)
            if not cursor.fetchone()[0]:
                break
            time.sleep(RETRY_PAUSE * attempt)
    raise Refusal("empty")
