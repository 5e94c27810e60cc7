"""Read-only queries on the projection's own state, shared by `projector status` and the API.

They live in ``schema`` because both sides must answer ``ProjectionStatus`` the
same way (the contract, section GraphQL API): counts over the served generation,
offsets per partition.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, func, select

from schema.lifecycle import DeadLetterStatus
from schema.tables import dead_letters, delivery_events, projection_offsets


@dataclass(frozen=True)
class Counts:
    """What a generation holds and has read.

    ``messages_read`` = ``events_applied`` + ``duplicates`` + ``dead_letters``: each
    message read once is an event applied, a later copy of an applied event id, or
    a dead letter (pending; a replayed one is then applied or a duplicate).
    """

    events_applied: int
    unknown_events: int
    dead_letters: int
    last_event_at: datetime | None
    messages_read: int = 0
    duplicates: int = 0


@dataclass(frozen=True)
class PartitionOffset:
    topic: str
    partition: int
    next_offset: int


def counts(conn: Connection, generation: int) -> Counts:
    """Distinct events applied (unknown types included), unknown ones, pending dead letters,
    messages read and duplicates."""
    row = conn.execute(
        select(
            func.count(),
            func.coalesce(func.sum(1 - delivery_events.c.known), 0),
            func.max(delivery_events.c.occurred_at),
        ).where(delivery_events.c.generation == generation)
    ).one()
    dead = conn.execute(
        select(func.count()).where(
            dead_letters.c.generation == generation,
            dead_letters.c.status == DeadLetterStatus.PENDING,
        )
    ).scalar_one()
    read = conn.execute(
        select(
            func.coalesce(func.sum(projection_offsets.c.messages_read), 0),
            func.coalesce(func.sum(projection_offsets.c.duplicates), 0),
        ).where(projection_offsets.c.generation == generation)
    ).one()
    return Counts(int(row[0]), int(row[1]), int(dead), row[2], int(read[0]), int(read[1]))


def partition_offsets(conn: Connection, generation: int) -> list[PartitionOffset]:
    rows = conn.execute(
        select(
            projection_offsets.c.topic,
            projection_offsets.c.partition,
            projection_offsets.c.next_offset,
        )
        .where(projection_offsets.c.generation == generation)
        .order_by(projection_offsets.c.topic, projection_offsets.c.partition)
    ).all()
    return [PartitionOffset(r.topic, int(r.partition), int(r.next_offset)) for r in rows]


def status_document(
    generation: int,
    offsets: list[PartitionOffset],
    ends: Mapping[tuple[str, int], int] | None,
    c: Counts,
) -> dict[str, Any]:
    """``ProjectionStatus`` as JSON, with the contract's field names."""
    partitions = []
    for p in offsets:
        end = None if ends is None else ends.get((p.topic, p.partition))
        partitions.append(
            {
                "topic": p.topic,
                "partition": p.partition,
                "nextOffset": p.next_offset,
                "endOffset": end,
                # As the contract defines it; negative would mean the source shrank.
                "lag": None if end is None else end - p.next_offset,
            }
        )
    return {
        "partitions": partitions,
        "eventsApplied": c.events_applied,
        "unknownEvents": c.unknown_events,
        "deadLetters": c.dead_letters,
        "lastEventAt": None if c.last_event_at is None else c.last_event_at.isoformat(),
        "generation": generation,
        "messagesRead": c.messages_read,
        "duplicates": c.duplicates,
    }
