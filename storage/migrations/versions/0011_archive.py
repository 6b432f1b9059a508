"""archive: 结项 (project_archives with the retrospective), the archive's records and their full-text index

Revision ID: 0011
Revises: 0010

The full-text index is not a model: SQLite's is an FTS5 virtual table (with its shadow tables) kept in
step with `archive_records` by triggers, PostgreSQL's a generated column `archive_fts_tsv` =
`to_tsvector('simple', tokens)` with a GIN index. Neither back-end has the other's, and SQLAlchemy's
metadata cannot declare a virtual table, so the models-vs-migrations test leaves these names out (every
name starting with ARCHIVE_FTS_NAMES below). The tokens are written already
cut into words (jieba), so both use a plain tokenizer: FTS5's unicode61 and PostgreSQL's 'simple'.
A later `batch_alter_table` on `archive_records` under SQLite recreates the table and drops its triggers:
such a migration must create them again (`_sqlite_fts`).
"""

import sqlalchemy as sa
from alembic import op

import collabbot.storage.models

revision = '0011'
down_revision = '0010'
branch_labels = None
depends_on = None

ARCHIVE_FTS_NAMES = ("archive_fts", "ix_archive_records_fts")  # archive_fts, archive_fts_*, archive_fts_tsv


def _sqlite_fts() -> None:
    op.execute("CREATE VIRTUAL TABLE archive_fts USING fts5(tokens, content='archive_records', content_rowid='id', "
               "tokenize='unicode61')")
    op.execute("CREATE TRIGGER archive_records_ai AFTER INSERT ON archive_records BEGIN "
               "INSERT INTO archive_fts(rowid, tokens) VALUES (new.id, new.tokens); END")
    op.execute("CREATE TRIGGER archive_records_ad AFTER DELETE ON archive_records BEGIN "
               "INSERT INTO archive_fts(archive_fts, rowid, tokens) VALUES ('delete', old.id, old.tokens); END")
    op.execute("CREATE TRIGGER archive_records_au AFTER UPDATE OF tokens ON archive_records BEGIN "
               "INSERT INTO archive_fts(archive_fts, rowid, tokens) VALUES ('delete', old.id, old.tokens); "
               "INSERT INTO archive_fts(rowid, tokens) VALUES (new.id, new.tokens); END")


def upgrade() -> None:
    op.create_table('project_archives',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('project_id', sa.Integer(), nullable=False),
    sa.Column('closed_by_id', sa.Integer(), nullable=False),
    sa.Column('closed_at', collabbot.storage.models.UtcDateTime(), nullable=False),
    sa.Column('figures', sa.JSON(), nullable=False),
    sa.Column('went_well', sa.Text(), nullable=False),
    sa.Column('fell_short', sa.Text(), nullable=False),
    sa.Column('improve', sa.Text(), nullable=False),
    sa.Column('retro_by_id', sa.Integer(), nullable=True),
    sa.Column('retro_at', collabbot.storage.models.UtcDateTime(), nullable=True),
    sa.ForeignKeyConstraint(['closed_by_id'], ['users.id'], ),
    sa.ForeignKeyConstraint(['project_id'], ['projects.id'], ),
    sa.ForeignKeyConstraint(['retro_by_id'], ['users.id'], ),
    sa.PrimaryKeyConstraint('id'),
    sa.UniqueConstraint('project_id')
    )
    op.create_table('archive_records',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('project_id', sa.Integer(), nullable=False),
    sa.Column('kind', sa.String(length=20), nullable=False),
    sa.Column('entity_id', sa.Integer(), nullable=False),
    sa.Column('title', sa.String(length=200), nullable=False),
    sa.Column('body', sa.Text(), nullable=False),
    sa.Column('happened_at', collabbot.storage.models.UtcDateTime(), nullable=False),
    sa.Column('archived_at', collabbot.storage.models.UtcDateTime(), nullable=False),
    sa.Column('tokens', sa.Text(), nullable=False),
    sa.ForeignKeyConstraint(['project_id'], ['projects.id'], ),
    sa.PrimaryKeyConstraint('id'),
    sa.UniqueConstraint('kind', 'entity_id')
    )
    with op.batch_alter_table('archive_records', schema=None) as batch_op:
        batch_op.create_index('ix_archive_records_kind_at', ['kind', 'happened_at'], unique=False)
        batch_op.create_index(batch_op.f('ix_archive_records_happened_at'), ['happened_at'], unique=False)
        batch_op.create_index(batch_op.f('ix_archive_records_project_id'), ['project_id'], unique=False)
    op.create_table('archive_departments',
    sa.Column('record_id', sa.Integer(), nullable=False),
    sa.Column('department_id', sa.Integer(), nullable=False),
    sa.ForeignKeyConstraint(['department_id'], ['departments.id'], ),
    sa.ForeignKeyConstraint(['record_id'], ['archive_records.id'], ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('record_id', 'department_id')
    )
    with op.batch_alter_table('archive_departments', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_archive_departments_department_id'), ['department_id'], unique=False)
    if op.get_bind().dialect.name == "sqlite":
        _sqlite_fts()
    else:
        # stored, not only indexed: a plan that reads rows by another index (type, time) then compares a kept
        # vector instead of cutting every row's text again
        op.execute("ALTER TABLE archive_records ADD COLUMN archive_fts_tsv tsvector "
                   "GENERATED ALWAYS AS (to_tsvector('simple', tokens)) STORED")
        op.execute("CREATE INDEX ix_archive_records_fts ON archive_records USING gin (archive_fts_tsv)")


def downgrade() -> None:
    if op.get_bind().dialect.name == "sqlite":
        for trigger in ("archive_records_ai", "archive_records_ad", "archive_records_au"):
            op.execute(f"DROP TRIGGER IF EXISTS {trigger}")
        op.execute("DROP TABLE IF EXISTS archive_fts")
    else:
        op.execute("DROP INDEX IF EXISTS ix_archive_records_fts")
        op.execute("ALTER TABLE archive_records DROP COLUMN IF EXISTS archive_fts_tsv")
    with op.batch_alter_table('archive_departments', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_archive_departments_department_id'))
    op.drop_table('archive_departments')
    with op.batch_alter_table('archive_records', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_archive_records_project_id'))
        batch_op.drop_index(batch_op.f('ix_archive_records_happened_at'))
        batch_op.drop_index('ix_archive_records_kind_at')
    op.drop_table('archive_records')
    op.drop_table('project_archives')
