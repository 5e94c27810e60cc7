"""The benchmark stream: generated once by `projector simulate`, cached, put into Kafka.

A cached file is keyed by its size and seed (``.cache/stream-<events>-s<seed>.jsonl``):
the simulator makes ~4.3 events per delivery, so enough deliveries are simulated
and the stream is cut at exactly the number of events asked for.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

from benchmarks._proc import ROOT, BenchError, Processes, command, say

CACHE = Path(__file__).resolve().parent / ".cache"
EVENTS_PER_DELIVERY = 4.0  # a little under the simulator's mean: there is always enough
# Producers mix versions (the contract, section Event versions): the benchmark carries them too.
VERSIONS = "2:0.3,3:0.01"


def stream_file(procs: Processes, events: int, seed: int, timeout: float) -> Path:
    """A JSON Lines file of exactly ``events`` simulated messages (cached)."""
    CACHE.mkdir(exist_ok=True)
    path = CACHE / f"stream-{events}-s{seed}-v{VERSIONS.replace(':', '_').replace(',', '-')}.jsonl"
    if path.exists():
        say(f"stream: {path.relative_to(ROOT)} (cached)")
        return path
    deliveries = int(events / EVENTS_PER_DELIVERY) + 20
    full = CACHE / f".simulated-{deliveries}-s{seed}.{os.getpid()}.jsonl"
    say(f"stream: simulating {deliveries} deliveries (projector simulate, seed {seed})")

    try:
        procs.check("simulate", [*command("projector"), "simulate", "--deliveries",
                                 str(deliveries), "--seed", str(seed), "--versions", VERSIONS,
                                 "--out", str(full)],
                    os.environ, timeout)
        tmp = path.with_suffix(f".tmp{os.getpid()}")
        written = 0
        with open(full, "rb") as src, open(tmp, "wb") as dst:
            for line in src:
                if written == events:
                    break
                dst.write(line)
                written += 1
        if written < events:
            tmp.unlink()
            raise BenchError(f"simulate gave {written} events, fewer than {events}")
        tmp.replace(path)
    finally:
        full.unlink(missing_ok=True)
    say(f"stream: wrote {path.relative_to(ROOT)}")
    return path


def delivery_key(line: bytes) -> bytes:
    """The message key `projector simulate` uses: the delivery id, UTF-8."""
    value = json.loads(line)
    return str(value["deliveryId"]).encode("utf-8")


def produce_file(bootstrap: str, topic: str, path: Path, timeout: float,
                 limit: int | None = None) -> float:
    """The lines of ``path`` (the first ``limit``; None: all) into ``topic`` in order,
    keyed like simulate; returns seconds."""
    from kafka import KafkaProducer
    from kafka.errors import KafkaError

    producer = KafkaProducer(
        bootstrap_servers=bootstrap.split(","), acks="all", linger_ms=20,
        batch_size=512 * 1024, max_request_size=8 * 1024 * 1024,
    )
    start = time.perf_counter()
    try:
        futures = []
        with open(path, "rb") as fh:
            for n, raw in enumerate(fh):
                if limit is not None and n >= limit:
                    break
                line = raw.rstrip(b"\n")
                if not line.strip():
                    continue
                futures.append(producer.send(topic, key=delivery_key(line), value=line))
                if n % 50_000 == 49_999:
                    producer.flush(timeout=timeout)
                    for future in futures:
                        future.get(timeout=timeout)
                    futures.clear()
        producer.flush(timeout=timeout)
        for future in futures:
            future.get(timeout=timeout)
    except KafkaError as exc:
        raise BenchError(f"producing {path.name} to {topic} failed: {exc}") from exc
    finally:
        producer.close(timeout=10)
    return time.perf_counter() - start


def raw_consume(bootstrap: str, topic: str, expected: int, timeout: float) -> float:
    """Baseline: a bare kafka-python consumer reads and JSON-decodes the topic; seconds.

    No group, every partition from the earliest offset to the end offset seen at
    start; stdlib ``json``; crc32c is installed, so record CRCs are checked in C.
    """
    from kafka import KafkaConsumer, TopicPartition

    start = time.perf_counter()
    consumer = KafkaConsumer(bootstrap_servers=bootstrap.split(","), group_id=None,
                             enable_auto_commit=False, auto_offset_reset="earliest")
    try:
        partitions = [TopicPartition(topic, p)
                      for p in sorted(consumer.partitions_for_topic(topic) or ())]
        if not partitions:
            raise BenchError(f"topic {topic} has no partitions")
        consumer.assign(partitions)
        consumer.seek_to_beginning(*partitions)
        ends: dict[TopicPartition, int] = consumer.end_offsets(partitions)
        seen = 0
        deadline = time.monotonic() + timeout
        while any(consumer.position(tp) < end for tp, end in ends.items()):
            if time.monotonic() > deadline:
                raise BenchError(f"raw consumer read {seen} of {expected} in {timeout:.0f}s")
            for records in consumer.poll(timeout_ms=500).values():
                for record in records:
                    json.loads(record.value)
                    seen += 1
        seconds = time.perf_counter() - start
    finally:
        consumer.close()
    if seen != expected:
        raise BenchError(f"raw consumer read {seen} messages, expected {expected}")
    return seconds

