"""The one place that wires a command: the read model's engine, the store, the source.

Commands ask this module for what they run on and never build it themselves, so a
setting (the session bounds, the source time zone, the message size bound) is
applied the same way by ``run``, ``rebuild``, ``verify`` and ``dead-letters``.
The store is given parsed batches; the parser (``open_parser``) goes to the loop.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import Engine
from sqlalchemy.engine import make_url

from projector.batch import BatchParser
from projector.errors import StoreUnavailable
from projector.settings import Settings
from projector.sources import open_source
from projector.stall import StallWatch
from projector.store import SqlStore
from projector.store.bulk import BulkLoad
from projector.store.lifecycle import SqlGenerations
from schema.db import SchemaError, ensure_migrated, make_engine, migrate

__all__ = [
    "migrate_read_model", "open_engine", "open_generations", "open_parser", "open_reader",
    "open_source", "open_store", "session_options", "stall_watch",
]


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


def open_reader(settings: Settings) -> Engine:
    """An engine that only reads (verify's snapshot of both generations)."""
    return make_engine(settings.database_url, writer=False)


def open_store(settings: Settings, engine: Engine, *, watch_stalls: bool = False) -> SqlStore:
    """The read model's store on ``engine``, with the settings every writer shares.

    ``watch_stalls``: the long-running projector notices a process frozen past the
    session bound (``stall_watch``); a one-off command does not need to.
    """
    return SqlStore(engine, stall_watch=stall_watch(settings, engine) if watch_stalls else None)


def open_generations(engine: Engine) -> SqlGenerations:
    """The generation lifecycle (a rebuild's, verify's) on ``engine``."""
    return SqlGenerations(engine)


def open_bulk_loader(settings: Settings, engine: Engine) -> BulkLoad | None:
    """A rebuild's bulk loader: on PostgreSQL unless ``PROJECTOR_REBUILD_BULK=0``."""
    if not settings.rebuild_bulk or engine.dialect.name != "postgresql":
        return None
    return BulkLoad(engine, open_parser(settings))


def open_parser(settings: Settings) -> BatchParser:
    """How messages are read: the source's time zone, the message size bound."""
    return BatchParser(settings.source_tz, settings.max_message_bytes)


def migrate_read_model(settings: Settings) -> tuple[str | None, str]:
    """Bring the read model to the newest revision: (the revision before, after).

    Unbounded sessions: an index build may take longer than a batch may.
    """
    return migrate(open_engine(settings, check=False, bounded=False))
