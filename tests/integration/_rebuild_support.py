"""Shared by the rebuild tests: a stream on a real topic, generation look-ups, a slow rebuild."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from dataclasses import dataclass
from typing import Any

from sqlalchemy import func, select

from producer.produce import produce
from producer.simulate import SimulationConfig, encode, simulate
from projector.settings import Settings
from schema.db import make_engine
from schema.tables import deliveries, delivery_events, generations
from tests.helpers import (
    ROOT,
    expected_rows,
    projector_env,
    stored_offsets,
    table_rows,
    unique,
    wait_until,
)

BAD = (b"D-bad", b"{not json")


@dataclass
class Stream:
    """What was produced to one topic, in order, and how to run the projector on it."""

    bootstrap: str
    topic: str
    db_url: str
    messages: list[tuple[bytes | None, bytes]]

    @property
    def env(self) -> dict[str, str]:
        return projector_env(
            self.db_url, "kafka", KAFKA_BOOTSTRAP_SERVERS=self.bootstrap, KAFKA_TOPIC=self.topic,
            KAFKA_GROUP_ID=unique("g"),
        )

    def produce(self, messages: list[tuple[bytes | None, bytes]]) -> None:
        produce(Settings(kafka_bootstrap_servers=self.bootstrap, kafka_topic=self.topic), messages)
        self.messages.extend(messages)

    def expected(self, generation: int) -> dict[str, dict[str, Any]]:
        return expected_rows([v for _, v in self.messages], [k for k, _ in self.messages],
                             generation=generation)


def simulated(deliveries: int, seed: int, prefix: str = "") -> list[tuple[bytes | None, bytes]]:
    out: list[tuple[bytes | None, bytes]] = []
    for event in simulate(SimulationConfig(deliveries=deliveries, seed=seed)):
        if prefix:
            event = {**event, "deliveryId": prefix + event["deliveryId"],
                     "eventId": prefix + event["eventId"]}
        out.append((event["deliveryId"].encode(), encode(event)))
    return out


def gens(db_url: str) -> dict[int, tuple[str, str]]:
    """generation -> (status, purpose)."""
    engine = make_engine(db_url, writer=False)
    try:
        with engine.connect() as conn:
            return {r.generation: (r.status, r.purpose) for r in conn.execute(select(generations))}
    finally:
        engine.dispose()


def active(db_url: str) -> int:
    return next(g for g, (status, _) in gens(db_url).items() if status == "active")


def offsets(db_url: str, generation: int) -> dict[int, int]:
    """partition -> next offset of one generation (the stream has one topic)."""
    return {p: n for (_, p), n in stored_offsets(db_url, generation).items()}


def row_counts_by_generation(db_url: str) -> dict[int, int]:
    engine = make_engine(db_url, writer=False)
    try:
        with engine.connect() as conn:
            out: dict[int, int] = {}
            for table in (deliveries, delivery_events):
                for g, n in conn.execute(select(table.c.generation, func.count())
                                         .group_by(table.c.generation)):
                    out[g] = out.get(g, 0) + n
            return out
    finally:
        engine.dispose()


def without_generation(rows: dict[str, dict[str, Any]]) -> dict[str, dict[str, Any]]:
    return {k: {c: v for c, v in r.items() if c != "generation"} for k, r in rows.items()}


def assert_serves(stream: Stream, generation: int) -> None:
    assert active(stream.db_url) == generation
    assert table_rows(stream.db_url, generation) == stream.expected(generation)


def start_projector(args: list[str], env: dict[str, str]) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "projector.cli", *args], env=env, cwd=ROOT, text=True,
        stdout=subprocess.PIPE, stderr=subprocess.PIPE,
    )


def kill_when_building(proc: subprocess.Popen[str], db_url: str, generation: int,
                       at_least: int = 20) -> None:
    """SIGKILL the rebuild once its building generation has applied ``at_least`` messages."""

    def progressed() -> bool:
        if proc.poll() is not None:
            detail = proc.stderr.read() if proc.stderr else ""
            raise AssertionError(f"the rebuild ended before it could be killed: {detail}")
        return sum(offsets(db_url, generation).values()) >= at_least

    wait_until(progressed, timeout=60, interval=0.02, message="the rebuild to make progress")
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait(timeout=30)
