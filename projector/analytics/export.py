"""One export run: the served generation's new history rows into the lake, exactly once.

``plan`` reads (the lake's exported state, the window's rows, the histories they
need, the current rows) and builds the Arrow tables; ``commit`` writes them: the
events and the new watermark in ONE Iceberg commit of ``delivery.delivery_events``,
then the current rows as a replacement of ``delivery.deliveries``. A second
exporter that planned against the same table metadata fails its commit
(``ConcurrentExport``) and writes nothing; pyiceberg does not retry, nor do we.

A crash before the events commit leaves the lake as it was (data files written
but referenced by no snapshot); after it, the watermark is in the lake with the
rows, so the next run reads only what came after, less the overlap whose ids the
lake already holds. A crash between the two commits leaves the deliveries snapshot
one export old; the next run replaces it (its ``snapshot-of`` property tells).

The ids of the delivery's order, shop and rider on each event row are the fold's
(``schema.fold.apply``) after that event, over the delivery's history at export
time, so a query can group events by rider or shop without a join.
"""

from __future__ import annotations

import logging
import sys
import time
import warnings
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import pyarrow as pa
from pyiceberg.exceptions import CommitFailedException, ValidationException
from pyiceberg.table import Table
from sqlalchemy import Engine

from projector.analytics.catalog import deliveries_table, events_table, open_catalog
from projector.analytics.errors import ConcurrentExport
from projector.analytics.layout import (
    DELIVERIES_ARROW,
    DELIVERY_COLUMNS,
    EVENT_COLUMNS,
    EVENTS_ARROW,
    SNAPSHOT_OF_PROPERTY,
    arrow_table,
)
from projector.analytics.settings import AnalyticsSettings
from projector.analytics.window import (
    ExportedState,
    Window,
    next_window,
    parse_state,
    state_properties,
)
from projector.store import analytics as reads
from projector.store.rows import load_json
from schema.fold import DeliveryRow, apply
from schema.rows import event_from_history

log = logging.getLogger("projector.analytics")

#: Above this many deliveries to fold, an incremental export reads the whole history
#: in one ordered scan instead of chunks of ids.
WHOLE_HISTORY_ABOVE = 50_000
#: A first export of at least this many events shows a progress bar (on a terminal).
PROGRESS_FROM = 100_000


@dataclass
class ExportResult:
    generation: int
    rows: int
    watermark: datetime
    deliveries: int | None  # rows of the replaced snapshot; None: not replaced
    dropped: int  # rows read again in the overlap that the lake already held
    committed: bool
    seconds: float = 0.0

    def as_json(self) -> dict[str, Any]:
        return {
            "generation": self.generation,
            "rows": self.rows,
            "watermark": self.watermark.isoformat(),
            "deliveries": self.deliveries,
            "droppedAlreadyExported": self.dropped,
            "committed": self.committed,
            "seconds": round(self.seconds, 3),
        }


@dataclass
class Plan:
    events: Table
    deliveries: Table
    state: ExportedState
    window: Window
    rows: pa.Table
    current: pa.Table | None
    dropped: int
    started: float = field(default_factory=time.monotonic)

    @property
    def mark(self) -> str:
        """The events table's state the deliveries snapshot belongs to once committed."""
        if self.needs_commit or self.state.watermark is None:
            return f"{self.window.generation}@{self.window.upper.isoformat()}"
        return f"{self.state.generation}@{self.state.watermark.isoformat()}"

    @property
    def needs_commit(self) -> bool:
        return (
            self.rows.num_rows > 0
            or self.state.generation != self.window.generation
            or self.state.watermark is None
        )


def _now() -> datetime:
    return datetime.now(UTC)


class Exporter:
    def __init__(
        self,
        engine: Engine,
        settings: AnalyticsSettings,
        *,
        clock: Callable[[], datetime] = _now,
        progress: bool = True,
    ) -> None:
        self.engine = engine
        self.settings = settings
        self.clock = clock
        self.progress = progress
        self.catalog = open_catalog(settings)

    def run_once(self) -> ExportResult:
        return self.commit(self.plan())

    def plan(self) -> Plan:
        started = time.monotonic()
        events = events_table(self.catalog, create=True)
        deliveries = deliveries_table(self.catalog, create=True)
        assert events is not None and deliveries is not None
        state = parse_state(dict(events.properties))
        with self.engine.connect() as conn:
            generation = reads.active_generation(conn)
            window = next_window(
                state,
                generation,
                self.clock(),
                overlap=timedelta(seconds=self.settings.overlap_seconds),
                settle=timedelta(seconds=self.settings.settle_seconds),
            )
            with_version = reads.has_event_version(conn)
            wanted: set[str] | None = None
            dropped = 0
            if window.first:
                total = reads.history_count(conn, generation)
                history = reads.history(conn, generation, None, window.upper,
                                        with_version=with_version)
            else:
                candidates = reads.window_ids(conn, generation, window.lower, window.upper)
                in_lake = _lake_ids(events, window) if candidates else set()
                fresh = [(e, d) for e, d in candidates if e not in in_lake]
                dropped = len(candidates) - len(fresh)
                wanted = {e for e, _ in fresh}
                total = len(wanted)
                touched = sorted({d for _, d in fresh})
                scope = None if len(touched) > WHOLE_HISTORY_ABOVE else touched
                history = (
                    reads.history(conn, generation, scope, window.upper,
                                  with_version=with_version)
                    if touched
                    else iter(())
                )
            rows = _event_rows(history, wanted, generation, self._bar(total, window))
            plan = Plan(events, deliveries, state, window, rows, None, dropped, started)
            if deliveries.properties.get(SNAPSHOT_OF_PROPERTY) != plan.mark:
                plan.current = _current_rows(
                    reads.current_columns(conn, generation, _SERVED), generation
                )
        return plan

    def commit(self, plan: Plan) -> ExportResult:
        committed = False
        if plan.needs_commit:
            try:
                with plan.events.transaction() as tx:
                    if plan.rows.num_rows:
                        tx.append(plan.rows)
                    tx.set_properties(state_properties(plan.window))
            except (CommitFailedException, ValidationException) as exc:
                raise ConcurrentExport(
                    f"another writer committed to the analytics table first ({exc}); "
                    "this export wrote nothing: run it again"
                ) from exc
            committed = True
        replaced = None
        if plan.current is not None:
            try:
                with plan.deliveries.transaction() as tx, warnings.catch_warnings():
                    # The first replacement deletes nothing, and pyiceberg warns of it.
                    warnings.simplefilter("ignore", UserWarning)
                    tx.overwrite(plan.current)
                    tx.set_properties({SNAPSHOT_OF_PROPERTY: plan.mark})
            except (CommitFailedException, ValidationException) as exc:
                raise ConcurrentExport(
                    f"another writer replaced the deliveries snapshot first ({exc}); "
                    "the events were exported, run it again to replace the snapshot"
                ) from exc
            replaced = plan.current.num_rows
        return ExportResult(
            generation=plan.window.generation,
            rows=plan.rows.num_rows,
            watermark=plan.window.upper if committed else plan.state.watermark or plan.window.upper,
            deliveries=replaced,
            dropped=plan.dropped,
            committed=committed,
            seconds=time.monotonic() - plan.started,
        )

    def _bar(self, total: int, window: Window) -> Any:
        if not self.progress or total < PROGRESS_FROM or not sys.stderr.isatty():
            return None
        from tqdm import tqdm

        return tqdm(total=total, unit="ev", desc="export", file=sys.stderr, smoothing=0.1)


def _lake_ids(events: Table, window: Window) -> set[str]:
    """The event ids the lake holds that the window may read again."""
    if window.drop_lake_ids_since is None:
        scan = events.scan(selected_fields=("event_id",))
    else:
        scan = events.scan(
            row_filter=(
                f"generation = {window.generation}"
                f" AND applied_at > '{window.drop_lake_ids_since.isoformat()}'"
            ),
            selected_fields=("event_id",),
        )
    return set(scan.to_arrow().column("event_id").to_pylist())


def _by_delivery(history: Iterable[reads.HistoryEvent]) -> Iterator[list[reads.HistoryEvent]]:
    group: list[reads.HistoryEvent] = []
    for event in history:
        if group and event.delivery_id != group[0].delivery_id:
            yield group
            group = []
        group.append(event)
    if group:
        yield group


def _event_rows(
    history: Iterable[reads.HistoryEvent],
    wanted: set[str] | None,
    generation: int,
    bar: Any,
) -> pa.Table:
    """The lake rows of ``wanted`` (None: every event), each with the fold's ids after it."""
    cols: dict[str, list[Any]] = {name: [] for name in EVENT_COLUMNS}
    (event_id, delivery_id, event_type, known, version, occurred, sequence, order, shop,
     rider, data, topic, partition, offset, applied, gen) = (cols[n] for n in EVENT_COLUMNS)
    done = 0
    for group in _by_delivery(history):
        folded = [(_fold_event(h), h) for h in group]
        folded.sort(key=lambda pair: pair[0].sort_key)
        row: DeliveryRow | None = None
        for event, h in folded:
            row = apply(row, event)
            if wanted is not None and h.event_id not in wanted:
                continue
            event_id.append(h.event_id)
            delivery_id.append(h.delivery_id)
            event_type.append(h.event_type)
            known.append(h.known)
            version.append(h.event_version)
            occurred.append(h.occurred_at)
            sequence.append(h.sequence)
            order.append(row.order_id)
            shop.append(row.shop_id)
            rider.append(row.rider_id)
            data.append(h.data)
            topic.append(h.topic)
            partition.append(h.partition)
            offset.append(h.offset)
            applied.append(h.applied_at)
            gen.append(generation)
        if bar is not None:
            bar.update(len(event_id) - done)
            done = len(event_id)
    if bar is not None:
        bar.close()
    return arrow_table(cols, EVENTS_ARROW)


def _fold_event(h: reads.HistoryEvent) -> Any:
    return event_from_history(
        {
            "event_id": h.event_id,
            "event_type": h.event_type,
            "delivery_id": h.delivery_id,
            "occurred_at": h.occurred_at,
            "sequence": h.sequence,
            "data": load_json(h.data) if h.known else {},
            "known": h.known,
            "estimated_delivery_at": h.estimated_delivery_at,
            "event_version": h.event_version,
        }
    )


#: The deliveries table's columns that the read model holds (``generation`` is added).
_SERVED = tuple(n for n in DELIVERY_COLUMNS if n != "generation")


def _current_rows(columns: dict[str, list[Any]], generation: int) -> pa.Table:
    """The snapshot as Arrow; instants given as SQLite's UTC text are converted in bulk."""
    arrays = []
    count = len(columns["delivery_id"])
    for column in DELIVERIES_ARROW:
        if column.name == "generation":
            arrays.append(pa.array([generation] * count, column.type))
            continue
        values = columns[column.name]
        if pa.types.is_timestamp(column.type) and any(isinstance(v, str) for v in values):
            naive = pa.array(values, pa.string()).cast(pa.timestamp("us"))
            arrays.append(naive.cast(column.type))
        else:
            arrays.append(pa.array(values, column.type))
    return pa.Table.from_arrays(arrays, schema=DELIVERIES_ARROW)
