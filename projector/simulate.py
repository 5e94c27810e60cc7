"""A realistic, seeded synthetic delivery stream, for demos, tests and benchmarks.

Each delivery is created, usually assigned (sometimes unassigned and assigned to
another rider), picked up and completed; some are cancelled along the way, some
have their ETA changed, some are still under way at the end. The stream is
ordered by occurrence time across deliveries, and a few events arrive late (moved
later in the stream) or twice. The same seed always gives the same bytes.
"""

from __future__ import annotations

import json
import random
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

DEFAULT_START = datetime(2026, 11, 25, 0, 0, tzinfo=UTC)


@dataclass(frozen=True)
class SimulationConfig:
    deliveries: int = 100
    seed: int = 1
    start: datetime = DEFAULT_START
    riders: int = 0  # 0: one rider per ~8 deliveries
    shops: int = 0
    late_ratio: float = 0.03
    duplicate_ratio: float = 0.03
    alias_ratio: float = 0.05
    span_hours: float = 12.0


def simulate(config: SimulationConfig) -> list[dict[str, Any]]:
    """The stream as a list of event objects, in the order they would be published."""
    rng = random.Random(config.seed)
    riders = config.riders or max(3, config.deliveries // 8)
    shops = config.shops or max(2, config.deliveries // 20)
    events: list[dict[str, Any]] = []
    for n in range(1, config.deliveries + 1):
        events.extend(_lifecycle(rng, config, n, riders, shops))
    events.sort(key=lambda e: (e["occurrenceDateTime"], e["deliveryId"], e["sequence"]))

    stream: list[dict[str, Any]] = []
    delayed: list[tuple[int, dict[str, Any]]] = []
    for index, event in enumerate(events):
        roll = rng.random()
        if roll < config.late_ratio:
            delayed.append((index + rng.randint(20, 200), event))  # arrives late
            continue
        stream.append(event)
        if roll < config.late_ratio + config.duplicate_ratio:
            delayed.append((index + rng.randint(0, 20), dict(event)))  # redelivered
        while delayed and delayed[0][0] <= index:
            stream.append(delayed.pop(0)[1])
        delayed.sort(key=lambda d: d[0])
    stream.extend(event for _, event in delayed)
    return with_aliases(stream, config.alias_ratio, config.seed)


def _lifecycle(
    rng: random.Random, config: SimulationConfig, n: int, riders: int, shops: int
) -> Iterator[dict[str, Any]]:
    delivery_id = f"D-{n:06d}"
    t = config.start + timedelta(seconds=rng.uniform(0, config.span_hours * 3600))
    sequence = 0

    def event(event_type: str, data: dict[str, Any]) -> dict[str, Any]:
        nonlocal sequence
        sequence += 1
        return {
            "eventId": str(uuid.UUID(int=rng.getrandbits(128), version=4)),
            "eventType": event_type,
            "deliveryId": delivery_id,
            "occurrenceDateTime": _iso(t),
            "sequence": sequence,
            "data": data,
        }

    def later(lo: float, hi: float) -> datetime:
        return t + timedelta(seconds=round(rng.uniform(lo, hi)))

    eta = later(25 * 60, 55 * 60)
    yield event(
        "DeliveryCreated",
        {
            "orderId": f"O-{n:06d}",
            "shopId": f"S-{rng.randint(1, shops):03d}",
            "estimatedDeliveryAt": _iso(eta),
        },
    )
    fate = rng.random()
    if fate < 0.04:
        t = later(60, 600)
        yield event("DeliveryCancelled", {"reason": "customer cancelled before dispatch"})
        return
    if fate < 0.08:
        return  # still waiting for a rider
    t = later(30, 400)
    rider = f"R-{rng.randint(1, riders):03d}"
    yield event("DeliveryRiderAssigned", {"riderId": rider})
    if rng.random() < 0.12:
        t = later(30, 300)
        yield event("DeliveryRiderUnassigned", {"reason": "rider declined"})
        t = later(30, 300)
        rider = f"R-{rng.randint(1, riders):03d}"
        yield event("DeliveryRiderAssigned", {"riderId": rider})
    if rng.random() < 0.2:
        t = later(60, 600)
        eta = eta + timedelta(minutes=rng.randint(5, 20))
        yield event("DeliveryEtaChanged", {"estimatedDeliveryAt": _iso(eta)})
    if fate < 0.12:
        t = later(60, 600)
        yield event("DeliveryCancelled", {"reason": "shop closed"})
        return
    t = later(300, 1200)
    yield event("DeliveryPickedUp", {"riderId": rider})
    if fate < 0.16:
        return  # on its way
    t = later(300, 1800)
    yield event("DeliveryCompleted", {})


def _iso(t: datetime) -> str:
    return t.astimezone(UTC).isoformat().replace("+00:00", "Z")


def with_aliases(stream: list[dict[str, Any]], ratio: float, seed: int) -> list[dict[str, Any]]:
    """Rename a few event types to their Korean aliases, as some producers send them."""
    from schema.events import ALIASES

    by_type = {kind.value: alias for alias, kind in ALIASES.items()}
    rng = random.Random(seed * 7919)
    out = []
    for event in stream:
        if rng.random() < ratio:
            event = {**event, "eventType": by_type[event["eventType"]]}
        out.append(event)
    return out


def encode(event: dict[str, Any]) -> bytes:
    return json.dumps(event, ensure_ascii=False, separators=(",", ":")).encode("utf-8")
