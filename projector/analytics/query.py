"""DuckDB over the exported tables, with no network: `projector analytics "SQL"`.

The tables are scanned by pyiceberg (its planning prunes by partition and column
statistics; it reads ``file://`` and ``s3://`` alike) and handed to an in-memory
DuckDB as Arrow (``DataScan.to_duckdb``), as the views ``delivery_events`` and
``deliveries``. DuckDB then needs no extension of its own, so nothing is
downloaded: autoloading and autoinstalling of extensions are switched off.
Sessions run in UTC, so a day or an hour in a query is a UTC one.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from datetime import date, datetime
from decimal import Decimal
from typing import Any

import duckdb
import pyarrow as pa

from projector.analytics.catalog import deliveries_table, events_table, open_catalog, require
from projector.analytics.errors import QueryError
from projector.analytics.layout import DELIVERIES_TABLE, EVENTS_TABLE
from projector.analytics.settings import AnalyticsSettings

VIEWS = ("delivery_events", "deliveries")


def connect(settings: AnalyticsSettings) -> duckdb.DuckDBPyConnection:
    """An in-memory DuckDB with the two tables registered under their view names."""
    catalog = open_catalog(settings)
    events = require(events_table(catalog, create=False), EVENTS_TABLE)
    current = require(deliveries_table(catalog, create=False), DELIVERIES_TABLE)
    con = duckdb.connect(":memory:", config={
        "autoinstall_known_extensions": "false",
        "autoload_known_extensions": "false",
    })
    con.execute("SET TimeZone = 'UTC'")
    events.scan().to_duckdb("delivery_events", connection=con)
    current.scan().to_duckdb("deliveries", connection=con)
    return con


def run(con: duckdb.DuckDBPyConnection, sql: str) -> pa.Table:
    try:
        result = con.execute(sql)
        return result.to_arrow_table() if result.description else pa.table({})
    except duckdb.Error as exc:
        raise QueryError(f"query failed: {str(exc).splitlines()[0]}") from exc


def records(table: pa.Table) -> list[dict[str, Any]]:
    return [{k: _plain(v) for k, v in row.items()} for row in table.to_pylist()]


def _plain(value: Any) -> Any:
    if isinstance(value, datetime | date):
        return value.isoformat()
    if isinstance(value, Decimal):
        return float(value)
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    return value


def as_json(table: pa.Table) -> str:
    return json.dumps(records(table), ensure_ascii=False)


def as_text(table: pa.Table, limit: int | None = None) -> str:
    """A plain aligned table, for a terminal."""
    names = list(table.column_names)
    rows = [[_cell(r[n]) for n in names] for r in records(table)]
    if limit is not None:
        rows = rows[:limit]
    widths = [max([len(n)] + [len(r[i]) for r in rows]) for i, n in enumerate(names)]
    lines = [_line(names, widths), _line(["-" * w for w in widths], widths)]
    lines += [_line(r, widths) for r in rows]
    lines.append(f"({table.num_rows} row{'s' if table.num_rows != 1 else ''})")
    return "\n".join(lines)


def _cell(value: Any) -> str:
    if value is None:
        return "NULL"
    if isinstance(value, float):
        return f"{value:.6g}"
    return str(value)


def _line(cells: Sequence[str], widths: Sequence[int]) -> str:
    return "  ".join(c.ljust(w) for c, w in zip(cells, widths, strict=True)).rstrip()
