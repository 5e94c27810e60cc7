"""docker-compose.yml cannot be run here (no Docker engine); keep it consistent with the code."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import yaml

from devservices.broker_config import (
    BROKER_LISTENER,
    CLUSTER,
    CONTROLLER_LISTENER,
    DEFAULT_HEAP_OPTS,
    NODE_ID,
    TOPOLOGY_KEYS,
    env_name,
    is_cluster_id,
    topology,
)
from projector.cli import build_parser

pytestmark = pytest.mark.unit

ROOT = Path(__file__).resolve().parents[2]


def _compose() -> dict:
    return yaml.safe_load((ROOT / "docker-compose.yml").read_text())


def test_the_stack_has_kafka_postgres_projector_and_api() -> None:
    services = _compose()["services"]
    assert {"kafka", "postgres", "migrate", "projector", "query-api"} <= set(services)


def _kafka_env() -> dict[str, str]:
    return {key: str(value) for key, value in _compose()["services"]["kafka"]["environment"].items()}


def test_the_compose_broker_has_the_settings_of_the_test_broker() -> None:
    """Every KAFKA_* setting but the network layout and the heap is the one definition
    in devservices/broker_config.py (which scripts/services writes), and nothing else."""
    env = _kafka_env()
    layout = {env_name(key) for key in TOPOLOGY_KEYS}
    settings = {k: v for k, v in env.items() if k.startswith("KAFKA_")
                and k not in layout and k != "KAFKA_HEAP_OPTS"}
    assert settings == {env_name(key): value for key, value in CLUSTER.items()}
    assert env["KAFKA_HEAP_OPTS"] == DEFAULT_HEAP_OPTS
    assert is_cluster_id(env["CLUSTER_ID"])


def _listeners(value: str) -> dict[str, int]:
    found = {}
    for item in value.split(","):
        name, _, address = item.partition("://")
        found[name] = int(address.rpartition(":")[2])
    return found


def _check_layout(props: dict[str, str]) -> None:
    """The rules a single-node KRaft layout must obey, wherever it runs."""
    listeners = _listeners(props["listeners"])
    protocols = dict(item.split(":") for item in props["listener.security.protocol.map"].split(","))
    assert {BROKER_LISTENER, CONTROLLER_LISTENER} <= set(listeners)
    assert set(listeners) == set(protocols)
    advertised = _listeners(props["advertised.listeners"])
    assert BROKER_LISTENER in advertised and CONTROLLER_LISTENER not in advertised
    assert set(advertised) <= set(listeners)
    voter = props["controller.quorum.voters"]
    assert voter.startswith(f"{NODE_ID}@")
    assert int(voter.rpartition(":")[2]) == listeners[CONTROLLER_LISTENER]
    assert props["log.dirs"]


def test_the_compose_broker_layout_follows_the_same_rules_as_the_test_broker() -> None:
    env = _kafka_env()
    _check_layout({key: env[env_name(key)] for key in TOPOLOGY_KEYS})
    _check_layout(topology(49092, 49093, ROOT / ".services" / "kafka" / "data"))


def test_the_kafka_image_matches_the_broker_the_tests_use() -> None:
    pom = (ROOT / "services/kafka/pom.xml").read_text()
    version = re.search(r"<kafka.version>([^<]+)</kafka.version>", pom)
    assert version is not None
    assert _compose()["services"]["kafka"]["image"] == f"apache/kafka:{version.group(1)}"


def test_projector_commands_in_the_stack_are_real_commands() -> None:
    services = _compose()["services"]
    for name in ("migrate", "projector"):
        command = services[name]["command"]
        assert command[0] == "projector"
        build_parser().parse_args(command[1:])  # exits on an unknown command or flag


def test_the_app_uses_postgresql_through_psycopg() -> None:
    env = _compose()["x-app"]["environment"]
    assert env["DATABASE_URL"].startswith("postgresql+psycopg://")
    assert env["KAFKA_BOOTSTRAP_SERVERS"] == "kafka:9092"


# ---------------------------------------------------------------- the Debezium relay


def _connector_file() -> Path:
    return ROOT / "services" / "connect" / "outbox-connector.json"


def test_the_stack_has_the_relay_and_its_one_shot_registration() -> None:
    services = _compose()["services"]
    assert {"connect", "connect-register"} <= set(services)
    assert services["connect-register"]["restart"] == "no"
    assert services["connect-register"]["depends_on"]["connect"]["condition"] == "service_healthy"


def test_the_registration_puts_the_repositorys_connector_file() -> None:
    from devservices.connect import load_connector_file

    register = _compose()["services"]["connect-register"]
    mounts = {m.split(":")[1]: m.split(":")[0] for m in register["volumes"]}
    assert mounts["/connector/outbox-connector.json"] == "./services/connect/outbox-connector.json"
    command = register["entrypoint"]
    assert command[0] == "curl" and "-f" in "".join(a for a in command if a.startswith("-f"))
    assert "@/connector/outbox-connector.json" in command
    name = load_connector_file(_connector_file())["name"]
    assert command[-1] == f"http://connect:8083/connectors/{name}/config"
    assert command[command.index("-X") + 1] == "PUT"  # idempotent: create or update


def test_the_compose_worker_gives_every_placeholder_of_the_connector_file() -> None:
    from devservices.connect import load_connector_file, placeholders

    env = _compose()["services"]["connect"]["environment"]
    needed = set(placeholders(load_connector_file(_connector_file())).values())
    assert needed <= set(env), needed - set(env)
    assert env["OUTBOX_DATABASE_HOSTNAME"] == "postgres"
    assert env["OUTBOX_TOPIC"] == "${KAFKA_TOPIC:-delivery-events}"


def test_the_compose_worker_matches_the_services_worker() -> None:
    from devservices.connect import worker_properties

    env = _compose()["services"]["connect"]["environment"]
    props = worker_properties(8083, "kafka:9092")
    assert env["BOOTSTRAP_SERVERS"] == props["bootstrap.servers"]
    assert env["GROUP_ID"] == props["group.id"]
    assert env["CONFIG_STORAGE_TOPIC"] == props["config.storage.topic"]
    assert env["OFFSET_STORAGE_TOPIC"] == props["offset.storage.topic"]
    assert env["STATUS_STORAGE_TOPIC"] == props["status.storage.topic"]
    assert env["CONNECT_CONFIG_PROVIDERS"] == props["config.providers"]
    assert env["CONNECT_CONFIG_PROVIDERS_ENV_CLASS"] == props["config.providers.env.class"]


def test_the_debezium_image_matches_the_jars_the_tests_use() -> None:
    pom = (ROOT / "services/connect/pom.xml").read_text()
    version = re.search(r"<debezium.version>([^<]+)</debezium.version>", pom)
    assert version is not None
    services = _compose()["services"]
    for name in ("connect", "connect-register"):
        assert services[name]["image"] == f"quay.io/debezium/connect:{version.group(1)}"


def test_the_compose_postgres_has_the_logical_log_and_the_outbox_tables() -> None:
    from devservices.postgres import settings_conf

    postgres = _compose()["services"]["postgres"]
    command = postgres["command"]
    conf = settings_conf(5432, ROOT)
    for setting in ("wal_level", "max_wal_senders", "max_replication_slots"):
        value = re.search(rf"^{setting} = (\S+)$", conf, re.MULTILINE)
        assert value is not None
        assert f"{setting}={value.group(1)}" in command
    assert "./sql/outbox.sql:/docker-entrypoint-initdb.d/10-outbox.sql:ro" in postgres["volumes"]


def _mounts(service: str) -> dict[str, str]:
    """Container path -> repository path of a service's bind mounts."""
    found = {}
    for volume in _compose()["services"][service].get("volumes", []):
        source, target = volume.split(":")[:2]
        if source.startswith("./"):
            found[target] = source[2:]
    return found


def test_prometheus_and_grafana_are_provisioned_with_the_rules_and_dashboards() -> None:
    """Prometheus loads the repository's config and rules (the config names the rules
    where they are mounted, and scrapes the API's service); Grafana gets the data
    source and a dashboards provider whose path is where the dashboards are mounted."""
    services = _compose()["services"]
    prometheus = _mounts("prometheus")
    assert prometheus["/etc/prometheus/prometheus.yml"] == "monitoring/prometheus/prometheus.yml"
    config = yaml.safe_load((ROOT / prometheus["/etc/prometheus/prometheus.yml"]).read_text())
    for rule_file in config["rule_files"]:
        assert (ROOT / prometheus[rule_file]).is_file()
    assert prometheus[config["rule_files"][0]] == "monitoring/prometheus/rules.yml"
    targets = [t for job in config["scrape_configs"] for c in job["static_configs"]
               for t in c["targets"]]
    api_port = services["query-api"]["command"][services["query-api"]["command"].index("--port") + 1]
    assert targets == [f"query-api:{api_port}"]
    grafana = _mounts("grafana")
    provisioning = ROOT / grafana["/etc/grafana/provisioning"]
    sources = yaml.safe_load((provisioning / "datasources" / "prometheus.yml").read_text())
    assert [d["url"] for d in sources["datasources"]] == ["http://prometheus:9090"]
    providers = yaml.safe_load((provisioning / "dashboards" / "dashboards.yml").read_text())
    path = providers["providers"][0]["options"]["path"]
    dashboards = ROOT / grafana[path]
    assert sorted(p.name for p in dashboards.glob("*.json")) == ["delivery-read-model.json"]
    home = services["grafana"]["environment"]["GF_DASHBOARDS_DEFAULT_HOME_DASHBOARD_PATH"]
    assert (dashboards / Path(home).relative_to(path)).is_file()
