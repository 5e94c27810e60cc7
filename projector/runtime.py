"""What every command shares at run time: the read model's engine, who we are, the clock, signals.

Each of these had copies in several modules (and ``cli`` <-> ``commands`` <->
``rebuild`` imported each other for them); one module now holds one of each.
"""

from __future__ import annotations

import logging
import os
import signal
import socket
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import Engine
from sqlalchemy.engine import make_url

from projector.errors import StoreUnavailable
from projector.settings import Settings
from projector.stall import StallWatch
from schema.db import SchemaError, ensure_migrated, make_engine

log = logging.getLogger("projector")


def open_engine(
    settings: Settings, *, check: bool = True, writer: bool = True, bounded: bool = True
) -> Engine:
    """The read model's engine; readers never take SQLite's write lock.

    ``bounded``: on PostgreSQL every session carries the projector's own
    ``idle_in_transaction_session_timeout`` and ``statement_timeout``
    (``session_options``), so a process frozen inside a transaction loses its locks
    within a known time. Migrations run unbounded (an index build may take long).
    """
    kwargs: dict[str, Any] = {}
    if bounded and make_url(settings.database_url).get_backend_name() == "postgresql":
        kwargs["connect_args"] = {"options": session_options(settings)}
    engine = make_engine(settings.database_url, writer=writer, **kwargs)
    if check:
        try:
            with engine.connect() as conn:
                ensure_migrated(conn)
        except SchemaError as exc:
            raise StoreUnavailable(str(exc)) from None
    return engine


def session_options(settings: Settings) -> str:
    """The libpq ``options`` that bound our PostgreSQL sessions (0 = no bound)."""
    return (
        f"-c idle_in_transaction_session_timeout={settings.idle_in_transaction_timeout_ms}"
        f" -c statement_timeout={settings.statement_timeout_ms}"
    )


def stall_watch(settings: Settings, engine: Engine) -> StallWatch | None:
    """A running ``StallWatch`` for a bounded PostgreSQL engine: a stand-still of most of
    the idle-in-transaction bound (80 %: the session was idle a little before the
    process froze) means the server has ended the session."""
    bound_ms = settings.idle_in_transaction_timeout_ms
    if engine.dialect.name != "postgresql" or bound_ms <= 0:
        return None
    return StallWatch(0.8 * bound_ms / 1000).start()


def owner_name() -> str:
    """This process, as the owner of a partition claim or of a rebuild: host:pid."""
    return f"{socket.gethostname()}:{os.getpid()}"


def now() -> datetime:
    return datetime.now(UTC)


def install_stop_signals(stop: Callable[[], None]) -> None:
    """SIGTERM and SIGINT end the loop after the batch in flight."""

    def _handler(signum: int, _frame: Any) -> None:
        log.info("signal %s: stopping after the current batch", signum)
        stop()

    signal.signal(signal.SIGTERM, _handler)
    signal.signal(signal.SIGINT, _handler)
