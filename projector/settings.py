"""Settings: one frozen object, read from the environment once at start.

The contract's variables (its section Settings), their parsing, ``with_overrides``
and ``uses_kafka`` are ``schema.settings.SharedSettings``'; the batch, consumer-group,
session-bound and message-size settings are the projector's own.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import tzinfo

from projector.errors import ConfigError
from schema import settings as shared
from schema.settings import DEFAULT_DATABASE_URL, SettingError, SharedSettings

__all__ = ["DEFAULT_DATABASE_URL", "Settings", "zone_or_error"]

#: The largest message (key, value and headers, in bytes) the projector accepts as an
#: event: 1 MiB, Kafka's own default limit on a record batch. A larger one is a dead
#: letter (MESSAGE_TOO_LARGE), its bytes kept; it is never parsed, stored in the
#: history or served (projector/batch.py).
DEFAULT_MAX_MESSAGE_BYTES = 1 << 20

# What Kafka accepts as a group.instance.id (as kafka-python checks it).
_INSTANCE_ID = re.compile(r"(?!\.\.?$)[A-Za-z0-9._-]{1,249}")


@dataclass(frozen=True)
class Settings(SharedSettings):
    """The contract's variables (``SharedSettings``) and the projector's own."""

    batch_size: int = 2000
    batch_max_wait_ms: int = 200
    # Consumer-group membership: how soon a partition of a dead member is read again. A
    # member that dies without leaving holds its partitions until its session times
    # out: 6 s is the broker's default group.min.session.timeout.ms, the shortest it
    # accepts. A static member
    # (``kafka_group_instance_id``) restarted with the same id takes its partitions
    # back at once, without waiting for the old session or a rebalance.
    kafka_session_timeout_ms: int = 6000
    kafka_heartbeat_interval_ms: int = 1000
    kafka_group_instance_id: str = ""
    # Bounded hand-over: PostgreSQL ends a session of ours that sits inside
    # a transaction without a statement for longer than this (a projector frozen by
    # SIGSTOP, a long pause, a frozen VM), so its offset rows' locks are released and
    # its successor can claim the partitions; and ends any one statement of ours that
    # runs longer than ``statement_timeout_ms``. 0 turns either off.
    idle_in_transaction_timeout_ms: int = 10000
    statement_timeout_ms: int = 60000
    # The largest message (key + value + headers) projected as an event; a larger one is
    # a dead letter MESSAGE_TOO_LARGE, its bytes kept (projector/batch.py).
    max_message_bytes: int = DEFAULT_MAX_MESSAGE_BYTES
    # A rebuild into a new generation on PostgreSQL starts with a bulk load of its own
    # partitions (projector/rebuild/bulk.py); 0 replays the live path instead, the way
    # SQLite always rebuilds (kept to compare the two and as a way back).
    rebuild_bulk: bool = True

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
                kafka_session_timeout_ms=shared.integer(
                    env, "KAFKA_SESSION_TIMEOUT_MS", defaults.kafka_session_timeout_ms
                ),
                kafka_heartbeat_interval_ms=shared.integer(
                    env, "KAFKA_HEARTBEAT_INTERVAL_MS", defaults.kafka_heartbeat_interval_ms
                ),
                kafka_group_instance_id=shared.text(
                    env, "KAFKA_GROUP_INSTANCE_ID", defaults.kafka_group_instance_id
                ),
                idle_in_transaction_timeout_ms=shared.integer(
                    env,
                    "PROJECTOR_IDLE_IN_TRANSACTION_TIMEOUT_MS",
                    defaults.idle_in_transaction_timeout_ms,
                ),
                statement_timeout_ms=shared.integer(
                    env, "PROJECTOR_STATEMENT_TIMEOUT_MS", defaults.statement_timeout_ms
                ),
                max_message_bytes=shared.integer(
                    env, "PROJECTOR_MAX_MESSAGE_BYTES", defaults.max_message_bytes
                ),
                rebuild_bulk=shared.flag(env, "PROJECTOR_REBUILD_BULK", defaults.rebuild_bulk),
            )
        except SettingError as exc:
            raise ConfigError(str(exc)) from None
        settings.validate()
        return settings

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
        if self.kafka_session_timeout_ms < 1:
            raise ConfigError("KAFKA_SESSION_TIMEOUT_MS must be at least 1")
        if not 1 <= self.kafka_heartbeat_interval_ms < self.kafka_session_timeout_ms:
            raise ConfigError(
                "KAFKA_HEARTBEAT_INTERVAL_MS must be at least 1 and below "
                f"KAFKA_SESSION_TIMEOUT_MS ({self.kafka_session_timeout_ms})"
            )
        if self.idle_in_transaction_timeout_ms < 0:
            raise ConfigError("PROJECTOR_IDLE_IN_TRANSACTION_TIMEOUT_MS must not be negative")
        if self.max_message_bytes < 1:
            raise ConfigError("PROJECTOR_MAX_MESSAGE_BYTES must be at least 1")
        if self.statement_timeout_ms < 0:
            raise ConfigError("PROJECTOR_STATEMENT_TIMEOUT_MS must not be negative")
        if self.kafka_group_instance_id and not _INSTANCE_ID.fullmatch(
            self.kafka_group_instance_id
        ):
            raise ConfigError(
                f"KAFKA_GROUP_INSTANCE_ID={self.kafka_group_instance_id!r}: use 1 to 249 of "
                "A-Z a-z 0-9 . _ - (not '.' or '..')"
            )

    @property
    def source_tz(self) -> tzinfo:
        return zone_or_error(self.source_timezone, "SOURCE_TIMEZONE")


def zone_or_error(name: str, setting: str) -> tzinfo:
    try:
        return shared.time_zone(name, setting)
    except SettingError as exc:
        raise ConfigError(str(exc)) from None
