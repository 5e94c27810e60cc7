"""The bulk load's stream fold (projector/store/bulk.py ``StreamFold``): no database.

Every row it writes out is the fold of its delivery's events, unless the delivery
was spoiled (then its id is listed for a refold) or met again after it left (then
it is written twice, which the bulk load finds and refolds): whatever the order and
the cache's size.
"""

from __future__ import annotations

from collections import Counter, defaultdict

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from producer.simulate import SimulationConfig, encode, simulate
from projector.store.bulk import StreamFold
from schema.events import Event, parse_message
from schema.fold import fold

pytestmark = pytest.mark.unit


def _events(seed: int, deliveries: int = 40) -> list[Event]:
    config = SimulationConfig(deliveries=deliveries, seed=seed, late_ratio=0.2,
                              duplicate_ratio=0.0)
    return [parse_message(encode(e)) for e in simulate(config)]


@settings(max_examples=40, deadline=None)
@given(seed=st.integers(0, 10_000), capacity=st.sampled_from([1, 2, 5, 1000]))
def test_every_row_written_once_and_not_spoiled_is_the_fold(seed: int, capacity: int) -> None:
    events = _events(seed)
    folder = StreamFold(capacity)
    for event in events:
        folder.add(event)
        assert len(folder.rows) <= capacity
    folder.drain()
    rows, spoiled = folder.take()
    by_delivery: dict[str, list[Event]] = defaultdict(list)
    for event in events:
        by_delivery[event.delivery_id].append(event)
    written = Counter(r.delivery_id for r in rows)
    settled = [r for r in rows if written[r.delivery_id] == 1 and r.delivery_id not in spoiled]
    assert {r.delivery_id for r in rows} | set(spoiled) == set(by_delivery)
    for row in settled:
        assert row == fold(by_delivery[row.delivery_id])
    if capacity == 1000:  # everything held: only late events spoil
        assert max(written.values()) == 1


def test_an_event_sorting_before_the_row_spoils_its_delivery() -> None:
    events = _events(3, deliveries=5)
    first = events[0]
    late = [e for e in events if e.delivery_id == first.delivery_id]
    folder = StreamFold(10)
    for event in reversed(late):
        folder.add(event)
    folder.drain()
    rows, spoiled = folder.take()
    assert spoiled == [first.delivery_id] and rows == []
