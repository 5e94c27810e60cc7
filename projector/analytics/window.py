"""Which applied times one export reads, and what it commits with its rows (pure).

The read model stamps each history row with ``applied_at``, the time its batch was
applied, before that batch's transaction commits. So an export cannot simply take
"everything after the last applied time seen":

- it reads only up to ``now - settle``: a transaction still open now commits rows
  stamped before now, and the next export will take them;
- it reads again from ``watermark - overlap``: a batch that committed later than
  the settle lag (a long transaction, a clock behind) is still found;
- the rows it reads again that the lake already holds are dropped by event id
  (``Window.drop_lake_ids_since``).

The watermark (the upper bound read) and the generation it belongs to are stored
as table properties in the same Iceberg commit as the rows: either both are in
the lake, or neither. A switch to a new generation (a rebuild) starts over in
that generation's history and drops every event id the lake already has.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from projector.analytics.layout import GENERATION_PROPERTY, SINCE_PROPERTY, WATERMARK_PROPERTY


@dataclass(frozen=True)
class ExportedState:
    """What the lake's last export committed (None before the first)."""

    watermark: datetime | None
    generation: int | None
    #: The watermark of the first export of this generation.
    since: datetime | None = None


@dataclass(frozen=True)
class Window:
    generation: int
    #: Read rows with ``lower < applied_at <= upper`` (``lower`` None: from the start).
    lower: datetime | None
    upper: datetime
    #: Drop the rows whose event id the lake holds with ``applied_at > this`` in this
    #: generation; None with ``drop_all_lake_ids``: any id the lake holds at all.
    drop_lake_ids_since: datetime | None
    drop_all_lake_ids: bool
    #: What ``ExportedState.since`` becomes with this window's commit.
    since: datetime

    @property
    def first(self) -> bool:
        return self.lower is None and not self.drop_all_lake_ids


def next_window(
    state: ExportedState,
    served_generation: int,
    now: datetime,
    *,
    overlap: timedelta,
    settle: timedelta,
) -> Window:
    upper = now - settle
    if state.watermark is None or state.generation is None:
        return Window(served_generation, None, upper, None, False, since=upper)
    if state.generation != served_generation:
        # A rebuild switched: the new generation's rows were all applied anew.
        return Window(served_generation, None, upper, None, True, since=upper)
    lower = state.watermark - overlap
    # The clock may have gone back: never read less than the last export did.
    upper = max(upper, state.watermark)
    since = state.since or state.watermark
    reaches_switch = lower <= since
    return Window(served_generation, lower, upper, None if reaches_switch else lower,
                  reaches_switch, since=since)


def parse_state(properties: dict[str, str]) -> ExportedState:
    raw_mark = properties.get(WATERMARK_PROPERTY)
    raw_gen = properties.get(GENERATION_PROPERTY)
    raw_since = properties.get(SINCE_PROPERTY)
    if raw_mark is None or raw_gen is None:
        return ExportedState(None, None)
    since = datetime.fromisoformat(raw_since) if raw_since else None
    return ExportedState(datetime.fromisoformat(raw_mark), int(raw_gen), since)


def state_properties(window: Window) -> dict[str, str]:
    return {
        WATERMARK_PROPERTY: window.upper.isoformat(),
        GENERATION_PROPERTY: str(window.generation),
        SINCE_PROPERTY: window.since.isoformat(),
    }
