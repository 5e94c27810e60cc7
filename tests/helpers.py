"""Small helpers shared by the tests: bounded waits, event builders, CLI runs."""

from __future__ import annotations

import itertools
import json
import os
import subprocess
import sys
import time
import uuid
from collections import defaultdict
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any, TypeVar

import pytest
from sqlalchemy import create_engine, select, text
from sqlalchemy.engine import make_url

from projector.batch import BatchParser, PreparedBatch
from projector.sources.base import SourceMessage
from schema.db import make_engine
from schema.events import Event, EventParseError, parse_message
from schema.fold import fold
from schema.rows import delivery_to_db
from schema.tables import deliveries, delivery_events, projection_offsets

T = TypeVar("T")
ROOT = Path(__file__).resolve().parent.parent


def wait_until(predicate: Callable[[], T], timeout: float = 30.0, interval: float = 0.1,
               message: str = "condition") -> T:
    """Poll ``predicate`` until it returns something truthy; fail after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {message}")
        time.sleep(interval)


_counter = itertools.count(1)


def make_event(
    event_type: str = "DeliveryCreated",
    delivery_id: str = "D-1",
    at: str = "2026-11-25T10:00:00Z",
    *,
    event_id: str | None = None,
    sequence: int | None = None,
    data: dict[str, Any] | None = None,
    **extra: Any,
) -> dict[str, Any]:
    """One event object as a producer would publish it."""
    if data is None:
        data = {
            "DeliveryCreated": {"orderId": "O-1", "shopId": "S-1"},
            "DeliveryRiderAssigned": {"riderId": "R-1"},
            "DeliveryEtaChanged": {"estimatedDeliveryAt": "2026-11-25T11:00:00Z"},
        }.get(event_type, {})
    body: dict[str, Any] = {
        "eventId": event_id or f"e-{next(_counter):06d}",
        "eventType": event_type,
        "deliveryId": delivery_id,
        "occurrenceDateTime": at,
        "data": data,
    }
    if sequence is not None:
        body["sequence"] = sequence
    body.update(extra)
    return body


def prepared(messages: Sequence[SourceMessage], parser: BatchParser | None = None) -> PreparedBatch:
    """A batch parsed as the projector loop parses it, for a store's ``apply_batch``."""
    return (parser or BatchParser())(messages)


def encode(obj: dict[str, Any]) -> bytes:
    return json.dumps(obj, ensure_ascii=False).encode("utf-8")


def write_jsonl(path: Path, items: Iterable[dict[str, Any] | bytes]) -> Path:
    with open(path, "wb") as fh:
        for item in items:
            fh.write((item if isinstance(item, bytes) else encode(item)) + b"\n")
    return path


def expected_rows(values: Iterable[bytes], keys: Sequence[bytes | None] | None = None,
                  generation: int = 1) -> dict[str, dict[str, Any]]:
    """The current rows a correct projection must hold: the pure fold of every valid event."""
    by_delivery: dict[str, list[Event]] = defaultdict(list)
    for i, value in enumerate(values):
        key = keys[i] if keys is not None else None
        try:
            event = parse_message(value, key)
        except EventParseError:
            continue
        by_delivery[event.delivery_id].append(event)
    out = {}
    for delivery_id, events in by_delivery.items():
        row = fold(events)
        assert row is not None
        out[delivery_id] = delivery_to_db(generation, row)
    return out


def table_rows(db_url: str, generation: int | None = None) -> dict[str, dict[str, Any]]:
    """The current rows in the read model, keyed by delivery id."""
    engine = make_engine(db_url, writer=False)
    try:
        with engine.connect() as conn:
            query = select(deliveries)
            if generation is not None:
                query = query.where(deliveries.c.generation == generation)
            return {r.delivery_id: dict(r._mapping) for r in conn.execute(query)}
    finally:
        engine.dispose()


def stored_offsets(db_url: str, generation: int | None = None) -> dict[tuple[str, int], int]:
    """Where the read model reads next: (topic, partition) -> next offset."""
    engine = make_engine(db_url, writer=False)
    try:
        with engine.connect() as conn:
            query = select(projection_offsets)
            if generation is not None:
                query = query.where(projection_offsets.c.generation == generation)
            return {(r.topic, r.partition): int(r.next_offset) for r in conn.execute(query)}
    finally:
        engine.dispose()


def create_pg_database() -> tuple[str, Callable[[], None]]:
    """A fresh, empty PostgreSQL database owned by the test user; returns (url, drop)."""
    base = os.environ.get("TEST_DATABASE_URL")
    if not base:
        pytest.fail(
            "TEST_DATABASE_URL is not set: run the tests with scripts/test, which starts "
            "Kafka and PostgreSQL (scripts/services up)",
            pytrace=False,
        )
    admin_url = os.environ.get("TEST_DATABASE_ADMIN_URL") or base
    name = unique("t").replace("-", "_")
    owner = make_url(base).username
    admin = create_engine(admin_url, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}"' + (f' OWNER "{owner}"' if owner else "")))

    def drop() -> None:
        with admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()

    return make_url(base).set(database=name).render_as_string(hide_password=False), drop


def history_ids(db_url: str) -> list[str]:
    engine = make_engine(db_url, writer=False)
    try:
        with engine.connect() as conn:
            return sorted(conn.execute(select(delivery_events.c.event_id)).scalars())
    finally:
        engine.dispose()


def projector_env(db_url: str, source: str = "kafka", **extra: str) -> dict[str, str]:
    env = dict(os.environ)
    env.update({"DATABASE_URL": db_url, "EVENT_SOURCE": source, "PYTHONUNBUFFERED": "1"})
    env.update(extra)
    return env


def run_projector(args: Sequence[str], env: dict[str, str], timeout: float = 300,
                  check: bool = True) -> subprocess.CompletedProcess[str]:
    """Run the `projector` command in a subprocess, as an operator would."""
    proc = subprocess.run(
        [sys.executable, "-m", "projector.cli", *args],
        env=env, capture_output=True, text=True, timeout=timeout, cwd=ROOT,
    )
    if check and proc.returncode != 0:
        raise AssertionError(
            f"projector {' '.join(args)} exited {proc.returncode}\n{proc.stderr[-4000:]}"
        )
    return proc


def unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:10]}"
