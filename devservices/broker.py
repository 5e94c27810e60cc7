"""The test Kafka broker: one KRaft node on loopback, jars resolved once by Maven."""

from __future__ import annotations

import re
import shutil
import subprocess
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from kafka.admin import KafkaAdminClient
from kafka.errors import KafkaError

from devservices import jars
from devservices._proc import (
    choose_ports,
    log_tail,
    pid_matches,
    pids_matching,
    say,
    terminate,
)
from devservices.broker_config import new_cluster_id, render_properties, server_properties
from devservices.errors import ServicesError
from devservices.settings import Settings
from devservices.state import State, save_state

STARTED_LINE = b"Kafka Server started"


# ---------------------------------------------------------------- readiness


def cluster_ready(cluster: Mapping[str, Any]) -> bool:
    """A described cluster serves clients: an unfenced broker and a known controller."""
    brokers = cluster.get("brokers") or []
    controller = cluster.get("controller_id")
    return (
        any(not broker.get("is_fenced", False) for broker in brokers)
        and isinstance(controller, int)
        and controller >= 0
    )


def probe(port: int, timeout: float = 3.0) -> bool:
    """The broker answers a DescribeCluster round trip (kafka-python's admin client),
    within ``timeout`` seconds for the connection and again for the request."""
    ms = int(timeout * 1000)
    try:
        admin = KafkaAdminClient(
            bootstrap_servers=[f"127.0.0.1:{port}"],
            client_id="services-probe",
            bootstrap_timeout_ms=ms,
            request_timeout_ms=ms,
            reconnect_backoff_max_ms=500,
        )
    except (KafkaError, OSError):
        return False
    try:
        return cluster_ready(admin.describe_cluster())
    except (KafkaError, OSError):
        return False
    finally:
        admin.close()


def process_alive(settings: Settings, state: State) -> bool:
    return pid_matches(state.kafka_pid, str(settings.kafka_props))


def is_up(settings: Settings, state: State) -> bool:
    return process_alive(settings, state) and state.kafka_port is not None and probe(
        state.kafka_port
    )


# ---------------------------------------------------------------- Java and jars


def java_major(output: str) -> int | None:
    """The Java major version in ``java -XshowSettings:properties -version`` output."""
    found = re.search(r"^\s*java\.specification\.version = (\d+)", output, re.MULTILINE)
    return int(found.group(1)) if found else None


def check_java(settings: Settings) -> None:
    if shutil.which(settings.java) is None:
        raise ServicesError(
            f"{settings.java} not found on PATH (Java 17+ is needed for the Kafka broker)"
        )
    shown = subprocess.run(
        [settings.java, "-XshowSettings:properties", "-version"],
        capture_output=True, text=True, timeout=60, stdin=subprocess.DEVNULL,
    )
    major = java_major(shown.stdout + shown.stderr)
    if major is None:
        raise ServicesError(f"cannot tell the Java version of {settings.java}")
    if major < 17:
        raise ServicesError(f"Kafka 4.x needs Java 17+, {settings.java} is {major}")


def lib_dir(settings: Settings) -> Path:
    """The broker classpath for this pom's content (a changed pom resolves again)."""
    return jars.lib_dir(settings.kafka_pom, settings.services_dir / "kafka-lib")


def ensure_lib(settings: Settings) -> Path:
    return jars.ensure_jars(settings, settings.kafka_pom, settings.services_dir / "kafka-lib",
                            "kafka_2.13-*.jar", "Kafka")


# ---------------------------------------------------------------- start and stop


def _log_opts(settings: Settings) -> list[str]:
    return [
        f"-Dlog4j2.configurationFile={settings.kafka_log4j}",
        f"-Dkafka.logs.dir={settings.kafka_dir}",
        "-Djava.awt.headless=true",
    ]


def _format_storage(settings: Settings, lib: Path) -> None:
    cluster_id = new_cluster_id()
    say(f"formatting KRaft storage (cluster id {cluster_id})")
    log = settings.kafka_dir / "format.log"
    with log.open("wb") as out:
        code = subprocess.run(
            [settings.java, "-Xmx256m", *_log_opts(settings), "-cp", f"{lib}/*",
             "kafka.tools.StorageTool", "format", "--cluster-id", cluster_id,
             "--config", str(settings.kafka_props), "--ignore-formatted"],
            stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT, timeout=300,
        ).returncode
    if code != 0:
        log_tail(log, "kafka-storage format")
        raise ServicesError("formatting Kafka storage failed")


def _launch(settings: Settings, lib: Path) -> subprocess.Popen[bytes]:
    """Start the broker as a daemon.

    Its own session (it outlives the caller's process group), stdin from /dev/null,
    output to console.log, and no other inherited descriptor: a daemon must never keep
    a caller's pipe open (``eval "$(scripts/services up)"`` has to return).
    """
    command = [
        settings.java, *settings.kafka_heap_opts.split(), "-XX:+UseG1GC",
        "-XX:MaxGCPauseMillis=20", *_log_opts(settings), "-cp", f"{lib}/*",
        "kafka.Kafka", str(settings.kafka_props),
    ]
    with (settings.kafka_dir / "console.log").open("ab") as console:
        process = subprocess.Popen(
            command, stdin=subprocess.DEVNULL, stdout=console, stderr=subprocess.STDOUT,
            start_new_session=True, close_fds=True,
        )
    return process


def _started(settings: Settings) -> bool:
    try:
        return STARTED_LINE in settings.kafka_log.read_bytes()
    except FileNotFoundError:
        return False


def _fail(settings: Settings, message: str) -> ServicesError:
    log_tail(settings.kafka_log, "Kafka broker")
    log_tail(settings.kafka_dir / "console.log", "Kafka console")
    return ServicesError(message)


def start(settings: Settings, state: State) -> None:
    """Start the broker unless it runs, then wait (bounded) until it answers."""
    launched: subprocess.Popen[bytes] | None = None
    if process_alive(settings, state):
        say(f"Kafka already running (pid {state.kafka_pid}); waiting for it to answer")
    else:
        check_java(settings)
        state.kafka_lib = lib = ensure_lib(settings)
        (settings.kafka_dir / "data").mkdir(parents=True, exist_ok=True)
        state.kafka_port, state.kafka_controller_port = choose_ports(
            (state.kafka_port, state.kafka_controller_port)
        )
        settings.kafka_props.write_text(render_properties(server_properties(
            state.kafka_port, state.kafka_controller_port, settings.kafka_dir / "data"
        )))
        if not (settings.kafka_dir / "data" / "meta.properties").is_file():
            _format_storage(settings, lib)
        if settings.kafka_log.is_file():
            settings.kafka_log.replace(settings.kafka_log.with_name("broker.log.prev"))
        say(f"starting Kafka on 127.0.0.1:{state.kafka_port} "
            f"(controller 127.0.0.1:{state.kafka_controller_port})")
        launched = _launch(settings, lib)
        state.kafka_pid = launched.pid
        save_state(settings.state_file, state)
    assert state.kafka_port is not None
    deadline = time.monotonic() + settings.kafka_start_timeout

    def exited() -> bool:
        # Our own child is watched through its handle: for a moment after the start its
        # /proc command line reads empty (the kernel is still setting up the exec).
        if launched is not None:
            return launched.poll() is not None
        return not process_alive(settings, state)

    while True:
        if exited():
            state.kafka_pid = None
            save_state(settings.state_file, state)
            raise _fail(settings, "Kafka exited during startup")
        # A fresh broker is probed once its log says it started; a running one (whose
        # log may have rolled over since) by the probe alone.
        if (launched is None or _started(settings)) and probe(state.kafka_port):
            break
        if time.monotonic() >= deadline:
            raise _fail(
                settings,
                f"Kafka did not answer within {settings.kafka_start_timeout:g}s (still "
                f"running as pid {state.kafka_pid}; 'scripts/services down' stops it)",
            )
        time.sleep(0.3)
    say(f"Kafka ready on 127.0.0.1:{state.kafka_port} (pid {state.kafka_pid})")


def stop(settings: Settings, state: State) -> None:
    """Stop our broker(s): the recorded pid, and any process started with our
    server.properties (a lost state file leaves no orphan)."""
    pids = set(pids_matching(str(settings.kafka_props)))
    if process_alive(settings, state) and state.kafka_pid is not None:
        pids.add(state.kafka_pid)
    for pid in sorted(pids):
        if not pid_matches(pid, "kafka.Kafka"):
            continue
        say(f"stopping Kafka (pid {pid})")
        terminate(pid, "Kafka", grace=45)
    state.kafka_pid = None
