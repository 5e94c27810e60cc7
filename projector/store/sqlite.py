"""The batch's SQL on SQLite: fixed statements, ``executemany``, ids passed as one JSON array.

SQLite has one writer at a time (the batch runs under ``BEGIN IMMEDIATE``), so
"which of these event ids are new" is a plain read followed by plain inserts: no
other writer can slip in between. Statements keep one text each, so sqlite3's
statement cache compiles each once per connection.

Times are written exactly as SQLAlchemy's SQLite ``DateTime`` writes them
(``YYYY-MM-DD HH:MM:SS.ffffff``, UTC), so readers through SQLAlchemy see the same
values whichever path wrote them.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import UTC, datetime
from typing import Any, Final

import orjson

from projector.store.rows import ROW_UPDATES, HistoryRow, events_by_delivery, quoted
from schema.events import Event
from schema.fold import DeliveryRow
from schema.rows import (
    DELIVERY_COLUMNS,
    HISTORY_COLUMNS,
    delivery_from_db,
    delivery_values,
)


def _marks(n: int) -> str:
    return ", ".join("?" * n)


_IDS: Final = "(SELECT value FROM json_each(?))"
EXISTING_EVENTS: Final = (
    f"SELECT event_id FROM delivery_events WHERE generation = ? AND event_id IN {_IDS}"
)
INSERT_HISTORY: Final = (
    f"INSERT INTO delivery_events (generation, {quoted(HISTORY_COLUMNS)}, applied_at)"
    f" VALUES ({_marks(len(HISTORY_COLUMNS) + 2)})"
)
UPSERT_ROWS: Final = (
    f"INSERT INTO deliveries (generation, delivery_id, {quoted(DELIVERY_COLUMNS)})"
    f" VALUES ({_marks(len(DELIVERY_COLUMNS) + 2)})"
    " ON CONFLICT (generation, delivery_id) DO UPDATE SET "
    + ROW_UPDATES
)
SELECT_ROWS: Final = (
    f"SELECT delivery_id, {quoted(DELIVERY_COLUMNS)} FROM deliveries"
    f" WHERE generation = ? AND delivery_id IN {_IDS}"
)
SELECT_HISTORY: Final = (
    "SELECT event_id, event_type, delivery_id, known, occurred_at, sequence, data,"
    " estimated_delivery_at, event_version FROM delivery_events"
    f" WHERE generation = ? AND delivery_id IN {_IDS}"
)

_TIME_COLUMNS: Final = frozenset(
    c for c in DELIVERY_COLUMNS if c.endswith("_at")
) | {"occurred_at", "estimated_delivery_at"}


def sqlite_time(value: datetime | None) -> str | None:
    """An aware instant as SQLAlchemy's SQLite ``DateTime`` stores it (naive UTC text)."""
    if value is None:
        return None
    if value.tzinfo is not UTC:
        value = value.astimezone(UTC)
    return value.isoformat(" ", "microseconds")[:26]  # without "+00:00"


def _read_time(value: str | None) -> datetime | None:
    if value is None:
        return None
    return datetime.fromisoformat(value + "+00:00")


def _ids(ids: Iterable[str]) -> str:
    return orjson.dumps(list(ids)).decode("utf-8")


class SqliteTables:
    """The read model's tables, written through the batch's own sqlite3 connection."""

    def insert_history(
        self, raw: Any, generation: int, rows: Sequence[HistoryRow], applied_at: datetime
    ) -> set[str]:
        """Insert the rows whose event id is new; returns those ids."""
        if not rows:
            return set()
        held = {
            r[0] for r in raw.execute(EXISTING_EVENTS, (generation, _ids(r[0] for r in rows)))
        }
        applied = sqlite_time(applied_at)
        new = [r for r in rows if r.event_id not in held]
        raw.executemany(
            INSERT_HISTORY,
            [
                (
                    generation, r.event_id, r.delivery_id, r.event_type, r.known,
                    sqlite_time(r.occurred_at), r.sequence, r.data,
                    sqlite_time(r.estimated_delivery_at), r.topic, r.partition, r.offset,
                    r.event_version, applied,
                )
                for r in new
            ],
        )
        return {r.event_id for r in new}

    def load_rows(self, raw: Any, generation: int, ids: Sequence[str]) -> dict[str, DeliveryRow]:
        if not ids:
            return {}
        cursor = raw.execute(SELECT_ROWS, (generation, _ids(ids)))
        names = [d[0] for d in cursor.description]
        out: dict[str, DeliveryRow] = {}
        for r in cursor.fetchall():
            values = dict(zip(names, r, strict=True))
            for name in _TIME_COLUMNS & values.keys():
                values[name] = _read_time(values[name])
            out[r[0]] = delivery_from_db(values)
        return out

    def load_history(
        self, raw: Any, generation: int, ids: Sequence[str]
    ) -> dict[str, list[Event]]:
        if not ids:
            return {}
        return events_by_delivery(raw.execute(SELECT_HISTORY, (generation, _ids(ids))), _read_time)

    def upsert_rows(self, raw: Any, generation: int, rows: Sequence[DeliveryRow]) -> None:
        if not rows:
            return
        raw.executemany(
            UPSERT_ROWS,
            [
                (generation, *(sqlite_time(v) if isinstance(v, datetime) else v
                               for v in delivery_values(r)))
                for r in rows
            ],
        )

    def lock_deliveries(self, raw: Any, generation: int, ids: Iterable[str]) -> None:
        """Nothing to do: SQLite has one writer at a time."""

    def notify(self, raw: Any, generation: int, ids: Iterable[str]) -> None:
        """Nothing to send: SQLite listeners poll."""
