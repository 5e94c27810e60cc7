"""Scenario 4: the database goes away for about 10 s while the stream flows.

Kafka -> projector -> PostgreSQL, with the projector and the query API both reaching
the database through a TCP relay (tests/relay.py) that the test cuts and restores.
The stream keeps being published during the outage. Checked: the projector stays up
and retries, writes nothing while the database is gone and catches up after;
``/readyz`` answers 200 before, 503 during the outage (never anything else) and 200
again after; the final read model equals the pure fold of the whole log.
"""

from __future__ import annotations

import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path

import httpx
import pytest

from producer.simulate import SimulationConfig, encode, simulate
from tests.api_support import live_server, settings_for
from tests.fault.support import LogRecord, assert_read_model_equals_fold
from tests.helpers import ROOT, projector_env, run_projector, stored_offsets, unique, wait_until
from tests.relay import Relay

pytestmark = [pytest.mark.integration, pytest.mark.fault]

#: Deliveries simulated (about 4.2 events each): reduced and full size.
REDUCED_DELIVERIES = 6_000
FULL_DELIVERIES = 47_500
#: How long the stream takes to publish: the outage falls in its middle.
REDUCED_PUBLISH_SECONDS = 24.0
FULL_PUBLISH_SECONDS = 60.0
OUTAGE_SECONDS = 10.0
READYZ_EVERY_SECONDS = 0.2


class Publisher(threading.Thread):
    """Publishes keyed records to a topic at a steady rate, in order."""

    def __init__(self, bootstrap: str, topic: str, records: list[LogRecord],
                 seconds: float) -> None:
        super().__init__(daemon=True)
        self.bootstrap, self.topic, self.records, self.seconds = bootstrap, topic, records, seconds
        self.published = 0
        self.error: BaseException | None = None

    def run(self) -> None:
        from kafka import KafkaProducer

        try:
            producer = KafkaProducer(bootstrap_servers=self.bootstrap.split(","), acks="all",
                                     linger_ms=5, max_in_flight_requests_per_connection=1)
            try:
                chunk = 250
                start = time.monotonic()
                per_record = self.seconds / len(self.records)
                futures = []
                for i in range(0, len(self.records), chunk):
                    for record in self.records[i:i + chunk]:
                        futures.append(producer.send(self.topic, key=record.key,
                                                     value=record.value))
                    producer.flush(timeout=60)
                    self.published = min(i + chunk, len(self.records))
                    ahead = start + self.published * per_record - time.monotonic()
                    if ahead > 0:
                        time.sleep(ahead)
                for future in futures:
                    future.get(timeout=60)
            finally:
                producer.close(timeout=10)
        except BaseException as exc:  # noqa: BLE001 - re-raised by the test
            self.error = exc


class ReadyzProbe(threading.Thread):
    """Asks ``/readyz`` every READYZ_EVERY_SECONDS; keeps (asked, answered, status), the
    times monotonic."""

    def __init__(self, base: str) -> None:
        super().__init__(daemon=True)
        self.base = base
        self.answers: list[tuple[float, float, int | str]] = []
        self.stopping = threading.Event()

    def run(self) -> None:
        with httpx.Client(base_url=f"http://{self.base}", timeout=10) as client:
            while not self.stopping.is_set():
                asked = time.monotonic()
                try:
                    status: int | str = client.get("/readyz").status_code
                except httpx.HTTPError as exc:
                    status = type(exc).__name__
                self.answers.append((asked, time.monotonic(), status))
                self.stopping.wait(READYZ_EVERY_SECONDS)

    def between(self, start: float, end: float) -> list[int | str]:
        """What the requests asked at or after ``start`` and answered before ``end`` got."""
        return [status for asked, answered, status in self.answers
                if start <= asked and answered < end]


def _next_offsets(db_url: str) -> int:
    return sum(stored_offsets(db_url).values())


def test_a_database_outage_mid_stream_loses_nothing_and_readyz_reports_it(
    pg_url: str, kafka_bootstrap: str, topic_factory: Callable[..., str], full_size: bool,
    tmp_path: Path,
) -> None:
    deliveries = FULL_DELIVERIES if full_size else REDUCED_DELIVERIES
    publish_seconds = FULL_PUBLISH_SECONDS if full_size else REDUCED_PUBLISH_SECONDS
    records = [LogRecord(encode(e), e["deliveryId"].encode())
               for e in simulate(SimulationConfig(deliveries=deliveries, seed=4))]
    topic = topic_factory(3)
    relay, relayed_url = Relay.for_database(pg_url)
    env = projector_env(relayed_url, "kafka", KAFKA_BOOTSTRAP_SERVERS=kafka_bootstrap,
                        KAFKA_TOPIC=topic, KAFKA_GROUP_ID=unique("group"))
    run_projector(["migrate"], env)

    log_path = tmp_path / "projector.log"
    publisher = Publisher(kafka_bootstrap, topic, records, publish_seconds)
    api_settings = settings_for(relayed_url, kafka_bootstrap_servers=kafka_bootstrap,
                                kafka_topic=topic)
    with open(log_path, "w") as log, live_server(api_settings) as (base, _app):
        probe = ReadyzProbe(base)
        proc = subprocess.Popen([sys.executable, "-m", "projector.cli", "run"], env=env,
                                cwd=ROOT, stdout=subprocess.DEVNULL, stderr=log)
        try:
            probe.start()
            publisher.start()
            started = time.monotonic()
            wait_until(lambda: _next_offsets(pg_url) >= len(records) // 5 or proc.poll() is not None,
                       timeout=300, interval=0.05, message="a fifth of the stream projected")
            assert proc.poll() is None, f"the projector exited early:\n{log_path.read_text()[-3000:]}"

            at_cut = _next_offsets(pg_url)
            published_at_cut = publisher.published
            relay.cut()
            cut = time.monotonic()
            time.sleep(1.0)
            frozen = _next_offsets(pg_url)  # a commit in flight at the cut has settled
            time.sleep(OUTAGE_SECONDS - 1.0)
            assert _next_offsets(pg_url) == frozen, "offsets moved while the database was cut off"
            published_at_restore = publisher.published
            refused = relay.refused
            relay.restore()
            restored = time.monotonic()
            assert proc.poll() is None, (
                f"the projector died during the outage:\n{log_path.read_text()[-3000:]}")

            ready_again: float = wait_until(
                lambda: next((t for t, _, s in probe.answers if t >= restored and s == 200),
                             0.0),
                timeout=60, message="/readyz to answer 200 after the outage")
            publisher.join(timeout=publish_seconds + 120)
            assert not publisher.is_alive(), "publishing did not finish"
            assert publisher.error is None, f"publishing failed: {publisher.error!r}"
            wait_until(lambda: _next_offsets(pg_url) >= len(records) or proc.poll() is not None,
                       timeout=600, interval=0.2, message="the projector to catch up")
            caught_up = time.monotonic()
            assert proc.poll() is None, f"the projector died:\n{log_path.read_text()[-3000:]}"

            with httpx.Client(base_url=f"http://{base}", timeout=10) as client:
                status = client.post("/graphql", json={
                    "query": "{ projectionStatus { eventsApplied deadLetters } }"}).json()
        finally:
            probe.stopping.set()
            probe.join(timeout=15)
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout=60)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(timeout=10)
            relay.close()
    assert proc.returncode == 0, f"projector exited {proc.returncode}"

    log_text = log_path.read_text()
    retries = log_text.count("retrying in")
    assert retries > 0, f"the projector never logged a retry:\n{log_text[-3000:]}"
    assert at_cut < len(records) and published_at_restore > published_at_cut, (
        "the outage did not fall mid-stream: make the stream longer")

    before = probe.between(started, cut)
    during = probe.between(cut + 1.0, restored)
    after = probe.between(ready_again, float("inf"))
    assert before and set(before) == {200}, f"/readyz before the outage: {sorted(set(before))}"
    assert during and set(during) == {503}, f"/readyz during the outage: {sorted(set(during))}"
    assert set(after) == {200}, f"/readyz after it recovered: {sorted(set(after))}"
    everything = {s for _, _, s in probe.answers}
    assert everything <= {200, 503}, f"/readyz answered {sorted(map(str, everything))}"
    first_503 = next(t for t, _, s in probe.answers if t >= cut and s == 503)

    verified = assert_read_model_equals_fold(pg_url, records)
    assert status.get("data") == {"projectionStatus": {
        "eventsApplied": verified.events, "deadLetters": 0}}, status

    print(f"\ninjected: database outage of {restored - cut:.1f} s (relay cut; "
          f"{refused} connection attempts refused) with {at_cut} of {len(records)} "
          f"records projected; {published_at_restore - published_at_cut} records published "
          "during the outage")
    print(f"readyz: {len(before)} x 200 before, {len(during)} x 503 during (first 503 "
          f"{first_503 - cut:.2f} s after the cut), 200 again {ready_again - restored:.2f} s "
          f"after the restore; {len(after)} x 200 after")
    print(f"projector: stayed up, {retries} retries logged, offsets frozen during the outage, "
          f"caught up {caught_up - restored:.1f} s after the restore "
          f"({caught_up - started:.1f} s in all)")
    print(verified.line())
