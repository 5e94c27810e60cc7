"""Engines and migrations for the read model, on SQLite and PostgreSQL alike.

Nothing here connects at import time. ``make_engine`` sets SQLite up for one
writer and many readers (WAL, a busy timeout, ``BEGIN IMMEDIATE`` for writers) so
that the projector and the query API can share the embedded file.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Final

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Connection, Engine, create_engine, event, select
from sqlalchemy.engine import make_url

from schema.lifecycle import GenerationStatus
from schema.tables import generations

MIGRATIONS = Path(__file__).with_name("migrations")
#: SQLite page cache of a writer connection, KiB (the default is 2 MiB).
WRITER_CACHE_KIB = 131072
#: WAL pages between automatic checkpoints of a writer (the default is 1000).
WRITER_AUTOCHECKPOINT_PAGES = 20000


class SchemaError(RuntimeError):
    """The database is not a usable read model (unreachable, not migrated, too new)."""


def make_engine(url: str, *, writer: bool = True, **kwargs: Any) -> Engine:
    """An engine for ``url``; SQLite files get WAL and, for writers, immediate transactions."""
    parsed = make_url(url)
    if parsed.get_backend_name() == "sqlite":
        database = parsed.database or ""
        if database and database != ":memory:" and not database.startswith("file:"):
            Path(database).expanduser().parent.mkdir(parents=True, exist_ok=True)
        connect_args = kwargs.pop("connect_args", {})
        connect_args.setdefault("timeout", 30)
        connect_args.setdefault("check_same_thread", False)
        engine = create_engine(url, connect_args=connect_args, **kwargs)
        _sqlite_setup(engine, writer=writer)
        return engine
    kwargs.setdefault("pool_pre_ping", True)
    return create_engine(url, **kwargs)


def _sqlite_setup(engine: Engine, *, writer: bool) -> None:
    @event.listens_for(engine, "connect")
    def _connect(dbapi_conn: Any, _record: Any) -> None:
        dbapi_conn.isolation_level = None  # we issue BEGIN ourselves
        cursor = dbapi_conn.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA synchronous=NORMAL")
        cursor.execute("PRAGMA foreign_keys=ON")
        if writer:
            # Inserts into the history's unique index of random event ids touch pages all
            # over it: a page cache that holds the indexes keeps them from being read back
            # and spilled mid-batch, and fewer, larger checkpoints copy each hot page back
            # to the file once per many batches (measured in README, "Performance").
            cursor.execute(f"PRAGMA cache_size=-{WRITER_CACHE_KIB}")
            cursor.execute(f"PRAGMA wal_autocheckpoint={WRITER_AUTOCHECKPOINT_PAGES}")
        cursor.close()

    @event.listens_for(engine, "begin")
    def _begin(conn: Connection) -> None:
        conn.exec_driver_sql("BEGIN IMMEDIATE" if writer else "BEGIN")


def _alembic_config(connection: Connection) -> Config:
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    config.attributes["connection"] = connection
    return config


def head_revision() -> str:
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    head = ScriptDirectory.from_config(config).get_current_head()
    assert head is not None
    return head


def current_revision(connection: Connection) -> str | None:
    return MigrationContext.configure(connection).get_current_revision()


def migrate(engine: Engine) -> tuple[str | None, str]:
    """Upgrade the read model to the newest revision; returns (before, after)."""
    with engine.begin() as connection:
        before = current_revision(connection)
        command.upgrade(_alembic_config(connection), "head")
        after = current_revision(connection)
    assert after is not None
    return before, after


def ensure_migrated(connection: Connection) -> None:
    """Raise ``SchemaError`` unless the read model is at the newest revision."""
    revision = current_revision(connection)
    if revision is None:
        raise SchemaError("the read model is not migrated; run `projector migrate`")
    if revision != head_revision():
        raise SchemaError(
            f"the read model is at revision {revision}, this code needs {head_revision()};"
            " run `projector migrate`"
        )


#: Which generation is served: the one row of ``generations`` whose status is active.
#: The projector reads it, the query API embeds it as a subquery in its statements.
IS_ACTIVE: Final = generations.c.status == GenerationStatus.ACTIVE


def active_generation(connection: Connection) -> int:
    """The generation being served."""
    value = connection.execute(select(generations.c.generation).where(IS_ACTIVE)).scalar()
    if value is None:
        raise SchemaError("no active read-model generation; run `projector migrate`")
    return int(value)


def redacted(url: str) -> str:
    """The URL without its password, for logs and errors."""
    return make_url(url).render_as_string(hide_password=True)
