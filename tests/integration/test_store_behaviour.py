"""One set of behaviour tests for every ``ReadModelStore``: the in-memory fake, SQLite, PostgreSQL.

The loop's unit tests trust the fake to keep the real stores' promises; these
tests hold all three to the same ones, so the fake cannot drift from the SQL store.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from projector.errors import Fenced, GenerationChanged
from projector.sources.base import SourceMessage, TopicPartition
from projector.store import Claim, ReadModelStore, SqlStore
from schema.db import make_engine, migrate
from tests.fakes import FakeStore
from tests.helpers import create_pg_database, encode, make_event, prepared

pytestmark = pytest.mark.integration

P0 = TopicPartition("delivery-events", 0)
P1 = TopicPartition("delivery-events", 1)


@pytest.fixture(params=["fake", "sqlite", "postgresql"])
def store(request: pytest.FixtureRequest, tmp_path: object) -> Iterator[ReadModelStore]:
    if request.param == "fake":
        yield FakeStore(generation=1)
        return
    if request.param == "sqlite":
        url, drop = f"sqlite:///{tmp_path}/behaviour.db", None
    else:
        url, drop = create_pg_database()
    engine = make_engine(url)
    migrate(engine)
    try:
        yield SqlStore(engine)
    finally:
        engine.dispose()
        if drop is not None:
            drop()


def batch(tp: TopicPartition, start: int, count: int) -> list[SourceMessage]:
    return [
        SourceMessage(tp.topic, tp.partition, offset, b"D-1", encode(make_event(
            "DeliveryCreated", f"D-{tp.partition}-{offset}", event_id=f"e-{tp.partition}-{offset}")))
        for offset in range(start, start + count)
    ]


def test_the_live_generation_is_the_active_one(store: ReadModelStore) -> None:
    assert store.active_generation() == 1


def test_a_claim_starts_where_the_read_model_stands_and_bumps_the_epoch(
    store: ReadModelStore,
) -> None:
    first = store.claim(1, P0)
    assert first.next_offset == 0
    second = store.claim(1, P0)
    assert second.epoch == first.epoch + 1 and second.next_offset == 0
    assert store.epochs(1) == {P0: second.epoch}


def test_a_batch_moves_each_partition_to_after_its_last_message(store: ReadModelStore) -> None:
    claims = {P0: store.claim(1, P0), P1: store.claim(1, P1)}
    result = store.apply_batch(1, prepared(batch(P0, 0, 3) + batch(P1, 0, 2)), claims)
    assert result.messages == 5 and result.applied == 5
    assert result.next_offsets == {P0: 3, P1: 2}
    assert store.offsets(1) == {P0: 3, P1: 2}


def test_a_claim_that_another_consumer_replaced_is_fenced_and_changes_nothing(
    store: ReadModelStore,
) -> None:
    old = store.claim(1, P0)
    new = store.claim(1, P0)
    with pytest.raises(Fenced):
        store.apply_batch(1, prepared(batch(P0, 0, 2)), {P0: old})
    assert store.offsets(1) == {P0: 0}
    store.apply_batch(1, prepared(batch(P0, 0, 2)), {P0: new})
    assert store.offsets(1) == {P0: 2}


def test_a_claim_whose_offset_moved_on_is_fenced(store: ReadModelStore) -> None:
    claim = store.claim(1, P0)
    store.apply_batch(1, prepared(batch(P0, 0, 2)), {P0: claim})
    with pytest.raises(Fenced):  # the same claim again: its offset is no longer current
        store.apply_batch(1, prepared(batch(P0, 2, 1)), {P0: claim})
    assert store.offsets(1) == {P0: 2}
    store.apply_batch(1, prepared(batch(P0, 2, 1)), {P0: Claim(claim.epoch, 2)})
    assert store.offsets(1) == {P0: 3}


def test_advance_steps_over_offsets_without_messages_under_the_claim(
    store: ReadModelStore,
) -> None:
    claim = store.claim(1, P0)
    store.advance(1, P0, claim, 5)
    assert store.offsets(1) == {P0: 5}
    with pytest.raises(Fenced):
        store.advance(1, P0, claim, 9)  # the claim still says 0
    assert store.offsets(1) == {P0: 5}


def test_set_offsets_moves_a_generation_and_fences_every_claim(store: ReadModelStore) -> None:
    claim = store.claim(1, P0)
    store.set_offsets(1, {P0: 7, P1: 4})
    assert store.offsets(1) == {P0: 7, P1: 4}
    with pytest.raises(Fenced):
        store.apply_batch(1, prepared(batch(P0, 7, 1)), {P0: Claim(claim.epoch, 7)})
    fresh = store.claim(1, P0)
    assert fresh.next_offset == 7
    store.apply_batch(1, prepared(batch(P0, 7, 1)), {P0: fresh})
    assert store.offsets(1)[P0] == 8


def test_a_batch_for_a_generation_that_is_not_active_is_refused(store: ReadModelStore) -> None:
    with pytest.raises(GenerationChanged):
        store.apply_batch(7, prepared(batch(P0, 0, 1)), {P0: Claim(1, 0)})


def test_a_claim_tells_up_to_where_messages_were_counted_and_a_reset_keeps_it(
    store: ReadModelStore,
) -> None:
    """`counted_to`: messages below it were counted when first read; an in-place replay
    (set_offsets back) reads them again without counting them twice."""
    claim = store.claim(1, P0)
    assert claim.counted_to == 0
    store.apply_batch(1, prepared(batch(P0, 0, 3)), {P0: claim})
    assert store.claim(1, P0).counted_to == 3
    store.set_offsets(1, {P0: 1})
    again = store.claim(1, P0)
    assert (again.next_offset, again.counted_to) == (1, 3)
    store.apply_batch(1, prepared(batch(P0, 1, 4)), {P0: again})
    assert store.claim(1, P0).counted_to == 5
