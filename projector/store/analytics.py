"""The reads of the analytics export, column-wise: the served generation's history and rows.

Nothing here writes. Every read comes back as one Arrow table, made by C code from
the database's own output, never by a Python object per value: a first export reads
millions of history rows, and building a Python value of each (the driver's, then
ours) was most of its time.

- On SQLite, rows come as tuples from the engine's own connection, a batch at a
  time, and each column of a batch becomes one Arrow array of its declared type;
  instants come as the stored text (fixed width, UTC) and are cast in bulk.
  (ADBC's SQLite driver would hand over Arrow directly, about twice as fast, but it
  links a second copy of SQLite into the process, and two copies in one process
  break each other's POSIX locks on the same file: the catalog shares that file.)
- On PostgreSQL a ``COPY (SELECT ...) TO STDOUT`` in CSV, through the engine's own
  connection, is parsed by pyarrow; instants travel as whole microseconds since the
  epoch.

A history row as the export reads it is ``HistoryRow`` (``schema.rows.HISTORY_COLUMNS``)
plus the ``applied_at`` of its batch: ``HISTORY_READ``.
"""

from __future__ import annotations

import io
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from datetime import datetime
from typing import Any, ClassVar, Final

import orjson
import pyarrow as pa
import pyarrow.csv as pa_csv
from sqlalchemy import BigInteger, Boolean, Connection, Engine, Integer, func, select

from projector.store.sqlite import sqlite_time
from schema.db import active_generation
from schema.rows import HISTORY_COLUMNS
from schema.tables import UtcDateTime, deliveries, delivery_events

__all__ = [
    "HISTORY_READ",
    "Reads",
    "active_generation",
    "history_count",
    "reading",
]

#: The history columns the export reads: a ``HistoryRow`` plus its batch's ``applied_at``.
HISTORY_READ: Final = (*HISTORY_COLUMNS, "applied_at")
#: Columns of a window's candidates: which rows an incremental export may append.
WINDOW_READ: Final = ("event_id", "delivery_id", "applied_at")

_INSTANT: Final = pa.timestamp("us", tz="UTC")
#: Rows fetched from SQLite per Arrow batch (a million rows as tuples at once would
#: take about a gigabyte).
_BATCH_ROWS: Final = 50_000


def _arrow_type(table: Any, name: str) -> pa.DataType:
    kind = table.c[name].type
    if isinstance(kind, UtcDateTime):
        return _INSTANT
    if isinstance(kind, BigInteger):
        return pa.int64()
    if isinstance(kind, Integer | Boolean):
        return pa.int32()
    return pa.string()  # text, identifiers and JSON documents (as their text)


def _schema(table: Any, names: Sequence[str]) -> pa.Schema:
    return pa.schema([(n, _arrow_type(table, n)) for n in names])


class Reads:
    """One export's reads of the read model, each an Arrow table of the named columns."""

    def __init__(self, conn: Connection) -> None:
        self.conn = conn

    def generation(self) -> int:
        return active_generation(self.conn)

    def window(self, generation: int, lower: datetime | None, upper: datetime) -> pa.Table:
        """(event id, delivery id, applied at) of the rows applied in ``(lower, upper]``."""
        where, params = self._applied(generation, lower, upper)
        return self._table(delivery_events, WINDOW_READ, where, params, whole=True)

    def history(
        self, generation: int, upper: datetime, delivery_ids: Sequence[str] | None = None
    ) -> pa.Table:
        """The history applied up to ``upper`` (``HISTORY_READ``), in no order; every
        delivery's (``delivery_ids`` None) or only these deliveries'."""
        where, params = self._applied(generation, None, upper)
        if delivery_ids is not None:
            where += f" AND delivery_id IN {self._ids_set()}"
            params.append(self._ids_param(sorted(set(delivery_ids))))
        return self._table(delivery_events, HISTORY_READ, where, params,
                           whole=delivery_ids is None)

    def current(
        self, generation: int, names: Sequence[str], delivery_ids: Sequence[str] | None = None
    ) -> pa.Table:
        """The served rows (``names`` of the deliveries table), in no order; all of them
        (``delivery_ids`` None) or only these deliveries'."""
        where = f"generation = {self._mark()}"
        params: list[Any] = [generation]
        if delivery_ids is not None:
            where += f" AND delivery_id IN {self._ids_set()}"
            params.append(self._ids_param(sorted(set(delivery_ids))))
        return self._table(deliveries, names, where, params, whole=delivery_ids is None)

    def served_count(self, generation: int) -> int:
        """How many rows the generation serves."""
        query = select(func.count()).select_from(deliveries).where(
            deliveries.c.generation == generation
        )
        return int(self.conn.execute(query).scalar_one())

    def _applied(
        self, generation: int, lower: datetime | None, upper: datetime
    ) -> tuple[str, list[Any]]:
        mark = self._mark()
        where = f"generation = {mark} AND applied_at <= {mark}"
        params: list[Any] = [generation, self._instant_param(upper)]
        if lower is not None:
            where += f" AND applied_at > {mark}"
            params.append(self._instant_param(lower))
        return where, params

    # -- the dialect's part --------------------------------------------------------
    #: A parameter's place in a statement.
    MARK: ClassVar[str]
    #: A set of ids given as one parameter (``_ids_param``), for ``IN``.
    IDS_SET: ClassVar[str]

    def _mark(self) -> str:
        return self.MARK

    def _ids_set(self) -> str:
        return self.IDS_SET

    @staticmethod
    def _ids_param(ids: list[str]) -> Any:
        return ids

    @staticmethod
    def _instant_param(value: datetime) -> Any:
        return value

    def _table(
        self, table: Any, names: Sequence[str], where: str, params: list[Any], whole: bool
    ) -> pa.Table:
        """``names`` of ``table`` for the rows ``where`` selects; ``whole``: most of them."""
        raise NotImplementedError


class _SqliteReads(Reads):
    MARK = "?"
    IDS_SET = "(SELECT value FROM json_each(?))"  # a JSON array of the ids

    @staticmethod
    def _ids_param(ids: list[str]) -> Any:
        return orjson.dumps(ids).decode("utf-8")

    @staticmethod
    def _instant_param(value: datetime) -> Any:
        return sqlite_time(value)

    def _table(
        self, table: Any, names: Sequence[str], where: str, params: list[Any], whole: bool
    ) -> pa.Table:
        schema = _schema(table, names)
        wire = pa.struct([(f.name, pa.string() if f.type == _INSTANT else f.type) for f in schema])
        columns = ", ".join(f'"{n}"' for n in names)
        # A read of every row scans the table: through an index, each row is one more
        # lookup in the table's own b-tree.
        source = f"{table.name} NOT INDEXED" if whole else table.name
        raw = self.conn.connection.driver_connection
        assert raw is not None
        cursor = raw.cursor()
        batches = []
        try:
            cursor.execute(f"SELECT {columns} FROM {source} WHERE {where}", params)
            while rows := cursor.fetchmany(_BATCH_ROWS):
                # Tuples become a struct array in one call, not a Python list per column.
                batches.append(pa.RecordBatch.from_struct_array(pa.array(rows, wire)))
        finally:
            cursor.close()
        return _conform(pa.Table.from_batches(batches, pa.schema(list(wire))), schema)


class _PostgresReads(Reads):
    MARK = "%s"
    IDS_SET = "(SELECT unnest(%s::text[]))"

    def _table(
        self, table: Any, names: Sequence[str], where: str, params: list[Any], whole: bool
    ) -> pa.Table:
        schema = _schema(table, names)
        selected = ", ".join(
            f"(extract(epoch FROM \"{f.name}\") * 1000000)::bigint" if f.type == _INSTANT
            else f'"{f.name}"::text' if f.type == pa.string() else f'"{f.name}"'
            for f in schema
        )
        statement = (
            f"COPY (SELECT {selected} FROM {table.name} WHERE {where})"
            " TO STDOUT (FORMAT csv)"
        )
        raw = self.conn.connection.driver_connection
        assert raw is not None
        buffer = io.BytesIO()
        with raw.cursor() as cursor, cursor.copy(statement, params) as copy:
            for block in copy:
                buffer.write(block)
        if not buffer.tell():
            return schema.empty_table()
        buffer.seek(0)
        wire = pa.schema([(f.name, pa.int64() if f.type == _INSTANT else f.type) for f in schema])
        found = pa_csv.read_csv(
            buffer,
            read_options=pa_csv.ReadOptions(column_names=list(names)),
            parse_options=pa_csv.ParseOptions(newlines_in_values=True),
            convert_options=pa_csv.ConvertOptions(
                column_types=wire,
                null_values=[""],
                strings_can_be_null=True,
                quoted_strings_can_be_null=False,
            ),
        )
        return _conform(found, schema)


def _conform(found: pa.Table, schema: pa.Schema) -> pa.Table:
    """``found`` as ``schema``: instants from SQLite's UTC text or epoch microseconds."""
    arrays = []
    for f in schema:
        column = found.column(f.name)
        if f.type == _INSTANT:
            column = column.cast(pa.timestamp("us")).cast(_INSTANT)
        arrays.append(column.cast(f.type))
    return pa.Table.from_arrays(arrays, schema=schema)


@contextmanager
def reading(engine: Engine) -> Iterator[Reads]:
    """The reads of one export, in one read transaction of the read model."""
    with engine.connect() as conn:
        conn.exec_driver_sql("SELECT 1")  # begins the read transaction
        yield _SqliteReads(conn) if conn.dialect.name == "sqlite" else _PostgresReads(conn)


def history_count(
    conn: Connection, generation: int, applied_after: datetime | None = None
) -> int:
    query = select(func.count()).select_from(delivery_events).where(
        delivery_events.c.generation == generation
    )
    if applied_after is not None:
        query = query.where(delivery_events.c.applied_at > applied_after)
    return int(conn.execute(query).scalar_one())
