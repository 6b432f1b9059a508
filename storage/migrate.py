"""Alembic migrations, run from code (`collabbot db upgrade`), with no alembic.ini to find.

The migration scripts live in `storage/migrations/versions`; the test suite checks that they
produce exactly the tables the models declare.
"""

from __future__ import annotations

from pathlib import Path

from alembic import command
from alembic.config import Config
from sqlalchemy import Engine, text

MIGRATIONS = Path(__file__).with_name("migrations")
MIGRATION_LOCK = 0x636F6C6C61622D6D  # the advisory lock key every instance's upgrade takes ("collab-m")


def alembic_config(engine: Engine) -> Config:
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    config.attributes["engine"] = engine
    return config


def upgrade(engine: Engine, revision: str = "head") -> None:
    """Bring the schema up to `revision` (the newest by default).

    Instances started together each upgrade at start-up; on PostgreSQL they take turns on an advisory
    lock held until the migration's transaction ends, so the later ones find the schema done and do
    nothing (instead of failing on a table the first one is creating). SQLite serialises writers anyway.
    """
    config = alembic_config(engine)
    with engine.connect() as connection:
        if connection.dialect.name == "postgresql":
            connection.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": MIGRATION_LOCK})
        config.attributes["connection"] = connection
        command.upgrade(config, revision)
        connection.commit()


def current_revision(engine: Engine) -> str | None:
    from alembic.runtime.migration import MigrationContext

    with engine.connect() as connection:
        return MigrationContext.configure(connection).get_current_revision()
