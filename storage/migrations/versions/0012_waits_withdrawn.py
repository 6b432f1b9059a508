"""waits: withdrawn — closed because nobody needs the answer any more (the task cancelled or reassigned,
another approver decided), not because the person answered; the reports' response times leave them out

Revision ID: 0012
Revises: 0011
"""

import sqlalchemy as sa
from alembic import op

revision = '0012'
down_revision = '0011'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column('waits', sa.Column('withdrawn', sa.Boolean(), server_default=sa.false(), nullable=False))


def downgrade() -> None:
    with op.batch_alter_table('waits', schema=None) as batch_op:
        batch_op.drop_column('withdrawn')
