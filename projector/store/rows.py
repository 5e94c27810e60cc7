"""The batch's own encodings: a history row as the writers send it, JSON text in and out.

Which column holds which field is ``schema.rows``; this module adds what only the
projector's writers need (the source position of each event, JSON as text).
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Iterable
from datetime import datetime
from typing import Any, Final, NamedTuple

import orjson

from projector.sources.base import SourceMessage
from schema.events import Event
from schema.rows import DELIVERY_COLUMNS, HISTORY_COLUMNS, event_from_history

_LONG_NUMBER: Final = re.compile(r"[0-9]{19}")

def quoted(columns: Iterable[str]) -> str:
    """Column names for a statement, quoted (``offset`` and ``partition`` are keywords)."""
    return ", ".join(f'"{c}"' for c in columns)


#: The SET list of the current-row upsert, the same on both dialects.
ROW_UPDATES: Final = ", ".join(f'"{c}" = EXCLUDED."{c}"' for c in DELIVERY_COLUMNS)


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


if HistoryRow._fields != HISTORY_COLUMNS:
    raise RuntimeError(f"HistoryRow {HistoryRow._fields} is not delivery_events {HISTORY_COLUMNS}")


def history_row(event: Event, message: SourceMessage) -> HistoryRow:
    return HistoryRow(
        event.event_id,
        event.delivery_id,
        event.event_type,
        1 if event.known else 0,
        event.occurred_at,
        event.sequence,
        json_text(event.received_data),
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


def load_json(text: str) -> Any:
    """A stored JSON document: orjson, or ``json`` where orjson would make a long int a float."""
    if _LONG_NUMBER.search(text) is None:
        return orjson.loads(text)
    return json.loads(text)


def events_by_delivery(
    cursor: Any, read_time: Callable[[Any], datetime | None] | None = None
) -> dict[str, list[Event]]:
    """The history rows a cursor holds as events, grouped by delivery (the refold's read).

    ``read_time`` turns a dialect's stored time into an instant where the driver does not.
    """
    out: dict[str, list[Event]] = {}
    names = [d[0] for d in cursor.description]
    for r in cursor.fetchall():
        values = dict(zip(names, r, strict=True))
        if read_time is not None:
            values["occurred_at"] = read_time(values["occurred_at"])
            values["estimated_delivery_at"] = read_time(values["estimated_delivery_at"])
        out.setdefault(values["delivery_id"], []).append(history_event(values))
    return out


def history_event(values: dict[str, Any]) -> Event:
    """One history row (its columns by name, ``data`` as JSON text) as the event folded."""
    values["data"] = load_json(values["data"])
    return event_from_history(values)
