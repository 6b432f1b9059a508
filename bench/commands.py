"""What the engine spends on each command people send most: SQL statements and CPU time per command.

    python bench/commands.py                     # SQLite and a throwaway PostgreSQL, 40 of each
    python bench/commands.py --backends sqlite --repeat 100

Each command runs through the console platform into `Bot.handle`, as a callback would reach it, on a
database holding 30 open tasks of the person asking (so a list has something to show). Measured
inside `Bot.handle` only: the statements it issued and the CPU time of its thread (`time.thread_time`,
so waiting on PostgreSQL is not counted). Printed: the median of each, and the most statements seen.
`tests/test_hot_path.py` holds the statement budgets these must stay within.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import ROOT, fresh, postgres, table
from sqlalchemy import event

from collabbot.storage.db import Database
from collabbot.storage.migrate import upgrade

G = "in 新品上市群 as"


def measure(backend: str, db: Database, repeat: int) -> list[list[object]]:
    from tests.conftest import Harness

    h = Harness(db)
    for i in range(30):
        h.run(f"{G} 张三: @bot 新建任务 存量任务{i} 负责人 @李四 截止 12-{10 + i % 18}")
    statements = 0

    def count(*_: Any) -> None:
        nonlocal statements
        statements += 1

    handle = h.bot.handle
    seen: list[tuple[int, float]] = []

    def measured(ev: Any) -> Any:
        nonlocal statements
        statements, started = 0, time.thread_time()
        try:
            return handle(ev)
        finally:
            seen.append((statements, time.thread_time() - started))

    kinds: list[tuple[str, Callable[[int], str], Callable[[int], None]]] = [
        ("新建任务", lambda i: f"{G} 张三: @bot 新建任务 压测{i} 负责人 @李四 截止 12-20", lambda i: None),
        ("tap 确认收到", lambda i: "dm as 李四: tap 确认收到",
         lambda i: h.run(f"{G} 张三: @bot 新建任务 待确认{i} 负责人 @李四 截止 12-20")),
        ("进度", lambda i: f"{G} 李四: @bot 进度 #{1 + i % 30} {i % 100}% 推进中", lambda i: None),
        ("我的任务", lambda i: "dm as 李四: 我的任务", lambda i: None),
        ("待我处理", lambda i: "dm as 李四: 待我处理", lambda i: None),
    ]
    rows: list[list[object]] = []
    event.listen(db.engine, "before_cursor_execute", count)
    try:
        for name, line, prepare in kinds:
            seen.clear()
            for i in range(repeat):
                prepare(i)
                h.bot.handle = measured  # type: ignore[method-assign]
                try:
                    out = h.text(line(i))
                finally:
                    h.bot.handle = handle  # type: ignore[method-assign]
                if "出错" in out:
                    raise SystemExit(f"{name}: the engine failed: {out}")
            counts = [c for c, _ in seen]
            cpu = [t for _, t in seen]
            rows.append([backend, name, repeat, statistics.median(counts), max(counts),
                         round(1000 * statistics.median(cpu), 2)])
    finally:
        event.remove(db.engine, "before_cursor_execute", count)
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--backends", default="sqlite,postgresql")
    parser.add_argument("--repeat", type=int, default=40)
    args = parser.parse_args()
    rows: list[list[object]] = []
    for backend in args.backends.split(","):
        if backend == "sqlite":
            db = Database(f"sqlite:///{tempfile.mkdtemp(prefix='bench-cmd-')}/bench.db")
            upgrade(db.engine)
            rows += measure(backend, db, args.repeat)
            db.dispose()
        else:
            with postgres() as server:
                _, db = fresh(server, "bench_commands")
                rows += measure(backend, db, args.repeat)
                db.dispose()
    print(table(["db", "command", "runs", "statements (median)", "statements (most)", "CPU ms (median)"], rows))


if __name__ == "__main__":
    sys.path.insert(0, str(ROOT))
    main()
