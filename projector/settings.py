"""Settings: one frozen object, read from the environment once at start (CONTRACT.md §4).

The contract's variables and their parsing are ``schema.settings``'; the batch
settings are the projector's own.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, replace
from datetime import tzinfo
from typing import Any

from projector.errors import ConfigError
from schema import settings as shared
from schema.settings import DEFAULT_DATABASE_URL, SettingError, SharedSettings

__all__ = ["DEFAULT_DATABASE_URL", "Settings", "zone_or_error"]


@dataclass(frozen=True)
class Settings:
    database_url: str = DEFAULT_DATABASE_URL
    event_source: str = SharedSettings.event_source
    kafka_bootstrap_servers: str = SharedSettings.kafka_bootstrap_servers
    kafka_topic: str = SharedSettings.kafka_topic
    kafka_group_id: str = SharedSettings.kafka_group_id
    source_timezone: str = SharedSettings.source_timezone
    business_timezone: str = SharedSettings.business_timezone
    batch_size: int = 2000
    batch_max_wait_ms: int = 200

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> Settings:
        env = os.environ if environ is None else environ
        defaults = cls()
        try:
            settings = cls(
                **SharedSettings.from_env(env).as_fields(),
                batch_size=shared.integer(env, "PROJECTOR_BATCH_SIZE", defaults.batch_size),
                batch_max_wait_ms=shared.integer(
                    env, "PROJECTOR_BATCH_MAX_WAIT_MS", defaults.batch_max_wait_ms
                ),
            )
        except SettingError as exc:
            raise ConfigError(str(exc)) from None
        settings.validate()
        return settings

    def with_overrides(self, **changes: Any) -> Settings:
        updated = replace(self, **{k: v for k, v in changes.items() if v is not None})
        updated.validate()
        return updated

    def validate(self) -> None:
        try:
            shared.check_database_url(self.database_url)
        except SettingError as exc:
            raise ConfigError(str(exc)) from None
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
        return shared.time_zone(name, setting)
    except SettingError as exc:
        raise ConfigError(str(exc)) from None
