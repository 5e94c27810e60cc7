"""PostgreSQL's per-generation partitions: create, load bare, index, attach, detach and drop.

``deliveries`` and ``delivery_events`` are partitioned by generation (revision
0005, ``schema.tables.PER_GENERATION``). A partition is always made as a plain
table first and then attached, never with ``CREATE TABLE ... PARTITION OF``: the
attach takes SHARE UPDATE EXCLUSIVE on the parent, which neither the query API's
reads nor the live projector's writes wait for, where ``PARTITION OF`` would take
ACCESS EXCLUSIVE. A CHECK constraint matching the bound is added before the attach,
so the attach does not scan the rows. A retired generation is detached
``CONCURRENTLY`` (it waits for the readers that may still see it, blocking none)
and dropped.

A bulk rebuild (``projector.store.bulk``) loads the bare tables, builds their
indexes and attaches them; the attach adopts those indexes as the partitions of the
parent's. On SQLite none of this applies: every function here is for PostgreSQL.
"""

from __future__ import annotations

import logging
from typing import Any, Final

from sqlalchemy import Connection, Engine, Table

from schema.tables import PER_GENERATION, partition_name

log = logging.getLogger(__name__)


def _quoted(names: Any) -> str:
    return ", ".join(f'"{n}"' for n in names)


def _index_columns(table: Table) -> list[tuple[bool, tuple[str, ...]]]:
    """(unique, columns) of the primary key and of each index, as the parent declares them."""
    found = [(True, tuple(c.name for c in table.primary_key.columns))]
    for index in sorted(table.indexes, key=lambda i: str(i.name)):
        found.append((bool(index.unique), tuple(c.name for c in index.columns)))
    return found


INDEXES: Final = {table.name: _index_columns(table) for table in PER_GENERATION}


def exists(conn: Connection, name: str) -> tuple[bool, bool]:
    """(the table exists, it is attached as a partition)."""
    row = conn.exec_driver_sql(
        "SELECT c.oid, EXISTS (SELECT 1 FROM pg_inherits i WHERE i.inhrelid = c.oid)"
        " FROM pg_class c WHERE c.relname = %(name)s AND c.relkind IN ('r', 'p')"
        " AND pg_table_is_visible(c.oid)",
        {"name": name},
    ).first()
    return (False, False) if row is None else (True, bool(row[1]))


def create_bare(conn: Connection, generation: int) -> None:
    """The generation's tables, unattached and without indexes (a leftover is dropped)."""
    for table in PER_GENERATION:
        part = partition_name(table.name, generation)
        found, attached = exists(conn, part)
        if attached:
            raise RuntimeError(f"{part} is attached already; not recreating it")
        if found:
            conn.exec_driver_sql(f"DROP TABLE {part}")
        conn.exec_driver_sql(f"CREATE TABLE {part} (LIKE {table.name} INCLUDING DEFAULTS)")


def index_and_attach(conn: Connection, generation: int, *, analyze: bool = False) -> None:
    """Build the indexes of the bare tables (the parent's, column for column) and attach them."""
    for table in PER_GENERATION:
        part = partition_name(table.name, generation)
        for unique, columns in INDEXES[table.name]:
            kind = "UNIQUE INDEX" if unique else "INDEX"
            conn.exec_driver_sql(f"CREATE {kind} ON {part} ({_quoted(columns)})")
        _attach(conn, table.name, part, generation)
        if analyze:
            conn.exec_driver_sql(f"ANALYZE {part}")


def _attach(conn: Connection, parent: str, part: str, generation: int) -> None:
    bound = f"{part}_bound"
    conn.exec_driver_sql(
        f"ALTER TABLE {part} ADD CONSTRAINT {bound} CHECK (generation IS NOT NULL"
        f" AND generation = {int(generation)})"
    )
    conn.exec_driver_sql(
        f"ALTER TABLE {parent} ATTACH PARTITION {part} FOR VALUES IN ({int(generation)})"
    )
    conn.exec_driver_sql(f"ALTER TABLE {part} DROP CONSTRAINT {bound}")


def ensure_attached(conn: Connection, generation: int) -> None:
    """Every partition of the generation exists and is attached (empty ones are made).

    A bare table left by an interrupted bulk load is dropped: its generation's
    offsets were never moved past the load's start, so nothing of it is lost.
    """
    for table in PER_GENERATION:
        part = partition_name(table.name, generation)
        found, attached = exists(conn, part)
        if attached:
            continue
        if found:
            log.info("dropping %s, left unattached by an interrupted bulk load", part)
            conn.exec_driver_sql(f"DROP TABLE {part}")
        conn.exec_driver_sql(f"CREATE TABLE {part} (LIKE {table.name} INCLUDING DEFAULTS)")
        _attach(conn, table.name, part, generation)


def count_rows(conn: Connection, generation: int) -> int:
    """The rows of the generation's partitions (those that exist)."""
    total = 0
    for table in PER_GENERATION:
        part = partition_name(table.name, generation)
        if exists(conn, part)[0]:
            total += int(conn.exec_driver_sql(f"SELECT count(*) FROM {part}").scalar_one())
    return total


def detach_and_drop(engine: Engine, generation: int) -> int:
    """Detach the generation's partitions concurrently and drop them; the rows they held.

    ``DETACH ... CONCURRENTLY`` cannot run inside a transaction block, so this runs
    on a connection of its own in autocommit. A detach interrupted half way leaves
    the partition pending; it is finished (``FINALIZE``) here the next time.
    """
    total = 0
    with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
        for table in PER_GENERATION:
            part = partition_name(table.name, generation)
            found, attached = exists(conn, part)
            if not found:
                continue
            total += int(conn.exec_driver_sql(f"SELECT count(*) FROM {part}").scalar_one())
            if attached:
                pending = conn.exec_driver_sql(
                    "SELECT i.inhdetachpending FROM pg_inherits i JOIN pg_class c"
                    " ON c.oid = i.inhrelid WHERE c.relname = %(name)s"
                    " AND pg_table_is_visible(c.oid)",
                    {"name": part},
                ).scalar()
                how = "FINALIZE" if pending else "CONCURRENTLY"
                conn.exec_driver_sql(f"ALTER TABLE {table.name} DETACH PARTITION {part} {how}")
            conn.exec_driver_sql(f"DROP TABLE {part}")
    return total
