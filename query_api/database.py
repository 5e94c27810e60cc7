"""The API's side of the database: a pool sized to the work it admits, and a time bound.

A pool sized apart from the work it serves does not hold up under load: with
SQLAlchemy's default pool (5 + 10 overflow) behind anyio's 40 worker threads,
overflow connections are closed on return, SQLite runs its connect PRAGMAs again
and again, and threads wait on one another for a connection. Here one number,
``QUERY_API_DB_CONCURRENCY``, is at once the operations admitted to the
database, the DB worker threads and the pooled connections, so a connection is
always free for an admitted operation and reused; the rest wait in a fair
asynchronous queue (no thread, no connection) for at most
``QUERY_API_QUEUE_TIMEOUT_SECONDS``. The heavy lane (``query_api.limits.lanes``) runs its
own event loop, so it gets its own slots and threads
(``QUERY_API_HEAVY_CONCURRENCY``) and its own share of the pool: heavy operations
queue behind each other, never in front of light ones.

Every statement is bounded by ``QUERY_API_STATEMENT_TIMEOUT_SECONDS``: on
PostgreSQL as the connection's ``statement_timeout`` (a connect option, so it
costs no round trip), on SQLite by a progress handler that interrupts a
statement past its deadline (in the DB thread's CPU time, see ``_Deadline``).
"""

from __future__ import annotations

import asyncio
import math
import time
from collections.abc import Callable
from typing import Any, TypeVar

import anyio
import anyio.to_thread
from sqlalchemy import Connection, Engine, event
from sqlalchemy.engine import make_url
from sqlalchemy.exc import DBAPIError

from query_api.errors import Busy
from query_api.settings import Settings
from schema.db import make_engine

T = TypeVar("T")

#: Connections beyond the admitted operations: /readyz and /metrics read outside them.
SPARE_CONNECTIONS = 2
#: SQLite calls the progress handler every this many virtual-machine instructions.
SQLITE_PROGRESS_STEPS = 10_000
_DEADLINE = "query_api.deadline"


class _Deadline:
    """When the running SQLite statement must stop (``inf``: no statement running).

    Measured in the DB thread's own CPU time: pysqlite gives up the GIL around every
    step, so under a busy process wall time would also count the waits for the GIL
    (seconds for a few thousand rows), and an innocent statement would be stopped.
    """

    __slots__ = ("at",)

    def __init__(self) -> None:
        self.at = math.inf

    def arm(self, seconds: float) -> None:
        self.at = time.thread_time() + seconds

    def passed(self) -> int:
        return 1 if time.thread_time() > self.at else 0


class _Limits:
    __slots__ = ("slots", "threads")

    def __init__(self, size: int) -> None:
        self.slots = anyio.CapacityLimiter(size)
        self.threads = anyio.CapacityLimiter(size)


class ReadDatabase:
    """The engine, the admission queue and the DB worker threads of one app."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.timeout = settings.statement_timeout_seconds
        self.engine = build_engine(settings)
        self.sqlite = self.engine.dialect.name == "sqlite"
        if self.sqlite and self.timeout > 0:
            _install_interrupts(self.engine)
        self.heavy_loop: asyncio.AbstractEventLoop | None = None
        #: Told each admission that had to wait: (lane, seconds waited, refused as busy);
        #: the metrics' (``query_api.metrics``). The fast path, a free slot, tells nothing.
        self.on_wait: Callable[[str, float, bool], None] | None = None
        # Limiters belong to one event loop: (slots, threads) per loop, made there.
        self._limits: dict[asyncio.AbstractEventLoop, _Limits] = {}

    def _lane(self) -> _Limits:
        loop = asyncio.get_running_loop()
        limits = self._limits.get(loop)
        if limits is None:
            size = (
                self.settings.heavy_concurrency
                if loop is self.heavy_loop
                else self.settings.db_concurrency
            )
            limits = self._limits[loop] = _Limits(size)
        return limits

    async def admit(self, holder: object) -> object:
        """Wait (cheaply, in FIFO order) until ``holder`` may use a connection.

        Returns the ticket to hand back to ``leave``."""
        slots = self._lane().slots
        try:
            slots.acquire_on_behalf_of_nowait(holder)
            return slots
        except anyio.WouldBlock:
            pass
        started = time.monotonic()
        lane = "heavy" if asyncio.get_running_loop() is self.heavy_loop else "main"
        try:
            with anyio.fail_after(self.settings.queue_timeout_seconds):
                await slots.acquire_on_behalf_of(holder)
            if self.on_wait is not None:
                self.on_wait(lane, time.monotonic() - started, False)
            return slots
        except TimeoutError:
            if self.on_wait is not None:
                self.on_wait(lane, time.monotonic() - started, True)
            raise Busy(
                "the API is busy: no database slot freed within "
                f"{self.settings.queue_timeout_seconds:g}s; try again"
            ) from None

    def leave(self, holder: object, ticket: object) -> None:
        assert isinstance(ticket, anyio.CapacityLimiter)
        ticket.release_on_behalf_of(holder)

    async def in_thread(self, fn: Callable[..., T], *args: Any) -> T:
        """``fn(*args)`` in one of the DB worker threads (of this loop's lane)."""
        return await anyio.to_thread.run_sync(fn, *args, limiter=self._lane().threads)

    def bounded(self, conn: Connection, fn: Callable[..., T], *args: Any) -> T:
        """``fn(conn, *args)`` with the statement timeout armed (SQLite; PostgreSQL's is
        the connection's own)."""
        deadline: _Deadline | None = conn.info.get(_DEADLINE) if self.sqlite else None
        if deadline is None:
            return fn(conn, *args)
        deadline.arm(self.timeout)
        try:
            return fn(conn, *args)
        finally:
            deadline.at = math.inf

    def dispose(self) -> None:
        self.engine.dispose()


def build_engine(settings: Settings) -> Engine:
    """A read-only engine whose pool holds a connection for every admitted operation.

    Read-only by the connection, not only by what the API sends: PostgreSQL
    connections start with ``default_transaction_read_only``, SQLite ones with
    ``PRAGMA query_only``, so a write through this engine fails whatever the role.

    No pre-ping: it would cost a round trip per operation; a connection found dead
    is retried once instead (``query_api.session``).
    """
    size = settings.db_concurrency + settings.heavy_concurrency + SPARE_CONNECTIONS
    kwargs: dict[str, Any] = {
        "pool_size": size,
        "max_overflow": 0,
        "pool_timeout": max(settings.queue_timeout_seconds, 1.0),
        "pool_pre_ping": False,
    }
    url = make_url(settings.database_url)
    timeout_ms = int(settings.statement_timeout_seconds * 1000)
    if url.get_backend_name() == "postgresql":
        options = url.query.get("options", "")
        if isinstance(options, tuple):
            options = " ".join(options)
        # Every transaction read-only, the one-statement autocommit path included,
        # whatever the role may do (the README's SELECT-only role is the other guard).
        options += " -c default_transaction_read_only=on"
        if timeout_ms > 0:
            options += f" -c statement_timeout={timeout_ms}"
        kwargs["connect_args"] = {"options": options.strip()}
    engine = make_engine(settings.database_url, writer=False, **kwargs)
    if engine.dialect.name == "sqlite":
        _query_only(engine)
    return engine


def _query_only(engine: Engine) -> None:
    """SQLite's read-only guard: statements on the API's connections cannot write."""

    @event.listens_for(engine, "connect")
    def _connect(dbapi_conn: Any, record: Any) -> None:
        dbapi_conn.execute("PRAGMA query_only=ON")


def _install_interrupts(engine: Engine) -> None:
    @event.listens_for(engine, "connect")
    def _connect(dbapi_conn: Any, record: Any) -> None:
        deadline = _Deadline()
        record.info[_DEADLINE] = deadline
        dbapi_conn.set_progress_handler(deadline.passed, SQLITE_PROGRESS_STEPS)


def timed_out(exc: DBAPIError) -> bool:
    """Whether ``exc`` is a statement stopped by the timeout (either backend)."""
    orig = exc.orig
    if getattr(orig, "sqlstate", None) == "57014":  # PostgreSQL query_canceled
        return True
    return "interrupted" in str(orig).lower()
