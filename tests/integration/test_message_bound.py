"""The projector's bound on a message's size: larger is a dead letter with its own code,
its bytes kept whole (SQLite and PostgreSQL), and it stays one on replay."""

from __future__ import annotations

import json
from typing import Any

import pytest
from sqlalchemy import select

from projector.batch import BatchParser, message_size, parse_source_message
from projector.settings import DEFAULT_MAX_MESSAGE_BYTES, Settings
from projector.sources.base import SourceMessage, TopicPartition
from projector.store import SqlStore
from schema.db import make_engine
from schema.events import ErrorCode, EventParseError
from schema.tables import dead_letters, delivery_events
from tests.helpers import make_event, prepared

pytestmark = pytest.mark.integration

TP = TopicPartition("delivery-events", 0)


def _message(offset: int, data_bytes: int, event_id: str) -> SourceMessage:
    event = make_event("DeliveryCreated", at="2026-11-25T10:00:00Z", event_id=event_id)
    event["data"]["note"] = "x" * data_bytes
    return SourceMessage(TP.topic, TP.partition, offset, b"D-1", json.dumps(event).encode(),
                         (("trace", b"\xff" * 10),))


@pytest.fixture
def store(migrated_url: str) -> Any:
    engine = make_engine(migrated_url)
    yield SqlStore(engine)
    engine.dispose()


def test_a_message_over_the_bound_is_a_dead_letter_kept_whole(store: SqlStore) -> None:
    fits = _message(0, 3000, "small")
    large = _message(1, 5000, "large")
    assert message_size(fits) <= 4096 < message_size(large)
    result = store.apply_batch(1, prepared([fits, large], BatchParser(max_message_bytes=4096)), {TP: store.claim(1, TP)})
    assert (result.applied, result.dead_letters) == (1, 1)
    with store.engine.connect() as conn:
        letter = conn.execute(select(dead_letters)).one()
        ids = conn.execute(select(delivery_events.c.event_id)).scalars().all()
    assert ids == ["small"]
    assert letter.error_code == "MESSAGE_TOO_LARGE"
    assert str(message_size(large)) in letter.reason and "4096" in letter.reason
    assert letter.value == large.value and letter.key == b"D-1"


def test_the_bound_holds_on_replay_and_is_a_setting_with_a_default() -> None:
    large = _message(0, DEFAULT_MAX_MESSAGE_BYTES, "large")
    with pytest.raises(EventParseError) as caught:
        parse_source_message(large, Settings().source_tz)
    assert caught.value.code is ErrorCode.MESSAGE_TOO_LARGE
    assert parse_source_message(large, Settings().source_tz, 2 * DEFAULT_MAX_MESSAGE_BYTES)
    assert Settings.from_env({}).max_message_bytes == 1 << 20
    assert Settings.from_env({"PROJECTOR_MAX_MESSAGE_BYTES": "2048"}).max_message_bytes == 2048
