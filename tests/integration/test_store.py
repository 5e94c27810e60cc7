"""The SQL store, the same tests on SQLite and on PostgreSQL."""

from __future__ import annotations

import json
from typing import Any

import pytest
from sqlalchemy import select, update

from projector.batch import BatchParser
from projector.errors import Fenced, GenerationChanged
from projector.sources.base import SourceMessage, TopicPartition
from projector.store import NOTIFY_CHANNEL, Claim, SqlStore
from schema.db import make_engine
from schema.events import parse_message
from schema.fold import fold
from schema.rows import delivery_to_db
from schema.tables import dead_letters, delivery_events, generations, projection_offsets
from tests.helpers import encode, make_event, prepared, table_rows

pytestmark = pytest.mark.integration

TP = TopicPartition("delivery-events", 0)


def _messages(events: list[dict[str, Any] | bytes], start: int = 0) -> list[SourceMessage]:
    return [
        SourceMessage(TP.topic, TP.partition, start + i, b"D-1",
                      e if isinstance(e, bytes) else encode(e))
        for i, e in enumerate(events)
    ]


@pytest.fixture
def store(migrated_url: str) -> Any:
    engine = make_engine(migrated_url)
    yield SqlStore(engine)
    engine.dispose()


def test_a_batch_commits_offsets_history_rows_and_dead_letters_together(store: SqlStore, migrated_url: str) -> None:
    claim = store.claim(1, TP)
    events = [
        make_event("DeliveryCreated", at="2026-11-25T10:00:00Z", event_id="a"),
        b"not json",
        make_event("DeliveryRiderAssigned", at="2026-11-25T10:05:00Z", event_id="b"),
        make_event("DeliveryRiderAssigned", at="2026-11-25T10:05:00Z", event_id="b",
                   data={"riderId": "R-other"}),  # same id again: the first copy wins
    ]
    result = store.apply_batch(1, prepared(_messages(events)), {TP: claim})
    assert (result.applied, result.duplicates, result.dead_letters) == (2, 1, 1)
    assert store.offsets(1) == {TP: 4}
    rows = table_rows(migrated_url)
    assert rows["D-1"]["rider_id"] == "R-1" and rows["D-1"]["state"] == "ASSIGNED"
    with store.engine.connect() as conn:
        dead = conn.execute(select(dead_letters)).one()
    assert (dead.offset, dead.value, dead.error_code) == (1, b"not json", "INVALID_JSON")


def test_a_late_event_refolds_the_delivery_from_its_history(store: SqlStore, migrated_url: str) -> None:
    claim = store.claim(1, TP)
    first = [
        make_event("DeliveryCancelled", at="2026-11-25T10:30:00Z", event_id="c", data={"reason": "x"}),
    ]
    late = [
        make_event("DeliveryCreated", at="2026-11-25T10:00:00Z", event_id="a"),
        make_event("DeliveryRiderAssigned", at="2026-11-25T10:10:00Z", event_id="b"),
    ]
    store.apply_batch(1, prepared(_messages(first)), {TP: claim})
    result = store.apply_batch(1, prepared(_messages(late, start=1)), {TP: store.claim(1, TP)})
    assert result.refolded == 1
    expected = fold(parse_message(encode(e)) for e in first + late)
    assert expected is not None
    assert table_rows(migrated_url)["D-1"] == delivery_to_db(1, expected)
    assert table_rows(migrated_url)["D-1"]["state"] == "CANCELLED"


def test_a_consumer_whose_partition_was_claimed_again_is_fenced(store: SqlStore, migrated_url: str) -> None:
    old = store.claim(1, TP)
    new = store.claim(1, TP)  # another process took the partition over
    assert new.epoch > old.epoch
    with pytest.raises(Fenced):
        store.apply_batch(1, prepared(_messages([make_event(event_id="a")])), {TP: old})
    assert table_rows(migrated_url) == {}  # nothing of the fenced batch was written
    assert store.offsets(1) == {TP: 0}
    store.apply_batch(1, prepared(_messages([make_event(event_id="a")])), {TP: new})
    assert store.offsets(1) == {TP: 1}


def test_a_batch_that_does_not_continue_the_stored_offset_is_refused(store: SqlStore) -> None:
    claim = store.claim(1, TP)
    store.apply_batch(1, prepared(_messages([make_event(event_id="a")])), {TP: claim})
    with pytest.raises(Fenced):  # the claim still says offset 0: someone else moved on
        store.apply_batch(1, prepared(_messages([make_event(event_id="b")], start=1)), {TP: claim})


def test_writing_into_a_generation_that_is_no_longer_active_is_refused(store: SqlStore, migrated_url: str) -> None:
    claim = store.claim(1, TP)
    with store.engine.begin() as conn:
        conn.execute(update(generations).values(status="retired"))
    with pytest.raises(GenerationChanged):
        store.apply_batch(1, prepared(_messages([make_event(event_id="a")])), {TP: claim})
    assert table_rows(migrated_url) == {}


def test_unknown_event_types_are_kept_in_history_and_counted(store: SqlStore, migrated_url: str) -> None:
    claim = store.claim(1, TP)
    events = [
        make_event("DeliveryCreated", at="2026-11-25T10:00:00Z", event_id="a"),
        make_event("DeliveryTeleported", at="2026-11-25T11:00:00Z", event_id="b", data={"to": "Mars"}),
        make_event("배차완료", at="2026-11-25T10:10:00Z", event_id="c", data={"riderId": "R-1"}),
    ]
    store.apply_batch(1, prepared(_messages(events)), {TP: claim})
    row = table_rows(migrated_url)["D-1"]
    assert (row["state"], row["event_count"]) == ("ASSIGNED", 3)
    assert row["last_event_at"].isoformat() == "2026-11-25T11:00:00+00:00"
    with store.engine.connect() as conn:
        kept = {r.event_id: (r.event_type, r.known, r.data) for r in conn.execute(select(delivery_events))}
    assert kept["b"] == ("DeliveryTeleported", 0, {"to": "Mars"})
    assert kept["c"][0] == "DeliveryRiderAssigned"


def test_postgresql_notifies_listeners_only_after_commit(pg_url: str) -> None:
    import psycopg
    from sqlalchemy.engine import make_url

    from schema.db import migrate

    engine = make_engine(pg_url)
    migrate(engine)
    store = SqlStore(engine)
    dsn = make_url(pg_url).set(drivername="postgresql").render_as_string(hide_password=False)
    with psycopg.connect(dsn, autocommit=True) as listener:
        listener.execute(f"LISTEN {NOTIFY_CHANNEL}")
        claim = store.claim(1, TP)
        with pytest.raises(Fenced):  # a refused batch must not notify
            store.apply_batch(1, prepared(_messages([make_event(event_id="x")])), {TP: Claim(claim.epoch - 1, 0)})
        store.apply_batch(1, prepared(_messages([make_event(event_id="a", delivery_id="D-1")])), {TP: claim})
        received = list(listener.notifies(timeout=5, stop_after=1))
    engine.dispose()
    assert len(received) == 1
    assert json.loads(received[0].payload) == {"generation": 1, "ids": ["D-1"]}


def test_offsets_rows_carry_the_owner(store: SqlStore) -> None:
    store.claim(1, TP)
    with store.engine.connect() as conn:
        row = conn.execute(select(projection_offsets)).one()
    assert row.owner == store.owner and row.owner_epoch == 1


def test_two_writers_of_one_delivery_on_two_partitions_do_not_lose_events(migrated_url: str) -> None:
    """A producer that did not key by delivery id spreads one delivery over partitions."""
    import random
    import threading

    rng = random.Random(7)
    types = ["DeliveryRiderAssigned", "DeliveryEtaChanged", "DeliveryRiderUnassigned", "DeliveryNoted"]
    events = [make_event("DeliveryCreated", at="2026-11-25T09:00:00Z", event_id="e-000")]
    for i in range(1, 81):
        minute = rng.randint(0, 59)
        events.append(make_event(rng.choice(types), at=f"2026-11-25T10:{minute:02d}:00Z",
                                 event_id=f"e-{i:03d}", sequence=rng.randint(0, 3)))
    halves = {0: events[0::2], 1: events[1::2]}
    errors: list[BaseException] = []

    def writer(partition: int) -> None:
        engine = make_engine(migrated_url)
        store = SqlStore(engine)
        tp = TopicPartition("spread", partition)
        try:
            claim = store.claim(1, tp)
            for offset, event in enumerate(halves[partition]):
                store.apply_batch(1, prepared([SourceMessage(tp.topic, partition, offset, None, encode(event))]),
                                  {tp: claim})
                claim = Claim(claim.epoch, offset + 1)
        except BaseException as exc:  # noqa: BLE001 - reported by the main thread
            errors.append(exc)
        finally:
            engine.dispose()

    threads = [threading.Thread(target=writer, args=(p,)) for p in (0, 1)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    assert not errors, errors
    expected = fold(parse_message(encode(e)) for e in events)
    assert expected is not None
    assert table_rows(migrated_url)["D-1"] == delivery_to_db(1, expected)


def test_a_refold_keeps_the_eta_as_read_when_the_event_was_applied(migrated_url: str) -> None:
    """Changing SOURCE_TIMEZONE later must not move ETAs of deliveries that get refolded."""
    from zoneinfo import ZoneInfo

    created = make_event("DeliveryCreated", at="2026-11-25T10:00:00Z", event_id="a",
                         data={"orderId": "O", "shopId": "S", "estimatedDeliveryAt": "2026-11-25 12:00:00"})
    late = make_event("DeliveryNoted", at="2026-11-25T09:00:00Z", event_id="b")  # forces a refold
    utc_engine = make_engine(migrated_url)
    SqlStore(utc_engine).apply_batch(1, prepared(_messages([created])), {TP: SqlStore(utc_engine).claim(1, TP)})
    seoul = SqlStore(utc_engine)
    in_seoul = BatchParser(ZoneInfo("Asia/Seoul"))
    result = seoul.apply_batch(1, prepared(_messages([late], start=1), in_seoul),
                               {TP: seoul.claim(1, TP)})
    utc_engine.dispose()
    assert result.refolded == 1
    row = table_rows(migrated_url)["D-1"]
    assert row["estimated_delivery_at"].isoformat() == "2026-11-25T12:00:00+00:00"
    assert row["event_count"] == 2


def test_two_processes_claiming_a_new_partition_at_once_both_succeed(migrated_url: str) -> None:
    import threading

    failures: list[BaseException] = []
    epochs: list[int] = []
    for round_ in range(10):
        tp = TopicPartition("race", round_)
        barrier = threading.Barrier(2)

        def claim(tp: TopicPartition = tp, barrier: threading.Barrier = barrier) -> None:
            engine = make_engine(migrated_url)
            try:
                barrier.wait(timeout=10)
                epochs.append(SqlStore(engine).claim(1, tp).epoch)
            except BaseException as exc:  # noqa: BLE001 - reported below
                failures.append(exc)
            finally:
                engine.dispose()

        threads = [threading.Thread(target=claim) for _ in range(2)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(timeout=30)
    assert not failures, failures[:2]
    assert sorted(epochs) == [1] * 10 + [2] * 10  # each partition: one first, one second


# -- counts that add up from status alone (issue #9 hole 5) ------------------------------
def _counts(store: SqlStore) -> tuple[int, int, int, int]:
    """(messages read, events applied, duplicates, dead letters) as `status` reports them."""
    from schema.status import counts

    with store.engine.connect() as conn:
        c = counts(conn, 1)
    assert c.messages_read == c.events_applied + c.duplicates + c.dead_letters, c
    return c.messages_read, c.events_applied, c.duplicates, c.dead_letters


def test_status_counts_add_up_and_an_in_place_replay_counts_nothing_twice(store: SqlStore) -> None:
    a = make_event("DeliveryCreated", at="2026-11-25T10:00:00Z", event_id="a")
    b = make_event("DeliveryRiderAssigned", at="2026-11-25T10:05:00Z", event_id="b")
    first = [a, b"not json", b, b, a]
    result = store.apply_batch(1, prepared(_messages(first)), {TP: store.claim(1, TP)})
    assert (result.applied, result.duplicates, result.dead_letters) == (2, 2, 1)
    assert _counts(store) == (5, 2, 2, 1)
    # In place: the partition is read again from 0 (as `rebuild --in-place` sets it).
    store.set_offsets(1, {TP: 0})
    claim = store.claim(1, TP)
    assert (claim.next_offset, claim.counted_to) == (0, 5)
    c = make_event("DeliveryPickedUp", at="2026-11-25T10:09:00Z", event_id="c")
    store.apply_batch(1, prepared(_messages(first[:3])), {TP: claim})  # all read before
    assert _counts(store) == (5, 2, 2, 1)
    store.apply_batch(1, prepared(_messages([*first[3:], c, c, b"[]"], start=3)),
                      {TP: Claim(claim.epoch, 3, claim.counted_to)})  # 3, 4 again; 5.. new
    assert _counts(store) == (8, 3, 3, 2)
    assert store.claim(1, TP).counted_to == 8


def test_a_replayed_dead_letter_whose_event_was_applied_counts_as_a_duplicate(
    store: SqlStore,
) -> None:
    a = make_event("DeliveryCreated", at="2026-11-25T10:00:00Z", event_id="a")
    store.apply_batch(1, prepared(_messages([a, b"not json"])), {TP: store.claim(1, TP)})
    assert _counts(store) == (2, 1, 0, 1)
    with store.engine.connect() as conn:
        dead = conn.execute(select(dead_letters)).one()
    message = SourceMessage(TP.topic, TP.partition, dead.offset, b"D-1", encode(a))
    result = store.apply_replayed(1, message, parse_message(encode(a)), dead.id)
    assert (result.applied, result.duplicates) == (0, 1)
    assert _counts(store) == (2, 1, 1, 0)


def test_an_upgraded_read_model_counts_what_it_held_as_read(db_url: str) -> None:
    """Before revision 0002 nothing was counted: the events and pending dead letters held
    then are taken as the messages read (duplicates before the upgrade are not known)."""
    from datetime import UTC, datetime

    from alembic import command

    from schema.db import _alembic_config, migrate
    from schema.status import counts

    engine = make_engine(db_url)
    now = datetime.now(UTC)
    try:
        with engine.begin() as conn:
            command.upgrade(_alembic_config(conn), "0001")
        with engine.begin() as conn:
            conn.execute(projection_offsets.insert(), [
                {"generation": 1, "topic": TP.topic, "partition": p, "next_offset": 10,
                 "owner_epoch": 1, "updated_at": now} for p in (0, 1)])
            conn.execute(delivery_events.insert(), [
                {"generation": 1, "event_id": f"e{i}", "delivery_id": "D-1",
                 "event_type": "X", "known": 0, "occurred_at": now, "data": {},
                 "topic": TP.topic, "partition": i % 2, "offset": i, "applied_at": now}
                for i in range(5)])
            conn.execute(dead_letters.insert(), [
                {"generation": 1, "topic": TP.topic, "partition": 0, "offset": 10 + i,
                 "headers": [], "error_code": "INVALID_JSON", "reason": "bad",
                 "status": status, "created_at": now}
                for i, status in enumerate(["pending", "pending", "replayed"])])
        migrate(engine)
        with engine.connect() as conn:
            rows = conn.execute(select(projection_offsets).order_by(
                projection_offsets.c.partition)).all()
            c = counts(conn, 1)
        assert [(r.messages_read, r.duplicates, r.counted_to) for r in rows] == [
            (3 + 2, 0, 10), (2, 0, 10)]
        assert (c.messages_read, c.events_applied, c.duplicates, c.dead_letters) == (7, 5, 0, 2)
    finally:
        engine.dispose()
