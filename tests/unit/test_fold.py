"""The pure fold: every folding rule and every transition of the catalogue (the contract, section Events)."""

from __future__ import annotations

import subprocess
import sys
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from schema.events import Event, EventType, make_event
from schema.fold import HANDLERS, DeliveryRow, State, apply, distinct, fold, steps
from schema.states import TERMINAL
from tests.helpers import ROOT

pytestmark = pytest.mark.unit

UTC = UTC
T0 = datetime(2026, 11, 25, 10, 0, tzinfo=UTC)


def at(minutes: float) -> datetime:
    return T0 + timedelta(minutes=minutes)


_ids = iter(range(1, 10**9))

DEFAULT_DATA: dict[str, dict[str, Any]] = {
    "DeliveryCreated": {"orderId": "O-1", "shopId": "S-1"},
    "DeliveryRiderAssigned": {"riderId": "R-1"},
    "DeliveryEtaChanged": {"estimatedDeliveryAt": "2026-11-25T11:00:00Z"},
}


def ev(
    event_type: str,
    minute: float = 0,
    *,
    event_id: str | None = None,
    sequence: int | None = None,
    delivery_id: str = "D-1",
    **data: Any,
) -> Event:
    """An event of ``event_type`` at T0 + ``minute``; keyword arguments are its data."""
    payload = dict(DEFAULT_DATA.get(event_type, {})) | data
    return make_event(
        event_id or f"e-{next(_ids):09d}",
        event_type,
        delivery_id,
        at(minute),
        sequence,
        payload,
    )


def folded(*events: Event) -> DeliveryRow:
    row = fold(events)
    assert row is not None
    return row


CREATED = "DeliveryCreated"
ASSIGNED = "DeliveryRiderAssigned"
UNASSIGNED = "DeliveryRiderUnassigned"
PICKED_UP = "DeliveryPickedUp"
COMPLETED = "DeliveryCompleted"
CANCELLED = "DeliveryCancelled"
ETA = "DeliveryEtaChanged"

#: Event lists that bring a fresh delivery to each state (times 0..3).
REACH: dict[State, list[tuple[str, dict[str, Any]]]] = {
    State.UNKNOWN: [],
    State.CREATED: [(CREATED, {})],
    State.ASSIGNED: [(CREATED, {}), (ASSIGNED, {"riderId": "R-1"})],
    State.PICKED_UP: [(CREATED, {}), (ASSIGNED, {"riderId": "R-1"}), (PICKED_UP, {})],
    State.DELIVERED: [(CREATED, {}), (ASSIGNED, {"riderId": "R-1"}), (PICKED_UP, {}),
                      (COMPLETED, {})],
    State.CANCELLED: [(CREATED, {}), (CANCELLED, {"reason": "shop closed"})],
}


def history_in(state: State) -> list[Event]:
    return [ev(t, i, **d) for i, (t, d) in enumerate(REACH[state])]


def row_in(state: State) -> DeliveryRow | None:
    events = history_in(state)
    row = fold(events) if events else None
    assert row is None or row.state is state
    return row


def step(state: State, event: Event) -> DeliveryRow:
    """The row after ``event`` (at minute 10) folds onto a delivery in ``state``."""
    return apply(row_in(state), event)


# -- basics -------------------------------------------------------------------------
def test_no_events_fold_to_nothing() -> None:
    assert fold([]) is None


def test_there_is_one_handler_per_known_type() -> None:
    assert set(HANDLERS) == set(EventType)
    assert TERMINAL == {State.DELIVERED, State.CANCELLED}


def test_the_fold_starts_at_unknown() -> None:
    row = folded(ev("SomethingHappened", 5))
    assert row.state is State.UNKNOWN
    assert row.delivery_id == "D-1"


# -- DeliveryCreated ---------------------------------------------------------------
def test_created_sets_its_fields_and_state_from_unknown() -> None:
    e = ev(CREATED, 1, orderId="O-7", shopId="S-7", estimatedDeliveryAt="2026-11-25T20:00:00+09:00")
    row = folded(e)
    assert row == DeliveryRow(
        delivery_id="D-1",
        state=State.CREATED,
        last_event_at=at(1),
        event_count=1,
        fold_key=e.sort_key,
        order_id="O-7",
        shop_id="S-7",
        created_at=at(1),
        estimated_delivery_at=datetime(2026, 11, 25, 11, 0, tzinfo=UTC),
    )


@pytest.mark.parametrize("state", [State.CREATED, State.ASSIGNED, State.PICKED_UP])
def test_created_later_in_sort_order_keeps_the_state(state: State) -> None:
    before = row_in(state)
    assert before is not None
    row = step(state, ev(CREATED, 10, orderId="O-9", shopId="S-9"))
    assert row.state is state
    assert (row.order_id, row.shop_id, row.created_at) == ("O-9", "S-9", at(10))
    assert row.rider_id == before.rider_id


def test_created_after_assigned_in_sort_order() -> None:
    """The rider got there first (by time): the delivery stays ASSIGNED, gains its order."""
    row = folded(ev(CREATED, 5), ev(ASSIGNED, 1, riderId="R-3"))
    assert row.state is State.ASSIGNED
    assert (row.order_id, row.shop_id, row.rider_id) == ("O-1", "S-1", "R-3")
    assert row.created_at == at(5) and row.assigned_at == at(1)


def test_created_without_eta_keeps_an_earlier_eta() -> None:
    row = folded(ev(ETA, 0, estimatedDeliveryAt="2026-11-25T12:00:00Z"), ev(CREATED, 1))
    assert row.estimated_delivery_at == datetime(2026, 11, 25, 12, 0, tzinfo=UTC)
    assert row.state is State.CREATED


# -- DeliveryRiderAssigned -----------------------------------------------------------
@pytest.mark.parametrize("state", [State.UNKNOWN, State.CREATED, State.ASSIGNED])
def test_assigned_from_unknown_created_assigned(state: State) -> None:
    before = row_in(state)
    row = step(state, ev(ASSIGNED, 10, riderId="R-2"))
    assert row.state is State.ASSIGNED
    assert row.rider_id == "R-2"
    assert row.assigned_at == at(10)
    if before is not None:
        assert (row.order_id, row.created_at) == (before.order_id, before.created_at)


def test_assigned_from_picked_up_changes_the_rider_only() -> None:
    before = row_in(State.PICKED_UP)
    assert before is not None
    row = step(State.PICKED_UP, ev(ASSIGNED, 10, riderId="R-2"))
    assert row.state is State.PICKED_UP
    assert row.rider_id == "R-2"
    assert row.assigned_at == before.assigned_at == at(1)
    assert row.picked_up_at == before.picked_up_at


# -- DeliveryRiderUnassigned ---------------------------------------------------------
def test_unassigned_from_assigned() -> None:
    row = step(State.ASSIGNED, ev(UNASSIGNED, 10, reason="rider ill"))
    assert row.state is State.CREATED
    assert row.rider_id is None and row.assigned_at is None
    assert row.order_id == "O-1"


def test_unassigned_from_assigned_without_created() -> None:
    row = folded(ev(ASSIGNED, 0), ev(UNASSIGNED, 1))
    assert row.state is State.CREATED
    assert row.rider_id is None


@pytest.mark.parametrize("state", [State.UNKNOWN, State.CREATED, State.PICKED_UP])
def test_unassigned_changes_nothing_elsewhere(state: State) -> None:
    before = row_in(state)
    row = step(state, ev(UNASSIGNED, 10))
    assert row.state is state
    if before is not None:
        assert replace(row, event_count=before.event_count, last_event_at=before.last_event_at,
                       fold_key=before.fold_key) == before


# -- DeliveryPickedUp ---------------------------------------------------------------
@pytest.mark.parametrize("state", [State.UNKNOWN, State.CREATED, State.ASSIGNED])
def test_picked_up_without_rider(state: State) -> None:
    before = row_in(state)
    row = step(state, ev(PICKED_UP, 10))
    assert row.state is State.PICKED_UP
    assert row.picked_up_at == at(10)
    assert row.rider_id == (before.rider_id if before is not None else None)


@pytest.mark.parametrize("state", [State.UNKNOWN, State.CREATED, State.ASSIGNED])
def test_picked_up_with_rider(state: State) -> None:
    row = step(state, ev(PICKED_UP, 10, riderId="R-9"))
    assert row.state is State.PICKED_UP
    assert row.rider_id == "R-9"
    assert row.picked_up_at == at(10)


def test_picked_up_from_picked_up_is_a_no_op() -> None:
    before = row_in(State.PICKED_UP)
    assert before is not None
    row = step(State.PICKED_UP, ev(PICKED_UP, 10, riderId="R-9"))
    assert row.picked_up_at == before.picked_up_at == at(2)
    assert row.rider_id == "R-1"
    assert row.event_count == before.event_count + 1
    assert row.last_event_at == at(10)


# -- DeliveryCompleted, DeliveryCancelled -----------------------------------------------
@pytest.mark.parametrize(
    "state", [State.UNKNOWN, State.CREATED, State.ASSIGNED, State.PICKED_UP]
)
def test_completed_from_any_open_state(state: State) -> None:
    before = row_in(state)
    row = step(state, ev(COMPLETED, 10))
    assert row.state is State.DELIVERED
    assert row.delivered_at == at(10)
    if before is not None:
        assert row.rider_id == before.rider_id and row.picked_up_at == before.picked_up_at


@pytest.mark.parametrize(
    "state", [State.UNKNOWN, State.CREATED, State.ASSIGNED, State.PICKED_UP]
)
def test_cancelled_from_any_open_state(state: State) -> None:
    row = step(state, ev(CANCELLED, 10, reason="customer"))
    assert row.state is State.CANCELLED
    assert row.cancelled_at == at(10)
    assert row.cancel_reason == "customer"


def test_cancelled_without_reason() -> None:
    row = step(State.CREATED, ev(CANCELLED, 10))
    assert row.state is State.CANCELLED
    assert row.cancel_reason is None


# -- DeliveryEtaChanged -------------------------------------------------------------
@pytest.mark.parametrize(
    "state", [State.UNKNOWN, State.CREATED, State.ASSIGNED, State.PICKED_UP]
)
def test_eta_changed_sets_the_eta_only(state: State) -> None:
    before = row_in(state)
    row = step(state, ev(ETA, 10, estimatedDeliveryAt="2026-11-25 23:00:00"))
    assert row.estimated_delivery_at == datetime(2026, 11, 25, 23, 0, tzinfo=UTC)
    assert row.state is state
    if before is not None:
        assert replace(
            row, estimated_delivery_at=None, event_count=0, last_event_at=T0,
            fold_key=before.fold_key,
        ) == replace(before, estimated_delivery_at=None, event_count=0, last_event_at=T0)


def test_eta_changed_overrides_the_created_eta() -> None:
    row = folded(
        ev(CREATED, 0, estimatedDeliveryAt="2026-11-25T11:00:00Z"),
        ev(ETA, 5, estimatedDeliveryAt="2026-11-25T11:30:00Z"),
    )
    assert row.estimated_delivery_at == datetime(2026, 11, 25, 11, 30, tzinfo=UTC)


# -- terminal states ----------------------------------------------------------------
LATE_EVENTS = [
    (CREATED, {"orderId": "O-late", "shopId": "S-late"}),
    (ASSIGNED, {"riderId": "R-late"}),
    (UNASSIGNED, {}),
    (PICKED_UP, {"riderId": "R-late"}),
    (COMPLETED, {}),
    (CANCELLED, {"reason": "late"}),
    (ETA, {"estimatedDeliveryAt": "2026-11-26T00:00:00Z"}),
    ("DeliveryRated", {"stars": 5}),
]


@pytest.mark.parametrize("state", sorted(TERMINAL))
@pytest.mark.parametrize("late_type, data", LATE_EVENTS)
def test_terminal_states_ignore_later_events_but_count_them(
    state: State, late_type: str, data: dict[str, Any]
) -> None:
    before = row_in(state)
    assert before is not None
    late = ev(late_type, 30, **data)
    row = apply(before, late)
    assert row == replace(
        before, event_count=before.event_count + 1, last_event_at=at(30), fold_key=late.sort_key
    )


def test_completed_then_cancelled_stays_delivered() -> None:
    row = folded(ev(CANCELLED, 9), ev(COMPLETED, 8))  # arrival order reversed
    assert row.state is State.DELIVERED
    assert row.cancelled_at is None and row.cancel_reason is None
    assert row.event_count == 2 and row.last_event_at == at(9)


# -- unknown events -----------------------------------------------------------------
def test_unknown_events_count_and_move_last_event_at_only() -> None:
    base = [ev(CREATED, 0), ev(ASSIGNED, 1)]
    without = folded(*base)
    unknown = [ev("DeliveryRated", 7, stars=5), ev("배달평가", 3)]
    row = folded(*base, *unknown)
    assert row == replace(without, event_count=4, last_event_at=at(7), fold_key=unknown[0].sort_key)


def test_an_unknown_event_alone() -> None:
    e = ev("Whatever", 2)
    assert folded(e) == DeliveryRow("D-1", State.UNKNOWN, at(2), 1, e.sort_key)


# -- arrival order, sort order --------------------------------------------------------
def test_a_cancel_before_its_create_in_arrival_order() -> None:
    create, cancel = ev(CREATED, 0), ev(CANCELLED, 5, reason="no rider")
    row = folded(cancel, create)
    assert row.state is State.CANCELLED
    assert (row.order_id, row.created_at, row.cancelled_at) == ("O-1", at(0), at(5))
    assert row.cancel_reason == "no rider"
    assert row == folded(create, cancel)


def test_time_orders_before_sequence() -> None:
    """A later time wins even with a smaller sequence."""
    row = folded(
        ev(ASSIGNED, 1, sequence=1, riderId="R-late"),
        ev(ASSIGNED, 0, sequence=9, riderId="R-early"),
    )
    assert row.rider_id == "R-late"


@pytest.mark.parametrize(
    "seq_unassign, seq_assign, expected",
    [(1, 2, State.ASSIGNED), (2, 1, State.CREATED), (None, 1, State.ASSIGNED),
     (1, None, State.CREATED), (-1, None, State.ASSIGNED)],
)
def test_sequence_breaks_a_time_tie(
    seq_unassign: int | None, seq_assign: int | None, expected: State
) -> None:
    # The event ids would order them the other way round: "a" < "b".
    events = [
        ev(CREATED, 0),
        ev(ASSIGNED, 5, event_id="a", sequence=seq_assign),
        ev(UNASSIGNED, 5, event_id="b", sequence=seq_unassign),
    ]
    row = folded(*events)
    assert row.state is expected
    assert folded(*reversed(events)) == row


def test_absent_sequence_equals_zero() -> None:
    """With time and sequence tied (absent = 0), the event id decides: "b" after "a"."""
    row = folded(
        ev(ASSIGNED, 5, event_id="b", sequence=None, riderId="R-b"),
        ev(ASSIGNED, 5, event_id="a", sequence=0, riderId="R-a"),
    )
    assert row.rider_id == "R-b"
    row = folded(
        ev(ASSIGNED, 5, event_id="b", sequence=0, riderId="R-b"),
        ev(ASSIGNED, 5, event_id="a", sequence=None, riderId="R-a"),
    )
    assert row.rider_id == "R-b"


@pytest.mark.parametrize(
    "ids",
    [
        ["Z", "a"],                  # code point, not case-insensitive: 'Z' < 'a'
        ["a", "é"],                  # U+00E9 after ASCII
        ["é", "가"],                 # Hangul syllables after Latin-1
        ["e-10", "e-9"],             # strings, not numbers
        ["\uff5e", "\U0001f600"],    # code point order; UTF-16 order would swap these
        ["가", "가나"],              # a prefix sorts first
    ],
)
def test_event_id_breaks_a_full_tie_by_code_point(ids: list[str]) -> None:
    first, last = ids
    events = [
        ev(ASSIGNED, 5, event_id=last, sequence=3, riderId=f"R-{last}"),
        ev(ASSIGNED, 5, event_id=first, sequence=3, riderId=f"R-{first}"),
    ]
    for order in (events, events[::-1]):
        row = folded(*order)
        assert row.rider_id == f"R-{last}"
        assert row.fold_key == (at(5), 3, last)


def test_non_ascii_ids_decide_a_terminal_race() -> None:
    """Completed vs Cancelled at the same instant and sequence: the larger id comes last,
    so the smaller id's event is the one that takes effect."""
    row = folded(ev(CANCELLED, 5, event_id="취소"), ev(COMPLETED, 5, event_id="완료"))
    # '완' (U+C644) < '취' (U+CDE8): Completed first, then Cancelled is ignored
    assert row.state is State.DELIVERED
    assert row.event_count == 2


def test_last_event_at_is_the_greatest_time_even_after_a_terminal_event() -> None:
    row = folded(ev(CREATED, 0), ev(COMPLETED, 1), ev("Audit", 50), ev(ETA, 40))
    assert row.state is State.DELIVERED
    assert row.last_event_at == at(50)
    assert row.event_count == 4


# -- duplicates ------------------------------------------------------------------------
def test_duplicates_count_once() -> None:
    create = ev(CREATED, 0)
    row = folded(create, create, ev(ASSIGNED, 1), create)
    assert row.event_count == 2


def test_the_first_copy_of_an_event_id_wins_even_with_different_content() -> None:
    first = ev(CANCELLED, 5, event_id="dup", reason="first")
    second = ev(CANCELLED, 1, event_id="dup", reason="second")
    row = folded(ev(CREATED, 0), first, second)
    assert row.cancel_reason == "first"
    assert row.cancelled_at == at(5)
    assert row.event_count == 2
    row = folded(ev(CREATED, 0), second, first)
    assert row.cancel_reason == "second" and row.cancelled_at == at(1)


def test_a_duplicate_of_a_different_type_changes_nothing() -> None:
    row = folded(ev(CREATED, 0, event_id="x"), ev(COMPLETED, 1, event_id="x"))
    assert row.state is State.CREATED
    assert row.event_count == 1


def test_distinct_keeps_arrival_order_of_first_copies() -> None:
    a, b = ev("X", 1, event_id="a"), ev("X", 0, event_id="b")
    assert distinct([a, b, replace(a, data={"v": 2}), b]) == [a, b]


# -- incremental apply ----------------------------------------------------------------
def test_apply_refuses_an_event_that_sorts_before_the_fold() -> None:
    row = folded(ev(CREATED, 5))
    with pytest.raises(ValueError, match="refold"):
        apply(row, ev(ASSIGNED, 4))


def test_apply_accepts_a_later_id_at_the_same_time() -> None:
    row = folded(ev(CREATED, 5, event_id="a"))
    assert apply(row, ev(ASSIGNED, 5, event_id="b")).state is State.ASSIGNED
    with pytest.raises(ValueError):
        apply(row, ev(ASSIGNED, 5, event_id="A"))


# -- properties over all inputs ---------------------------------------------------------
TYPES = [CREATED, ASSIGNED, UNASSIGNED, PICKED_UP, COMPLETED, CANCELLED, ETA,
         "배달생성", "배차완료", "배차취소", "픽업완료",
         "배달완료", "배달취소", "배달예상시간변경",
         "DeliveryRated", "알수없음"]
RIDERS = st.sampled_from(["R-1", "R-2", "R-3"])
TIMES = st.integers(min_value=0, max_value=4)  # few distinct times: many ties
SEQUENCES = st.one_of(st.none(), st.integers(min_value=-2, max_value=3))
IDS = st.text(alphabet="aZ09é가😀\uff5e-", min_size=1, max_size=4)


@st.composite
def events_of_one_delivery(draw: st.DrawFn) -> list[Event]:
    ids = draw(st.lists(IDS, min_size=1, max_size=12, unique=True))
    out = []
    for event_id in ids:
        event_type = draw(st.sampled_from(TYPES))
        data: dict[str, Any] = {}
        if event_type in (CREATED, "배달생성"):
            data = {"orderId": draw(st.sampled_from(["O-1", "O-2"])), "shopId": "S-1"}
            if draw(st.booleans()):
                data["estimatedDeliveryAt"] = f"2026-11-25T1{draw(TIMES)}:00:00Z"
        elif event_type in (ASSIGNED, "배차완료"):
            data = {"riderId": draw(RIDERS)}
        elif event_type in (PICKED_UP, "픽업완료") and draw(st.booleans()):
            data = {"riderId": draw(RIDERS)}
        elif event_type in (CANCELLED, "배달취소") and draw(st.booleans()):
            data = {"reason": draw(st.sampled_from(["a", "b"]))}
        elif event_type in (ETA, "배달예상시간변경"):
            data = {"estimatedDeliveryAt": f"2026-11-25 1{draw(TIMES)}:30:00"}
        out.append(
            make_event(event_id, event_type, "D-1", at(draw(TIMES)), draw(SEQUENCES), data)
        )
    return out


PROPERTY = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@PROPERTY
@given(data=st.data(), events=events_of_one_delivery())
def test_any_permutation_and_duplication_folds_to_the_same_row(
    data: st.DataObject, events: list[Event]
) -> None:
    expected = fold(events)
    duplicates = data.draw(st.lists(st.sampled_from(events), max_size=8))
    arrival = data.draw(st.permutations(events + duplicates))
    assert fold(arrival) == expected


@PROPERTY
@given(events=events_of_one_delivery())
def test_incremental_apply_over_sorted_events_equals_fold(events: list[Event]) -> None:
    row: DeliveryRow | None = None
    for event in sorted(events, key=lambda e: e.sort_key):
        row = apply(row, event)
    assert row == fold(reversed(events))
    assert row is not None
    assert row.event_count == len(events)
    assert row.last_event_at == max(e.occurred_at for e in events)
    assert row.fold_key == max(e.sort_key for e in events)


@PROPERTY
@given(events=events_of_one_delivery(), split=st.integers(min_value=0, max_value=12))
def test_a_fold_of_a_prefix_continued_by_apply_equals_fold(events: list[Event], split: int) -> None:
    """What the store does: fold what it has, then apply newer events one by one."""
    ordered = sorted(events, key=lambda e: e.sort_key)
    row = fold(ordered[:split])
    for event in ordered[split:]:
        row = apply(row, event)
    assert row == fold(events)


# -- purity -------------------------------------------------------------------------------
def test_the_fold_imports_neither_sqlalchemy_nor_kafka() -> None:
    code = (
        "import sys, schema.fold, schema.events\n"
        "heavy = sorted(m for m in sys.modules if m.split('.')[0] in "
        "('sqlalchemy', 'kafka', 'alembic', 'psycopg'))\n"
        "assert 'schema.fold' in sys.modules\n"
        "print(','.join(heavy) or 'PURE')\n"
    )
    proc = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, timeout=60
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "PURE"


# -- the fold step by step (lineage and transitions read these) ---------------------------
@PROPERTY
@given(events=events_of_one_delivery())
def test_steps_end_in_the_fold_and_each_step_is_apply(events: list[Event]) -> None:
    """``steps`` is the same fold: its rows are ``apply``'s, its last row is ``fold``'s."""
    folded_steps = steps(events)
    assert folded_steps[-1].row == fold(events)
    row: DeliveryRow | None = None
    for step_ in folded_steps:
        assert step_.before is (row.state if row else State.UNKNOWN)
        row = apply(row, step_.event)
        assert step_.row == row
        assert {"event_count", "last_event_at"} <= set(step_.fields)
        assert "fold_key" not in step_.fields


def test_a_rule_reports_only_the_fields_it_writes() -> None:
    """A Created without an ETA, or from ASSIGNED, keeps those fields: it does not set them;
    a pickup without a rider keeps the rider."""
    created = steps([ev(ASSIGNED, 0), ev(CREATED, 1)])[1]
    assert set(created.fields) == {"order_id", "shop_id", "created_at", "event_count",
                                   "last_event_at"}
    picked = steps([ev(ASSIGNED, 0), ev(PICKED_UP, 1)])[1]
    assert "rider_id" not in picked.fields and picked.row.rider_id == "R-1"
    with_rider = steps([ev(ASSIGNED, 0), ev(PICKED_UP, 1, riderId="R-2")])[1]
    assert "rider_id" in with_rider.fields
    ignored = steps([ev(CANCELLED, 0), ev(COMPLETED, 1)])[1]
    assert set(ignored.fields) == {"event_count", "last_event_at"}
