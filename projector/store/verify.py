"""Verify's row diff: a live and a scratch generation compared row by row, in one snapshot.

The live projector keeps writing while verify compares, so both generations are read
in one transaction (REPEATABLE READ on PostgreSQL, one read transaction on
SQLite/WAL), streamed in key order and merged, never loaded whole.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from sqlalchemy import Connection, Engine, select

from projector.store.generations import offsets_of
from projector.store.sql import deliveries_since
from schema.tables import deliveries, delivery_events

_COLUMNS = [c.name for c in deliveries.columns if c.name not in ("generation", "delivery_id")]
_HISTORY = ["delivery_id", "event_type", "occurred_at", "sequence", "data"]


def diff_generations(
    reader: Engine, live: int, scratch: int, limit: int, *, final: bool
) -> tuple[int, int, list[str]] | None:
    """(differences, deliveries skipped as moved, first ones); None to extend and retry."""
    conn_cm = reader.connect()
    if reader.dialect.name == "postgresql":
        conn_cm = conn_cm.execution_options(isolation_level="REPEATABLE READ")
    with conn_cm as conn, conn.begin():
        live_now = offsets_of(conn, live)
        scratch_at = offsets_of(conn, scratch)
        ahead = {tp: at for tp, at in scratch_at.items() if live_now.get(tp, at) > at}
        if ahead and not final:
            return None
        moved = deliveries_since(conn, live, ahead)
        found: list[str] = []
        count = 0

        def note(text: str) -> None:
            nonlocal count
            count += 1
            if len(found) < limit:
                found.append(text)

        for key, a, b in _merge(
            _rows(conn, deliveries, deliveries.c.delivery_id, live),
            _rows(conn, deliveries, deliveries.c.delivery_id, scratch),
        ):
            if key in moved:
                continue
            if a is None or b is None:
                note(f"delivery {key}: only in the {'rebuilt' if a is None else 'live'} generation")
                continue
            for column in _COLUMNS:
                if a[column] != b[column]:
                    note(f"delivery {key}: {column} live={a[column]!r} rebuilt={b[column]!r}")
        for key, a, b in _merge(
            _rows(conn, delivery_events, delivery_events.c.event_id, live),
            _rows(conn, delivery_events, delivery_events.c.event_id, scratch),
        ):
            delivery = (a or b or {}).get("delivery_id")
            if delivery in moved:
                continue
            if a is None or b is None:
                note(
                    f"event {key} of {delivery}: only in the"
                    f" {'rebuilt' if a is None else 'live'} generation"
                )
                continue
            for column in _HISTORY:
                if a[column] != b[column]:
                    note(f"event {key}: {column} live={a[column]!r} rebuilt={b[column]!r}")
        return count, len(moved), found


def _rows(
    conn: Connection, table: Any, key: Any, generation: int
) -> Iterator[tuple[str, dict[str, Any]]]:
    """A generation's rows in key order (code point order on both databases), streamed."""
    result = conn.execution_options(yield_per=1000).execute(
        select(table).where(table.c.generation == generation).order_by(key)
    )
    for row in result:
        mapping = dict(row._mapping)
        yield mapping[key.name], mapping


def _merge(
    left: Iterator[tuple[str, dict[str, Any]]], right: Iterator[tuple[str, dict[str, Any]]]
) -> Iterator[tuple[str, dict[str, Any] | None, dict[str, Any] | None]]:
    """Full outer join of two key-ordered streams."""
    a, b = next(left, None), next(right, None)
    while a is not None or b is not None:
        if b is None or (a is not None and a[0] < b[0]):
            assert a is not None
            yield a[0], a[1], None
            a = next(left, None)
        elif a is None or b[0] < a[0]:
            yield b[0], None, b[1]
            b = next(right, None)
        else:
            yield a[0], a[1], b[1]
            a, b = next(left, None), next(right, None)
