"""`collabbot db copy`: a SQLite deployment carried over to PostgreSQL, every row and reference intact,
ids continuing after the copied ones, and an occupied target refused."""

from __future__ import annotations

import uuid
from pathlib import Path

import pytest
from sqlalchemy import create_engine, func, select, text

from collabbot.storage.db import Database
from collabbot.storage.models import Base, Task

from .test_cli import cli, one_line_refusal

DEMO = Path(__file__).resolve().parents[1] / "examples" / "demo.txt"

pytestmark = pytest.mark.slow


@pytest.fixture
def empty_pg(pg_url: str) -> str:
    """A new, empty database on the test server."""
    name = f"copy_{uuid.uuid4().hex[:10]}"
    admin = create_engine(pg_url, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    admin.dispose()
    return pg_url.rsplit("/", 1)[0] + f"/{name}"


def _rows(db: Database) -> dict[str, list[tuple]]:
    with db.engine.connect() as conn:
        return {t.name: sorted((tuple(str(v) for v in row) for row in conn.execute(select(t))), key=repr)
                for t in Base.metadata.sorted_tables}


def test_a_sqlite_deployment_is_copied_to_postgresql_whole(tmp_path: Path, empty_pg: str) -> None:
    source_url = f"sqlite:///{tmp_path / 'bot.db'}"
    made = cli("console", "--db", source_url, "--script", str(DEMO))
    assert made.returncode == 0, made.stderr
    done = cli("db", "copy", "--db", source_url, "--to", empty_pg)
    assert done.returncode == 0, done.stderr
    assert "copied " in done.stdout and "point database.url there" in done.stdout
    source, target = Database(source_url), Database(empty_pg)
    try:
        before, after = _rows(source), _rows(target)
        assert sum(len(v) for v in before.values()) > 150 and before["approval_votes"] and before["users"]
        assert {k: len(v) for k, v in after.items()} == {k: len(v) for k, v in before.items()}
        for name in ("users", "departments", "tasks", "approval_requests", "approval_votes", "outbox", "installation"):
            assert after[name] == before[name], name  # references filled in: supervisors, heads, parents
        with target.transaction() as s:
            top = s.scalar(select(func.max(Task.id)))
        # new rows continue after the copied ids
        more = tmp_path / "more.txt"
        more.write_text("in 新品上市群 as 张三: @bot 新建任务 搬家后的第一个任务 负责人 @李四 截止 2027-01-20\n",
                        encoding="utf-8")
        ran = cli("console", "--db", empty_pg, "--script", str(more))
        assert ran.returncode == 0 and f"#{top + 1}" in ran.stdout, ran.stdout + ran.stderr
        # a second copy into the now occupied database is refused and changes nothing
        line = one_line_refusal(cli("db", "copy", "--db", source_url, "--to", empty_pg))
        assert line.startswith("config error: --to: the target already holds rows in "), line
        with target.transaction() as s:
            assert s.scalar(select(func.max(Task.id))) == top + 1
    finally:
        source.dispose()
        target.dispose()
