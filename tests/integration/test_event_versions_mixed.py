"""Mixed-version streams (v1, v2, an unknown v3, malformed versions) projected from a
real Kafka topic with headers and from a file, on SQLite and PostgreSQL: they fold
exactly as the contract says (section Event versions)."""

from __future__ import annotations

import json
import random
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select

from producer.produce import produce
from producer.simulate import SimulationConfig, encode, simulate
from projector.settings import Settings
from schema.db import make_engine
from schema.events import EventParseError, parse_message
from schema.fold import fold
from schema.rows import delivery_to_db
from schema.tables import dead_letters, delivery_events
from tests.api_support import client_for, data_of, gql, settings_for
from tests.helpers import projector_env, run_projector, table_rows, unique
from tests.versions_support import as_v2

pytestmark = pytest.mark.integration

Message = tuple[bytes, bytes, list[tuple[str, bytes]]]
MALFORMED = ["2", 0, -1, 1.5, True]


def mixed_stream(seed: int, headers: bool) -> tuple[list[Message], list[bytes]]:
    """The simulated stream with about half of its versioned events at version 2 (the
    version in the header for some when ``headers``), a few at version 3, a few with a
    malformed version; and the same events all at version 1, v3 as an unknown type."""
    rng = random.Random(seed)
    mixed: list[Message] = []
    reference: list[bytes] = []
    for body in simulate(SimulationConfig(deliveries=40, seed=seed, late_ratio=0.1)):
        key = body["deliveryId"].encode()
        reference.append(encode(body))
        v2 = as_v2(body)
        roll = rng.random()
        if v2 is not None and roll < 0.5:
            if headers and rng.random() < 0.5:
                del v2["eventVersion"]
                mixed.append((key, encode(v2), [("eventVersion", b"2")]))
            else:
                mixed.append((key, encode(v2), []))
        elif roll > 0.95:
            future = {**body, "eventVersion": 3, "data": {"shape": "from the future"}}
            mixed.append((key, encode(future), []))
            reference[-1] = encode({**body, "eventType": "DeliveryFromTheFuture"})
        else:
            mixed.append((key, encode(body), []))
    for i, bad in enumerate(MALFORMED):
        body = {"eventId": f"bad-version-{i}", "eventType": "DeliveryCompleted",
                "deliveryId": "D-BAD", "occurrenceDateTime": "2026-11-25T10:00:00Z",
                "eventVersion": bad}
        mixed.append((b"D-BAD", encode(body), []))
    if headers:
        body = {"eventId": "bad-header", "eventType": "DeliveryCompleted", "deliveryId": "D-BAD",
                "occurrenceDateTime": "2026-11-25T10:00:00Z"}
        mixed.append((b"D-BAD", encode(body), [("eventVersion", b"two")]))
    lacking = {"eventId": "v2-lacking", "eventType": "DeliveryRiderAssigned", "eventVersion": 2,
               "deliveryId": "D-BAD", "occurrenceDateTime": "2026-11-25T10:00:00Z",
               "data": {"riderId": "R-1"}}
    mixed.append((b"D-BAD", encode(lacking), []))
    return mixed, reference


def _rows_of(values: list[tuple[bytes | None, bytes, list[tuple[str, bytes]]]]
             ) -> dict[str, dict[str, Any]]:
    by: dict[str, list[Any]] = {}
    for key, value, headers in values:
        try:
            event = parse_message(value, key, headers)
        except EventParseError:
            continue
        by.setdefault(event.delivery_id, []).append(event)
    return {d: delivery_to_db(1, r) for d, es in by.items() if (r := fold(es)) is not None}


def _check(db_url: str, mixed: list[Message], reference: list[bytes]) -> None:
    rows = table_rows(db_url)
    assert rows == _rows_of(list(mixed))  # the parser's own fold
    assert rows == _rows_of([(None, v, []) for v in reference])  # the contract: v2 reads as v1
    engine = make_engine(db_url, writer=False)
    try:
        with engine.connect() as conn:
            history = {r.event_id: r for r in conn.execute(select(delivery_events))}
            codes = sorted(r.error_code for r in conn.execute(select(dead_letters)))
    finally:
        engine.dispose()
    seen: set[str] = set()
    for _, value, headers in mixed:
        body = json.loads(value)
        if body["eventId"] in seen:  # a later copy: the first one applied is kept
            continue
        seen.add(body["eventId"])
        stored = history.get(body["eventId"])
        if body["eventId"].startswith(("bad-", "v2-lacking")):
            assert stored is None
            continue
        version = body.get("eventVersion") or int(dict(headers).get("eventVersion", b"1"))
        assert stored.event_version == version  # as received
        assert stored.data == body["data"]  # as received, not upcast
        assert stored.known == (0 if version == 3 else 1)
    assert codes.count("INVALID_VERSION") == len(MALFORMED) + sum(
        1 for _, _, h in mixed if dict(h).get("eventVersion") == b"two")
    assert "MISSING_DATA_FIELD" in codes


def test_a_mixed_version_stream_over_kafka_with_headers(
        db_url: str, kafka_bootstrap: str, topic_factory: Callable[..., str]) -> None:
    topic = topic_factory(3)
    mixed, reference = mixed_stream(seed=18, headers=True)
    assert any(h for _, _, h in mixed)
    produce(Settings(kafka_bootstrap_servers=kafka_bootstrap, kafka_topic=topic), mixed)
    env = projector_env(db_url, "kafka", KAFKA_BOOTSTRAP_SERVERS=kafka_bootstrap,
                        KAFKA_TOPIC=topic, KAFKA_GROUP_ID=unique("group"))
    run_projector(["migrate"], env)
    run_projector(["run", "--until-caught-up", "--batch-size", "50"], env)
    _check(db_url, mixed, reference)
    status = json.loads(run_projector(["status", "--json"], env).stdout)
    future = sum(1 for _, v, _ in mixed if json.loads(v).get("eventVersion") == 3)
    assert future > 0 and status["unknownEvents"] >= future


def test_a_mixed_version_stream_from_a_file(db_url: str, tmp_path: Path) -> None:
    mixed, reference = mixed_stream(seed=81, headers=False)
    path = tmp_path / "mixed.jsonl"
    path.write_bytes(b"".join(v + b"\n" for _, v, _ in mixed))
    env = projector_env(db_url, str(path))
    run_projector(["migrate"], env)
    run_projector(["run", "--until-caught-up"], env)
    _check(db_url, mixed, reference)


_QUERY = """query($id: ID!, $asOf: DateTime) { delivery(id: $id, asOf: $asOf) {
  riderId shopId estimatedDeliveryAt lineage { field eventId }
  history(first: 100) { edges { node { eventId eventVersion data } } } } }"""


def test_the_api_shows_versions_and_data_as_received_and_time_travel_upcasts(
        db_url: str, tmp_path: Path) -> None:
    mixed, reference = mixed_stream(seed=81, headers=False)
    path = tmp_path / "mixed.jsonl"
    path.write_bytes(b"".join(v + b"\n" for _, v, _ in mixed))
    env = projector_env(db_url, str(path))
    run_projector(["migrate"], env)
    run_projector(["run", "--until-caught-up"], env)
    bodies = [json.loads(v) for _, v, _ in mixed]
    v2 = next(b for b in bodies if b.get("eventVersion") == 2
              and b["eventType"] == "DeliveryRiderAssigned")
    rows = table_rows(db_url)
    with client_for(settings_for(db_url, path)) as client:
        now = data_of(gql(client, _QUERY, {"id": v2["deliveryId"]}))["delivery"]
        shown = {e["node"]["eventId"]: e["node"] for e in now["history"]["edges"]}
        assert shown[v2["eventId"]]["eventVersion"] == 2
        assert shown[v2["eventId"]]["data"] == v2["data"]  # as received, not upcast
        # time travel right after the v2 assignment reads it through the same pipeline
        then = data_of(gql(client, _QUERY, {"id": v2["deliveryId"],
                                            "asOf": v2["occurrenceDateTime"]}))["delivery"]
    assert now["riderId"] == rows[v2["deliveryId"]]["rider_id"]
    assert then["riderId"] == v2["data"]["rider"]["id"]  # read as rider.id
    for entry in now["lineage"]:
        assert entry["eventId"] in shown  # lineage names events as received
