"""The projector against a real Kafka broker and real databases.

Every test compares the read model with the pure fold of the events it produced,
computed here in the test: the projector must equal the definition, whatever
happened on the way (redelivery, poison, SIGKILL, a second consumer).
"""

from __future__ import annotations

import json
import signal
import subprocess
import sys
from collections.abc import Callable
from typing import Any

import pytest
from sqlalchemy import select

from producer.produce import produce
from producer.simulate import SimulationConfig, encode, simulate
from projector.settings import Settings
from schema.db import make_engine
from schema.tables import dead_letters, delivery_events, projection_offsets
from tests.helpers import (
    ROOT,
    expected_rows,
    projector_env,
    run_projector,
    stored_offsets,
    table_rows,
    unique,
    wait_until,
)

pytestmark = pytest.mark.integration

VOLATILE = {"applied_at"}


def _stream(deliveries: int, seed: int) -> list[tuple[bytes, bytes]]:
    events = simulate(SimulationConfig(deliveries=deliveries, seed=seed))
    return [(e["deliveryId"].encode(), encode(e)) for e in events]


def _settings(bootstrap: str, topic: str) -> Settings:
    return Settings(kafka_bootstrap_servers=bootstrap, kafka_topic=topic)


def _env(db_url: str, bootstrap: str, topic: str, group: str | None = None, **extra: str) -> dict[str, str]:
    return projector_env(
        db_url,
        "kafka",
        KAFKA_BOOTSTRAP_SERVERS=bootstrap,
        KAFKA_TOPIC=topic,
        KAFKA_GROUP_ID=group or unique("group"),
        **extra,
    )


def _history(db_url: str) -> dict[str, dict[str, Any]]:
    engine = make_engine(db_url, writer=False)
    try:
        with engine.connect() as conn:
            rows = conn.execute(select(delivery_events)).all()
        return {
            r.event_id: {k: v for k, v in r._mapping.items() if k not in VOLATILE} for r in rows
        }
    finally:
        engine.dispose()


def _owners(db_url: str) -> set[str]:
    engine = make_engine(db_url, writer=False)
    try:
        with engine.connect() as conn:
            return set(conn.execute(select(projection_offsets.c.owner)).scalars()) - {None}
    finally:
        engine.dispose()


def _expected_history_ids(messages: list[tuple[bytes, bytes]]) -> set[str]:
    ids = set()
    for _, value in messages:
        try:
            body = json.loads(value)
        except ValueError:
            continue
        if isinstance(body, dict) and isinstance(body.get("eventId"), str):
            ids.add(body["eventId"])
    return ids


def test_simulated_stream_is_projected_exactly_and_redelivery_changes_nothing(
    db_url: str, kafka_bootstrap: str, topic_factory: Callable[..., str]
) -> None:
    topic = topic_factory(3)
    messages = _stream(150, seed=11)
    produce(_settings(kafka_bootstrap, topic), messages)
    env = _env(db_url, kafka_bootstrap, topic)
    run_projector(["migrate"], env)
    run_projector(["run", "--until-caught-up", "--batch-size", "40"], env)

    expected = expected_rows(v for _, v in messages)
    assert table_rows(db_url) == expected
    history = _history(db_url)
    assert set(history) == _expected_history_ids(messages)
    assert sum(stored_offsets(db_url).values()) == len(messages)

    status = json.loads(run_projector(["status", "--json"], env).stdout)
    assert status["eventsApplied"] == len(history)
    assert status["deadLetters"] == 0
    assert status["generation"] == 1
    assert sum(p["lag"] for p in status["partitions"]) == 0

    # Redelivery: the outbox relay sends everything again; nothing may change.
    produce(_settings(kafka_bootstrap, topic), messages)
    run_projector(["run", "--until-caught-up"], env)
    assert table_rows(db_url) == expected
    assert _history(db_url) == history
    assert sum(stored_offsets(db_url).values()) == 2 * len(messages)


POISON: list[tuple[str, bytes | None, bytes | None]] = [
    ("INVALID_UTF8", b"D-P1", b'{"eventId": "\xff\xfe"}'),
    ("INVALID_JSON", b"D-P1", b'{"eventId": "x", '),
    ("NOT_AN_OBJECT", b"D-P1", b"[1, 2, 3]"),
    ("INVALID_JSON", b"D-P1", b'"just a string"'),  # a JSON string is decoded once more
    ("EMPTY_MESSAGE", b"D-P1", None),
    ("MISSING_FIELD", b"D-P1", b'{"eventType": "DeliveryCompleted", "occurrenceDateTime": "2026-11-25T10:00:00Z"}'),
    ("FIELD_TOO_LONG", b"D-P1", json.dumps({"eventId": "x" * 129, "eventType": "DeliveryCompleted", "occurrenceDateTime": "2026-11-25T10:00:00Z"}).encode()),
    ("INVALID_TIME", b"D-P1", b'{"eventId": "p-t", "eventType": "DeliveryCompleted", "occurrenceDateTime": "yesterday"}'),
    ("WRONG_TYPE", b"D-P1", b'{"eventId": "p-s", "eventType": "DeliveryCompleted", "occurrenceDateTime": "2026-11-25T10:00:00Z", "sequence": "7"}'),
    ("MISSING_DATA_FIELD", b"D-P1", b'{"eventId": "p-d", "eventType": "DeliveryRiderAssigned", "occurrenceDateTime": "2026-11-25T10:00:00Z", "data": {}}'),
    ("EMPTY_FIELD", None, b'{"eventId": "p-k", "eventType": "DeliveryCompleted", "deliveryId": "", "occurrenceDateTime": "2026-11-25T10:00:00Z"}'),
]


def test_poison_messages_become_dead_letters_and_every_valid_event_is_projected(
    db_url: str, kafka_bootstrap: str, topic_factory: Callable[..., str]
) -> None:
    topic = topic_factory(1)  # one partition: poison sits between valid events of the same log
    valid = _stream(30, seed=5)
    messages: list[tuple[bytes | None, bytes | None]] = []
    for i, (key, value) in enumerate(valid):
        messages.append((key, value))
        if i % 7 == 3 and i // 7 < len(POISON):
            _, pkey, pvalue = POISON[i // 7]
            messages.append((pkey, pvalue))
    assert len(messages) == len(valid) + len(POISON)
    produce(_settings(kafka_bootstrap, topic), messages)
    env = _env(db_url, kafka_bootstrap, topic)
    run_projector(["migrate"], env)
    run_projector(["run", "--until-caught-up", "--batch-size", "25"], env)

    assert table_rows(db_url) == expected_rows(v for _, v in valid)
    engine = make_engine(db_url, writer=False)
    with engine.connect() as conn:
        dead = conn.execute(select(dead_letters).order_by(dead_letters.c.offset)).all()
    engine.dispose()
    assert [d.error_code for d in dead] == [code for code, _, _ in POISON]
    for d, (_, key, value) in zip(dead, POISON, strict=True):
        assert d.value == value and d.key == key and d.topic == topic
        assert d.reason
    status = json.loads(run_projector(["status", "--json"], env).stdout)
    assert status["deadLetters"] == len(POISON)
    listed = run_projector(["dead-letters", "list", "--json"], env).stdout.splitlines()
    assert len(listed) == len(POISON)


def _start(env: dict[str, str], *args: str) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [sys.executable, "-m", "projector.cli", "run", *args],
        env=env, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
    )


def test_sigkill_mid_stream_then_restart_equals_an_uninterrupted_run(
    db_url: str, kafka_bootstrap: str, topic_factory: Callable[..., str], tmp_path: Any
) -> None:
    topic = topic_factory(3)
    messages = _stream(600, seed=23)
    produce(_settings(kafka_bootstrap, topic), messages)
    # A static member: each restart takes the partitions back at once instead of
    # waiting for the killed process's session to time out (issue #9, hole 6).
    env = _env(db_url, kafka_bootstrap, topic, PROJECTOR_BATCH_SIZE="20",
               KAFKA_GROUP_INSTANCE_ID="sigkill-test")
    run_projector(["migrate"], env)

    kills = 0
    for target in (len(messages) // 5, len(messages) // 2, (len(messages) * 4) // 5):
        proc = _start(env)
        try:
            wait_until(lambda p=proc, t=target: sum(stored_offsets(db_url).values()) >= t  # type: ignore[misc]
                       or p.poll() is not None,
                       timeout=120, interval=0.02, message=f"{target} messages projected")
            assert proc.poll() is None, proc.stderr.read().decode() if proc.stderr else ""
            proc.send_signal(signal.SIGKILL)
            kills += 1
        finally:
            proc.wait(timeout=30)
    assert kills == 3
    assert sum(stored_offsets(db_url).values()) < len(messages)  # it really was cut off mid-stream
    run_projector(["run", "--until-caught-up"], env)

    # An uninterrupted run of the same stream into a fresh SQLite read model.
    clean_url = f"sqlite:///{tmp_path / 'uninterrupted.db'}"
    clean_env = _env(clean_url, kafka_bootstrap, topic)
    run_projector(["migrate"], clean_env)
    run_projector(["run", "--until-caught-up"], clean_env)

    assert table_rows(db_url) == table_rows(clean_url) == expected_rows(v for _, v in messages)
    assert _history(db_url) == _history(clean_url)
    assert stored_offsets(db_url) == stored_offsets(clean_url)


def test_two_processes_in_one_group_end_with_the_same_tables_as_one(
    db_url: str, kafka_bootstrap: str, topic_factory: Callable[..., str]
) -> None:
    topic = topic_factory(3)
    messages = _stream(400, seed=31)
    group = unique("group")
    env = _env(db_url, kafka_bootstrap, topic, group, PROJECTOR_BATCH_SIZE="25")
    run_projector(["migrate"], env)

    procs = [_start(env), _start(env)]
    try:
        # Both members own partitions before the stream arrives, so both must work on it.
        wait_until(lambda: len(_owners(db_url)) == 2 or any(p.poll() is not None for p in procs),
                   timeout=120, interval=0.1, message="two consumers in the group")
        produce(_settings(kafka_bootstrap, topic), messages)
        wait_until(lambda: sum(stored_offsets(db_url).values()) >= len(messages)
                   or any(p.poll() is not None for p in procs),
                   timeout=180, interval=0.05, message="both consumers caught up")
        for p in procs:
            assert p.poll() is None, p.stderr.read().decode() if p.stderr else ""
        owners = _owners(db_url)
    finally:
        for p in procs:
            p.send_signal(signal.SIGTERM)
        for p in procs:
            try:
                p.wait(timeout=30)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()
    assert len(owners) == 2, f"expected both consumers to own partitions, got {owners}"
    assert [p.returncode for p in procs] == [0, 0]
    assert table_rows(db_url) == expected_rows(v for _, v in messages)
    assert set(_history(db_url)) == _expected_history_ids(messages)


def test_transactional_producers_aborted_events_are_ignored_and_markers_do_not_stall_it(
    db_url: str, kafka_bootstrap: str, topic_factory: Callable[..., str]
) -> None:
    """An outbox relay with exactly-once delivery writes in transactions: every commit
    leaves a marker at an offset that holds no message, and an aborted transaction's
    events must never be folded."""
    from kafka import KafkaProducer

    from tests.helpers import make_event

    topic = topic_factory(1)
    producer = KafkaProducer(bootstrap_servers=kafka_bootstrap, transactional_id=unique("outbox"),
                             acks="all")
    producer.init_transactions()
    committed: list[bytes] = []

    def transaction(events: list[dict[str, Any]], commit: bool) -> None:
        producer.begin_transaction()
        for event in events:
            value = json.dumps(event).encode()
            producer.send(topic, key=event["deliveryId"].encode(), value=value)
            if commit:
                committed.append(value)
        producer.flush()
        (producer.commit_transaction if commit else producer.abort_transaction)()

    transaction([make_event("DeliveryCreated", "D-1", "2026-11-25T10:00:00Z", event_id="t1")], True)
    transaction([make_event("DeliveryCancelled", "D-1", "2026-11-25T10:05:00Z", event_id="t2",
                            data={"reason": "never happened"})], False)
    transaction([make_event("DeliveryRiderAssigned", "D-1", "2026-11-25T10:10:00Z", event_id="t3")], True)
    producer.close()

    env = _env(db_url, kafka_bootstrap, topic)
    run_projector(["migrate"], env)
    run_projector(["run", "--until-caught-up"], env, timeout=120)  # must not wait for markers
    assert table_rows(db_url) == expected_rows(committed)
    assert table_rows(db_url)["D-1"]["state"] == "ASSIGNED"
    assert set(_history(db_url)) == {"t1", "t3"}
    status = json.loads(run_projector(["status", "--json"], env).stdout)
    assert status["partitions"][0]["lag"] == 0


def test_simulate_writes_the_same_stream_to_kafka_as_to_a_file(
    sqlite_url: str, kafka_bootstrap: str, topic_factory: Callable[..., str], tmp_path: Any
) -> None:
    topic = topic_factory(3)
    env = _env(sqlite_url, kafka_bootstrap, topic)
    out = run_projector(["simulate", "--deliveries", "40", "--seed", "6"], env)
    assert f"to {topic} at {kafka_bootstrap}" in out.stdout
    run_projector(["simulate", "--deliveries", "40", "--seed", "6", "--out",
                   str(tmp_path / "s.jsonl")], env)
    lines = (tmp_path / "s.jsonl").read_bytes().splitlines()
    run_projector(["migrate"], env)
    run_projector(["run", "--until-caught-up"], env)
    assert table_rows(sqlite_url) == expected_rows(lines)
    assert sum(stored_offsets(sqlite_url).values()) == len(lines)  # keyed by delivery id, all of them


@pytest.mark.parametrize("instance_id", ["", "static-1"], ids=["dynamic", "static"])
def test_a_new_member_owns_every_partition_even_when_its_polls_time_out_at_once(
    kafka_bootstrap: str, topic_factory: Callable[..., str], instance_id: str
) -> None:
    """kafka-python 3.0.12 drops the result of a rejoin that a poll timed out on when
    the rejoin came from the leader learning the topic's partitions after its first
    join: the member then owned nothing (the slow or partial hand-over of issue #9,
    hole 6). The source learns the partitions before joining; polls of 1 ms (every
    join straddles many of them) must still end with every partition assigned."""
    from projector.sources.base import TopicPartition
    from projector.sources.kafka import KafkaSource

    topic = topic_factory(3)
    settings = Settings(kafka_bootstrap_servers=kafka_bootstrap, kafka_topic=topic,
                        kafka_group_id=unique("group"), kafka_group_instance_id=instance_id)
    source = KafkaSource(settings)
    try:
        source.start()
        wanted = {TopicPartition(topic, p) for p in range(3)}
        wait_until(lambda: source.poll(10, timeout_ms=1) is not None and source.assignment() == wanted,
                   timeout=30, interval=0.0, message="every partition assigned")
    finally:
        source.close()


def test_a_second_projector_with_the_same_instance_id_makes_the_first_one_stop(
    pg_url: str, kafka_bootstrap: str, topic_factory: Callable[..., str], tmp_path: Any
) -> None:
    """Two live static members with one KAFKA_GROUP_INSTANCE_ID: the broker fences the
    older one (FENCED_INSTANCE_ID on its next offset commit) and it exits with one line
    saying so, instead of taking the partitions back from the other forever."""
    topic = topic_factory(3)
    messages = _stream(400, seed=41)
    env = _env(pg_url, kafka_bootstrap, topic, KAFKA_GROUP_INSTANCE_ID="same-id",
               PROJECTOR_BATCH_SIZE="20")
    run_projector(["migrate"], env)
    first_log = open(tmp_path / "first.log", "wb")  # noqa: SIM115 - closed below
    first = subprocess.Popen([sys.executable, "-m", "projector.cli", "run"], env=env, cwd=ROOT,
                             stdout=subprocess.DEVNULL, stderr=first_log)
    second: subprocess.Popen[bytes] | None = None
    try:
        wait_until(lambda: len(_owners(pg_url)) == 1 or first.poll() is not None, timeout=120,
                   message="the first projector owning the partitions")
        second = _start(env)
        produce(_settings(kafka_bootstrap, topic), messages)
        first.wait(timeout=120)
        wait_until(lambda: sum(stored_offsets(pg_url).values()) >= len(messages)
                   or second.poll() is not None, timeout=120, message="the second catching up")
        assert second.poll() is None, second.stderr.read().decode() if second.stderr else ""
    finally:
        for proc in (first, second):
            if proc is not None and proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
                proc.wait(timeout=30)
        first_log.close()
    log = (tmp_path / "first.log").read_text()
    assert first.returncode not in (0, None), log[-2000:]
    assert "KAFKA_GROUP_INSTANCE_ID='same-id' is in use by another member" in log, log[-2000:]
    assert table_rows(pg_url) == expected_rows(v for _, v in messages)
