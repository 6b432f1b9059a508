"""delivery: installation id, outbox claim tokens, shared rate-limit slots, claim and retention indexes

Revision ID: 0003
Revises: 0002
"""

import sqlalchemy as sa
from alembic import op

import collabbot.storage.models

revision = '0003'
down_revision = '0002'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('installation',
    sa.Column('key', sa.String(length=40), nullable=False),
    sa.Column('value', sa.String(length=200), nullable=False),
    sa.PrimaryKeyConstraint('key')
    )
    op.create_table('rate_slots',
    sa.Column('key', sa.String(length=200), nullable=False),
    sa.Column('next_at', collabbot.storage.models.UtcDateTime(), nullable=False),
    sa.PrimaryKeyConstraint('key')
    )
    with op.batch_alter_table('outbox', schema=None) as batch_op:
        batch_op.drop_index('ix_outbox_pending', postgresql_where=sa.text("status = 'pending'"),
                            sqlite_where=sa.text("status = 'pending'"))
        batch_op.create_index('ix_outbox_pending', ['not_before', 'id'], unique=False,
                              postgresql_where=sa.text("status = 'pending'"), sqlite_where=sa.text("status = 'pending'"))
        batch_op.add_column(sa.Column('claim_token', sa.String(length=32), nullable=True))
        batch_op.create_index('ix_outbox_sent', ['sent_at'], unique=False,
                              postgresql_where=sa.text("status = 'sent'"), sqlite_where=sa.text("status = 'sent'"))


def downgrade() -> None:
    with op.batch_alter_table('outbox', schema=None) as batch_op:
        batch_op.drop_index('ix_outbox_sent', postgresql_where=sa.text("status = 'sent'"),
                            sqlite_where=sa.text("status = 'sent'"))
        batch_op.drop_column('claim_token')
        batch_op.drop_index('ix_outbox_pending', postgresql_where=sa.text("status = 'pending'"),
                            sqlite_where=sa.text("status = 'pending'"))
        batch_op.create_index('ix_outbox_pending', ['not_before'], unique=False,
                              postgresql_where=sa.text("status = 'pending'"), sqlite_where=sa.text("status = 'pending'"))
    op.drop_table('rate_slots')
    op.drop_table('installation')
