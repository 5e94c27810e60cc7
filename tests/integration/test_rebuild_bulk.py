"""`projector rebuild` on PostgreSQL: the first round is a bulk load (projector/rebuild/bulk.py).

From a real topic: the rebuilt generation holds what the live run left (rows,
history, dead letters, offsets and counts per partition), its summary counts what
the live run counted, and the old generation's partitions are gone. A rebuild
killed during its bulk load leaves the served generation untouched and a building
one with its offsets at the start and no partitions: ``--resume`` finishes it
through the replay, ``--discard`` drops it.
"""

from __future__ import annotations

import json
import os
import signal
from collections.abc import Callable

import pytest
from sqlalchemy import text

from schema.db import make_engine
from tests.helpers import run_projector, wait_until
from tests.integration._rebuild_support import (
    BAD,
    Stream,
    assert_serves,
    gens,
    offsets,
    simulated,
    start_projector,
)
from tests.integration.test_bulk_load import snapshot

pytestmark = pytest.mark.integration


@pytest.fixture
def stream(pg_url: str, kafka_bootstrap: str, topic_factory: Callable[..., str]) -> Stream:
    s = Stream(kafka_bootstrap, topic_factory(3), pg_url, [])
    run_projector(["migrate"], s.env)
    messages = simulated(400, seed=8)
    s.produce(messages[:700] + [BAD] + messages[690:720] + messages[700:] + [BAD])
    live = run_projector(["run", "--until-caught-up"], s.env)
    assert live.returncode == 0
    assert_serves(s, 1)
    return s


def _partitions(db_url: str) -> set[str]:
    engine = make_engine(db_url, writer=False)
    try:
        with engine.connect() as conn:
            return set(conn.execute(text(
                "SELECT relname FROM pg_class WHERE relname ~ '^deliver(ies|y_events)_g[0-9]+$'"
            )).scalars())
    finally:
        engine.dispose()


def test_a_bulk_rebuild_leaves_what_the_live_run_left(stream: Stream) -> None:
    engine = make_engine(stream.db_url)
    try:
        live = snapshot(engine, 1)
        summary = json.loads(run_projector(["rebuild", "--keep-old", "--json"], stream.env).stdout)
        assert summary["switched"] and summary["generation"] == 2
        assert snapshot(engine, 2) == live
        counted = {o[1]: o[3:5] for o in live["offsets"]}  # partition -> (read, duplicates)
        assert summary["events"] == sum(read for read, _ in counted.values())
        assert summary["duplicates"] == sum(copies for _, copies in counted.values()) >= 30
        assert summary["dead_letters"] == len(live["dead_letters"]) == 2
        assert_serves(stream, 2)
        # Without --keep-old the retired generation's partitions are detached and dropped
        # (1 was kept above).
        run_projector(["rebuild"], stream.env)
        assert _partitions(stream.db_url) == {"deliveries_g1", "delivery_events_g1",
                                              "deliveries_g3", "delivery_events_g3"}
        assert snapshot(engine, 3) == live
    finally:
        engine.dispose()


def _kill_during_the_load(stream: Stream, generation: int) -> None:
    """SIGKILL the rebuild while its backend is inside the bulk load's transaction."""
    proc = start_projector(["rebuild"], stream.env)
    db_url = stream.db_url

    def loading() -> bool:
        if proc.poll() is not None:
            detail = proc.stderr.read() if proc.stderr else ""
            raise AssertionError(f"the rebuild ended first: {detail}")
        engine = make_engine(db_url, writer=False)
        try:
            with engine.connect() as conn:
                return bool(conn.execute(text(
                    "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database()"
                    " AND state = 'active' AND query ~ :part"
                    " AND (query LIKE 'COPY%' OR query LIKE 'CREATE%')"),
                    {"part": f"_g{generation} "}).scalar())
        finally:
            engine.dispose()

    wait_until(loading, timeout=60, interval=0.01, message="the bulk load")
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait(timeout=30)


def test_a_rebuild_killed_in_its_bulk_load_is_resumed_or_discarded(stream: Stream) -> None:
    stream.produce(simulated(3000, seed=9, prefix="more-"))  # a load long enough to catch
    run_projector(["run", "--until-caught-up"], stream.env)
    starts = {p: 0 for p in range(3)}

    _kill_during_the_load(stream, 2)
    assert gens(stream.db_url)[2] == ("building", "rebuild")
    assert offsets(stream.db_url, 2) == starts  # nothing of the load was kept
    assert _partitions(stream.db_url) == {"deliveries_g1", "delivery_events_g1"}
    assert_serves(stream, 1)
    run_projector(["rebuild", "--discard"], stream.env)
    assert gens(stream.db_url)[2] == ("failed", "rebuild")

    _kill_during_the_load(stream, 3)
    assert gens(stream.db_url)[3] == ("building", "rebuild")
    engine = make_engine(stream.db_url)
    try:
        live = snapshot(engine, 1)
        summary = json.loads(run_projector(["rebuild", "--resume", "--json"], stream.env).stdout)
        assert summary["mode"] == "resume" and summary["events"] == len(stream.messages)
        assert_serves(stream, 3)
        assert snapshot(engine, 3) == live
    finally:
        engine.dispose()
