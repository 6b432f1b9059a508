"""identities.left_at and users.left_at: people who left the company

Revision ID: 0014
Revises: 0013

A complete org sync of a platform marks the identities it no longer lists (identities.left_at); a user
whose every identity is marked has left (users.left_at), and the bot stops chasing them and giving them
work. Rows from before are all present: only a later sync can tell who has gone.
"""

import sqlalchemy as sa
from alembic import op

import collabbot.storage.models

revision = '0014'
down_revision = '0013'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column('identities', sa.Column('left_at', collabbot.storage.models.UtcDateTime(), nullable=True))
    op.add_column('users', sa.Column('left_at', collabbot.storage.models.UtcDateTime(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table('users', schema=None) as batch_op:
        batch_op.drop_column('left_at')
    with op.batch_alter_table('identities', schema=None) as batch_op:
        batch_op.drop_column('left_at')
