"""Alembic migrations, run from code (`collabbot db upgrade`), with no alembic.ini to find.

The migration scripts live in `storage/migrations/versions`; the test suite checks that they
produce exactly the tables the models declare.
"""

from __future__ import annotations

from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.util import CommandError
from sqlalchemy import Engine, make_url, text
from sqlalchemy.exc import ArgumentError, DBAPIError

from collabbot.storage.db import error_line

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


class DatabaseUnavailable(Exception):
    """The database URL is well formed but nothing usable answers there: one line for the admin."""


def shown_url(url: str) -> str:
    """A database URL as it may be printed: no password (neither the URL's nor a `?password=`)."""
    try:
        parsed = make_url(url)
    except (ArgumentError, ValueError):
        return "(unparsable URL)"
    hidden = {k: "***" for k in parsed.query if "password" in k.lower() or k.lower() in ("sslpassword", "passfile")}
    return parsed.update_query_dict(hidden).render_as_string(hide_password=True)


def upgrade_or_explain(engine: Engine) -> None:
    """`upgrade`, with whatever the database answers (unreachable, not a database, no right to create
    tables, a schema newer than this release) as one `DatabaseUnavailable` line instead of a traceback."""
    shown = shown_url(engine.url.render_as_string(hide_password=False))
    try:
        upgrade(engine)
    except CommandError as exc:  # a revision this release does not know: the database is newer than the code
        raise DatabaseUnavailable(f"{shown} was migrated by a newer CollabBot ({exc}); run that release, or "
                                  "restore a backup taken before the upgrade") from None
    except DBAPIError as exc:
        reason = error_line(exc)
        if "permission denied for schema" in reason:
            reason += " (on PostgreSQL 15 and later, make the bot's role the database's owner)"
        raise DatabaseUnavailable(f"cannot open {shown}: {reason}") from None
