"""An index on inbox_case for routing's queue: unassigned working cases only, in queue order.

The inbox's case_queue index holds every working case, assigned or not, so each "next case" had to
step over all the cases agents already hold at the head of a department's queue (heap fetches,
thousands of them on a busy day). This one holds only what routing hands out: a claimed case leaves
it, and the scan stops at the first free case.

It is created here, with SQL and no model state, because routing owns the query it serves and the
inbox's models and migrations belong to the inbox. If the inbox ever declares the same index in
Case.Meta, drop this one in the same change. On PostgreSQL it is built CONCURRENTLY, so adding it to
a large live table does not block writes.
"""

from django.db import migrations

NAME = "case_routing_queue"
COLUMNS = "(department_id, priority, first_response_due_at, id)"
CONDITION = "status IN ('new', 'open') AND assignee_id IS NULL"


def create(apps, schema_editor):
    concurrently = "CONCURRENTLY " if schema_editor.connection.vendor == "postgresql" else ""
    schema_editor.execute(f"CREATE INDEX {concurrently}IF NOT EXISTS {NAME} ON inbox_case {COLUMNS} WHERE {CONDITION}")


def drop(apps, schema_editor):
    concurrently = "CONCURRENTLY " if schema_editor.connection.vendor == "postgresql" else ""
    schema_editor.execute(f"DROP INDEX {concurrently}IF EXISTS {NAME}")


class Migration(migrations.Migration):
    # CREATE INDEX CONCURRENTLY cannot run inside a transaction.
    atomic = False

    dependencies = [
        ("routing", "0001_assignment"),
        ("inbox", "0004_case_understanding"),
    ]

    operations = [migrations.RunPython(create, drop)]
