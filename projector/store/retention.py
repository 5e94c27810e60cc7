"""What the served generation holds that the source no longer does (the retention guard).

The history keeps each event's source position (topic, partition, offset). An
event whose offset lies below its partition's start offset (the broker's
beginning offset) has been deleted from the topic by retention or
``delete_records``: a replay of the topic can no longer bring it back.
"""

from __future__ import annotations

from collections.abc import Mapping

from sqlalchemy import Connection, Engine, func, select

from projector.sources.base import TopicPartition
from projector.store.generations import active
from schema.tables import delivery_events


def served_before_start(
    conn: Connection, generation: int, starts: Mapping[TopicPartition, int]
) -> dict[TopicPartition, int]:
    """Per partition, how many of the generation's history rows lie below its start offset.

    A partition that starts at 0 holds everything ever written to it and is not
    queried; every partition asked about is in the answer (0 when nothing is gone).
    """
    out = {tp: 0 for tp in starts}
    for tp, start in starts.items():
        if start <= 0:
            continue
        out[tp] = int(
            conn.execute(
                select(func.count()).where(
                    delivery_events.c.generation == generation,
                    delivery_events.c.topic == tp.topic,
                    delivery_events.c.partition == tp.partition,
                    delivery_events.c.offset < start,
                )
            ).scalar_one()
        )
    return out


def served_before_start_of_active(
    engine: Engine, starts: Mapping[TopicPartition, int]
) -> tuple[int, dict[TopicPartition, int]]:
    """(the active generation, ``served_before_start`` of it), in one read."""
    with engine.connect() as conn:
        current = active(conn).generation
        return current, served_before_start(conn, current, starts)


def served_before_start_of(
    engine: Engine, generation: int, starts: Mapping[TopicPartition, int]
) -> dict[TopicPartition, int]:
    """``served_before_start`` in its own read."""
    with engine.connect() as conn:
        return served_before_start(conn, generation, starts)
