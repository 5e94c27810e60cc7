"""`projector rebuild --from-history` against the real broker, on SQLite and PostgreSQL: it
equals a rebuild from the topic on the same stream, and it keeps what the topic lost."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from kafka import TopicPartition as KTP
from kafka.admin import KafkaAdminClient
from sqlalchemy import select, update

from producer.produce import produce
from projector.settings import Settings
from schema.db import make_engine
from schema.tables import dead_letters, deliveries, delivery_events
from tests.helpers import encode, make_event, run_projector, stored_offsets
from tests.integration._rebuild_support import (
    BAD,
    Stream,
    gens,
    kill_when_building,
    offsets,
    simulated,
    start_projector,
)

pytestmark = pytest.mark.integration

#: Columns that differ between generations by construction.
_NOT_COMPARED = {"generation", "applied_at", "id", "created_at", "replayed_at"}


@pytest.fixture
def admin(kafka_bootstrap: str) -> Iterator[KafkaAdminClient]:
    client = KafkaAdminClient(bootstrap_servers=kafka_bootstrap)
    yield client
    client.close()


def _table(db_url: str, table: Any, generation: int) -> list[dict[str, Any]]:
    """One generation's rows of ``table``, without the columns that differ by construction,
    in a stable order."""
    engine = make_engine(db_url, writer=False)
    try:
        with engine.connect() as conn:
            rows = conn.execute(select(table).where(table.c.generation == generation)).all()
    finally:
        engine.dispose()
    out = [{k: v for k, v in r._mapping.items() if k not in _NOT_COMPARED} for r in rows]
    return sorted(out, key=lambda r: json.dumps(r, sort_keys=True, default=str))


def _model(db_url: str, generation: int) -> dict[str, list[dict[str, Any]]]:
    return {
        "deliveries": _table(db_url, deliveries, generation),
        "history": _table(db_url, delivery_events, generation),
        "dead_letters": _table(db_url, dead_letters, generation),
    }


def _mixed_stream(stream: Stream) -> None:
    """Simulated deliveries (duplicates, late events), bad messages (one with headers that
    are not UTF-8), a version-2 event, one of a version this build does not know, and
    versions in the body and in the Kafka header."""
    stream.produce(simulated(60, seed=21) + [BAD])
    future = make_event("DeliveryRiderAssigned", "D-V", "2026-11-25T10:05:00Z", event_id="v-3",
                        data={"courier": {"ref": "R-3"}}, eventVersion=3)
    assigned_v2 = make_event("DeliveryRiderAssigned", "D-V", "2026-11-25T10:01:00Z",
                             event_id="v-2", data={"rider": {"id": "R-9"}}, eventVersion=2)
    stream.produce([(b"D-V", encode(make_event("DeliveryCreated", "D-V", event_id="v-1"))),
                    (b"D-V", encode(assigned_v2)), (b"D-V", encode(future))])
    header_v1 = make_event("DeliveryPickedUp", "D-V", "2026-11-25T10:10:00Z", event_id="v-h")
    produce(Settings(kafka_bootstrap_servers=stream.bootstrap, kafka_topic=stream.topic),
            [(b"D-V", encode(header_v1), [("eventVersion", b"1")]),
             (b"D-V", b'{"eventId": 7}', [("trace", b"\xff\x00"), ("eventVersion", b"2")])])


def _rebuild(stream: Stream, *args: str) -> dict[str, Any]:
    summary: dict[str, Any] = json.loads(
        run_projector(["rebuild", "--json", *args], stream.env).stdout)
    assert summary["switched"] is True
    return summary


def test_a_rebuild_from_the_history_equals_a_rebuild_from_the_topic(
    migrated_url: str, kafka_bootstrap: str, topic_factory: Callable[..., str],
) -> None:
    stream = Stream(kafka_bootstrap, topic_factory(3), migrated_url, [])
    _mixed_stream(stream)
    run_projector(["run", "--until-caught-up"], stream.env)
    served = _model(stream.db_url, 1)
    assert len(served["dead_letters"]) == 2
    assert any(r["event_id"] == "v-3" for r in served["history"])
    assert any(r["delivery_id"] == "D-V" and r["rider_id"] == "R-9" for r in served["deliveries"])

    from_history = _rebuild(stream, "--from-history", "--keep-old")
    assert from_history["mode"] == "from-history" and from_history["generation"] == 2
    assert from_history["dead_letters"] == 2
    assert from_history["events"] == len(served["history"]) + 2  # each event, the bad ones
    from_topic = _rebuild(stream, "--keep-old")
    assert from_topic["generation"] == 3
    assert gens(stream.db_url) == {1: ("retired", "live"), 2: ("retired", "rebuild"),
                                   3: ("active", "rebuild")}

    assert _model(stream.db_url, 2) == _model(stream.db_url, 3) == served
    # The per-partition offsets are exact: where the served generation stood.
    assert stored_offsets(stream.db_url, 2) == stored_offsets(stream.db_url, 3) \
        == stored_offsets(stream.db_url, 1)


def test_a_rebuild_from_the_history_keeps_what_the_topic_lost_and_catches_up_from_it(
    migrated_url: str, kafka_bootstrap: str, topic_factory: Callable[..., str],
    admin: KafkaAdminClient,
) -> None:
    stream = Stream(kafka_bootstrap, topic_factory(3), migrated_url, [])
    _mixed_stream(stream)
    run_projector(["run", "--until-caught-up"], stream.env)
    served = _model(stream.db_url, 1)
    served_offsets = stored_offsets(stream.db_url, 1)

    # The head of every partition is deleted, as retention would; the topic moves on
    # beyond what the served generation has read.
    admin.delete_records({KTP(stream.topic, p): n // 2 for (_, p), n in served_offsets.items()})
    later = simulated(5, seed=22, prefix="L")
    stream.produce(later)
    refused = run_projector(["rebuild"], stream.env, check=False)
    assert refused.returncode == 2 and "--from-history" in refused.stderr

    # A dead letter that this build now reads (as if the parser had been fixed).
    fixed = make_event("DeliveryCreated", "D-FIX", "2026-11-25T09:00:00Z", event_id="fix-1")
    engine = make_engine(stream.db_url)
    try:
        with engine.begin() as conn:
            conn.execute(update(dead_letters)
                         .where(dead_letters.c.generation == 1, dead_letters.c.value == BAD[1])
                         .values(value=encode(fixed), key=b"D-FIX"))
    finally:
        engine.dispose()

    summary = _rebuild(stream, "--from-history")
    assert summary["generation"] == 2 and summary["dead_letters"] == 1  # still unreadable
    assert summary["events"] == len(served["history"]) + 2 + len(later)
    assert gens(stream.db_url) == {1: ("retired", "live"), 2: ("active", "rebuild")}
    rebuilt = _model(stream.db_url, 2)
    # The fixed one is applied, the other kept as it was.
    assert rebuilt["dead_letters"] == [r for r in served["dead_letters"] if r["value"] != BAD[1]]
    later_ids = {json.loads(v)["eventId"] for _, v in later}
    history = [r for r in rebuilt["history"]
               if r["event_id"] not in later_ids and r["event_id"] != "fix-1"]
    assert history == served["history"]  # nothing lost, though the topic lost half of it
    assert {r["event_id"] for r in rebuilt["history"]} >= later_ids | {"fix-1"}
    ids = {r["delivery_id"] for r in rebuilt["deliveries"]}
    assert {r["delivery_id"] for r in served["deliveries"]} | {"D-FIX"} <= ids
    # The old generation's rows are gone; the new one serves and counts nothing as lost.
    assert _model(stream.db_url, 1)["history"] == []
    status = json.loads(run_projector(["status", "--json"], stream.env).stdout)
    assert {p["partition"]: p["eventsGoneFromSource"] for p in status["partitions"]} == {
        p: sum(1 for r in rebuilt["history"] if r["partition"] == p and r["offset"] < n // 2)
        for (_, p), n in served_offsets.items()
    }
    assert all(p["lag"] == 0 for p in status["partitions"])


def test_a_rebuild_from_the_history_killed_midway_is_resumed_from_its_offsets(
    migrated_url: str, kafka_bootstrap: str, topic_factory: Callable[..., str],
) -> None:
    stream = Stream(kafka_bootstrap, topic_factory(3), migrated_url, [])
    _mixed_stream(stream)
    run_projector(["run", "--until-caught-up"], stream.env)
    served = _model(stream.db_url, 1)

    proc = start_projector(["rebuild", "--from-history", "--keep-old", "--batch-size", "2"],
                           {**stream.env, "PROJECTOR_REBUILD_BULK": "0"})  # killed in a replay
    kill_when_building(proc, stream.db_url, 2, at_least=40)
    assert gens(stream.db_url)[2] == ("building", "rebuild")
    assert sum(offsets(stream.db_url, 2).values()) < sum(offsets(stream.db_url, 1).values())

    summary = _rebuild(stream, "--resume", "--keep-old")
    assert summary["mode"] == "resume" and summary["from_spec"] == "history"
    assert gens(stream.db_url) == {1: ("retired", "live"), 2: ("active", "rebuild")}
    assert _model(stream.db_url, 2) == served
    assert stored_offsets(stream.db_url, 2) == stored_offsets(stream.db_url, 1)
