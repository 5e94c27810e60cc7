"""Which column of the read-model tables holds which field of a ``DeliveryRow`` or an ``Event``.

The column lists are read off ``schema.tables``, so a column added there is one
place to change, not four: the projector's store writes and reads through these
functions, and the query API turns its rows into the same ``DeliveryRow``.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import fields, replace
from operator import attrgetter
from typing import Any, Final

from schema.events import Event, make_event
from schema.fold import DeliveryRow, State
from schema.tables import deliveries, delivery_events

#: The three columns that hold ``DeliveryRow.fold_key``, in its order.
FOLD_KEY_COLUMNS: Final = ("fold_occurred_at", "fold_sequence", "fold_event_id")

#: Columns of ``deliveries`` after (generation, delivery_id), in table order.
DELIVERY_COLUMNS: Final = tuple(
    c.name for c in deliveries.columns if c.name not in ("generation", "delivery_id")
)

#: Columns of ``delivery_events`` a batch writes per event, in table order
#: (``generation`` and ``applied_at`` are the batch's, not the event's).
HISTORY_COLUMNS: Final = tuple(
    c.name for c in delivery_events.columns if c.name not in ("generation", "applied_at")
)

#: ``DeliveryRow`` fields held as they are, in a column of the same name.
_PLAIN: Final = tuple(c for c in DELIVERY_COLUMNS if c not in FOLD_KEY_COLUMNS)
_STATE: Final = 1 + _PLAIN.index("state")


def _check() -> None:
    """The table and ``DeliveryRow`` must describe the same fields (a failure names them)."""
    if DELIVERY_COLUMNS[-len(FOLD_KEY_COLUMNS):] != FOLD_KEY_COLUMNS:
        raise RuntimeError(f"deliveries must end with the fold key columns {FOLD_KEY_COLUMNS}")
    have = {f.name for f in fields(DeliveryRow)}
    want = {"delivery_id", "fold_key", *_PLAIN}
    if have != want:
        raise RuntimeError(
            f"deliveries and DeliveryRow disagree: {sorted(have ^ want)}"
        )


_check()
_values: Final = attrgetter("delivery_id", *_PLAIN)


def delivery_values(row: DeliveryRow) -> tuple[Any, ...]:
    """A current row as (delivery_id, *DELIVERY_COLUMNS): the writers' order."""
    values = list(_values(row))
    values[_STATE] = row.state.value
    return (*values, *row.fold_key)


def delivery_to_db(generation: int, row: DeliveryRow) -> dict[str, Any]:
    """A current row as a mapping of column -> value (tests, SQLAlchemy inserts)."""
    return dict(
        zip(("generation", "delivery_id", *DELIVERY_COLUMNS),
            (generation, *delivery_values(row)), strict=True)
    )


def delivery_from_db(r: Mapping[Any, Any]) -> DeliveryRow:
    """A row of ``deliveries`` (any mapping of its columns) as the fold's ``DeliveryRow``."""
    plain = {name: r[name] for name in _PLAIN}
    plain["state"] = State(plain["state"])
    plain["event_count"] = int(plain["event_count"])
    return DeliveryRow(
        delivery_id=r["delivery_id"],
        fold_key=(r["fold_occurred_at"], int(r["fold_sequence"]), r["fold_event_id"]),
        **plain,
    )


def event_from_history(r: Mapping[Any, Any]) -> Event:
    """An event of ``delivery_events`` as it was folded when first applied.

    Its type and ``known`` as stored, its ETA as read then: a later change of
    SOURCE_TIMEZONE (or of the catalogue) moves no row that was already folded.
    Its ``data`` and version are as received: a known event goes through the same
    pipeline as a message (``make_event``, which upcasts it to the newest shape).
    """
    sequence = None if r["sequence"] is None else int(r["sequence"])
    data = r["data"] if r["data"] is not None else {}
    version = int(r.get("event_version", 1))
    if not r["known"]:
        return Event(r["event_id"], r["event_type"], r["delivery_id"], r["occurred_at"],
                     sequence, data, known=False, version=version)
    event = make_event(r["event_id"], r["event_type"], r["delivery_id"], r["occurred_at"],
                       sequence, data, version=version)
    return replace(event, estimated_delivery_at=r["estimated_delivery_at"])
