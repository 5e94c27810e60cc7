"""Scenario 3, zombie: a projector frozen (SIGSTOP) until its partitions are
reassigned, another one advancing meanwhile, then the first thawed (SIGCONT).

The thawed process still holds its claims and, typically, a batch polled or
prepared before it froze. Its write is refused by the partition's owner epoch (the
successor's claim bumped it), and no row goes back: from the moment the successor
has advanced, no partition's offset, no delivery's event count and no history
count ever decreases. The final read model equals the pure fold of the whole log.

The freeze is taken when the process has no database transaction open (checked in
pg_stat_activity; otherwise it is thawed and frozen again a moment later): frozen
inside one, it would hold its partitions' offset rows locked and the successor
could not claim them until the thaw (the fencing would still hold, but nothing
would advance meanwhile).
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable
from pathlib import Path

import pytest
from sqlalchemy import func, select, text

from schema.db import make_engine
from schema.tables import deliveries, delivery_events
from tests.fault.support import (
    ProjectorProcess,
    StreamPublisher,
    assert_read_model_equals_fold,
    dead_letter_count,
    end_offsets,
    migrate,
    offsets,
    partition_owners,
    projector_env,
    read_log,
    simulated_log,
    wait_caught_up,
)
from tests.helpers import unique, wait_until

pytestmark = [pytest.mark.integration, pytest.mark.fault]

PARTITIONS = 3
#: Rounds of freeze / take over / thaw at most; the scenario stops after the first
#: round whose zombie had a write refused.
MAX_ROUNDS = 4
WATCH_SECONDS = 10.0


def _transactions_open(db_url: str) -> int:
    """Sessions of other processes on this database inside a transaction or a statement."""
    engine = make_engine(db_url, writer=False)
    try:
        with engine.connect() as conn:
            return int(conn.execute(text(
                "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() "
                "AND pid <> pg_backend_pid() AND state IN "
                "('active', 'idle in transaction', 'idle in transaction (aborted)')"
            )).scalar_one())
    finally:
        engine.dispose()


def _snapshot(db_url: str) -> tuple[dict[int, int], dict[str, int], int]:
    """Offsets by partition, event count by delivery, and the history's size."""
    engine = make_engine(db_url, writer=False)
    try:
        with engine.connect() as conn:
            counts = {r.delivery_id: int(r.event_count) for r in conn.execute(
                select(deliveries.c.delivery_id, deliveries.c.event_count))}
            history = int(conn.execute(
                select(func.count()).select_from(delivery_events)).scalar_one())
    finally:
        engine.dispose()
    return offsets(db_url), counts, history


def _owned_by(db_url: str, proc: ProjectorProcess) -> bool:
    owners = partition_owners(db_url)
    return len(owners) == PARTITIONS and set(owners.values()) == {proc.owner}


def test_zombie_thawed_after_reassignment_is_refused_and_no_row_goes_back(
    pg_url: str, kafka_bootstrap: str, topic_factory: Callable[..., str], tmp_path: Path,
    full_size: bool,
) -> None:
    events = 200_000 if full_size else 20_000
    publish_seconds = 150.0 if full_size else 60.0
    rng = random.Random(303)
    topic = topic_factory(PARTITIONS)
    records = simulated_log(events, seed=303)
    migrate(pg_url)
    env = projector_env(pg_url, kafka_bootstrap, topic, unique("group"),
                        PROJECTOR_BATCH_SIZE="500")
    publisher = StreamPublisher(kafka_bootstrap, topic, records, seconds=publish_seconds)
    publisher.start()
    every: list[ProjectorProcess] = []

    def start() -> ProjectorProcess:
        proc = ProjectorProcess(env, tmp_path / f"projector-{len(every)}.log")
        every.append(proc)
        return proc

    rounds: list[str] = []
    refused_rounds = 0
    checks = 0
    try:
        current = start()
        wait_until(lambda: _owned_by(pg_url, current) or not current.alive(), timeout=120,
                   message="the first projector owning every partition")
        for n in range(MAX_ROUNDS):
            time.sleep(rng.uniform(1.0, 3.0))
            refreezes = 0
            while True:  # freeze outside a transaction (see the module's docstring)
                current.pause()
                time.sleep(0.3)
                if not _transactions_open(pg_url):
                    break
                current.resume()
                refreezes += 1
                assert refreezes < 50, "the projector was always inside a transaction"
                time.sleep(rng.uniform(0.05, 0.3))
            zombie, frozen_at = current, time.monotonic()
            successor = start()
            taken = offsets(pg_url)
            wait_until(lambda s=successor, t=taken: (  # type: ignore[misc]
                _owned_by(pg_url, s) and any(v > t.get(p, 0) for p, v in offsets(pg_url).items())
            ) or not s.alive(), timeout=120, interval=0.1,
                message="the successor owning every partition and advancing")
            assert successor.alive(), successor.tail()
            took_over = time.monotonic() - frozen_at
            before = _snapshot(pg_url)
            zombie.resume()
            watch_end = time.monotonic() + WATCH_SECONDS
            while time.monotonic() < watch_end:
                now = _snapshot(pg_url)
                back = [p for p, o in before[0].items() if now[0].get(p, 0) < o]
                assert not back, f"offsets went back on partitions {back}: {before[0]} -> {now[0]}"
                rows_back = [d for d, c in before[1].items() if now[1].get(d, 0) < c]
                assert not rows_back, f"rows went back: {rows_back[:5]}"
                assert now[2] >= before[2], f"history shrank: {before[2]} -> {now[2]}"
                checks += 1
                before = now
                time.sleep(0.25)
            refused = zombie.refused()
            assert zombie.stop() == 0, zombie.tail()
            rounds.append(f"round {n + 1}: frozen (after {refreezes} re-freezes), successor "
                          f"took over in {took_over:.1f} s, thawed zombie had {refused} "
                          "write(s) refused")
            current = successor
            if refused:
                refused_rounds += 1
                break
        wait_until(lambda: _owned_by(pg_url, current) or not current.alive(), timeout=120,
                   message="the successor owning every partition after the zombie left")
        publisher.check()
        wait_caught_up(pg_url, end_offsets(kafka_bootstrap, topic), [current],
                       timeout=900 if full_size else 300)
        assert current.stop() == 0, current.tail()
    finally:
        for proc in every:
            proc.stop()
    dead = dead_letter_count(pg_url)
    print(f"injected: SIGSTOP / reassignment / SIGCONT, {len(rounds)} round(s), while "
          f"{events} events were published over {publish_seconds:.0f} s")
    for line in rounds:
        print("  " + line)
    print(f"checked {checks} times after each take-over: no offset, row or history went back; "
          f"writes refused by the owner epoch: {sum(p.refused() for p in every)}; "
          f"dead letters: {dead}")
    verified = assert_read_model_equals_fold(pg_url, read_log(kafka_bootstrap, topic))
    print(verified.line())
    assert refused_rounds == 1, f"no thawed zombie attempted a stale write: {rounds}"
