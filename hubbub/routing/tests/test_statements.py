"""The hand-out's SQL (hubbub.routing.postgres) and the index it reads, without a database."""

from __future__ import annotations

import importlib

import pytest
from psycopg._queries import MAX_CACHED_STATEMENT_LENGTH

from hubbub.inbox.models import OPEN_STATUSES, WORKING_STATUSES
from hubbub.routing import actions, postgres

index = importlib.import_module("hubbub.routing.migrations.0002_case_routing_queue")
load_index = importlib.import_module("hubbub.routing.migrations.0004_case_open_load")


def test_the_statement_stays_short_enough_for_psycopgs_parse_cache():
    # Past the limit psycopg parses the statement afresh on every call, which costs more Python
    # than the rest of "next case".
    *statements, _ = postgres._statements(actions.STICKY_WINDOW, actions.STICKY_HOLD, actions.STICKY_CUSTOMERS)
    for sql in statements:
        assert len(sql) <= MAX_CACHED_STATEMENT_LENGTH - 200, len(sql)
        assert "--" not in sql and "  " not in sql


def test_only_constants_become_literals():
    assert postgres._statuses(WORKING_STATUSES) == "('new', 'open')"
    with pytest.raises(ValueError, match="not a constant"):
        postgres._literal("x'; DROP TABLE inbox_case; --")


def test_the_routing_queue_index_holds_exactly_the_working_statuses():
    # The generic plan uses case_routing_queue only if the statement's status list implies the
    # index's condition.
    expected = f"status IN {postgres._statuses(WORKING_STATUSES)} AND assignee_id IS NULL"
    assert expected == index.CONDITION


def test_the_load_index_holds_exactly_the_open_statuses():
    # The capacity check's count reads case_open_load only if its status list implies the index's
    # condition (the assignee it counts is never NULL).
    assert f"status IN {postgres._statuses(OPEN_STATUSES)} AND assignee_id IS NOT NULL" == load_index.CONDITION
