"""The delivery core's real relay, end to end: core transaction -> outbox (PostgreSQL)
-> Debezium (Kafka Connect, outbox event router) -> Kafka -> projector -> read model
-> GraphQL over HTTP. Every service is real; Kafka Connect is started once for the
module through devservices (as ``scripts/services up --connect`` does) and stopped
afterwards if this module started it.

Each test registers its own connector (services/connect/outbox-connector.json with its
own database, replication slot and topic), prints the events written to the outbox,
the records relayed to Kafka and the events the projector applied, and checks the read
model against the pure fold of the events written.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import pytest
from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url

from devservices import connect
from devservices._proc import locked
from devservices.errors import ServicesError
from devservices.settings import Settings as ServicesSettings
from devservices.state import load_state, save_state
from producer import outbox
from producer.simulate import SimulationConfig, encode, simulate
from tests.api_support import live_server, settings_for
from tests.fault.support import LogRecord, assert_read_model_equals_fold
from tests.helpers import ROOT, create_pg_database, history_ids, projector_env, unique, wait_until

pytestmark = pytest.mark.e2e

RELAY_TIMEOUT = 180.0  # bounded, with room for a shared, loaded machine


# ---------------------------------------------------------------- Kafka Connect, once


@dataclass
class Worker:
    settings: ServicesSettings

    @property
    def port(self) -> int:
        port = load_state(self.settings.state_file).connect_port
        assert port is not None
        return port

    def start(self) -> None:
        with locked(self.settings.services_dir):
            state = load_state(self.settings.state_file)
            try:
                connect.start(self.settings, state)
            finally:
                save_state(self.settings.state_file, state)

    def kill(self) -> int:
        """SIGKILL: no shutdown, no last offset commit."""
        state = load_state(self.settings.state_file)
        assert state.connect_pid is not None and connect.process_alive(self.settings, state)
        os.kill(state.connect_pid, signal.SIGKILL)
        wait_until(lambda: not connect.process_alive(self.settings, state), timeout=30,
                   message="Kafka Connect to die")
        return state.connect_pid


@pytest.fixture(scope="module")
def worker() -> Iterator[Worker]:
    """The services' Kafka Connect worker: reused when running, else started here (a
    failure to start fails the tests: nothing is skipped)."""
    for name in ("KAFKA_BOOTSTRAP_SERVERS", "TEST_DATABASE_URL"):
        if not os.environ.get(name):
            pytest.fail(f"{name} is not set: run the tests with scripts/test", pytrace=False)
    settings = ServicesSettings.from_env(os.environ)
    worker = Worker(settings)
    started_here = not connect.is_up(settings, load_state(settings.state_file))
    began = time.monotonic()
    try:
        worker.start()
    except ServicesError as exc:
        pytest.fail(f"Kafka Connect did not start: {exc}", pytrace=False)
    print(f"\nKafka Connect {'started' if started_here else 'reused'} "
          f"in {time.monotonic() - began:.1f}s on port {worker.port}")
    yield worker
    if started_here:
        with locked(settings.services_dir):
            state = load_state(settings.state_file)
            connect.stop(settings, state)
            save_state(settings.state_file, state)


# ---------------------------------------------------------------- one relay per test


@dataclass
class Relay:
    worker: Worker
    core_url: str
    read_url: str
    topic: str
    bootstrap: str
    name: str = field(default_factory=lambda: unique("outbox").replace("-", "_"))
    projector: subprocess.Popen[bytes] | None = None
    projector_log: Any = None

    @property
    def slot(self) -> str:
        return self.name

    def config(self) -> dict[str, str]:
        core = make_url(self.core_url)
        admin = make_url(os.environ.get("TEST_DATABASE_ADMIN_URL") or self.core_url)
        values = {
            "OUTBOX_DATABASE_HOSTNAME": core.host or "127.0.0.1",
            "OUTBOX_DATABASE_PORT": str(core.port or 5432),
            # the superuser may replicate and create the publication
            "OUTBOX_DATABASE_USER": admin.username or "postgres",
            "OUTBOX_DATABASE_PASSWORD": admin.password or "",
            "OUTBOX_DATABASE_DBNAME": core.database or "",
            "OUTBOX_TOPIC": self.topic,
        }
        overrides = {"slot.name": self.slot, "publication.name": self.name,
                     "topic.prefix": self.name}
        return connect.connector_config(
            ServicesSettings.from_env(os.environ).connector_config, values, overrides)

    def register(self) -> None:
        connect.register(self.worker.port, self.name, self.config())
        connect.wait_running(self.worker.port, self.name, RELAY_TIMEOUT)
        # streaming has begun once the slot exists and is in use: from then on nothing
        # committed to the outbox can be missed, even a row deleted right away
        wait_until(lambda: self._slot_active() is True, timeout=RELAY_TIMEOUT,
                   message=f"replication slot {self.slot} to be active")

    def _admin_query(self, sql: str, **params: Any) -> Any:
        engine = create_engine(os.environ.get("TEST_DATABASE_ADMIN_URL") or self.core_url)
        try:
            with engine.connect() as conn:
                return conn.execute(text(sql), params).scalar_one_or_none()
        finally:
            engine.dispose()

    def _slot_active(self) -> bool | None:
        active = self._admin_query(
            "SELECT active FROM pg_replication_slots WHERE slot_name = :s", s=self.slot)
        return None if active is None else bool(active)

    def close(self) -> None:
        self.stop_projector()
        try:
            connect.delete(self.worker.port, self.name)
        except OSError:
            pass
        # the slot would keep the server's WAL forever and block dropping the database
        wait_until(lambda: self._slot_active() is not True, timeout=60,
                   message=f"slot {self.slot} released")
        if self._slot_active() is not None:
            self._admin_query("SELECT pg_drop_replication_slot(:s)::text", s=self.slot)

    # -- the projector, as an operator runs it --------------------------------------
    def env(self) -> dict[str, str]:
        return projector_env(self.read_url, KAFKA_TOPIC=self.topic,
                             KAFKA_BOOTSTRAP_SERVERS=self.bootstrap,
                             KAFKA_GROUP_ID=unique("relay-projector"))

    def start_projector(self) -> None:
        env = self.env()
        subprocess.run([sys.executable, "-m", "projector.cli", "migrate"], env=env,
                       cwd=ROOT, check=True, capture_output=True, timeout=120)
        self.projector_log = tempfile.TemporaryFile()
        self.projector = subprocess.Popen(
            [sys.executable, "-m", "projector.cli", "run"], env=env, cwd=ROOT,
            stdout=subprocess.DEVNULL, stderr=self.projector_log,
        )

    def stop_projector(self) -> None:
        if self.projector is not None and self.projector.poll() is None:
            self.projector.send_signal(signal.SIGTERM)
            try:
                self.projector.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.projector.kill()
                self.projector.wait(timeout=10)
        self.projector = None
        if self.projector_log is not None:
            self.projector_log.close()
            self.projector_log = None

    # -- what went where -----------------------------------------------------------
    def relayed(self) -> list[LogRecord]:
        """Every record in the topic (all partitions, from the start)."""
        from kafka import KafkaConsumer, TopicPartition

        consumer = KafkaConsumer(bootstrap_servers=self.bootstrap, enable_auto_commit=False)
        try:
            partitions = [TopicPartition(self.topic, p)
                          for p in sorted(consumer.partitions_for_topic(self.topic) or [])]
            consumer.assign(partitions)
            consumer.seek_to_beginning(*partitions)
            end = consumer.end_offsets(partitions)
            records: list[LogRecord] = []
            deadline = time.monotonic() + 60
            while any(consumer.position(tp) < end[tp] for tp in partitions):
                assert time.monotonic() < deadline, "reading the topic took over 60s"
                for batch in consumer.poll(timeout_ms=500).values():
                    records.extend(LogRecord(value=r.value, key=r.key) for r in batch)
            return records
        finally:
            consumer.close()

    def wait_applied(self, count: int, timeout: float = RELAY_TIMEOUT) -> None:
        def done() -> bool:
            if self.projector is not None and self.projector.poll() is not None:
                self.projector_log.seek(0)
                tail = self.projector_log.read()[-3000:].decode("utf-8", "replace")
                raise AssertionError(f"projector exited {self.projector.returncode}: {tail}")
            return len(history_ids(self.read_url)) >= count

        try:
            wait_until(done, timeout=timeout, interval=0.5,
                       message=f"{count} events applied to the read model")
        except AssertionError:
            self.projector_log.seek(0)
            tail = self.projector_log.read()[-2000:].decode("utf-8", "replace")
            raise AssertionError(
                f"{len(history_ids(self.read_url))} of {count} events applied, "
                f"{len(self.relayed())} records relayed; projector log: {tail}") from None


@pytest.fixture
def relay(worker: Worker, kafka_bootstrap: str,
          topic_factory: Callable[..., str]) -> Iterator[Callable[[str], Relay]]:
    made: list[tuple[Relay, list[Callable[[], None]]]] = []

    def make(payload_type: str = "jsonb") -> Relay:
        core_url, drop_core = create_pg_database()
        read_url, drop_read = create_pg_database()
        engine = outbox.engine_for(core_url)
        outbox.create_tables(engine, payload_type)
        engine.dispose()
        r = Relay(worker, core_url, read_url, topic_factory(3), kafka_bootstrap)
        made.append((r, [drop_read, drop_core]))
        r.register()
        r.start_projector()
        return r

    yield make
    for r, drops in made:
        try:
            r.close()
        finally:
            for drop in drops:
                drop()


# ---------------------------------------------------------------- helpers


def stream_of(deliveries: int, seed: int) -> list[dict[str, Any]]:
    """The simulated stream, each event id once (what a core commits)."""
    seen: set[str] = set()
    out = []
    for event in simulate(SimulationConfig(deliveries=deliveries, seed=seed)):
        if event["eventId"] not in seen:
            seen.add(event["eventId"])
            out.append(event)
    return out


def records_of(events: list[dict[str, Any]]) -> list[LogRecord]:
    return [LogRecord(value=encode(e), key=e["deliveryId"].encode()) for e in events]


def report(what: str, written: int, relayed: int, applied: int, extra: str = "") -> None:
    print(f"\n{what}: {written} events written to the outbox, {relayed} records relayed "
          f"to Kafka, {applied} events applied" + (f"; {extra}" if extra else ""))


def outbox_rows(url: str) -> int:
    engine = outbox.engine_for(url)
    try:
        with engine.connect() as conn:
            return int(conn.execute(text("SELECT count(*) FROM outbox")).scalar_one())
    finally:
        engine.dispose()


DELIVERIES_QUERY = """
query($after: String) {
  deliveries(first: 500, after: $after) {
    totalCount
    pageInfo { hasNextPage endCursor }
    edges { node { id state orderId shopId riderId eventCount lastEventAt
                   history(first: 100) { totalCount } } }
  }
}
"""


def api_deliveries(address: str) -> dict[str, dict[str, Any]]:
    import httpx

    found: dict[str, dict[str, Any]] = {}
    after = None
    while True:
        response = httpx.post(f"http://{address}/graphql", timeout=30,
                              json={"query": DELIVERIES_QUERY, "variables": {"after": after}})
        assert response.status_code == 200, response.text
        body = response.json()
        assert not body.get("errors"), body["errors"]
        page = body["data"]["deliveries"]
        found.update({e["node"]["id"]: e["node"] for e in page["edges"]})
        if not page["pageInfo"]["hasNextPage"]:
            assert page["totalCount"] == len(found)
            return found
        after = page["pageInfo"]["endCursor"]


def assert_api_equals_fold(r: Relay, events: list[dict[str, Any]]) -> int:
    """GraphQL over HTTP serves each delivery as the fold of its written events."""
    from schema.events import parse_message
    from schema.fold import fold

    by_delivery: dict[str, list[Any]] = {}
    for e in events:
        by_delivery.setdefault(e["deliveryId"], []).append(parse_message(encode(e)))
    settings = settings_for(r.read_url, kafka_bootstrap_servers=r.bootstrap, kafka_topic=r.topic)
    with live_server(settings) as (address, _app):
        served = api_deliveries(address)
    assert served.keys() == by_delivery.keys()
    for delivery_id, delivery_events in by_delivery.items():
        row = fold(delivery_events)
        assert row is not None
        node = served[delivery_id]
        want = (row.state.value, row.order_id, row.shop_id, row.rider_id, row.event_count,
                len(delivery_events))
        got = (node["state"], node["orderId"], node["shopId"], node["riderId"],
               node["eventCount"], node["history"]["totalCount"])
        assert got == want, f"{delivery_id}: API {got} != fold {want}"
    return len(served)


# ---------------------------------------------------------------- the tests


def test_a_few_thousand_outbox_events_reach_the_api_exactly_as_their_fold(
    relay: Callable[[str], Relay],
) -> None:
    r = relay("jsonb")
    events = stream_of(750, seed=11)
    engine = outbox.engine_for(r.core_url)
    began = time.monotonic()
    written = outbox.write_stream(engine, events).written
    engine.dispose()
    r.wait_applied(written)
    took = time.monotonic() - began
    relayed = r.relayed()
    applied = len(history_ids(r.read_url))
    report("jsonb payload", written, len(relayed), applied,
           f"{took:.1f}s from the first commit to the last event applied")
    assert written == len(events) >= 3000
    assert len(relayed) >= written  # at least once
    verified = assert_read_model_equals_fold(r.read_url, records_of(events))
    assert applied == verified.events == written
    served = assert_api_equals_fold(r, events)
    print(f"GraphQL served {served} deliveries, each equal to the fold of its events")


def test_a_text_payload_column_and_event_ids_that_are_not_uuids_work_too(
    relay: Callable[[str], Relay],
) -> None:
    r = relay("text")
    events = stream_of(120, seed=12)
    # a producer whose event ids are not UUIDs: the outbox id is derived, the payload
    # keeps the id the projector deduplicates by
    for n, e in enumerate(events[:40]):
        e["eventId"] = f"core-{n:04d}"
    engine = outbox.engine_for(r.core_url)
    with engine.connect() as conn:
        assert outbox.payload_column_type(conn) == "text"
    written = outbox.write_stream(engine, events).written
    engine.dispose()
    r.wait_applied(written)
    relayed = r.relayed()
    report("text payload", written, len(relayed), len(history_ids(r.read_url)))
    assert len(relayed) >= written
    verified = assert_read_model_equals_fold(r.read_url, records_of(events))
    assert verified.events == written
    assert {f"core-{n:04d}" for n in range(40)} <= set(history_ids(r.read_url))
    assert_api_equals_fold(r, events)


def test_an_outbox_write_that_rolls_back_never_shows_up(relay: Callable[[str], Relay]) -> None:
    r = relay("jsonb")
    events = stream_of(60, seed=13)
    ghost = {**events[0], "eventId": "0b9c3d1e-0000-4000-8000-00000000dead",
             "deliveryId": "D-ROLLED-BACK"}
    engine = outbox.engine_for(r.core_url)
    half = len(events) // 2
    written = outbox.write_stream(engine, events[:half]).written
    with engine.connect() as conn:
        with conn.begin() as tx:
            outbox.insert_outbox(conn, ghost, "jsonb")
            tx.rollback()
    written += outbox.write_stream(engine, events[half:]).written
    engine.dispose()
    r.wait_applied(written)
    relayed = r.relayed()
    applied = history_ids(r.read_url)
    report("rolled back", written, len(relayed), len(applied),
           "1 outbox insert rolled back")
    assert all(rec.key != b"D-ROLLED-BACK" for rec in relayed)
    assert ghost["eventId"] not in applied
    assert_read_model_equals_fold(r.read_url, records_of(events))
    settings = settings_for(r.read_url, kafka_bootstrap_servers=r.bootstrap, kafka_topic=r.topic)
    with live_server(settings) as (address, _app):
        import httpx

        body = httpx.post(f"http://{address}/graphql", timeout=30, json={
            "query": '{ delivery(id: "D-ROLLED-BACK") { id } }'}).json()
    assert body == {"data": {"delivery": None}}


def test_outbox_rows_deleted_right_after_insert_change_nothing(
    relay: Callable[[str], Relay],
) -> None:
    r = relay("jsonb")
    events = stream_of(150, seed=14)
    engine = outbox.engine_for(r.core_url)
    written = outbox.write_stream(engine, events, delete_after_insert=True).written
    engine.dispose()
    assert outbox_rows(r.core_url) == 0  # the table stays empty
    r.wait_applied(written)
    relayed = r.relayed()
    report("deleted after insert", written, len(relayed), len(history_ids(r.read_url)),
           "0 rows left in the outbox")
    assert len(relayed) >= written
    assert_read_model_equals_fold(r.read_url, records_of(events))
    assert_api_equals_fold(r, events)


def test_connect_killed_and_restarted_mid_stream_changes_nothing(
    relay: Callable[[str], Relay],
) -> None:
    r = relay("jsonb")
    events = stream_of(400, seed=15)
    engine = outbox.engine_for(r.core_url)
    killed_at = threading.Event()
    progress = {"written": 0}

    def on_commit(n: int) -> None:
        progress["written"] = n
        if n == len(events) // 3:
            killed_at.set()
        time.sleep(0.002)  # a core's pace: the kill lands while the stream flows

    errors: list[BaseException] = []

    def write() -> None:
        try:
            outbox.write_stream(engine, events, on_commit=on_commit)
        except BaseException as exc:  # noqa: BLE001 (reported by the test)
            errors.append(exc)

    writer = threading.Thread(target=write)
    writer.start()
    assert killed_at.wait(timeout=120), "the writer did not get a third of the way"
    pid = r.worker.kill()
    at_kill = progress["written"]
    began = time.monotonic()
    r.worker.start()  # the worker's config topic brings the connector back
    connect.wait_running(r.worker.port, r.name, RELAY_TIMEOUT)
    restart = time.monotonic() - began
    writer.join(timeout=300)
    assert not writer.is_alive() and not errors, errors
    engine.dispose()
    r.wait_applied(len(events))
    relayed = r.relayed()
    applied = history_ids(r.read_url)
    repeats = len(relayed) - len(events)
    report("SIGKILL mid-stream", len(events), len(relayed), len(applied),
           f"Kafka Connect pid {pid} killed after {at_kill} commits, back in {restart:.1f}s; "
           f"{repeats} records relayed again")
    assert 0 < at_kill < len(events), "the kill did not land mid-stream"
    assert len(relayed) >= len(events)
    assert len({rec.value for rec in relayed}) >= len(events)
    # the repeats (if any) changed nothing: the read model is the fold of what was written
    assert_read_model_equals_fold(r.read_url, records_of(events))
    assert_read_model_equals_fold(r.read_url, relayed)
    assert len(applied) == len(events)
