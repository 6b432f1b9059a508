"""workflow

Revision ID: 0005
Revises: 0004
"""

import sqlalchemy as sa
from alembic import op

import collabbot.storage.models

revision = '0005'
down_revision = '0004'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('tasks', schema=None) as batch_op:
        batch_op.add_column(sa.Column('original_deadline', collabbot.storage.models.UtcDateTime(), nullable=True))
        batch_op.add_column(sa.Column('extensions', sa.Integer(), server_default='0', nullable=False))
    # tasks made before: the deadline they have now is the best record of the original one
    op.execute("UPDATE tasks SET original_deadline = deadline WHERE original_deadline IS NULL")
    with op.batch_alter_table('audit_log', schema=None) as batch_op:
        batch_op.create_index('ix_audit_entity', ['entity_type', 'entity_id'], unique=False)
        batch_op.create_index('ix_audit_actor_at', ['actor_id', 'at'], unique=False)


def downgrade() -> None:
    with op.batch_alter_table('audit_log', schema=None) as batch_op:
        batch_op.drop_index('ix_audit_actor_at')
        batch_op.drop_index('ix_audit_entity')
    with op.batch_alter_table('tasks', schema=None) as batch_op:
        batch_op.drop_column('extensions')
        batch_op.drop_column('original_deadline')
