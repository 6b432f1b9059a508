"""departments.platform_id: the platform's own id of a synced department

Revision ID: 0015
Revises: 0014

An org sync matched departments by name, so a department renamed on the platform became a second row
and the old one kept its head for good. A sync now records "platform:department id" and finds the row
by it. Rows from before have none; the next sync fills it in for every department it still finds by name.
"""

import sqlalchemy as sa
from alembic import op

revision = '0015'
down_revision = '0014'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('departments', schema=None) as batch_op:
        batch_op.add_column(sa.Column('platform_id', sa.String(length=200), nullable=True))
        batch_op.create_unique_constraint('uq_departments_platform_id', ['platform_id'])


def downgrade() -> None:
    with op.batch_alter_table('departments', schema=None) as batch_op:
        batch_op.drop_constraint('uq_departments_platform_id', type_='unique')
        batch_op.drop_column('platform_id')
