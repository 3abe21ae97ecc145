"""Plain INSERTs for the two hot paths (storing raw events, writing messages).

Django's bulk_create builds a model instance and prepares every value through its field
per row, which is most of the time spent on an import; these paths write tuples instead.
"""

from __future__ import annotations

import datetime as dt
import enum
import json
from collections.abc import Iterable, Sequence
from typing import Any

from django.db import connection
from django.db.models import Model


def insert_rows(
    model: type[Model], fields: Sequence[str], rows: Iterable[Sequence[Any]], ignore_conflicts: bool = False
) -> int:
    """INSERT rows (values in `fields` order, prepared by `db_value`). Returns how many were inserted."""
    rows = list(rows)
    if not rows:
        return 0
    quote = connection.ops.quote_name
    columns = ", ".join(quote(model._meta.get_field(name).column) for name in fields)
    placeholders = ", ".join(["%s"] * len(fields))
    # Names come from model metadata, values go as parameters: nothing user-typed is spliced in.
    sql = f"INSERT INTO {quote(model._meta.db_table)} ({columns}) VALUES ({placeholders})"  # noqa: S608
    if ignore_conflicts:
        # Both SQLite and PostgreSQL skip a row that breaks a unique constraint with this.
        sql += " ON CONFLICT DO NOTHING"
    with connection.cursor() as cursor:
        cursor.executemany(sql, rows)
        return cursor.rowcount


def db_value(value: Any) -> Any:
    """A Python value as the database driver takes it for our column types."""
    kind = type(value)
    if kind is str or kind is int or kind is float or kind is bool or value is None:
        return value
    if isinstance(value, enum.Enum):
        return value.value
    if isinstance(value, dt.datetime):
        if connection.vendor == "sqlite":
            # Django's own format for SQLite: naive UTC as "YYYY-MM-DD HH:MM:SS[.ffffff]".
            if value.tzinfo is not None:
                value = value.astimezone(dt.UTC).replace(tzinfo=None)
            return str(value)
        return value
    if isinstance(value, dict | list):
        return json.dumps(value, ensure_ascii=False)
    return value


def insert_objects(objects: Sequence[Model], chunk: int = 500) -> None:
    """INSERT unsaved model instances and set their ids, like bulk_create without its per-value overhead."""
    if not objects:
        return
    meta = objects[0]._meta
    fields = [f for f in meta.concrete_fields if not f.primary_key]
    relations = [f for f in fields if f.is_relation]
    # Only these column types need converting; strings, numbers and choices go to the driver as they are.
    converted = [f.get_internal_type() in ("DateTimeField", "JSONField") for f in fields]
    quote = connection.ops.quote_name
    columns = ", ".join(quote(f.column) for f in fields)
    row = "(" + ", ".join(["%s"] * len(fields)) + ")"
    for start in range(0, len(objects), chunk):
        part = objects[start : start + chunk]
        params: list[Any] = []
        for obj in part:
            # A related object saved earlier in the batch: copy its new id onto the foreign key.
            cached = obj._state.fields_cache
            for field in relations:
                related = cached.get(field.name)
                if related is not None and getattr(obj, field.attname) is None:
                    if related.pk is None:
                        raise ValueError(f"{field.name} of {obj!r} is not saved yet")
                    setattr(obj, field.attname, related.pk)
            for field, convert in zip(fields, converted, strict=True):
                value = getattr(obj, field.attname)
                params.append(db_value(value) if convert else value)
        sql = (
            f"INSERT INTO {quote(meta.db_table)} ({columns}) VALUES {', '.join([row] * len(part))} "  # noqa: S608
            f"RETURNING {quote(meta.pk.column)}"
        )
        with connection.cursor() as cursor:
            cursor.execute(sql, params)
            ids = [r[0] for r in cursor.fetchall()]
        # Both databases return the ids in the order of the VALUES rows (Django's bulk_create relies on it too).
        for obj, pk in zip(part, ids, strict=True):
            obj.pk = pk
            obj._state.adding = False
            obj._state.db = connection.alias
