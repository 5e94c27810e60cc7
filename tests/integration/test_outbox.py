"""`projector simulate --to-outbox URL`: the delivery core's side of the relay, on a real
PostgreSQL (Debezium itself: tests/e2e/test_debezium_relay.py)."""

from __future__ import annotations

import json

import pytest
from sqlalchemy import create_engine, text

from producer.simulate import SimulationConfig, encode, simulate
from schema.events import parse_message
from schema.fold import fold
from tests.helpers import projector_env, run_projector

pytestmark = pytest.mark.integration


def _distinct(deliveries: int, seed: int) -> list[dict]:
    seen: set[str] = set()
    out = []
    for event in simulate(SimulationConfig(deliveries=deliveries, seed=seed)):
        if event["eventId"] not in seen:
            seen.add(event["eventId"])
            out.append(event)
    return out


@pytest.mark.parametrize("payload", ["jsonb", "text"])
def test_each_event_is_an_outbox_row_beside_the_cores_state(pg_url: str, payload: str) -> None:
    proc = run_projector(["simulate", "--deliveries", "40", "--seed", "3", "--to-outbox", pg_url,
                          "--outbox-payload", payload], projector_env(pg_url))
    events = _distinct(40, 3)
    assert f"wrote {len(events)} events of 40 deliveries to the outbox" in proc.stdout
    engine = create_engine(pg_url)
    try:
        with engine.connect() as conn:
            column = conn.execute(text(
                "SELECT data_type FROM information_schema.columns "
                "WHERE table_name = 'outbox' AND column_name = 'payload'")).scalar_one()
            rows = conn.execute(text(
                "SELECT id::text, aggregatetype, aggregateid, type, payload::text FROM outbox"
            )).all()
            core = dict(conn.execute(text(
                "SELECT delivery_id, state FROM deliveries_core")).all())
    finally:
        engine.dispose()
    assert column == payload
    by_id = {e["eventId"]: e for e in events}
    assert len(rows) == len(events)
    for row_id, aggregate_type, aggregate_id, event_type, body in rows:
        event = by_id[row_id]  # the simulator's ids are UUIDs: the outbox id is the event id
        assert (aggregate_type, aggregate_id, event_type) == (
            "Delivery", event["deliveryId"], event["eventType"])
        assert json.loads(body) == event
    # the core's state of each delivery is the fold of its events
    by_delivery: dict[str, list] = {}
    for e in events:
        by_delivery.setdefault(e["deliveryId"], []).append(parse_message(encode(e)))
    expected = {}
    for delivery_id, delivery_events in by_delivery.items():
        row = fold(delivery_events)
        assert row is not None
        expected[delivery_id] = row.state.value
    assert core == expected


def test_rows_deleted_in_their_own_transaction_leave_the_outbox_empty(pg_url: str) -> None:
    env = projector_env(pg_url)
    run_projector(["simulate", "--deliveries", "10", "--to-outbox", pg_url, "--outbox-delete"],
                  env)
    # the same stream again: the outbox is empty, so the same ids can be written again
    again = run_projector(["simulate", "--deliveries", "10", "--to-outbox", pg_url,
                           "--outbox-delete"], env)
    assert "rows deleted in the same transaction" in again.stdout
    engine = create_engine(pg_url)
    try:
        with engine.connect() as conn:
            assert conn.execute(text("SELECT count(*) FROM outbox")).scalar_one() == 0
            assert conn.execute(text("SELECT count(*) FROM deliveries_core")).scalar_one() == 10
    finally:
        engine.dispose()


def test_the_outbox_needs_postgresql() -> None:
    proc = run_projector(["simulate", "--to-outbox", "sqlite:///nowhere.db"],
                         projector_env("sqlite:///unused.db"), check=False)
    assert proc.returncode == 1
    assert proc.stderr.strip().splitlines() == [
        "projector: error: --to-outbox needs a PostgreSQL URL (the outbox is relayed by "
        "Debezium from PostgreSQL's logical log)"]
