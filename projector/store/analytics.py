"""The reads of the analytics export: the served generation's history and current rows.

Plain SQLAlchemy Core reads through the read model's engine; nothing here writes.
The history is read in fold order (``ix_delivery_events_fold``), so the export can
fold each delivery's events once, in one pass. On SQLite the instants are read as
their stored text and parsed with ``datetime.fromisoformat`` (a large export reads
millions of them; SQLAlchemy's generic SQLite parser is several times slower).
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Final

from sqlalchemy import (
    ColumnElement,
    Connection,
    Integer,
    Text,
    and_,
    cast,
    column,
    func,
    inspect,
    select,
)
from sqlalchemy import type_coerce as coerce

from schema.db import active_generation
from schema.tables import UtcDateTime, deliveries, delivery_events

__all__ = [
    "HistoryEvent",
    "active_generation",
    "current_columns",
    "has_event_version",
    "history",
    "history_count",
    "window_ids",
]

_H = delivery_events.c
#: Delivery ids per statement when reading the histories of many deliveries.
CHUNK: Final = 500


@dataclass(frozen=True, slots=True)
class HistoryEvent:
    """One history row as the export needs it; ``data`` is the stored JSON text."""

    event_id: str
    delivery_id: str
    event_type: str
    known: bool
    event_version: int
    occurred_at: datetime
    sequence: int | None
    data: str
    estimated_delivery_at: datetime | None
    topic: str
    partition: int
    offset: int
    applied_at: datetime


def has_event_version(conn: Connection) -> bool:
    """Whether the history has an ``event_version`` column (revision 0003 on)."""
    return any(c["name"] == "event_version" for c in inspect(conn).get_columns("delivery_events"))


def _version_column() -> Any:
    found = delivery_events.c.get("event_version")
    return found if found is not None else column("event_version", Integer)


def _instant(conn: Connection, column: Any) -> Any:
    return coerce(column, Text) if conn.dialect.name == "sqlite" else column


def _to_instant(value: Any) -> Any:
    if value is None or isinstance(value, datetime):
        return value if value is None or value.tzinfo else value.replace(tzinfo=UTC)
    return datetime.fromisoformat(value).replace(tzinfo=UTC)


def _applied_between(
    conn: Connection, lower: datetime | None, upper: datetime
) -> ColumnElement[bool]:
    bind = delivery_events.c.applied_at
    condition = bind <= upper
    if lower is not None:
        condition = and_(bind > lower, condition)
    return condition


def window_ids(
    conn: Connection, generation: int, lower: datetime | None, upper: datetime
) -> list[tuple[str, str]]:
    """(event id, delivery id) of the rows applied in ``(lower, upper]``."""
    query = select(_H.event_id, _H.delivery_id).where(
        _H.generation == generation, _applied_between(conn, lower, upper)
    )
    return [(r[0], r[1]) for r in conn.execute(query)]


def history(
    conn: Connection,
    generation: int,
    delivery_ids: Sequence[str] | None,
    upper: datetime,
    *,
    with_version: bool,
) -> Iterator[HistoryEvent]:
    """The history applied up to ``upper``, in fold order per delivery; every delivery's
    (``delivery_ids`` None) or only these deliveries'."""
    columns = [
        _H.event_id,
        _H.delivery_id,
        _H.event_type,
        _H.known,
        _version_column() if with_version else None,
        _instant(conn, _H.occurred_at),
        _H.sequence,
        cast(_H.data, Text),
        _instant(conn, _H.estimated_delivery_at),
        _H.topic,
        _H.partition,
        _H.offset,
        _instant(conn, _H.applied_at),
    ]
    selected = [c for c in columns if c is not None]
    order = (_H.delivery_id, _H.occurred_at, _H.sequence, _H.event_id)
    base = select(*selected).where(_H.generation == generation, _H.applied_at <= upper)
    if delivery_ids is None:
        statements = [base.order_by(*order)]
    else:
        ids = sorted(set(delivery_ids))
        statements = [
            base.where(_H.delivery_id.in_(ids[i : i + CHUNK])).order_by(*order)
            for i in range(0, len(ids), CHUNK)
        ]
    for statement in statements:
        result = conn.execution_options(stream_results=True, yield_per=20000).execute(statement)
        r: Any
        for r in result:
            if with_version:
                eid, did, etype, known, version, occ, seq, data, eta, topic, part, off, app = r
            else:
                eid, did, etype, known, occ, seq, data, eta, topic, part, off, app = r
                version = 1
            yield HistoryEvent(
                eid,
                did,
                etype,
                bool(known),
                int(version) if version is not None else 1,
                _to_instant(occ),
                None if seq is None else int(seq),
                data,
                _to_instant(eta),
                topic,
                int(part),
                int(off),
                _to_instant(app),
            )


def history_count(
    conn: Connection, generation: int, applied_after: datetime | None = None
) -> int:
    query = select(func.count()).select_from(delivery_events).where(_H.generation == generation)
    if applied_after is not None:
        query = query.where(_H.applied_at > applied_after)
    return int(conn.execute(query).scalar_one())


def current_columns(
    conn: Connection, generation: int, names: Sequence[str]
) -> dict[str, list[Any]]:
    """The served current rows as columns (``names`` of the deliveries table), by delivery id.

    On SQLite an instant comes back as its stored text (``YYYY-MM-DD HH:MM:SS.ffffff``,
    UTC), for the caller to convert in bulk: a snapshot reads every served row, and
    SQLAlchemy's per-value parsing was most of an incremental export's time.
    """
    table = deliveries.c
    selected = [
        _instant(conn, table[n]) if isinstance(table[n].type, UtcDateTime) else table[n]
        for n in names
    ]
    query = (
        select(*selected)
        .where(table.generation == generation)
        .order_by(table.delivery_id)
    )
    rows = conn.execute(query).all()
    if not rows:
        return {n: [] for n in names}
    return {n: list(values) for n, values in zip(names, zip(*rows, strict=True), strict=True)}
