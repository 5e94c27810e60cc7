"""The contract's scalars: ``DateTime`` (always UTC with an offset), ``Date``, ``JSON``,
``Long`` (a 64-bit signed integer: sequences, offsets, lag and counts).

Input parse errors raise ``UserInputError`` so that their message survives error
masking: a client sending ``lastEventFrom: "yesterday"`` learns why it failed.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from datetime import UTC, date, datetime
from typing import Any, NewType

import strawberry
from strawberry.types.scalar import ScalarDefinition

from query_api.errors import UserInputError

JSON = NewType("JSON", object)
Long = NewType("Long", int)

LONG_MIN = -(2**63)
LONG_MAX = 2**63 - 1


def serialize_datetime(value: datetime) -> str:
    if value.tzinfo is None:  # the tables hand back aware UTC; be safe anyway
        value = value.replace(tzinfo=UTC)
    return value.astimezone(UTC).isoformat()


def parse_datetime(value: object) -> datetime:
    if not isinstance(value, str):
        raise UserInputError("DateTime must be an ISO-8601 string with an offset")
    try:
        parsed = datetime.fromisoformat(value.strip().upper())  # RFC 3339 allows "t" and "z"
    except ValueError:
        raise UserInputError(f"DateTime {value[:64]!r} is not ISO-8601") from None
    if parsed.tzinfo is None:
        raise UserInputError(
            f"DateTime {value[:64]!r} has no offset; add one, e.g. 'Z' or '+09:00'"
        )
    try:
        return parsed.astimezone(UTC)
    except OverflowError:
        raise UserInputError(f"DateTime {value[:64]!r} is out of range in UTC") from None


def serialize_date(value: date) -> str:
    return value.isoformat()


def parse_date(value: object) -> date:
    if not isinstance(value, str):
        raise UserInputError("Date must be a string YYYY-MM-DD")
    try:
        if not re.fullmatch(r"\d{4}-\d{2}-\d{2}", value):
            raise ValueError(value)
        return date.fromisoformat(value)
    except ValueError:
        raise UserInputError(f"Date {value[:64]!r} is not YYYY-MM-DD") from None


def serialize_json(value: object) -> object:
    return value


def parse_json(value: object) -> object:
    # Only an output type in the contract; accept what JSON accepts if ever used as input.
    json.dumps(value)
    return value


def serialize_long(value: int) -> int:
    number = int(value)
    if not LONG_MIN <= number <= LONG_MAX:
        raise ValueError(f"Long cannot represent {number}: outside the 64-bit signed range")
    return number


def parse_long(value: object) -> int:
    # bool is an int in Python; GraphQL has no such coercion.
    if isinstance(value, bool) or not isinstance(value, int):
        raise UserInputError(f"Long must be an integer, not {value!r:.64}")
    if not LONG_MIN <= value <= LONG_MAX:
        raise UserInputError(f"Long {value} is outside the 64-bit signed range")
    return value


SCALARS: Mapping[object, ScalarDefinition] = {
    datetime: strawberry.scalar(
        name="DateTime",
        description="ISO-8601 date-time; output always with an offset, in UTC",
        serialize=serialize_datetime,
        parse_value=parse_datetime,
    ),
    date: strawberry.scalar(
        name="Date",
        description="A calendar day, YYYY-MM-DD",
        serialize=serialize_date,
        parse_value=parse_date,
    ),
    JSON: strawberry.scalar(
        name="JSON",
        description="Any JSON value (an event's data object)",
        serialize=serialize_json,
        parse_value=parse_json,
    ),
    Long: strawberry.scalar(
        name="Long",
        description=(
            "A 64-bit signed integer, serialized as a JSON number"
            " (exact in JavaScript up to 2^53-1)"
        ),
        serialize=serialize_long,
        parse_value=parse_long,
    ),
}


def json_value(value: Any) -> JSON:
    return JSON(value)
