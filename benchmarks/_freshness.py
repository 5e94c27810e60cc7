"""Freshness: from produce to visible through GraphQL, under a steady load (5,000 events/s).

A paced producer sends the background load (whole delivery lifecycles, fresh ids,
keyed by delivery id) and, every ``probe_interval`` seconds, one `DeliveryCreated`
for a fresh probe delivery. A poller asks the API for every outstanding probe in one
aliased query (at most 25 aliases, under the API's alias limit) and records, for
each, the time from `send()` to the first answer that holds it. A probe not seen
within ``give_up`` seconds counts with that bound and is reported.
"""

from __future__ import annotations

import json
import threading
import time
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime

from benchmarks._api import Server
from benchmarks._proc import BenchError, say, wait_until

MAX_ALIASES = 25
LIFECYCLE = ("DeliveryCreated", "DeliveryRiderAssigned", "DeliveryPickedUp", "DeliveryCompleted")


def _event(event_type: str, delivery_id: str, sequence: int) -> dict[str, object]:
    data = {
        "DeliveryCreated": {"orderId": f"O-{delivery_id}", "shopId": "S-bench"},
        "DeliveryRiderAssigned": {"riderId": "R-bench"},
        "DeliveryPickedUp": {"riderId": "R-bench"},
    }.get(event_type, {})
    return {
        "eventId": str(uuid.uuid4()), "eventType": event_type, "deliveryId": delivery_id,
        "occurrenceDateTime": datetime.now(UTC).isoformat().replace("+00:00", "Z"),
        "sequence": sequence, "data": data,
    }


@dataclass
class Probes:
    sent: dict[str, float] = field(default_factory=dict)  # id -> perf_counter at send()
    latencies_ms: list[float] = field(default_factory=list)
    lost: int = 0
    lock: threading.Lock = field(default_factory=threading.Lock)

    def outstanding(self) -> list[tuple[str, float]]:
        with self.lock:
            return sorted(self.sent.items(), key=lambda kv: kv[1])[:MAX_ALIASES]

    def seen(self, delivery_id: str, at: float) -> None:
        with self.lock:
            sent = self.sent.pop(delivery_id, None)
            if sent is not None:
                self.latencies_ms.append((at - sent) * 1000)

    def give_up(self, now: float, bound: float) -> None:
        with self.lock:
            for delivery_id, sent in list(self.sent.items()):
                if now - sent > bound:
                    del self.sent[delivery_id]
                    self.latencies_ms.append(bound * 1000)
                    self.lost += 1


def _poll(api: Server, token: str, probes: Probes, stop: threading.Event,
          give_up: float, errors: list[str]) -> None:
    """Ask for the outstanding probes in one aliased query, about every 10 ms."""
    while not (stop.is_set() and not probes.sent):
        pending = probes.outstanding()
        if not pending:
            time.sleep(0.005)
            continue
        fields = " ".join(f'p{i}: delivery(id: "{d}") {{ id }}' for i, (d, _) in
                          enumerate(pending))
        try:
            status, answer = api.post(json.dumps({"query": f"{{ {fields} }}"}).encode(), token)
        except OSError as exc:
            errors.append(f"polling the API failed: {exc}")
            return
        now = time.perf_counter()
        if status != 200 or not isinstance(answer, dict) or answer.get("errors"):
            errors.append(f"the API answered {status}: {str(answer)[:200]}")
            return
        for value in (answer.get("data") or {}).values():
            if value is not None:
                probes.seen(str(value["id"]), now)
        probes.give_up(now, give_up)
        time.sleep(0.01)


@dataclass
class Freshness:
    p50_ms: float
    p99_ms: float
    probes: int
    lost: int
    events: int
    events_per_s: float


def measure(bootstrap: str, topic: str, api: Server, token: str, seconds: float,
            rate: float = 5000.0, probe_interval: float = 0.05,
            give_up: float = 15.0) -> Freshness:
    from kafka import KafkaProducer

    run = uuid.uuid4().hex[:8]
    producer = KafkaProducer(bootstrap_servers=bootstrap.split(","), acks="all", linger_ms=2)
    probes = Probes()
    stop = threading.Event()
    errors: list[str] = []

    def encoded(event: dict[str, object]) -> tuple[bytes, bytes]:
        return (str(event["deliveryId"]).encode(),
                json.dumps(event, separators=(",", ":")).encode())

    def send(event: dict[str, object]) -> None:
        key, value = encoded(event)
        producer.send(topic, key=key, value=value)

    def probe(n: int) -> None:
        delivery_id = f"P-{run}-{n:06d}"
        with probes.lock:
            probes.sent[delivery_id] = time.perf_counter()
        send(_event("DeliveryCreated", delivery_id, 1))

    # Warm-up: the projector has joined its group and the API answers.
    probe(0)
    poller = threading.Thread(target=_poll, args=(api, token, probes, stop, give_up, errors),
                              daemon=True)
    poller.start()
    wait_until(lambda: bool(probes.latencies_ms) or bool(errors), 90,
               "the first probe to be visible through the API", interval=0.05)
    with probes.lock:
        probes.latencies_ms.clear()
        probes.lost = 0

    # The background load is encoded before the clock starts: at 5,000 events/s the
    # paced loop has 200 µs an event, and building the JSON took a good part of it.
    background = [encoded(_event(t, f"F-{run}-{n:07d}", i + 1))
                  for n in range(int(rate * seconds / len(LIFECYCLE)) + 1)
                  for i, t in enumerate(LIFECYCLE)]
    tick = 0.01
    start = time.perf_counter()
    next_probe = start
    sent = n_probe = n_background = 0

    def probe_when_due() -> int:
        """A probe when one is due (also in the middle of a burst); 1 if sent."""
        nonlocal next_probe, n_probe
        now = time.perf_counter()
        if now < next_probe:
            return 0
        n_probe += 1
        probe(n_probe)
        next_probe += probe_interval
        if next_probe <= now:  # late: the missed ones are not sent in a burst
            next_probe = now + probe_interval
        return 1

    try:
        while (now := time.perf_counter()) - start < seconds and not errors:
            sent += probe_when_due()
            due = int(rate * (now - start))  # paced by the clock, so a late tick catches up
            while sent < due and n_background < len(background):
                key, value = background[n_background]
                producer.send(topic, key=key, value=value)
                n_background += 1
                sent += 1 + probe_when_due()
            time.sleep(max(0.0, tick - (time.perf_counter() - start) % tick))
        elapsed = time.perf_counter() - start
        producer.flush(timeout=30)
        stop.set()
        poller.join(timeout=give_up + 10)
    finally:
        stop.set()
        producer.close(timeout=10)
    if errors:
        raise BenchError(errors[0])
    if not probes.latencies_ms:
        raise BenchError("no probe became visible")
    ordered = sorted(probes.latencies_ms)
    if probes.lost:
        say(f"  {probes.lost} of {len(ordered)} probes not visible within {give_up:.0f}s")
    return Freshness(_percentile(ordered, 50), _percentile(ordered, 99), len(ordered),
                     probes.lost, sent, sent / elapsed)


def _percentile(ordered: list[float], p: float) -> float:
    """Nearest-rank percentile of a sorted list."""
    rank = max(1, -(-len(ordered) * p // 100))
    return ordered[int(rank) - 1]

