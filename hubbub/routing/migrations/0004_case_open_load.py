"""An index on inbox_case for "next case"'s capacity check: the cases an agent holds open.

The capacity check counts an agent's open cases. The only index on the assignee holds every case
they were ever given, so the count read the whole history of the agent, a heap row per case:
8.5 ms per "next case" for an agent with 5,000 resolved cases. This one holds assigned open
cases only, a few per agent, with the organization, so the count reads no closed history.

Created with SQL and no model state, like case_routing_queue (migration 0002) and for the same
reason: routing owns the query it serves. CONCURRENTLY on PostgreSQL, so adding it to a large live
table does not block writes.
"""

from django.db import migrations

NAME = "case_open_load"
COLUMNS = "(assignee_id, organization_id)"
CONDITION = "status IN ('new', 'open', 'pending_customer') AND assignee_id IS NOT NULL"


def create(apps, schema_editor):
    concurrently = "CONCURRENTLY " if schema_editor.connection.vendor == "postgresql" else ""
    schema_editor.execute(f"CREATE INDEX {concurrently}IF NOT EXISTS {NAME} ON inbox_case {COLUMNS} WHERE {CONDITION}")


def drop(apps, schema_editor):
    concurrently = "CONCURRENTLY " if schema_editor.connection.vendor == "postgresql" else ""
    schema_editor.execute(f"DROP INDEX {concurrently}IF EXISTS {NAME}")


class Migration(migrations.Migration):
    # CREATE INDEX CONCURRENTLY cannot run inside a transaction.
    atomic = False

    dependencies = [("routing", "0003_push_mode")]

    operations = [migrations.RunPython(create, drop)]
