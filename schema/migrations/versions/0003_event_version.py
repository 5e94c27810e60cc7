"""event versions: the history keeps each event's eventVersion as received

Revision ID: 0003_event_version
Revises: 0002
Create Date: 2026-12-02 18:40:00

``delivery_events`` gains ``event_version`` (issue #18). Every event held before
was read as version 1, the only version there was, so existing rows get 1.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0003_event_version"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("delivery_events") as batch_op:
        batch_op.add_column(
            sa.Column("event_version", sa.Integer(), server_default=sa.text("1"), nullable=False)
        )


def downgrade() -> None:
    with op.batch_alter_table("delivery_events") as batch_op:
        batch_op.drop_column("event_version")
