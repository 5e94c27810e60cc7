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
after that event, over the delivery's history at export time
(``projector.analytics.ids``), so a query can group events by rider or shop without
a join. The reads, the ids and the tables are column-wise (Arrow) from end to end.
"""

from __future__ import annotations

import logging
import sys
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, Final

import pyarrow as pa
import pyarrow.compute as pc
from pyiceberg.exceptions import CommitFailedException, ValidationException
from pyiceberg.table import Table
from sqlalchemy import Engine

from projector.analytics.catalog import deliveries_table, events_table, open_catalog
from projector.analytics.errors import ConcurrentExport
from projector.analytics.ids import ids_at_events, in_fold_order
from projector.analytics.layout import (
    DELIVERIES_ARROW,
    DELIVERY_COLUMNS,
    EVENTS_ARROW,
    SNAPSHOT_OF_PROPERTY,
    SNAPSHOT_WHOLE_PROPERTY,
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

log = logging.getLogger("projector.analytics")

#: Above this many deliveries to fold, an incremental export reads the whole history
#: in one scan instead of the histories of those deliveries by id.
WHOLE_HISTORY_ABOVE = 50_000
#: A first export of at least this many events shows a progress bar (on a terminal).
PROGRESS_FROM = 100_000
#: The deliveries snapshot is read whole from the read model at least this often;
#: in between, an export replaces only the rows of the deliveries it read events of.
SNAPSHOT_WHOLE_EVERY: Final = timedelta(hours=1)


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
    bar: Any = None
    #: ``current`` was read whole from the read model (not the last snapshot patched).
    whole: bool = True

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
        with reads.reading(self.engine) as source:
            generation = source.generation()
            window = next_window(
                state,
                generation,
                self.clock(),
                overlap=timedelta(seconds=self.settings.overlap_seconds),
                settle=timedelta(seconds=self.settings.settle_seconds),
            )
            wanted: pa.ChunkedArray | None = None
            changed: pa.ChunkedArray | None = None
            dropped = 0
            bar = None
            if window.first:
                history = source.history(generation, window.upper)
                bar = self._bar(history.num_rows)
            else:
                candidates = source.window(generation, window.lower, window.upper)
                fresh = candidates.filter(
                    _not_in_lake(candidates, events, window, state.watermark)
                )
                dropped = candidates.num_rows - fresh.num_rows
                changed = candidates.column("delivery_id")
                wanted = fresh.column("event_id")
                touched = pc.unique(fresh.column("delivery_id")).to_pylist()
                scope = None if len(touched) > WHOLE_HISTORY_ABOVE else touched
                history = source.history(generation, window.upper, scope)
            _step(bar, f"read {history.num_rows} events")
            rows = _event_rows(history, wanted, generation)
            _step(bar, "folded the ids at each event")
            plan = Plan(events, deliveries, state, window, rows, None, dropped, started)
            if deliveries.properties.get(SNAPSHOT_OF_PROPERTY) != plan.mark:
                plan.current, plan.whole = _snapshot(source, plan, changed)
            _step(bar, "read the served rows")
            plan.bar = bar
        return plan

    def commit(self, plan: Plan) -> ExportResult:
        try:
            return self._commit(plan)
        finally:
            if plan.bar is not None:
                plan.bar.close()

    def _commit(self, plan: Plan) -> ExportResult:
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
                    marks = {SNAPSHOT_OF_PROPERTY: plan.mark}
                    if plan.whole:
                        marks[SNAPSHOT_WHOLE_PROPERTY] = plan.window.upper.isoformat()
                    tx.set_properties(marks)
            except (CommitFailedException, ValidationException) as exc:
                raise ConcurrentExport(
                    f"another writer replaced the deliveries snapshot first ({exc}); "
                    "the events were exported, run it again to replace the snapshot"
                ) from exc
            replaced = plan.current.num_rows
        _step(plan.bar, "committed")
        return ExportResult(
            generation=plan.window.generation,
            rows=plan.rows.num_rows,
            watermark=plan.window.upper if committed else plan.state.watermark or plan.window.upper,
            deliveries=replaced,
            dropped=plan.dropped,
            committed=committed,
            seconds=time.monotonic() - plan.started,
        )

    def _bar(self, events: int) -> Any:
        """A long first export's bar (on a terminal), by step: it reads, folds and writes
        column-wise, each step at once."""
        if not self.progress or events < PROGRESS_FROM or not sys.stderr.isatty():
            return None
        from tqdm import tqdm

        return tqdm(total=len(_STEPS), unit="step", desc="export", file=sys.stderr)


#: The steps of a first export its bar counts.
_STEPS: Final = ("read", "fold", "snapshot", "commit")


def _step(bar: Any, done: str) -> None:
    if bar is not None:
        bar.set_postfix_str(done)
        bar.update(1)


def _not_in_lake(
    candidates: pa.Table, events: Table, window: Window, watermark: datetime | None
) -> pa.Array:
    """Which of the window's rows the lake does not hold yet (a mask).

    Only the lake's rows the window may read again are scanned, and the scan skips
    every data file whose statistics rule it out:

    - within a generation, its rows applied after the window's lower bound; and the
      lake holds none applied after its watermark, so only the candidates up to the
      watermark are looked up;
    - while the window reaches back to a rebuild's switch, also every row of another
      generation (the same events, applied anew in this one).
    """
    count = candidates.num_rows
    everything = pa.repeat(pa.scalar(True), count)
    if count == 0:
        return everything
    maybe = everything
    if window.lower is None:
        scan = events.scan(selected_fields=("event_id",))
    else:
        after = f"applied_at > '{window.lower.isoformat()}'"
        if window.drop_all_lake_ids:
            where = f"generation != {window.generation} OR {after}"
        else:
            where = f"generation = {window.generation} AND {after}"
            if watermark is not None:
                applied = candidates.column("applied_at")
                maybe = pc.less_equal(applied, pa.scalar(watermark, applied.type))
                if not pc.any(maybe).as_py():
                    return everything
        scan = events.scan(row_filter=where, selected_fields=("event_id",))
    in_lake = scan.to_arrow().column("event_id")
    held = pc.and_(maybe, pc.is_in(candidates.column("event_id"), value_set=in_lake))
    return pc.invert(held)


def _event_rows(history: pa.Table, wanted: pa.ChunkedArray | None, generation: int) -> pa.Table:
    """The lake rows of ``wanted`` (None: every event of ``history``), each with the
    fold's ids after it, by delivery in fold order."""
    ordered = in_fold_order(history)
    found = ids_at_events(ordered)
    if wanted is not None:
        keep = pc.is_in(ordered.column("event_id"), value_set=wanted)
        ordered, found = ordered.filter(keep), found.filter(keep)
    columns = {
        **{name: ordered.column(name) for name in ordered.column_names},
        **{name: found.column(name) for name in found.column_names},
        "known": pc.not_equal(ordered.column("known"), 0),
        "generation": pa.repeat(pa.scalar(generation, pa.int32()), ordered.num_rows),
    }
    return pa.Table.from_arrays(
        [columns[f.name].cast(f.type) for f in EVENTS_ARROW], schema=EVENTS_ARROW
    )


#: The deliveries table's columns that the read model holds (``generation`` is added).
_SERVED = tuple(n for n in DELIVERY_COLUMNS if n != "generation")


def _snapshot(
    source: reads.Reads, plan: Plan, changed: pa.ChunkedArray | None
) -> tuple[pa.Table, bool]:
    """The deliveries snapshot's new rows, and whether they were read whole.

    Reading every served row was most of an incremental export's time. When the
    snapshot was taken at the events table's last commit, in this generation, the
    served rows since differ only for deliveries that got an event applied since: the
    ones of this window's rows, which reach back by the overlap as the events do. So
    the last snapshot is kept but for those, which are read anew. Whole again: after
    ``SNAPSHOT_WHOLE_EVERY`` (a row refolded in place by a repair, with no new event,
    shows then), at a rebuild's switch, when the last commit has no snapshot of its
    own, or when the patched rows do not count what the read model serves.
    """
    state, window, table = plan.state, plan.window, plan.deliveries
    generation = window.generation
    whole_at = table.properties.get(SNAPSHOT_WHOLE_PROPERTY)
    chained = (
        changed is not None
        and state.generation == generation
        and state.watermark is not None
        and table.properties.get(SNAPSHOT_OF_PROPERTY)
        == f"{state.generation}@{state.watermark.isoformat()}"
        and whole_at is not None
        and window.upper - datetime.fromisoformat(whole_at) < SNAPSHOT_WHOLE_EVERY
    )
    if chained and changed is not None:
        ids = pc.unique(changed)
        kept = table.scan().to_arrow()
        kept = kept.filter(pc.invert(pc.is_in(kept.column("delivery_id"), value_set=ids)))
        fresh = _current_rows(source.current(generation, _SERVED, ids.to_pylist()), generation)
        rows = pa.concat_tables([kept.cast(DELIVERIES_ARROW), fresh])
        if rows.num_rows == source.served_count(generation):
            return rows, False
    return _current_rows(source.current(generation, _SERVED), generation), True


def _current_rows(served: pa.Table, generation: int) -> pa.Table:
    """The snapshot table's rows: the served rows and their generation."""
    columns = {
        **{name: served.column(name) for name in served.column_names},
        "generation": pa.repeat(pa.scalar(generation, pa.int32()), served.num_rows),
    }
    return pa.Table.from_arrays(
        [columns[f.name].cast(f.type) for f in DELIVERIES_ARROW], schema=DELIVERIES_ARROW
    )
