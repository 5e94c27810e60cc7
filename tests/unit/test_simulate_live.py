"""The live stream of `projector simulate --follow`: its pace, its determinism, its ids."""

from __future__ import annotations

import itertools
from collections import defaultdict
from datetime import UTC, datetime, timedelta

import pytest

from producer.simulate import LiveConfig, highest_delivery_number, live_events, pace
from schema.events import parse_message
from tests.helpers import encode

pytestmark = pytest.mark.unit


class FakeClock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        assert 0 <= seconds <= 0.2
        self.now += max(seconds, 0.001)


def test_pace_keeps_a_steady_rate_and_catches_up_after_a_stall() -> None:
    clock = FakeClock()
    batches = pace(iter(itertools.count()), 10.0, clock=clock, sleep=clock.sleep)
    sent = 0
    for _ in range(30):  # three seconds at ten a second
        sent += len(next(batches))
    assert sent == 30 and 2.8 <= clock.now - 100.0 <= 3.0
    clock.now += 1.0  # the sink stalled for a second: the next batch holds what is due
    assert len(next(batches)) >= 9


def test_pace_ends_when_stopped() -> None:
    clock = FakeClock()
    stop = {"now": False}
    batches = pace(iter(itertools.count()), 0.1, stopped=lambda: stop["now"], clock=clock,
                   sleep=clock.sleep)
    next(batches)
    stop["now"] = True
    assert next(batches, None) is None


def _times() -> itertools.count[int]:
    return itertools.count()


def test_live_events_follow_from_the_seed_and_first_delivery() -> None:
    base = datetime(2026, 11, 29, tzinfo=UTC)

    def clock() -> datetime:
        return base + timedelta(milliseconds=next(ticks))

    ticks = _times()
    first = list(itertools.islice(live_events(LiveConfig(seed=3, first_delivery=10), clock), 200))
    ticks = _times()
    again = list(itertools.islice(live_events(LiveConfig(seed=3, first_delivery=10), clock), 200))
    assert first == again
    ticks = _times()
    other = list(itertools.islice(live_events(LiveConfig(seed=3, first_delivery=500), clock), 50))
    assert {e["eventId"] for e in other}.isdisjoint(e["eventId"] for e in first)

    parsed = [parse_message(encode(e), None) for e in first]  # all valid events
    sequences = defaultdict(list)
    for event in parsed:
        sequences[event.delivery_id].append(event.sequence)
        assert int(event.delivery_id.split("-")[1]) >= 10
    for seen in sequences.values():  # each delivery's events in its own order
        assert seen == sorted(seen) and seen[0] == 1
    times = [e.occurred_at for e in parsed]
    assert times == sorted(times)  # stamped with the (wall) clock as they are emitted


def test_highest_delivery_number_reads_the_ids_of_a_stream() -> None:
    lines = [b'{"eventId":"a","deliveryId":"D-000042","x":1}', b"",
             b'{"deliveryId": "D-000077"}', b'{"deliveryId":"X-9"}']
    assert highest_delivery_number(lines) == 77
    assert highest_delivery_number([]) == 0
