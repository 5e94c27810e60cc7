"""The history keeps each event's version as received, on SQLite and on PostgreSQL."""

from __future__ import annotations

import re
from typing import Any

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import select

from projector.sources.base import SourceMessage, TopicPartition
from projector.store import SqlStore
from schema.db import make_engine
from schema.tables import delivery_events, metadata
from tests.helpers import encode, make_event, prepared

pytestmark = pytest.mark.integration

TP = TopicPartition("delivery-events", 0)


@pytest.fixture
def store(migrated_url: str) -> Any:
    engine = make_engine(migrated_url)
    yield SqlStore(engine)
    engine.dispose()


def _not_a_partition(name: str | None, kind: str, _parent: Any) -> bool:
    """A generation's partition (PostgreSQL, revision 0005) is not a table of the metadata."""
    return not (kind == "table" and name is not None
                and re.fullmatch(r"(deliveries|delivery_events)_g[0-9]+", name) is not None)


def test_the_migrations_build_exactly_the_tables_of_schema_tables(migrated_url: str) -> None:
    engine = make_engine(migrated_url)
    try:
        with engine.connect() as conn:
            diff = compare_metadata(
                MigrationContext.configure(conn, opts={
                    "compare_server_default": True, "include_name": _not_a_partition}),
                metadata,
            )
    finally:
        engine.dispose()
    assert diff == []


def test_the_history_stores_the_version_as_received(store: SqlStore) -> None:
    bodies = [
        make_event("DeliveryCreated", event_id="a"),
        make_event("DeliveryCompleted", event_id="b", eventVersion=1),
        make_event("DeliveryCancelled", event_id="c", at="2026-11-25T11:00:00Z", eventVersion=5),
    ]
    messages = [SourceMessage(TP.topic, 0, i, b"D-1", encode(b)) for i, b in enumerate(bodies)]
    messages.append(SourceMessage(TP.topic, 0, 3, b"D-1", encode(make_event(
        "DeliveryTeleported", event_id="d")), (("eventVersion", b"3"),)))
    claim = store.claim(1, TP)
    store.apply_batch(1, prepared(messages), {TP: claim})
    with store.engine.connect() as conn:
        kept = {r.event_id: (r.event_version, r.known)
                for r in conn.execute(select(delivery_events))}
    assert kept == {"a": (1, 1), "b": (1, 1), "c": (5, 0), "d": (3, 0)}
