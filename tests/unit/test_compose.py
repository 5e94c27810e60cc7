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
