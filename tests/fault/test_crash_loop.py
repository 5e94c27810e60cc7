"""Scenario 1, crash loop, and the hand-over after a crash (issue #9, hole 6).

Kafka (3 partitions) -> `projector run` -> PostgreSQL, all real. The stream is
published while the projector is SIGKILLed at random moments and restarted each
time; the final read model must equal the pure fold of the whole log. The
hand-over after each restart (from the new process's start until it owns every
partition in the read model and has applied its first batch) is measured and
printed.
"""

from __future__ import annotations

import random
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
    hand_over_seconds,
    hand_over_times,
    migrate,
    offsets,
    partition_owners,
    projector_env,
    read_log,
    seconds_summary,
    simulated_log,
    wait_caught_up,
)
from tests.helpers import unique, wait_until

pytestmark = [pytest.mark.integration, pytest.mark.fault]

PARTITIONS = 3


def _owns_all(db_url: str, proc: ProjectorProcess) -> bool:
    owners = partition_owners(db_url)
    return len(owners) == PARTITIONS and set(owners.values()) == {proc.owner}


def test_hand_over_after_sigkill_takes_no_session_timeout_for_a_static_member(
    pg_url: str, kafka_bootstrap: str, topic_factory: Callable[..., str], tmp_path: Path
) -> None:
    """A projector SIGKILLed and started again at once: how long until the new
    process owns every partition and applies a batch, per membership setting.

    Before issue #9 every member was dynamic with a 10 s session: the restarted
    process waited for the dead member's session to time out. A static member
    (KAFKA_GROUP_INSTANCE_ID) replaces its dead self at once.
    """
    topic = topic_factory(PARTITIONS)
    records = simulated_log(36_000, seed=61)
    migrate(pg_url)
    publisher = StreamPublisher(kafka_bootstrap, topic, records, seconds=50)
    publisher.start()
    setups = {
        "dynamic member, 10 s session (before)": {"KAFKA_SESSION_TIMEOUT_MS": "10000"},
        "dynamic member, 6 s session (new default)": {},
        "static member (KAFKA_GROUP_INSTANCE_ID)": {"KAFKA_GROUP_INSTANCE_ID": "handover-1"},
    }
    measured: dict[str, float] = {}
    procs: list[ProjectorProcess] = []
    try:
        for n, (name, extra) in enumerate(setups.items()):
            env = projector_env(pg_url, kafka_bootstrap, topic, unique("group"),
                                PROJECTOR_BATCH_SIZE="200", **extra)
            first = ProjectorProcess(env, tmp_path / f"handover-{n}-first.log")
            procs.append(first)
            fresh = hand_over_times(pg_url, first, PARTITIONS, offsets(pg_url))
            print(f"{name}: a first start, with no member to replace, owned every partition "
                  f"after {fresh[0]:.1f} s and applied a batch after {fresh[1]:.1f} s")
            time.sleep(2.0)  # a few heartbeats: a settled member, as in production
            first.kill()
            before = offsets(pg_url)
            second = ProjectorProcess(env, tmp_path / f"handover-{n}-second.log")
            procs.append(second)
            measured[name] = hand_over_seconds(pg_url, second, PARTITIONS, before)
            print(f"hand-over after SIGKILL, {name}: {measured[name]:.1f} s")
            second.stop()
        publisher.check()
        final = ProjectorProcess(projector_env(pg_url, kafka_bootstrap, topic, unique("group")),
                                 tmp_path / "final.log")
        procs.append(final)
        wait_caught_up(pg_url, end_offsets(kafka_bootstrap, topic), [final], timeout=300)
        assert final.stop() == 0, final.tail()
    finally:
        for proc in procs:
            proc.stop()
    verified = assert_read_model_equals_fold(pg_url, read_log(kafka_bootstrap, topic))
    print(verified.line())

    static = measured["static member (KAFKA_GROUP_INSTANCE_ID)"]
    # Below the shortest session the broker accepts (group.min.session.timeout.ms,
    # 6 s by default): the new process did not wait for the old one's session.
    assert static < 6.0, f"a static member's hand-over took {static:.1f} s: {measured}"
    assert static < min(v for k, v in measured.items() if "dynamic" in k), measured


def test_crash_loop_sigkill_at_random_moments_equals_the_fold(
    pg_url: str, kafka_bootstrap: str, topic_factory: Callable[..., str], tmp_path: Path,
    full_size: bool,
) -> None:
    events, kills = (200_000, 20) if full_size else (20_000, 5)
    # The stream outlasts the kills (each cycle takes a few seconds).
    publish_seconds = 150.0 if full_size else 40.0
    rng = random.Random(9001)
    topic = topic_factory(PARTITIONS)
    records = simulated_log(events, seed=91)
    migrate(pg_url)
    # A static member, as recommended for a single projector: each restart takes the
    # partitions back at once (see the hand-over test above).
    env = projector_env(pg_url, kafka_bootstrap, topic, unique("group"),
                        KAFKA_GROUP_INSTANCE_ID="crash-loop")
    publisher = StreamPublisher(kafka_bootstrap, topic, records, seconds=publish_seconds)
    publisher.start()
    procs: list[ProjectorProcess] = []
    hand_overs: list[float] = []
    owned: list[float] = []
    early = 0  # kills before the process had taken over (during start-up or hand-over)
    started = time.monotonic()
    try:
        for n in range(kills):
            proc = ProjectorProcess(env, tmp_path / f"run-{n}.log")
            procs.append(proc)
            if rng.random() < 0.25:
                time.sleep(rng.uniform(0.2, 2.0))  # wherever it is: importing, joining, claiming
                early += 1
            else:
                took = hand_over_times(pg_url, proc, PARTITIONS, offsets(pg_url))
                owned.append(took[0])
                hand_overs.append(took[1])
                time.sleep(rng.uniform(0.0, 3.0))  # somewhere in a batch, or between two
            assert proc.alive(), f"run {n} exited by itself:\n{proc.tail()}"
            proc.kill()
        at_last_kill = sum(offsets(pg_url).values())
        kill_seconds = time.monotonic() - started
        final = ProjectorProcess(env, tmp_path / "final.log")
        procs.append(final)
        wait_until(lambda: _owns_all(pg_url, final) or not final.alive(), timeout=120,
                   message="the last process owning every partition")
        publisher.check()
        wait_caught_up(pg_url, end_offsets(kafka_bootstrap, topic), [final],
                       timeout=900 if full_size else 300)
        assert final.stop() == 0, final.tail()
    finally:
        for proc in procs:
            proc.stop()
    refused = sum(p.refused() for p in procs)
    dead = dead_letter_count(pg_url)
    log = read_log(kafka_bootstrap, topic)
    print(f"injected: {kills} SIGKILLs of `projector run` over {kill_seconds:.0f} s "
          f"({early} during start-up or hand-over, {kills - early} while projecting), "
          f"each followed by a restart; {events} events published meanwhile "
          f"({at_last_kill} applied by the last kill)")
    print(f"after a SIGKILL and restart (static member), every partition owned: "
          f"{seconds_summary(owned)}; and the first batch applied: "
          f"{seconds_summary(hand_overs)} (from the new process's start, Python's start-up "
          "included)")
    print(f"writes refused by the owner epoch: {refused}; dead letters: {dead}")
    verified = assert_read_model_equals_fold(pg_url, log)
    print(verified.line())
    assert len(log) >= events
    assert at_last_kill < len(log), "the stream was done before the last kill"
