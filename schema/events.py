"""The event envelope and catalogue: how one raw message becomes one event.

This module is section Events of the contract in code. It imports only
the standard library and orjson (a faster parser for the common case) so that
both the projector and its tests can use it without a database or a broker.
Every way a message can be unreadable maps to one stable ``ErrorCode`` and a
readable reason; the projector stores both in a dead letter.
"""

from __future__ import annotations

import enum
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta, tzinfo
from typing import Any, Final
from zoneinfo import ZoneInfo

import orjson

from schema.versions import (
    FIRST_VERSION,
    MAX_ETA_MINUTES,
    REGISTRY,
    SHAPES,
    Registry,
    Shape,
)
from schema.versions import (
    DataField as DataField,  # re-exported: the catalogue's field rule
)

MAX_ID_LENGTH: Final = 128
#: Deepest nesting of objects and arrays accepted in a message.
MAX_DEPTH: Final = 64
#: The greatest ``eventVersion`` accepted: it is stored and served as a 32-bit integer.
MAX_VERSION: Final = 2**31 - 1


class EventType(str, enum.Enum):
    """The known event types, by canonical name."""

    CREATED = "DeliveryCreated"
    RIDER_ASSIGNED = "DeliveryRiderAssigned"
    RIDER_UNASSIGNED = "DeliveryRiderUnassigned"
    PICKED_UP = "DeliveryPickedUp"
    COMPLETED = "DeliveryCompleted"
    CANCELLED = "DeliveryCancelled"
    ETA_CHANGED = "DeliveryEtaChanged"


#: Korean aliases accepted on input; stored and shown under the canonical name.
ALIASES: Final[Mapping[str, EventType]] = {
    "배달생성": EventType.CREATED,
    "배차완료": EventType.RIDER_ASSIGNED,
    "배차취소": EventType.RIDER_UNASSIGNED,
    "픽업완료": EventType.PICKED_UP,
    "배달완료": EventType.COMPLETED,
    "배달취소": EventType.CANCELLED,
    "배달예상시간변경": EventType.ETA_CHANGED,
}


#: What each known type reads from ``data`` at version 1 (``schema.versions`` holds
#: every version). Other fields are kept, never an error.
DATA_FIELDS: Final[Mapping[EventType, Sequence[DataField]]] = {
    kind: SHAPES[(kind.value, FIRST_VERSION)].fields for kind in EventType
}


class ErrorCode(str, enum.Enum):
    """Stable codes for why a message was dead-lettered."""

    EMPTY_MESSAGE = "EMPTY_MESSAGE"
    INVALID_UTF8 = "INVALID_UTF8"
    INVALID_JSON = "INVALID_JSON"
    NOT_AN_OBJECT = "NOT_AN_OBJECT"
    MISSING_FIELD = "MISSING_FIELD"
    WRONG_TYPE = "WRONG_TYPE"
    EMPTY_FIELD = "EMPTY_FIELD"
    FIELD_TOO_LONG = "FIELD_TOO_LONG"
    INVALID_TIME = "INVALID_TIME"
    MISSING_DATA_FIELD = "MISSING_DATA_FIELD"
    INVALID_DATA_FIELD = "INVALID_DATA_FIELD"
    INVALID_VERSION = "INVALID_VERSION"
    #: larger than the projector accepts (PROJECTOR_MAX_MESSAGE_BYTES); kept whole
    MESSAGE_TOO_LARGE = "MESSAGE_TOO_LARGE"


class EventParseError(ValueError):
    """A message that cannot become an event. ``code`` is stable, ``reason`` is for people."""

    def __init__(self, code: ErrorCode, reason: str) -> None:
        super().__init__(f"{code.value}: {reason}")
        self.code = code
        self.reason = reason


@dataclass(frozen=True)
class Event:
    """One valid delivery event, as folded and as kept in the history.

    ``event_type`` is the canonical name for a known type and the name as received
    for an unknown one; ``known`` tells which (a known type at a version this build
    does not read is unknown too). ``data`` is in the newest shape of its type, the
    one the fold reads; ``received_data`` and ``version`` are as received, as the
    history keeps them.
    """

    event_id: str
    event_type: str
    delivery_id: str
    occurred_at: datetime  # always aware, in UTC
    sequence: int | None = None
    data: Mapping[str, Any] = field(default_factory=dict)
    known: bool = True
    #: ``data.estimatedDeliveryAt`` read as an instant (in SOURCE_TIMEZONE when it has no offset).
    estimated_delivery_at: datetime | None = None
    #: ``eventVersion`` as received (1 when the message carried none).
    version: int = 1
    #: ``data`` as received when upcasting changed it; None when ``data`` is as received.
    received: Mapping[str, Any] | None = None

    @property
    def received_data(self) -> Mapping[str, Any]:
        return self.data if self.received is None else self.received

    @property
    def sort_key(self) -> tuple[datetime, int, str]:
        """The fold order of the contract's folding rule 1: time, sequence (0 if absent), id."""
        return (self.occurred_at, self.sequence or 0, self.event_id)

    @property
    def kind(self) -> EventType | None:
        return _BY_NAME.get(self.event_type) if self.known else None


#: Every accepted spelling of a known type: canonical names and Korean aliases.
_BY_NAME: Final[Mapping[str, EventType]] = {
    **{kind.value: kind for kind in EventType},
    **ALIASES,
}


def canonical_type(name: str) -> EventType | None:
    """The known type for a canonical name or a Korean alias, else None."""
    return _BY_NAME.get(name)


def parse_time(value: object, source_tz: tzinfo, what: str) -> datetime:
    """Read an ISO-8601 time (or ``YYYY-MM-DD HH:MM:SS``) as an aware UTC datetime.

    A time without an offset is read in ``source_tz``.
    """
    if not isinstance(value, str):
        raise EventParseError(
            ErrorCode.INVALID_TIME, f"{what} must be an ISO-8601 string, got {_kind(value)}"
        )
    text = value.strip().upper()  # RFC 3339 allows a lower-case "t" and "z"
    if len(text) < 10:
        raise EventParseError(ErrorCode.INVALID_TIME, f"{what} is not a date-time: {value!r}")
    try:
        parsed = datetime.fromisoformat(text)
    except ValueError:
        raise EventParseError(
            ErrorCode.INVALID_TIME, f"{what} is not a date-time: {value[:64]!r}"
        ) from None
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=source_tz)
    try:
        return parsed.astimezone(UTC)
    except OverflowError:  # e.g. 0001-01-01T00:00:00+01:00 falls before year 1 in UTC
        raise EventParseError(
            ErrorCode.INVALID_TIME, f"{what} is out of range in UTC: {value[:64]!r}"
        ) from None


def decode_value(raw: bytes | None) -> dict[str, Any]:
    """Bytes -> JSON object; a JSON string holding the object is decoded once more.

    Any JSON text is decoded as it is, a ``\\u0000`` or a lone ``\\ud800`` included:
    whether such a string may be stored is decided by ``parse_message``, for the
    fields it reads and stores only (unknown top-level fields are ignored).
    """
    return _decode(raw)[0]


def _decode(raw: bytes | None) -> tuple[dict[str, Any], bool]:
    """The object, and whether its text held a ``\\u`` escape.

    Only an escape can put a NUL or a lone surrogate into a string: without one,
    nothing decoded needs that check (the fast path never sees an escape).
    """
    if raw is None or raw == b"":
        raise EventParseError(ErrorCode.EMPTY_MESSAGE, "the message has no value")
    fast = _fast_object(raw)
    if fast is not None:
        return fast, False
    try:
        text = raw.decode("utf-8").removeprefix("\ufeff")  # a byte order mark from an editor
    except UnicodeDecodeError as exc:
        raise EventParseError(
            ErrorCode.INVALID_UTF8, f"the value is not valid UTF-8 (byte {exc.start})"
        ) from None
    try:
        value = _loads(text)
        if isinstance(value, str):  # Debezium outbox router with a text payload column
            value = _loads(value)
    except json.JSONDecodeError as exc:
        raise EventParseError(ErrorCode.INVALID_JSON, f"the value is not JSON: {exc.msg}") from None
    except ValueError as exc:  # NaN/Infinity, a number out of range, an int of > 4300 digits
        reason = str(exc).split(":")[0]
        raise EventParseError(ErrorCode.INVALID_JSON, f"the value is not JSON: {reason}") from None
    except RecursionError:
        raise EventParseError(
            ErrorCode.INVALID_JSON, "the value is not JSON: nested too deeply"
        ) from None
    if not isinstance(value, dict):
        raise EventParseError(
            ErrorCode.NOT_AN_OBJECT, f"the value must be a JSON object, got {_kind(value)}"
        )
    if text.count("[") + text.count("{") > MAX_DEPTH:
        _check_depth(value)
    return value, "\\u" in text


#: Digits to "9", every other byte to a space: a run of 19 digits is then a substring
#: test, several times faster than a regular expression on every message.
_DIGITS: Final = bytes(0x39 if 0x30 <= b <= 0x39 else 0x20 for b in range(256))
_LONG_RUN: Final = b"9" * 19


def _fast_object(raw: bytes) -> dict[str, Any] | None:
    """The common case through orjson: a plain JSON object, nothing to check on it.

    Returns None whenever the careful path must decide (an error to name, a string
    to decode again, a ``\\u`` escape, deep nesting, a byte order mark, a number of
    19 digits or more, which orjson would turn into a float): orjson accepts
    nothing else that ``json`` refuses, so what it returns here is what the careful
    path would return.
    """
    if (
        raw[:1] != b"{"
        or b"\\u" in raw
        or raw.count(b"[") + raw.count(b"{") > MAX_DEPTH
        or _LONG_RUN in raw.translate(_DIGITS)
    ):
        return None
    try:
        value = orjson.loads(raw)
    except orjson.JSONDecodeError:
        return None
    return value if isinstance(value, dict) else None


def _check_depth(value: Any) -> None:
    """Refuse documents nested deeper than ``MAX_DEPTH``: storing them would recurse too deep."""
    stack: list[tuple[Any, int]] = [(value, 1)]
    while stack:
        item, depth = stack.pop()
        if depth > MAX_DEPTH:
            raise EventParseError(
                ErrorCode.INVALID_JSON, f"the value is nested deeper than {MAX_DEPTH} levels"
            )
        if isinstance(item, dict):
            stack.extend((child, depth + 1) for child in item.values())
        elif isinstance(item, list):
            stack.extend((child, depth + 1) for child in item)


def _loads(text: str) -> Any:
    return json.loads(text, parse_constant=_no_constant, parse_float=_finite_float)


def _no_constant(name: str) -> Any:
    raise ValueError(f"{name} is not a JSON value")


def _finite_float(text: str) -> float:
    number = float(text)
    if number in (float("inf"), float("-inf")):
        raise ValueError(f"the number {text[:32]} is out of range")
    return number


def _check_data_storable(shape: Shape | None, data: Mapping[str, Any]) -> None:
    """``data`` is stored whole: refuse what no database can store, and NUL where we read.

    A lone surrogate (``\\ud800``) cannot be written as UTF-8 anywhere in it. A NUL
    (``\\u0000``) is refused only in a field this event type reads; in any other
    field it is kept (the contract, section Events: unknown fields are kept), and the
    store writes it as its database can (``projector.store.rows.jsonb_text``).
    """
    stack: list[Any] = [data]
    while stack:
        item = stack.pop()
        if isinstance(item, dict):
            stack.extend(item.keys())
            stack.extend(item.values())
        elif isinstance(item, list):
            stack.extend(item)
        elif isinstance(item, str) and not _utf8_encodable(item):
            raise EventParseError(
                ErrorCode.INVALID_UTF8,
                f"data holds a lone surrogate (\\u{ord(_first_surrogate(item)):04x}),"
                " which UTF-8 cannot encode",
            )
    if shape is None:
        return
    for name in shape.read:
        _refuse_nul(_field(data, name), f"data.{name}")


def _field(data: Mapping[str, Any], path: str) -> Any:
    """``data`` at ``path`` (``shop.id``), or None where a step is absent or not an object."""
    value: Any = data
    for part in path.split("."):
        if not isinstance(value, dict):
            return None
        value = value.get(part)
    return value


def _refuse_nul(value: object, name: str) -> None:
    if isinstance(value, str) and "\x00" in value:
        raise EventParseError(
            ErrorCode.INVALID_JSON, f"{name} holds a NUL character (\\u0000)"
        )


def _first_surrogate(text: str) -> str:
    return next(c for c in text if "\ud800" <= c <= "\udfff")


def parse_message(
    value: bytes | None,
    key: bytes | None = None,
    headers: Sequence[tuple[str, bytes | None]] = (),
    source_tz: tzinfo = UTC,
    registry: Registry = REGISTRY,
) -> Event:
    """Parse one message into an ``Event`` or raise ``EventParseError``."""
    body, escaped = _decode(value)
    header_map = _headers(headers) if headers else {}

    event_id = _identifier(body, "eventId", header_map.get("id"), "header 'id'")
    raw_type = _identifier(body, "eventType", header_map.get("eventType"), "header 'eventType'")
    delivery_id = _identifier(body, "deliveryId", _key_text(key), "message key")

    if "occurrenceDateTime" in body:
        time_field = "occurrenceDateTime"
    elif "occurenceDateTime" in body:
        time_field = "occurenceDateTime"
    else:
        raise EventParseError(ErrorCode.MISSING_FIELD, "occurrenceDateTime is required")
    if escaped:
        _refuse_nul(body[time_field], time_field)
    occurred_at = parse_time(body[time_field], source_tz, time_field)

    sequence = body.get("sequence")
    if sequence is not None and (isinstance(sequence, bool) or not isinstance(sequence, int)):
        raise EventParseError(
            ErrorCode.WRONG_TYPE, f"sequence must be an integer, got {_kind(sequence)}"
        )
    if sequence is not None and not -(2**63) <= sequence < 2**63:
        raise EventParseError(ErrorCode.WRONG_TYPE, "sequence is outside the 64-bit range")

    data = body.get("data", {})
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise EventParseError(ErrorCode.WRONG_TYPE, f"data must be an object, got {_kind(data)}")
    version_header = header_map.get("eventVersion")
    if version_header is None and headers:
        # A header that is not UTF-8 is no header for the ids, but a version that
        # cannot be read is still a malformed version, not version 1.
        version_header = next(
            (v.decode("utf-8", "replace") for n, v in headers if n == "eventVersion" and v),
            None,
        )
    version = _version(body, version_header)
    if escaped:
        kind = canonical_type(raw_type)
        shape = None if kind is None else registry.shapes.get((kind.value, version))
        _check_data_storable(shape, data)

    return make_event(
        event_id, raw_type, delivery_id, occurred_at, sequence, data, source_tz, version, registry
    )


def _version(body: Mapping[str, Any], header: str | None) -> int:
    """``eventVersion`` from the body, else the header of that name, else 1.

    Anything but a positive integer (a string in the body, 0, -1, 1.5, a boolean,
    a header that is not a decimal number) is refused: guessing a version would
    fold an event by the wrong shape.
    """
    value = body.get("eventVersion")
    if value is None:
        if header is None:
            return 1
        text = header.strip()
        if not (text.isascii() and text.isdecimal()) or len(text) > 10:
            raise EventParseError(
                ErrorCode.INVALID_VERSION,
                f"header 'eventVersion' must be a positive integer, got {header[:32]!r}",
            )
        value = int(text)
        where = "header 'eventVersion'"
    else:
        where = "eventVersion"
        if isinstance(value, bool) or not isinstance(value, int):
            raise EventParseError(
                ErrorCode.INVALID_VERSION,
                f"eventVersion must be a positive integer, got {_kind(value)}",
            )
    if not 1 <= value <= MAX_VERSION:
        raise EventParseError(
            ErrorCode.INVALID_VERSION,
            f"{where} must be a positive integer of at most {MAX_VERSION}, got {value}"
            if value > 0 else f"{where} must be a positive integer, got {value}",
        )
    return value


def make_event(
    event_id: str,
    event_type: str,
    delivery_id: str,
    occurred_at: datetime,
    sequence: int | None,
    data: Mapping[str, Any],
    source_tz: tzinfo = UTC,
    version: int = FIRST_VERSION,
    registry: Registry = REGISTRY,
) -> Event:
    """An ``Event`` from fields already read (a message, or a history row): the one
    pipeline from an event as received to the shape the fold reads.

    A known type is checked against the shape of the version received (raising
    ``EventParseError`` when it lacks a field or holds one of the wrong type), its
    estimated delivery time read as that version states it, then its ``data``
    upcast to the newest shape. A known type at a version ``registry`` does not
    read is an unknown event: kept, counted, folding nothing.
    """
    kind = canonical_type(event_type)
    path = None if kind is None else registry.paths.get((kind.value, version))
    if kind is None or path is None:
        return _new_event(
            event_id,
            event_type if kind is None else kind.value,
            delivery_id,
            occurred_at,
            sequence,
            data,
            False,
            None,
            version,
            None,
        )
    shape, upcasters = path
    eta = _check_data(kind, shape, data, occurred_at, source_tz)
    newest = data
    for upcast in upcasters:
        newest = upcast(newest, occurred_at)
    return _new_event(
        event_id,
        kind.value,
        delivery_id,
        occurred_at,
        sequence,
        newest,
        True,
        eta,
        version,
        None if newest is data else data,
    )


_new_object = object.__new__
_set_attribute = object.__setattr__


def _new_event(
    event_id: str,
    event_type: str,
    delivery_id: str,
    occurred_at: datetime,
    sequence: int | None,
    data: Mapping[str, Any],
    known: bool,
    estimated_delivery_at: datetime | None,
    version: int,
    received: Mapping[str, Any] | None,
) -> Event:
    """``Event(...)`` with every field given, at a quarter of the constructor's cost.

    The frozen dataclass's ``__init__`` sets each of the ten fields through
    ``object.__setattr__``, about 1.8 µs an event, the largest single item of
    ``make_event``; setting the instance's ``__dict__`` once gives the same
    object (equal, hashed alike, still frozen) in about 0.5 µs. A unit test
    holds the keys below to ``dataclasses.fields(Event)``.
    """
    event: Event = _new_object(Event)
    _set_attribute(event, "__dict__", {
        "event_id": event_id,
        "event_type": event_type,
        "delivery_id": delivery_id,
        "occurred_at": occurred_at,
        "sequence": sequence,
        "data": data,
        "known": known,
        "estimated_delivery_at": estimated_delivery_at,
        "version": version,
        "received": received,
    })
    return event


def _check_data(
    kind: EventType,
    shape: Shape,
    data: Mapping[str, Any],
    occurred_at: datetime,
    source_tz: tzinfo,
) -> datetime | None:
    """Check the ``data`` fields ``shape`` reads; returns the estimated delivery time."""
    times: dict[str, datetime] = {}
    minutes: dict[str, int] = {}
    for spec in shape.fields:
        value = _field(data, spec.name)
        if value is None:
            if spec.required:
                raise EventParseError(
                    ErrorCode.MISSING_DATA_FIELD, f"{kind.value} requires data.{spec.name}"
                )
            continue
        if spec.kind == "string":
            if not isinstance(value, str):
                raise EventParseError(
                    ErrorCode.INVALID_DATA_FIELD,
                    f"data.{spec.name} must be a string, got {_kind(value)}",
                )
            if spec.required and not value.strip():
                raise EventParseError(
                    ErrorCode.INVALID_DATA_FIELD, f"data.{spec.name} must not be empty"
                )
        elif spec.kind == "object":
            if not isinstance(value, dict):
                raise EventParseError(
                    ErrorCode.INVALID_DATA_FIELD,
                    f"data.{spec.name} must be an object, got {_kind(value)}",
                )
        elif spec.kind == "minutes":
            if (
                isinstance(value, bool)
                or not isinstance(value, int)
                or not 0 <= value <= MAX_ETA_MINUTES
            ):
                raise EventParseError(
                    ErrorCode.INVALID_DATA_FIELD,
                    f"data.{spec.name} must be an integer from 0 to {MAX_ETA_MINUTES},"
                    f" got {value if isinstance(value, int) else _kind(value)}",
                )
            minutes[spec.name] = value
        else:
            try:
                times[spec.name] = parse_time(value, source_tz, f"data.{spec.name}")
            except EventParseError as exc:
                raise EventParseError(ErrorCode.INVALID_DATA_FIELD, exc.reason) from None
    if shape.eta == "etaMinutes":
        found = minutes.get("etaMinutes")
        return None if found is None else occurred_at + timedelta(minutes=found)
    eta = times.get("estimatedDeliveryAt")
    if eta is None and data.get("estimatedDeliveryAt") is not None:
        # Every version-1 type reads it when present (the contract, section Event
        # catalogue: only the ETA types use it, but an unreadable one is an unreadable
        # time).
        eta = parse_time(data["estimatedDeliveryAt"], source_tz, "data.estimatedDeliveryAt")
    return eta


def _identifier(
    body: Mapping[str, Any], name: str, fallback: str | None, fallback_name: str
) -> str:
    value = body.get(name)
    from_body = value is not None
    if value is None:
        if fallback is None:
            raise EventParseError(
                ErrorCode.MISSING_FIELD,
                f"{name} is required (absent from the body and {fallback_name})",
            )
        value = fallback
    if not isinstance(value, str):
        raise EventParseError(ErrorCode.WRONG_TYPE, f"{name} must be a string, got {_kind(value)}")
    if not value.strip():
        raise EventParseError(ErrorCode.EMPTY_FIELD, f"{name} must not be empty")
    if "\x00" in value or not (value.isascii() or _utf8_encodable(value)):
        if not from_body:
            raise EventParseError(
                ErrorCode.WRONG_TYPE, f"{name} holds a NUL character or a lone surrogate"
            )
        _refuse_nul(value, name)
        raise EventParseError(
            ErrorCode.INVALID_UTF8,
            f"{name} holds a lone surrogate (\\u{ord(_first_surrogate(value)):04x}),"
            " which UTF-8 cannot encode",
        )
    if len(value) > MAX_ID_LENGTH:
        raise EventParseError(
            ErrorCode.FIELD_TOO_LONG,
            f"{name} has {len(value)} characters, at most {MAX_ID_LENGTH} are allowed",
        )
    return value


def _headers(headers: Sequence[tuple[str, bytes | None]]) -> dict[str, str]:
    """Header values as text; a JSON-quoted string (Debezium's JSON converter) is unquoted."""
    out: dict[str, str] = {}
    for name, raw in headers or ():
        if raw is None:
            continue
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError:
            continue
        if len(text) >= 2 and text[0] == '"' and text[-1] == '"':
            try:
                decoded = json.loads(text)
            except json.JSONDecodeError:
                decoded = None
            if isinstance(decoded, str):
                text = decoded
        out.setdefault(name, text)
    return out


def _utf8_encodable(text: str) -> bool:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def _key_text(key: bytes | None) -> str | None:
    if key is None:
        return None
    try:
        return key.decode("utf-8")
    except UnicodeDecodeError:
        return None


def _kind(value: object) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, (int, float)):
        return "a number"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, list):
        return "an array"
    if isinstance(value, dict):
        return "an object"
    return type(value).__name__


def zone(name: str) -> tzinfo:
    """A time zone by IANA name (``UTC``, ``Asia/Seoul``)."""
    return UTC if name.upper() == "UTC" else ZoneInfo(name)
