"""records: collection requests (collections, collection_targets), the sign-off's scope (projects.scope),
milestones marked done (milestones.done_at, done_by_id)

Revision ID: 0009
Revises: 0008
"""

import sqlalchemy as sa
from alembic import op

import collabbot.storage.models

revision = '0009'
down_revision = '0008'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('collections',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('project_id', sa.Integer(), nullable=True),
    sa.Column('chat_id', sa.Integer(), nullable=True),
    sa.Column('title', sa.String(length=200), nullable=False),
    sa.Column('requester_id', sa.Integer(), nullable=False),
    sa.Column('deadline', collabbot.storage.models.UtcDateTime(), nullable=False),
    sa.Column('status', sa.String(length=10), nullable=False),
    sa.Column('created_at', collabbot.storage.models.UtcDateTime(), nullable=False),
    sa.Column('updated_at', collabbot.storage.models.UtcDateTime(), nullable=False),
    sa.Column('closed_at', collabbot.storage.models.UtcDateTime(), nullable=True),
    sa.Column('version', sa.Integer(), nullable=False),
    sa.ForeignKeyConstraint(['chat_id'], ['chats.id'], ),
    sa.ForeignKeyConstraint(['project_id'], ['projects.id'], ),
    sa.ForeignKeyConstraint(['requester_id'], ['users.id'], ),
    sa.PrimaryKeyConstraint('id')
    )
    with op.batch_alter_table('collections', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_collections_project_id'), ['project_id'], unique=False)
    op.create_table('collection_targets',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('collection_id', sa.Integer(), nullable=False),
    sa.Column('user_id', sa.Integer(), nullable=False),
    sa.Column('department_id', sa.Integer(), nullable=True),
    sa.Column('submitted_at', collabbot.storage.models.UtcDateTime(), nullable=True),
    sa.Column('submitted_by_id', sa.Integer(), nullable=True),
    sa.Column('content', sa.Text(), nullable=False),
    sa.Column('links', sa.JSON(), nullable=False),
    sa.ForeignKeyConstraint(['collection_id'], ['collections.id'], ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['department_id'], ['departments.id'], ),
    sa.ForeignKeyConstraint(['submitted_by_id'], ['users.id'], ),
    sa.ForeignKeyConstraint(['user_id'], ['users.id'], ),
    sa.PrimaryKeyConstraint('id'),
    sa.UniqueConstraint('collection_id', 'user_id')
    )
    with op.batch_alter_table('collection_targets', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_collection_targets_user_id'), ['user_id'], unique=False)
    # existing projects get an empty scope; the server default is dropped again (the models set it)
    with op.batch_alter_table('projects', schema=None) as batch_op:
        batch_op.add_column(sa.Column('scope', sa.Text(), server_default='', nullable=False))
    with op.batch_alter_table('projects', schema=None) as batch_op:
        batch_op.alter_column('scope', server_default=None)
    with op.batch_alter_table('milestones', schema=None) as batch_op:
        batch_op.add_column(sa.Column('done_at', collabbot.storage.models.UtcDateTime(), nullable=True))
        batch_op.add_column(sa.Column('done_by_id', sa.Integer(), nullable=True))
        batch_op.create_foreign_key('fk_milestones_done_by', 'users', ['done_by_id'], ['id'])


def downgrade() -> None:
    with op.batch_alter_table('milestones', schema=None) as batch_op:
        batch_op.drop_constraint('fk_milestones_done_by', type_='foreignkey')
        batch_op.drop_column('done_by_id')
        batch_op.drop_column('done_at')
    with op.batch_alter_table('projects', schema=None) as batch_op:
        batch_op.drop_column('scope')
    with op.batch_alter_table('collection_targets', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_collection_targets_user_id'))
    op.drop_table('collection_targets')
    with op.batch_alter_table('collections', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_collections_project_id'))
    op.drop_table('collections')
