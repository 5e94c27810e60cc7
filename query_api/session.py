"""One operation's view of the read model: its generation, its DataLoaders.

A session lives for one GraphQL operation (an HTTP request, or one operation on
a WebSocket) and reads everything through one connection in one read-only
transaction: the generation and every row of the response come from the same
snapshot (REPEATABLE READ on PostgreSQL, a WAL read transaction on SQLite), so a
page never disagrees with its ``totalCount`` and a rebuild's switch is picked up
by the next operation, never halfway. Statements run one at a time in a worker
thread, so the event loop never waits on the database. History is loaded
through a DataLoader: however many deliveries a page holds, their histories cost
one statement.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Sequence
from typing import Any, TypeVar

import anyio.to_thread
from sqlalchemy import Connection, Engine
from sqlalchemy.engine import RowMapping
from sqlalchemy.exc import DBAPIError, SQLAlchemyError
from strawberry.dataloader import DataLoader

from query_api import reads
from query_api.cursors import parse_event_cursor
from query_api.errors import DatabaseUnavailable, UserInputError
from schema.db import SchemaError, active_generation

log = logging.getLogger(__name__)

T = TypeVar("T")
HistoryKey = tuple[str, int, "str | None"]  # delivery id, first, after


class ReadSession:
    def __init__(self, engine: Engine, max_nodes: int = 100_000) -> None:
        self._engine = engine
        self.max_nodes = max_nodes
        self._nodes = 0
        self._generation: int | None = None
        self._generation_lock = asyncio.Lock()
        self._conn: Connection | None = None
        self._conn_lock = anyio.Lock()  # one statement at a time on the one connection
        self.deliveries = DataLoader[str, "RowMapping | None"](load_fn=self._load_deliveries)
        self.histories = DataLoader[HistoryKey, reads.HistoryPage](load_fn=self._load_histories)

    def spend(self, nodes: int) -> None:
        """Count results asked for before reading them; too many ends the operation.

        Depth, alias and token limits all pass 30 aliases of
        ``deliveries(first: 500) { history(first: 500) }``: millions of events. The
        budget is charged with what each statement may return (``first`` times the
        deliveries it serves) before it runs, so such a query stops early and cheaply.
        """
        self._nodes += nodes
        if self._nodes > self.max_nodes:
            raise UserInputError(
                f"the query asks for more than {self.max_nodes} results;"
                " ask for smaller pages (`first`) or fewer aliases"
            )

    async def generation(self) -> int:
        async with self._generation_lock:
            if self._generation is None:
                try:
                    self._generation = await self._in_thread(active_generation)
                except DatabaseUnavailable as exc:
                    if isinstance(exc.__cause__, SchemaError):
                        raise
                    raise DatabaseUnavailable(
                        "the read model is unavailable (unreachable or not migrated; see /readyz)"
                    ) from exc
            return self._generation

    async def run(self, fn: Callable[..., T], *args: Any) -> T:
        """``fn(conn, generation, *args)`` on a pooled connection, in a worker thread."""
        generation = await self.generation()
        return await self._in_thread(fn, generation, *args)

    async def _in_thread(self, fn: Callable[..., T], *args: Any) -> T:
        async with self._conn_lock:
            return await anyio.to_thread.run_sync(self._call, fn, *args)

    async def aclose(self) -> None:
        """End the snapshot and give the connection back to the pool."""
        async with self._conn_lock:
            if self._conn is not None:
                await anyio.to_thread.run_sync(self._release)

    def _connection(self) -> Connection:
        if self._conn is None:
            conn = self._engine.connect()
            if conn.dialect.name == "postgresql":
                conn = conn.execution_options(
                    isolation_level="REPEATABLE READ", postgresql_readonly=True
                )
            self._conn = conn
        return self._conn

    def _release(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None:
            try:
                conn.close()
            except SQLAlchemyError as exc:  # a broken connection: the pool drops it
                log.debug("closing a read connection failed: %s", exc)

    def _call(self, fn: Callable[..., T], *args: Any) -> T:
        try:
            return fn(self._connection(), *args)
        except SchemaError as exc:
            self._release()
            raise DatabaseUnavailable(str(exc)) from exc
        except (DBAPIError, SQLAlchemyError) as exc:
            self._release()
            # The cause goes to the log; the client gets a line without SQL in it.
            log.error("read-model query failed: %s", exc)
            if isinstance(exc, DBAPIError) and exc.connection_invalidated:
                raise DatabaseUnavailable("the read-model database is unreachable") from exc
            raise DatabaseUnavailable("the read-model query failed") from exc

    # -- loaders ----------------------------------------------------------------
    async def _load_deliveries(self, ids: Sequence[str]) -> list[RowMapping | None]:
        found = await self.run(reads.deliveries_by_id, list(dict.fromkeys(ids)))
        return [found.get(i) for i in ids]

    async def _load_histories(self, keys: Sequence[HistoryKey]) -> list[reads.HistoryPage]:
        groups: dict[tuple[int, str | None], list[str]] = {}
        for delivery_id, first, after in keys:
            ids = groups.setdefault((first, after), [])
            if delivery_id not in ids:
                ids.append(delivery_id)
        pages: dict[HistoryKey, reads.HistoryPage] = {}
        for (first, after), ids in groups.items():
            self.spend(len(ids) * first)
            key = None if after is None else parse_event_cursor(after)
            found = await self.run(reads.histories, ids, first, key)
            for delivery_id, page in found.items():
                pages[(delivery_id, first, after)] = page
        return [pages[k] for k in keys]


def connection_check(conn: Connection) -> int:
    """For /readyz: the read model is migrated and has an active generation."""
    from schema.db import ensure_migrated

    ensure_migrated(conn)
    return active_generation(conn)
