"""docker-compose.yml cannot be run here (no Docker engine); keep it consistent with the code."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import yaml

from projector.cli import build_parser

pytestmark = pytest.mark.unit

ROOT = Path(__file__).resolve().parents[2]


def _compose() -> dict:
    return yaml.safe_load((ROOT / "docker-compose.yml").read_text())


def test_the_stack_has_kafka_postgres_projector_and_api() -> None:
    services = _compose()["services"]
    assert {"kafka", "postgres", "migrate", "projector", "query-api"} <= set(services)
    assert services["kafka"]["environment"]["KAFKA_PROCESS_ROLES"] == "broker,controller"


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
