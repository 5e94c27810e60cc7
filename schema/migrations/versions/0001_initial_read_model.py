"""initial read model

Revision ID: 0001
Revises: 
Create Date: 2026-11-25 10:45:08.538968
"""

from __future__ import annotations

from datetime import datetime, timezone

from alembic import op
import sqlalchemy as sa
from sqlalchemy.dialects import postgresql

from schema.tables import UtcDateTime

revision = '0001'
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('dead_letters',
    sa.Column('id', sa.Integer(), autoincrement=True, nullable=False),
    sa.Column('generation', sa.Integer(), nullable=False),
    sa.Column('topic', sa.Text(), nullable=False),
    sa.Column('partition', sa.Integer(), nullable=False),
    sa.Column('offset', sa.BigInteger(), nullable=False),
    sa.Column('key', sa.LargeBinary(), nullable=True),
    sa.Column('value', sa.LargeBinary(), nullable=True),
    sa.Column('headers', sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), 'postgresql'), nullable=False),
    sa.Column('error_code', sa.String(length=32), nullable=False),
    sa.Column('reason', sa.Text(), nullable=False),
    sa.Column('status', sa.String(length=16), server_default='pending', nullable=False),
    sa.Column('created_at', UtcDateTime(), nullable=False),
    sa.Column('replayed_at', UtcDateTime(), nullable=True),
    sa.Column('replayed_event_id', sa.String(length=128), nullable=True),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_dead_letters'))
    )
    with op.batch_alter_table('dead_letters', schema=None) as batch_op:
        batch_op.create_index('ix_dead_letters_status', ['generation', 'status'], unique=False)
        batch_op.create_index('uq_dead_letters_source', ['generation', 'topic', 'partition', 'offset'], unique=True)

    op.create_table('deliveries',
    sa.Column('generation', sa.Integer(), nullable=False),
    sa.Column('delivery_id', sa.String(length=128).with_variant(sa.String(length=128, collation='C'), 'postgresql'), nullable=False),
    sa.Column('order_id', sa.Text(), nullable=True),
    sa.Column('shop_id', sa.Text(), nullable=True),
    sa.Column('rider_id', sa.Text(), nullable=True),
    sa.Column('state', sa.String(length=16), nullable=False),
    sa.Column('created_at', UtcDateTime(), nullable=True),
    sa.Column('assigned_at', UtcDateTime(), nullable=True),
    sa.Column('picked_up_at', UtcDateTime(), nullable=True),
    sa.Column('delivered_at', UtcDateTime(), nullable=True),
    sa.Column('cancelled_at', UtcDateTime(), nullable=True),
    sa.Column('cancel_reason', sa.Text(), nullable=True),
    sa.Column('estimated_delivery_at', UtcDateTime(), nullable=True),
    sa.Column('last_event_at', UtcDateTime(), nullable=False),
    sa.Column('event_count', sa.Integer(), nullable=False),
    sa.Column('fold_occurred_at', UtcDateTime(), nullable=False),
    sa.Column('fold_sequence', sa.BigInteger(), nullable=False),
    sa.Column('fold_event_id', sa.String(length=128).with_variant(sa.String(length=128, collation='C'), 'postgresql'), nullable=False),
    sa.PrimaryKeyConstraint('generation', 'delivery_id', name=op.f('pk_deliveries'))
    )
    with op.batch_alter_table('deliveries', schema=None) as batch_op:
        batch_op.create_index('ix_deliveries_feed', ['generation', 'last_event_at', 'delivery_id'], unique=False)
        batch_op.create_index('ix_deliveries_order', ['generation', 'order_id'], unique=False)
        batch_op.create_index('ix_deliveries_rider', ['generation', 'rider_id'], unique=False)
        batch_op.create_index('ix_deliveries_shop', ['generation', 'shop_id'], unique=False)
        batch_op.create_index('ix_deliveries_state', ['generation', 'state'], unique=False)

    op.create_table('delivery_events',
    sa.Column('generation', sa.Integer(), nullable=False),
    sa.Column('event_id', sa.String(length=128).with_variant(sa.String(length=128, collation='C'), 'postgresql'), nullable=False),
    sa.Column('delivery_id', sa.String(length=128).with_variant(sa.String(length=128, collation='C'), 'postgresql'), nullable=False),
    sa.Column('event_type', sa.String(length=128), nullable=False),
    sa.Column('known', sa.Integer(), nullable=False),
    sa.Column('occurred_at', UtcDateTime(), nullable=False),
    sa.Column('sequence', sa.BigInteger(), nullable=True),
    sa.Column('data', sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), 'postgresql'), nullable=False),
    sa.Column('estimated_delivery_at', UtcDateTime(), nullable=True),
    sa.Column('topic', sa.Text(), nullable=False),
    sa.Column('partition', sa.Integer(), nullable=False),
    sa.Column('offset', sa.BigInteger(), nullable=False),
    sa.Column('applied_at', UtcDateTime(), nullable=False),
    sa.PrimaryKeyConstraint('generation', 'event_id', name=op.f('pk_delivery_events'))
    )
    with op.batch_alter_table('delivery_events', schema=None) as batch_op:
        batch_op.create_index('ix_delivery_events_fold', ['generation', 'delivery_id', 'occurred_at', 'sequence', 'event_id'], unique=False)
        batch_op.create_index('ix_delivery_events_time', ['generation', 'occurred_at'], unique=False)

    op.create_table('generations',
    sa.Column('generation', sa.Integer(), autoincrement=False, nullable=False),
    sa.Column('status', sa.String(length=16), nullable=False),
    sa.Column('purpose', sa.String(length=16), server_default='live', nullable=False),
    sa.Column('from_spec', sa.Text(), nullable=True),
    sa.Column('owner', sa.String(length=128), nullable=True),
    sa.Column('created_at', UtcDateTime(), nullable=False),
    sa.Column('activated_at', UtcDateTime(), nullable=True),
    sa.Column('heartbeat_at', UtcDateTime(), nullable=True),
    sa.PrimaryKeyConstraint('generation', name=op.f('pk_generations'))
    )
    op.create_table('projection_offsets',
    sa.Column('generation', sa.Integer(), nullable=False),
    sa.Column('topic', sa.Text(), nullable=False),
    sa.Column('partition', sa.Integer(), nullable=False),
    sa.Column('next_offset', sa.BigInteger(), nullable=False),
    sa.Column('owner_epoch', sa.BigInteger(), server_default=sa.text('0'), nullable=False),
    sa.Column('owner', sa.String(length=128), nullable=True),
    sa.Column('updated_at', UtcDateTime(), nullable=False),
    sa.PrimaryKeyConstraint('generation', 'topic', 'partition', name=op.f('pk_projection_offsets'))
    )
    # The read model starts with generation 1 active and empty.
    generations = sa.table(
        "generations",
        sa.column("generation", sa.Integer()),
        sa.column("status", sa.String()),
        sa.column("purpose", sa.String()),
        sa.column("created_at", UtcDateTime()),
        sa.column("activated_at", UtcDateTime()),
    )
    now = datetime.now(timezone.utc)
    op.bulk_insert(
        generations,
        [{"generation": 1, "status": "active", "purpose": "live", "created_at": now, "activated_at": now}],
    )


def downgrade() -> None:
    op.drop_table('projection_offsets')
    op.drop_table('generations')
    with op.batch_alter_table('delivery_events', schema=None) as batch_op:
        batch_op.drop_index('ix_delivery_events_time')
        batch_op.drop_index('ix_delivery_events_fold')

    op.drop_table('delivery_events')
    with op.batch_alter_table('deliveries', schema=None) as batch_op:
        batch_op.drop_index('ix_deliveries_state')
        batch_op.drop_index('ix_deliveries_shop')
        batch_op.drop_index('ix_deliveries_rider')
        batch_op.drop_index('ix_deliveries_order')
        batch_op.drop_index('ix_deliveries_feed')

    op.drop_table('deliveries')
    with op.batch_alter_table('dead_letters', schema=None) as batch_op:
        batch_op.drop_index('uq_dead_letters_source')
        batch_op.drop_index('ix_dead_letters_status')

    op.drop_table('dead_letters')
