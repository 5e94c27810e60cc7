"""The projector loop against fakes of its two ports, and the real SQL store on SQLite.

The fakes subclass the real protocols (``MessageSource``, ``ReadModelStore``) and keep
the same promises as the real adapters: the store fences on (epoch, next offset)
exactly like ``SqlStore.apply_batch``, the source reads an ordered log per partition.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select

from projector.errors import Fenced, GenerationChanged, SourceUnavailable, StoreUnavailable
from projector.loop import Mode, Projector
from projector.sources.base import MessageSource, SourceMessage, TopicPartition
from projector.sources.file import FileSource
from projector.store import BatchResult, ReadModelStore, SqlStore
from projector.store.headers import headers_from_db
from schema.db import make_engine, migrate
from schema.events import parse_message
from schema.fold import fold
from schema.rows import delivery_to_db
from schema.tables import dead_letters, projection_offsets
from tests.fakes import FakeStore
from tests.helpers import (
    encode,
    expected_rows,
    history_ids,
    make_event,
    prepared,
    table_rows,
    wait_until,
    write_jsonl,
)

pytestmark = pytest.mark.unit

TOPIC = "delivery-events"
P0 = TopicPartition(TOPIC, 0)
P1 = TopicPartition(TOPIC, 1)


# -- fakes ------------------------------------------------------------------------------
class FakeSource(MessageSource):
    """An in-memory log per partition; every call is recorded, failures can be scripted."""

    def __init__(self, logs: Mapping[TopicPartition, Sequence[SourceMessage]],
                 max_polls: int = 500) -> None:
        self.logs = {tp: list(msgs) for tp, msgs in logs.items()}
        self.owned: set[TopicPartition] = set()
        self.pos: dict[TopicPartition, int] = {}
        self.ends: dict[TopicPartition, int] = {}  # an end beyond the last message
        self.seeks: list[tuple[TopicPartition, int]] = []
        self.polls = 0
        self.max_polls = max_polls
        self.poll_failures = 0      # the next N polls raise SourceUnavailable
        self.start_failures = 0
        self.redeliver: list[SourceMessage] = []  # returned (once) before the log
        self.hints: list[dict[TopicPartition, int]] = []

    def partitions(self) -> list[TopicPartition]:
        return sorted(self.logs)

    def start(self) -> None:
        if self.start_failures:
            self.start_failures -= 1
            raise SourceUnavailable("broker down (start)")
        self.owned = set(self.logs)

    def assign(self, partitions: Sequence[TopicPartition]) -> None:
        self.owned = set(partitions)

    def assignment(self) -> set[TopicPartition]:
        return set(self.owned)

    def seek(self, tp: TopicPartition, offset: int) -> None:
        self.seeks.append((tp, offset))
        self.pos[tp] = offset

    def poll(self, max_records: int, timeout_ms: int) -> list[SourceMessage]:
        self.polls += 1
        assert self.polls <= self.max_polls, "the loop is spinning: it never finishes"
        if self.poll_failures:
            self.poll_failures -= 1
            raise SourceUnavailable("broker down (poll)")
        if self.redeliver:
            out, self.redeliver = self.redeliver, []
            return out
        out = []
        for tp in sorted(self.owned):
            at = self.pos.get(tp, 0)
            batch = [m for m in self.logs[tp] if m.offset >= at][:max_records]
            if batch:
                self.pos[tp] = batch[-1].offset + 1
            elif tp in self.ends:  # like Kafka stepping over a transaction marker
                self.pos[tp] = max(at, self.ends[tp])
            out.extend(batch)
        return out

    def position(self, tp: TopicPartition) -> int | None:
        return self.pos.get(tp)

    def beginning_offsets(self, partitions: Sequence[TopicPartition]) -> dict[TopicPartition, int]:
        return {tp: 0 for tp in partitions}

    def end_offsets(self, partitions: Sequence[TopicPartition]) -> dict[TopicPartition, int]:
        return {tp: self.ends.get(tp, self.logs[tp][-1].offset + 1 if self.logs[tp] else 0)
                for tp in partitions}

    def offsets_for_time(
        self, partitions: Sequence[TopicPartition], timestamp_ms: int
    ) -> dict[TopicPartition, int]:
        raise NotImplementedError

    def commit_hint(self, offsets: dict[TopicPartition, int]) -> None:
        self.hints.append(dict(offsets))

    def close(self) -> None:
        pass


def log_of(tp: TopicPartition, offsets: Sequence[int]) -> list[SourceMessage]:
    return [SourceMessage(tp.topic, tp.partition, o, f"D-{o}".encode(), b"{}") for o in offsets]


def projector(source: MessageSource, store: ReadModelStore, mode: Mode | None = None,
              **kwargs: Any) -> Projector:
    kwargs.setdefault("batch_size", 3)
    kwargs.setdefault("batch_max_wait_ms", 0)
    kwargs.setdefault("max_backoff", 0.001)
    return Projector(source, store, mode, **kwargs)


def started(source: MessageSource, store: ReadModelStore, mode: Mode | None = None,
            **kwargs: Any) -> Projector:
    """A projector ready for single ``_step`` calls, as ``run`` leaves it after its start."""
    proj = projector(source, store, mode, **kwargs)
    source.start()
    if proj.generation is None:
        proj.generation = store.active_generation()
    return proj


# -- the loop -------------------------------------------------------------------------
PIPELINE = pytest.mark.parametrize("pipeline", [False, True], ids=["serial", "pipelined"])


@PIPELINE
def test_projects_every_partition_until_caught_up(pipeline: bool) -> None:
    source = FakeSource({P0: log_of(P0, range(7)), P1: log_of(P1, range(4))})
    store = FakeStore()
    totals = projector(source, store, pipeline=pipeline).run(until_caught_up=True)
    assert store.applied == {P0: list(range(7)), P1: list(range(4))}
    assert store.offsets(1) == {P0: 7, P1: 4}
    assert totals.messages == 11 and totals.applied == 11
    assert source.seeks[:2] == [(P0, 0), (P1, 0)]  # positions come from the read model
    assert source.hints[-1] in ({P0: 7}, {P1: 4}, {P0: 7, P1: 4})


@PIPELINE
def test_resumes_at_the_offset_stored_in_the_read_model(pipeline: bool) -> None:
    source = FakeSource({P0: log_of(P0, range(6))})
    store = FakeStore()
    store.next[1, P0] = 4
    projector(source, store, pipeline=pipeline).run(until_caught_up=True)
    assert source.seeks[0] == (P0, 4)
    assert store.applied[P0] == [4, 5]


def test_fenced_drops_the_claims_and_claims_again() -> None:
    source = FakeSource({P0: log_of(P0, range(9))})
    store = FakeStore()
    proj = started(source, store)
    proj._step()  # claims P0, applies 0..2
    assert store.applied[P0] == [0, 1, 2]
    # Another consumer took P0 over and applied 3..4 meanwhile.
    store.take_over(P0, applied_up_to=5)
    proj._step()  # its batch (3..5) is refused
    assert store.fenced == 1
    assert proj.claims == {}
    assert store.applied[P0] == [0, 1, 2]
    proj.run(until_caught_up=True)
    assert store.claims == 2
    assert source.seeks[-1] == (P0, 5)  # re-claimed at the stored offset, not its own
    assert store.applied[P0] == [0, 1, 2, 5, 6, 7, 8]  # nothing twice, nothing skipped


def test_pipelined_a_refused_batch_in_flight_discards_the_next_and_re_claims() -> None:
    source = FakeSource({P0: log_of(P0, range(12))})
    store = FakeStore()
    proj = started(source, store, pipeline=True)
    proj._step()  # claims P0; batch 0..2 goes to the writer
    proj._step()  # 0..2 commits; 3..5 in flight, claims already at 6
    assert store.applied[P0] == [0, 1, 2]
    assert proj.claims[P0].next_offset == 6
    assert proj._in_flight is not None
    proj._in_flight.result()
    store.take_over(P0, applied_up_to=4)  # another consumer moved on meanwhile
    store.applied[P0] = store.applied[P0][:3] + [3]  # ... having applied offset 3
    store.next[1, P0] = 4
    proj.run(until_caught_up=True)
    assert store.offsets(1) == {P0: 12}
    applied = store.applied[P0]
    assert applied[:4] == [0, 1, 2, 3] and sorted(applied) == applied
    assert applied[4:] == list(range(4, 12)) or applied[4:] == list(range(3, 12))[1:]


def test_yield_when_fenced_leaves_the_partition_to_its_new_owner() -> None:
    """An in-place rebuild never fights the live projector for a partition."""
    source = FakeSource({P0: log_of(P0, range(9)), P1: log_of(P1, range(2))})
    store = FakeStore()
    proj = started(source, store, Mode.in_place(1), batch_size=20)
    proj._step()
    assert store.applied == {P0: list(range(9)), P1: [0, 1]}
    source.logs[P0] += log_of(P0, [9, 10])
    store.take_over(P0)
    proj._step()
    assert proj.released == {P0} and P0 not in proj.claims
    claims = store.claims
    store.next[1, P0] = 11  # the new owner applies the rest
    proj.run(targets={P0: 11, P1: 2})
    assert store.claims == claims  # P0 was never claimed back
    assert store.applied[P0] == list(range(9))


def test_an_in_place_replay_takes_back_a_partition_its_new_owner_stopped_moving() -> None:
    """``Mode.in_place(retake_after=...)``: left to the live projector, but not forever."""
    source = FakeSource({P0: log_of(P0, range(5))})
    store = FakeStore()
    proj = started(source, store, Mode.in_place(1, retake_after=0.0), batch_size=2,
                   batch_max_wait_ms=20)
    proj._step()
    store.take_over(P0)  # the new owner claims P0 and then never moves it
    proj._step()
    assert proj.released == {P0}
    proj.run(targets={P0: 5})
    assert proj.released == set() and store.offsets(1) == {P0: 5}
    assert store.applied[P0] == [0, 1, 2, 3, 4]


def test_a_verifying_replay_never_reads_past_its_targets() -> None:
    """``Mode.verifying``: the scratch stands at exactly the offsets it was asked for."""
    source = FakeSource({P0: log_of(P0, range(9)), P1: log_of(P1, range(4))})
    store = FakeStore()
    projector(source, store, Mode.verifying(1), batch_size=10).run(targets={P0: 5, P1: 2})
    assert store.applied == {P0: [0, 1, 2, 3, 4], P1: [0, 1]}
    assert store.offsets(1) == {P0: 5, P1: 2}


def test_offsets_without_messages_are_stepped_over_without_seeking_back() -> None:
    """Compaction, retention, transaction markers, blank lines: the source skips them."""
    source = FakeSource({P0: log_of(P0, [0, 1, 5, 6])})
    store = FakeStore()
    projector(source, store, batch_size=10).run(until_caught_up=True)
    assert source.seeks == [(P0, 0)]  # only the seek to the claimed offset
    assert store.applied[P0] == [0, 1, 5, 6]
    assert store.offsets(1) == {P0: 7}


def test_offsets_without_messages_at_the_end_still_let_it_catch_up() -> None:
    """A transaction marker is the last offset: no message will ever carry it."""
    source = FakeSource({P0: log_of(P0, [0, 1, 2]), P1: []})
    source.ends = {P0: 4, P1: 2}  # P1: two records removed by retention, nothing left
    store = FakeStore()
    projector(source, store, batch_size=10).run(until_caught_up=True)
    assert store.applied[P0] == [0, 1, 2] and store.applied[P1] == []
    assert store.offsets(1) == {P0: 4, P1: 2}
    assert store.calls.count("advance") == 2


def test_duplicates_of_applied_offsets_are_skipped() -> None:
    source = FakeSource({P0: log_of(P0, range(6))})
    store = FakeStore()
    proj = started(source, store)
    proj._step()
    proj._step()
    assert store.applied[P0] == [0, 1, 2, 3, 4, 5]
    # The source delivers old offsets again (a rebalance replaying from a stale commit).
    source.redeliver = log_of(P0, [2, 3, 4, 5])
    applies = store.calls.count("apply")
    proj._step()
    assert store.calls.count("apply") == applies  # nothing new: no batch at all
    source.redeliver = log_of(P0, [4, 5])
    source.logs[P0] += log_of(P0, [6])
    proj._step()
    source.redeliver = log_of(P0, [5, 6])
    proj._step()
    proj.run(until_caught_up=True)
    assert store.applied[P0] == [0, 1, 2, 3, 4, 5, 6]


def test_messages_of_a_partition_not_claimed_are_not_applied() -> None:
    source = FakeSource({P0: log_of(P0, range(2))})
    store = FakeStore()
    proj = started(source, store)
    proj._step()
    source.redeliver = log_of(P1, [0])  # not ours
    proj._step()
    assert P1 not in store.applied


@PIPELINE
def test_transient_failures_are_retried_and_nothing_is_skipped(
    caplog: pytest.LogCaptureFixture, pipeline: bool,
) -> None:
    source = FakeSource({P0: log_of(P0, range(10)), P1: log_of(P1, range(5))})
    store = FakeStore()
    proj = projector(source, store, pipeline=pipeline)
    proj._step = _failing(proj._step, source, store)  # type: ignore[method-assign]
    caplog.set_level("WARNING", logger="projector.loop")
    totals = proj.run(until_caught_up=True)
    assert store.applied == {P0: list(range(10)), P1: list(range(5))}
    assert totals.applied == 15
    retries = [r for r in caplog.records if "retrying in" in r.getMessage()]
    assert len(retries) >= 3 + 2 + 1
    assert any("broker down (poll)" in r.getMessage() for r in retries)
    assert any("database down (apply)" in r.getMessage() for r in retries)
    assert any("database down (claim)" in r.getMessage() for r in retries)


@pytest.mark.parametrize("where", ["source", "store"])
def test_an_outage_at_start_fails_fast(where: str) -> None:
    """At start an unreachable source or database is the operator's error, not retried."""
    source = FakeSource({P0: log_of(P0, range(3))})
    store = FakeStore()
    if where == "source":
        source.start_failures = 1
    else:
        store.generation_failures = 1
    with pytest.raises(SourceUnavailable if where == "source" else StoreUnavailable):
        projector(source, store).run(until_caught_up=True)
    assert store.applied == {}


def _failing(step: Any, source: FakeSource, store: FakeStore) -> Any:
    """Inject failures between steps: 3 polls, 2 batches and 1 claim fail."""
    script = iter([
        lambda: None,
        lambda: setattr(source, "poll_failures", 3),
        lambda: None,
        lambda: setattr(store, "batch_failures", 2),
        lambda: setattr(store, "claim_failures", 1),
    ])

    def wrapped() -> None:
        next(script, lambda: None)()
        step()

    return wrapped


def test_backoff_grows_and_is_capped() -> None:
    store = FakeStore()
    proj = projector(FakeSource({P0: []}), store, max_backoff=0.002)
    waits: list[float] = []
    proj.stop_event.wait = lambda delay: waits.append(delay) or False  # type: ignore[method-assign]
    calls = iter([StoreUnavailable("a"), StoreUnavailable("b"), StoreUnavailable("c"), 7])

    def flaky() -> int:
        item = next(calls)
        if isinstance(item, Exception):
            raise item
        return item

    assert proj._retry(flaky) == 7
    assert waits == [0.002, 0.002, 0.002]
    proj.max_backoff = 100
    proj._failures = 0
    calls = iter([StoreUnavailable("a"), StoreUnavailable("b"), StoreUnavailable("c"), 8])
    waits.clear()
    assert proj._retry(flaky) == 8
    assert waits == [0.5, 1.0, 2.0]


def test_a_live_projector_follows_the_active_generation() -> None:
    source = FakeSource({P0: log_of(P0, range(6))})
    store = FakeStore(generation=1)
    proj = started(source, store)
    proj._step()
    proj.generation = 1
    store.generation = 2  # a rebuild switched generations
    proj._step()
    assert proj.generation == 2 and proj.claims == {}
    proj.run(until_caught_up=True)
    assert store.offsets(2) == {P0: 6}


def test_a_rebuild_stops_when_its_generation_changes() -> None:
    store = FakeStore(generation=1)
    proj = projector(FakeSource({P0: log_of(P0, range(3))}), store, Mode.building(7))
    with pytest.raises(GenerationChanged):
        proj.run(until_caught_up=True)


# -- the real SQL store on SQLite --------------------------------------------------------------
@pytest.fixture
def sql_store(sqlite_url: str) -> Iterator[SqlStore]:
    engine = make_engine(sqlite_url)
    migrate(engine)
    try:
        yield SqlStore(engine)
    finally:
        engine.dispose()


def messages_of(values: Sequence[bytes], start: int = 0, key: bytes | None = None,
                tp: TopicPartition = P0) -> list[SourceMessage]:
    return [SourceMessage(tp.topic, tp.partition, start + i, key, v) for i, v in enumerate(values)]


def batch(store: SqlStore, msgs: list[SourceMessage]) -> BatchResult:
    claim = store.claim(1, msgs[0].tp)
    assert claim.next_offset == msgs[0].offset
    return store.apply_batch(1, prepared(msgs), {msgs[0].tp: claim})


def test_sql_store_refolds_on_an_out_of_order_event(sqlite_url: str, sql_store: SqlStore) -> None:
    first = [
        encode(make_event("DeliveryCreated", at="2026-11-25T10:00:00Z")),
        encode(make_event("DeliveryRiderAssigned", at="2026-11-25T10:05:00Z",
                          data={"riderId": "R-1"})),
        encode(make_event("DeliveryPickedUp", at="2026-11-25T10:10:00Z")),
        encode(make_event("DeliveryCreated", "D-2", at="2026-11-25T10:00:00Z")),
    ]
    result = batch(sql_store, messages_of(first))
    assert (result.applied, result.refolded) == (4, 0)
    assert table_rows(sqlite_url)["D-1"]["state"] == "PICKED_UP"
    late = [
        # Sorts before the picked-up event: the rider was unassigned, then picked up anyway.
        encode(make_event("DeliveryRiderUnassigned", at="2026-11-25T10:07:00Z")),
        # Sorts before everything of D-1: a cancel that arrived late.
        encode(make_event("DeliveryCancelled", at="2026-11-25T10:01:00Z",
                          data={"reason": "late"})),
        encode(make_event("DeliveryRiderAssigned", "D-2", at="2026-11-25T10:30:00Z",
                          data={"riderId": "R-2"})),
    ]
    result = batch(sql_store, messages_of(late, start=4))
    assert (result.applied, result.refolded) == (3, 1)
    assert result.changed == {"D-1", "D-2"}
    rows = table_rows(sqlite_url)
    assert rows == expected_rows(first + late)
    assert rows["D-1"]["state"] == "CANCELLED" and rows["D-1"]["event_count"] == 5
    events = [parse_message(v) for v in first + late if b'"D-1"' in v]
    assert rows["D-1"] == delivery_to_db(1, fold(events))  # type: ignore[arg-type]
    assert sql_store.offsets(1) == {P0: 7}


def test_sql_store_dead_letters_a_poison_message_and_applies_the_rest(
    sqlite_url: str, sql_store: SqlStore
) -> None:
    good1 = encode(make_event("DeliveryCreated", at="2026-11-25T10:00:00Z", event_id="g-1"))
    poison = b'{"eventId": "p-1", "eventType": "DeliveryCreated", "deliveryId": "D-1"}'
    not_json = b"\xff\xfe garbage"
    surrogate = b'{"eventId": "\\ud800", "eventType": "X", "deliveryId": "D-1", ' \
                b'"occurrenceDateTime": "2026-11-25T10:00:00Z"}'
    good2 = encode(make_event("DeliveryCompleted", at="2026-11-25T10:30:00Z", event_id="g-2"))
    msgs = messages_of([good1, poison, not_json, surrogate, good2], key=b"D-1")
    msgs[1] = SourceMessage(TOPIC, 0, 1, b"D-1", poison, (("traceparent", b"00-ab"),))
    result = batch(sql_store, msgs)
    assert (result.applied, result.dead_letters) == (2, 3)
    assert history_ids(sqlite_url) == ["g-1", "g-2"]
    assert table_rows(sqlite_url)["D-1"]["state"] == "DELIVERED"
    assert sql_store.offsets(1) == {P0: 5}
    with sql_store.engine.connect() as conn:
        letters = [dict(r._mapping) for r in conn.execute(
            select(dead_letters).order_by(dead_letters.c.offset))]
    assert [(d["offset"], d["error_code"]) for d in letters] == [
        (1, "MISSING_FIELD"), (2, "INVALID_UTF8"), (3, "INVALID_UTF8"),
    ]
    first = letters[0]
    assert (first["topic"], first["partition"], first["key"], first["value"]) == (
        TOPIC, 0, b"D-1", poison,
    )
    assert headers_from_db(first["headers"]) == (("traceparent", b"00-ab"),)
    assert "occurrenceDateTime" in first["reason"]
    assert first["status"] == "pending" and first["generation"] == 1


def test_sql_store_first_copy_of_an_event_id_wins_across_batches(
    sqlite_url: str, sql_store: SqlStore
) -> None:
    created = make_event("DeliveryCreated", event_id="same")
    other = make_event("DeliveryCancelled", event_id="same", at="2026-11-25T09:00:00Z")
    result = batch(sql_store, messages_of([encode(created), encode(created)]))
    assert (result.applied, result.duplicates) == (1, 1)
    result = batch(sql_store, messages_of([encode(other)], start=2))
    assert (result.applied, result.duplicates, result.refolded) == (0, 1, 0)
    row = table_rows(sqlite_url)["D-1"]
    assert (row["state"], row["event_count"]) == ("CREATED", 1)


def test_sql_store_fences_an_old_owner(sql_store: SqlStore) -> None:
    old = sql_store.claim(1, P0)
    new = sql_store.claim(1, P0)
    assert new.epoch == old.epoch + 1
    msgs = messages_of([encode(make_event())])
    with pytest.raises(Fenced):
        sql_store.apply_batch(1, prepared(msgs), {P0: old})
    assert sql_store.offsets(1) == {P0: 0}
    sql_store.apply_batch(1, prepared(msgs), {P0: new})
    assert sql_store.offsets(1) == {P0: 1}


def _run_bounded(proj: Projector, timeout: float = 20.0) -> None:
    """Run until caught up in a thread; fail (and stop it) if it does not finish in time."""
    errors: list[BaseException] = []

    def target() -> None:
        try:
            proj.run(until_caught_up=True)
        except BaseException as exc:  # noqa: BLE001 - handed to the test thread
            errors.append(exc)

    thread = threading.Thread(target=target, daemon=True)
    thread.start()
    try:
        wait_until(lambda: not thread.is_alive(), timeout=timeout, interval=0.02,
                   message="projector run --until-caught-up to finish")
    finally:
        proj.stop()
        thread.join(timeout=5)
    if errors:
        raise errors[0]


def test_file_to_sqlite_end_to_end(tmp_path: Path, sqlite_url: str, sql_store: SqlStore) -> None:
    """The whole projector on a file with blank lines, poison lines, late and duplicate events,
    and a trailing blank line: it finishes, and the rows are the pure fold of the valid events."""
    items: list[bytes] = [
        encode(make_event("DeliveryCreated", "D-1", at="2026-11-25T10:00:00Z", event_id="a1")),
        encode(make_event("DeliveryRiderAssigned", "D-1", at="2026-11-25T10:05:00Z")),
        b"",
        b"{not json",
        encode(make_event("DeliveryCompleted", "D-1", at="2026-11-25T10:40:00Z")),
        encode(make_event("DeliveryPickedUp", "D-1", at="2026-11-25T10:20:00Z")),  # late
        encode(make_event("배달생성", "D-2", at="2026-11-25 11:00:00", sequence=2,
                          data={"orderId": "O-2", "shopId": "S-2"})),
        b"   ",
        encode(make_event("DeliveryCancelled", "D-2", at="2026-11-25 11:00:00", sequence=1)),
        encode(make_event("DeliveryCreated", "D-1", at="2026-11-25T09:00:00Z", event_id="a1")),
        encode(make_event("DeliveryRated", "D-1", at="2026-11-25T12:00:00Z")),
        b"",
    ]
    path = write_jsonl(tmp_path / "events.jsonl", items)
    source = FileSource(str(path))
    proj = Projector(source, sql_store, batch_size=2, batch_max_wait_ms=0, max_backoff=0.01)
    _run_bounded(proj)
    assert table_rows(sqlite_url) == expected_rows(items)
    rows = table_rows(sqlite_url)
    assert rows["D-1"]["state"] == "DELIVERED" and rows["D-1"]["event_count"] == 5
    assert rows["D-2"]["state"] == "CANCELLED"  # the cancel sorts first, then created keeps it
    assert proj.totals.dead_letters == 1 and proj.totals.duplicates == 1
    assert proj.totals.refolded >= 1
    with sql_store.engine.connect() as conn:
        stored = conn.execute(select(projection_offsets.c.next_offset)).scalar()
    assert stored == 12  # every line, the trailing blank one too: it keeps its number
