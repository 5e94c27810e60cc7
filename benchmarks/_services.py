"""The real services, through the same script the tests use, and fresh resources on them.

``scripts/services up`` is idempotent: services already running (a test run, another
benchmark) are reused and left running; services this run started are stopped at
the end. Databases and topics created here are dropped and deleted afterwards.
"""

from __future__ import annotations

import shlex
import shutil
import subprocess
import time
import uuid
from collections.abc import Callable

from benchmarks._proc import ROOT, BenchError, say, wait_until

SERVICES = ROOT / "scripts" / "services"


def unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:10]}"


def services_up() -> tuple[dict[str, str], Callable[[], None] | None]:
    """The services' environment, and how to stop what this call started (None: nothing)."""
    status = subprocess.run(
        [str(SERVICES), "status"], capture_output=True, text=True, timeout=60
    ).stdout
    was_up = {line.split(":")[0] for line in status.splitlines()
              if line.split(":", 1)[-1].split()[:1] == ["up"]}
    running = {"kafka", "postgres"} <= was_up
    say("services already running; reusing them" if running else "starting services "
        "(scripts/services up)")
    try:
        out = subprocess.run(
            [str(SERVICES), "up" if not running else "env"], stdout=subprocess.PIPE,
            text=True, timeout=600, check=True,
        ).stdout
    except subprocess.CalledProcessError as exc:
        raise BenchError(f"scripts/services failed (exit {exc.returncode}); see above") from None
    env: dict[str, str] = {}
    for line in out.splitlines():
        words = shlex.split(line)
        if len(words) == 2 and words[0] == "export" and "=" in words[1]:
            key, value = words[1].split("=", 1)
            env[key] = value
    for key in ("KAFKA_BOOTSTRAP_SERVERS", "TEST_DATABASE_URL", "TEST_DATABASE_ADMIN_URL"):
        if key not in env:
            raise BenchError(f"scripts/services printed no {key}")
    if not was_up:
        return env, lambda: _services("down", "stopping the services this run started")
    if "kafka" not in was_up:
        return env, lambda: _services("stop-kafka", "stopping the broker this run started")
    if "postgres" not in was_up:
        say("PostgreSQL was started by this run and stays up (Kafka was already running)")
    return env, None


def _services(verb: str, message: str) -> None:
    say(f"{message} (scripts/services {verb})")
    subprocess.run([str(SERVICES), verb], timeout=120, check=False)


def libpq(url: str) -> str:
    """A SQLAlchemy psycopg URL as a libpq conninfo URL."""
    return url.replace("postgresql+psycopg://", "postgresql://", 1)


def create_database(base_url: str, admin_url: str) -> tuple[str, Callable[[], None]]:
    """A fresh, empty database owned by the application user; returns (url, drop)."""
    import psycopg
    from sqlalchemy.engine import make_url

    base = make_url(base_url)
    name = unique("bench").replace("-", "_")
    owner = base.username
    with psycopg.connect(libpq(admin_url), autocommit=True, connect_timeout=10) as conn:
        conn.execute(f'CREATE DATABASE "{name}"' + (f' OWNER "{owner}"' if owner else ""))

    def drop() -> None:
        with psycopg.connect(libpq(admin_url), autocommit=True, connect_timeout=10) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')

    return base.set(database=name).render_as_string(hide_password=False), drop


def create_topic(bootstrap: str, partitions: int = 3) -> tuple[str, Callable[[], None]]:
    """A fresh topic; returns (name, delete). Deleting uses a fresh client, bounded."""
    from kafka.admin import KafkaAdminClient, NewTopic

    name = unique("bench-events")
    admin = KafkaAdminClient(bootstrap_servers=bootstrap.split(","))
    try:
        admin.create_topics([NewTopic(name, partitions, 1)])
    finally:
        admin.close()

    def delete() -> None:
        from kafka.errors import KafkaError

        client = KafkaAdminClient(bootstrap_servers=bootstrap.split(","))

        def deleted() -> bool:
            try:
                client.delete_topics([name])
                return True
            except KafkaError:
                return False

        try:
            wait_until(deleted, timeout=30, what=f"deleting topic {name}", interval=0.5)
        finally:
            client.close()

    return name, delete


def ensure_tool(binary: str, package: str) -> str:
    """The path of a Debian tool, installed with apt-get when missing (we are root)."""
    found = shutil.which(binary)
    if found:
        return found
    apt = shutil.which("apt-get")
    if apt is None:
        raise BenchError(f"{binary} is missing and there is no apt-get; install {package}")
    say(f"{binary} is missing: apt-get update, then apt-get install -y {package}")
    lock = ["-o", "DPkg::Lock::Timeout=180"]
    for args in ([apt, *lock, "update", "-q"], [apt, *lock, "install", "-y", "-q", package]):
        started = time.monotonic()
        proc = subprocess.run(args, capture_output=True, text=True, timeout=600)
        if proc.returncode != 0:
            last = (proc.stderr or proc.stdout).strip().splitlines()[-1:] or ["no output"]
            raise BenchError(f"{' '.join(args[:1] + args[3:])} failed: {last[0]}")
        say(f"  {args[3]} done in {time.monotonic() - started:.0f}s")
    found = shutil.which(binary)
    if not found:
        raise BenchError(f"{package} is installed but {binary} is not on PATH")
    return found
