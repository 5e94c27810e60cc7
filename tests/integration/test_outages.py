"""Transient outages: the database or the broker goes away mid-stream and comes back.

The outage is real: the projector talks to PostgreSQL and Kafka through a TCP
relay on loopback that the test cuts (every open connection reset, new ones
refused) and restores. Nothing may be lost or skipped.
"""

from __future__ import annotations

import signal
import socket
import subprocess
import sys
from collections.abc import Callable

import pytest
from sqlalchemy.engine import make_url

from producer.produce import produce
from producer.simulate import SimulationConfig, encode, simulate
from projector.settings import Settings
from tests.helpers import (
    ROOT,
    expected_rows,
    projector_env,
    run_projector,
    stored_offsets,
    table_rows,
    unique,
    wait_until,
)
from tests.relay import Relay

pytestmark = pytest.mark.integration


def _offsets_total(db_url: str) -> int:
    return sum(stored_offsets(db_url).values())


def test_the_database_going_away_mid_stream_loses_and_skips_nothing(
    pg_url: str, kafka_bootstrap: str, topic_factory: Callable[..., str]
) -> None:
    topic = topic_factory(3)
    url = make_url(pg_url)
    relay = Relay(url.host or "127.0.0.1", url.port or 5432)
    relayed_url = url.set(host="127.0.0.1", port=relay.port).render_as_string(hide_password=False)
    messages = [(e["deliveryId"].encode(), encode(e)) for e in simulate(SimulationConfig(deliveries=300, seed=3))]
    env = projector_env(relayed_url, "kafka", KAFKA_BOOTSTRAP_SERVERS=kafka_bootstrap, KAFKA_TOPIC=topic,
                        KAFKA_GROUP_ID=unique("group"), PROJECTOR_BATCH_SIZE="10")
    run_projector(["migrate"], env)
    produce(Settings(kafka_bootstrap_servers=kafka_bootstrap, kafka_topic=topic), messages)
    proc = subprocess.Popen([sys.executable, "-m", "projector.cli", "run"], env=env, cwd=ROOT,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        wait_until(lambda: _offsets_total(pg_url) > 100 or proc.poll() is not None, timeout=60,
                   message="some progress before the outage")
        relay.cut()
        cut_at = _offsets_total(pg_url)
        assert cut_at < len(messages), "the stream was done before the outage; make it longer"
        # The projector stays up and keeps retrying while the database is gone.
        wait_until(lambda: proc.poll() is None and _retries_logged(proc), timeout=30,
                   message="the projector to log a retry")
        relay.restore()
        wait_until(lambda: _offsets_total(pg_url) >= len(messages) or proc.poll() is not None,
                   timeout=120, message="catching up after the outage")
        assert proc.poll() is None, "the projector died during the outage"
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
        relay.close()
    assert table_rows(pg_url) == expected_rows(v for _, v in messages)


_stderr_seen: dict[int, str] = {}


def _retries_logged(proc: subprocess.Popen[str]) -> bool:
    """True once the projector's stderr mentions a retry (reads without blocking)."""
    import os

    assert proc.stderr is not None
    fd = proc.stderr.fileno()
    os.set_blocking(fd, False)
    try:
        chunk = os.read(fd, 65536)
    except BlockingIOError:
        chunk = b""
    _stderr_seen[proc.pid] = _stderr_seen.get(proc.pid, "") + chunk.decode(errors="replace")
    return "retrying in" in _stderr_seen[proc.pid]


def test_the_broker_going_away_mid_stream_loses_and_skips_nothing(
    sqlite_url: str, kafka_bootstrap: str, topic_factory: Callable[..., str]
) -> None:
    """The real broker is stopped while the projector runs, then started again."""
    topic = topic_factory(3)
    events = simulate(SimulationConfig(deliveries=300, seed=8))
    messages = [(e["deliveryId"].encode(), encode(e)) for e in events]
    first, second = messages[: len(messages) // 2], messages[len(messages) // 2 :]
    settings = Settings(kafka_bootstrap_servers=kafka_bootstrap, kafka_topic=topic)
    env = projector_env(sqlite_url, "kafka", KAFKA_BOOTSTRAP_SERVERS=kafka_bootstrap,
                        KAFKA_TOPIC=topic, KAFKA_GROUP_ID=unique("group"))
    run_projector(["migrate"], env)
    produce(settings, first)
    proc = subprocess.Popen([sys.executable, "-m", "projector.cli", "run"], env=env, cwd=ROOT,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    services = [str(ROOT / "scripts" / "services")]
    try:
        wait_until(lambda: _offsets_total(sqlite_url) >= len(first) or proc.poll() is not None,
                   timeout=60, message="the first half projected")
        subprocess.run([*services, "stop-kafka"], check=True, capture_output=True, timeout=120)
        assert not _broker_answers(kafka_bootstrap), "the broker is still up"
        subprocess.run([*services, "up"], check=True, capture_output=True, timeout=180)
        assert proc.poll() is None, "the projector died while the broker was down"
        produce(settings, second)
        wait_until(lambda: _offsets_total(sqlite_url) >= len(messages) or proc.poll() is not None,
                   timeout=120, message="the second half projected after the outage")
        assert proc.poll() is None, "the projector died after the broker came back"
    finally:
        subprocess.run([*services, "up"], capture_output=True, timeout=180)  # for the next tests
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
    assert table_rows(sqlite_url) == expected_rows(v for _, v in messages)


def _broker_answers(bootstrap: str) -> bool:
    host, port = bootstrap.split(",")[0].rsplit(":", 1)
    try:
        socket.create_connection((host, int(port)), timeout=2).close()
        return True
    except OSError:
        return False
