"""Fixtures: real PostgreSQL and Kafka from `scripts/services`, fresh per test.

The services are started by the test command (``scripts/test``), which exports
``TEST_DATABASE_URL`` and ``KAFKA_BOOTSTRAP_SERVERS``. A test that needs a service
that is not configured fails: nothing is skipped silently.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from schema.db import make_engine, migrate
from tests.helpers import create_pg_database, make_event, unique, wait_until


def _require(name: str) -> str:
    value = os.environ.get(name)
    if not value:
        pytest.fail(
            f"{name} is not set: run the tests with scripts/test, which starts Kafka and "
            "PostgreSQL (scripts/services up)",
            pytrace=False,
        )
    return value


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption(
        "--fault-full",
        action="store_true",
        default=False,
        help="run the fault-injection scenarios (tests/fault) at full size",
    )


@pytest.fixture
def event_factory() -> Callable[..., dict]:
    return make_event


# -- PostgreSQL -----------------------------------------------------------------
@pytest.fixture
def pg_url() -> Iterator[str]:
    """A fresh, empty PostgreSQL database for this test; dropped afterwards."""
    url, drop = create_pg_database()
    try:
        yield url
    finally:
        drop()


@pytest.fixture
def sqlite_url(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'read_model.db'}"


@pytest.fixture(params=["sqlite", "postgresql"])
def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """The same test on the embedded default and on PostgreSQL."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'read_model.db'}"
    return request.getfixturevalue("pg_url")  # type: ignore[no-any-return]


@pytest.fixture
def migrated_url(db_url: str) -> str:
    engine = make_engine(db_url)
    migrate(engine)
    engine.dispose()
    return db_url


# -- Kafka ----------------------------------------------------------------------
@pytest.fixture
def kafka_bootstrap() -> str:
    return _require("KAFKA_BOOTSTRAP_SERVERS")


@pytest.fixture
def topic_factory(kafka_bootstrap: str) -> Iterator[Callable[..., str]]:
    """Creates fresh topics (3 partitions unless told); deletes them afterwards."""
    from kafka.admin import KafkaAdminClient, NewTopic

    admin = KafkaAdminClient(bootstrap_servers=kafka_bootstrap)
    created: list[str] = []

    def factory(partitions: int = 3) -> str:
        name = unique("delivery-events")
        admin.create_topics([NewTopic(name, partitions, 1)])
        created.append(name)
        return name

    yield factory
    admin.close()
    if created:
        _delete_topics(kafka_bootstrap, created)


def _delete_topics(bootstrap: str, topics: list[str]) -> None:
    """Delete with a fresh client: a test may have stopped and restarted the broker, which
    leaves an older client backing off its connection for a while."""
    from kafka.admin import KafkaAdminClient
    from kafka.errors import KafkaConnectionError, NodeNotReadyError

    admin = KafkaAdminClient(bootstrap_servers=bootstrap)

    def deleted() -> bool:
        try:
            admin.delete_topics(topics)
            return True
        except (NodeNotReadyError, KafkaConnectionError):
            return False

    try:
        wait_until(deleted, timeout=30, interval=0.5, message=f"deleting topics {topics}")
    finally:
        admin.close()
