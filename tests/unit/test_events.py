"""Parsing one raw message into an event: every rule of the contract's section Events."""

from __future__ import annotations

import dataclasses
import json
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from schema.events import (
    ALIASES,
    DATA_FIELDS,
    MAX_ID_LENGTH,
    ErrorCode,
    Event,
    EventParseError,
    EventType,
    _fast_object,
    _new_event,
    canonical_type,
    decode_value,
    make_event,
    parse_message,
    parse_time,
    zone,
)
from tests.helpers import encode
from tests.helpers import make_event as make_body

pytestmark = pytest.mark.unit

UTC = UTC
SEOUL = zone("Asia/Seoul")
AT = "2026-11-25T10:00:00Z"
AT_UTC = datetime(2026, 11, 25, 10, 0, tzinfo=UTC)


def body(**changes: Any) -> dict[str, Any]:
    """A valid unknown-type body (no data rules), with ``changes``; a value None drops the key."""
    out: dict[str, Any] = {
        "eventId": "e-1",
        "eventType": "DeliveryCreated",
        "deliveryId": "D-1",
        "occurrenceDateTime": AT,
        "data": {"orderId": "O-1", "shopId": "S-1"},
    }
    for name, value in changes.items():
        if value is None:
            out.pop(name, None)
        else:
            out[name] = value
    return out


def parse(obj: dict[str, Any] | bytes | None, **kwargs: Any) -> Event:
    raw = obj if isinstance(obj, bytes) or obj is None else encode(obj)
    return parse_message(raw, **kwargs)


def rejected(obj: dict[str, Any] | bytes | None, code: ErrorCode, **kwargs: Any) -> EventParseError:
    with pytest.raises(EventParseError) as info:
        parse(obj, **kwargs)
    assert info.value.code is code, f"{info.value.code} ({info.value.reason}), expected {code}"
    assert info.value.reason and len(info.value.reason) > 10  # something a person can read
    assert code.value in str(info.value)
    return info.value


# -- a valid message ----------------------------------------------------------------
def test_the_contract_example_parses() -> None:
    raw = json.dumps(
        {
            "eventId": "8d0c6a8e-7f0b-4a51-9d7e-3c1f6b0f2a11",
            "eventType": "DeliveryRiderAssigned",
            "deliveryId": "D-1001",
            "occurrenceDateTime": "2026-11-25T15:00:00+09:00",
            "sequence": 2,
            "data": {"riderId": "R-7"},
        }
    ).encode()
    event = parse_message(raw)
    assert event == Event(
        event_id="8d0c6a8e-7f0b-4a51-9d7e-3c1f6b0f2a11",
        event_type="DeliveryRiderAssigned",
        delivery_id="D-1001",
        occurred_at=datetime(2026, 11, 25, 6, 0, tzinfo=UTC),
        sequence=2,
        data={"rider": {"id": "R-7"}},  # version 1 upcast to the newest shape
        known=True,
        received={"riderId": "R-7"},
    )
    assert event.received_data == {"riderId": "R-7"}
    assert event.kind is EventType.RIDER_ASSIGNED
    assert event.sort_key == (datetime(2026, 11, 25, 6, 0, tzinfo=UTC), 2, event.event_id)


def test_unknown_top_level_fields_are_ignored() -> None:
    event = parse(body(producer="outbox", aggregateType="Delivery", extra={"a": [1, 2]}))
    assert event.event_id == "e-1"
    assert not hasattr(event, "producer")


def test_absent_data_is_an_empty_object() -> None:
    event = parse(body(eventType="DeliveryCompleted", data=None))
    assert event.data == {}
    assert event.known


def test_unknown_data_fields_are_kept() -> None:
    data = {"orderId": "O-9", "shopId": "S-9", "menu": ["김치찌개"], "tip": 1000, "n": None}
    event = parse(body(data=data))
    assert dict(event.received_data) == data


def test_absent_sequence_is_none_and_sorts_as_zero() -> None:
    event = parse(body())
    assert event.sequence is None
    assert event.sort_key[1] == 0


@pytest.mark.parametrize("sequence", [0, -3, 2**63 - 1])
def test_integer_sequences_are_kept(sequence: int) -> None:
    assert parse(body(sequence=sequence)).sequence == sequence


def test_sequence_beyond_64_bits_is_rejected() -> None:
    rejected(body(sequence=2**63), ErrorCode.WRONG_TYPE)


# -- required fields ------------------------------------------------------------------
@pytest.mark.parametrize("name", ["eventId", "eventType", "occurrenceDateTime"])
def test_a_required_field_absent_is_rejected(name: str) -> None:
    error = rejected(body(**{name: None}), ErrorCode.MISSING_FIELD)
    assert name in error.reason


def test_delivery_id_absent_everywhere_is_rejected() -> None:
    error = rejected(body(deliveryId=None), ErrorCode.MISSING_FIELD)
    assert "deliveryId" in error.reason


@pytest.mark.parametrize("name", ["eventId", "eventType", "deliveryId"])
@pytest.mark.parametrize("value", ["", "   ", "\t\n"])
def test_an_empty_identifier_is_rejected(name: str, value: str) -> None:
    error = rejected(body(**{name: value}), ErrorCode.EMPTY_FIELD)
    assert name in error.reason


@pytest.mark.parametrize("name", ["eventId", "eventType", "deliveryId"])
def test_identifiers_of_128_characters_are_accepted_and_129_rejected(name: str) -> None:
    assert MAX_ID_LENGTH == 128
    ok = "가" * 128  # characters, not bytes: 384 bytes of UTF-8
    event = parse(body(**{name: ok}))
    assert {"eventId": event.event_id, "eventType": event.event_type,
            "deliveryId": event.delivery_id}[name] == ok
    error = rejected(body(**{name: "x" * 129}), ErrorCode.FIELD_TOO_LONG)
    assert name in error.reason and "129" in error.reason


@pytest.mark.parametrize("name", ["eventId", "eventType", "deliveryId"])
@pytest.mark.parametrize("value", [42, 4.2, True, ["e-1"], {"id": "e-1"}])
def test_an_identifier_of_the_wrong_type_is_rejected(name: str, value: object) -> None:
    error = rejected(body(**{name: value}), ErrorCode.WRONG_TYPE)
    assert name in error.reason and "string" in error.reason


@pytest.mark.parametrize("value", [True, False, 1.5, 2.0, "2", [2], {"n": 2}])
def test_a_sequence_of_the_wrong_type_is_rejected(value: object) -> None:
    error = rejected(body(sequence=value), ErrorCode.WRONG_TYPE)
    assert "sequence" in error.reason


def test_null_sequence_means_absent() -> None:
    assert parse(body(sequence=None) | {"sequence": None}).sequence is None


@pytest.mark.parametrize("value", [[], ["a"], "text", 3, True])
def test_data_that_is_not_an_object_is_rejected(value: object) -> None:
    error = rejected(body(data=value), ErrorCode.WRONG_TYPE)
    assert "data" in error.reason


# -- times ----------------------------------------------------------------------------
def test_the_misspelling_occurence_date_time_is_accepted() -> None:
    event = parse(body(occurrenceDateTime=None, occurenceDateTime="2026-11-25T10:00:00Z"))
    assert event.occurred_at == AT_UTC


def test_the_correct_spelling_wins_over_the_misspelling() -> None:
    event = parse(body(occurenceDateTime="2000-01-01T00:00:00Z"))
    assert event.occurred_at == AT_UTC


@pytest.mark.parametrize(
    "text, expected",
    [
        ("2026-11-25T15:00:00+09:00", datetime(2026, 11, 25, 6, 0, tzinfo=UTC)),
        ("2026-11-25T01:30:00-05:00", datetime(2026, 11, 25, 6, 30, tzinfo=UTC)),
        ("2026-11-25T06:00:00Z", datetime(2026, 11, 25, 6, 0, tzinfo=UTC)),
        ("2026-11-25T06:00:00.250+00:00", datetime(2026, 11, 25, 6, 0, 0, 250000, tzinfo=UTC)),
        ("2026-11-25T00:30:00+01:00", datetime(2026, 11, 24, 23, 30, tzinfo=UTC)),
    ],
)
def test_offsets_are_normalised_to_utc(text: str, expected: datetime) -> None:
    event = parse(body(occurrenceDateTime=text))
    assert event.occurred_at == expected
    assert event.occurred_at.utcoffset() == timedelta(0)
    assert event.occurred_at.tzinfo is UTC


def test_a_time_without_offset_is_read_in_utc_by_default() -> None:
    event = parse(body(occurrenceDateTime="2026-11-25 15:00:00"))
    assert event.occurred_at == datetime(2026, 11, 25, 15, 0, tzinfo=UTC)


def test_a_time_without_offset_is_read_in_the_source_time_zone() -> None:
    event = parse(body(occurrenceDateTime="2026-11-25 15:00:00"), source_tz=SEOUL)
    assert event.occurred_at == datetime(2026, 11, 25, 6, 0, tzinfo=UTC)
    assert event.occurred_at.tzinfo is UTC


def test_a_time_with_an_offset_ignores_the_source_time_zone() -> None:
    event = parse(body(occurrenceDateTime="2026-11-25T15:00:00+09:00"), source_tz=zone("UTC"))
    assert event.occurred_at == datetime(2026, 11, 25, 6, 0, tzinfo=UTC)
    event = parse(body(occurrenceDateTime="2026-11-25T06:00:00Z"), source_tz=SEOUL)
    assert event.occurred_at == datetime(2026, 11, 25, 6, 0, tzinfo=UTC)


def test_utc_zone_by_name_is_utc() -> None:
    assert zone("UTC") is UTC
    assert zone("utc") is UTC


@pytest.mark.parametrize(
    "value",
    [
        "yesterday",
        "2026-13-01T00:00:00Z",
        "2026-11-31T00:00:00Z",
        "2026-11-25T25:00:00Z",
        "25/11/2026 10:00",
        "2026",
        "",
        "   ",
        "0001-01-01T00:00:00+01:00",  # before year 1 once in UTC
        "9999-12-31T23:59:59-01:00",  # after year 9999 once in UTC
    ],
)
def test_an_unreadable_time_is_rejected(value: str) -> None:
    error = rejected(body(occurrenceDateTime=value), ErrorCode.INVALID_TIME)
    assert "occurrenceDateTime" in error.reason


@pytest.mark.parametrize("value", [1764064800, 1764064800.5, True, ["2026-11-25"], {"t": 1}])
def test_a_time_that_is_not_a_string_is_rejected(value: object) -> None:
    error = rejected(body(occurrenceDateTime=value), ErrorCode.INVALID_TIME)
    assert "occurrenceDateTime" in error.reason


def test_a_local_time_that_leaves_utc_range_in_the_source_zone_is_rejected() -> None:
    local = body(occurrenceDateTime="0001-01-01 00:00:00")
    rejected(local, ErrorCode.INVALID_TIME, source_tz=SEOUL)


def test_parse_time_directly() -> None:
    assert parse_time("2026-11-25 15:00:00", SEOUL, "t") == datetime(2026, 11, 25, 6, tzinfo=UTC)
    with pytest.raises(EventParseError) as info:
        parse_time(None, UTC, "data.when")
    assert info.value.code is ErrorCode.INVALID_TIME
    assert "data.when" in info.value.reason


# -- message key and headers -------------------------------------------------------------
def test_delivery_id_comes_from_the_key_when_absent_from_the_body() -> None:
    event = parse(body(deliveryId=None), key="D-키".encode())
    assert event.delivery_id == "D-키"


def test_the_body_delivery_id_wins_over_the_key() -> None:
    assert parse(body(), key=b"D-other").delivery_id == "D-1"


def test_a_key_that_is_not_utf8_does_not_count_as_a_delivery_id() -> None:
    rejected(body(deliveryId=None), ErrorCode.MISSING_FIELD, key=b"\xff\xfe")


def test_event_id_and_type_come_from_headers_when_absent_from_the_body() -> None:
    event = parse(
        body(eventId=None, eventType=None, deliveryId=None, data={"riderId": "R-1"}),
        key=b"D-9",
        headers=[("id", b"h-1"), ("eventType", "배차완료".encode()), ("other", None)],
    )
    assert (event.event_id, event.event_type, event.delivery_id) == (
        "h-1", "DeliveryRiderAssigned", "D-9",
    )


def test_json_quoted_header_values_are_unquoted() -> None:
    """Debezium's JSON converter writes header values as JSON strings."""
    event = parse(
        body(eventId=None, eventType=None, data={"riderId": "R-1"}),
        headers=[("id", b'"h-2"'), ("eventType", b'"DeliveryRiderAssigned"')],
    )
    assert event.event_id == "h-2"
    assert event.event_type == "DeliveryRiderAssigned"
    assert event.known


def test_a_json_quoted_header_with_escapes_is_decoded() -> None:
    event = parse(body(eventId=None), headers=[("id", b'"a\\"b"')])
    assert event.event_id == 'a"b'


def test_the_body_wins_over_the_headers() -> None:
    event = parse(body(), headers=[("id", b"h-1"), ("eventType", b"Other")])
    assert event.event_id == "e-1"
    assert event.event_type == "DeliveryCreated"


def test_header_values_are_checked_like_body_values() -> None:
    rejected(body(eventId=None), ErrorCode.EMPTY_FIELD, headers=[("id", b"")])
    rejected(body(eventId=None), ErrorCode.FIELD_TOO_LONG, headers=[("id", b"h" * 129)])
    rejected(body(eventId=None), ErrorCode.MISSING_FIELD, headers=[("id", None)])
    rejected(body(eventId=None), ErrorCode.MISSING_FIELD, headers=[("id", b"\xff")])


def test_a_header_holding_a_lone_surrogate_is_rejected() -> None:
    rejected(body(eventId=None), ErrorCode.WRONG_TYPE, headers=[("id", b'"\\ud800"')])


def test_a_key_holding_nul_is_rejected() -> None:
    rejected(body(deliveryId=None), ErrorCode.WRONG_TYPE, key=b"D\x001")


# -- the raw value ----------------------------------------------------------------------------
def test_a_double_encoded_value_is_decoded_once_more() -> None:
    inner = json.dumps(body(eventId="e-double"))
    event = parse_message(json.dumps(inner).encode())
    assert event.event_id == "e-double"
    assert event.occurred_at == AT_UTC


def test_a_triple_encoded_value_is_not_an_object() -> None:
    raw = json.dumps(json.dumps(json.dumps(body()))).encode()
    rejected(raw, ErrorCode.NOT_AN_OBJECT)


def test_a_double_encoded_value_that_is_not_json_inside() -> None:
    rejected(json.dumps("not {json").encode(), ErrorCode.INVALID_JSON)


@pytest.mark.parametrize("raw", [None, b""])
def test_an_empty_value_is_rejected(raw: bytes | None) -> None:
    rejected(raw, ErrorCode.EMPTY_MESSAGE)


@pytest.mark.parametrize(
    "raw", [b"\xff\xfe{}", encode(body())[:-2] + b"\xc3\x28}", b"\xed\xa0\x80"]
)
def test_invalid_utf8_is_rejected(raw: bytes) -> None:
    error = rejected(raw, ErrorCode.INVALID_UTF8)
    assert "UTF-8" in error.reason


@pytest.mark.parametrize(
    "raw",
    [
        b"not json",
        b"{",
        b"{'eventId': 'e-1'}",
        b"   ",
        b'{"a": NaN}',
        b'{"a": Infinity}',
        b'{"a": -Infinity}',
        b'{"a": 1e999}',
        b'{"a": ' + b"1" * 5000 + b"}",  # beyond Python's int conversion limit
        b"[" * 100_000 + b"]" * 100_000,
        b'{"eventId": "e-1"} trailing',
    ],
)
def test_a_value_that_is_not_json_is_rejected(raw: bytes) -> None:
    error = rejected(raw, ErrorCode.INVALID_JSON)
    assert "JSON" in error.reason


@pytest.mark.parametrize(
    "raw, kind",
    [(b"[1, 2]", "array"), (b"42", "number"), (b"null", "null"), (b"true", "boolean"),
     (b'"just text"', None)],
)
def test_a_value_that_is_not_an_object_is_rejected(raw: bytes, kind: str | None) -> None:
    # '"just text"' is a JSON string, decoded once more, and is not JSON inside.
    if kind is None:
        rejected(raw, ErrorCode.INVALID_JSON)
        return
    error = rejected(raw, ErrorCode.NOT_AN_OBJECT)
    assert kind in error.reason


def test_a_json_array_inside_a_string_is_not_an_object() -> None:
    rejected(json.dumps("[1,2]").encode(), ErrorCode.NOT_AN_OBJECT)


@pytest.mark.parametrize("where", ["eventId", "data"])
def test_a_lone_surrogate_escape_is_rejected(where: str) -> None:
    """No database can store it as UTF-8: it must be a dead letter, not a crash."""
    obj = body(eventId="e-\ud800") if where == "eventId" else body(data={"x": "\udfff"})
    raw = json.dumps(obj).encode()  # ensure_ascii writes the \\udXXX escape
    error = rejected(raw, ErrorCode.INVALID_UTF8)
    assert "surrogate" in error.reason


def test_a_nul_escape_is_rejected() -> None:
    raw = json.dumps(body(data={"orderId": "O\u00001", "shopId": "S"})).encode()
    rejected(raw, ErrorCode.INVALID_JSON)


# -- a NUL in a field we do not read (issue #9 hole 4) ------------------------------------
def test_a_nul_in_an_unknown_data_field_is_kept_not_a_dead_letter() -> None:
    data = {"orderId": "O-1", "shopId": "S-1", "note": "a\u0000b", "x\u0000": ["\u0000", {"y": "\u0000"}]}
    for ascii_only in (True, False):
        event = parse_message(json.dumps(body(data=data), ensure_ascii=ascii_only).encode())
        assert event.received_data == data


def test_a_nul_in_an_unknown_event_types_data_is_kept() -> None:
    data = {"orderId": "O\u00001", "riderId": "\u0000"}  # an unknown type reads no data field
    event = parse(body(eventType="DeliveryRiderCheered", data=data))
    assert not event.known and event.data == data


@pytest.mark.parametrize("value", ["\u0000", "\ud800", {"deep": ["a\u0000", "\udfff"]}])
def test_an_unknown_top_level_field_is_ignored_whatever_it_holds(value: Any) -> None:
    """Neither stored nor read: not even a lone surrogate makes it a dead letter."""
    raw = json.dumps(body(extra=value, **{"x\u0000y": 1})).encode()
    assert parse_message(raw) == parse(body())


@pytest.mark.parametrize(
    "changes",
    [
        {"eventId": "e-\u00001"},
        {"eventType": "DeliveryCreated\u0000"},
        {"deliveryId": "D-\u0000"},
        {"data": {"orderId": "O-1", "shopId": "\u0000"}},
        {"eventType": "DeliveryCancelled", "data": {"reason": "late\u0000"}},
        {"eventType": "DeliveryPickedUp", "data": {"riderId": "R\u0000"}},
    ],
)
def test_a_nul_in_a_field_we_read_stays_a_dead_letter(changes: dict[str, Any]) -> None:
    error = rejected(json.dumps(body(**changes)).encode(), ErrorCode.INVALID_JSON)
    assert "NUL" in error.reason and list(changes)[-1] in error.reason


@pytest.mark.parametrize(
    "changes",
    [
        {"occurrenceDateTime": AT + "\u0000"},
        {"occurenceDateTime": AT + "\u0000", "occurrenceDateTime": None},
        {"eventType": "DeliveryPickedUp", "data": {"estimatedDeliveryAt": AT + "\u0000"}},
    ],
)
def test_a_nul_in_a_time_we_read_stays_a_dead_letter(changes: dict[str, Any]) -> None:
    with pytest.raises(EventParseError) as info:
        parse_message(json.dumps(body(**changes)).encode())
    assert info.value.code in (ErrorCode.INVALID_JSON, ErrorCode.INVALID_TIME,
                               ErrorCode.INVALID_DATA_FIELD)


_any_text = st.text(st.characters(codec=None, categories=None), max_size=6)
_unknown = st.recursive(
    st.none() | st.integers() | _any_text,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(_any_text, inner, max_size=3),
    max_leaves=8,
)


@settings(max_examples=300, deadline=None)
@given(st.dictionaries(_any_text, _unknown, max_size=3), st.dictionaries(_any_text, _unknown, max_size=3),
       st.sampled_from(["DeliveryCreated", "DeliveryCancelled", "DeliveryRiderCheered"]),
       st.booleans())
def test_unknown_fields_decide_nothing_and_both_paths_agree(
    top: dict[str, Any], extra_data: dict[str, Any], event_type: str, ascii_only: bool
) -> None:
    """Whatever unknown fields hold, the event is the one without them (data kept as
    received), or a lone surrogate in data (no database can store it) is a dead letter;
    the orjson fast path and the careful path give the same answer."""
    data = {**{k: v for k, v in extra_data.items() if k not in ("orderId", "shopId", "reason",
                                                                "estimatedDeliveryAt")},
            "orderId": "O-1", "shopId": "S-1"}
    known = {"eventId": "e-1", "eventType": event_type, "deliveryId": "D-1",
             "occurrenceDateTime": AT, "sequence": 1, "data": data}
    message = {**{k: v for k, v in top.items() if k not in known and k != "occurenceDateTime"},
               **known}
    outcomes = []
    for as_ascii in (ascii_only, not ascii_only):
        try:
            raw = json.dumps(message, ensure_ascii=as_ascii).encode("utf-8")
        except UnicodeEncodeError:  # a lone surrogate written raw is not UTF-8 at all
            continue
        try:
            outcomes.append(parse_message(raw))
        except EventParseError as exc:
            outcomes.append(exc.code)
    assert outcomes and all(o == outcomes[0] for o in outcomes), outcomes
    surrogate = any("\ud800" <= c <= "\udfff" for c in json.dumps(data, ensure_ascii=False))
    if surrogate:
        assert outcomes[0] is ErrorCode.INVALID_UTF8
    else:
        assert isinstance(outcomes[0], Event) and outcomes[0].received_data == data


def test_escaped_ordinary_characters_are_fine() -> None:
    raw = json.dumps(body(eventId="e-배달-😀"), ensure_ascii=True).encode()
    assert b"\\u" in raw
    assert parse_message(raw).event_id == "e-배달-😀"


def test_a_leading_utf8_bom_is_tolerated() -> None:
    """Files saved by some editors start with one; only a leading BOM is dropped."""
    assert parse_message(b"\xef\xbb\xbf" + encode(body())).event_id == body()["eventId"]
    rejected(b"\xef\xbb\xbf\xef\xbb\xbf" + encode(body()), ErrorCode.INVALID_JSON)


def test_lower_case_t_and_z_are_read_as_rfc_3339_allows() -> None:
    event = parse_message(encode(body(occurrenceDateTime="2026-11-25t10:00:00z")))
    assert event.occurred_at.isoformat() == "2026-11-25T10:00:00+00:00"


# -- the catalogue ----------------------------------------------------------------------
def test_every_korean_alias_of_the_contract() -> None:
    assert dict(ALIASES) == {
        "배달생성": EventType.CREATED,
        "배차완료": EventType.RIDER_ASSIGNED,
        "배차취소": EventType.RIDER_UNASSIGNED,
        "픽업완료": EventType.PICKED_UP,
        "배달완료": EventType.COMPLETED,
        "배달취소": EventType.CANCELLED,
        "배달예상시간변경": EventType.ETA_CHANGED,
    }
    assert {t.value for t in EventType} == {
        "DeliveryCreated", "DeliveryRiderAssigned", "DeliveryRiderUnassigned",
        "DeliveryPickedUp", "DeliveryCompleted", "DeliveryCancelled", "DeliveryEtaChanged",
    }


VALID_DATA: dict[EventType, dict[str, Any]] = {
    EventType.CREATED: {"orderId": "O-1", "shopId": "S-1"},
    EventType.RIDER_ASSIGNED: {"riderId": "R-1"},
    EventType.RIDER_UNASSIGNED: {},
    EventType.PICKED_UP: {},
    EventType.COMPLETED: {},
    EventType.CANCELLED: {},
    EventType.ETA_CHANGED: {"estimatedDeliveryAt": "2026-11-25T11:00:00Z"},
}


@pytest.mark.parametrize("alias", sorted(ALIASES))
def test_an_alias_is_stored_under_its_canonical_name(alias: str) -> None:
    kind = ALIASES[alias]
    event = parse(body(eventType=alias, data=VALID_DATA[kind]))
    assert event.event_type == kind.value
    assert event.known
    assert event.kind is kind
    assert canonical_type(alias) is kind


@pytest.mark.parametrize("kind", list(EventType))
def test_each_known_type_with_its_data_parses(kind: EventType) -> None:
    event = parse(body(eventType=kind.value, data=VALID_DATA[kind]))
    assert event.known and event.kind is kind


@pytest.mark.parametrize("name", ["DeliveryRated", "deliverycreated", "Delivery Created", "배달"])
def test_an_unknown_type_is_kept_as_received(name: str) -> None:
    event = parse(body(eventType=name, data={"anything": [1, {"b": None}]}))
    assert event.known is False
    assert event.kind is None
    assert event.event_type == name
    assert dict(event.data) == {"anything": [1, {"b": None}]}
    assert canonical_type(name) is None


def test_an_unknown_type_has_no_data_rules() -> None:
    event = parse(body(eventType="DeliveryRated", data={"estimatedDeliveryAt": 5}))
    assert event.estimated_delivery_at is None


REQUIRED = [
    (kind, spec.name)
    for kind, specs in DATA_FIELDS.items()
    for spec in specs
    if spec.required
]


def test_the_required_data_fields_are_those_of_the_contract() -> None:
    assert sorted((k.value, n) for k, n in REQUIRED) == [
        ("DeliveryCreated", "orderId"),
        ("DeliveryCreated", "shopId"),
        ("DeliveryEtaChanged", "estimatedDeliveryAt"),
        ("DeliveryRiderAssigned", "riderId"),
    ]


@pytest.mark.parametrize("kind, name", REQUIRED)
@pytest.mark.parametrize("alias", [False, True])
def test_a_known_type_without_a_required_data_field_is_rejected(
    kind: EventType, name: str, alias: bool
) -> None:
    data = dict(VALID_DATA[kind])
    del data[name]
    event_type = next(a for a, k in ALIASES.items() if k is kind) if alias else kind.value
    error = rejected(body(eventType=event_type, data=data), ErrorCode.MISSING_DATA_FIELD)
    assert name in error.reason
    data[name] = None  # null counts as absent
    rejected(body(eventType=event_type, data=data), ErrorCode.MISSING_DATA_FIELD)


@pytest.mark.parametrize("kind", [EventType.CREATED, EventType.RIDER_ASSIGNED,
                                  EventType.ETA_CHANGED])
def test_a_known_type_with_absent_data_is_rejected(kind: EventType) -> None:
    rejected(body(eventType=kind.value, data=None), ErrorCode.MISSING_DATA_FIELD)


@pytest.mark.parametrize(
    "kind, name, value",
    [
        (EventType.CREATED, "orderId", 17),
        (EventType.CREATED, "orderId", ""),
        (EventType.CREATED, "shopId", ["S-1"]),
        (EventType.CREATED, "shopId", "  "),
        (EventType.CREATED, "estimatedDeliveryAt", "soon"),
        (EventType.CREATED, "estimatedDeliveryAt", 1764064800),
        (EventType.RIDER_ASSIGNED, "riderId", 7),
        (EventType.RIDER_ASSIGNED, "riderId", ""),
        (EventType.RIDER_UNASSIGNED, "reason", {"text": "x"}),
        (EventType.PICKED_UP, "riderId", True),
        (EventType.CANCELLED, "reason", 3),
        (EventType.ETA_CHANGED, "estimatedDeliveryAt", "2026-02-30T10:00:00Z"),
        (EventType.ETA_CHANGED, "estimatedDeliveryAt", False),
    ],
)
def test_a_data_field_of_the_wrong_type_is_rejected(
    kind: EventType, name: str, value: object
) -> None:
    data = dict(VALID_DATA[kind]) | {name: value}
    error = rejected(body(eventType=kind.value, data=data), ErrorCode.INVALID_DATA_FIELD)
    assert f"data.{name}" in error.reason


@pytest.mark.parametrize(
    "kind, data",
    [
        (EventType.RIDER_UNASSIGNED, {"reason": "rider ill"}),
        (EventType.PICKED_UP, {"riderId": "R-2"}),
        (EventType.CANCELLED, {"reason": "customer"}),
        (EventType.CREATED, {"orderId": "O", "shopId": "S", "estimatedDeliveryAt": None}),
    ],
)
def test_optional_data_fields_are_accepted(kind: EventType, data: dict[str, Any]) -> None:
    assert dict(parse(body(eventType=kind.value, data=data)).received_data) == data


@pytest.mark.parametrize(
    "text, tz, expected",
    [
        ("2026-11-25T20:00:00+09:00", UTC, datetime(2026, 11, 25, 11, 0, tzinfo=UTC)),
        ("2026-11-25 20:00:00", SEOUL, datetime(2026, 11, 25, 11, 0, tzinfo=UTC)),
        ("2026-11-25 20:00:00", UTC, datetime(2026, 11, 25, 20, 0, tzinfo=UTC)),
    ],
)
@pytest.mark.parametrize("kind", [EventType.CREATED, EventType.ETA_CHANGED])
def test_estimated_delivery_at_is_parsed(kind: EventType, text: str, tz: Any,
                                         expected: datetime) -> None:
    data = dict(VALID_DATA[kind]) | {"estimatedDeliveryAt": text}
    event = parse(body(eventType=kind.value, data=data), source_tz=tz)
    assert event.estimated_delivery_at == expected
    assert event.data["estimatedDeliveryAt"] == text  # kept as received in the history


def test_created_without_eta_has_none() -> None:
    assert parse(body()).estimated_delivery_at is None


# -- make_event: the same rules for rows read back from the history -------------------------
def test_make_event_canonicalises_and_checks_data() -> None:
    event = make_event("e-1", "배달생성", "D-1", AT_UTC, None, {"orderId": "O", "shopId": "S"})
    assert event.event_type == "DeliveryCreated" and event.known
    with pytest.raises(EventParseError) as info:
        make_event("e-1", "DeliveryCreated", "D-1", AT_UTC, None, {"orderId": "O"})
    assert info.value.code is ErrorCode.MISSING_DATA_FIELD
    unknown = make_event("e-2", "Whatever", "D-1", AT_UTC, 3, {"x": 1})
    assert not unknown.known and unknown.event_type == "Whatever" and unknown.sequence == 3


def test_the_test_helper_body_parses() -> None:
    """tests.helpers.make_event builds valid bodies for every type it knows data for."""
    for kind in EventType:
        event = parse(make_body(kind.value))
        assert event.kind is kind


def test_every_error_code_is_reachable() -> None:
    """Each ErrorCode is produced by at least one input above; this keeps the list honest."""
    samples: dict[ErrorCode, bytes | None] = {
        ErrorCode.EMPTY_MESSAGE: b"",
        ErrorCode.INVALID_UTF8: b"\xff",
        ErrorCode.INVALID_JSON: b"{",
        ErrorCode.NOT_AN_OBJECT: b"[]",
        ErrorCode.MISSING_FIELD: encode(body(eventId=None)),
        ErrorCode.WRONG_TYPE: encode(body(eventId=1)),
        ErrorCode.EMPTY_FIELD: encode(body(eventId="")),
        ErrorCode.FIELD_TOO_LONG: encode(body(eventId="e" * 129)),
        ErrorCode.INVALID_TIME: encode(body(occurrenceDateTime="never")),
        ErrorCode.MISSING_DATA_FIELD: encode(body(data={"orderId": "O"})),
        ErrorCode.INVALID_DATA_FIELD: encode(body(data={"orderId": "O", "shopId": 1})),
        ErrorCode.INVALID_VERSION: encode(body(eventVersion=0)),
    }
    # The size bound is the projector's, before parsing (projector/batch.py).
    from projector.batch import parse_source_message
    from projector.settings import Settings
    from projector.sources.base import SourceMessage

    assert set(samples) | {ErrorCode.MESSAGE_TOO_LARGE} == set(ErrorCode)
    for code, raw in samples.items():
        rejected(raw, code)
    large = SourceMessage("t", 0, 0, None, encode(body(data={"x": "y" * 2000})))
    with pytest.raises(EventParseError) as caught:
        parse_source_message(large, Settings().source_tz, 1000)
    assert caught.value.code is ErrorCode.MESSAGE_TOO_LARGE


def test_nesting_beyond_the_limit_is_a_dead_letter_not_a_crash() -> None:
    from schema.events import MAX_DEPTH, ErrorCode, EventParseError, parse_message

    def nested(depth: int) -> dict:
        inner: object = 1
        for _ in range(depth):
            inner = [inner]
        return {"eventId": "n", "eventType": "DeliveryNoted", "deliveryId": "D",
                "occurrenceDateTime": "2026-11-25T10:00:00Z", "data": {"x": inner}}

    ok = parse_message(json.dumps(nested(MAX_DEPTH - 3)).encode())
    assert ok.event_id == "n"
    for depth in (MAX_DEPTH + 1, 990, 5000):
        with pytest.raises(EventParseError) as caught:
            parse_message(json.dumps(nested(depth)).encode() if depth < 900
                          else ('{"eventId":"n","data":' + "[" * depth + "]" * depth + "}").encode())
        assert caught.value.code in (ErrorCode.INVALID_JSON,)


# -- the orjson fast path ------------------------------------------------------------
_json_scalars = (
    st.none() | st.booleans() | st.text(max_size=20)
    | st.integers(min_value=-(2**70), max_value=2**70)
    | st.floats(allow_nan=False, allow_infinity=False)
)
_json_values = st.recursive(
    _json_scalars,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4),
    max_leaves=20,
)


def _typed(value: Any) -> Any:
    """The value with each number's type kept, so 1 and 1.0 differ."""
    if isinstance(value, dict):
        return {k: _typed(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_typed(v) for v in value]
    return (type(value).__name__, value)


@settings(max_examples=300, deadline=None)
@given(st.dictionaries(st.text(max_size=8), _json_values, max_size=6), st.booleans())
def test_the_fast_path_decodes_exactly_what_the_careful_path_does(
    body: dict[str, Any], ascii_only: bool
) -> None:
    raw = json.dumps(body, ensure_ascii=ascii_only).encode("utf-8")
    fast = _fast_object(raw)
    try:
        decoded = decode_value(raw)
    except EventParseError:  # only the careful path may refuse (and name why)
        assert fast is None
        return
    careful = json.loads(raw.decode("utf-8"))
    assert _typed(decoded) == _typed(careful)
    if fast is not None:
        assert _typed(fast) == _typed(careful)


def test_the_fast_path_leaves_long_numbers_and_escapes_to_the_careful_path() -> None:
    assert _fast_object(b'{"n": 18446744073709551616}') is None  # orjson would give a float
    assert _fast_object(b'{"s": "\\u0041"}') is None
    assert _fast_object(b' {"a": 1}') is None
    assert _fast_object(b'{"a": 1}') == {"a": 1}
    assert decode_value(b'{"n": 18446744073709551616}') == {"n": 18446744073709551616}


def test_an_event_built_without_its_constructor_is_the_same_event() -> None:
    values = dict(
        event_id="e-1", event_type="DeliveryCreated", delivery_id="D-1", occurred_at=AT_UTC,
        sequence=3, data={"orderId": "O-1"}, known=True,
        estimated_delivery_at=AT_UTC + timedelta(minutes=30), version=2,
        received={"orderId": "O-1", "old": 1},
    )
    assert list(values) == [f.name for f in dataclasses.fields(Event)]
    built = _new_event(**values)  # type: ignore[arg-type]
    constructed = Event(**values)  # type: ignore[arg-type]
    assert type(built) is Event
    assert built == constructed
    assert vars(built) == vars(constructed)
    assert dataclasses.replace(built, sequence=4) == dataclasses.replace(constructed, sequence=4)
    with pytest.raises(dataclasses.FrozenInstanceError):
        built.event_id = "e-2"  # type: ignore[misc]


def test_make_event_gives_what_the_constructor_gives() -> None:
    known = make_event("e-1", "배달생성", "D-1", AT_UTC, None, {"orderId": "O-1", "shopId": "S-1"})
    assert known.event_type == "DeliveryCreated" and known.known
    assert known == Event(**vars(known)) and vars(known) == vars(Event(**vars(known)))
    unknown = make_event("e-2", "Whatever", "D-1", AT_UTC, 1, {})
    assert unknown == Event("e-2", "Whatever", "D-1", AT_UTC, 1, {}, known=False)
    assert vars(unknown) == vars(Event("e-2", "Whatever", "D-1", AT_UTC, 1, {}, known=False))
