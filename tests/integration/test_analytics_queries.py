"""The queries of docs/analytics.md: DuckDB over the exported tables answers as SQL on the
read model does, for every fixed stream in tests/streams and a simulated one.

The queries are read from the page itself, so the page cannot drift from what is
tested. The read model's side is SQLite SQL (the median in Python over the
durations SQL returns: SQLite has no median).
"""

from __future__ import annotations

import math
import re
import statistics
from collections import defaultdict
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Connection, select, text

from projector.analytics import query
from schema.db import make_engine
from schema.tables import deliveries
from tests.analytics_support import analytics_settings, lake_env, projector
from tests.helpers import ROOT

pytestmark = pytest.mark.integration

PAGE = ROOT / "docs" / "analytics.md"
STREAMS = sorted((ROOT / "tests" / "streams").glob("*.jsonl"))


def _page_queries() -> list[str]:
    return re.findall(r"^```sql\n(.*?)^```", PAGE.read_text(encoding="utf-8"),
                      re.MULTILINE | re.DOTALL)


def _rows(conn: Connection, sql: str) -> list[tuple[Any, ...]]:
    return [tuple(r) for r in conn.execute(text(sql))]


def _per_hour(conn: Connection) -> list[tuple[Any, ...]]:
    return _rows(conn, """
        SELECT strftime('%Y-%m-%d %H:00', created_at) AS hour, count(*),
               sum(state = 'DELIVERED'), sum(state = 'CANCELLED'),
               sum(state NOT IN ('DELIVERED', 'CANCELLED'))
        FROM deliveries WHERE created_at IS NOT NULL GROUP BY hour ORDER BY hour""")


def _median_per_rider(conn: Connection) -> list[tuple[Any, ...]]:
    found: dict[tuple[str, str], list[float]] = defaultdict(list)
    query = select(deliveries.c.rider_id, deliveries.c.delivered_at, deliveries.c.assigned_at).where(
        deliveries.c.state == "DELIVERED", deliveries.c.rider_id.is_not(None),
        deliveries.c.assigned_at.is_not(None))
    for rider, delivered, assigned in conn.execute(query):  # exact instants, not julianday
        found[(rider, delivered.date().isoformat())].append((delivered - assigned).total_seconds())
    ordered = sorted(found.items(), key=lambda item: (item[0][1], item[0][0]))[:10]
    return [(r, d, len(v), statistics.median(v) / 60) for (r, d), v in ordered]


def _cancel_reasons(conn: Connection) -> list[tuple[Any, ...]]:
    return _rows(conn, """
        SELECT shop_id, coalesce(cancel_reason, '(none given)') AS reason, count(*) AS n
        FROM deliveries WHERE state = 'CANCELLED'
        GROUP BY shop_id, reason ORDER BY n DESC, shop_id NULLS LAST, reason LIMIT 10""")


def _late(conn: Connection) -> list[tuple[Any, ...]]:
    out = []
    for day, delivered, late, minutes in _rows(conn, """
            SELECT strftime('%Y-%m-%d', delivered_at) AS day, count(*),
                   sum(delivered_at > estimated_delivery_at),
                   avg(CASE WHEN delivered_at > estimated_delivery_at THEN
                       (julianday(delivered_at) - julianday(estimated_delivery_at)) * 1440.0 END)
            FROM deliveries WHERE state = 'DELIVERED' AND estimated_delivery_at IS NOT NULL
            GROUP BY day ORDER BY day"""):
        out.append((day, delivered, late, 100.0 * late / delivered, minutes))
    return out


def _events_per_day(conn: Connection) -> list[tuple[Any, ...]]:
    return _rows(conn, """
        SELECT strftime('%Y-%m-%d', occurred_at) AS day, event_type, event_version,
               count(*), count(DISTINCT delivery_id)
        FROM delivery_events WHERE generation = (SELECT generation FROM generations
                                                 WHERE status = 'active')
        GROUP BY day, event_type, event_version ORDER BY day, event_type, event_version""")


#: The read model's answer to each query of the page, in the page's order.
ANSWERS: list[Callable[[Connection], list[tuple[Any, ...]]]] = [
    _per_hour, _median_per_rider, _cancel_reasons, _late, _events_per_day,
]


def _same(lake: list[tuple[Any, ...]], model: list[tuple[Any, ...]]) -> bool:
    """Equal, numbers to the page's rounding (one decimal) or closer."""
    if len(lake) != len(model):
        return False
    for a_row, b_row in zip(lake, model, strict=True):
        for a, b in zip(a_row, b_row, strict=True):
            if isinstance(a, float) or isinstance(b, float):
                if a is None or b is None or not math.isclose(a, b, abs_tol=0.05 + 1e-6):
                    return False
            elif a != b:
                return False
    return True


def test_the_page_holds_the_queries_that_are_checked() -> None:
    assert len(_page_queries()) == len(ANSWERS)


def _check(stream: Path, tmp_path: Path) -> int:
    db = tmp_path / f"{stream.stem}.db"
    env = lake_env(f"sqlite:///{db}", tmp_path / f"{stream.stem}-warehouse")
    assert projector(["migrate"], env)[0] == 0
    assert projector(["run", "--until-caught-up"], {**env, "EVENT_SOURCE": str(stream)})[0] == 0
    assert projector(["export"], env)[0] == 0
    con = query.connect(analytics_settings(env))
    engine = make_engine(env["DATABASE_URL"], writer=False)
    checked = 0
    try:
        with engine.connect() as conn:
            for sql, answer in zip(_page_queries(), ANSWERS, strict=True):
                lake = [tuple(r.values()) for r in query.records(query.run(con, sql))]
                model = answer(conn)
                assert _same(lake, model), f"{stream.name}: {sql}\nlake:  {lake}\nmodel: {model}"
                checked += len(lake)
    finally:
        con.close()
        engine.dispose()
    return checked


@pytest.mark.parametrize("stream", STREAMS, ids=[s.stem for s in STREAMS])
def test_the_pages_queries_answer_as_the_read_model_for_a_fixed_stream(stream: Path, tmp_path: Path) -> None:
    _check(stream, tmp_path)


def test_the_pages_queries_answer_as_the_read_model_for_a_simulated_stream(tmp_path: Path) -> None:
    stream = tmp_path / "sim.jsonl"
    assert projector(["simulate", "--deliveries", "400", "--seed", "21", "--out", str(stream)], {})[0] == 0
    assert _check(stream, tmp_path) > 20  # rows compared, not empty answers
