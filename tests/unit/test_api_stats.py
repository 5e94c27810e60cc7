"""query_api.stats: days in the business time zone."""

from __future__ import annotations

from datetime import UTC, date, datetime
from zoneinfo import ZoneInfo

import pytest

from query_api.errors import UserInputError
from query_api.stats import daily_stats

pytestmark = pytest.mark.unit


def test_daily_stats_bucket_by_business_day_and_average_only_picked_up() -> None:
    utc = UTC
    rows = [
        {"assigned_at": datetime(2026, 11, 24, 15, 30, tzinfo=utc),  # 00:30 on the 25th in Seoul
         "picked_up_at": datetime(2026, 11, 24, 15, 40, tzinfo=utc),
         "delivered_at": datetime(2026, 11, 24, 16, 0, tzinfo=utc), "cancelled_at": None},
        {"assigned_at": datetime(2026, 11, 25, 1, 0, tzinfo=utc), "picked_up_at": None,
         "delivered_at": datetime(2026, 11, 25, 2, 0, tzinfo=utc), "cancelled_at": None},
        {"assigned_at": None, "picked_up_at": None, "delivered_at": None,
         "cancelled_at": datetime(2026, 11, 27, 0, 0, tzinfo=utc)},  # outside the range
    ]
    seoul = daily_stats(rows, date(2026, 11, 24), date(2026, 11, 26), ZoneInfo("Asia/Seoul"))
    assert [(d.day.day, d.assigned, d.completed, d.cancelled, d.avg_delivery_seconds)
            for d in seoul] == [(24, 0, 0, 0, None), (25, 2, 2, 0, 1200.0), (26, 0, 0, 0, None)]
    in_utc = daily_stats(rows, date(2026, 11, 24), date(2026, 11, 26), UTC)
    assert [(d.assigned, d.completed) for d in in_utc] == [(1, 1), (1, 1), (0, 0)]
    with pytest.raises(UserInputError, match="367 days"):
        daily_stats([], date(2026, 1, 1), date(2027, 1, 2), UTC)
    assert len(daily_stats([], date(2028, 1, 1), date(2028, 12, 31), UTC)) == 366
