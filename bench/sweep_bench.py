"""How long the time-driven rules take on a realistic mix, from query to outbox rows written.

    python bench/sweep_bench.py                       # SQLite and a throwaway PostgreSQL
    python bench/sweep_bench.py --sizes 10000,100000 --backends sqlite
    python bench/sweep_bench.py --pg-url postgresql+psycopg://user@host/db

For each size N it builds an organisation (10 departments with heads and supervisors, 200 people),
`--groups` projects each with its group, and N open tasks spread over them, then `--due` waits due
now, mixed as in a working day: assignment acknowledgements, approval steps, help requests, overdue
reasons (each nagged) and escalations to a department head, plus tasks whose deadline just passed
(overdue warnings). Every other open task has an answered wait or one due next week.

It times, each in its own transaction as the runner does:

* `sweep`   — the every-minute sweep (waits and overdue warnings), which must act on exactly `--due`
  items (plus the new overdue warnings) and stay under 0.5 s with 100,000 open tasks and 1,000 due, on
  both databases; measured in the steady state, after one earlier sweep with nothing due;
* `prompt`  — the 10:00 daily progress prompt, for every group (a tenth of the tasks are stale);
* `summary` — Friday's weekly summary, for every project;
* `next_due`— what the console asks after each step;

and prints one table row per (backend, size, job): wall seconds, this process's CPU seconds (the
figure to read on a busy machine; PostgreSQL's own work is in the wall time only), items acted on,
outbox rows written, SQL statements issued, and the process's peak memory.
"""

from __future__ import annotations

import argparse
import resource
import sys
import tempfile
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from sqlalchemy import event, func, insert, select, text  # noqa: E402

from collabbot.bot import sweep  # noqa: E402
from collabbot.bot.app import Bot  # noqa: E402
from collabbot.bot.clock import ManualClock  # noqa: E402
from collabbot.bot.config import Config  # noqa: E402
from collabbot.storage.db import Database  # noqa: E402
from collabbot.storage.migrate import upgrade  # noqa: E402
from collabbot.storage.models import (  # noqa: E402
    ApprovalApprover,
    ApprovalRequest,
    ApprovalStep,
    Chat,
    Department,
    HelpRequest,
    Identity,
    OutboxMessage,
    Project,
    Task,
    User,
    Wait,
)

NOW = datetime(2026, 12, 2, 1, 30, tzinfo=UTC)  # Wednesday 09:30 in Shanghai: working time, before the 10:00 prompt
CHUNK = 20_000
PEOPLE, DEPARTMENTS = 200, 10
# the due mix, as shares of --due: (kind, entity_type, share)
MIX = (("assign", "task", 0.35), ("approval", "approval", 0.2), ("help", "help", 0.2),
       ("overdue", "task", 0.1), ("escalate", "task", 0.1))
NEWLY_OVERDUE = 0.05  # of --due: tasks whose deadline has just passed


def populate(db: Database, n: int, due: int, groups: int) -> dict[str, int]:
    """The data set; how many due items of each kind it holds."""
    created = NOW - timedelta(days=3)
    with db.transaction() as s:
        boss = User(name="boss", created_at=created)
        s.add(boss)
        s.flush()
        depts = [Department(name=f"dept{i}") for i in range(DEPARTMENTS)]
        s.add_all(depts)
        s.flush()
        users = [User(name=f"u{i}", department_id=depts[i % DEPARTMENTS].id, created_at=created) for i in range(PEOPLE)]
        s.add_all(users)
        s.flush()
        for i, dept in enumerate(depts):  # the first ten people head a department, under the boss
            dept.head_id = users[i].id
            users[i].supervisor_id = boss.id
        for user in [boss, *users]:
            s.add(Identity(platform="console", platform_user_id=user.name, user_id=user.id))
        projects = [Project(name=f"project {i}", created_at=created, coordinator_id=users[i % PEOPLE].id)
                    for i in range(groups)]
        s.add_all(projects)
        s.flush()
        chats = [Chat(platform="console", platform_chat_id=f"group{i}", name=f"group {i}", project_id=p.id, active=True)
                 for i, p in enumerate(projects)]
        s.add_all(chats)
        s.flush()
        user_ids = [u.id for u in users]
        project_chat = [(p.id, c.id) for p, c in zip(projects, chats, strict=True)]
    far = NOW + timedelta(days=30)
    shares = {kind: int(due * share) for kind, _, share in MIX}
    shares["assign"] += due - sum(shares.values())
    newly_overdue = int(due * NEWLY_OVERDUE)
    plan: list[tuple[str, str]] = [(kind, etype) for kind, etype, _ in MIX for _ in range(shares[kind])]

    def task_row(i: int) -> dict:
        project_id, chat_id = project_chat[i % groups]
        return dict(id=i + 1, project_id=project_id, chat_id=chat_id, title=f"task {i}", initiator_id=user_ids[0],
                    owner_id=user_ids[10 + i % (PEOPLE - 10)], department_id=None, status="in_progress",
                    priority="high" if i % 7 == 0 else "mid",
                    deadline=(NOW - timedelta(minutes=5)) if due <= i < due + newly_overdue else far,
                    deliverable_expected="", deliverable="", attachments=[], remarks="", percent=10,
                    last_progress_at=None if (i // groups) % 10 == 0 else NOW, created_at=created, updated_at=created, version=1)

    for start in range(0, n, CHUNK):
        stop = min(n, start + CHUNK)
        with db.transaction() as s:
            s.execute(insert(Task), [task_row(i) for i in range(start, stop)])
    with db.transaction() as s:
        waits: list[dict] = []
        for i, (kind, etype) in enumerate(plan):
            person = user_ids[10 + i % (PEOPLE - 10)]
            entity_id = i + 1
            if etype == "help":
                req = HelpRequest(requester_id=user_ids[0], helper_id=person, text=f"need help {i}", status="open",
                                  answer="", created_at=created, chat_id=project_chat[i % groups][1])
                s.add(req)
                s.flush()
                entity_id = req.id
            elif etype == "approval":
                req = ApprovalRequest(template="市场活动预算审批", initiator_id=user_ids[0], values={}, status="pending",
                                      round=1, stage_index=0, version=1, created_at=created, updated_at=created)
                s.add(req)
                s.flush()
                step = ApprovalStep(request_id=req.id, round=1, stage_index=0, name="初审", kind="dept_head",
                                    mode="all", status="pending", note="", started_at=created)
                s.add(step)
                s.flush()
                s.add(ApprovalApprover(step_id=step.id, user_id=person, active=True, note="", created_at=created))
                entity_id = req.id
            escalate = kind == "escalate"
            waits.append(dict(kind="assign" if escalate else kind, entity_type=etype, entity_id=entity_id,
                              person_id=person, chat_id=project_chat[i % groups][1], raised_at=created,
                              nags_sent=2 if escalate else 0, last_nag_at=created + timedelta(days=1) if escalate else None,
                              next_due_at=NOW - timedelta(minutes=1)))
        s.execute(insert(Wait), waits)
    for start in range(len(plan), n, CHUNK):  # the other open tasks' waits: answered, or due next week
        stop = min(n, start + CHUNK)
        with db.transaction() as s:
            s.execute(insert(Wait), [dict(
                kind="assign", entity_type="task", entity_id=i + 1, person_id=user_ids[10 + i % (PEOPLE - 10)],
                chat_id=project_chat[i % groups][1], raised_at=created, nags_sent=0,
                next_due_at=None if i % 2 else far, answered_at=created if i % 2 else None,
            ) for i in range(start, stop)])
    if db.is_postgres:
        with db.engine.begin() as conn:
            conn.execute(text("SELECT setval('tasks_id_seq', (SELECT max(id) FROM tasks))"))
            conn.execute(text("ANALYZE"))
    return {**shares, "newly_overdue": newly_overdue}


def peak_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


class Counter:
    """SQL statements the engine issues (executemany counts once)."""

    def __init__(self, db: Database) -> None:
        self.n = 0
        event.listen(db.engine, "before_cursor_execute", self._count)

    def _count(self, *_args: object) -> None:
        self.n += 1


def timed(db: Database, counter: Counter, job: Callable[[], int]) -> tuple[float, float, int, int, int]:
    with db.transaction() as s:
        before = s.scalar(select(func.count()).select_from(OutboxMessage)) or 0
    statements = counter.n
    started, cpu = time.perf_counter(), time.process_time()
    acted = job()
    elapsed, cpu = time.perf_counter() - started, time.process_time() - cpu
    statements = counter.n - statements
    with db.transaction() as s:
        rows = (s.scalar(select(func.count()).select_from(OutboxMessage)) or 0) - before
    return elapsed, cpu, acted, rows, statements


def one(url: str, n: int, due: int, groups: int) -> list[tuple[str, float, float, int, int, int]]:
    db = Database(url)
    upgrade(db.engine)
    mix = populate(db, n, due, groups)
    bot = Bot(db, Config(), ManualClock(NOW))
    # steady state, as in a running instance: one sweep the day before (nothing due) compiles the statements
    assert bot.sweep(NOW - timedelta(days=1)) == 0
    counter = Counter(db)
    out = []
    elapsed, cpu, acted, rows, statements = timed(db, counter, lambda: bot.sweep(NOW))
    expected = due + mix["newly_overdue"]
    assert acted == expected, (acted, expected, mix)
    out.append(("sweep", elapsed, cpu, acted, rows, statements))

    def prompt() -> int:
        with db.transaction() as s:
            return sweep.daily_prompt(bot, s, NOW, force=True)

    def summary() -> int:
        with db.transaction() as s:
            return sweep.weekly_summary(bot, s, NOW, force=True)

    out.append(("prompt", *timed(db, counter, prompt)))
    out.append(("summary", *timed(db, counter, summary)))
    out.append(("next_due", *timed(db, counter, lambda: int(bot.next_due(NOW) is not None))))
    db.dispose()
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", default="10000,100000")
    parser.add_argument("--due", type=int, default=1000)
    parser.add_argument("--groups", type=int, default=500)
    parser.add_argument("--backends", default="sqlite,postgresql")
    parser.add_argument("--pg-url", default="")
    args = parser.parse_args()
    sizes = [int(x) for x in args.sizes.split(",")]
    server = None
    print(f"{'backend':<11} {'open tasks':>11} {'due':>6} {'job':<9} {'seconds':>8} {'cpu s':>6} {'acted':>6} "
          f"{'outbox rows':>12} {'SQL':>6} {'peak MB':>8}")
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
            for job, elapsed, cpu, acted, rows, statements in one(url, n, args.due, args.groups):
                print(f"{backend:<11} {n:>11,} {args.due:>6,} {job:<9} {elapsed:>8.3f} {cpu:>6.3f} {acted:>6,} "
                      f"{rows:>12,} {statements:>6,} {peak_mb():>8.0f}", flush=True)
    if server is not None:
        server.stop()


if __name__ == "__main__":
    main()
