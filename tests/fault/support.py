"""What every fault-injection scenario checks at the end: the read model equals the
pure fold of the whole log, computed here, table for table.

``deliveries``: one row per delivery, the fold of its distinct valid events.
``delivery_events``: one row per distinct valid event id, with the values of the
first copy read (its type, delivery, time, sequence and data); where it was read
(topic, partition, offset) and when it was applied depend on the run and are not
compared, except that the stored position must hold a copy of that event.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sqlalchemy import select

from projector.store.rows import load_json
from schema.db import make_engine
from schema.events import Event, EventParseError, parse_message
from schema.fold import fold
from schema.rows import delivery_to_db
from schema.tables import deliveries, delivery_events, projection_offsets
from tests.helpers import ROOT, stored_offsets


@dataclass(frozen=True)
class LogRecord:
    """One record of the source log as the test published it."""

    value: bytes
    key: bytes | None = None


@dataclass(frozen=True)
class Verified:
    """What a scenario verified: printed by the scenario, kept by docs/reliability.md."""

    records: int
    events: int
    deliveries: int
    invalid: int

    def line(self) -> str:
        return (f"verified: {self.records} records read, {self.events} distinct events, "
                f"{self.deliveries} deliveries, {self.invalid} invalid records; "
                "deliveries and history equal the pure fold of the log")


def fold_of_log(records: Iterable[LogRecord]) -> tuple[dict[str, list[Event]], int, int]:
    """The log's distinct valid events per delivery (first copy of each event id wins),
    how many records were read, and how many could not be parsed."""
    by_delivery: dict[str, list[Event]] = {}
    seen: set[str] = set()
    read = invalid = 0
    for record in records:
        read += 1
        try:
            event = parse_message(record.value, record.key)
        except EventParseError:
            invalid += 1
            continue
        if event.event_id in seen:
            continue
        seen.add(event.event_id)
        by_delivery.setdefault(event.delivery_id, []).append(event)
    return by_delivery, read, invalid


def _table(db_url: str, generation: int | None) -> tuple[dict[str, dict[str, Any]],
                                                         dict[str, dict[str, Any]]]:
    engine = make_engine(db_url, writer=False)
    try:
        with engine.connect() as conn:
            rows_q = select(deliveries)
            hist_q = select(delivery_events)
            if generation is not None:
                rows_q = rows_q.where(deliveries.c.generation == generation)
                hist_q = hist_q.where(delivery_events.c.generation == generation)
            rows = {r.delivery_id: dict(r._mapping) for r in conn.execute(rows_q)}
            history = {r.event_id: dict(r._mapping) for r in conn.execute(hist_q)}
    finally:
        engine.dispose()
    return rows, history


def assert_read_model_equals_fold(db_url: str, records: Sequence[LogRecord],
                                  generation: int = 1) -> Verified:
    """Fail with the first differences unless deliveries and history equal the fold."""
    by_delivery, read, invalid = fold_of_log(records)
    rows, history = _table(db_url, generation)

    expected_rows = {}
    for delivery_id, events in by_delivery.items():
        row = fold(events)
        assert row is not None
        expected_rows[delivery_id] = delivery_to_db(generation, row)
    missing = sorted(expected_rows.keys() - rows.keys())
    extra = sorted(rows.keys() - expected_rows.keys())
    wrong = sorted(d for d in expected_rows.keys() & rows.keys()
                   if rows[d] != expected_rows[d])
    assert not (missing or extra or wrong), (
        f"deliveries differ from the fold: {len(missing)} missing {missing[:5]}, "
        f"{len(extra)} extra {extra[:5]}, {len(wrong)} wrong "
        + "; ".join(f"{d}: table {rows[d]} != fold {expected_rows[d]}" for d in wrong[:3])
    )

    expected_history = {
        e.event_id: e for events in by_delivery.values() for e in events
    }
    missing = sorted(expected_history.keys() - history.keys())
    extra = sorted(history.keys() - expected_history.keys())
    assert not (missing or extra), (
        f"history differs from the log's distinct events: {len(missing)} missing "
        f"{missing[:5]}, {len(extra)} extra {extra[:5]}"
    )
    for event_id, event in expected_history.items():
        stored = history[event_id]
        data = stored["data"]
        if isinstance(data, str):
            data = load_json(data)
        got = (stored["delivery_id"], stored["event_type"], stored["occurred_at"],
               stored["sequence"], data)
        want = (event.delivery_id, event.event_type, event.occurred_at, event.sequence,
                event.received_data)
        assert got == want, f"history row {event_id}: table {got} != log {want}"

    return Verified(records=read, events=len(expected_history),
                    deliveries=len(expected_rows), invalid=invalid)


# -- streams and publishing -------------------------------------------------------
#: Events per simulated delivery, on average (producer/simulate.py).
EVENTS_PER_DELIVERY = 4.25


def simulated_log(events: int, seed: int) -> list[LogRecord]:
    """A realistic stream (producer/simulate.py) of exactly ``events`` records, keyed
    by delivery id; the last deliveries may be cut short (still under way)."""
    from producer.simulate import SimulationConfig, encode, simulate

    deliveries = max(1, int(events / EVENTS_PER_DELIVERY) + 1)
    stream = simulate(SimulationConfig(deliveries=deliveries, seed=seed))
    while len(stream) < events:
        deliveries += max(1, int((events - len(stream)) / EVENTS_PER_DELIVERY) + 1)
        stream = simulate(SimulationConfig(deliveries=deliveries, seed=seed))
    return [LogRecord(encode(e), e["deliveryId"].encode()) for e in stream[:events]]


def ensure_topic(bootstrap: str, topic: str, partitions: int = 3) -> None:
    from producer.produce import ensure_topic as create
    from projector.settings import Settings

    create(Settings(kafka_bootstrap_servers=bootstrap, kafka_topic=topic), partitions)


class StreamPublisher(threading.Thread):
    """Publishes records to a topic in order at a steady pace, with one producer.

    ``seconds``: the whole stream is spread over about this long (0: as fast as the
    broker takes it). The producer retries through a broker outage; a record sent
    twice by such a retry is a copy of the same event (the fold is unchanged), and
    ``read_log`` reads what the topic really holds.
    """

    def __init__(self, bootstrap: str, topic: str, records: Sequence[LogRecord],
                 seconds: float = 0.0, chunk: int = 500) -> None:
        super().__init__(daemon=True, name="stream-publisher")
        self.bootstrap, self.topic, self.records = bootstrap, topic, records
        self.seconds, self.chunk = seconds, chunk
        self.published = 0
        self.error: BaseException | None = None
        self.finished = threading.Event()

    def run(self) -> None:
        from kafka import KafkaProducer

        try:
            producer = KafkaProducer(
                bootstrap_servers=self.bootstrap.split(","), acks="all", linger_ms=5,
                max_in_flight_requests_per_connection=1, retries=1_000_000,
                delivery_timeout_ms=300_000, request_timeout_ms=10_000,
                reconnect_backoff_max_ms=1_000,
            )
            try:
                started = time.monotonic()
                total = len(self.records)
                for start in range(0, total, self.chunk):
                    part = self.records[start:start + self.chunk]
                    futures = [producer.send(self.topic, key=r.key, value=r.value) for r in part]
                    producer.flush(timeout=300)
                    for future in futures:
                        future.get(timeout=300)
                    self.published += len(part)
                    if self.seconds > 0:
                        due = started + self.seconds * self.published / total
                        time.sleep(max(0.0, due - time.monotonic()))
            finally:
                producer.close(timeout=30)
        except BaseException as exc:  # noqa: BLE001 - reported by ``check``
            self.error = exc
        finally:
            self.finished.set()

    def check(self, timeout: float = 600) -> None:
        """Wait until every record is acknowledged; fail on a publishing error."""
        self.join(timeout)
        assert not self.is_alive(), f"publishing did not end within {timeout}s"
        assert self.error is None, f"publishing failed: {self.error!r}"
        assert self.published == len(self.records)


def publish(bootstrap: str, topic: str, records: Sequence[LogRecord], partitions: int = 3) -> None:
    """Create the topic if needed and publish every record now."""
    ensure_topic(bootstrap, topic, partitions)
    publisher = StreamPublisher(bootstrap, topic, records)
    publisher.start()
    publisher.check()


def end_offsets(bootstrap: str, topic: str) -> dict[int, int]:
    """The end offset of each partition of ``topic``."""
    from kafka import KafkaConsumer
    from kafka import TopicPartition as KTP

    consumer = KafkaConsumer(bootstrap_servers=bootstrap.split(","), enable_auto_commit=False)
    try:
        ids = consumer.partitions_for_topic(topic) or set()
        ends = consumer.end_offsets([KTP(topic, p) for p in ids])
        return {tp.partition: int(o) for tp, o in ends.items()}
    finally:
        consumer.close()


def read_log(bootstrap: str, topic: str, timeout: float = 300) -> list[LogRecord]:
    """Every record the topic holds now, partition by partition, in offset order: the
    whole log, as the projector reads it (committed records only)."""
    from kafka import KafkaConsumer
    from kafka import TopicPartition as KTP

    ends = end_offsets(bootstrap, topic)
    consumer = KafkaConsumer(bootstrap_servers=bootstrap.split(","), enable_auto_commit=False,
                             isolation_level="read_committed", max_poll_records=5_000)
    try:
        tps = [KTP(topic, p) for p in sorted(ends)]
        consumer.assign(tps)
        consumer.seek_to_beginning(*tps)
        per_tp: dict[int, list[LogRecord]] = {p: [] for p in ends}
        deadline = time.monotonic() + timeout
        while any(consumer.position(tp) < ends[tp.partition] for tp in tps):
            assert time.monotonic() < deadline, f"reading {topic} took over {timeout}s"
            for ktp, batch in consumer.poll(timeout_ms=500).items():
                per_tp[ktp.partition].extend(LogRecord(r.value, r.key) for r in batch
                                             if r.offset < ends[ktp.partition])
    finally:
        consumer.close()
    return [record for p in sorted(per_tp) for record in per_tp[p]]


# -- projector processes ------------------------------------------------------------
def projector_env(db_url: str, bootstrap: str, topic: str, group: str,
                  **extra: str) -> dict[str, str]:
    """The environment of a `projector` process reading ``topic`` in ``group``."""
    env = dict(os.environ)
    env.update({"DATABASE_URL": db_url, "EVENT_SOURCE": "kafka", "PYTHONUNBUFFERED": "1",
                "KAFKA_BOOTSTRAP_SERVERS": bootstrap, "KAFKA_TOPIC": topic,
                "KAFKA_GROUP_ID": group})
    env.update(extra)
    return env


#: What a projector logs once per write that the owner epoch refused (projector.loop:
#: a ``Fenced`` from projector.store.sql, logged as "fenced: ..." or, for a batch
#: still in flight when another failure came, "... did not commit either: ...").
REFUSED_MARK = "is owned by another consumer now"


class ProjectorProcess:
    """One `projector run` process; its log (stderr) goes to a file, never a pipe."""

    def __init__(self, env: dict[str, str], log_path: Path,
                 args: Sequence[str] = ("run",)) -> None:
        self.log_path = log_path
        self._log = open(log_path, "ab")  # noqa: SIM115 - closed in ``_reap``
        self.started = time.monotonic()
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "projector.cli", *args], env=env, cwd=ROOT,
            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=self._log,
        )

    @property
    def pid(self) -> int:
        return self.proc.pid

    @property
    def owner(self) -> str:
        """How the read model names this process as a partition's owner (host:pid)."""
        return f"{socket.gethostname()}:{self.proc.pid}"

    def alive(self) -> bool:
        return self.proc.poll() is None

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def refused(self) -> int:
        """Writes this process had refused by the owner epoch (from its log)."""
        return self.log().count(REFUSED_MARK)

    def kill(self) -> None:
        """SIGKILL: no clean-up of any kind."""
        if self.alive():
            self.proc.send_signal(signal.SIGKILL)
        self._reap(30)

    def pause(self) -> None:
        self.proc.send_signal(signal.SIGSTOP)

    def resume(self) -> None:
        self.proc.send_signal(signal.SIGCONT)

    def stop(self, timeout: float = 60) -> int:
        """SIGTERM (a clean stop: the batch in flight commits, the member leaves the
        group); SIGKILL if it has not ended within ``timeout``. Returns the exit status."""
        if self.alive():
            self.proc.send_signal(signal.SIGCONT)
            self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
        return self._reap(30)

    def _reap(self, timeout: float) -> int:
        code = self.proc.wait(timeout)
        self._log.close()
        return code

    def tail(self, chars: int = 3000) -> str:
        return self.log()[-chars:]


def partition_owners(db_url: str, generation: int = 1) -> dict[int, str | None]:
    """Who owns each partition of the read model now (host:pid), by partition."""
    engine = make_engine(db_url, writer=False)
    try:
        with engine.connect() as conn:
            rows = conn.execute(
                select(projection_offsets.c.partition, projection_offsets.c.owner)
                .where(projection_offsets.c.generation == generation)
            ).all()
    finally:
        engine.dispose()
    return {int(r.partition): r.owner for r in rows}


def offsets(db_url: str, generation: int = 1) -> dict[int, int]:
    """Where the read model reads next, by partition (a scenario reads one topic)."""
    return {partition: offset
            for (_, partition), offset in stored_offsets(db_url, generation).items()}


def hand_over_times(db_url: str, proc: ProjectorProcess, partitions: int,
                    before: Mapping[int, int], timeout: float = 120) -> tuple[float, float]:
    """Seconds from ``proc``'s start until it owns all ``partitions`` partitions in the
    read model, and until it has also applied its first batch (an offset moved past
    ``before``)."""
    deadline = time.monotonic() + timeout
    owned: float | None = None
    while True:
        owners = partition_owners(db_url)
        now_at = offsets(db_url)
        if owned is None and len(owners) == partitions and all(
                o == proc.owner for o in owners.values()):
            owned = time.monotonic() - proc.started
        if owned is not None and any(now_at.get(p, 0) > before.get(p, 0) for p in now_at):
            return owned, time.monotonic() - proc.started
        assert proc.alive(), f"the projector exited:\n{proc.tail()}"
        assert time.monotonic() < deadline, (
            f"no hand-over within {timeout}s: owners {owners}, offsets {now_at}\n{proc.tail()}"
        )
        time.sleep(0.05)


def hand_over_seconds(db_url: str, proc: ProjectorProcess, partitions: int,
                      before: Mapping[int, int], timeout: float = 120) -> float:
    """Seconds from ``proc``'s start until it owns all ``partitions`` partitions in the
    read model and has applied its first batch (an offset moved past ``before``)."""
    return hand_over_times(db_url, proc, partitions, before, timeout)[1]


def wait_caught_up(db_url: str, ends: Mapping[int, int], procs: Sequence[ProjectorProcess],
                   timeout: float) -> None:
    """Wait until the read model's offsets reach ``ends``; fail if every process died."""
    deadline = time.monotonic() + timeout
    while True:
        now_at = offsets(db_url)
        if all(now_at.get(p, 0) >= end for p, end in ends.items() if end > 0):
            return
        assert any(p.alive() for p in procs), "every projector exited:\n" + "\n".join(
            p.tail() for p in procs)
        assert time.monotonic() < deadline, (
            f"not caught up within {timeout}s: at {now_at}, ends {dict(ends)}")
        time.sleep(0.2)


def dead_letter_count(db_url: str, generation: int = 1) -> int:
    from sqlalchemy import func

    from schema.tables import dead_letters

    engine = make_engine(db_url, writer=False)
    try:
        with engine.connect() as conn:
            return int(conn.execute(
                select(func.count()).select_from(dead_letters)
                .where(dead_letters.c.generation == generation)
            ).scalar_one())
    finally:
        engine.dispose()


def migrate(db_url: str) -> None:
    from schema.db import migrate as run_migrations

    engine = make_engine(db_url)
    try:
        run_migrations(engine)
    finally:
        engine.dispose()


def seconds_summary(values: Sequence[float]) -> str:
    """min / median / max of some durations, for a scenario's printed figures."""
    if not values:
        return "none measured"
    ordered = sorted(values)
    return (f"min {ordered[0]:.1f} s, median {ordered[len(ordered) // 2]:.1f} s, "
            f"max {ordered[-1]:.1f} s over {len(ordered)}")


# -- a broker of the test's own ---------------------------------------------------
class PrivateBroker:
    """A Kafka broker for one test alone, to stop and start at will: devservices' own
    code (the same configuration, jars and readiness probe as the shared test broker),
    run in ``directory`` on free loopback ports. The shared broker is never touched.

    The jars are borrowed from the shared services directory when it has them
    resolved (else devservices resolves them with Maven, once).
    """

    def __init__(self, directory: Path) -> None:
        from devservices import broker
        from devservices.settings import Settings as ServicesSettings
        from devservices.state import State

        shared_lib = broker.lib_dir(ServicesSettings.from_env(os.environ))
        env = {k: v for k, v in os.environ.items() if k not in ("KAFKA_HEAP_OPTS",)}
        env.update(SERVICES_DIR=str(directory), KAFKA_START_TIMEOUT="240")
        self.settings = ServicesSettings.from_env(env)
        if (shared_lib / ".complete").is_file():
            link = directory / "kafka-lib" / shared_lib.name
            link.parent.mkdir(parents=True, exist_ok=True)
            if not link.exists():
                link.symlink_to(shared_lib)
        self.settings.kafka_dir.mkdir(parents=True, exist_ok=True)
        self.state = State()

    @property
    def bootstrap(self) -> str:
        assert self.state.kafka_port is not None, "the broker was never started"
        return f"127.0.0.1:{self.state.kafka_port}"

    def start(self) -> float:
        """Start it (the same ports and data as before, if it ran); seconds until it answers."""
        from devservices import broker

        started = time.monotonic()
        broker.start(self.settings, self.state)
        return time.monotonic() - started

    def stop(self) -> float:
        """A clean stop (SIGTERM, SIGKILL after 45 s); seconds it took."""
        from devservices import broker

        started = time.monotonic()
        broker.stop(self.settings, self.state)
        return time.monotonic() - started

    def answers(self) -> bool:
        from devservices import broker

        return self.state.kafka_port is not None and broker.probe(self.state.kafka_port, 2.0)
