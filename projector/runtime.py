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

from projector.errors import StoreUnavailable
from projector.settings import Settings
from schema.db import SchemaError, ensure_migrated, make_engine

log = logging.getLogger("projector")


def open_engine(settings: Settings, *, check: bool = True, writer: bool = True) -> Engine:
    """The read model's engine; readers never take SQLite's write lock."""
    engine = make_engine(settings.database_url, writer=writer)
    if check:
        try:
            with engine.connect() as conn:
                ensure_migrated(conn)
        except SchemaError as exc:
            raise StoreUnavailable(str(exc)) from None
    return engine


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
