"""The change notification: what the projector says after a commit, what listeners read.

On PostgreSQL the projector sends ``NOTIFY delivery_updated`` in the batch's own
transaction (so it is delivered only if the batch commits), with a JSON payload
``{"generation": G, "ids": [...]}`` naming the deliveries the batch changed. A
payload stays under PostgreSQL's 8000-byte limit: many ids make several.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator
from typing import Final

NOTIFY_CHANNEL: Final = "delivery_updated"
#: Room for ids in one payload (PostgreSQL refuses payloads of 8000 bytes or more).
_PAYLOAD_BUDGET: Final = 7000


def notification_payloads(generation: int, ids: Iterable[str]) -> Iterator[str]:
    """The payloads announcing that ``ids`` changed in ``generation``, in id order."""
    batch: list[str] = []
    size = 0
    for delivery_id in sorted(ids):
        cost = len(delivery_id.encode("utf-8")) + 4
        if batch and size + cost > _PAYLOAD_BUDGET:
            yield _payload(generation, batch)
            batch, size = [], 0
        batch.append(delivery_id)
        size += cost
    if batch:
        yield _payload(generation, batch)


def parse_notification(payload: str) -> tuple[int, list[str]] | None:
    """(generation, ids) of a payload, or None for one this code does not understand."""
    try:
        body = json.loads(payload)
        generation = body["generation"]
        ids = body["ids"]
    except (ValueError, TypeError, KeyError):
        return None
    if not isinstance(generation, int) or not isinstance(ids, list):
        return None
    return generation, [i for i in ids if isinstance(i, str)]


def _payload(generation: int, ids: list[str]) -> str:
    return json.dumps({"generation": generation, "ids": ids}, ensure_ascii=False)
