"""Time travel and lineage: a delivery's history folded by the pure fold (``schema.fold``).

``delivery(id, asOf, asOfApplied)``, ``Delivery.lineage`` and ``Delivery.transitions``
are read from one ``timeline`` per (delivery, bound): the delivery's events within the
bound, in the order they were applied, grouped into the commits that applied them
(one ``applied_at`` per projector transaction), folded commit by commit. The fold's
rules are the projector's own (``schema.fold.changes``); nothing here restates them.

The fold runs in the database thread, right after its statement, so the event loop
never folds. It takes at most ``FOLD_LIMIT`` events of a delivery: a delivery with
more gets a readable error on these fields (the rest of the query still answers).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from itertools import groupby

from sqlalchemy import Connection

from query_api import reads
from query_api.limits.pages import FOLD_LIMIT
from query_api.reads import FoldBound, Generation
from schema.fold import (
    DeliveryRow,
    RefoldLimit,
    Step,
    Transition,
    lineage,
    steps,
    timeline,
)
from schema.rows import event_from_history

__all__ = [
    "FOLD_LIMIT", "MAX_REFOLD_STEPS", "DeliveryTimeline", "load_timelines",
    "too_long_message", "untraced_message",
]

#: The most fold steps spent tracing one delivery's transitions: events in order cost
#: one each, a late event refolds what sorts after it (``schema.fold.timeline``), so
#: 20 events arriving in reverse order one commit each cost 210. Beyond it
#: ``transitions`` is refused and the rest still answers: 500 events in reverse, one
#: commit each, would take 125,250 steps (1.3 s of CPU measured under load), and
#: the session charges only ``FOLD_LIMIT`` per delivery.
MAX_REFOLD_STEPS = 4 * FOLD_LIMIT


@dataclass(frozen=True)
class DeliveryTimeline:
    """One delivery's events within a bound, folded."""

    delivery_id: str
    #: The fold of those events; None when there are none (or too many, see ``too_long``).
    row: DeliveryRow | None = None
    lineage: dict[str, Step] = field(default_factory=dict)
    transitions: list[Transition] = field(default_factory=list)
    #: When each event was applied (a rewrite is dated by its event's commit).
    applied_at: dict[str, datetime] = field(default_factory=dict)
    too_long: bool = False
    #: The transitions took more than ``MAX_REFOLD_STEPS`` to trace (``transitions`` empty).
    untraced: bool = False


def untraced_message(delivery_id: str) -> str:
    return (
        f"delivery {delivery_id!r}'s events arrived so far out of order that tracing its"
        f" transitions takes more than {MAX_REFOLD_STEPS} fold steps; its row and lineage"
        " are served without `transitions`"
    )


def too_long_message(delivery_id: str) -> str:
    return (
        f"delivery {delivery_id!r} has more than {FOLD_LIMIT} events; time travel, lineage"
        " and transitions fold at most that many"
    )


def load_timelines(
    conn: Connection, generation: Generation, ids: Sequence[str], bound: FoldBound | None
) -> dict[str, DeliveryTimeline]:
    """The timelines of ``ids`` within ``bound``: one statement, then the fold."""
    found: dict[str, DeliveryTimeline] = {}
    histories = reads.applied_histories(conn, generation, ids, bound, FOLD_LIMIT)
    for delivery_id in ids:
        rows = histories.get(delivery_id, [])
        if len(rows) > FOLD_LIMIT:
            found[delivery_id] = DeliveryTimeline(delivery_id, too_long=True)
            continue
        commits = [
            [event_from_history(r) for r in commit]
            for _, commit in groupby(rows, key=lambda r: r["applied_at"])
        ]
        try:
            folded = timeline(commits, MAX_REFOLD_STEPS)
        except RefoldLimit:
            whole = steps(e for commit in commits for e in commit)
            found[delivery_id] = DeliveryTimeline(
                delivery_id, row=whole[-1].row, lineage=lineage(whole), untraced=True
            )
            continue
        found[delivery_id] = DeliveryTimeline(
            delivery_id,
            row=folded.row,
            lineage=lineage(folded.steps),
            transitions=folded.transitions,
            applied_at={r["event_id"]: r["applied_at"] for r in rows},
        )
    return found
