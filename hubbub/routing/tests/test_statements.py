"""The hand-out's SQL (hubbub.routing.postgres) and the index it reads, without a database."""

from __future__ import annotations

import importlib
import itertools

from psycopg._queries import MAX_CACHED_STATEMENT_LENGTH

from hubbub.inbox.models import WORKING_STATUSES
from hubbub.routing import postgres

index = importlib.import_module("hubbub.routing.migrations.0002_case_routing_queue")


def test_every_skill_variant_stays_short_enough_for_psycopgs_parse_cache():
    # Past the limit psycopg parses the statement afresh on every call, which costs more Python
    # than the rest of "next case".
    for languages, certified, topics in itertools.product([[], ["en"]], [False, True], [[], ["complaint"]]):
        sql, _ = postgres._hand_out(postgres._skill_conditions(languages, certified, topics))
        assert len(sql) <= MAX_CACHED_STATEMENT_LENGTH - 200, len(sql)
        assert "--" not in sql and "  " not in sql


def test_the_routing_queue_index_holds_exactly_the_working_statuses():
    # The generic plan uses case_routing_queue only if the statement's status list implies the
    # index's condition.
    expected = f"status IN {postgres._statuses(WORKING_STATUSES)} AND assignee_id IS NULL"
    assert expected == index.CONDITION
