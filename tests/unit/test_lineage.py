"""Lineage and transitions: read from the same fold (``schema.fold.steps``/``timeline``).

The properties: the last lineage entry of each field agrees with the row (the value
is what that event's own data says, and the fold up to that event already holds
it); the transitions that were not rewritten are the path of the whole fold,
whatever the arrival order and the cut into commits; and a commit never changes the
past (what one commit's fold shows as rewritten stays rewritten).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from schema.events import Event
from schema.fold import (
    ROW_FIELDS,
    DeliveryRow,
    RefoldLimit,
    State,
    Timeline,
    fold,
    lineage,
    steps,
    timeline,
)
from tests.unit.test_fold import (
    ASSIGNED,
    CANCELLED,
    COMPLETED,
    CREATED,
    ETA,
    PICKED_UP,
    PROPERTY,
    UNASSIGNED,
    ev,
    events_of_one_delivery,
)

pytestmark = pytest.mark.unit


def expected_value(field: str, event_type: str, occurred_at: datetime,
                   data: Mapping[str, Any], eta: datetime | None, count: int,
                   version: int = 1) -> Any:
    """What an event of this type puts in ``field``, read from the event as received
    alone (the contract's catalogue and its version 2 table), as an oracle independent
    of the handlers and the upcasters. ``count`` is the number of events folded up to
    and including it."""
    times = {"created_at": "DeliveryCreated", "assigned_at": "DeliveryRiderAssigned",
             "picked_up_at": "DeliveryPickedUp", "delivered_at": "DeliveryCompleted",
             "cancelled_at": "DeliveryCancelled"}
    if field in times:
        return None if event_type == "DeliveryRiderUnassigned" else occurred_at
    if field == "rider_id":
        if event_type == "DeliveryRiderAssigned" and version == 2:
            return data["rider"]["id"]
        return data.get("riderId")
    if field == "order_id":
        return data["orderId"]
    if field == "shop_id":
        return data["shop"]["id"] if version == 2 else data["shopId"]
    if field == "cancel_reason":
        return data.get("reason")
    if field == "estimated_delivery_at":
        return eta
    if field == "last_event_at":
        return occurred_at
    if field == "event_count":
        return count
    raise AssertionError(f"no oracle for {field}")


def check_lineage(events: Sequence[Event]) -> None:
    folded = steps(events)
    row = folded[-1].row
    found = lineage(folded)
    assert list(found) == [f for f in ROW_FIELDS if f in found]
    for field, step in found.items():
        index = folded.index(step)
        assert all(field not in later.fields for later in folded[index + 1:])
        assert getattr(step.row, field) == getattr(row, field), field
        if field != "state":
            e = step.event
            assert getattr(row, field) == expected_value(
                field, e.event_type, e.occurred_at, e.received_data, e.estimated_delivery_at,
                index + 1, e.version,
            ), field
    # the delivery id aside, a field no event set still holds the empty row's value
    for field in set(ROW_FIELDS) - set(found) - {"delivery_id"}:
        assert getattr(row, field) is (State.UNKNOWN if field == "state" else None), field
    assert {"event_count", "last_event_at"} <= set(found)


@PROPERTY
@given(events=events_of_one_delivery())
def test_the_last_lineage_entry_of_each_field_agrees_with_the_row(events: list[Event]) -> None:
    check_lineage(events)


def path_of(row_steps: Timeline) -> list[tuple[State, State, str]]:
    return [(t.source, t.target, t.event.event_id)
            for t in row_steps.transitions if t.rewritten_by is None]


def commits_of(arrival: list[Event], cuts: list[int]) -> list[list[Event]]:
    bounds = sorted({0, len(arrival), *[c % (len(arrival) + 1) for c in cuts]})
    return [arrival[a:b] for a, b in zip(bounds, bounds[1:], strict=False)]


@PROPERTY
@given(data=st.data(), events=events_of_one_delivery())
def test_transitions_not_rewritten_are_the_path_of_the_fold(
    data: st.DataObject, events: list[Event]
) -> None:
    arrival = data.draw(st.permutations(events))
    duplicates = data.draw(st.lists(st.sampled_from(events), max_size=4))
    cuts = data.draw(st.lists(st.integers(min_value=0, max_value=16), max_size=6))
    result = timeline(commits_of(arrival + duplicates, cuts))
    assert result.row == fold(events)
    expected = [(s.before, s.row.state, s.event.event_id)
                for s in steps(events) if s.before is not s.row.state]
    assert path_of(result) == expected
    keys = [t.event.sort_key for t in result.transitions]
    assert keys == sorted(keys)


@PROPERTY
@given(data=st.data(), events=events_of_one_delivery())
def test_a_later_commit_never_changes_what_was_rewritten_before(
    data: st.DataObject, events: list[Event]
) -> None:
    """Commit by commit: what was rewritten stays so, and what leaves the path is marked
    rewritten by the first (in fold order) event of the commit that moved it."""
    arrival = data.draw(st.permutations(events))
    cuts = data.draw(st.lists(st.integers(min_value=0, max_value=16), max_size=6))
    commits = commits_of(arrival, cuts)

    def rewritten(t: Timeline) -> list[tuple[State, State, str, str]]:
        return sorted((x.source, x.target, x.event.event_id, x.rewritten_by.event_id)
                      for x in t.transitions if x.rewritten_by is not None)

    before = timeline([])
    for k, commit in enumerate(commits):
        after = timeline(commits[: k + 1])
        first = min(commit, key=lambda e: e.sort_key).event_id
        left = [p for p in path_of(before) if p not in path_of(after)]
        grown = rewritten(after)
        for item in rewritten(before) + [(*p, first) for p in left]:
            grown.remove(item)  # each was there, once
        assert grown == []
        before = after


def test_the_out_of_order_delivery_d2002_event_by_event() -> None:
    """tests/streams/api_out_of_order.jsonl, D-2002, one event per commit: the assignment
    arrives before the creation, the pickup before the cancellation that precedes it."""
    o_b = ev(ASSIGNED, 5, event_id="o-b", sequence=2, riderId="R-2", delivery_id="D-2002")
    o_a = ev(CREATED, 5, event_id="o-a", sequence=1, delivery_id="D-2002")
    o_d = ev(PICKED_UP, 20, event_id="o-d", delivery_id="D-2002")
    o_c = ev(CANCELLED, 20, event_id="o-c", reason="shop closed", delivery_id="D-2002")
    result = timeline([[o_b], [o_a], [o_d], [o_c]])
    shown = [(t.source.value, t.target.value, t.event.event_id,
              t.rewritten_by.event_id if t.rewritten_by else None) for t in result.transitions]
    assert shown == [
        ("UNKNOWN", "CREATED", "o-a", None),
        ("UNKNOWN", "ASSIGNED", "o-b", "o-a"),
        ("CREATED", "ASSIGNED", "o-b", None),
        ("ASSIGNED", "CANCELLED", "o-c", None),
        ("ASSIGNED", "PICKED_UP", "o-d", "o-c"),
    ]
    # all four in one commit: the read model never showed the rewritten two
    assert [t.rewritten_by for t in timeline([[o_b, o_a, o_d, o_c]]).transitions] == [None] * 3


def test_a_cancellation_before_its_creation() -> None:
    """Cancelled earlier in fold order than created: the creation comes after a terminal
    state and sets nothing; lineage says which event set what."""
    cancel = ev(CANCELLED, 0, event_id="c", reason="duplicate order")
    create = ev(CREATED, 1, event_id="a")
    folded = steps([create, cancel])
    found = {field: step.event.event_id for field, step in lineage(folded).items()}
    assert found == {"state": "c", "cancelled_at": "c", "cancel_reason": "c",
                     "last_event_at": "a", "event_count": "a"}
    row: DeliveryRow = folded[-1].row
    assert (row.state, row.order_id) == (State.CANCELLED, None)


def test_a_reassignment_and_an_unassignment_set_the_rider() -> None:
    folded = steps([ev(CREATED, 0), ev(ASSIGNED, 1, riderId="R-1", event_id="x"),
                    ev(UNASSIGNED, 2, event_id="u"), ev(COMPLETED, 3, event_id="z")])
    found = lineage(folded)
    assert found["rider_id"].event.event_id == "u" and folded[-1].row.rider_id is None
    assert found["state"].event.event_id == "z"
    check_lineage([s.event for s in folded])


def test_tracing_costs_one_step_per_event_in_order_and_is_bounded() -> None:
    """In order: n steps; in reverse, one commit each: n(n+1)/2, refused past the limit."""
    events = [ev(ETA if i % 2 else ASSIGNED, i, riderId=f"R-{i}") for i in range(20)]
    assert timeline([[e] for e in events], max_steps=20).row == fold(events)
    reverse = [[e] for e in reversed(events)]
    assert timeline(reverse, max_steps=210).row == fold(events)
    with pytest.raises(RefoldLimit):
        timeline(reverse, max_steps=209)
