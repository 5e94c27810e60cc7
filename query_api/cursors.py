"""Opaque cursors for keyset pagination.

A cursor is the sort key of the last row a page showed, so the next page starts
strictly after it however many rows share its time: the key always ends in a
unique id. It is base64url JSON with a kind tag, so a history cursor given to
``deliveries`` (or any text we did not issue) is a readable error, not a 500.
"""

from __future__ import annotations

import base64
import binascii
import json
from dataclasses import dataclass
from datetime import UTC, datetime

from query_api.errors import InvalidCursor
from query_api.scalars import LONG_MAX, LONG_MIN

_MAX_CURSOR = 1024


@dataclass(frozen=True)
class DeliveryKey:
    """``deliveries`` order: lastEventAt descending, then id ascending."""

    last_event_at: datetime
    delivery_id: str


@dataclass(frozen=True)
class EventKey:
    """History (fold) order: occurredAt, sequence (absent = 0), eventId."""

    occurred_at: datetime
    sequence: int
    event_id: str


def _encode(kind: str, parts: list[object]) -> str:
    raw = json.dumps([kind, *parts], separators=(",", ":"), ensure_ascii=False)
    return base64.urlsafe_b64encode(raw.encode("utf-8")).decode("ascii").rstrip("=")


def _decode(kind: str, cursor: str, arity: int) -> list[object]:
    if len(cursor) > _MAX_CURSOR:
        raise InvalidCursor("the cursor is not one this API issued")
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
        value = json.loads(raw.decode("utf-8"))
    except (binascii.Error, ValueError, UnicodeDecodeError):
        raise InvalidCursor("the cursor is not one this API issued") from None
    if not isinstance(value, list) or len(value) != arity + 1 or value[0] != kind:
        raise InvalidCursor(f"the cursor is not one this API issued for {kind}")
    return value[1:]


def _text(value: object) -> str:
    """An id as we issue it: text the read model can hold (UTF-8, no NUL), so a
    cursor never sends the database a parameter it refuses."""
    if not isinstance(value, str) or "\x00" in value:
        raise InvalidCursor("the cursor is not one this API issued")
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:  # an unpaired surrogate escape in the cursor's JSON
        raise InvalidCursor("the cursor is not one this API issued") from None
    return value


def _time(value: object) -> datetime:
    if not isinstance(value, str):
        raise InvalidCursor("the cursor is not one this API issued")
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        raise InvalidCursor("the cursor is not one this API issued") from None
    if parsed.tzinfo is None:
        raise InvalidCursor("the cursor is not one this API issued")
    try:
        return parsed.astimezone(UTC)
    except OverflowError:
        raise InvalidCursor("the cursor is not one this API issued") from None


def delivery_cursor(key: DeliveryKey) -> str:
    return _encode("deliveries", [key.last_event_at.isoformat(), key.delivery_id])


def parse_delivery_cursor(cursor: str) -> DeliveryKey:
    when, delivery_id = _decode("deliveries", cursor, 2)
    return DeliveryKey(_time(when), _text(delivery_id))


def event_cursor(key: EventKey) -> str:
    return _encode("history", [key.occurred_at.isoformat(), key.sequence, key.event_id])


def parse_event_cursor(cursor: str) -> EventKey:
    when, sequence, event_id = _decode("history", cursor, 3)
    if (not isinstance(sequence, int) or isinstance(sequence, bool)
            or not LONG_MIN <= sequence <= LONG_MAX):  # a sequence is a Long, like the column
        raise InvalidCursor("the cursor is not one this API issued")
    return EventKey(_time(when), sequence, _text(event_id))
