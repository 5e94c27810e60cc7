"""Settings: one frozen object, read from the environment once at start (CONTRACT.md §4)."""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, replace
from datetime import tzinfo
from typing import Any
from zoneinfo import ZoneInfoNotFoundError

from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError

from projector.errors import ConfigError
from schema.events import zone

DEFAULT_DATABASE_URL = "sqlite:///./delivery_read_model.db"


@dataclass(frozen=True)
class Settings:
    database_url: str = DEFAULT_DATABASE_URL
    event_source: str = "kafka"
    kafka_bootstrap_servers: str = "localhost:9092"
    kafka_topic: str = "delivery-events"
    kafka_group_id: str = "delivery-projector"
    source_timezone: str = "UTC"
    business_timezone: str = "UTC"
    batch_size: int = 2000
    batch_max_wait_ms: int = 200

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> Settings:
        env = os.environ if environ is None else environ
        defaults = cls()
        settings = cls(
            database_url=env.get("DATABASE_URL", defaults.database_url),
            event_source=env.get("EVENT_SOURCE", defaults.event_source),
            kafka_bootstrap_servers=env.get(
                "KAFKA_BOOTSTRAP_SERVERS", defaults.kafka_bootstrap_servers
            ),
            kafka_topic=env.get("KAFKA_TOPIC", defaults.kafka_topic),
            kafka_group_id=env.get("KAFKA_GROUP_ID", defaults.kafka_group_id),
            source_timezone=env.get("SOURCE_TIMEZONE", defaults.source_timezone),
            business_timezone=env.get("BUSINESS_TIMEZONE", defaults.business_timezone),
            batch_size=_int(env, "PROJECTOR_BATCH_SIZE", defaults.batch_size),
            batch_max_wait_ms=_int(env, "PROJECTOR_BATCH_MAX_WAIT_MS", defaults.batch_max_wait_ms),
        )
        settings.validate()
        return settings

    def with_overrides(self, **changes: Any) -> Settings:
        updated = replace(self, **{k: v for k, v in changes.items() if v is not None})
        updated.validate()
        return updated

    def validate(self) -> None:
        try:
            make_url(self.database_url)
        except ArgumentError:
            raise ConfigError(
                f"DATABASE_URL {self.database_url!r} is not a SQLAlchemy URL"
                " (e.g. sqlite:///./delivery_read_model.db or postgresql+psycopg://...)"
            ) from None
        self.source_tz  # noqa: B018 - raises on a bad zone
        zone_or_error(self.business_timezone, "BUSINESS_TIMEZONE")
        if self.batch_size < 1:
            raise ConfigError("PROJECTOR_BATCH_SIZE must be at least 1")
        if self.batch_max_wait_ms < 0:
            raise ConfigError("PROJECTOR_BATCH_MAX_WAIT_MS must not be negative")

    @property
    def source_tz(self) -> tzinfo:
        return zone_or_error(self.source_timezone, "SOURCE_TIMEZONE")

    @property
    def uses_kafka(self) -> bool:
        return self.event_source == "kafka"


def zone_or_error(name: str, setting: str) -> tzinfo:
    try:
        return zone(name)
    except (ZoneInfoNotFoundError, ValueError, OSError):
        raise ConfigError(f"{setting}={name!r} is not a known time zone") from None


def _int(env: Mapping[str, str], name: str, default: int) -> int:
    raw = env.get(name)
    if raw is None or raw == "":
        return default
    try:
        return int(raw)
    except ValueError:
        raise ConfigError(f"{name}={raw!r} is not an integer") from None
