"""The services tool's decisions, without starting anything: state file, ports,
readiness, versions, settings and the command line's answers on an empty directory."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

from devservices import broker, connect, postgres
from devservices._proc import choose_ports, pid_matches, tail_lines
from devservices.broker_config import (
    CLUSTER,
    LOCAL_TUNING,
    is_cluster_id,
    new_cluster_id,
    render_properties,
    server_properties,
)
from devservices.cli import env_lines, main
from devservices.errors import ServicesError
from devservices.settings import Settings
from devservices.state import State, load_state, parse_state, render_state, save_state

pytestmark = pytest.mark.unit

# What the former bash script wrote (printf %q): a running checkout's state must still load.
BASH_STATE = """\
# written by scripts/services; do not edit
KAFKA_PORT=55265
KAFKA_CONTROLLER_PORT=60879
KAFKA_PID=''
KAFKA_LIB=/work/main/.services/kafka-lib/843422639ceea9f5
PG_PORT=60977
PG_DIR=/work/my\\ repo/.services/postgres
PG_SOCKET_DIR=''
PG_BIN_DIR=/usr/lib/postgresql/15/bin
"""


def test_the_state_written_by_the_bash_script_loads() -> None:
    state = parse_state(BASH_STATE)
    assert state == State(
        kafka_port=55265, kafka_controller_port=60879, kafka_pid=None,
        kafka_lib=Path("/work/main/.services/kafka-lib/843422639ceea9f5"), pg_port=60977,
        pg_dir=Path("/work/my repo/.services/postgres"), pg_socket_dir=None,
        pg_bin_dir=Path("/usr/lib/postgresql/15/bin"),
    )


def test_the_state_round_trips_and_stays_shell_syntax(tmp_path: Path) -> None:
    state = State(kafka_port=1, kafka_pid=42, pg_dir=Path("/tmp/it's here"), pg_port=5)
    save_state(tmp_path / "state.env", state)
    assert load_state(tmp_path / "state.env") == state
    assert os.listdir(tmp_path) == ["state.env"]  # the temporary file was renamed
    sourced = subprocess.run(
        ["bash", "-c", 'source "$1" && printf "%s|%s|%s" "$PG_DIR" "$KAFKA_PID" "$PG_BIN_DIR"',
         "_", str(tmp_path / "state.env")],
        capture_output=True, text=True, check=True, timeout=10,
    ).stdout
    assert sourced == "/tmp/it's here|42|"
    assert render_state(parse_state(render_state(state))) == render_state(state)


def test_a_missing_state_is_empty_and_a_garbled_number_is_unset(tmp_path: Path) -> None:
    assert load_state(tmp_path / "none.env") == State()
    assert parse_state("KAFKA_PID=12x\nPG_PORT=-1\nOTHER=3\n") == State()
    with pytest.raises(ServicesError, match="line 1"):
        parse_state("PG_DIR='unterminated\n")


def test_ports_are_kept_while_free_and_distinct() -> None:
    fresh = lambda n: [7000 + i for i in range(n)]  # noqa: E731
    assert choose_ports((9092, 9093), lambda p: True, fresh) == [9092, 9093]
    assert choose_ports((9092, 9093), lambda p: p != 9093, fresh) == [7000, 7001]
    assert choose_ports((9092, 9092), lambda p: True, fresh) == [7000, 7001]
    assert choose_ports((None, 9093), lambda p: True, fresh) == [7000, 7001]
    assert choose_ports((None,), lambda p: True, fresh) == [7000]


def test_a_recycled_or_dead_pid_is_not_ours() -> None:
    assert pid_matches(os.getpid(), "python")
    assert not pid_matches(os.getpid(), "/nowhere/server.properties")
    done = subprocess.Popen(["true"])
    done.wait(timeout=10)
    assert not pid_matches(done.pid, "true")
    assert not pid_matches(None, "") and not pid_matches(0, "")
    settings = Settings.from_env({"SERVICES_DIR": "/nowhere"})
    assert not broker.process_alive(settings, State(kafka_pid=os.getpid()))


def test_readiness_needs_an_unfenced_broker_and_a_controller() -> None:
    broker_1 = {"broker_id": 1, "host": "127.0.0.1", "port": 1, "is_fenced": False}
    assert broker.cluster_ready({"controller_id": 1, "brokers": [broker_1]})
    assert not broker.cluster_ready({"controller_id": -1, "brokers": [broker_1]})
    assert not broker.cluster_ready({"controller_id": 1, "brokers": []})
    assert not broker.cluster_ready({"controller_id": 1, "brokers": [{**broker_1, "is_fenced": True}]})
    assert broker.cluster_ready({"controller_id": 1, "brokers": [{"broker_id": 1}]})  # older brokers


def test_nothing_listening_is_not_ready() -> None:
    from devservices._proc import free_ports

    assert not broker.probe(free_ports(1)[0], timeout=1.0)


def test_the_java_version_is_read_from_its_settings() -> None:
    shown = "Property settings:\n    java.specification.version = 17\n    java.vendor = X\n"
    assert broker.java_major(shown) == 17
    assert broker.java_major("    java.specification.version = 1.8\n") == 1
    assert broker.java_major("nothing") is None


def test_the_newest_postgresql_bin_is_chosen(tmp_path: Path) -> None:
    for version in ("9.6", "15", "16", "17"):
        bin_dir = tmp_path / version / "bin"
        bin_dir.mkdir(parents=True)
        for tool in ("initdb", "pg_ctl"):
            (bin_dir / tool).write_text("#!/bin/sh\n")
            (bin_dir / tool).chmod(0o755 if version != "17" else 0o644)  # 17: not executable
    assert postgres.newest_bin(tmp_path.glob("*/bin")) == tmp_path / "16" / "bin"
    assert postgres.newest_bin([]) is None


def test_postgresql_runs_without_durability_on_loopback() -> None:
    conf = postgres.settings_conf(5433, Path("/tmp/it's"))
    for line in ("listen_addresses = '127.0.0.1'", "port = 5433", "fsync = off",
                 "synchronous_commit = off", "full_page_writes = off", "max_connections = 200",
                 "unix_socket_directories = '/tmp/it''s'"):
        assert line in conf.splitlines()
    # Debezium's relay: the logical log, and a bound on what a forgotten slot keeps
    for line in ("wal_level = logical", "max_slot_wal_keep_size = 2GB"):
        assert line in conf.splitlines()


def test_the_broker_properties_are_the_one_definition_plus_its_layout(tmp_path: Path) -> None:
    props = server_properties(9092, 9093, tmp_path)
    assert props.items() >= {**CLUSTER, **LOCAL_TUNING}.items()
    assert props["listeners"] == "PLAINTEXT://127.0.0.1:9092,CONTROLLER://127.0.0.1:9093"
    assert props["controller.quorum.voters"] == "1@127.0.0.1:9093"
    assert props["log.dirs"] == str(tmp_path)
    text = render_properties(props)
    assert text.startswith("# generated by scripts/services")
    assert "num.partitions=3\n" in text


def test_cluster_ids_are_kraft_ids() -> None:
    ids = {new_cluster_id() for _ in range(200)}
    assert len(ids) == 200 and all(is_cluster_id(i) for i in ids)
    assert not is_cluster_id("-" + new_cluster_id()[1:])
    assert not is_cluster_id("short")


def test_settings_from_the_environment(tmp_path: Path) -> None:
    settings = Settings.from_env({}, root=tmp_path)
    assert settings.services_dir == tmp_path / ".services"
    assert (settings.kafka_heap_opts, settings.kafka_start_timeout, settings.pg_start_timeout) == (
        "-Xms256m -Xmx512m", 90, 30)
    assert (settings.java, settings.mvn, settings.pg_bin) == ("java", "mvn", None)
    settings = Settings.from_env({"SERVICES_DIR": str(tmp_path / "s"), "KAFKA_START_TIMEOUT": "5",
                                  "JAVA": "/opt/java", "PG_BIN": "/pg", "MVN": "mvnw"})
    assert settings.services_dir == tmp_path / "s"
    assert (settings.kafka_start_timeout, settings.java, settings.mvn) == (5, "/opt/java", "mvnw")
    assert settings.pg_bin == Path("/pg")
    with pytest.raises(ServicesError, match="PG_START_TIMEOUT"):
        Settings.from_env({"PG_START_TIMEOUT": "soon"})


def test_the_env_lines_are_shell_assignments() -> None:
    assert env_lines(State(kafka_port=9092, pg_port=5432)) == [
        "export KAFKA_BOOTSTRAP_SERVERS=127.0.0.1:9092",
        "export TEST_DATABASE_URL=postgresql+psycopg://delivery@127.0.0.1:5432/delivery",
        "export TEST_DATABASE_ADMIN_URL=postgresql+psycopg://postgres@127.0.0.1:5432/postgres",
    ]


def test_log_tails_read_from_the_end(tmp_path: Path) -> None:
    log = tmp_path / "x.log"
    log.write_text("".join(f"line {i}\n" for i in range(100_000)))
    assert tail_lines(log, 3) == ["line 99997", "line 99998", "line 99999"]
    log.write_text("only\n")
    assert tail_lines(log, 60) == ["only"]


def test_the_command_line_on_an_empty_directory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("SERVICES_DIR", str(tmp_path / "services"))
    assert main(["help"]) == 0 and "Usage: scripts/services up" in capsys.readouterr().out
    assert main([]) == 2 and "Usage:" in capsys.readouterr().err
    assert main(["start"]) == 2
    capsys.readouterr()
    assert main(["down"]) == 0 and "nothing to stop" in capsys.readouterr().err
    assert main(["status"]) == 1
    assert capsys.readouterr().out == "kafka:    down\npostgres: down\n"
    assert main(["up", "--kafka"]) == 1 and "unknown option --kafka" in capsys.readouterr().err
    assert main(["stop-connect", "x"]) == 1 and "unexpected argument" in capsys.readouterr().err
    assert main(["env"]) == 1 and "never started" in capsys.readouterr().err
    assert main(["logs"]) == 1 and "no logs yet" in capsys.readouterr().err
    assert main(["logs", "-n"]) == 1 and "-n needs a number" in capsys.readouterr().err
    assert main(["logs", "-x"]) == 1 and "unknown option -x" in capsys.readouterr().err
    assert main(["down", "--all"]) == 1 and "unknown option --all" in capsys.readouterr().err


def test_the_wrapper_runs_this_checkout_from_any_directory(tmp_path: Path) -> None:
    """Called from inside another checkout, scripts/services still runs its own
    package (python -m would otherwise import the current directory's first)."""
    decoy = tmp_path / "devservices"
    decoy.mkdir()
    (decoy / "__init__.py").write_text("")
    (decoy / "__main__.py").write_text("print('decoy')\n")
    shown = subprocess.run(
        [str(Path(__file__).resolve().parents[2] / "scripts" / "services"), "help"],
        capture_output=True, text=True, timeout=60, cwd=tmp_path,
    )
    assert shown.returncode == 0, shown.stderr
    assert shown.stdout.startswith("Local backing services for tests and development")


# ---------------------------------------------------------------- Kafka Connect


def test_the_connector_file_is_the_outbox_router_with_its_values_from_the_environment() -> None:
    settings = Settings.from_env({})
    config = connect.load_connector_file(settings.connector_config)
    assert config["connector.class"] == "io.debezium.connector.postgresql.PostgresConnector"
    assert config["transforms.outbox.type"] == "io.debezium.transforms.outbox.EventRouter"
    # key = the delivery id, as text; the event type as a header next to Debezium's `id`
    assert config["transforms.outbox.table.field.event.key"] == "aggregateid"
    assert config["key.converter"] == "org.apache.kafka.connect.storage.StringConverter"
    assert config["transforms.outbox.table.fields.additional.placement"] == "type:header:eventType"
    assert connect.placeholders(config) == {
        "database.hostname": "OUTBOX_DATABASE_HOSTNAME",
        "database.port": "OUTBOX_DATABASE_PORT",
        "database.user": "OUTBOX_DATABASE_USER",
        "database.password": "OUTBOX_DATABASE_PASSWORD",
        "database.dbname": "OUTBOX_DATABASE_DBNAME",
        "transforms.outbox.route.topic.replacement": "OUTBOX_TOPIC",
    }
    # what the services' worker gives them
    env = connect.connect_env(State(pg_port=5999), {"KAFKA_TOPIC": "t1"})
    assert set(connect.placeholders(config).values()) <= set(env)
    assert env["OUTBOX_DATABASE_PORT"] == "5999" and env["OUTBOX_TOPIC"] == "t1"
    assert connect.connect_env(State(pg_port=1), {})["OUTBOX_TOPIC"] == "delivery-events"


def test_a_test_resolves_placeholders_and_overrides_keys() -> None:
    settings = Settings.from_env({})
    config = connect.connector_config(
        settings.connector_config, {"OUTBOX_TOPIC": "mine", "OUTBOX_DATABASE_PORT": "1"},
        {"slot.name": "s1"})
    assert config["transforms.outbox.route.topic.replacement"] == "mine"
    assert config["database.port"] == "1"
    assert config["database.hostname"] == "${env:OUTBOX_DATABASE_HOSTNAME}"  # left to the worker
    assert config["slot.name"] == "s1"


def test_the_worker_is_distributed_on_loopback_with_the_env_provider() -> None:
    props = connect.worker_properties(48083, "127.0.0.1:9092")
    assert props["listeners"] == "http://127.0.0.1:48083"
    assert props["bootstrap.servers"] == "127.0.0.1:9092"
    assert props["config.providers.env.class"].endswith("EnvVarConfigProvider")
    assert {props[k] for k in ("config.storage.topic", "offset.storage.topic",
                               "status.storage.topic")} == {
        "delivery-relay-configs", "delivery-relay-offsets", "delivery-relay-status"}
    assert "plugin.path" not in props  # the jars are on the classpath


def test_connector_status_is_running_only_with_all_tasks_running() -> None:
    up = {"connector": {"state": "RUNNING"}, "tasks": [{"state": "RUNNING"}]}
    assert connect.running(up)
    assert not connect.running({"connector": {"state": "RUNNING"}, "tasks": []})
    assert not connect.running(None)
    failed = {"connector": {"state": "RUNNING"},
              "tasks": [{"state": "FAILED", "trace": "boom"}]}
    assert not connect.running(failed) and connect.failure(failed) == "boom"


def test_the_connect_pom_matches_the_broker_and_debezium_versions() -> None:
    import re

    settings = Settings.from_env({})
    kafka = re.search(r"<kafka.version>([^<]+)<", settings.kafka_pom.read_text())
    ours = settings.connect_pom.read_text()
    assert kafka is not None
    assert f"<kafka.version>{kafka.group(1)}</kafka.version>" in ours
    assert "<debezium.version>3.6.1.Final</debezium.version>" in ours
