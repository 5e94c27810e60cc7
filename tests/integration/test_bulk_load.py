"""The bulk load (projector/store/bulk.py) against the live path, on PostgreSQL.

The same stream projected by the live path into generation 1 and bulk-loaded into
generation 2 must leave the same current rows, the same history (which copy of a
duplicate was kept included), the same dead letters, and the same offsets and
counts per partition, on every fixed stream and on a simulated one with late
events, duplicates, versions and bad messages.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Engine, select

from producer.simulate import SimulationConfig, encode, simulate
from projector.loop import Mode, Projector
from projector.sources.file import FileSource
from projector.store import SqlStore
from projector.store import generations as lifecycle
from projector.store.bulk import FOLD_CACHE, BulkLoad
from schema.db import make_engine, migrate
from schema.tables import dead_letters, deliveries, delivery_events, projection_offsets

pytestmark = pytest.mark.integration

STREAMS = sorted((Path(__file__).resolve().parents[1] / "streams").glob("*.jsonl"))


def _simulated(path: Path) -> Path:
    config = SimulationConfig(deliveries=300, seed=11, late_ratio=0.1, duplicate_ratio=0.1,
                              versions=((2, 0.3), (3, 0.05)))
    values = [encode(e) for e in simulate(config)]
    for at, bad in ((5, b"{not json"), (50, b'{"eventId": "x"}'), (400, values[399])):
        values.insert(at, bad)  # not JSON, not an event, a copy of the message before
    path.write_bytes(b"\n".join(values) + b"\n")
    return path


def snapshot(engine: Engine, generation: int) -> dict[str, Any]:
    """A generation's content, without what differs by construction (generation, stamps)."""
    with engine.connect() as conn:
        rows = sorted(
            tuple(v for k, v in r._mapping.items() if k != "generation")
            for r in conn.execute(select(deliveries).where(deliveries.c.generation == generation))
        )
        history = sorted(
            tuple(v for k, v in r._mapping.items() if k not in ("generation", "applied_at"))
            for r in conn.execute(
                select(delivery_events).where(delivery_events.c.generation == generation))
        )
        letters = sorted(
            (r.topic, r.partition, r.offset, r.key, r.value, str(r.headers), r.error_code,
             r.reason, r.status)
            for r in conn.execute(
                select(dead_letters).where(dead_letters.c.generation == generation))
        )
        o = projection_offsets.c
        offsets = sorted(
            tuple(r) for r in conn.execute(
                select(o.topic, o.partition, o.next_offset, o.messages_read, o.duplicates,
                       o.counted_to).where(o.generation == generation))
        )
    return {"rows": rows, "history": history, "dead_letters": letters, "offsets": offsets}


def _live(engine: Engine, path: Path) -> Any:
    source = FileSource(str(path))
    source.assign(source.partitions())
    projector = Projector(source, SqlStore(engine), Mode.live(), batch_size=7)
    return projector.run(until_caught_up=True)


@pytest.mark.parametrize("cache", [FOLD_CACHE, 2], ids=["cache", "tiny-cache"])
@pytest.mark.parametrize("stream", [*STREAMS, "simulated"],
                         ids=lambda s: s if isinstance(s, str) else s.stem)
def test_a_bulk_load_leaves_what_the_live_path_leaves(
    pg_url: str, tmp_path: Path, stream: Path | str, cache: int
) -> None:
    """``tiny-cache``: two deliveries held, so nearly every delivery leaves the stream
    fold and comes back, and is refolded from the history."""
    path = _simulated(tmp_path / "sim.jsonl") if stream == "simulated" else stream
    assert isinstance(path, Path)
    engine = make_engine(pg_url)
    try:
        migrate(engine)
        totals = _live(engine, path)
        new, old = lifecycle.create(
            engine, purpose="rebuild", from_spec="earliest", owner="test", partitions=False
        )
        source = FileSource(str(path))
        partitions = source.partitions()
        source.assign(partitions)
        starts = source.beginning_offsets(partitions)
        SqlStore(engine).set_offsets(new, starts)
        result = BulkLoad(engine, cache=cache).load(
            new, source, starts, source.end_offsets(partitions))
        live = snapshot(engine, old)
        assert snapshot(engine, new) == live
        assert live["rows"] and live["history"]
        if stream == "simulated":
            assert totals.duplicates > 10 and totals.dead_letters == 2
            assert result.refolded > (100 if cache == 2 else 5)  # late events, copies
        assert (result.messages, result.applied, result.duplicates, result.dead_letters) == (
            totals.messages, totals.applied, totals.duplicates, totals.dead_letters)
    finally:
        engine.dispose()
