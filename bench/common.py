"""Shared by the bench scripts: a PostgreSQL to run on (a throwaway server, or $COLLABBOT_BENCH_PG_URL),
fresh databases, bulk-queued outbox rows and Markdown tables."""

from __future__ import annotations

import os
import sys
import tempfile
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from collabbot.storage.db import Database  # noqa: E402
from collabbot.storage.migrate import upgrade  # noqa: E402
from collabbot.storage.models import OutboxMessage  # noqa: E402
from tests.pgserver import make_database, start_postgres  # noqa: E402


@contextmanager
def postgres() -> Iterator[str]:
    """The URL of a PostgreSQL server for the run (started here unless $COLLABBOT_BENCH_PG_URL is set)."""
    url = os.environ.get("COLLABBOT_BENCH_PG_URL")
    if url:
        yield url
        return
    server = start_postgres(Path(tempfile.mkdtemp(prefix="bench-pg-")))
    try:
        yield server.url
    finally:
        server.stop()


def fresh(server_url: str, name: str) -> tuple[str, Database]:
    url = make_database(server_url, name, replace=True)
    db = Database(url)
    upgrade(db.engine)
    return url, db


def queue_rows(db: Database, n: int, platform: str, chats: int = 50, prefix: str = "b") -> None:
    now = datetime.now(UTC)
    rows = [dict(dedupe_key=f"{prefix}:{i}", platform=platform, target_kind="chat", target_id=f"c{i % chats}",
                 target_name="c", payload={"parts": [f"m{i}"], "card": None}, status="pending", attempts=0,
                 not_before=now, created_at=now, last_error="") for i in range(n)]
    with db.transaction() as s:
        for start in range(0, n, 5000):
            s.execute(OutboxMessage.__table__.insert(), rows[start:start + 5000])
    if db.is_postgres:  # fresh statistics, as autovacuum would have them on a live table
        with db.engine.connect() as conn:
            conn.exec_driver_sql("ANALYZE outbox")


def table(headers: Sequence[str], rows: Sequence[Sequence[object]]) -> str:
    def cell(v: object) -> str:
        return f"{v:.2f}" if isinstance(v, float) else str(v)

    lines = ["| " + " | ".join(headers) + " |", "|" + "|".join("---" for _ in headers) + "|"]
    lines += ["| " + " | ".join(cell(v) for v in row) + " |" for row in rows]
    return "\n".join(lines)
