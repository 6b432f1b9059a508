"""Shared fixtures: a real SQLite file and a real PostgreSQL server, and the console as a harness.

Storage and engine tests take the `db` fixture, which runs each test on both back-ends. PostgreSQL is
started once per test run by `tests/pgserver.py` (or taken from $COLLABBOT_TEST_PG_URL); each test
gets empty tables. Time is a `ManualClock` reading UTC like the system clock (`HarnessClock`): no test
sleeps for a rule.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
from sqlalchemy import text

from collabbot.adapters.console.app import Console
from collabbot.adapters.console.transcript import parse_line
from collabbot.bot.app import Bot
from collabbot.bot.clock import ManualClock
from collabbot.bot.config import Config
from collabbot.bot.org import apply_org, load_org_file
from collabbot.storage.db import Database
from collabbot.storage.migrate import upgrade
from collabbot.storage.models import Base

from .pgserver import start_postgres

ROOT = Path(__file__).resolve().parents[1]
EXAMPLES = ROOT / "examples"
TZ = ZoneInfo("Asia/Shanghai")


@pytest.fixture(scope="session")
def pg_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    url = os.environ.get("COLLABBOT_TEST_PG_URL")
    if url:
        yield url
        return
    server = start_postgres(tmp_path_factory.mktemp("pg"))
    try:
        yield server.url
    finally:
        server.stop()


@pytest.fixture(scope="session")
def pg_database(pg_url: str) -> Iterator[Database]:
    db = Database(pg_url)
    with db.engine.begin() as conn:
        conn.execute(text("DROP SCHEMA public CASCADE"))
        conn.execute(text("CREATE SCHEMA public"))
    upgrade(db.engine)
    yield db
    db.dispose()


@pytest.fixture(scope="session")
def sqlite_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("sqlite") / "template.db"
    db = Database(f"sqlite:///{path}")
    upgrade(db.engine)
    db.dispose()
    return path


def truncate_all(db: Database) -> None:
    tables = ", ".join(t.name for t in Base.metadata.sorted_tables)
    with db.engine.begin() as conn:
        conn.execute(text(f"TRUNCATE {tables} RESTART IDENTITY CASCADE"))


@pytest.fixture(params=["sqlite", "postgresql"])
def db(request: pytest.FixtureRequest, tmp_path: Path, sqlite_template: Path) -> Iterator[Database]:
    if request.param == "sqlite":
        path = tmp_path / "test.db"
        shutil.copy(sqlite_template, path)
        database = Database(f"sqlite:///{path}")
        yield database
        database.dispose()
    else:
        database = request.getfixturevalue("pg_database")
        truncate_all(database)
        yield database


@pytest.fixture
def sqlite_db(tmp_path: Path, sqlite_template: Path) -> Iterator[Database]:
    path = tmp_path / "test.db"
    shutil.copy(sqlite_template, path)
    database = Database(f"sqlite:///{path}")
    yield database
    database.dispose()


class HarnessClock(ManualClock):
    """The suite's manual clock reads UTC, as `SystemClock` does in production: code that takes the
    date or hour of `now()` for the local one is wrong there and must be wrong here too. Times may be
    set in any zone (tests and transcripts say them in the calendar's, as people read them); the
    calendar's zone still decides working hours."""

    def now(self) -> datetime:
        return super().now().astimezone(UTC)


class Harness:
    """The console platform driven line by line, with the outputs collected for assertions."""

    def __init__(self, db: Database, config: Config | None = None, start: datetime | None = None) -> None:
        self.config = config or Config()
        self.clock = HarnessClock(start or datetime(2026, 12, 1, 9, 0, tzinfo=TZ))
        self.bot = Bot(db, self.config, self.clock)
        self.org = load_org_file(EXAMPLES / "demo-org.toml")
        with db.transaction() as s:
            apply_org(s, self.org, self.clock.now())
        self.console = Console(self.bot, self.clock, self.org)
        self.db = db

    def run(self, *lines: str) -> list[str]:
        """Run transcript lines; everything the bot printed for them."""
        for line in lines:
            step = parse_line(line)
            if step is not None:
                self.console.run(step)
        return self.console.take_output()

    def text(self, *lines: str) -> str:
        return "\n".join(self.run(*lines))

    def script(self, path: Path) -> list[str]:
        """What `collabbot console --echo --script PATH` prints, produced in-process."""
        out: list[str] = []
        for line in path.read_text(encoding="utf-8").splitlines():
            if line.strip() and not line.lstrip().startswith("#"):
                out.append(f"» {line}")
            for printed in self.run(line):
                out += printed.split("\n")
        return out


@pytest.fixture
def harness(db: Database) -> Harness:
    return Harness(db)


@pytest.fixture
def make_harness(db: Database):
    def make(config: Config | None = None, start: datetime | None = None, **overrides: object) -> Harness:
        cfg = config or Config()
        if overrides:
            cfg = replace(cfg, **overrides)
        return Harness(db, cfg, start)

    return make
