"""deliveries and delivery_events partitioned by generation on PostgreSQL

Revision ID: 0005_generation_partitions
Revises: 0004_dead_letter_bytes
Create Date: 2026-12-03 06:00:00

Issue #17: a rebuild writes a generation of its own. With one partition per
generation (``PARTITION BY LIST (generation)``) a new generation's tables are
loaded bare and indexed after, then attached; a retired one is detached and
dropped instead of deleted row by row. The statements stay as they were: a
condition on ``generation`` (a number or the served-generation subquery) prunes
to one partition.

The upgrade renames each table aside, creates the partitioned table with the same
columns, keys and index names, and copies every generation found (in
``generations`` or in the rows) into a partition of its own, attached after its
copy, so nothing is lost. It holds the tables for the copy: a large read model
migrates in a maintenance window. SQLite keeps its layout (nothing to do there).
The downgrade copies the partitions back into one plain table.
"""

from __future__ import annotations

from alembic import op

revision = "0005_generation_partitions"
down_revision = "0004_dead_letter_bytes"
branch_labels = None
depends_on = None

#: Each table, its primary key and its secondary indexes, as revision 0001 made them.
_TABLES: dict[str, tuple[tuple[str, ...], dict[str, tuple[str, ...]]]] = {
    "deliveries": (
        ("generation", "delivery_id"),
        {
            "ix_deliveries_feed": ("generation", "last_event_at", "delivery_id"),
            "ix_deliveries_order": ("generation", "order_id"),
            "ix_deliveries_rider": ("generation", "rider_id"),
            "ix_deliveries_shop": ("generation", "shop_id"),
            "ix_deliveries_state": ("generation", "state"),
        },
    ),
    "delivery_events": (
        ("generation", "event_id"),
        {
            "ix_delivery_events_fold": (
                "generation", "delivery_id", "occurred_at", "sequence", "event_id",
            ),
            "ix_delivery_events_time": ("generation", "occurred_at"),
        },
    ),
}


def _columns(names: tuple[str, ...]) -> str:
    return ", ".join(f'"{n}"' for n in names)


def _generations(old: str) -> list[int]:
    found = op.get_bind().exec_driver_sql(
        f"SELECT generation FROM generations UNION SELECT DISTINCT generation FROM {old}"
        " ORDER BY 1"
    )
    return [int(row[0]) for row in found]


def _set_aside(table: str, suffix: str) -> str:
    """Rename ``table`` with its key and indexes out of the way; returns its new name."""
    key, indexes = _TABLES[table]
    old = f"{table}_{suffix}"
    op.execute(f"ALTER TABLE {table} RENAME TO {old}")
    op.execute(f"ALTER TABLE {old} RENAME CONSTRAINT pk_{table} TO pk_{old}")
    for name in indexes:
        op.execute(f"ALTER INDEX {name} RENAME TO {name}_{suffix}")
    return old


def upgrade() -> None:
    if op.get_bind().dialect.name != "postgresql":
        return
    for table, (key, indexes) in _TABLES.items():
        old = _set_aside(table, "0004")
        op.execute(
            f"CREATE TABLE {table} (LIKE {old} INCLUDING DEFAULTS)"
            " PARTITION BY LIST (generation)"
        )
        op.execute(f"ALTER TABLE {table} ADD CONSTRAINT pk_{table} PRIMARY KEY ({_columns(key)})")
        for name, columns in indexes.items():
            op.execute(f"CREATE INDEX {name} ON {table} ({_columns(columns)})")
        for generation in _generations(old):
            part = f"{table}_g{generation}"
            op.execute(f"CREATE TABLE {part} (LIKE {table} INCLUDING DEFAULTS)")
            op.execute(f"INSERT INTO {part} SELECT * FROM {old} WHERE generation = {generation}")
            # The bound as a constraint first, so the attach need not scan the rows.
            op.execute(
                f"ALTER TABLE {part} ADD CONSTRAINT {part}_bound CHECK (generation = {generation})"
            )
            op.execute(
                f"ALTER TABLE {table} ATTACH PARTITION {part} FOR VALUES IN ({generation})"
            )
            op.execute(f"ALTER TABLE {part} DROP CONSTRAINT {part}_bound")
        op.execute(f"DROP TABLE {old}")


def downgrade() -> None:
    if op.get_bind().dialect.name != "postgresql":
        return
    for table, (key, indexes) in _TABLES.items():
        old = _set_aside(table, "0005")
        op.execute(f"CREATE TABLE {table} (LIKE {old} INCLUDING DEFAULTS)")
        op.execute(f"INSERT INTO {table} SELECT * FROM {old}")
        op.execute(f"ALTER TABLE {table} ADD CONSTRAINT pk_{table} PRIMARY KEY ({_columns(key)})")
        for name, columns in indexes.items():
            op.execute(f"CREATE INDEX {name} ON {table} ({_columns(columns)})")
        op.execute(f"DROP TABLE {old}")  # its partitions with it
