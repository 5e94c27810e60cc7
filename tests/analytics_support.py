"""Helpers of the analytics export tests: run commands in-process, count the lake."""

from __future__ import annotations

import contextlib
import io
import os
from collections import Counter
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

from sqlalchemy import select

from projector.analytics.catalog import events_table, open_catalog
from projector.analytics.settings import AnalyticsSettings
from projector.cli import main
from schema.db import active_generation, make_engine
from schema.tables import delivery_events


@contextlib.contextmanager
def environment(values: Mapping[str, str]) -> Iterator[None]:
    saved = {k: os.environ.get(k) for k in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


def lake_env(db_url: str, warehouse: Path | str, **extra: str) -> dict[str, str]:
    uri = warehouse if isinstance(warehouse, str) else warehouse.as_uri()
    env = {"DATABASE_URL": db_url, "ANALYTICS_WAREHOUSE": uri, "ANALYTICS_SETTLE_SECONDS": "0"}
    env.update(extra)
    return env


def projector(args: list[str], env: Mapping[str, str]) -> tuple[int, str]:
    """`projector ARGS` in this process; (exit code, stdout)."""
    out = io.StringIO()
    with environment(env), contextlib.redirect_stdout(out):
        code = main(args)
    return code, out.getvalue()


def analytics_settings(env: Mapping[str, str]) -> AnalyticsSettings:
    return AnalyticsSettings.from_env(env, env["DATABASE_URL"])


def lake_per_day(env: Mapping[str, str]) -> tuple[Counter[str], int, int]:
    """(rows per UTC day of occurrence, rows, distinct event ids) of the events table."""
    table = events_table(open_catalog(analytics_settings(env)), create=False)
    assert table is not None
    rows = table.scan(selected_fields=("event_id", "occurred_at")).to_arrow().to_pylist()
    days = Counter(r["occurred_at"].date().isoformat() for r in rows)
    return days, len(rows), len({r["event_id"] for r in rows})


def read_model_per_day(db_url: str) -> Counter[str]:
    engine = make_engine(db_url, writer=False)
    try:
        with engine.connect() as conn:
            generation = active_generation(conn)
            query = select(delivery_events.c.occurred_at).where(
                delivery_events.c.generation == generation
            )
            return Counter(t.date().isoformat() for t in conn.execute(query).scalars())
    finally:
        engine.dispose()


def assert_exactly_once(env: Mapping[str, str]) -> int:
    """Lake rows == distinct event ids == the read model's history, day by day."""
    days, rows, distinct = lake_per_day(env)
    expected = read_model_per_day(env["DATABASE_URL"])
    assert rows == distinct, f"{rows - distinct} duplicated rows in the lake"
    assert days == expected
    return rows


def table_property(env: Mapping[str, str], name: str) -> Any:
    table = events_table(open_catalog(analytics_settings(env)), create=False)
    assert table is not None
    return table.properties.get(name)
