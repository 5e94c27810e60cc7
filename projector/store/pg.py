"""The batch's SQL on PostgreSQL: one fixed statement per step, whatever the batch size.

Every statement takes whole columns as arrays (``unnest``), so its text never
changes: psycopg prepares it once per connection and each batch costs a handful
of round trips instead of one per row or a new multi-row text per batch.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import datetime
from typing import Any, Final

from sqlalchemy import Column
from sqlalchemy.dialects import postgresql

from projector.store.rows import ROW_UPDATES, HistoryRow, events_by_delivery, jsonb_text, quoted
from schema.events import Event
from schema.fold import DeliveryRow
from schema.notify import NOTIFY_CHANNEL, notification_payloads
from schema.rows import (
    DELIVERY_COLUMNS,
    HISTORY_COLUMNS,
    delivery_from_db,
    delivery_values,
)
from schema.tables import deliveries, delivery_events

#: Advisory locks per (generation, bucket of delivery ids). Buckets keep the number
#: of locks a batch holds bounded (the shared lock table is small), at the price of
#: two writers of different deliveries in one bucket waiting for each other.
LOCK_BUCKETS: Final = 1024

#: Staging tables, one pair per connection (temporary, emptied by every commit): a
#: batch arrives in them by binary COPY, and one INSERT ... SELECT moves it on. Their
#: columns are the tables' own, with JSON staged as text (cast on the way in).
_ID = 'text COLLATE "C"'


def _stage_type(column: Column[Any]) -> str:
    declared = str(column.type.compile(dialect=postgresql.dialect()))  # type: ignore[no-untyped-call]
    if 'COLLATE "C"' in declared:
        return _ID
    kind = declared.split("(")[0]
    return {
        "TIMESTAMP WITH TIME ZONE": "timestamptz", "INTEGER": "int", "BIGINT": "bigint",
    }.get(kind, "text")  # VARCHAR, TEXT, JSONB


_STAGE_EVENTS_COLUMNS: Final = tuple(
    (name, _stage_type(delivery_events.c[name])) for name in HISTORY_COLUMNS
)
_STAGE_ROWS_COLUMNS: Final = tuple(
    (name, _stage_type(deliveries.c[name])) for name in ("delivery_id", *DELIVERY_COLUMNS)
)


def _stage_ddl(name: str, columns: Sequence[tuple[str, str]]) -> str:
    body = ", ".join(f'"{c}" {t}' for c, t in columns)
    return f"CREATE TEMPORARY TABLE IF NOT EXISTS {name} ({body}) ON COMMIT DELETE ROWS"


_COPY_TYPE: Final = {_ID: "text", "int": "int4", "bigint": "int8"}


def _copy_types(columns: Sequence[tuple[str, str]]) -> list[str]:
    """Type names for a binary COPY (psycopg's registry names)."""
    return [_COPY_TYPE.get(t, t) for _, t in columns]


STAGE_DDL: Final = (
    _stage_ddl("stage_events", _STAGE_EVENTS_COLUMNS)
    + "; "
    + _stage_ddl("stage_rows", _STAGE_ROWS_COLUMNS)
)
COPY_EVENTS: Final = (
    f"COPY stage_events ({quoted(HISTORY_COLUMNS)}) FROM STDIN (FORMAT BINARY)"
)
COPY_ROWS: Final = (
    f"COPY stage_rows (delivery_id, {quoted(DELIVERY_COLUMNS)}) FROM STDIN (FORMAT BINARY)"
)
INSERT_HISTORY: Final = (
    f"INSERT INTO delivery_events (generation, {quoted(HISTORY_COLUMNS)}, applied_at)"
    " SELECT %s, "
    + ", ".join('CAST("data" AS jsonb)' if c == "data" else f'"{c}"' for c in HISTORY_COLUMNS)
    + ", %s FROM stage_events"
    " ON CONFLICT (generation, event_id) DO NOTHING RETURNING event_id"
)
UPSERT_ROWS: Final = (
    f"INSERT INTO deliveries (generation, delivery_id, {quoted(DELIVERY_COLUMNS)})"
    f" SELECT %s, delivery_id, {quoted(DELIVERY_COLUMNS)} FROM stage_rows"
    " ON CONFLICT (generation, delivery_id) DO UPDATE SET "
    + ROW_UPDATES
)
#: The current rows of these deliveries (an array, so the primary key serves).
SELECT_ROWS: Final = (
    f"SELECT delivery_id, {quoted(DELIVERY_COLUMNS)} FROM deliveries WHERE generation = %s"
    " AND delivery_id = ANY(CAST(%s AS text[]))"
)
SELECT_HISTORY: Final = (
    "SELECT event_id, event_type, delivery_id, known, occurred_at, sequence,"
    " data::text AS data, estimated_delivery_at, event_version FROM delivery_events"
    " WHERE generation = %s AND delivery_id = ANY(CAST(%s AS text[]))"
)
LOCK_STAGED: Final = (
    "SELECT pg_advisory_xact_lock(CAST(%s AS int), b) FROM ("
    " SELECT DISTINCT (hashtextextended(delivery_id, 0) & CAST(%s AS bigint))::int AS b"
    " FROM stage_events ORDER BY b) AS ordered"
)
LOCK: Final = (
    "SELECT pg_advisory_xact_lock(CAST(%s AS int), b) FROM ("
    " SELECT DISTINCT (hashtextextended(id, 0) & CAST(%s AS bigint))::int AS b"
    " FROM unnest(CAST(%s AS text[])) AS id ORDER BY b) AS ordered"
)
NOTIFY: Final = f"SELECT pg_notify('{NOTIFY_CHANNEL}', %s)"


class PgTables:
    """The read model's tables, written through the batch's own psycopg connection."""

    def insert_history(
        self, raw: Any, generation: int, rows: Sequence[HistoryRow], applied_at: datetime
    ) -> set[str]:
        """Stage the batch's events, lock their deliveries, insert the new ones; their ids.

        ``rows`` hold distinct event ids.
        """
        if not rows:
            return set()
        self._ensure_staging(raw)
        cursor = raw.cursor()
        with cursor.copy(COPY_EVENTS) as copy:
            copy.set_types(_copy_types(_STAGE_EVENTS_COLUMNS))
            for row in rows:
                data = jsonb_text(row.data)  # the same text unless it holds a NUL
                copy.write_row(row if data is row.data else row._replace(data=data))
        cursor.execute(LOCK_STAGED, [generation, LOCK_BUCKETS - 1])
        cursor.execute(INSERT_HISTORY, [generation, applied_at])
        return {r[0] for r in cursor.fetchall()}

    def load_rows(self, raw: Any, generation: int, ids: Sequence[str]) -> dict[str, DeliveryRow]:
        """The current rows of the deliveries ``ids`` (those that have one)."""
        if not ids:
            return {}
        cursor = raw.execute(SELECT_ROWS, [generation, list(ids)])
        names = [d.name for d in cursor.description]
        return {r[0]: delivery_from_db(dict(zip(names, r, strict=True))) for r in cursor.fetchall()}

    def load_history(
        self, raw: Any, generation: int, ids: Sequence[str]
    ) -> dict[str, list[Event]]:
        if not ids:
            return {}
        return events_by_delivery(raw.execute(SELECT_HISTORY, [generation, list(ids)]))

    def upsert_rows(self, raw: Any, generation: int, rows: Sequence[DeliveryRow]) -> None:
        if not rows:
            return
        self._ensure_staging(raw)
        cursor = raw.cursor()
        with cursor.copy(COPY_ROWS) as copy:
            copy.set_types(_copy_types(_STAGE_ROWS_COLUMNS))
            for row in rows:
                copy.write_row(delivery_values(row))
        cursor.execute(UPSERT_ROWS, [generation])

    def lock_deliveries(self, raw: Any, generation: int, ids: Iterable[str]) -> None:
        """Serialise writers of the same delivery; ``insert_history`` takes the same locks.

        Events of one delivery normally share a partition, and so a writer; but a
        producer without the delivery id as key would spread them, and two
        consumers must then not fold the same row from two stale reads. The locks
        are taken in one order, so two batches cannot deadlock on them.
        """
        raw.execute(LOCK, [generation, LOCK_BUCKETS - 1, list(ids)])

    def notify(self, raw: Any, generation: int, ids: Iterable[str]) -> None:
        """NOTIFY, delivered to listeners only if this transaction commits."""
        for payload in notification_payloads(generation, ids):
            raw.execute(NOTIFY, [payload])

    @staticmethod
    def _ensure_staging(raw: Any) -> None:
        """Create this connection's staging tables if they are not there yet.

        Asked on every batch (one cheap round trip): a batch that rolled back also
        took back the tables it created.
        """
        raw.execute(STAGE_DDL)
