"""query_api.cursors: opaque, round-tripping, one kind per list."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from query_api.cursors import (
    DeliveryKey,
    EventKey,
    delivery_cursor,
    event_cursor,
    parse_delivery_cursor,
    parse_event_cursor,
)
from query_api.errors import InvalidCursor, QueryApiError, UserInputError

pytestmark = pytest.mark.unit


def test_cursors_round_trip_and_are_opaque() -> None:
    when = datetime(2026, 11, 25, 12, 0, 0, 1, tzinfo=UTC)
    key = DeliveryKey(when, "D-가-1")
    cursor = delivery_cursor(key)
    assert "D-" not in cursor and "2026" not in cursor
    assert parse_delivery_cursor(cursor) == key
    ekey = EventKey(when, 0, "e-1")
    assert parse_event_cursor(event_cursor(ekey)) == ekey
    with pytest.raises(InvalidCursor):
        parse_delivery_cursor(event_cursor(ekey))
    with pytest.raises(InvalidCursor):
        parse_event_cursor(cursor)
    for bad in ("", "!!!", "eyJhIjoxfQ", "W10", "x" * 2000):
        with pytest.raises(InvalidCursor):
            parse_delivery_cursor(bad)
    assert issubclass(InvalidCursor, UserInputError) and issubclass(UserInputError, QueryApiError)
