"""The dead-letter queries of `projector dead-letters`: list them, and read the pending ones back.

A dead letter is kept whole (key, value, headers' bytes) so that a replay parses
exactly the message that failed; ``pending`` hands it back as that message.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from sqlalchemy import Engine, select

from projector.sources.base import SourceMessage
from projector.store.headers import headers_from_db
from schema.db import active_generation
from schema.lifecycle import DeadLetterStatus
from schema.tables import dead_letters


def listed(engine: Engine, *, pending_only: bool, limit: int) -> list[Any]:
    """The active generation's dead letters (rows of ``dead_letters``) in id order."""
    with engine.connect() as conn:
        generation = active_generation(conn)
        query = select(dead_letters).where(dead_letters.c.generation == generation)
        if pending_only:
            query = query.where(dead_letters.c.status == DeadLetterStatus.PENDING)
        return list(conn.execute(query.order_by(dead_letters.c.id).limit(limit)).all())


def pending(
    engine: Engine, ids: Sequence[int] | None = None
) -> tuple[int, list[tuple[int, SourceMessage]]]:
    """(the active generation, its pending dead letters as (id, the message as read))."""
    with engine.connect() as conn:
        generation = active_generation(conn)
        query = select(dead_letters).where(
            dead_letters.c.generation == generation,
            dead_letters.c.status == DeadLetterStatus.PENDING,
        )
        if ids:
            query = query.where(dead_letters.c.id.in_(ids))
        rows = conn.execute(query.order_by(dead_letters.c.id)).all()
    return generation, [
        (r.id, SourceMessage(r.topic, r.partition, r.offset, r.key, r.value,
                             headers_from_db(r.headers)))
        for r in rows
    ]
