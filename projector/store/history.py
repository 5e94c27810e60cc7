"""The served generation's history read back as source messages (``rebuild --from-history``).

A history row becomes the message it was read as: its event re-encoded as JSON with
the fields as kept (``eventType``, ``data`` and ``eventVersion`` as received), at its
source position; a pending dead letter becomes its raw key, value and headers. Both
then go through the parser like any message, so a build that learned a version or a
fix folds them now. Pages are read in offset order per partition, each in its own
short transaction: a rebuild never holds a read transaction open for its length.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from sqlalchemy import Engine, select

from projector.sources.base import SourceMessage, TopicPartition
from projector.store.headers import headers_from_db
from schema.lifecycle import DeadLetterStatus
from schema.tables import dead_letters, delivery_events

#: History rows read per page.
PAGE = 5000


def history_page(
    engine: Engine, generation: int, tp: TopicPartition, start: int, end: int, limit: int = PAGE
) -> tuple[list[SourceMessage], int]:
    """Messages of ``generation`` at offsets ``start`` <= offset < ``end`` of ``tp``, in
    offset order, at most ``limit`` history rows (with the dead letters among them), and
    the offset where the next page starts (``end`` once the range is read)."""
    h = delivery_events.c
    d = dead_letters.c
    with engine.connect() as conn:
        rows = conn.execute(
            select(
                h.event_id, h.event_type, h.delivery_id, h.occurred_at, h.sequence, h.data,
                h.event_version, h.offset,
            )
            .where(
                h.generation == generation,
                h.topic == tp.topic,
                h.partition == tp.partition,
                h.offset >= start,
                h.offset < end,
            )
            .order_by(h.offset)
            .limit(limit)
        ).all()
        upper = int(rows[-1].offset) + 1 if len(rows) == limit else end
        letters = conn.execute(
            select(d.offset, d.key, d.value, d.headers)
            .where(
                d.generation == generation,
                d.topic == tp.topic,
                d.partition == tp.partition,
                d.status == DeadLetterStatus.PENDING,
                d.offset >= start,
                d.offset < upper,
            )
            .order_by(d.offset)
        ).all()
    messages = [_from_history(tp, dict(r._mapping)) for r in rows]
    messages += [
        SourceMessage(
            tp.topic,
            tp.partition,
            int(r.offset),
            r.key,
            r.value,
            headers_from_db(r.headers),
        )
        for r in letters
    ]
    messages.sort(key=lambda m: m.offset)
    return messages, upper


def _from_history(tp: TopicPartition, r: Mapping[str, Any]) -> SourceMessage:
    body: dict[str, Any] = {
        "eventId": r["event_id"],
        "eventType": r["event_type"],
        "deliveryId": r["delivery_id"],
        "occurrenceDateTime": r["occurred_at"].isoformat(),
        "data": r["data"],
        "eventVersion": int(r["event_version"]),
    }
    if r["sequence"] is not None:
        body["sequence"] = int(r["sequence"])
    value = json.dumps(body, ensure_ascii=False, separators=(",", ":")).encode("utf-8")
    return SourceMessage(
        tp.topic, tp.partition, int(r["offset"]), r["delivery_id"].encode("utf-8"), value
    )
