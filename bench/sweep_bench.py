"""How long one sweep takes, from query to outbox rows written, as the number of open tasks grows.

    python bench/sweep_bench.py                       # SQLite and a throwaway PostgreSQL
    python bench/sweep_bench.py --sizes 10000,100000 --backends sqlite
    python bench/sweep_bench.py --pg-url postgresql+psycopg://user@host/db

For each size N it builds N open tasks (each with an answered or a not-yet-due wait) of which
`--due` have an assignment wait due now, runs one sweep, and prints the sweep's time, the outbox rows
it wrote, and the process's peak memory. Target (scheduler issue): under 0.5 s with 100,000 open
tasks and 1,000 due, growing with the number due rather than with N, and under 200 MB peak.
"""

from __future__ import annotations

import argparse
import resource
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from sqlalchemy import func, insert, select, text  # noqa: E402

from collabbot.bot.app import Bot  # noqa: E402
from collabbot.bot.clock import ManualClock  # noqa: E402
from collabbot.bot.config import Config  # noqa: E402
from collabbot.storage.db import Database  # noqa: E402
from collabbot.storage.migrate import upgrade  # noqa: E402
from collabbot.storage.models import Chat, Identity, OutboxMessage, Project, Task, User, Wait  # noqa: E402

NOW = datetime(2026, 12, 2, 1, 30, tzinfo=UTC)  # Wednesday 09:30 in Shanghai: working time, before the 10:00 prompt
CHUNK = 20_000


def populate(db: Database, n: int, due: int) -> None:
    created = NOW - timedelta(days=1)
    with db.transaction() as s:
        users = []
        for i in range(200):
            user = User(name=f"u{i}", created_at=created)
            s.add(user)
            users.append(user)
        s.flush()
        for user in users:
            s.add(Identity(platform="console", platform_user_id=user.name, user_id=user.id))
        project = Project(name="bench", created_at=created, coordinator_id=users[0].id)
        s.add(project)
        s.flush()
        chat = Chat(platform="console", platform_chat_id="bench", name="bench", project_id=project.id, active=True)
        s.add(chat)
        s.flush()
        user_ids, chat_id, project_id = [u.id for u in users], chat.id, project.id
    far = NOW + timedelta(days=30)
    for start in range(0, n, CHUNK):
        stop = min(n, start + CHUNK)
        with db.transaction() as s:
            s.execute(insert(Task), [dict(
                id=i + 1, project_id=project_id, chat_id=chat_id, title=f"task {i}", initiator_id=user_ids[0],
                owner_id=user_ids[i % len(user_ids)], status="in_progress", priority="mid", deadline=far,
                deliverable_expected="", deliverable="", attachments=[], remarks="", percent=10,
                last_progress_at=NOW, created_at=created, updated_at=created, version=1,
            ) for i in range(start, stop)])
            s.execute(insert(Wait), [dict(
                kind="assign", entity_type="task", entity_id=i + 1, person_id=user_ids[i % len(user_ids)],
                chat_id=chat_id, raised_at=created, nags_sent=0,
                # the first `due` are due now; the rest are answered or due next week
                next_due_at=(NOW - timedelta(minutes=1)) if i < due else (None if i % 2 else far),
                answered_at=None if i < due or i % 2 == 0 else created,
            ) for i in range(start, stop)])
    if db.is_postgres:
        with db.engine.begin() as conn:
            conn.execute(text("SELECT setval('tasks_id_seq', (SELECT max(id) FROM tasks))"))
            conn.execute(text("ANALYZE"))


def peak_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def one(url: str, n: int, due: int) -> tuple[float, int]:
    db = Database(url)
    upgrade(db.engine)
    populate(db, n, due)
    bot = Bot(db, Config(), ManualClock(NOW))
    started = time.perf_counter()
    acted = bot.sweep(NOW)
    elapsed = time.perf_counter() - started
    with db.transaction() as s:
        rows = s.scalar(select(func.count()).select_from(OutboxMessage))
    assert acted == due, (acted, due)
    db.dispose()
    return elapsed, rows or 0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", default="10000,100000,1000000")
    parser.add_argument("--due", type=int, default=1000)
    parser.add_argument("--backends", default="sqlite,postgresql")
    parser.add_argument("--pg-url", default="")
    args = parser.parse_args()
    sizes = [int(x) for x in args.sizes.split(",")]
    server = None
    print(f"{'backend':<11} {'open tasks':>11} {'due':>6} {'sweep s':>8} {'outbox rows':>12} {'peak MB':>8}")
    for backend in args.backends.split(","):
        for n in sizes:
            if backend == "sqlite":
                url = f"sqlite:///{tempfile.mkdtemp(prefix='bench-')}/bench.db"
            else:
                if not args.pg_url and server is None:
                    from tests.pgserver import start_postgres

                    server = start_postgres(Path(tempfile.mkdtemp(prefix="bench-pg-")))
                from tests.pgserver import make_database

                url = make_database(args.pg_url or server, f"bench_{n}", replace=True)  # type: ignore[arg-type]
            elapsed, rows = one(url, n, args.due)
            print(f"{backend:<11} {n:>11,} {args.due:>6,} {elapsed:>8.3f} {rows:>12,} {peak_mb():>8.0f}", flush=True)
    if server is not None:
        server.stop()


if __name__ == "__main__":
    main()
