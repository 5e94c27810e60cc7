"""The contract's settings (its section Settings), read alike by ``projector`` and ``query-api``.

Both commands' frozen ``Settings`` extend ``SharedSettings`` with settings of their
own; the shared variables, their defaults, the meaning of an empty value, the
parsing of numbers, flags, time zones and the database URL, and how a flag
overrides a setting (``with_overrides``) are defined here once.

An empty value (``DATABASE_URL=``) means the same as an unset one: the default.
Errors are ``SettingError``; each command turns them into its own configuration
error, one readable line naming the variable.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, replace
from datetime import tzinfo
from typing import Any, Final, Self
from zoneinfo import ZoneInfoNotFoundError

from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError

from schema.events import zone

DEFAULT_DATABASE_URL: Final = "sqlite:///./delivery_read_model.db"
_TRUE: Final = frozenset({"1", "true", "yes", "on"})
_FALSE: Final = frozenset({"0", "false", "no", "off", ""})


class SettingError(ValueError):
    """A setting that cannot be used; the message names the variable and why."""


@dataclass(frozen=True)
class SharedSettings:
    """The contract's variables (the contract, section Settings) with their defaults.

    The base of each command's ``Settings``: a command adds its own fields and checks
    (``validate``); flags override fields through ``with_overrides``.
    """

    database_url: str = DEFAULT_DATABASE_URL
    event_source: str = "kafka"
    kafka_bootstrap_servers: str = "localhost:9092"
    kafka_topic: str = "delivery-events"
    kafka_group_id: str = "delivery-projector"
    source_timezone: str = "UTC"
    business_timezone: str = "UTC"

    @classmethod
    def from_env(cls, env: Mapping[str, str]) -> SharedSettings:
        d = cls()
        return cls(
            database_url=text(env, "DATABASE_URL", d.database_url),
            event_source=text(env, "EVENT_SOURCE", d.event_source),
            kafka_bootstrap_servers=text(
                env, "KAFKA_BOOTSTRAP_SERVERS", d.kafka_bootstrap_servers
            ),
            kafka_topic=text(env, "KAFKA_TOPIC", d.kafka_topic),
            kafka_group_id=text(env, "KAFKA_GROUP_ID", d.kafka_group_id),
            source_timezone=text(env, "SOURCE_TIMEZONE", d.source_timezone),
            business_timezone=text(env, "BUSINESS_TIMEZONE", d.business_timezone),
        )

    def as_fields(self) -> dict[str, Any]:
        """The shared variables only, to build a command's ``Settings`` from."""
        return {name: getattr(self, name) for name in SharedSettings.__dataclass_fields__}

    def with_overrides(self, **changes: Any) -> Self:
        """A copy with the flags given (None: not given) in place of the settings, checked."""
        updated = replace(self, **{k: v for k, v in changes.items() if v is not None})
        updated.validate()
        return updated

    def validate(self) -> None:
        """Refuse settings that cannot be used; each command checks what it reads."""

    @property
    def uses_kafka(self) -> bool:
        return self.event_source == "kafka"


def text(env: Mapping[str, str], name: str, default: str) -> str:
    raw = env.get(name)
    if raw is None or not raw.strip():
        return default
    return raw.strip()


def integer(env: Mapping[str, str], name: str, default: int) -> int:
    raw = env.get(name)
    if raw is None or not raw.strip():
        return default
    try:
        return int(raw)
    except ValueError:
        raise SettingError(f"{name}={raw!r} is not an integer") from None


def number(env: Mapping[str, str], name: str, default: float) -> float:
    raw = env.get(name)
    if raw is None or not raw.strip():
        return default
    try:
        value = float(raw)
    except ValueError:
        raise SettingError(f"{name}={raw!r} is not a number") from None
    if not math.isfinite(value):
        raise SettingError(f"{name}={raw!r} is not a finite number")
    return value


def flag(env: Mapping[str, str], name: str, default: bool) -> bool:
    raw = env.get(name)
    if raw is None:
        return default
    value = raw.strip().lower()
    if value in _TRUE:
        return True
    if value in _FALSE:
        return False
    raise SettingError(f"{name}={raw!r} is not a boolean (use 1 or 0)")


def time_zone(name: str, setting: str) -> tzinfo:
    try:
        return zone(name)
    except (ZoneInfoNotFoundError, ValueError, OSError):
        raise SettingError(f"{setting}={name!r} is not a known time zone") from None


def check_database_url(url: str) -> None:
    try:
        make_url(url)
    except ArgumentError:
        raise SettingError(
            f"DATABASE_URL {url!r} is not a SQLAlchemy URL"
            f" (e.g. {DEFAULT_DATABASE_URL} or postgresql+psycopg://...)"
        ) from None
