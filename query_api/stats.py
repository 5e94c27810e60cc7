"""``riderDailyStats``: per-day counts of one rider's deliveries in BUSINESS_TIMEZONE.

Pure: the range check, the UTC bounds of the days, and the bucketing of rows
into days. The SELECT lives in ``query_api.reads``.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta, tzinfo
from typing import Any

from query_api.errors import UserInputError

MAX_DAYS = 366


@dataclass(frozen=True)
class DayStats:
    day: date
    assigned: int = 0
    completed: int = 0
    cancelled: int = 0
    avg_delivery_seconds: float | None = None


def check_range(start: date, end: date) -> int:
    """The number of days in [start, end]; a GraphQL error past the contract's bounds."""
    if end < start:
        raise UserInputError(f"`to` ({end}) is before `from` ({start})")
    days = (end - start).days + 1
    if days > MAX_DAYS:
        raise UserInputError(f"the range holds {days} days; at most {MAX_DAYS} are allowed")
    return days


def utc_bounds(start: date, end: date, tz: tzinfo) -> tuple[datetime, datetime]:
    """[start 00:00, the day after end 00:00) in ``tz``, as UTC instants.

    A range whose bounds fall outside years 1 to 9999 in UTC (``to`` 9999-12-31 has
    no next midnight; 0001-01-01 in a zone ahead of UTC begins in year 0) is the
    client's mistake, refused before any SQL."""
    try:
        low = datetime.combine(start, time(0), tzinfo=tz).astimezone(UTC)
        high = datetime.combine(end + timedelta(days=1), time(0), tzinfo=tz).astimezone(UTC)
    except OverflowError:
        raise UserInputError(
            f"the range {start}..{end} reaches outside the instants this API can represent"
            " (years 1 to 9999 in UTC, its days counted in BUSINESS_TIMEZONE)"
        ) from None
    return low, high


def daily_stats(
    rows: Iterable[Mapping[Any, Any]], start: date, end: date, tz: tzinfo
) -> list[DayStats]:
    """One ``DayStats`` per day of [start, end], zeros included."""
    days = check_range(start, end)
    assigned: dict[date, int] = {}
    completed: dict[date, int] = {}
    cancelled: dict[date, int] = {}
    durations: dict[date, list[float]] = {}

    def day_of(moment: datetime | None) -> date | None:
        if moment is None:
            return None
        local = moment.astimezone(tz).date()
        return local if start <= local <= end else None

    for row in rows:
        if (day := day_of(row["assigned_at"])) is not None:
            assigned[day] = assigned.get(day, 0) + 1
        if (day := day_of(row["delivered_at"])) is not None:
            completed[day] = completed.get(day, 0) + 1
            if row["picked_up_at"] is not None:
                seconds = (row["delivered_at"] - row["picked_up_at"]).total_seconds()
                durations.setdefault(day, []).append(seconds)
        if (day := day_of(row["cancelled_at"])) is not None:
            cancelled[day] = cancelled.get(day, 0) + 1

    out = []
    for n in range(days):
        day = start + timedelta(days=n)
        spans = durations.get(day)
        out.append(
            DayStats(
                day=day,
                assigned=assigned.get(day, 0),
                completed=completed.get(day, 0),
                cancelled=cancelled.get(day, 0),
                avg_delivery_seconds=sum(spans) / len(spans) if spans else None,
            )
        )
    return out
