"""Version 2 of DeliveryCreated and DeliveryRiderAssigned, the upcasters, the chain check."""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from schema.events import ErrorCode, EventParseError, parse_message
from schema.fold import fold
from schema.rows import event_from_history
from schema.versions import REGISTRY, SHAPES, UPCASTERS, ChainError, Registry, Shape, Upcaster
from tests.helpers import encode, make_event

pytestmark = pytest.mark.unit

AT = "2026-11-25T10:00:00+09:00"
AT_UTC = datetime(2026, 11, 25, 1, 0, tzinfo=UTC)


def _parse(body: dict[str, Any], headers: tuple[tuple[str, bytes | None], ...] = ()) -> Any:
    return parse_message(encode(body), b"D-1", headers)


def _rejected(body: dict[str, Any], code: ErrorCode) -> str:
    with pytest.raises(EventParseError) as info:
        _parse(body)
    assert info.value.code is code, info.value.reason
    return info.value.reason


# -- version 2 as the contract reads it ------------------------------------------------
def test_rider_assigned_v2_reads_rider_id_and_not_a_rider_id_beside_it() -> None:
    v2 = make_event("DeliveryRiderAssigned", at=AT, event_id="r", eventVersion=2,
                    data={"rider": {"id": "R-2", "name": "Kim", "vehicle": "bike"},
                          "riderId": "R-ignored"})
    v1 = make_event("DeliveryRiderAssigned", at=AT, event_id="r", data={"riderId": "R-2"})
    row2, row1 = fold([_parse(v2)]), fold([_parse(v1)])
    assert row2 is not None and row2.rider_id == "R-2"
    assert row2 == row1


def test_created_v2_reads_shop_id_and_eta_minutes_after_the_occurrence() -> None:
    v2 = _parse(make_event("DeliveryCreated", at=AT, event_id="c", eventVersion=2, data={
        "orderId": "O-1", "shop": {"id": "S-1", "name": "Pho"}, "etaMinutes": 35,
        "estimatedDeliveryAt": "not read, not checked"}))
    assert v2.estimated_delivery_at == AT_UTC + timedelta(minutes=35)
    v1 = _parse(make_event("DeliveryCreated", at=AT, event_id="c", data={
        "orderId": "O-1", "shopId": "S-1", "estimatedDeliveryAt": "2026-11-25T10:35:00+09:00"}))
    assert fold([v2]) == fold([v1])
    row = fold([v2])
    assert row is not None and (row.shop_id, row.order_id) == ("S-1", "O-1")


@pytest.mark.parametrize("minutes", [0, 1440])
def test_eta_minutes_bounds_are_accepted(minutes: int) -> None:
    event = _parse(make_event("DeliveryCreated", at=AT, eventVersion=2,
                              data={"orderId": "O", "shop": {"id": "S"}, "etaMinutes": minutes}))
    assert event.estimated_delivery_at == AT_UTC + timedelta(minutes=minutes)


def test_created_v2_without_eta_minutes_has_no_eta() -> None:
    event = _parse(make_event("DeliveryCreated", at=AT, eventVersion=2,
                              data={"orderId": "O", "shop": {"id": "S"}}))
    assert event.estimated_delivery_at is None


@pytest.mark.parametrize("minutes", [-1, 1441, 1.5, "10", True, None])
def test_eta_minutes_outside_0_to_1440_or_not_an_integer_is_a_dead_letter(minutes: Any) -> None:
    data = {"orderId": "O", "shop": {"id": "S"}, "etaMinutes": minutes}
    body = make_event("DeliveryCreated", at=AT, eventVersion=2, data=data)
    if minutes is None:  # null is absent, as for every optional field
        assert _parse(body).estimated_delivery_at is None
    else:
        _rejected(body, ErrorCode.INVALID_DATA_FIELD)


@pytest.mark.parametrize(("event_type", "data", "code"), [
    ("DeliveryRiderAssigned", {"riderId": "R-1"}, ErrorCode.MISSING_DATA_FIELD),
    ("DeliveryRiderAssigned", {"rider": {}}, ErrorCode.MISSING_DATA_FIELD),
    ("DeliveryRiderAssigned", {"rider": "R-1"}, ErrorCode.INVALID_DATA_FIELD),
    ("DeliveryRiderAssigned", {"rider": {"id": 7}}, ErrorCode.INVALID_DATA_FIELD),
    ("DeliveryRiderAssigned", {"rider": {"id": " "}}, ErrorCode.INVALID_DATA_FIELD),
    ("DeliveryRiderAssigned", {"rider": {"id": "R", "name": 1}}, ErrorCode.INVALID_DATA_FIELD),
    ("DeliveryCreated", {"orderId": "O", "shopId": "S"}, ErrorCode.MISSING_DATA_FIELD),
    ("DeliveryCreated", {"shop": {"id": "S"}}, ErrorCode.MISSING_DATA_FIELD),
    ("DeliveryCreated", {"orderId": "O", "shop": ["S"]}, ErrorCode.INVALID_DATA_FIELD),
    ("DeliveryCreated", {"orderId": "O", "shop": {"id": None}}, ErrorCode.MISSING_DATA_FIELD),
])
def test_a_v2_event_without_its_fields_is_a_dead_letter_with_the_v1_codes(
        event_type: str, data: dict[str, Any], code: ErrorCode) -> None:
    _rejected(make_event(event_type, eventVersion=2, data=data), code)


def test_the_version_may_come_from_the_header() -> None:
    body = make_event("DeliveryRiderAssigned", data={"rider": {"id": "R-9"}})
    event = _parse(body, (("eventVersion", b"2"),))
    assert (event.version, event.known, dict(event.data)) == (2, True, {"rider": {"id": "R-9"}})


def test_the_envelope_never_changes_and_the_history_keeps_what_was_received() -> None:
    data = {"riderId": "R-1", "note": "kept"}
    event = _parse(make_event("배차완료", at=AT, event_id="e-7", sequence=4, data=data))
    assert (event.event_id, event.delivery_id, event.occurred_at, event.sequence) == (
        "e-7", "D-1", AT_UTC, 4)
    assert (event.event_type, event.version, event.received_data) == (
        "DeliveryRiderAssigned", 1, data)
    assert event.data == {"rider": {"id": "R-1"}, "note": "kept"}


def test_a_version_this_build_does_not_know_is_unknown_and_folds_nothing() -> None:
    created = _parse(make_event("DeliveryCreated", at=AT, event_id="a"))
    future = _parse(make_event("DeliveryRiderAssigned", at="2026-11-25T10:05:00+09:00",
                               event_id="b", eventVersion=3, data={"crew": ["R-1"]}))
    assert not future.known and future.version == 3
    row, alone = fold([created, future]), fold([created])
    assert row is not None and alone is not None
    assert (row.state, row.rider_id, row.event_count) == (alone.state, None, 2)
    assert row.last_event_at == future.occurred_at


def test_time_travel_reads_the_history_through_the_same_pipeline() -> None:
    received = {"orderId": "O", "shop": {"id": "S"}, "etaMinutes": 5}
    event = _parse(make_event("DeliveryCreated", at=AT, event_id="h", eventVersion=2,
                              data=received))
    row = {"event_id": "h", "event_type": "DeliveryCreated", "delivery_id": "D-1",
           "occurred_at": AT_UTC, "sequence": None, "data": received, "known": 1,
           "estimated_delivery_at": event.estimated_delivery_at, "event_version": 2}
    assert event_from_history(row) == event
    unknown = {**row, "known": 0, "event_version": 3}
    assert not event_from_history(unknown).known


# -- the chain ------------------------------------------------------------------------
def test_the_registry_order_means_nothing() -> None:
    shuffled = list(UPCASTERS)
    random.Random(3).shuffle(shuffled)
    again = Registry(SHAPES, reversed(shuffled))
    assert again.steps == REGISTRY.steps and again.newest == REGISTRY.newest
    assert REGISTRY.newest == {**{name: 1 for name, _ in SHAPES},
                               "DeliveryCreated": 2, "DeliveryRiderAssigned": 2}


def _identity(data: Any, occurred_at: datetime) -> dict[str, Any]:
    return dict(data)


def test_a_planted_gap_fails_the_check() -> None:
    """Version 3 of a type with no upcaster from 2: refused when the registry is built."""
    shapes = {**SHAPES, ("DeliveryCreated", 3): Shape(())}
    with pytest.raises(ChainError, match="no upcaster from version 2 to 3"):
        Registry(shapes, UPCASTERS)
    missing = {k: v for k, v in SHAPES.items() if k != ("DeliveryCreated", 2)}
    with pytest.raises(ChainError, match="no shape"):
        Registry(missing, UPCASTERS)
    skipping = {**SHAPES, ("DeliveryCompleted", 3): Shape(())}
    with pytest.raises(ChainError, match="skips to version 3"):
        Registry(skipping, (*UPCASTERS, Upcaster("DeliveryCompleted", 1, 3, _identity)))


def test_a_duplicate_and_a_cycle_fail_the_check() -> None:
    with pytest.raises(ChainError, match="two upcasters"):
        Registry(SHAPES, (*UPCASTERS, Upcaster("DeliveryCreated", 1, 2, _identity)))
    with pytest.raises(ChainError, match="cycle"):
        Registry(SHAPES, (*UPCASTERS, Upcaster("DeliveryCreated", 2, 1, _identity)))
    with pytest.raises(ChainError, match="cycle"):
        Registry(SHAPES, (*UPCASTERS, Upcaster("DeliveryCompleted", 1, 1, _identity)))


def test_a_registry_lacking_a_version_reads_it_as_unknown() -> None:
    old = REGISTRY.lacking("DeliveryRiderAssigned", 2)
    body = encode(make_event("DeliveryRiderAssigned", eventVersion=2, data={"rider": {"id": "R"}}))
    assert not parse_message(body, None, registry=old).known
    assert parse_message(body, None).known
