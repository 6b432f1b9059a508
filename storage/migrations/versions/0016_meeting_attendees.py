"""meetings.attendees: who attended (参会), as the minutes name them

Revision ID: 0016
Revises: 0015

Minutes that named who attended lost that line, and the summary and decisions after it, because the
parser had no field for it. Rows from before have none.
"""

import sqlalchemy as sa
from alembic import op

revision = '0016'
down_revision = '0015'
branch_labels = None
depends_on = None


def upgrade() -> None:
    # existing minutes get none; the server default is dropped again (the models set it)
    with op.batch_alter_table('meetings', schema=None) as batch_op:
        batch_op.add_column(sa.Column('attendees', sa.Text(), server_default='', nullable=False))
    with op.batch_alter_table('meetings', schema=None) as batch_op:
        batch_op.alter_column('attendees', server_default=None)


def downgrade() -> None:
    with op.batch_alter_table('meetings', schema=None) as batch_op:
        batch_op.drop_column('attendees')
