"""``eventVersion``: read from the body, else the Kafka header, else 1 (the contract, section Event versions)."""

from __future__ import annotations

import json
from typing import Any

import pytest

from schema.events import ErrorCode, EventParseError, parse_message
from tests.helpers import encode, make_event


def _parse(body: dict[str, Any], headers: tuple[tuple[str, bytes | None], ...] = ()) -> Any:
    return parse_message(encode(body), b"D-1", headers)


def test_a_message_without_a_version_is_version_1() -> None:
    assert _parse(make_event()).version == 1


def test_the_body_wins_over_the_header() -> None:
    event = _parse(make_event("DeliveryCompleted", eventVersion=1), (("eventVersion", b"7"),))
    assert (event.version, event.known) == (1, True)


@pytest.mark.parametrize("header", [b"1", b'"1"', b" 1 "])
def test_the_header_is_read_when_the_body_has_none(header: bytes) -> None:
    """Plain text, or a JSON string as Debezium's JSON converter writes it."""
    event = _parse(make_event("DeliveryCompleted"), (("eventVersion", header),))
    assert event.version == 1


@pytest.mark.parametrize("value", ["2", 0, -1, 1.5, 1.0, True, False, [1], {"v": 1}, 2**31])
def test_a_body_version_that_is_not_a_positive_integer_is_a_dead_letter(value: object) -> None:
    with pytest.raises(EventParseError) as info:
        _parse(make_event(eventVersion=value))
    assert info.value.code is ErrorCode.INVALID_VERSION


@pytest.mark.parametrize("header", [b"two", b"0", b"-1", b"1.5", b"", b'"x"', b"\xff",
                                    b"99999999999"])
def test_a_header_version_that_is_not_a_positive_integer_is_a_dead_letter(header: bytes) -> None:
    with pytest.raises(EventParseError) as info:
        _parse(make_event(), (("eventVersion", header),))
    assert info.value.code is ErrorCode.INVALID_VERSION, info.value.reason


def test_a_null_version_in_the_body_is_absent() -> None:
    assert _parse(make_event(eventVersion=None), (("eventVersion", b"1"),)).version == 1


def test_a_known_type_at_a_version_this_build_does_not_know_is_an_unknown_event() -> None:
    """Not a dead letter: kept with its version and data as received, folding nothing;
    its data is not checked against a shape this build cannot know."""
    body = make_event("배차완료", eventVersion=99, data={"assignee": {"ref": 7}})
    event = _parse(body)
    assert (event.event_type, event.known, event.version) == ("DeliveryRiderAssigned", False, 99)
    assert event.data == {"assignee": {"ref": 7}}


def test_an_unknown_type_keeps_its_version() -> None:
    event = _parse(make_event("DeliveryTeleported", eventVersion=4))
    assert (event.event_type, event.known, event.version) == ("DeliveryTeleported", False, 4)


def test_a_double_encoded_message_carries_its_version() -> None:
    body = make_event("DeliveryCompleted", eventVersion=1)
    event = parse_message(json.dumps(json.dumps(body)).encode(), None)
    assert event.version == 1
