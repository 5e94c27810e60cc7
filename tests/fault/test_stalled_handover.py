"""Bounded hand-over: a projector frozen (SIGSTOP) *inside* its write transaction.

Frozen there, it holds its partitions' offset rows locked: before the projector set
its own ``idle_in_transaction_session_timeout`` on its sessions, its successor in the
group waited for the locks until the thaw, however long that was. Now PostgreSQL ends
the frozen session after ``PROJECTOR_IDLE_IN_TRANSACTION_TIMEOUT_MS`` (10 s by
default, the value used here), the locks go with it, and the other projector of the
group, which the broker gave the frozen one's partitions after its session timeout
(6 s), claims them and advances. Thawed, the frozen process finds its session ended
and its batch rolled back: it writes nothing and exits with one line.

Two rounds, two projector processes each (real Kafka, real PostgreSQL); the freeze is
taken only while the frozen one's session is inside a batch's transaction, holding
the offset rows' locks (checked in pg_stat_activity and pg_locks by its
``application_name``). The read model equals the pure fold of
the log at the end.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

import pytest
from sqlalchemy import text

from projector.settings import Settings
from schema.db import make_engine
from tests.fault.support import (
    ProjectorProcess,
    StreamPublisher,
    assert_read_model_equals_fold,
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
ROUNDS = 2
IDLE_TIMEOUT_S = Settings().idle_in_transaction_timeout_ms / 1000
SESSION_TIMEOUT_S = Settings().kafka_session_timeout_ms / 1000
#: The hand-over's bound: the later of the two timeouts (they run at once from the
#: freeze), plus a rebalance and a batch.
BOUND_S = max(IDLE_TIMEOUT_S, SESSION_TIMEOUT_S) + 8.0
STALLED_LINE = "projector: error: this projector stood still inside a database transaction"


def _sessions_holding_offsets(db_url: str, app: str) -> int:
    """Sessions of ``app`` inside a transaction that has written to the offset rows
    (a batch's fence: it holds those rows' locks until it ends)."""
    engine = make_engine(db_url, writer=False)
    try:
        with engine.connect() as conn:
            return int(conn.execute(text(
                "SELECT count(DISTINCT a.pid) FROM pg_stat_activity a JOIN pg_locks l "
                "ON l.pid = a.pid WHERE a.datname = current_database() "
                "AND a.application_name = :app "
                "AND l.relation = 'projection_offsets'::regclass "
                "AND l.mode = 'RowExclusiveLock' AND l.granted"
            ), {"app": app}).scalar_one())
    finally:
        engine.dispose()


def _sessions(db_url: str, app: str) -> int:
    engine = make_engine(db_url, writer=False)
    try:
        with engine.connect() as conn:
            return int(conn.execute(text(
                "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() "
                "AND application_name = :app"), {"app": app}).scalar_one())
    finally:
        engine.dispose()


def _freeze_inside_transaction(db_url: str, proc: ProjectorProcess, app: str) -> float:
    """SIGSTOP ``proc`` at a moment one of its sessions holds its offset rows' locks."""
    for _ in range(400):
        proc.pause()
        frozen_at = time.monotonic()
        time.sleep(0.2)
        if _sessions_holding_offsets(db_url, app):
            return frozen_at
        proc.resume()
        time.sleep(0.01)
    raise AssertionError(f"{app} was never caught inside a transaction")


def test_projector_frozen_inside_its_transaction_loses_its_locks_within_the_bound(
    pg_url: str, kafka_bootstrap: str, topic_factory: Callable[..., str], tmp_path: Path,
) -> None:
    topic = topic_factory(PARTITIONS)
    records = simulated_log(30_000, seed=2020)
    migrate(pg_url)
    group = unique("group")
    publisher = StreamPublisher(kafka_bootstrap, topic, records, seconds=90.0)
    publisher.start()
    every: list[tuple[ProjectorProcess, str]] = []

    def start() -> tuple[ProjectorProcess, str]:
        app = f"projector-{len(every)}"
        env = projector_env(pg_url, kafka_bootstrap, topic, group,
                            PROJECTOR_BATCH_SIZE="200", PGAPPNAME=app)
        proc = ProjectorProcess(env, tmp_path / f"{app}.log")
        every.append((proc, app))
        return proc, app

    figures: list[str] = []
    try:
        frozen, frozen_app = start()
        partner, partner_app = start()
        for n in range(ROUNDS):
            both = {frozen.owner, partner.owner}
            wait_until(lambda b=both: (  # type: ignore[misc]
                set(partition_owners(pg_url).values()) == b
                and len(partition_owners(pg_url)) == PARTITIONS),
                timeout=120, interval=0.2, message="both projectors owning partitions")
            time.sleep(2.0)
            frozen_at = _freeze_inside_transaction(pg_url, frozen, frozen_app)
            before = offsets(pg_url)
            released: float | None = None
            while True:
                now_at = offsets(pg_url)
                owners = partition_owners(pg_url)
                elapsed = time.monotonic() - frozen_at
                if released is None and not _sessions_holding_offsets(pg_url, frozen_app):
                    released = elapsed
                if (set(owners.values()) == {partner.owner}
                        and all(now_at.get(p, 0) > before.get(p, 0) for p in range(PARTITIONS))):
                    took_over = elapsed
                    break
                assert partner.alive(), partner.tail()
                assert elapsed < 3 * BOUND_S, (
                    f"no hand-over {elapsed:.0f} s after the freeze: owners {owners}, "
                    f"offsets {before} -> {now_at}\n{partner.tail()}")
                time.sleep(0.1)
            assert released is not None
            assert took_over <= BOUND_S, f"hand-over took {took_over:.1f} s > {BOUND_S} s"
            thawed_at = time.monotonic()
            frozen.resume()
            code = frozen.proc.wait(60)
            exited = time.monotonic() - thawed_at
            lines = [line for line in frozen.log().splitlines() if line.strip()]
            assert code == 1, f"exit {code}\n{frozen.tail()}"
            assert lines[-1].startswith(STALLED_LINE), frozen.tail()
            assert sum(line.startswith("projector: error:") for line in lines) == 1
            assert _sessions(pg_url, frozen_app) == 0
            figures.append(
                f"round {n + 1}: frozen inside its transaction; its locks released after "
                f"{released:.1f} s, the other projector owned and advanced every partition "
                f"after {took_over:.1f} s (bound {BOUND_S:.0f} s); thawed, it exited with "
                f"status {code} after {exited:.1f} s")
            frozen, frozen_app = partner, partner_app
            partner, partner_app = start()
        publisher.check()
        wait_caught_up(pg_url, end_offsets(kafka_bootstrap, topic), [frozen, partner],
                       timeout=300)
        assert frozen.stop() == 0, frozen.tail()
        assert partner.stop() == 0, partner.tail()
    finally:
        for proc, _ in every:
            proc.stop()
    print(f"injected: SIGSTOP inside the write transaction, {ROUNDS} rounds, "
          f"idle_in_transaction_session_timeout {IDLE_TIMEOUT_S:.0f} s, "
          f"Kafka session timeout {SESSION_TIMEOUT_S:.0f} s")
    for line in figures:
        print("  " + line)
    print(assert_read_model_equals_fold(pg_url, read_log(kafka_bootstrap, topic)).line())
