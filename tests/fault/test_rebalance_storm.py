"""Scenario 2, rebalance storm: projector instances in one consumer group going
1 -> 3 -> 2 -> 1 while the stream flows.

Each change of membership is a rebalance: partitions move between processes, and
every process that gains one claims it in the read model, which bumps the
partition's owner epoch. A write by a process that lost the partition meanwhile
(typically its batch in flight) is refused by that epoch; those refusals are
counted from the processes' logs and printed. The final read model must equal the
pure fold of the whole log.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.fault.support import (
    ProjectorProcess,
    StreamPublisher,
    assert_read_model_equals_fold,
    dead_letter_count,
    end_offsets,
    migrate,
    partition_owners,
    projector_env,
    read_log,
    simulated_log,
    wait_caught_up,
)
from tests.helpers import unique, wait_until

pytestmark = [pytest.mark.integration, pytest.mark.fault]

PARTITIONS = 3


def _owners_are(db_url: str, procs: list[ProjectorProcess]) -> bool:
    """Every partition is owned in the read model, and exactly by these processes."""
    owners = partition_owners(db_url)
    return len(owners) == PARTITIONS and set(owners.values()) == {p.owner for p in procs}


def test_rebalance_storm_one_three_two_one_equals_the_fold(
    pg_url: str, kafka_bootstrap: str, topic_factory: Callable[..., str], tmp_path: Path,
    full_size: bool,
) -> None:
    events = 200_000 if full_size else 20_000
    publish_seconds = 120.0 if full_size else 40.0
    hold = 20.0 if full_size else 5.0  # seconds at each size of the group, once settled
    topic = topic_factory(PARTITIONS)
    records = simulated_log(events, seed=202)
    migrate(pg_url)
    # Dynamic members: each one that stops cleanly leaves the group at once.
    env = projector_env(pg_url, kafka_bootstrap, topic, unique("group"),
                        PROJECTOR_BATCH_SIZE="500")
    publisher = StreamPublisher(kafka_bootstrap, topic, records, seconds=publish_seconds)
    publisher.start()
    every: list[ProjectorProcess] = []
    running: list[ProjectorProcess] = []
    sizes: list[str] = []

    def start() -> None:
        proc = ProjectorProcess(env, tmp_path / f"member-{len(every)}.log")
        every.append(proc)
        running.append(proc)

    def settle(label: str) -> float:
        settled = time.monotonic()
        wait_until(lambda: _owners_are(pg_url, running)
                   or not all(p.alive() for p in running),
                   timeout=120, interval=0.1,
                   message=f"{len(running)} members owning the partitions ({label})")
        for proc in running:
            assert proc.alive(), proc.tail()
        seconds = time.monotonic() - settled
        sizes.append(f"{len(running)} ({seconds:.1f} s to settle)")
        time.sleep(hold)
        return seconds

    try:
        start()
        settle("1")
        start()
        start()
        settle("1 -> 3")
        # A clean stop (SIGTERM) leaves the group: the others take its partitions at
        # once, not after its session (KAFKA_SESSION_TIMEOUT_MS, 6 s) has run out.
        assert running[0].stop() == 0, running[0].tail()
        running.pop(0)
        after_leave = [settle("3 -> 2")]
        assert running[0].stop() == 0, running[0].tail()
        running.pop(0)
        after_leave.append(settle("2 -> 1"))
        assert publisher.is_alive() or publisher.published == len(records), (
            "publishing failed" if publisher.error else "")
        streaming_during_storm = publisher.is_alive()
        publisher.check()
        wait_caught_up(pg_url, end_offsets(kafka_bootstrap, topic), running,
                       timeout=900 if full_size else 300)
        assert running[0].stop() == 0, running[0].tail()
    finally:
        for proc in every:
            proc.stop()
    claims = sum(p.log().count("claimed ") for p in every)
    refused = sum(p.refused() for p in every)
    dead = dead_letter_count(pg_url)
    print(f"injected: group of {' -> '.join(sizes)} members, {len(every)} processes, "
          f"while {events} events were published over {publish_seconds:.0f} s "
          f"(still publishing when the storm ended: {streaming_during_storm})")
    print(f"partition claims: {claims}; batches refused by the owner epoch: {refused}; "
          f"dead letters: {dead}")
    verified = assert_read_model_equals_fold(pg_url, read_log(kafka_bootstrap, topic))
    print(verified.line())
    # At least: 3 by the first member, 1 by each newcomer, then the partition of each
    # member that left, by whoever inherits it.
    assert claims >= PARTITIONS + 2 + 1 + 1, "the partitions did not move as the group changed"
    assert max(after_leave) < 5.0, f"partitions waited for a stopped member's session: {sizes}"
