"""Local backing services for tests and development, without Docker:
  * a real Apache Kafka broker (KRaft, one combined broker+controller node),
    jars resolved from Maven Central via services/kafka/pom.xml;
  * a real PostgreSQL from the installed server packages (/usr/lib/postgresql/N/bin).
Both listen on 127.0.0.1 only, on free ports picked at first start (and reused
afterwards while they stay free). Everything lives under .services/ (gitignored).

  * on demand, Kafka Connect with Debezium's PostgreSQL connector (the delivery core's
    outbox relay), jars from services/connect/pom.xml.
Usage: scripts/services up [--connect] | down [--purge] | env | status | logs [-f] [-n N]
       | stop-kafka | stop-connect

  up      start whatever is not running, wait until both really answer, then print
          the same lines as `env` (progress goes to stderr), so both
            eval "$(scripts/services up)"   and   eval "$(scripts/services env)"
          work. Idempotent.
          --connect also starts Kafka Connect, creates the outbox tables in the
          'delivery' database (sql/outbox.sql) and registers the connector of
          services/connect/outbox-connector.json (topic: $KAFKA_TOPIC or
          delivery-events); env then also prints KAFKA_CONNECT_URL.
  down    stop all (pg_ctl stop -m fast; SIGTERM then SIGKILL for the JVMs).
          --purge also deletes their data (not the jar cache).
  env     print  export KAFKA_BOOTSTRAP_SERVERS=...  export TEST_DATABASE_URL=...
          export TEST_DATABASE_ADMIN_URL=...   (exit 1 if not up)
  status  one line per service; exit 0 only when both answer.
  logs    last lines of both logs; -f follows them.
  stop-kafka  stop only the broker (for outage tests); `up` starts it again.
  stop-connect  stop only Kafka Connect; `up --connect` starts it again.

Tunables (environment): SERVICES_DIR (default <repo>/.services), KAFKA_HEAP_OPTS
(default "-Xms256m -Xmx512m"), KAFKA_START_TIMEOUT (90), PG_START_TIMEOUT (30),
CONNECT_HEAP_OPTS (default "-Xms128m -Xmx512m"), CONNECT_START_TIMEOUT (180),
PG_BIN (directory holding initdb/pg_ctl; default: newest /usr/lib/postgresql/*/bin),
JAVA (java binary; default $JAVA_HOME/bin/java or java), MVN (default mvn).
"""

from __future__ import annotations

import logging
import os
import shlex
import shutil
import subprocess
import sys
from collections.abc import Callable, Sequence

from devservices import broker, connect, postgres
from devservices._proc import locked, say
from devservices.errors import ServicesError
from devservices.settings import Settings
from devservices.state import State, load_state, save_state

Command = Callable[[Settings, list[str]], int]


def env_lines(state: State, connect_url: str | None = None) -> list[str]:
    """The lines ``up`` and ``env`` print, for a shell to evaluate."""
    values = {
        "KAFKA_BOOTSTRAP_SERVERS": f"127.0.0.1:{state.kafka_port}",
        "TEST_DATABASE_URL": f"postgresql+psycopg://{postgres.APP_USER}@127.0.0.1:"
        f"{state.pg_port}/{postgres.APP_DB}",
        "TEST_DATABASE_ADMIN_URL": f"postgresql+psycopg://{postgres.SUPERUSER}@127.0.0.1:"
        f"{state.pg_port}/postgres",
    }
    if connect_url is not None:
        values["KAFKA_CONNECT_URL"] = connect_url
    return [f"export {name}={shlex.quote(value)}" for name, value in values.items()]


def _print_env(settings: Settings, state: State) -> None:
    url = connect.url(state) if connect.process_alive(settings, state) else None
    print("\n".join(env_lines(state, url)), flush=True)


def _no_arguments(command: str, args: list[str]) -> None:
    if args:
        raise ServicesError(f"{command}: unexpected argument {args[0]}")


def cmd_up(settings: Settings, args: list[str]) -> int:
    if args not in ([], ["--connect"]):
        raise ServicesError(f"up: unknown option {args[0]}")
    with locked(settings.services_dir):
        state = load_state(settings.state_file)
        try:
            postgres.start(settings, state)
            broker.start(settings, state)
            if args == ["--connect"]:
                connect.start(settings, state)
                connect.ensure_outbox(settings, state)
                connect.register_default(settings, state)
        finally:
            save_state(settings.state_file, state)
        _print_env(settings, state)
    return 0


def cmd_down(settings: Settings, args: list[str]) -> int:
    if args not in ([], ["--purge"]):
        raise ServicesError(f"down: unknown option {args[0]}")
    purge = args == ["--purge"]
    if not settings.services_dir.is_dir():
        say("nothing to stop")
        return 0
    with locked(settings.services_dir):
        state = load_state(settings.state_file)
        connect.stop(settings, state)
        broker.stop(settings, state)
        postgres.stop(settings, state)
        if purge:
            say("removing Kafka and PostgreSQL data")
            pg_dir = state.pg_dir or settings.services_dir / "postgres"
            shutil.rmtree(settings.kafka_dir, ignore_errors=True)
            shutil.rmtree(settings.connect_dir, ignore_errors=True)
            shutil.rmtree(pg_dir, ignore_errors=True)
            if not pg_dir.is_relative_to(settings.services_dir):
                # the TMPDIR fallback location leaves an empty parent
                try:
                    pg_dir.parent.rmdir()
                except OSError:
                    pass
            if state.pg_socket_dir is not None and not state.pg_socket_dir.is_relative_to(
                pg_dir
            ):
                shutil.rmtree(state.pg_socket_dir, ignore_errors=True)
            state.pg_dir = state.pg_socket_dir = None
        save_state(settings.state_file, state)  # ports kept: the next `up` reuses them
    say("stopped")
    return 0


def cmd_stop_kafka(settings: Settings, args: list[str]) -> int:
    """Stop only the broker (outage tests); `up` starts it again on the same ports."""
    _no_arguments("stop-kafka", args)
    with locked(settings.services_dir):
        state = load_state(settings.state_file)
        broker.stop(settings, state)
        save_state(settings.state_file, state)
    say("Kafka stopped")
    return 0


def cmd_stop_connect(settings: Settings, args: list[str]) -> int:
    """Stop only Kafka Connect; `up --connect` starts it again on the same port."""
    _no_arguments("stop-connect", args)
    with locked(settings.services_dir):
        state = load_state(settings.state_file)
        connect.stop(settings, state)
        save_state(settings.state_file, state)
    say("Kafka Connect stopped; its replication slots keep PostgreSQL's log for the relay "
        "until it is back (at most max_slot_wal_keep_size)")
    return 0


def cmd_env(settings: Settings, args: list[str]) -> int:
    _no_arguments("env", args)
    state = load_state(settings.state_file)
    if state.kafka_port is None or state.pg_port is None:
        raise ServicesError("services were never started; run scripts/services up")
    if not broker.process_alive(settings, state) or not postgres.process_alive(state):
        raise ServicesError("services are not running; run scripts/services up")
    _print_env(settings, state)
    return 0


def status_lines(settings: Settings, state: State) -> tuple[list[str], bool]:
    """One line per service, and whether both answer."""
    kafka_up = broker.is_up(settings, state)
    if kafka_up:
        kafka = (f"up    127.0.0.1:{state.kafka_port} (pid {state.kafka_pid}, "
                 f"controller port {state.kafka_controller_port})")
    elif broker.process_alive(settings, state):
        kafka = f"starting/not answering (pid {state.kafka_pid}, port {state.kafka_port})"
    else:
        kafka = "down"
    pg_up = postgres.is_up(state)
    if pg_up:
        pg = (f"up    127.0.0.1:{state.pg_port} (pid {postgres.postmaster_pid(state)}, "
              f"data {postgres.data_dir(state)})")
    elif postgres.process_alive(state):
        pg = f"starting/not answering (port {state.pg_port})"
    else:
        pg = "down"
    lines = [f"kafka:    {kafka}", f"postgres: {pg}"]
    # Kafka Connect runs on demand (`up --connect`): a line only while it runs
    if connect.process_alive(settings, state):
        answering = "up   " if connect.is_up(settings, state) else "starting/not answering"
        lines.append(f"connect:  {answering} {connect.url(state)} (pid {state.connect_pid})")
    return lines, kafka_up and pg_up


def cmd_status(settings: Settings, args: list[str]) -> int:
    _no_arguments("status", args)
    lines, up = status_lines(settings, load_state(settings.state_file))
    print("\n".join(lines), flush=True)
    return 0 if up else 1


def cmd_logs(settings: Settings, args: list[str]) -> int:
    follow, count = False, "50"
    rest = list(args)
    while rest:
        arg = rest.pop(0)
        if arg in ("-f", "--follow"):
            follow = True
        elif arg == "-n":
            if not rest:
                raise ServicesError("logs: -n needs a number")
            count = rest.pop(0)
        else:
            raise ServicesError(f"logs: unknown option {arg}")
    state = load_state(settings.state_file)
    files = [str(settings.kafka_log)] if settings.kafka_log.is_file() else []
    if settings.connect_log.is_file():
        files.append(str(settings.connect_log))
    if state.pg_dir is not None and (state.pg_dir / "postgres.log").is_file():
        files.append(str(state.pg_dir / "postgres.log"))
    if not files:
        raise ServicesError(f"no logs yet under {settings.services_dir}")
    if follow:
        sys.stdout.flush()
        os.execvp("tail", ["tail", "-n", count, "-F", *files])
    return subprocess.run(["tail", "-n", count, *files]).returncode


COMMANDS: dict[str, Command] = {
    "up": cmd_up,
    "down": cmd_down,
    "env": cmd_env,
    "status": cmd_status,
    "logs": cmd_logs,
    "stop-kafka": cmd_stop_kafka,
    "stop-connect": cmd_stop_connect,
}


def main(argv: Sequence[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    if args[:1] in (["-h"], ["--help"], ["help"]):
        print(__doc__.strip() if __doc__ else "", flush=True)
        return 0
    command = COMMANDS.get(args[0]) if args else None
    if command is None:
        print(__doc__.strip() if __doc__ else "", file=sys.stderr)
        return 2
    # kafka-python reports refused connections while a broker starts; the probe's
    # answer is what counts, so its log records go nowhere.
    logging.getLogger("kafka").addHandler(logging.NullHandler())
    logging.getLogger("kafka").propagate = False
    try:
        return command(Settings.from_env(os.environ), args[1:])
    except ServicesError as exc:
        print(f"services: error: {exc}", file=sys.stderr, flush=True)
        return 1
