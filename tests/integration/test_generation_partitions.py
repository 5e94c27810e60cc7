"""Revision 0005: the per-generation tables on PostgreSQL (partitioned by generation).

A populated 0004 read model migrates without losing or changing a row, and back; the
served-generation subquery of the query API prunes to one partition at run time; a
dropped generation leaves no partition behind. SQLite keeps its layout.
"""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from alembic import command
from sqlalchemy import Engine, select, text

from projector.sources.file import FileSource
from projector.store import SqlStore
from projector.store import generations as pg_generations
from schema.db import _alembic_config, make_engine, migrate
from schema.tables import dead_letters, deliveries, delivery_events, generations
from tests.helpers import prepared

pytestmark = pytest.mark.integration

STREAMS = Path(__file__).resolve().parents[1] / "streams"


def _everything(engine: Engine) -> dict[str, list[tuple[Any, ...]]]:
    out = {}
    with engine.connect() as conn:
        for table in (deliveries, delivery_events, dead_letters, generations):
            key = [c for c in table.primary_key.columns]
            out[table.name] = [tuple(r) for r in conn.execute(select(table).order_by(*key))]
    return out


def _kinds(engine: Engine) -> dict[str, str]:
    with engine.connect() as conn:
        rows = conn.execute(text(
            "SELECT relname, relkind FROM pg_class WHERE relname LIKE 'deliver%'"
            " AND relkind IN ('r', 'p')"
        ))
        return {r[0]: r[1] for r in rows}


def _project(engine: Engine, path: Path, topic: str = "events") -> None:
    source = FileSource(str(path))
    store = SqlStore(engine)
    (tp,) = source.partitions()
    source.assign([tp])
    messages = [replace(m, topic=topic) for m in source.poll(100_000, 0)]
    store.apply_batch(1, prepared(messages), {tp._replace(topic=topic): store.claim(1, tp._replace(topic=topic))})


def test_a_populated_0004_read_model_migrates_without_loss_and_back(
    db_url: str, tmp_path: Path
) -> None:
    engine = make_engine(db_url)
    try:
        with engine.begin() as conn:
            command.upgrade(_alembic_config(conn), "0004_dead_letter_bytes")
        _project(engine, STREAMS / "api_malformed.jsonl")
        _project(engine, STREAMS / "api_out_of_order.jsonl", "other")  # generation 1, as a 0004 projector wrote it
        with engine.begin() as conn:  # what a 0004 rebuild with --keep-old leaves behind
            conn.execute(generations.insert().values(
                generation=2, status="retired", purpose="rebuild", created_at=datetime.now(UTC)))
            for table in (deliveries, delivery_events):
                rows = [dict(r._mapping) for r in
                        conn.execute(select(table).where(table.c.generation == 1))]
                conn.execute(table.insert(), [{**r, "generation": 2} for r in rows])
        before = _everything(engine)
        assert before["delivery_events"] and before["dead_letters"]
        migrate(engine)
        assert _everything(engine) == before
        if engine.dialect.name == "postgresql":
            kinds = _kinds(engine)
            assert kinds["deliveries"] == "p" and kinds["delivery_events"] == "p"
            assert kinds["deliveries_g1"] == "r" and kinds["delivery_events_g2"] == "r"
        with engine.begin() as conn:
            command.downgrade(_alembic_config(conn), "0004_dead_letter_bytes")
        assert _everything(engine) == before
        if engine.dialect.name == "postgresql":
            assert _kinds(engine) == {"deliveries": "r", "delivery_events": "r"}
        migrate(engine)
        assert _everything(engine) == before
    finally:
        engine.dispose()


def _plan_nodes(plan: dict[str, Any]) -> list[dict[str, Any]]:
    found = [plan]
    for child in plan.get("Plans", []):
        found.extend(_plan_nodes(child))
    return found


def test_the_served_generation_subquery_prunes_to_one_partition_at_run_time(
    pg_url: str,
) -> None:
    from query_api.reads import ACTIVE

    engine = make_engine(pg_url)
    try:
        migrate(engine)
        new, old = pg_generations.create(engine, purpose="rebuild", from_spec="t", owner="t")
        with engine.begin() as conn:
            for generation in (old, new):
                conn.execute(text(
                    "INSERT INTO delivery_events SELECT :g, 'e-' || i, 'D-' || (i % 50), 'X', 0,"
                    " now(), NULL, '{}', NULL, 't', 0, i, now(), 1 FROM generate_series(1, 500) i"
                ), {"g": generation})
            conn.execute(text("ANALYZE delivery_events"))
        statements = [
            select(delivery_events.c.event_id).where(
                delivery_events.c.generation == ACTIVE, delivery_events.c.delivery_id == "D-7"),
            select(delivery_events.c.event_id).where(delivery_events.c.generation == ACTIVE)
            .order_by(delivery_events.c.occurred_at.desc()).limit(3),
        ]
        for statement in statements:
            sql = str(statement.compile(engine, compile_kwargs={"literal_binds": True}))
            with engine.connect() as conn:
                (plan,) = conn.execute(text("EXPLAIN (ANALYZE, FORMAT JSON) " + sql)).scalar_one()
            scanned = {n["Relation Name"]: n["Actual Loops"] for n in _plan_nodes(plan["Plan"])
                       if n.get("Relation Name", "").startswith("delivery_events")}
            assert scanned == {f"delivery_events_g{old}": 1, f"delivery_events_g{new}": 0}, sql
    finally:
        engine.dispose()


def test_a_dropped_generation_leaves_no_partition(pg_url: str) -> None:
    engine = make_engine(pg_url)
    try:
        migrate(engine)
        new, _ = pg_generations.create(engine, purpose="rebuild", from_spec="t", owner="t")
        assert f"deliveries_g{new}" in _kinds(engine)
        pg_generations.discard(engine, new)
        assert f"deliveries_g{new}" not in _kinds(engine)
        assert f"delivery_events_g{new}" not in _kinds(engine)
    finally:
        engine.dispose()
