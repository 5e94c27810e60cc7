"""The retention guard's decision (pure) and the served-events count on a real SQL store."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pytest

from projector import retention
from projector.errors import RebuildError, RetentionLoss
from projector.rebuild import RebuildRequest
from projector.sources.base import TopicPartition
from projector.store.retention import served_before_start
from schema.db import make_engine, migrate
from schema.tables import delivery_events

T = "delivery-events"


def test_nothing_gone_passes_with_or_without_allow_loss() -> None:
    gone = retention.Gone.of(1, {TopicPartition(T, 0): 0, TopicPartition(T, 1): 0})
    assert gone.total == 0 and not gone.by_partition
    retention.check(gone, allow_loss=False)
    retention.check(gone, allow_loss=True)


def test_served_events_gone_refuse_in_one_line_naming_count_partitions_and_the_way() -> None:
    gone = retention.Gone.of(
        3, {TopicPartition(T, 2): 5, TopicPartition(T, 0): 7, TopicPartition(T, 1): 0}
    )
    with pytest.raises(RetentionLoss) as raised:
        retention.check(gone, allow_loss=False)
    line = str(raised.value)
    assert "\n" not in line
    assert line.startswith("the topic no longer holds 12 events that generation 3 serves"
                           " (partitions 0: 7, 2: 5;"), line
    assert "`projector rebuild --from-history`" in line and "--allow-loss" in line
    assert raised.value.exit_code == 2 and isinstance(raised.value, RebuildError)
    retention.check(gone, allow_loss=True)  # allowed: no refusal


def test_one_partition_is_named_in_the_singular() -> None:
    gone = retention.Gone.of(1, {TopicPartition(T, 4): 1})
    assert "(partition 4: 1;" in gone.refusal()


def test_allow_loss_belongs_to_a_rebuild_from_the_topic() -> None:
    assert RebuildRequest.of(allow_loss=True).allow_loss
    assert RebuildRequest.of(in_place=True, allow_loss=True).allow_loss
    with pytest.raises(RebuildError, match="--allow-loss"):
        RebuildRequest.of(resume=True, allow_loss=True)
    with pytest.raises(RebuildError, match="--allow-loss"):
        RebuildRequest.of(discard=True, allow_loss=True)


def test_history_rows_below_each_start_offset_are_counted_per_partition(tmp_path: Path) -> None:
    engine = make_engine(f"sqlite:///{tmp_path / 'rm.db'}")
    migrate(engine)
    at = datetime(2026, 11, 25, tzinfo=UTC)
    rows = [
        {"generation": g, "event_id": f"e-{g}-{topic}-{p}-{o}", "delivery_id": "D-1",
         "event_type": "DeliveryCreated", "known": 1, "occurred_at": at, "sequence": None,
         "data": {}, "topic": topic, "partition": p, "offset": o, "applied_at": at}
        for g, topic, p, o in [
            (1, T, 0, 0), (1, T, 0, 1), (1, T, 0, 5), (1, T, 1, 0), (1, T, 1, 9),
            (1, "other", 0, 0),  # another topic's partition 0
            (2, T, 0, 0),  # another generation
        ]
    ]
    with engine.begin() as conn:
        conn.execute(delivery_events.insert(), rows)
    with engine.connect() as conn:
        found = served_before_start(
            conn, 1, {TopicPartition(T, 0): 5, TopicPartition(T, 1): 0, TopicPartition(T, 2): 3}
        )
    assert found == {TopicPartition(T, 0): 2, TopicPartition(T, 1): 0, TopicPartition(T, 2): 0}
    engine.dispose()
