"""A realistic, seeded synthetic delivery stream, for demos, tests and benchmarks.

Each delivery is created, usually assigned (sometimes unassigned and assigned to
another rider), picked up and completed; some are cancelled along the way, some
have their ETA changed, some are still under way at the end. The stream is
ordered by occurrence time across deliveries, and a few events arrive late (moved
later in the stream) or twice. The same seed always gives the same bytes.

``live_events`` and ``pace`` make the never-ending variant (``--follow --rate N``):
new deliveries keep starting, their events stamped with the wall clock.
"""

from __future__ import annotations

import json
import random
import re
import time
import uuid
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any, Final

if TYPE_CHECKING:
    from producer.produce import KafkaTarget

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
    #: (version, share): that share of the events is written at that version (``--versions``).
    versions: tuple[tuple[int, float], ...] = ()


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
    stream = with_aliases(stream, config.alias_ratio, config.seed)
    return with_versions(stream, config.versions, config.seed) if config.versions else stream


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
    by_type = _alias_of()
    rng = random.Random(seed * 7919)
    out = []
    for event in stream:
        if rng.random() < ratio:
            event = {**event, "eventType": by_type[event["eventType"]]}
        out.append(event)
    return out


#: The types a producer can write at version 2 (the contract, section Event versions).
_VERSION_2: Final = {"DeliveryCreated", "DeliveryRiderAssigned", "배달생성", "배차완료"}


def at_version_2(event: dict[str, Any]) -> dict[str, Any] | None:
    """``event`` as a producer of version 2 writes it, or None for a type without one.

    ``riderId`` becomes ``rider``; ``shopId`` becomes ``shop`` and the ETA whole
    minutes after the occurrence (``etaMinutes``, rounded, at most a day).
    """
    if event["eventType"] not in _VERSION_2:
        return None
    data = dict(event["data"])
    if "riderId" in data:
        data["rider"] = {"id": data.pop("riderId")}
    else:
        data["shop"] = {"id": data.pop("shopId")}
        eta = data.pop("estimatedDeliveryAt", None)
        if eta is not None:
            delta = _parse_iso(eta) - _parse_iso(event["occurrenceDateTime"])
            data["etaMinutes"] = min(1440, max(0, round(delta.total_seconds() / 60)))
    return {**event, "eventVersion": 2, "data": data}


def _parse_iso(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


def with_versions(
    stream: list[dict[str, Any]], versions: Iterable[tuple[int, float]], seed: int
) -> list[dict[str, Any]]:
    """The stream with a share of its events written at later versions (``versioned``)."""
    return list(versioned(stream, versions, seed))


def versioned(
    events: Iterable[dict[str, Any]], versions: Iterable[tuple[int, float]], seed: int
) -> Iterator[dict[str, Any]]:
    """Write a share of the events at later versions: version 2 where the type has one,
    any other version as a future one this build does not read (kept, counted as
    unknown, folding nothing). The version is drawn from the seed and the event id
    alone, so both copies of a duplicate are alike and a never-ending stream
    (``--follow``) needs no memory of the ids it has seen."""
    shares = sorted(versions)
    for event in events:
        roll, version = random.Random(f"{seed}:{event['eventId']}").random(), 1
        for candidate, share in shares:
            if roll < share:
                version = candidate
                break
            roll -= share
        if version == 2:
            event = at_version_2(event) or event
        elif version > 2:
            event = {**event, "eventVersion": version}
        yield event


def parse_versions(spec: str) -> tuple[tuple[int, float], ...]:
    """``--versions 2:0.3,3:0.01``: 30 % of the events at version 2, 1 % at version 3."""
    found: dict[int, float] = {}
    for part in spec.split(","):
        version_text, sep, share_text = part.strip().partition(":")
        try:
            version, share = int(version_text), float(share_text)
        except ValueError:
            raise ValueError(f"--versions: {part.strip()!r} is not VERSION:SHARE") from None
        if not sep or version < 2 or not 0 <= share <= 1 or version in found:
            raise ValueError(
                f"--versions: {part.strip()!r}: a version from 2 on, once, a share from 0 to 1"
            )
        found[version] = share
    if sum(found.values()) > 1:
        raise ValueError("--versions: the shares add up to more than 1")
    return tuple(sorted(found.items()))


def encode(event: dict[str, Any]) -> bytes:
    return json.dumps(event, ensure_ascii=False, separators=(",", ":")).encode("utf-8")


# -- live: a stream that never ends, for `projector simulate --follow --rate N` -------


@dataclass(frozen=True)
class LiveConfig:
    """A live stream: ``rate`` events a second over ``in_flight`` deliveries at a time.

    The order of events, their ids and contents follow from ``seed`` and
    ``first_delivery`` alone; only their occurrence times are the wall clock's, so
    "time since the last event" means what it says on the back-office page.
    """

    rate: float = 5.0
    seed: int = 1
    first_delivery: int = 1
    in_flight: int = 0  # 0: about six seconds of events per delivery step (rate * 6)
    riders: int = 40
    shops: int = 12
    duplicate_ratio: float = 0.02
    alias_ratio: float = 0.05
    #: (version, share), as ``SimulationConfig.versions`` (``--versions``).
    versions: tuple[tuple[int, float], ...] = ()


def live_events(config: LiveConfig, now: Callable[[], datetime]) -> Iterator[dict[str, Any]]:
    """Events of ever new deliveries, interleaved, each stamped with ``now()``.

    ``in_flight`` lifecycles run at once; each step picks one and emits its next
    event; a finished one makes room for the next delivery number. Infinite.
    """
    rng = random.Random(f"live:{config.seed}:{config.first_delivery}")
    aliases = _alias_of()
    width = config.in_flight or max(3, round(config.rate * 6))
    base = SimulationConfig(seed=config.seed, span_hours=0.0)
    next_number = config.first_delivery
    running: list[Iterator[dict[str, Any]]] = []
    while True:
        while len(running) < width:
            start = replace(base, start=now())
            running.append(_lifecycle(rng, start, next_number, config.riders, config.shops))
            next_number += 1
        index = rng.randrange(len(running))
        event = next(running[index], None)
        if event is None:
            running.pop(index)
            continue
        event["occurrenceDateTime"] = _iso(now())
        if rng.random() < config.alias_ratio:
            event["eventType"] = aliases[event["eventType"]]
        yield event
        if rng.random() < config.duplicate_ratio:
            yield dict(event)  # redelivered: the projector must ignore it


def pace(
    events: Iterator[dict[str, Any]],
    rate: float,
    stopped: Callable[[], bool] = lambda: False,
    clock: Callable[[], float] = time.monotonic,
    sleep: Callable[[float], None] = time.sleep,
) -> Iterator[list[dict[str, Any]]]:
    """The events in batches, each batch due at a steady ``rate`` events a second.

    A batch holds every event due by the time the previous one was written, so a
    slow sink catches up instead of drifting; a fast one waits for the next due time.
    Ends once ``stopped()`` (looked at least every 0.2 s, whatever the rate).
    """
    if not rate > 0:
        raise ValueError("rate must be more than 0")
    started = clock()
    sent = 0
    while not stopped():
        due = int((clock() - started) * rate) + 1 - sent
        if due <= 0:
            sleep(min(0.2, max(0.0, started + sent / rate - clock())))
            continue
        batch = [next(events) for _ in range(min(due, max(1, int(rate))))]
        sent += len(batch)
        yield batch


def highest_delivery_number(lines: Iterable[bytes]) -> int:
    """The greatest ``N`` of the ``D-N`` delivery ids in a JSON Lines stream (0 if none)."""
    highest = 0
    for line in lines:
        for match in _DELIVERY_NUMBER.finditer(line):
            highest = max(highest, int(match.group(1)))
    return highest


_DELIVERY_NUMBER = re.compile(rb'"deliveryId"\s*:\s*"D-(\d+)"')


def _alias_of() -> dict[str, str]:
    from schema.events import ALIASES

    return {kind.value: alias for alias, kind in ALIASES.items()}


# -- the sinks of the live stream ---------------------------------------------------


def _live(config: LiveConfig) -> Iterator[dict[str, Any]]:
    events = live_events(config, _utc_now)
    return versioned(events, config.versions, config.seed) if config.versions else events


def follow_file(
    path: str, config: LiveConfig, stopped: Callable[[], bool]
) -> int:
    """Appends the live stream to ``path`` until ``stopped()``; the number of events.

    Each batch is flushed as one write of whole lines, so a reader following the
    file never sees half a line for long.
    """
    written = 0
    with open(path, "ab") as fh:
        for batch in pace(_live(config), config.rate, stopped):
            fh.write(b"".join(encode(e) + b"\n" for e in batch))
            fh.flush()
            written += len(batch)
    return written


def follow_kafka(
    settings: KafkaTarget, config: LiveConfig, stopped: Callable[[], bool], partitions: int = 3
) -> int:
    """Produces the live stream to the topic (keyed by delivery id) until ``stopped()``.

    Each batch is flushed before the next is due: at a steady rate the broker holds
    what was sent within a batch interval, and a broker that stops answering ends
    the command with one line instead of an unbounded buffer.
    """
    from producer.errors import KafkaUnavailable
    from producer.produce import open_producer
    from schema.kafka_clients import KafkaError

    producer = open_producer(settings, partitions)
    written = 0
    try:
        for batch in pace(_live(config), config.rate, stopped):
            for event in batch:
                producer.send(
                    settings.kafka_topic, key=event["deliveryId"].encode(), value=encode(event)
                )
            producer.flush(timeout=30)
            written += len(batch)
    except KafkaError as exc:
        raise KafkaUnavailable(f"producing to {settings.kafka_topic} failed: {exc}") from exc
    finally:
        producer.close(timeout=10)
    return written


def next_delivery_number(path: str) -> int:
    """After the highest delivery number already in the file (1 when there is none)."""
    try:
        with open(path, "rb") as fh:
            return highest_delivery_number(fh) + 1
    except FileNotFoundError:
        return 1


def _utc_now() -> datetime:
    return datetime.now(UTC)
