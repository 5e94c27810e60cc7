"""The two Iceberg tables: their schemas, partitioning and Arrow columns, defined once.

``delivery.delivery_events`` holds one row per distinct event of the history (the
read model's idempotency key), hidden-partitioned by ``day(occurred_at)``, so a
query on a time range reads only its days' files. ``delivery.deliveries`` is the
served rows, replaced by each export (``projector.analytics.export._snapshot``).
"""

from __future__ import annotations

from typing import Final

from pyiceberg.partitioning import PartitionField, PartitionSpec
from pyiceberg.schema import Schema
from pyiceberg.transforms import DayTransform
from pyiceberg.types import (
    BooleanType,
    IntegerType,
    LongType,
    NestedField,
    StringType,
    TimestamptzType,
)

NAMESPACE: Final = "delivery"
EVENTS_TABLE: Final = f"{NAMESPACE}.delivery_events"
DELIVERIES_TABLE: Final = f"{NAMESPACE}.deliveries"

#: Table properties the export commits with its data (one Iceberg commit).
WATERMARK_PROPERTY: Final = "delivery.export.watermark"
GENERATION_PROPERTY: Final = "delivery.export.generation"
#: The watermark of the generation's first export (a rebuild's switch).
SINCE_PROPERTY: Final = "delivery.export.generation-since"
#: On the deliveries table: the events table's watermark its snapshot was taken at.
SNAPSHOT_OF_PROPERTY: Final = "delivery.export.snapshot-of"
#: On the deliveries table: the watermark of its last snapshot read whole from the read model.
SNAPSHOT_WHOLE_PROPERTY: Final = "delivery.export.snapshot-whole-at"

_TS = TimestamptzType()

EVENTS_SCHEMA: Final = Schema(
    NestedField(1, "event_id", StringType(), required=True),
    NestedField(2, "delivery_id", StringType(), required=True),
    NestedField(3, "event_type", StringType(), required=True),
    NestedField(4, "known", BooleanType(), required=True),
    NestedField(5, "event_version", IntegerType(), required=True),
    NestedField(6, "occurred_at", _TS, required=True),
    NestedField(7, "sequence", LongType(), required=False),
    NestedField(8, "order_id", StringType(), required=False),
    NestedField(9, "shop_id", StringType(), required=False),
    NestedField(10, "rider_id", StringType(), required=False),
    NestedField(11, "data", StringType(), required=True),
    NestedField(12, "topic", StringType(), required=True),
    NestedField(13, "partition", IntegerType(), required=True),
    NestedField(14, "offset", LongType(), required=True),
    NestedField(15, "applied_at", _TS, required=True),
    NestedField(16, "generation", IntegerType(), required=True),
)

EVENTS_PARTITIONING: Final = PartitionSpec(
    PartitionField(source_id=6, field_id=1000, transform=DayTransform(), name="occurred_day")
)

DELIVERIES_SCHEMA: Final = Schema(
    NestedField(1, "delivery_id", StringType(), required=True),
    NestedField(2, "order_id", StringType(), required=False),
    NestedField(3, "shop_id", StringType(), required=False),
    NestedField(4, "rider_id", StringType(), required=False),
    NestedField(5, "state", StringType(), required=True),
    NestedField(6, "created_at", _TS, required=False),
    NestedField(7, "assigned_at", _TS, required=False),
    NestedField(8, "picked_up_at", _TS, required=False),
    NestedField(9, "delivered_at", _TS, required=False),
    NestedField(10, "cancelled_at", _TS, required=False),
    NestedField(11, "cancel_reason", StringType(), required=False),
    NestedField(12, "estimated_delivery_at", _TS, required=False),
    NestedField(13, "last_event_at", _TS, required=True),
    NestedField(14, "event_count", IntegerType(), required=True),
    NestedField(15, "generation", IntegerType(), required=True),
)

EVENTS_ARROW: Final = EVENTS_SCHEMA.as_arrow()
DELIVERIES_ARROW: Final = DELIVERIES_SCHEMA.as_arrow()

#: The current-row columns, in the order of the deliveries table.
DELIVERY_COLUMNS: Final = tuple(f.name for f in DELIVERIES_SCHEMA.fields)
