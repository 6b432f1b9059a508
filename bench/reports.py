"""How long 报表 and 导出 take over a big history, and how much memory a process needs for them.

    python bench/reports.py                      # 100,000 tasks, SQLite and a throwaway PostgreSQL
    python bench/reports.py --tasks 20000 --backends sqlite

It builds 10 departments, 200 people, 5 projects and N tasks created over the last quarter (a tenth
cancelled, two thirds done, a third of the rest overdue), one assignment wait per task, a progress
report per task on average, N/50 three-stage approvals with their votes, and for the records' sheets N/100
risks, N/200 meetings with two actions each and N/500 collection requests to five people. Then, each in a fresh
child process (so that its peak RSS is the job's own, imports included), it times:

* `report` — the 报表 card of everything for 本季度 (every figure, the trend included);
* `report-dept` — the same for one department;
* `export` — the 导出 workbook of everything for 本季度 (every task in the quarter: N rows in 任务 and in
  进度, with 审批, 部门统计, 风险, 会议行动项 and 收集), sheets read and the .xlsx written;
* `export-dept` — the same for one department.

The target: report and export under 3 s and 300 MB with 100,000 tasks, on both databases.
"""

from __future__ import annotations

import argparse
import json
import random
import resource
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from sqlalchemy import insert  # noqa: E402

from bench.common import fresh, postgres, table  # noqa: E402
from collabbot.bot.calendar import WorkCalendar  # noqa: E402
from collabbot.bot.reports import export, figures  # noqa: E402
from collabbot.bot.reports.card import report_card  # noqa: E402
from collabbot.bot.reports.period import parse_period  # noqa: E402
from collabbot.bot.reports.scope import Scope  # noqa: E402
from collabbot.storage.db import Database  # noqa: E402
from collabbot.storage.migrate import upgrade  # noqa: E402
from collabbot.storage.models import (  # noqa: E402
    ApprovalRequest,
    ApprovalStep,
    ApprovalVote,
    CollectionRequest,
    CollectionTarget,
    Department,
    Meeting,
    MeetingAction,
    ProgressReport,
    Project,
    Risk,
    Task,
    User,
    Wait,
)

NOW = datetime(2026, 12, 4, 8, 0, tzinfo=UTC)
DEPARTMENTS, PEOPLE, PROJECTS = 10, 200, 5
JOBS = ("report", "report-dept", "export", "export-dept")
LEVELS = ("high", "mid", "low")


def build(db: Database, n: int, seed: int = 7) -> None:
    rng = random.Random(seed)
    start = NOW - timedelta(days=95)
    with db.transaction() as s:
        depts = [Department(name=f"部门{i}") for i in range(DEPARTMENTS)]
        s.add_all(depts)
        s.flush()
        users = [User(name=f"员工{i}", department_id=depts[i % DEPARTMENTS].id, created_at=start) for i in range(PEOPLE)]
        s.add_all(users)
        s.flush()
        for i, d in enumerate(depts):
            d.head_id = users[i].id
        projects = [Project(name=f"项目{i}", created_at=start) for i in range(PROJECTS)]
        s.add_all(projects)
        s.flush()
        user_ids, project_ids = [u.id for u in users], [p.id for p in projects]
        dept_of = {u.id: u.department_id for u in users}
    tasks, waits, reports = [], [], []
    for i in range(n):
        owner = rng.choice(user_ids)
        created = start + timedelta(minutes=rng.randrange(95 * 24 * 60))
        deadline = created + timedelta(days=rng.randrange(1, 20))
        acked = created + timedelta(minutes=rng.choice((5, 60, 300, 2000)))
        roll = rng.random()
        status, done = "in_progress", None
        if roll < 0.1:
            status = "cancelled"
        elif roll < 0.75:
            done = acked + timedelta(days=rng.randrange(0, 22))
            status, done = ("done", done) if done < NOW else ("in_progress", None)
        tasks.append(dict(id=i + 1, title=f"任务{i}", initiator_id=owner, owner_id=owner, department_id=dept_of[owner],
                          project_id=rng.choice(project_ids), status=status, priority="mid", deadline=deadline,
                          acknowledged_at=acked if acked < NOW else None, done_at=done, created_at=created,
                          updated_at=created, percent=100 if done else 50, deliverable_expected="", deliverable="",
                          attachments=[], remarks="", version=1))
        waits.append(dict(kind="assign", entity_type="task", entity_id=i + 1, person_id=owner, raised_at=created,
                          answered_at=acked if acked < NOW else None, nags_sent=0))
        at = acked + timedelta(hours=rng.randrange(1, 48))
        if at < NOW:
            reports.append(dict(task_id=i + 1, author_id=owner, status="in_progress", percent=50, done_text="",
                                next_step="联调", problems="", created_at=at))
    with db.transaction() as s:
        for chunk in range(0, n, 5000):
            s.execute(insert(Task), tasks[chunk:chunk + 5000])
            s.execute(insert(Wait), waits[chunk:chunk + 5000])
        for chunk in range(0, len(reports), 5000):
            s.execute(insert(ProgressReport), reports[chunk:chunk + 5000])
    with db.transaction() as s:
        for _ in range(n // 50):
            created = start + timedelta(minutes=rng.randrange(95 * 24 * 60))
            initiator = rng.choice(user_ids)
            req = ApprovalRequest(template="预算审批", initiator_id=initiator, department_id=dept_of[initiator],
                                  project_id=rng.choice(project_ids), status="approved", created_at=created,
                                  updated_at=created, decided_at=created + timedelta(hours=30))
            s.add(req)
            s.flush()
            at = created
            for index, name in enumerate(("初审", "会签", "终审")):
                decided = at + timedelta(minutes=rng.choice((30, 200, 900)))
                step = ApprovalStep(request_id=req.id, round=1, stage_index=index, name=name, kind="person",
                                    mode="any", status="approved", started_at=at, decided_at=decided)
                s.add(step)
                s.flush()
                s.add(ApprovalVote(request_id=req.id, step_id=step.id, voter_id=rng.choice(user_ids),
                                   decision="approve", created_at=decided))
                at = decided
    with db.transaction() as s:  # the records' sheets: risks, meetings with two actions each, collection requests
        for i in range(n // 100):
            at = start + timedelta(minutes=rng.randrange(95 * 24 * 60))
            s.add(Risk(project_id=rng.choice(project_ids), description=f"风险{i}", likelihood=rng.choice(LEVELS),
                       impact=rng.choice(LEVELS), response="备选方案", owner_id=rng.choice(user_ids),
                       created_by_id=rng.choice(user_ids), status="open", created_at=at, updated_at=at))
        for i in range(n // 200):
            at = start + timedelta(minutes=rng.randrange(95 * 24 * 60))
            meeting = Meeting(project_id=rng.choice(project_ids), topic=f"周会{i}", held_at=at,
                              recorder_id=rng.choice(user_ids), created_at=at)
            s.add(meeting)
            s.flush()
            for task_id in rng.sample(range(1, n + 1), 2):
                s.add(MeetingAction(meeting_id=meeting.id, task_id=task_id))
        for i in range(n // 500):
            at = start + timedelta(minutes=rng.randrange(95 * 24 * 60))
            c = CollectionRequest(project_id=rng.choice(project_ids), title=f"月度数据{i}",
                                  requester_id=rng.choice(user_ids), deadline=at + timedelta(days=3), status="open",
                                  created_at=at, updated_at=at)
            s.add(c)
            s.flush()
            for user_id in rng.sample(user_ids, 5):
                done = rng.random() < 0.7
                s.add(CollectionTarget(collection_id=c.id, user_id=user_id, department_id=dept_of[user_id],
                                       submitted_at=at + timedelta(days=1) if done else None,
                                       content="见链接" if done else "", links=[]))
    if db.is_postgres:  # as autovacuum leaves a live database: statistics, and the rows' visibility settled
        with db.engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
            conn.exec_driver_sql("VACUUM ANALYZE")


def run_job(url: str, job: str, out_dir: str) -> dict[str, float]:
    """One job in this process: its wall seconds and the process's peak RSS (openpyxl is imported, outside
    the timing, by the export jobs only: a server imports it once)."""
    if job.startswith("export"):
        from collabbot.cards.workbook import write_workbook
    db = Database(url)
    cal = WorkCalendar()
    period = parse_period("本季度", NOW, cal.tz)
    t0 = time.perf_counter()
    rows = 0
    with db.transaction() as s:
        scope = Scope("department", 1, "部门0") if job.endswith("-dept") else Scope("all")
        f = figures.Frame(s, scope, period, NOW, cal)
        if job.startswith("report"):
            card = report_card(f, "zh", admin=True)
            rows = len(card.fields)
        else:
            sheets = export.sheets(f, "zh")
            rows = sum(len(sh.rows) for sh in sheets)
            write_workbook(sheets, Path(out_dir) / f"{job}.xlsx")
    seconds = time.perf_counter() - t0
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return {"seconds": seconds, "peak_mb": peak_mb, "rows": rows}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--tasks", type=int, default=100_000)
    parser.add_argument("--backends", default="sqlite,postgresql")
    parser.add_argument("--job", help=argparse.SUPPRESS)
    parser.add_argument("--url", help=argparse.SUPPRESS)
    parser.add_argument("--out", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.job:
        print(json.dumps(run_job(args.url, args.job, args.out)))
        return
    results = []
    workdir = Path(tempfile.mkdtemp(prefix="bench-reports-"))

    def measure(backend: str, url: str) -> None:
        for job in JOBS:
            out = subprocess.run([sys.executable, __file__, "--job", job, "--url", url, "--out", str(workdir)],
                                 check=True, capture_output=True, text=True)
            r = json.loads(out.stdout.strip().splitlines()[-1])
            results.append((backend, args.tasks, job, r["seconds"], round(r["peak_mb"]), r["rows"]))
            print(results[-1], file=sys.stderr)

    backends = args.backends.split(",")
    if "sqlite" in backends:
        url = f"sqlite:///{workdir / 'reports.db'}"
        db = Database(url)
        upgrade(db.engine)
        t0 = time.perf_counter()
        build(db, args.tasks)
        print(f"sqlite: built in {time.perf_counter() - t0:.1f} s", file=sys.stderr)
        db.dispose()
        measure("sqlite", url)
    if "postgresql" in backends:
        with postgres() as server:
            url, db = fresh(server, "bench_reports")
            build(db, args.tasks)
            db.dispose()
            measure("postgresql", url)
    print(table(("backend", "tasks", "job", "seconds", "peak MB", "rows / fields"), results))


if __name__ == "__main__":
    main()
