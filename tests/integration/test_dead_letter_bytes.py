"""A dead letter is kept whole: its headers' bytes come back for replay exactly, on
SQLite and PostgreSQL, and rows written before revision 0004 are converted."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest
from alembic import command
from sqlalchemy import select

from projector.sources.base import SourceMessage, TopicPartition
from projector.store import SqlStore
from projector.store.headers import headers_from_db
from schema.db import _alembic_config, make_engine, migrate
from schema.tables import dead_letters
from tests.helpers import prepared

pytestmark = pytest.mark.integration

TP = TopicPartition("delivery-events", 0)
HEADERS: tuple[tuple[str, bytes | None], ...] = (
    ("id", b"\xff\xfe not utf-8 \xc3"),
    ("nul", b"a\x00b\x00"),
    ("empty", b""),
    ("absent", None),
    ("eventType", "배달생성".encode()),
    ("escaped-looking", b"\\x41 as text"),
    ("id", b"a second header of the same key"),
)


@pytest.fixture
def store(migrated_url: str) -> Any:
    engine = make_engine(migrated_url)
    yield SqlStore(engine)
    engine.dispose()


def test_a_dead_letters_headers_come_back_byte_for_byte(store: SqlStore) -> None:
    message = SourceMessage(TP.topic, TP.partition, 0, b"\x00key\xff", b"not json \xff",
                            HEADERS)
    result = store.apply_batch(1, prepared([message]), {TP: store.claim(1, TP)})
    assert result.dead_letters == 1
    with store.engine.connect() as conn:
        row = conn.execute(select(dead_letters)).one()
    assert headers_from_db(row.headers) == HEADERS
    assert (row.key, row.value) == (b"\x00key\xff", b"not json \xff")


def test_the_replay_parses_the_headers_as_received(store: SqlStore) -> None:
    """A body without eventId and eventType takes them from the headers: the replay
    reads the very bytes the message carried (they were escaped text before)."""
    body = (b'{"deliveryId": "D-1", "occurrenceDateTime": "2026-11-25T10:00:00Z", '
            b'"data": {"orderId": "O-1", "shopId": "S-1"}}')
    headers = (("id", "e-\u00e9".encode()), ("eventType", b"DeliveryCreated"),
               ("junk", b"\xff\x00"))
    bad = SourceMessage(TP.topic, TP.partition, 0, b"D-1", b"{", headers)
    store.apply_batch(1, prepared([bad]), {TP: store.claim(1, TP)})
    with store.engine.connect() as conn:
        row = conn.execute(select(dead_letters)).one()
    from schema.events import parse_message
    replayed = SourceMessage(row.topic, row.partition, row.offset, row.key, body,
                             headers_from_db(row.headers))
    assert replayed.headers == headers
    event = parse_message(replayed.value, replayed.key, replayed.headers)
    assert (event.event_id, event.event_type) == ("e-\u00e9", "DeliveryCreated")


def test_rows_written_before_0004_are_converted_and_back(db_url: str) -> None:
    engine = make_engine(db_url)
    now = datetime.now(UTC)
    # What the old writer stored for HEADERS (invalid bytes and NUL as \xNN).
    old = [["id", "\\xff\\xfe not utf-8 \\xc3"], ["nul", "a\\x00b\\x00"], ["empty", ""],
           ["absent", None], ["eventType", "배달생성"]]
    try:
        with engine.begin() as conn:
            command.upgrade(_alembic_config(conn), "0003_event_version")
        with engine.begin() as conn:
            conn.execute(dead_letters.insert(), [{
                "generation": 1, "topic": TP.topic, "partition": 0, "offset": 1,
                "headers": old, "error_code": "INVALID_JSON", "reason": "bad",
                "status": "pending", "created_at": now}])
        migrate(engine)
        with engine.connect() as conn:
            row = conn.execute(select(dead_letters)).one()
        assert headers_from_db(row.headers) == HEADERS[:5]
        with engine.begin() as conn:
            command.downgrade(_alembic_config(conn), "0003_event_version")
        with engine.connect() as conn:
            assert conn.execute(select(dead_letters.c.headers)).scalar_one() == old
    finally:
        engine.dispose()
