"""The retention guard against the real broker, on SQLite and PostgreSQL: records deleted
with ``delete_records``, and a topic whose short ``retention.ms`` made the broker delete
segments. A rebuild from the topic refuses (exit 2, one line), changes nothing, and
proceeds with ``--allow-loss``; ``projector status`` counts what the topic lost."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from kafka import KafkaConsumer, KafkaProducer
from kafka import TopicPartition as KTP
from kafka.admin import ConfigResource, ConfigResourceType, KafkaAdminClient

from producer.simulate import SimulationConfig, encode, simulate
from tests.helpers import encode as encode_event
from tests.helpers import (
    expected_rows,
    make_event,
    run_projector,
    stored_offsets,
    table_rows,
    wait_until,
)
from tests.integration._rebuild_support import Stream, gens, row_counts_by_generation

pytestmark = pytest.mark.integration

Record = tuple[int, int, bytes | None, bytes]  # partition, offset, key, value


@pytest.fixture
def admin(kafka_bootstrap: str) -> Iterator[KafkaAdminClient]:
    client = KafkaAdminClient(bootstrap_servers=kafka_bootstrap)
    yield client
    client.close()


def _unique_events(deliveries: int, seed: int) -> list[tuple[bytes | None, bytes]]:
    """Simulated events without duplicate copies: one history row per message."""
    config = SimulationConfig(deliveries=deliveries, seed=seed, duplicate_ratio=0.0)
    return [(e["deliveryId"].encode(), encode(e)) for e in simulate(config)]


def _offsets(bootstrap: str, topic: str, which: str) -> dict[int, int]:
    consumer = KafkaConsumer(bootstrap_servers=bootstrap)
    try:
        parts = [KTP(topic, p) for p in sorted(consumer.partitions_for_topic(topic) or ())]
        found = getattr(consumer, f"{which}_offsets")(parts)
        return {tp.partition: int(n) for tp, n in found.items()}
    finally:
        consumer.close()


def _records(bootstrap: str, topic: str) -> list[Record]:
    """Every record the topic holds now, with its position."""
    ends = _offsets(bootstrap, topic, "end")
    consumer = KafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False)
    out: list[Record] = []
    try:
        consumer.assign([KTP(topic, p) for p in ends])
        consumer.seek_to_beginning()

        def read_all() -> bool:
            for batch in consumer.poll(timeout_ms=500).values():
                out.extend((r.partition, r.offset, r.key, r.value) for r in batch)
            return all(consumer.position(KTP(topic, p)) >= end for p, end in ends.items())

        wait_until(read_all, timeout=30, interval=0, message=f"reading {topic}")
    finally:
        consumer.close()
    return out


def _status(stream: Stream) -> dict[str, Any]:
    doc: dict[str, Any] = json.loads(run_projector(["status", "--json"], stream.env).stdout)
    return doc


def _gone(stream: Stream) -> dict[int, int]:
    return {p["partition"]: p["eventsGoneFromSource"] for p in _status(stream)["partitions"]}


def _assert_refused(stream: Stream, args: list[str], gone: dict[int, int]) -> None:
    """The rebuild exits 2 with one line, and generation 1 is exactly as it was."""
    before = (gens(stream.db_url), row_counts_by_generation(stream.db_url),
              table_rows(stream.db_url, 1), stored_offsets(stream.db_url, 1))
    proc = run_projector(["rebuild", *args], stream.env, check=False)
    assert proc.returncode == 2, proc.stderr
    assert proc.stdout == ""
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1, proc.stderr
    line = lines[0]
    lost = {p: n for p, n in sorted(gone.items()) if n}
    where = ", ".join(f"{p}: {n}" for p, n in lost.items())
    assert line.startswith("projector: error: "), line
    assert f"the topic no longer holds {sum(lost.values())} events that generation 1 serves" in line
    assert f"(partition{'s' if len(lost) > 1 else ''} {where};" in line, line
    assert "`projector rebuild --from-history`" in line and "--allow-loss" in line, line
    after = (gens(stream.db_url), row_counts_by_generation(stream.db_url),
             table_rows(stream.db_url, 1), stored_offsets(stream.db_url, 1))
    assert after == before
    assert gens(stream.db_url) == {1: ("active", "live")}


def _assert_rebuilt_with_loss(stream: Stream, survivors: list[Record]) -> None:
    """``--allow-loss`` rebuilds from what the topic holds and switches, saying so."""
    proc = run_projector(["rebuild", "--allow-loss", "--json"], stream.env)
    summary = json.loads(proc.stdout)
    assert summary["switched"] is True and summary["generation"] == 2
    assert summary["events"] == len(survivors)
    assert "--allow-loss: rebuilding anyway; the topic no longer holds" in proc.stderr
    assert gens(stream.db_url) == {1: ("retired", "live"), 2: ("active", "rebuild")}
    assert table_rows(stream.db_url, 2) == expected_rows(
        [v for *_, v in survivors], [k for _, _, k, _ in survivors], generation=2
    )
    assert set(_gone(stream).values()) == {0}  # the new generation holds only what is there


def test_deleted_records_make_a_rebuild_from_the_topic_refuse_unless_loss_is_allowed(
    migrated_url: str, kafka_bootstrap: str, topic_factory: Callable[..., str],
    admin: KafkaAdminClient,
) -> None:
    stream = Stream(kafka_bootstrap, topic_factory(3), migrated_url, [])
    stream.produce(_unique_events(40, seed=11))
    run_projector(["run", "--until-caught-up"], stream.env)
    assert _status(stream)["eventsApplied"] == len(stream.messages)  # one row per message
    assert set(_gone(stream).values()) == {0}

    ends = _offsets(kafka_bootstrap, stream.topic, "end")
    cut = {0: ends[0] // 2, 1: ends[1] // 3}  # partition 2 keeps everything
    assert all(cut.values())
    records = _records(kafka_bootstrap, stream.topic)
    admin.delete_records({KTP(stream.topic, p): n for p, n in cut.items()})
    assert _offsets(kafka_bootstrap, stream.topic, "beginning") == {**cut, 2: 0}

    gone = {**cut, 2: 0}
    assert _gone(stream) == gone
    text = run_projector(["status"], stream.env).stdout
    assert f"the topic no longer holds {sum(cut.values())} served events (gone)" in text, text
    assert "gone" in text.splitlines()[1]
    _assert_refused(stream, [], gone)
    _assert_refused(stream, ["--in-place"], gone)
    _assert_refused(stream, ["--from-offset", "0"], gone)

    survivors = [r for r in records if r[1] >= cut.get(r[0], 0)]
    _assert_rebuilt_with_loss(stream, survivors)


def test_records_removed_by_retention_make_a_rebuild_refuse(
    migrated_url: str, kafka_bootstrap: str, topic_factory: Callable[..., str],
    admin: KafkaAdminClient,
) -> None:
    topic = topic_factory(2)
    # Small time-based segments, so the segment of the first events is closed (and
    # deletable) as soon as anything is appended 100 ms after it.
    short_segments = {"segment.ms": "100"}
    admin.alter_configs([ConfigResource(ConfigResourceType.TOPIC, topic, configs=short_segments)])
    stream = Stream(kafka_bootstrap, topic, migrated_url, [])
    stream.produce(_unique_events(20, seed=12))
    run_projector(["run", "--until-caught-up"], stream.env)
    held = _offsets(kafka_bootstrap, topic, "end")  # every served event is below these
    assert _status(stream)["eventsApplied"] == sum(held.values())

    admin.alter_configs([ConfigResource(ConfigResourceType.TOPIC, topic,
                                        configs={**short_segments, "retention.ms": "1000"})])
    producer = KafkaProducer(bootstrap_servers=kafka_bootstrap)
    ticks = iter(range(1_000_000))

    def retention_removed_the_served_events() -> bool:
        # Each append rolls the segment before it; the broker deletes a closed segment
        # once it is older than retention.ms (checked every second on the test broker).
        n = next(ticks)
        for p in held:
            event = make_event("DeliveryCreated", f"T-{p}-{n}", event_id=f"tick-{p}-{n}")
            producer.send(topic, encode_event(event), key=event["deliveryId"].encode(),
                          partition=p)
        producer.flush(timeout=10)
        begins = _offsets(kafka_bootstrap, topic, "beginning")
        return all(begins[p] >= end for p, end in held.items())

    try:
        wait_until(retention_removed_the_served_events, timeout=90, interval=0.5,
                   message="the broker deleting the first segments by retention.ms")
    finally:
        producer.close()

    assert _gone(stream) == held
    _assert_refused(stream, [], held)
    _assert_refused(stream, ["--in-place"], held)
