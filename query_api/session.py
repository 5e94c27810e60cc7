"""One operation's view of the read model: one connection, one snapshot, its DataLoaders.

A session lives for one GraphQL operation (an HTTP request, or one operation on
a WebSocket) and reads everything through one connection in one read-only
transaction (REPEATABLE READ on PostgreSQL, a WAL read transaction on SQLite),
so a page never disagrees with its ``totalCount``.

The served generation is not read apart: every statement selects its rows
``WHERE generation = (SELECT generation FROM generations WHERE status =
'active')`` (``ACTIVE``), inside the same transaction. That costs no round trip,
cannot be stale (a rebuild's switch is seen by the next operation, never
halfway, since the whole operation reads one snapshot), and needs no cache to
invalidate. ``generation()`` reads the number itself, in the same snapshot, for
``projectionStatus``.

The session takes a database slot (``query_api.database``) on its first
statement and gives it back when it closes; statements run one at a time in a
DB worker thread, so the event loop never waits on the database. Rows are read
per field list through DataLoaders: however many deliveries a page holds, their
histories cost one statement.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Sequence
from typing import Any, TypeVar

from sqlalchemy import Connection
from sqlalchemy.engine import RowMapping
from sqlalchemy.exc import DBAPIError, SQLAlchemyError
from strawberry.dataloader import DataLoader

from query_api import reads
from query_api.cursors import parse_event_cursor
from query_api.database import ReadDatabase, timed_out
from query_api.errors import DatabaseUnavailable, QueryTimeout, UserInputError
from query_api.limits.nodes import NodeAllowance
from query_api.limits.pages import FOLD_LIMIT
from query_api.limits.payload import PayloadAllowance
from query_api.reads import ACTIVE, FoldBound, Generation
from query_api.timeline import DeliveryTimeline, load_timelines
from schema.db import SchemaError, active_generation

log = logging.getLogger(__name__)

T = TypeVar("T")
HistoryKey = tuple[str, int, "str | None", "FoldBound | None"]  # id, first, after, asOf bound
TimelineKey = tuple[str, "FoldBound | None"]  # delivery id, time-travel bound

UNAVAILABLE = "the read model is unavailable (unreachable or not migrated; see /readyz)"


class ReadSession:
    def __init__(
        self, database: ReadDatabase, max_nodes: int = 100_000,
        max_payload_bytes: int = reads.UNBOUNDED_BYTES,
    ) -> None:
        self._db = database
        self._allowance = NodeAllowance(max_nodes)
        self._payload = PayloadAllowance(max_payload_bytes)
        self._generation: int | None = None
        self._conn: Connection | None = None
        self._ticket: object | None = None
        self._statements = 0
        self._one_statement = False
        # One statement at a time on the one connection (asyncio's lock: no loop
        # iteration when uncontended, unlike anyio's).
        self._lock = asyncio.Lock()
        self.deliveries = DataLoader[str, "RowMapping | None"](load_fn=self._load_deliveries)
        self.histories = DataLoader[HistoryKey, reads.HistoryPage](
            load_fn=self._load_histories)
        self.timelines = DataLoader[TimelineKey, DeliveryTimeline](load_fn=self._load_timelines)

    @property
    def max_nodes(self) -> int:
        return self._allowance.max_nodes

    def spend(self, nodes: int) -> None:
        """Count results asked for before reading them (``query_api.limits.nodes``)."""
        self._allowance.spend(nodes)

    def expect_one_statement(self) -> None:
        """The operation runs one statement (``query_api.limits.cost``): its thread trip also
        gives the connection back, so closing needs no second trip."""
        self._one_statement = True

    async def generation(self) -> int:
        """The generation this operation reads (in its snapshot)."""
        if self._generation is None:
            self._generation = await self._statement(_active_generation)
        return self._generation

    async def run(self, fn: Callable[..., T], *args: Any) -> T:
        """``fn(conn, generation, *args)`` in this operation's snapshot, in a DB thread.

        ``generation`` is ``ACTIVE`` (a subquery) or, once read, the number.
        """
        generation: Generation = ACTIVE if self._generation is None else self._generation
        return await self._statement(fn, generation, *args)

    async def aclose(self) -> None:
        """End the snapshot, give the connection back to the pool and the slot back."""
        async with self._lock:
            try:
                if self._conn is not None:
                    await self._db.in_thread(self._release)
            finally:
                ticket, self._ticket = self._ticket, None
                if ticket is not None:
                    self._db.leave(self, ticket)

    async def _statement(self, fn: Callable[..., T], *args: Any) -> T:
        async with self._lock:
            if self._ticket is None:
                self._ticket = await self._db.admit(self)
            return await self._db.in_thread(self._call, fn, *args)

    # -- in the DB thread -----------------------------------------------------------
    def _connection(self) -> Connection:
        if self._conn is None:
            conn = self._db.engine.connect()
            if conn.dialect.name == "postgresql":
                # One statement is a snapshot by itself: in autocommit it costs one
                # round trip instead of BEGIN, SELECT and ROLLBACK.
                conn = conn.execution_options(
                    isolation_level="AUTOCOMMIT"
                ) if self._one_statement else conn.execution_options(
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
            try:
                result = self._db.bounded(self._connection(), fn, *args)
            except DBAPIError as exc:
                if not (exc.connection_invalidated and self._statements == 0):
                    raise
                # The pool held a connection the server has dropped (no pre-ping):
                # nothing was read yet, so one retry on a fresh one is safe.
                self._release()
                result = self._db.bounded(self._connection(), fn, *args)
        except SchemaError as exc:
            self._release()
            raise DatabaseUnavailable(str(exc)) from exc
        except (DBAPIError, SQLAlchemyError) as exc:
            self._release()
            raise self._failure(exc) from exc
        self._statements += 1
        if self._one_statement:
            if self._statements > 1:  # the estimate missed a reader: say so, loudly
                log.error("an operation expected to run one statement ran %s", self._statements)
            self._release()
        return result

    def _failure(self, exc: SQLAlchemyError) -> Exception:
        """The client's one line for a failed statement; the cause goes to the log."""
        if isinstance(exc, DBAPIError) and timed_out(exc):
            log.warning("a read-model statement hit the statement timeout: %s", exc.orig)
            return QueryTimeout(
                f"the query ran longer than {self._db.timeout:g}s and was stopped;"
                " ask for less (smaller pages, fewer aliases)"
            )
        log.error("read-model query failed: %s", exc)
        if isinstance(exc, DBAPIError) and exc.connection_invalidated:
            return DatabaseUnavailable("the read-model database is unreachable")
        if self._statements == 0 and not self._serving():
            return DatabaseUnavailable(UNAVAILABLE)
        return DatabaseUnavailable("the read-model query failed")

    def _serving(self) -> bool:
        """After a first statement failed: is there a migrated read model at all?"""
        try:
            with self._db.engine.connect() as conn:
                active_generation(conn)
        except (SchemaError, SQLAlchemyError):
            return False
        return True

    # -- loaders ----------------------------------------------------------------
    async def _load_deliveries(self, ids: Sequence[str]) -> list[RowMapping | None]:
        found = await self.run(reads.deliveries_by_id, list(dict.fromkeys(ids)))
        return [found.get(i) for i in ids]

    async def _load_histories(
        self, keys: Sequence[HistoryKey]
    ) -> list[reads.HistoryPage | UserInputError]:
        groups: dict[tuple[int, str | None, FoldBound | None], list[str]] = {}
        for delivery_id, first, after, bound in keys:
            ids = groups.setdefault((first, after, bound), [])
            if delivery_id not in ids:
                ids.append(delivery_id)
        pages: dict[HistoryKey, reads.HistoryPage | UserInputError] = {}
        for (first, after, bound), ids in groups.items():
            self.spend(len(ids) * first)
            key = None if after is None else parse_event_cursor(after)
            found = await self.run(reads.histories, ids, first, key, bound,
                                   self._payload.remaining)
            try:  # over what is left, the pages came without their payloads: refused
                self._payload.spend(sum(page.data_bytes for page in found.values()))
            except UserInputError as refusal:  # those pages' fields, not the whole batch
                pages.update({(i, first, after, bound): refusal for i in ids})
                continue
            for delivery_id, page in found.items():
                pages[(delivery_id, first, after, bound)] = page
        return [pages[k] for k in keys]

    async def _load_timelines(self, keys: Sequence[TimelineKey]) -> list[DeliveryTimeline]:
        """Folds of whole histories (``query_api.timeline``), charged as pages of
        ``FOLD_LIMIT`` events each, one statement per bound."""
        groups: dict[FoldBound | None, list[str]] = {}
        for delivery_id, bound in keys:
            ids = groups.setdefault(bound, [])
            if delivery_id not in ids:
                ids.append(delivery_id)
        found: dict[TimelineKey, DeliveryTimeline] = {}
        for bound, ids in groups.items():
            self.spend(len(ids) * FOLD_LIMIT)
            folded = await self.run(load_timelines, ids, bound)
            for delivery_id, one in folded.items():
                found[(delivery_id, bound)] = one
        return [found[k] for k in keys]

def _active_generation(conn: Connection) -> int:
    return active_generation(conn)


def connection_check(conn: Connection) -> int:
    """For /readyz: the read model is migrated and has an active generation."""
    from schema.db import ensure_migrated

    ensure_migrated(conn)
    return active_generation(conn)
