"""`projector rebuild` / `verify` against a real broker, on SQLite and PostgreSQL."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime

import pytest
from sqlalchemy import delete, select, update

from schema.db import make_engine
from schema.tables import deliveries, delivery_events, generations
from tests.helpers import run_projector, table_rows, wait_until
from tests.integration._rebuild_support import (
    BAD,
    Stream,
    active,
    assert_serves,
    gens,
    kill_when_building,
    offsets,
    row_counts_by_generation,
    simulated,
    start_projector,
    without_generation,
)

pytestmark = pytest.mark.integration


@pytest.fixture
def stream(migrated_url: str, kafka_bootstrap: str, topic_factory: Callable[..., str]) -> Stream:
    """60 simulated deliveries and one bad message on a fresh 3-partition topic, projected."""
    s = Stream(kafka_bootstrap, topic_factory(3), migrated_url, [])
    s.produce(simulated(60, seed=4) + [BAD])
    run_projector(["run", "--until-caught-up"], s.env)
    assert_serves(s, 1)
    return s


def test_rebuild_from_earliest_switches_while_the_live_side_keeps_serving(stream: Stream) -> None:
    live = start_projector(["run"], stream.env)
    errors: list[BaseException] = []
    seen_counts: list[int] = []
    stop = threading.Event()
    total = len(stream.expected(1))

    def query_active() -> None:
        engine = make_engine(stream.db_url, writer=False)
        try:
            while not stop.is_set():
                with engine.connect() as conn:
                    g = conn.execute(select(generations.c.generation)
                                     .where(generations.c.status == "active")).scalar_one()
                    rows = conn.execute(
                        select(deliveries).where(deliveries.c.generation == g)).all()
                    seen_counts.append(len(rows))
                    assert len(rows) >= total, f"generation {g} served only {len(rows)} rows"
        except BaseException as exc:  # noqa: BLE001 - reported by the test below
            errors.append(exc)
        finally:
            engine.dispose()

    reader = threading.Thread(target=query_active)
    reader.start()
    try:
        before = table_rows(stream.db_url, 1)
        proc = run_projector(["rebuild", "--from-offset", "earliest", "--json",
                              "--batch-size", "20"], stream.env)
        summary = json.loads(proc.stdout)
        assert summary["generation"] == 2 and summary["previous_generation"] == 1
        assert summary["switched"] is True
        assert summary["events"] == len(stream.messages)
        assert summary["dead_letters"] == 1
        assert summary["events_per_second"] > 0
        # One atomic switch; the new generation equals the old one table for table.
        assert gens(stream.db_url) == {1: ("retired", "live"), 2: ("active", "rebuild")}
        assert without_generation(table_rows(stream.db_url, 2)) == without_generation(before)
        assert_serves(stream, 2)
        assert set(row_counts_by_generation(stream.db_url)) == {2}  # old rows deleted
        # The live projector moved over to generation 2 by itself and keeps projecting.
        stream.produce(simulated(5, seed=9, prefix="late-"))
        wait_until(lambda: table_rows(stream.db_url, 2) == stream.expected(2), timeout=60,
                   message="the live projector to project into generation 2")
        status = json.loads(run_projector(["status", "--json"], stream.env).stdout)
        assert status["generation"] == 2 and status["deadLetters"] == 1
    finally:
        stop.set()
        reader.join(timeout=30)
        live.terminate()
        live.wait(timeout=30)
    assert not errors, errors
    assert seen_counts, "the reader never ran"


def test_every_spec_form_against_the_broker(stream: Stream) -> None:
    # A second batch, produced after a gap: Kafka stamps records with the send time.
    first_done = time.time() * 1000
    wait_until(lambda: time.time() * 1000 > first_done + 1500, timeout=5, interval=0.05,
               message="a gap in record time")
    cut = datetime.fromtimestamp((first_done + 750) / 1000, tz=UTC)
    second = simulated(8, seed=11, prefix="B-")
    stream.produce(second)
    run_projector(["run", "--until-caught-up"], stream.env)

    at = run_projector(["rebuild", "--from-offset", "@" + cut.isoformat(), "--json"], stream.env)
    g = json.loads(at.stdout)["generation"]
    assert g == 2 and active(stream.db_url) == 2
    assert set(table_rows(stream.db_url, g)) == {k.decode() for k, _ in second}
    assert json.loads(at.stdout)["events"] == len(second)

    run_projector(["rebuild", "--from-offset", "0:3", "--keep-old"], stream.env)
    assert active(stream.db_url) == 3
    assert _first_offsets(stream.db_url, 3) == {0: 3, 1: 0, 2: 0}
    assert 2 in row_counts_by_generation(stream.db_url)  # --keep-old

    run_projector(["rebuild", "--from-offset", "2"], stream.env)
    assert _first_offsets(stream.db_url, 4) == {0: 2, 1: 2, 2: 2}

    run_projector(["rebuild"], stream.env)  # earliest, the default
    assert_serves(stream, 5)
    assert set(row_counts_by_generation(stream.db_url)) == {2, 5}


def _first_offsets(db_url: str, generation: int) -> dict[int, int]:
    engine = make_engine(db_url, writer=False)
    with engine.connect() as conn:
        rows = conn.execute(select(delivery_events.c.partition, delivery_events.c.offset)
                            .where(delivery_events.c.generation == generation)).all()
    engine.dispose()
    out: dict[int, int] = {}
    for p, o in rows:
        out[p] = min(o, out.get(p, o))
    return out


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ("bogus", "'bogus' is not a SPEC"),
        ("0:x", "is not PARTITION:OFFSET"),
        ("0:1,0:2", "partition 0 is named twice"),
        ("@notatime", "is not an ISO-8601 time"),
        ("9:1", "partition 9 does not exist"),
        ("999999", "offset 999999 is beyond the end of partition 0"),
    ],
)
def test_bad_specs_fail_with_one_clear_line(stream: Stream, spec: str, message: str) -> None:
    for command in (["rebuild"], ["verify"]):
        proc = run_projector([*command, "--from-offset", spec], stream.env, check=False)
        assert proc.returncode != 0
        lines = proc.stderr.strip().splitlines()
        errors = [line for line in lines if line.startswith("projector: error:")]
        # One error line, last; a client library's own warning may come before it.
        assert len(errors) == 1 and lines[-1] == errors[0], proc.stderr
        assert "Traceback" not in proc.stderr
        assert message in errors[0]
    assert gens(stream.db_url) == {1: ("active", "live")}


def test_killed_rebuild_leaves_live_serving_then_discard_and_resume(stream: Stream) -> None:
    stream.produce(simulated(500, seed=5, prefix="bulk-"))  # enough to be caught midway
    run_projector(["run", "--until-caught-up"], stream.env)
    slow = ["rebuild", "--batch-size", "1", "--batch-max-wait-ms", "10"]
    replay = {**stream.env, "PROJECTOR_REBUILD_BULK": "0"}  # killed midway through a replay
    first = start_projector(slow, replay)
    wait_until(lambda: 2 in gens(stream.db_url), timeout=60, message="generation 2")
    # One rebuild at a time: a second is refused, naming the running one.
    second = run_projector(["rebuild"], stream.env, check=False)
    assert second.returncode == 1
    assert "another rebuild is running: rebuild of generation 2" in second.stderr
    kill_when_building(first, stream.db_url, 2)

    assert gens(stream.db_url)[2] == ("building", "rebuild")
    assert_serves(stream, 1)  # untouched, still active
    refused = run_projector(["rebuild"], stream.env, check=False)
    assert refused.returncode == 1
    assert "--resume" in refused.stderr and "interrupted" in refused.stderr

    run_projector(["rebuild", "--discard"], stream.env)
    assert gens(stream.db_url)[2] == ("failed", "rebuild")
    assert set(row_counts_by_generation(stream.db_url)) == {1}
    assert not offsets(stream.db_url, 2)
    nothing = run_projector(["rebuild", "--resume"], stream.env, check=False)
    assert nothing.returncode == 1 and "no interrupted rebuild" in nothing.stderr

    again = start_projector(slow, replay)
    kill_when_building(again, stream.db_url, 3)
    assert_serves(stream, 1)
    partial = sum(offsets(stream.db_url, 3).values())
    resumed = run_projector(["rebuild", "--resume", "--json"], stream.env)
    summary = json.loads(resumed.stdout)
    assert summary["mode"] == "resume" and summary["generation"] == 3
    assert summary["events"] == len(stream.messages) - partial  # continued, not restarted
    assert_serves(stream, 3)
    assert gens(stream.db_url) == {1: ("retired", "live"), 2: ("failed", "rebuild"),
                                   3: ("active", "rebuild")}


def test_in_place_restores_deleted_rows(stream: Stream) -> None:
    engine = make_engine(stream.db_url)
    ids = sorted(table_rows(stream.db_url, 1))
    lost_rows, lost_both = ids[:5], ids[5:8]
    with engine.begin() as conn:
        conn.execute(delete(deliveries).where(deliveries.c.delivery_id.in_(lost_rows + lost_both)))
        conn.execute(delete(delivery_events).where(delivery_events.c.delivery_id.in_(lost_both)))
        # A row whose history lost one event: re-inserting it must not count it twice.
        victim = ids[9]
        one = conn.execute(select(delivery_events.c.event_id)
                           .where(delivery_events.c.delivery_id == victim).limit(1)).scalar_one()
        conn.execute(delete(delivery_events).where(delivery_events.c.event_id == one))
    engine.dispose()
    assert table_rows(stream.db_url, 1) != stream.expected(1)

    live = start_projector(["run"], stream.env)  # owns the same partitions meanwhile
    try:
        proc = run_projector(["rebuild", "--in-place", "--json"], stream.env)
    finally:
        live.terminate()
        live.wait(timeout=30)
    summary = json.loads(proc.stdout)
    assert summary["mode"] == "in-place" and summary["generation"] == 1
    assert_serves(stream, 1)
    assert gens(stream.db_url) == {1: ("active", "live")}


def test_verify_passes_on_a_clean_model_and_finds_a_planted_difference(stream: Stream) -> None:
    clean = run_projector(["verify", "--json"], stream.env)
    assert json.loads(clean.stdout)["differences"] == 0
    assert gens(stream.db_url) == {1: ("active", "live")}  # scratch gone
    assert set(row_counts_by_generation(stream.db_url)) == {1}

    victim = sorted(table_rows(stream.db_url, 1))[3]
    engine = make_engine(stream.db_url)
    with engine.begin() as conn:
        conn.execute(update(deliveries).where(deliveries.c.delivery_id == victim)
                     .values(rider_id="R-planted"))
    engine.dispose()
    dirty = run_projector(["verify", "--limit", "5"], stream.env, check=False)
    assert dirty.returncode == 1
    assert f"delivery {victim}: rider_id live='R-planted'" in dirty.stdout
    assert "differences: 1" in dirty.stdout
    assert gens(stream.db_url) == {1: ("active", "live")}
    assert set(row_counts_by_generation(stream.db_url)) == {1}
