"""Small files: each closed day of ``delivery.delivery_events`` rewritten into one file,
and snapshots older than the retention expired.

A day is closed once it is older than ``--older-than``: late events for it are
rare by then, and if one comes its new file is merged at the next compaction. Each
day is one overwrite commit of exactly that day's partition (the filter is the
day's bounds, so whole files are replaced, none split). The watermark properties
are kept as they are, and a concurrent export fails one of the two commits, never
both silently.
"""

from __future__ import annotations

import re
from collections import Counter
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta

from pyiceberg.exceptions import CommitFailedException
from pyiceberg.table import Table

from projector.analytics.errors import AnalyticsError, ConcurrentExport

_AGE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([dhm])\s*$")
_UNIT = {"d": 86400.0, "h": 3600.0, "m": 60.0}


def parse_age(text: str) -> timedelta:
    """``2d``, ``36h``, ``90m``."""
    found = _AGE.match(text)
    if found is None:
        raise AnalyticsError(f"--older-than {text!r}: use a number and d, h or m (e.g. 2d)")
    return timedelta(seconds=float(found.group(1)) * _UNIT[found.group(2)])


@dataclass
class CompactResult:
    days: list[str]
    files_before: int
    files_after: int
    snapshots_expired: int


def files_per_day(table: Table) -> Counter[date]:
    """Data files of the current snapshot per day of occurrence."""
    found: Counter[date] = Counter()
    epoch = date(1970, 1, 1)
    for task in table.scan().plan_files():
        found[epoch + timedelta(days=int(task.file.partition[0]))] += 1
    return found


def compact(table: Table, older_than: timedelta, retention: timedelta,
            now: datetime | None = None) -> CompactResult:
    now = now or datetime.now(UTC)
    cutoff = (now - older_than).date()
    per_day = files_per_day(table)
    before = sum(per_day.values())
    done: list[str] = []
    for day in sorted(d for d, n in per_day.items() if n > 1 and d < cutoff):
        start = datetime.combine(day, time(0), UTC)
        bounds = (
            f"occurred_at >= '{start.isoformat()}'"
            f" AND occurred_at < '{(start + timedelta(days=1)).isoformat()}'"
        )
        rows = table.scan(row_filter=bounds).to_arrow().sort_by(
            [("occurred_at", "ascending"), ("event_id", "ascending")]
        )
        try:
            table.overwrite(rows, overwrite_filter=bounds)
        except CommitFailedException as exc:
            raise ConcurrentExport(
                f"another writer committed while day {day} was compacted ({exc}); "
                "the days before it are compacted, run it again"
            ) from exc
        done.append(day.isoformat())
    expired = expire_snapshots(table, now - retention)
    after = sum(files_per_day(table).values())
    return CompactResult(done, before, after, expired)


def expire_snapshots(table: Table, older_than: datetime) -> int:
    """Expire the snapshots taken before ``older_than`` (never the current one)."""
    table.refresh()
    current = table.current_snapshot()
    limit = older_than.timestamp() * 1000
    old = [
        s.snapshot_id
        for s in table.snapshots()
        if s.timestamp_ms < limit and (current is None or s.snapshot_id != current.snapshot_id)
    ]
    if old:
        try:
            table.maintenance.expire_snapshots().by_ids(old).commit()
        except CommitFailedException as exc:
            raise ConcurrentExport(f"another writer committed first ({exc})") from exc
    return len(old)
