"""status counts: messages read and duplicates per partition

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-29 19:10:00

``projection_offsets`` gains ``messages_read``, ``duplicates`` and ``counted_to``
(issue #9: messages read = events applied + duplicates + dead letters). Nothing
was counted before: a partition already read counts the events and the pending
dead letters it holds as read, with no duplicates (those are not known), and
everything below its ``next_offset`` as counted.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None

_COUNTS = ("messages_read", "duplicates", "counted_to")


def upgrade() -> None:
    with op.batch_alter_table("projection_offsets") as batch_op:
        for name in _COUNTS:
            batch_op.add_column(
                sa.Column(name, sa.BigInteger(), server_default=sa.text("0"), nullable=False)
            )
    offsets = sa.table(
        "projection_offsets",
        sa.column("generation", sa.Integer()),
        sa.column("topic", sa.Text()),
        sa.column("partition", sa.Integer()),
        sa.column("next_offset", sa.BigInteger()),
        sa.column("messages_read", sa.BigInteger()),
        sa.column("counted_to", sa.BigInteger()),
    )

    events = sa.table(
        "delivery_events",
        sa.column("generation", sa.Integer()),
        sa.column("topic", sa.Text()),
        sa.column("partition", sa.Integer()),
    )
    dead = sa.table(
        "dead_letters",
        sa.column("generation", sa.Integer()),
        sa.column("topic", sa.Text()),
        sa.column("partition", sa.Integer()),
        sa.column("status", sa.String()),
    )
    held_events = (
        sa.select(sa.func.count())
        .select_from(events)
        .where(
            events.c.generation == offsets.c.generation,
            events.c.topic == offsets.c.topic,
            events.c.partition == offsets.c.partition,
        )
        .scalar_subquery()
    )
    held_dead = (
        sa.select(sa.func.count())
        .select_from(dead)
        .where(
            dead.c.generation == offsets.c.generation,
            dead.c.topic == offsets.c.topic,
            dead.c.partition == offsets.c.partition,
            dead.c.status == "pending",
        )
        .scalar_subquery()
    )
    op.execute(
        offsets.update().values(
            messages_read=held_events + held_dead, counted_to=offsets.c.next_offset
        )
    )


def downgrade() -> None:
    with op.batch_alter_table("projection_offsets") as batch_op:
        for name in _COUNTS:
            batch_op.drop_column(name)
