"""The read-model tables, shared by the projector (writes) and the query API (reads).

Every projected table carries a ``generation`` column: a rebuild writes generation
G+1 beside the active generation G, and one row update in ``generations`` switches
which one is served. On PostgreSQL ``deliveries`` and ``delivery_events`` are
partitioned by generation (LIST, one partition per generation, revision 0005): a
rebuild loads its own bare tables and attaches them, a retired generation is
detached and dropped, and a statement on the served generation prunes to its
partition. Identifiers use the ``C`` collation on PostgreSQL so that
ordering by them is plain code point order, as SQLite's BINARY collation is.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any, Final

from sqlalchemy import (
    JSON,
    BigInteger,
    Column,
    DateTime,
    Dialect,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    String,
    Table,
    Text,
    text,
)
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.types import TypeDecorator

from schema.lifecycle import DeadLetterStatus, GenerationPurpose

ID_LENGTH = 128

naming = {
    "ix": "ix_%(table_name)s_%(column_0_N_name)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "pk": "pk_%(table_name)s",
}
metadata = MetaData(naming_convention=naming)


class UtcDateTime(TypeDecorator[datetime]):
    """An instant: ``timestamptz`` on PostgreSQL, naive UTC text on SQLite; aware UTC in Python.

    SQLite stores a fixed-width text with microseconds, so text order is time order.
    """

    impl = DateTime(timezone=True)
    cache_ok = True

    def load_dialect_impl(self, dialect: Dialect) -> Any:
        if dialect.name == "sqlite":
            return dialect.type_descriptor(DateTime(timezone=False))
        return dialect.type_descriptor(DateTime(timezone=True))

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("UtcDateTime needs an aware datetime")
        value = value.astimezone(UTC)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            return value.replace(tzinfo=UTC)
        return value.astimezone(UTC)


def Identifier() -> String:  # noqa: N802 - reads like a type
    """A string id compared code point by code point on both databases."""
    return String(ID_LENGTH).with_variant(String(ID_LENGTH, collation="C"), "postgresql")


JsonDocument = JSON().with_variant(JSONB(), "postgresql")

#: Read-model generations. Exactly one row has status 'active'.
generations = Table(
    "generations",
    metadata,
    Column("generation", Integer, primary_key=True, autoincrement=False),
    Column("status", String(16), nullable=False),  # GenerationStatus
    Column("purpose", String(16), nullable=False, server_default=GenerationPurpose.LIVE.value),
    Column("from_spec", Text),
    Column("owner", String(128)),  # who builds it (host:pid), for one-rebuild-at-a-time
    Column("created_at", UtcDateTime, nullable=False),
    Column("activated_at", UtcDateTime),
    Column("heartbeat_at", UtcDateTime),
)

#: Current state per delivery: the fold of its distinct events.
deliveries = Table(
    "deliveries",
    metadata,
    Column("generation", Integer, primary_key=True),
    Column("delivery_id", Identifier(), primary_key=True),
    Column("order_id", Text),
    Column("shop_id", Text),
    Column("rider_id", Text),
    Column("state", String(16), nullable=False),
    Column("created_at", UtcDateTime),
    Column("assigned_at", UtcDateTime),
    Column("picked_up_at", UtcDateTime),
    Column("delivered_at", UtcDateTime),
    Column("cancelled_at", UtcDateTime),
    Column("cancel_reason", Text),
    Column("estimated_delivery_at", UtcDateTime),
    Column("last_event_at", UtcDateTime, nullable=False),
    Column("event_count", Integer, nullable=False),
    # The sort key of the greatest event folded so far: an event that sorts before it
    # makes the projector refold the delivery from its history.
    Column("fold_occurred_at", UtcDateTime, nullable=False),
    Column("fold_sequence", BigInteger, nullable=False),
    Column("fold_event_id", Identifier(), nullable=False),
    Index("ix_deliveries_feed", "generation", "last_event_at", "delivery_id"),
    Index("ix_deliveries_rider", "generation", "rider_id"),
    Index("ix_deliveries_shop", "generation", "shop_id"),
    Index("ix_deliveries_order", "generation", "order_id"),
    Index("ix_deliveries_state", "generation", "state"),
    postgresql_partition_by="LIST (generation)",
)

#: The full history: one row per distinct event id (the idempotency key).
delivery_events = Table(
    "delivery_events",
    metadata,
    Column("generation", Integer, primary_key=True),
    Column("event_id", Identifier(), primary_key=True),
    Column("delivery_id", Identifier(), nullable=False),
    Column("event_type", String(ID_LENGTH), nullable=False),
    Column("known", Integer, nullable=False),  # 1 for a catalogue type, 0 for unknown
    Column("occurred_at", UtcDateTime, nullable=False),
    Column("sequence", BigInteger),
    Column("data", JsonDocument, nullable=False),
    # data.estimatedDeliveryAt as read when the event was applied (SOURCE_TIMEZONE
    # then): a refold uses this, so a later change of the setting moves nothing.
    Column("estimated_delivery_at", UtcDateTime),
    Column("topic", Text, nullable=False),
    Column("partition", Integer, nullable=False),
    Column("offset", BigInteger, nullable=False),
    Column("applied_at", UtcDateTime, nullable=False),
    # eventVersion as received; ``data`` is kept in that version's shape (revision 0003).
    Column("event_version", Integer, nullable=False, server_default=text("1")),
    Index(
        "ix_delivery_events_fold",
        "generation",
        "delivery_id",
        "occurred_at",
        "sequence",
        "event_id",
    ),
    Index("ix_delivery_events_time", "generation", "occurred_at"),
    postgresql_partition_by="LIST (generation)",
)

#: Where the projection reads next, per source partition, with the fencing epoch, and
#: what it has read there: each message once, as an event applied, a duplicate (a later
#: copy of an event id already applied) or a dead letter. The batch that moves
#: ``next_offset`` moves the counts (revision 0002).
projection_offsets = Table(
    "projection_offsets",
    metadata,
    Column("generation", Integer, primary_key=True),
    Column("topic", Text, primary_key=True),
    Column("partition", Integer, primary_key=True),
    Column("next_offset", BigInteger, nullable=False),
    Column("owner_epoch", BigInteger, nullable=False, server_default=text("0")),
    Column("owner", String(128)),
    Column("updated_at", UtcDateTime, nullable=False),
    Column("messages_read", BigInteger, nullable=False, server_default=text("0")),
    Column("duplicates", BigInteger, nullable=False, server_default=text("0")),
    # Messages below this offset were counted when first read: an in-place replay
    # (next_offset set back) reads them again without counting them twice.
    Column("counted_to", BigInteger, nullable=False, server_default=text("0")),
)

#: Messages that could not become events, kept whole so they can be replayed.
dead_letters = Table(
    "dead_letters",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("generation", Integer, nullable=False),
    Column("topic", Text, nullable=False),
    Column("partition", Integer, nullable=False),
    Column("offset", BigInteger, nullable=False),
    Column("key", LargeBinary),
    Column("value", LargeBinary),
    # [{"key": base64, "value": base64 | null}, ...]: every byte kept (revision 0004)
    Column("headers", JsonDocument, nullable=False),
    Column("error_code", String(32), nullable=False),
    Column("reason", Text, nullable=False),
    Column("status", String(16), nullable=False, server_default=DeadLetterStatus.PENDING.value),
    Column("created_at", UtcDateTime, nullable=False),
    Column("replayed_at", UtcDateTime),
    Column("replayed_event_id", String(ID_LENGTH)),
    Index("uq_dead_letters_source", "generation", "topic", "partition", "offset", unique=True),
    Index("ix_dead_letters_status", "generation", "status"),
)


#: Tables partitioned by generation on PostgreSQL, with the columns of their primary key.
PER_GENERATION: Final = (deliveries, delivery_events)


def partition_name(table: str, generation: int) -> str:
    """The name of ``table``'s partition holding ``generation`` (PostgreSQL)."""
    return f"{table}_g{int(generation)}"
