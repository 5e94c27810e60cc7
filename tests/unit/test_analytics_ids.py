"""The export's ids at each event (column-wise, DuckDB) are the fold's, for any history.

``projector.analytics.ids`` states again, as window functions, the fold's rules for a
delivery's order, shop and rider ids. Here ``schema.fold.steps`` is the judge: for
histories of every type, every version this build reads (and one it does not),
unknown types, ties in time and sequence, absent and negative sequences, and any
order of arrival, each event's ids must be those of the fold's row after it.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pyarrow as pa
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from projector.analytics.ids import ID_PATHS, ids_at_events, in_fold_order
from projector.store.rows import json_text
from schema.events import Event, EventType, make_event
from schema.fold import steps

pytestmark = pytest.mark.unit

T0 = datetime(2026, 11, 25, 10, 0, tzinfo=UTC)
IDS = st.sampled_from(["R-1", "R-2", "S-1", "O-9", "라이더-7", "x'y"])


def _data(event_type: str, version: int, draw: Any) -> dict[str, Any]:
    one = draw(IDS)
    if event_type == EventType.CREATED.value:
        if version == 2:
            return {"orderId": draw(IDS), "shop": {"id": one, "name": "n"}, "shopId": "not-read"}
        return {"orderId": draw(IDS), "shopId": one}
    if event_type == EventType.RIDER_ASSIGNED.value:
        if version == 2:
            return {"rider": {"id": one}, "riderId": "not-read"}
        return {"riderId": one}
    if event_type == EventType.PICKED_UP.value:
        return {"riderId": one} if draw(st.booleans()) else {}
    if event_type == EventType.ETA_CHANGED.value:
        return {"estimatedDeliveryAt": "2026-11-25T12:00:00Z"}
    if event_type == EventType.CANCELLED.value:
        return {"reason": "r"}
    return {"riderId": one, "orderId": one}  # an unknown type: read by nobody


_TYPES = [*(t.value for t in EventType), "SomethingNew"]


@st.composite
def histories(draw: Any) -> list[Event]:
    events: list[Event] = []
    for number in range(draw(st.integers(0, 14))):
        event_type = draw(st.sampled_from(_TYPES))
        known_versions = sorted(v for t, v in ID_PATHS if t == event_type) or [1]
        version = draw(st.sampled_from([*known_versions, 3]))
        received = version if event_type != "SomethingNew" else 1
        data = _data(event_type, min(version, max(known_versions)), draw)
        events.append(make_event(
            f"e{draw(st.sampled_from(['', 'a', 'é', 'B']))}{number}",
            event_type,
            draw(st.sampled_from(["D-1", "D-2", "D-3"])),
            T0 + timedelta(minutes=draw(st.integers(0, 4))),
            draw(st.one_of(st.none(), st.integers(-2, 3))),
            data,
            version=received,
        ))
    return events


def _history_table(events: list[Event]) -> pa.Table:
    """The events as the export reads them from the history, in arrival order."""
    return pa.table({
        "event_id": [e.event_id for e in events],
        "delivery_id": [e.delivery_id for e in events],
        "event_type": [e.event_type for e in events],
        "known": pa.array([1 if e.known else 0 for e in events], pa.int32()),
        "event_version": pa.array([e.version for e in events], pa.int32()),
        "occurred_at": pa.array([e.occurred_at for e in events], pa.timestamp("us", "UTC")),
        "sequence": pa.array([e.sequence for e in events], pa.int64()),
        "data": [json_text(e.received_data) for e in events],
    })


def _expected(events: list[Event]) -> dict[str, tuple[str | None, str | None, str | None]]:
    found = {}
    for delivery in {e.delivery_id for e in events}:
        for step in steps(e for e in events if e.delivery_id == delivery):
            found[step.event.event_id] = (step.row.order_id, step.row.shop_id, step.row.rider_id)
    return found


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(histories())
def test_the_ids_at_each_event_are_the_folds(events: list[Event]) -> None:
    ordered = in_fold_order(_history_table(events))
    ids = ids_at_events(ordered)
    got = {
        event_id: (o, s, r)
        for event_id, o, s, r in zip(
            ordered.column("event_id").to_pylist(), ids.column("order_id").to_pylist(),
            ids.column("shop_id").to_pylist(), ids.column("rider_id").to_pylist(), strict=True,
        )
    }
    assert got == _expected(events)


def test_the_history_is_put_in_fold_order_per_delivery() -> None:
    at = T0
    events = [
        make_event("b", "DeliveryCompleted", "D-2", at, None, {}),
        make_event("a", "DeliveryCreated", "D-2", at, 0, {"orderId": "O", "shopId": "S"}),
        make_event("c", "DeliveryRiderAssigned", "D-1", at, -1, {"riderId": "R"}),
        make_event("d", "DeliveryRiderUnassigned", "D-1", at, None, {}),
    ]
    ordered = in_fold_order(_history_table(events))
    assert ordered.column("event_id").to_pylist() == ["c", "d", "a", "b"]
    assert ids_at_events(ordered).column("rider_id").to_pylist() == ["R", None, None, None]


def test_no_events_no_ids() -> None:
    empty = _history_table([])
    assert ids_at_events(in_fold_order(empty)).num_rows == 0
