"""The pure fold: a delivery's distinct events -> its current row.

This module imports only the standard library and ``schema.events``: no database,
no broker. ``fold`` is the definition (the contract, section Folding rules); ``apply`` is
one step of it, which the projector uses incrementally while events arrive in
order, and ``fold`` again when one arrives late.

One handler per known event type, found in ``HANDLERS``. Unknown types have a
declared policy: they count toward ``event_count`` and ``last_event_at`` and change
nothing else.

``changes`` is the one definition of a step. ``apply`` uses it for the new row
alone; ``steps`` also keeps what each event set, from which ``lineage`` (which event
set each field) and ``timeline`` (the state path, and the transitions a late event
rewrote, commit by commit) are read: the query API's time travel uses the same rules.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Final

from schema.events import Event, EventType
from schema.states import TERMINAL, DeliveryState

#: The fold's name for the contract's states (``schema.states``).
State = DeliveryState


@dataclass(frozen=True)
class DeliveryRow:
    """Current state of one delivery, plus the sort key of the greatest event folded."""

    delivery_id: str
    state: State
    last_event_at: datetime
    event_count: int
    fold_key: tuple[datetime, int, str]
    order_id: str | None = None
    shop_id: str | None = None
    rider_id: str | None = None
    created_at: datetime | None = None
    assigned_at: datetime | None = None
    picked_up_at: datetime | None = None
    delivered_at: datetime | None = None
    cancelled_at: datetime | None = None
    cancel_reason: str | None = None
    estimated_delivery_at: datetime | None = None


Changes = dict[str, Any]
#: A handler says which fields of the row an event changes (a dict of new values).
Handler = Callable[[DeliveryRow, Event], Changes]


def _created(row: DeliveryRow, event: Event) -> Changes:
    result: Changes = {
        "order_id": event.data["orderId"],
        "shop_id": event.data["shop"]["id"],
        "created_at": event.occurred_at,
    }
    if event.estimated_delivery_at is not None:
        result["estimated_delivery_at"] = event.estimated_delivery_at
    if row.state is State.UNKNOWN:
        result["state"] = State.CREATED
    return result


def _rider_assigned(row: DeliveryRow, event: Event) -> Changes:
    rider = event.data["rider"]["id"]
    if row.state in (State.UNKNOWN, State.CREATED, State.ASSIGNED):
        return {"state": State.ASSIGNED, "rider_id": rider, "assigned_at": event.occurred_at}
    if row.state is State.PICKED_UP:
        return {"rider_id": rider}
    return {}


def _rider_unassigned(row: DeliveryRow, event: Event) -> Changes:
    if row.state is State.ASSIGNED:
        return {"state": State.CREATED, "rider_id": None, "assigned_at": None}
    return {}


def _picked_up(row: DeliveryRow, event: Event) -> Changes:
    if row.state not in (State.UNKNOWN, State.CREATED, State.ASSIGNED):
        return {}
    result: Changes = {"state": State.PICKED_UP, "picked_up_at": event.occurred_at}
    rider = event.data.get("riderId")
    if rider is not None:
        result["rider_id"] = rider
    return result


def _completed(row: DeliveryRow, event: Event) -> Changes:
    return {"state": State.DELIVERED, "delivered_at": event.occurred_at}


def _cancelled(row: DeliveryRow, event: Event) -> Changes:
    return {
        "state": State.CANCELLED,
        "cancelled_at": event.occurred_at,
        "cancel_reason": event.data.get("reason"),
    }


def _eta_changed(row: DeliveryRow, event: Event) -> Changes:
    return {"estimated_delivery_at": event.estimated_delivery_at}


HANDLERS: Final[Mapping[EventType, Handler]] = {
    EventType.CREATED: _created,
    EventType.RIDER_ASSIGNED: _rider_assigned,
    EventType.RIDER_UNASSIGNED: _rider_unassigned,
    EventType.PICKED_UP: _picked_up,
    EventType.COMPLETED: _completed,
    EventType.CANCELLED: _cancelled,
    EventType.ETA_CHANGED: _eta_changed,
}


def empty_row(event: Event) -> DeliveryRow:
    """The row before any event: state UNKNOWN, nothing seen."""
    return DeliveryRow(
        delivery_id=event.delivery_id,
        state=State.UNKNOWN,
        last_event_at=event.occurred_at,
        event_count=0,
        fold_key=event.sort_key,
    )


def changes(row: DeliveryRow, event: Event) -> Changes:
    """One step of the fold, the only definition of its rules: the fields ``event`` sets
    on ``row`` (a dict of new values); ``event`` must not sort before ``row.fold_key``.

    Terminal states ignore later events for state, but every event, unknown types
    included, counts and moves ``last_event_at``. ``apply`` and ``steps`` are the two
    uses of it: the new row alone (the projector's hot path), or the row with what
    the event set (lineage and transitions).
    """
    key = event.sort_key
    if key < row.fold_key:
        raise ValueError(
            f"event {event.event_id} sorts before what {row.delivery_id} has folded; refold"
        )
    kind = event.kind
    found = HANDLERS[kind](row, event) if kind is not None and row.state not in TERMINAL else {}
    found["event_count"] = row.event_count + 1
    found["last_event_at"] = max(row.last_event_at, event.occurred_at)
    found["fold_key"] = key
    return found


def apply(row: DeliveryRow | None, event: Event) -> DeliveryRow:
    """Fold one event onto ``row`` (None: the row before any event); see ``changes``."""
    if row is None:
        row = empty_row(event)
    return _evolve(row, changes(row, event))


def _evolve(row: DeliveryRow, changes: Changes) -> DeliveryRow:
    """``dataclasses.replace(row, **changes)`` without its per-field ``__init__`` work.

    The row is a plain frozen dataclass (no ``__post_init__``, no slots): a copy of
    its ``__dict__`` with the changes is the same value, about five times faster,
    and this runs once per event.
    """
    new = object.__new__(DeliveryRow)
    fields = dict(row.__dict__)
    fields.update(changes)
    new.__dict__.update(fields)
    return new


def distinct(events: Iterable[Event]) -> list[Event]:
    """Drop later copies of an event id: the first copy applied wins (rule 4)."""
    seen: dict[str, Event] = {}
    for event in events:
        seen.setdefault(event.event_id, event)
    return list(seen.values())


def fold(events: Iterable[Event]) -> DeliveryRow | None:
    """The current row of one delivery from its events, in any order, with duplicates.

    Returns None for no events.
    """
    row: DeliveryRow | None = None
    for event in sorted(distinct(events), key=lambda e: e.sort_key):
        row = apply(row, event)
    return row


@dataclass(frozen=True)
class BatchFold:
    """What a batch of new events does to the current rows.

    ``rows``: the new current rows of deliveries whose events all sort after what
    their row has folded (applied incrementally). ``refold``: deliveries that got
    an event sorting before their row's fold key; their rows must be folded again
    from the whole history.
    """

    rows: list[DeliveryRow]
    refold: list[str]


def fold_batch(current: Mapping[str, DeliveryRow], events: Iterable[Event]) -> BatchFold:
    """Fold distinct, never-applied events onto the current rows of their deliveries."""
    by_delivery: dict[str, list[Event]] = {}
    for event in events:
        by_delivery.setdefault(event.delivery_id, []).append(event)
    rows: list[DeliveryRow] = []
    refold: list[str] = []
    for delivery_id, batch in by_delivery.items():
        batch.sort(key=lambda e: e.sort_key)
        row = current.get(delivery_id)
        if row is not None and batch[0].sort_key < row.fold_key:
            refold.append(delivery_id)
            continue
        for event in batch:  # ``apply`` inlined: this loop runs once per event
            if row is None:
                row = empty_row(event)
            row = _evolve(row, changes(row, event))
        assert row is not None
        rows.append(row)
    return BatchFold(rows, refold)


# -- the fold step by step: lineage and the state path -----------------------------
#: The row's own bookkeeping, not a field of the delivery.
_INTERNAL: Final = frozenset({"fold_key"})
#: The row's fields in the order of the contract's ``Delivery`` type (lineage's order).
ROW_FIELDS: Final = (
    "delivery_id", "order_id", "shop_id", "rider_id", "state", "created_at", "assigned_at",
    "picked_up_at", "delivered_at", "cancelled_at", "cancel_reason", "estimated_delivery_at",
    "last_event_at", "event_count",
)
assert set(ROW_FIELDS) == set(DeliveryRow.__dataclass_fields__) - _INTERNAL


@dataclass(frozen=True)
class Step:
    """One event folded: the row after it, the state before it, and the fields it set.

    ``fields`` are the keys of ``changes`` (the fold's own rules), ``fold_key`` aside:
    a field is *set* by an event when its rule writes it, also to the value it held
    (an assignment from ASSIGNED writes ``state``) or to null (an unassignment
    clears ``rider_id``). ``event_count`` and ``last_event_at`` are set by every event.
    """

    event: Event
    row: DeliveryRow
    before: State
    fields: tuple[str, ...]


def _steps(row: DeliveryRow | None, ordered: Iterable[Event]) -> list[Step]:
    """``ordered`` (distinct, in fold order) folded onto ``row``, step by step."""
    found: list[Step] = []
    for event in ordered:
        base = row if row is not None else empty_row(event)
        change = changes(base, event)
        row = _evolve(base, change)
        found.append(Step(event, row, base.state, tuple(k for k in change if k not in _INTERNAL)))
    return found


def steps(events: Iterable[Event]) -> list[Step]:
    """``fold`` one step at a time: the last step's row is ``fold(events)``."""
    return _steps(None, sorted(distinct(events), key=lambda e: e.sort_key))


def lineage(folded: Sequence[Step]) -> dict[str, Step]:
    """Per row field, the last step (in fold order) that set it; fields no event set are
    absent. In ``ROW_FIELDS`` order."""
    last: dict[str, Step] = {}
    for step in folded:
        for name in step.fields:
            last[name] = step
    return {name: last[name] for name in ROW_FIELDS if name in last}


@dataclass(frozen=True)
class Transition:
    """A change of state on the fold's path: ``source`` -> ``target`` when ``event`` folded.

    ``rewritten_by``: this transition was on the path the read model showed after an
    earlier commit, and the commit that brought ``rewritten_by`` (the first of its
    events in fold order) took it off the path; None for the path of the whole fold.
    """

    source: State
    target: State
    event: Event
    rewritten_by: Event | None = None


_TransitionKey = tuple[State, State, str]


def _path(folded: Iterable[Step]) -> dict[_TransitionKey, Step]:
    return {
        (s.before, s.row.state, s.event.event_id): s for s in folded if s.before is not s.row.state
    }


@dataclass(frozen=True)
class Timeline:
    """A delivery's events folded commit by commit, as the read model received them.

    ``steps``: the fold of all of them (its last row is ``fold`` of the events).
    ``transitions``: the state path of that fold, and every transition an earlier
    commit's fold had on its path and a later commit rewrote; ordered by the fold
    order of their event, a rewritten one before a later one of the same event.
    """

    steps: list[Step]
    transitions: list[Transition]

    @property
    def row(self) -> DeliveryRow | None:
        return self.steps[-1].row if self.steps else None


class RefoldLimit(ValueError):
    """``timeline`` would fold more steps than it was allowed."""


def timeline(commits: Iterable[Sequence[Event]], max_steps: int | None = None) -> Timeline:
    """Fold ``commits`` (groups of events, in the order they were applied) as the
    projector does: a commit whose events all sort after the fold so far extends it;
    one with an earlier event refolds from that event on. After each commit the path
    is compared with the one before: transitions that left it are rewritten by it.

    Events arriving in order cost one step each; a commit that sorts first refolds
    everything (n events arriving in reverse, one per commit, cost n(n+1)/2 steps).
    Past ``max_steps`` steps in all, ``RefoldLimit`` is raised.
    """
    budget = max_steps
    folded: list[Step] = []
    seen: set[str] = set()
    shown: dict[_TransitionKey, int] = {}  # the current path: key -> when it appeared
    found: list[tuple[tuple[datetime, int, str], int, Transition]] = []
    appeared = 0
    for commit in commits:
        fresh = distinct(e for e in commit if e.event_id not in seen)
        new = sorted(fresh, key=lambda e: e.sort_key)
        if not new:
            continue
        seen.update(e.event_id for e in new)
        first = new[0].sort_key
        start = len(folded)
        while start and folded[start - 1].event.sort_key > first:
            start -= 1
        old_tail = _path(folded[start:])
        rest = sorted([s.event for s in folded[start:]] + new, key=lambda e: e.sort_key)
        if budget is not None:
            budget -= len(rest)
            if budget < 0:
                raise RefoldLimit(f"tracing the path takes more than {max_steps} fold steps")
        folded[start:] = _steps(folded[start - 1].row if start else None, rest)
        new_tail = _path(folded[start:])
        for key, step in old_tail.items():
            if key not in new_tail:
                transition = Transition(key[0], key[1], step.event, rewritten_by=new[0])
                found.append((step.event.sort_key, shown.pop(key), transition))
        for key in new_tail:
            if key not in shown:
                shown[key] = appeared
                appeared += 1
    current = _path(folded)
    for key, step in current.items():
        found.append((step.event.sort_key, shown[key], Transition(key[0], key[1], step.event)))
    found.sort(key=lambda item: (item[0], item[1]))
    return Timeline(folded, [t for _, _, t in found])
