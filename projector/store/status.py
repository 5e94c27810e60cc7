"""What `projector status` reads from the read model, in one read."""

from __future__ import annotations

from sqlalchemy import Engine

from schema import status as status_queries
from schema.db import active_generation


def read_status(
    engine: Engine,
) -> tuple[int, list[status_queries.PartitionOffset], status_queries.Counts]:
    """(the active generation, its partitions' offsets, its counts)."""
    with engine.connect() as conn:
        generation = active_generation(conn)
        return (
            generation,
            status_queries.partition_offsets(conn, generation),
            status_queries.counts(conn, generation),
        )
