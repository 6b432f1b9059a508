"""wecom: the latest one-time card update code per sent copy (card_update_codes)

Revision ID: 0007
Revises: 0006
"""

import sqlalchemy as sa
from alembic import op

import collabbot.storage.models

revision = '0007'
down_revision = '0006'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('card_update_codes',
    sa.Column('platform', sa.String(length=20), nullable=False),
    sa.Column('message_id', sa.String(length=200), nullable=False),
    sa.Column('card_id', sa.String(length=128), nullable=False),
    sa.Column('code', sa.Text(), nullable=False),
    sa.Column('expires_at', collabbot.storage.models.UtcDateTime(), nullable=False),
    sa.Column('used', sa.Boolean(), nullable=False),
    sa.PrimaryKeyConstraint('platform', 'message_id')
    )
    with op.batch_alter_table('card_update_codes', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_card_update_codes_expires_at'), ['expires_at'], unique=False)


def downgrade() -> None:
    with op.batch_alter_table('card_update_codes', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_card_update_codes_expires_at'))
    op.drop_table('card_update_codes')
