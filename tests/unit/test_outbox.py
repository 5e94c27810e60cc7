"""The delivery core's outbox: the shipped DDL and the event id -> outbox id rule."""

from __future__ import annotations

import uuid
from pathlib import Path

import pytest

from producer.errors import ProducerError
from producer.outbox import engine_for, outbox_ddl, outbox_id

pytestmark = pytest.mark.unit

ROOT = Path(__file__).resolve().parents[2]


def test_the_shipped_ddl_is_the_one_the_code_writes() -> None:
    assert (ROOT / "sql" / "outbox.sql").read_text(encoding="utf-8") == outbox_ddl("jsonb")


def test_the_payload_column_is_jsonb_or_text() -> None:
    assert "payload       text," in outbox_ddl("text")
    with pytest.raises(ProducerError):
        outbox_ddl("bytea")


def test_uuid_event_ids_are_the_outbox_id_and_others_map_to_a_stable_uuid() -> None:
    event_id = "8d0c6a8e-7f0b-4a51-9d7e-3c1f6b0f2a11"
    assert outbox_id(event_id) == uuid.UUID(event_id)
    assert outbox_id("core-0001") == outbox_id("core-0001") != outbox_id("core-0002")
    assert outbox_id("core-0001").version == 5


def test_the_outbox_needs_postgresql() -> None:
    with pytest.raises(ProducerError, match="PostgreSQL"):
        engine_for("sqlite:///x.db")
    assert engine_for("postgresql://u@h/db").url.drivername == "postgresql+psycopg"
