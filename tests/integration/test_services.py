"""`scripts/services` itself, on a set of services of its own (its own SERVICES_DIR
under a temporary directory, its own ports): the shared `.services/` that the rest
of the suite uses is never touched.

One lifecycle, because a broker start costs ~10 s: start (through `eval`, which
must return), an idempotent `up`, `stop-kafka` with a stale pid in the state, the
next `up` on the same ports, `down`, a broker that cannot start, `down --purge`.
"""

from __future__ import annotations

import os
import shlex
import subprocess
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest
from kafka.admin import KafkaAdminClient

from devservices import broker
from devservices._proc import alive, pid_matches
from devservices.settings import Settings
from devservices.state import State, load_state, save_state
from tests.helpers import ROOT

pytestmark = pytest.mark.integration

SERVICES = str(ROOT / "scripts" / "services")


class Services:
    def __init__(self, directory: Path) -> None:
        self.dir = directory
        self.env = {k: v for k, v in os.environ.items()
                    if k not in ("KAFKA_HEAP_OPTS", "KAFKA_START_TIMEOUT", "PG_START_TIMEOUT")}
        self.env["SERVICES_DIR"] = str(directory)

    def run(self, *args: str, timeout: float = 180, **env: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([SERVICES, *args], capture_output=True, text=True, timeout=timeout,
                              env={**self.env, **env}, cwd="/")

    def state(self) -> State:
        return load_state(self.dir / "state.env")


def _exports(text: str) -> dict[str, str]:
    found = {}
    for line in text.splitlines():
        words = shlex.split(line)
        assert words[0] == "export", line
        key, _, value = words[1].partition("=")
        found[key] = value
    return found


@pytest.fixture
def services(tmp_path: Path) -> Iterator[Services]:
    directory = tmp_path / "services"
    # The shared checkout's broker jars, when resolved, spare this test a Maven run.
    shared_lib = broker.lib_dir(Settings.from_env(os.environ))
    if (shared_lib / ".complete").is_file():
        (directory / "kafka-lib").mkdir(parents=True)
        (directory / "kafka-lib" / shared_lib.name).symlink_to(shared_lib)
    it = Services(directory)
    try:
        yield it
    finally:
        it.run("down", "--purge", timeout=120)
        state = it.state()
        leftover = [pid for pid in (state.kafka_pid,) if pid and alive(pid)]
        assert not leftover, f"processes left running: {leftover}"


def test_lifecycle_start_idempotent_up_stale_pid_port_reuse_down(services: Services) -> None:
    # start: `eval "$(scripts/services up)"` returns only if no daemon kept the pipe open
    shell = subprocess.run(
        ["bash", "-c", f'eval "$({shlex.quote(SERVICES)} up)" && env | grep -E "^(KAFKA|TEST)_"'],
        capture_output=True, text=True, timeout=240, env=services.env, cwd="/",
    )
    assert shell.returncode == 0, shell.stderr
    env = dict(line.split("=", 1) for line in shell.stdout.splitlines())
    assert env["KAFKA_BOOTSTRAP_SERVERS"].startswith("127.0.0.1:")
    first = services.state()
    assert first.kafka_pid and first.kafka_port and first.pg_port
    assert env["TEST_DATABASE_URL"] == f"postgresql+psycopg://delivery@127.0.0.1:{first.pg_port}/delivery"
    admin = KafkaAdminClient(bootstrap_servers=[env["KAFKA_BOOTSTRAP_SERVERS"]],
                             bootstrap_timeout_ms=10_000, request_timeout_ms=10_000)
    try:
        assert admin.describe_cluster()["brokers"]
    finally:
        admin.close()
    with psycopg.connect(env["TEST_DATABASE_URL"].replace("+psycopg", ""), connect_timeout=10) as conn:
        assert conn.execute("SELECT current_user, current_database()").fetchone() == ("delivery", "delivery")
    props = (services.dir / "kafka" / "server.properties").read_text()
    assert f"listeners=PLAINTEXT://127.0.0.1:{first.kafka_port}," in props

    # idempotent: the same lines, the same processes
    again = services.run("up")
    assert again.returncode == 0, again.stderr
    assert _exports(again.stdout) == env
    assert "Kafka already running" in again.stderr
    assert services.state() == first
    status = services.run("status")
    assert status.returncode == 0, status.stdout
    assert status.stdout.splitlines()[0].startswith(f"kafka:    up    127.0.0.1:{first.kafka_port} (pid {first.kafka_pid},")

    # stop-kafka, then a stale pid in the state: a live process that is not the broker
    stopped = services.run("stop-kafka")
    assert stopped.returncode == 0, stopped.stderr
    assert not alive(first.kafka_pid)
    assert services.run("env").returncode == 1
    stranger = subprocess.Popen(["sleep", "300"])
    try:
        state = services.state()
        state.kafka_pid = stranger.pid
        save_state(services.dir / "state.env", state)
        status = services.run("status")
        assert (status.returncode, status.stdout.splitlines()[0]) == (1, "kafka:    down")

        # the next `up` starts a new broker on the same ports and leaves the stranger alone
        restarted = services.run("up")
        assert restarted.returncode == 0, restarted.stderr
        assert _exports(restarted.stdout) == env
        second = services.state()
        assert (second.kafka_port, second.kafka_controller_port, second.pg_port) == (
            first.kafka_port, first.kafka_controller_port, first.pg_port)
        assert second.kafka_pid not in (first.kafka_pid, stranger.pid)
        assert pid_matches(second.kafka_pid, "kafka.Kafka")
        assert "PostgreSQL already running" in restarted.stderr
        assert stranger.poll() is None

        # down: both gone, the stranger still alive, the ports remembered for the next up
        down = services.run("down")
        assert down.returncode == 0, down.stderr
        assert not alive(second.kafka_pid)
        assert stranger.poll() is None
        status = services.run("status")
        assert (status.returncode, status.stdout) == (1, "kafka:    down\npostgres: down\n")
        after = services.state()
        assert (after.kafka_pid, after.kafka_port, after.pg_port) == (None, first.kafka_port, first.pg_port)
    finally:
        stranger.kill()
        stranger.wait(timeout=10)

    # a broker that cannot start fails with its log tail (and PostgreSQL came up)
    failed = services.run("up", KAFKA_HEAP_OPTS="-Xmx1k")
    assert failed.returncode == 1
    assert "services: error: Kafka exited during startup" in failed.stderr
    assert "last lines of" in failed.stderr and "Too small maximum heap" in failed.stderr
    assert failed.stdout == ""
    status = services.run("status")
    assert status.stdout.splitlines() == [
        "kafka:    down",
        f"postgres: up    127.0.0.1:{first.pg_port} (pid {_postmaster(services)}, "
        f"data {services.state().pg_dir}/data)",
    ]

    purged = services.run("down", "--purge")
    assert purged.returncode == 0, purged.stderr
    pg_dir = after.pg_dir
    assert pg_dir is not None and not pg_dir.exists()
    assert not (services.dir / "kafka").exists()


def _postmaster(services: Services) -> int:
    pg_dir = services.state().pg_dir
    assert pg_dir is not None
    return int((pg_dir / "data" / "postmaster.pid").read_text().splitlines()[0])
