"""Version-1 and version-2 forms of the same event, for the property and integration tests.

``as_v2`` and ``as_v1`` rewrite a message body as the contract's version table
reads it (the contract, section Event versions); they are written from the contract,
independently of ``schema.versions``' upcasters, so a test comparing the two
forms checks the upcasters instead of repeating them.
"""

from __future__ import annotations

import json
from collections import defaultdict
from collections.abc import Iterable, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

from schema.events import Event, EventParseError, canonical_type, parse_message, parse_time
from schema.fold import lineage, steps, timeline
from schema.versions import REGISTRY, Registry

VERSIONED = ("DeliveryCreated", "DeliveryRiderAssigned")


def _kind(body: dict[str, Any]) -> str | None:
    name = body.get("eventType")
    kind = canonical_type(name) if isinstance(name, str) else None
    return None if kind is None else kind.value


def _occurred(body: dict[str, Any]) -> datetime:
    return parse_time(body.get("occurrenceDateTime", body.get("occurenceDateTime")), UTC, "t")


def as_v2(body: dict[str, Any]) -> dict[str, Any] | None:
    """The version-2 form of a valid version-1 body, or None: no version 2 of its type, or
    an ETA that whole minutes from 0 to 1440 after the occurrence cannot hold."""
    kind = _kind(body)
    if kind not in VERSIONED or body.get("eventVersion", 1) != 1:
        return None
    data = dict(body.get("data") or {})
    if kind == "DeliveryRiderAssigned":
        rider = data.pop("riderId")
        new = {**data, "rider": {"id": rider}}
    else:
        shop = data.pop("shopId")
        eta = data.pop("estimatedDeliveryAt", None)
        new = {**data, "shop": {"id": shop}}
        if eta is not None:
            delta = parse_time(eta, UTC, "eta") - _occurred(body)
            minutes, rest = divmod(delta, timedelta(minutes=1))
            if rest or not 0 <= minutes <= 1440:
                return None
            new["etaMinutes"] = minutes
    return {**body, "eventVersion": 2, "data": new}


def as_v1(body: dict[str, Any]) -> dict[str, Any] | None:
    """The version-1 form of a valid version-2 body, or None for anything else."""
    kind = _kind(body)
    if kind not in VERSIONED or body.get("eventVersion") != 2:
        return None
    data = dict(body["data"])
    out = {k: v for k, v in body.items() if k != "eventVersion"}
    if kind == "DeliveryRiderAssigned":
        data.pop("riderId", None)  # not read at version 2
        rider = data.pop("rider")
        out["data"] = {**data, "riderId": rider["id"]}
        return out
    data.pop("estimatedDeliveryAt", None)  # not read at version 2
    shop = data.pop("shop")
    minutes = data.pop("etaMinutes", None)
    new = {**data, "shopId": shop["id"]}
    if minutes is not None:
        new["estimatedDeliveryAt"] = (_occurred(body) + timedelta(minutes=minutes)).isoformat()
    out["data"] = new
    return out


def bodies(lines: Iterable[bytes]) -> list[dict[str, Any] | bytes]:
    """Each line as a body when it parses as a valid event of a plain object, else as is."""
    out: list[dict[str, Any] | bytes] = []
    for line in lines:
        try:
            parse_message(line, None)
            value = json.loads(line)
        except (EventParseError, ValueError):
            out.append(line)
            continue
        out.append(value if isinstance(value, dict) else line)
    return out


def encoded(items: Sequence[dict[str, Any] | bytes]) -> list[bytes]:
    return [i if isinstance(i, bytes) else json.dumps(i, ensure_ascii=False).encode()
            for i in items]


def events(items: Sequence[dict[str, Any] | bytes], registry: Registry = REGISTRY) -> list[Event]:
    found = []
    for raw in encoded(items):
        try:
            found.append(parse_message(raw, None, registry=registry))
        except EventParseError:
            continue
    return found


def outcome(stream: Iterable[Event]) -> dict[str, Any]:
    """Per delivery: the row, the lineage (field -> event id) and the transitions of a
    fold commit by commit in arrival order (one event per commit)."""
    by_delivery: dict[str, list[Event]] = defaultdict(list)
    for event in stream:
        by_delivery[event.delivery_id].append(event)
    out: dict[str, Any] = {}
    for delivery_id, found in by_delivery.items():
        folded = steps(found)
        path = timeline([[e] for e in found])
        out[delivery_id] = (
            folded[-1].row,
            {field: step.event.event_id for field, step in lineage(folded).items()},
            [(t.source, t.target, t.event.event_id,
              None if t.rewritten_by is None else t.rewritten_by.event_id)
             for t in path.transitions],
        )
    return out
