"""Rows as the tables hold them: the current row of a delivery, an event of its history.

One place says which column holds which field, for both dialects' writers and
for the tests that build read models by hand.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Mapping
from dataclasses import replace
from datetime import datetime, tzinfo
from typing import Any, Final, NamedTuple

import orjson

from projector.sources.base import SourceMessage
from schema.events import Event, make_event
from schema.fold import DeliveryRow, State

_LONG_NUMBER: Final = re.compile(r"[0-9]{19}")

#: Columns of ``deliveries`` after (generation, delivery_id), in the writers' order.
ROW_COLUMNS: Final = (
    "order_id",
    "shop_id",
    "rider_id",
    "state",
    "created_at",
    "assigned_at",
    "picked_up_at",
    "delivered_at",
    "cancelled_at",
    "cancel_reason",
    "estimated_delivery_at",
    "last_event_at",
    "event_count",
    "fold_occurred_at",
    "fold_sequence",
    "fold_event_id",
)

#: Columns of ``delivery_events`` after generation, in the writers' order.
HISTORY_COLUMNS: Final = (
    "event_id",
    "delivery_id",
    "event_type",
    "known",
    "occurred_at",
    "sequence",
    "data",
    "estimated_delivery_at",
    "topic",
    "partition",
    "offset",
    "event_version",
)


def quoted(columns: Iterable[str]) -> str:
    """Column names for a statement, quoted (``offset`` and ``partition`` are keywords)."""
    return ", ".join(f'"{c}"' for c in columns)


#: The SET list of the current-row upsert, the same on both dialects.
ROW_UPDATES: Final = ", ".join(f'"{c}" = EXCLUDED."{c}"' for c in ROW_COLUMNS)


class HistoryRow(NamedTuple):
    """One event of the history, in ``HISTORY_COLUMNS`` order; ``data`` as JSON text."""

    event_id: str
    delivery_id: str
    event_type: str
    known: int
    occurred_at: datetime
    sequence: int | None
    data: str
    estimated_delivery_at: datetime | None
    topic: str
    partition: int
    offset: int
    event_version: int


def history_row(event: Event, message: SourceMessage) -> HistoryRow:
    return HistoryRow(
        event.event_id,
        event.delivery_id,
        event.event_type,
        1 if event.known else 0,
        event.occurred_at,
        event.sequence,
        json_text(event.data),
        event.estimated_delivery_at,
        message.topic,
        message.partition,
        message.offset,
        event.version,
    )


def json_text(value: Any) -> str:
    """JSON text of a parsed document (orjson; ``json`` for integers beyond 64 bits)."""
    try:
        return orjson.dumps(value).decode("utf-8")
    except TypeError:
        return json.dumps(value, ensure_ascii=False, separators=(",", ":"))


#: A NUL as JSON text writes it (orjson and ``json`` both escape it so).
_NUL_ESCAPE: Final = "\\u0000"


def jsonb_text(text: str) -> str:
    """JSON text that PostgreSQL's ``jsonb`` can hold: each NUL in a string or key as U+FFFD.

    ``jsonb`` refuses ``\\u0000`` (its strings are ``text``). Only fields no event
    type reads can hold one (``schema.events``), so the fold never sees the change;
    U+FFFD (not removal) keeps a key with a NUL from becoming a field we read.
    SQLite keeps the text as received.
    """
    if _NUL_ESCAPE not in text:
        return text
    return json_text(_without_nul(load_json(text)))


def _without_nul(value: Any) -> Any:
    if isinstance(value, str):
        return value.replace("\x00", "\ufffd")
    if isinstance(value, dict):
        return {_without_nul(k): _without_nul(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_without_nul(v) for v in value]
    return value


def row_values(row: DeliveryRow) -> tuple[Any, ...]:
    """A current row as (delivery_id, *ROW_COLUMNS)."""
    occurred_at, sequence, event_id = row.fold_key
    return (
        row.delivery_id,
        row.order_id,
        row.shop_id,
        row.rider_id,
        row.state.value,
        row.created_at,
        row.assigned_at,
        row.picked_up_at,
        row.delivered_at,
        row.cancelled_at,
        row.cancel_reason,
        row.estimated_delivery_at,
        row.last_event_at,
        row.event_count,
        occurred_at,
        sequence,
        event_id,
    )


def row_to_db(generation: int, row: DeliveryRow) -> dict[str, Any]:
    """A current row as a mapping of column -> value (tests and SQLAlchemy inserts)."""
    values = row_values(row)
    columns = dict(zip(ROW_COLUMNS, values[1:], strict=True))
    return {"generation": generation, "delivery_id": values[0], **columns}


def row_from_db(r: Mapping[Any, Any]) -> DeliveryRow:
    return DeliveryRow(
        delivery_id=r["delivery_id"],
        state=State(r["state"]),
        last_event_at=r["last_event_at"],
        event_count=int(r["event_count"]),
        fold_key=(r["fold_occurred_at"], int(r["fold_sequence"]), r["fold_event_id"]),
        order_id=r["order_id"],
        shop_id=r["shop_id"],
        rider_id=r["rider_id"],
        created_at=r["created_at"],
        assigned_at=r["assigned_at"],
        picked_up_at=r["picked_up_at"],
        delivered_at=r["delivered_at"],
        cancelled_at=r["cancelled_at"],
        cancel_reason=r["cancel_reason"],
        estimated_delivery_at=r["estimated_delivery_at"],
    )


def event_from_db(r: Mapping[str, Any], source_tz: tzinfo) -> Event:
    """An event of the history; its ETA as read when it was first applied."""
    event = make_event(
        r["event_id"],
        r["event_type"],
        r["delivery_id"],
        r["occurred_at"],
        r["sequence"],
        r["data"],
        source_tz,
        r["event_version"],
    )
    if event.estimated_delivery_at is None:
        return event
    return replace(event, estimated_delivery_at=r["estimated_delivery_at"])


def load_json(text: str) -> Any:
    """A stored JSON document: orjson, or ``json`` where orjson would make a long int a float."""
    if _LONG_NUMBER.search(text) is None:
        return orjson.loads(text)
    return json.loads(text)
