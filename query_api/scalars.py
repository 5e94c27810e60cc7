"""The contract's scalars: ``DateTime`` (always UTC with an offset), ``Date``, ``JSON``.

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
}


def json_value(value: Any) -> JSON:
    return JSON(value)
