"""tasks: started_at (first put in progress) and submitted_at (handed in for review; cleared when returned)

Revision ID: 0013
Revises: 0012

The reports need them: progress discipline counts the tasks in progress on a day (the daily prompt asks
only those), and a task handed in by its deadline is not overdue while its reviewer decides. Rows from
before: a task in progress, in review or done is taken as started when it was acknowledged, and one in
review as handed in at its last change.
"""

import sqlalchemy as sa
from alembic import op

import collabbot.storage.models

revision = '0013'
down_revision = '0012'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column('tasks', sa.Column('started_at', collabbot.storage.models.UtcDateTime(), nullable=True))
    op.add_column('tasks', sa.Column('submitted_at', collabbot.storage.models.UtcDateTime(), nullable=True))
    op.execute("UPDATE tasks SET started_at = acknowledged_at WHERE status IN ('in_progress', 'review', 'done')")
    op.execute("UPDATE tasks SET submitted_at = updated_at WHERE status = 'review'")


def downgrade() -> None:
    with op.batch_alter_table('tasks', schema=None) as batch_op:
        batch_op.drop_column('submitted_at')
        batch_op.drop_column('started_at')
