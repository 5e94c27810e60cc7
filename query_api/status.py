"""``projectionStatus``: offsets and counts of the served generation, lag where knowable."""

from __future__ import annotations

from typing import Any

import anyio.to_thread
from sqlalchemy import Connection

from query_api.context import Context
from query_api.scalars import Long
from query_api.types import PartitionStatus, ProjectionStatus
from schema import status as shared


def _read(conn: Connection, generation: int) -> tuple[list[shared.PartitionOffset], shared.Counts]:
    return shared.partition_offsets(conn, generation), shared.counts(conn, generation)


async def projection_status(context: Context) -> ProjectionStatus:
    session = context.session
    generation = await session.generation()
    offsets, counts = await session.run(_read)
    ends = await anyio.to_thread.run_sync(
        context.services.end_offsets.get, [(p.topic, p.partition) for p in offsets]
    )
    doc: dict[str, Any] = shared.status_document(generation, offsets, ends, counts)
    return ProjectionStatus(
        partitions=[
            PartitionStatus(
                topic=p["topic"],
                partition=p["partition"],
                next_offset=Long(p["nextOffset"]),
                end_offset=None if p["endOffset"] is None else Long(p["endOffset"]),
                lag=None if p["lag"] is None else Long(p["lag"]),
            )
            for p in doc["partitions"]
        ],
        events_applied=Long(counts.events_applied),
        unknown_events=Long(counts.unknown_events),
        dead_letters=Long(counts.dead_letters),
        last_event_at=counts.last_event_at,
        generation=generation,
        messages_read=Long(counts.messages_read),
        duplicates=Long(counts.duplicates),
    )
