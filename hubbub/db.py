"""Plain INSERTs for the two hot paths (storing raw events, writing messages), and a bulk `__in`.

Django's bulk_create builds a model instance and prepares every value through its field
per row, which is most of the time spent on an import; these paths write tuples instead.
"""

from __future__ import annotations

import datetime as dt
import enum
import json
from collections.abc import Callable, Iterable, Sequence
from typing import Any

from django.db import connection
from django.db.models import Field, Lookup, Model
from django.db.models.base import ModelState


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


# One encoder for every call: json.dumps(..., ensure_ascii=False) would build a new one each time.
_to_json = json.JSONEncoder(ensure_ascii=False).encode


def db_value(value: Any) -> Any:
    """A Python value as the database driver takes it for our column types (for a whole column of
    values, column_adapter is cheaper)."""
    return (_sqlite_value if connection.vendor == "sqlite" else _server_value)(value)


def _server_value(value: Any) -> Any:
    kind = type(value)
    if kind is str or kind is int or kind is float or kind is bool or value is None or kind is dt.datetime:
        return value
    if kind is list or kind is dict:
        return _to_json(value) if value else ("[]" if kind is list else "{}")
    if isinstance(value, enum.Enum):
        return value.value
    if isinstance(value, dict | list):
        return _to_json(value)
    return value


def _sqlite_value(value: Any) -> Any:
    if type(value) is dt.datetime:
        return _sqlite_datetime(value)
    return _server_value(value)


def _sqlite_datetime(value: dt.datetime) -> str:
    # Django's own format for SQLite: naive UTC as "YYYY-MM-DD HH:MM:SS[.ffffff]".
    if value.tzinfo is dt.UTC:
        return str(value)[:-6]  # less "+00:00": a third of the cost of replace() and isoformat()
    if value.tzinfo is not None:
        value = value.astimezone(dt.UTC)
    return value.replace(tzinfo=None).isoformat(" ")


def _json_value(value: Any) -> str:
    kind = type(value)
    if (kind is list or kind is dict) and not value:
        return "[]" if kind is list else "{}"
    return _to_json(value)


def _as_is(value: Any) -> Any:
    return value


def column_adapter(field: Field) -> Callable[[Any], Any]:
    """db_value for one model field's non-NULL values on the current connection, without the
    per-value type dispatch: JSON columns take JSON text, SQLite's datetime columns Django's text."""
    kind = field.get_internal_type()
    if kind == "JSONField":
        return _json_value
    if kind == "DateTimeField" and connection.vendor == "sqlite":
        return _sqlite_datetime
    return _as_is


_DEFAULTS: dict[type[Model], tuple[frozenset[str], dict[str, Any], list[tuple[str, Any]]]] = {}


def unsaved[M: Model](model: type[M], **values: Any) -> M:
    """model(**values) for the pipeline's new rows, without Model.__init__'s per-field work.

    Values are keyed by column attribute (`account_id`, not `account`); every other field gets its
    default, as __init__ would give it. No pre_init/post_init signals are sent (hubbub has none).
    """
    if model not in _DEFAULTS:
        fields = model._meta.concrete_fields
        static = {f.attname: f.get_default() for f in fields if not (f.has_default() and callable(f.default))}
        dynamic = [(f.attname, f) for f in fields if f.has_default() and callable(f.default)]
        _DEFAULTS[model] = (frozenset(f.attname for f in fields), static, dynamic)
    attnames, static, dynamic = _DEFAULTS[model]
    if not values.keys() <= attnames:
        raise TypeError(f"{model.__name__} has no field {sorted(values.keys() - attnames)}")
    obj = model.__new__(model)
    obj._state = ModelState()
    fields = obj.__dict__
    fields.update(static)
    for attname, field in dynamic:
        fields[attname] = field.get_default()
    fields.update(values)
    return obj


def insert_objects(objects: Sequence[Model], chunk: int = 500) -> None:
    """INSERT unsaved model instances and set their ids, like bulk_create without its per-value overhead."""
    if not objects:
        return
    meta = objects[0]._meta
    fields = [f for f in meta.concrete_fields if not f.primary_key]
    attnames = [f.attname for f in fields]
    relations = [(f.name, f.attname) for f in fields if f.is_relation]
    # Only JSON and (on SQLite) datetime columns need converting; the rest go to the driver as they are.
    converted = [(i, to_db) for i, f in enumerate(fields) if (to_db := column_adapter(f)) is not _as_is]
    quote = connection.ops.quote_name
    columns = ", ".join(quote(f.column) for f in fields)
    row = "(" + ", ".join(["%s"] * len(fields)) + ")"
    # SQLite takes at most 32,766 parameters in one statement.
    chunk = max(1, min(chunk, 30_000 // len(fields)))
    for start in range(0, len(objects), chunk):
        part = objects[start : start + chunk]
        params: list[Any] = []
        for obj in part:
            values = obj.__dict__
            # A related object saved earlier in the batch: copy its new id onto the foreign key.
            cached = obj._state.fields_cache
            if cached:
                for name, attname in relations:
                    related = cached.get(name)
                    if related is not None and values[attname] is None:
                        if related.pk is None:
                            raise ValueError(f"{name} of {obj!r} is not saved yet")
                        values[attname] = related.pk
            # Read from the instance's __dict__: a new instance holds every field there, and
            # getattr through the field descriptors is most of the cost of a wide row.
            row_values = [values[name] for name in attnames]
            for i, to_db in converted:
                value = row_values[i]
                if value is not None:
                    row_values[i] = to_db(value)
            params += row_values
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


class Among(Lookup):
    """`field__among=values`: the rows whose field is one of `values` (ints or strings), like
    `__in`, but the values travel as one parameter: a JSON array on SQLite, an array on PostgreSQL.

    For the pipeline's lookups of thousands of external ids, where `__in` prepares and binds
    each value on its own (4-5 % of a drain, bench/import_drain.py). Registered on every field
    by the inbox app.
    """

    lookup_name = "among"

    def get_prep_lookup(self) -> list[Any]:
        return list(self.rhs)

    def as_sql(self, compiler: Any, connection: Any) -> tuple[str, list[Any]]:
        lhs, lhs_params = self.process_lhs(compiler, connection)
        if connection.vendor == "postgresql":
            return f"{lhs} = ANY(%s)", [*lhs_params, self.rhs]
        # SQLite reads the array with json_each and still looks each value up in the column's index.
        sql = f"{lhs} IN (SELECT value FROM json_each(%s))"  # noqa: S608 - lhs is a column Django compiled
        return sql, [*lhs_params, _to_json(self.rhs)]
