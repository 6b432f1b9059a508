"""inbound queue: verified events made durable before their callback is answered

Revision ID: 0002
Revises: 0001
"""

import sqlalchemy as sa
from alembic import op

import collabbot.storage.models

revision = '0002'
down_revision = '0001'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('inbound_queue',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('platform', sa.String(length=20), nullable=False),
    sa.Column('kind', sa.String(length=40), nullable=False),
    sa.Column('payload', sa.JSON(), nullable=False),
    sa.Column('attempts', sa.Integer(), nullable=False),
    sa.Column('not_before', collabbot.storage.models.UtcDateTime(), nullable=False),
    sa.Column('claimed_until', collabbot.storage.models.UtcDateTime(), nullable=True),
    sa.Column('last_error', sa.Text(), nullable=False),
    sa.Column('created_at', collabbot.storage.models.UtcDateTime(), nullable=False),
    sa.PrimaryKeyConstraint('id')
    )
    with op.batch_alter_table('inbound_queue', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_inbound_queue_claimed_until'), ['claimed_until'], unique=False)


def downgrade() -> None:
    with op.batch_alter_table('inbound_queue', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_inbound_queue_claimed_until'))
    op.drop_table('inbound_queue')
