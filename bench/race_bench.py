"""The engine's two worst races, repeated: how often a cycle is stored or an approval's outcome lost.

    python bench/race_bench.py                     # 100 repetitions on SQLite and a throwaway PostgreSQL
    python bench/race_bench.py --repeats 20 --backends postgresql

* cycle: with 1→2 and 3→4, `依赖 #2 #3` and `依赖 #4 #1` sent at the same moment (two threads, each
  calling `Bot.handle`); a repetition fails when both edges are stored (the cycle 1→2→3→4→1).
* approval: the "pending" and "approved" events of one new native approval instance at the same
  moment; a repetition fails when the mirrored request is not "approved" afterwards or its initiator
  was not told exactly once.

Prints one row per (backend, race): repetitions, failures (goal: 0), events answered with an error,
and the seconds taken.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from sqlalchemy import func, select  # noqa: E402

from collabbot.storage.db import Database  # noqa: E402
from collabbot.storage.migrate import upgrade  # noqa: E402
from collabbot.storage.models import ApprovalRequest, OutboxMessage, TaskDependency  # noqa: E402
from tests.conftest import Harness  # noqa: E402
from tests.test_approvals_concurrency import at_once  # noqa: E402
from tests.test_engine_concurrency import G, event, native  # noqa: E402


def cycles(h: Harness, repeats: int) -> tuple[int, int]:
    h.run(f"{G} 张三: @bot 绑定项目 新品上市 协同负责人 @张三",
          *[f"{G} 张三: @bot 新建任务 T{i} 负责人 @李四" for i in range(1, 5)],
          f"{G} 张三: @bot 依赖 #1 #2", f"{G} 张三: @bot 依赖 #3 #4")
    failures = errors = 0
    for _ in range(repeats):
        replies = at_once(h.bot, [event(h, f"{G} 张三: @bot 依赖 #2 #3"), event(h, f"{G} 张三: @bot 依赖 #4 #1")])
        errors += sum(r.toast_kind == "error" for r in replies)
        with h.db.transaction() as s:
            edges = {(a, b) for a, b in s.execute(select(TaskDependency.task_id, TaskDependency.depends_on_id))}
        added = [e for e in ((2, 3), (4, 1)) if e in edges]
        failures += len(added) != 1
        h.run(*[f"{G} 张三: @bot 取消依赖 #{a} #{b}" for a, b in added])
        h.console.take_output()
    return failures, errors


def approvals(h: Harness, repeats: int) -> tuple[int, int]:
    failures = errors = 0
    for i in range(repeats):
        instance = f"BENCH-{i}"
        replies = at_once(h.bot, [native(instance, "pending"), native(instance, "approved")])
        errors += sum(r.toast_kind == "error" for r in replies)
        with h.db.transaction() as s:
            req = s.scalar(select(ApprovalRequest).where(ApprovalRequest.external_id == f"console:{instance}"))
            told = 0 if req is None else s.scalar(select(func.count()).select_from(OutboxMessage).where(
                OutboxMessage.dedupe_key.like(f"approval:{req.id}:%:approved:initiator")))
            failures += req is None or req.status != "approved" or told != 1
    return failures, errors


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeats", type=int, default=100)
    parser.add_argument("--backends", default="sqlite,postgresql")
    args = parser.parse_args()
    server = None
    print(f"{'backend':<11} {'race':<9} {'repetitions':>11} {'failures':>8} {'errors':>6} {'seconds':>8}")
    for backend in args.backends.split(","):
        for name, race in (("cycle", cycles), ("approval", approvals)):
            if backend == "sqlite":
                url = f"sqlite:///{tempfile.mkdtemp(prefix='race-')}/race.db"
            else:
                from tests.pgserver import make_database, start_postgres

                if server is None:
                    server = start_postgres(Path(tempfile.mkdtemp(prefix="race-pg-")))
                url = make_database(server, f"race_{name}", replace=True)
            db = Database(url)
            upgrade(db.engine)
            started = time.perf_counter()
            failures, errors = race(Harness(db), args.repeats)
            print(f"{backend:<11} {name:<9} {args.repeats:>11} {failures:>8} {errors:>6} "
                  f"{time.perf_counter() - started:>8.1f}", flush=True)
            db.dispose()
    if server is not None:
        server.stop()


if __name__ == "__main__":
    main()
