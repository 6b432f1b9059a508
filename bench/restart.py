"""How fast `collabbot serve` is back after a restart with a big database, and how much memory it holds.

    python bench/restart.py                         # 100,000 tasks, 10,000 pending outbox rows, SQLite
    python bench/restart.py --tasks 20000 --pending 2000 --run-seconds 20
    python bench/restart.py --backend postgresql

The database is filled as `bench/sweep_bench.py` fills it (open tasks with their waits, projects,
groups and people), plus `--pending` outbox rows waiting to be sent to a local fake Feishu. Then a
real `collabbot serve` process is started with a `[feishu]` section, and the script measures the
time from the process's start until a signed, encrypted callback is answered 200, its RSS at that
moment, and its RSS after `--run-seconds` of sweeping and delivering the backlog.

Goals: accepted within 5 s, at most 200 MB.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
import urllib.error
import urllib.request
from datetime import UTC, datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from sqlalchemy import func, insert, select  # noqa: E402
from sweep_bench import NOW, populate  # noqa: E402

from collabbot.storage.db import Database  # noqa: E402
from collabbot.storage.migrate import upgrade  # noqa: E402
from collabbot.storage.models import Identity, OutboxMessage, User  # noqa: E402
from tests import feishu_callbacks as cb  # noqa: E402
from tests.fake_feishu import ThreadedFake  # noqa: E402
from tests.serve_process import ServeProcess, free_port, write_config  # noqa: E402


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def fill(db: Database, tasks: int, pending: int) -> None:
    populate(db, tasks, 1000, 500)
    with db.transaction() as s:
        users = list(s.scalars(select(User.id).limit(50)))
        for uid in users:  # a Feishu identity for the people the backlog is addressed to
            s.add(Identity(platform="feishu", platform_user_id=f"ou_bench{uid}", user_id=uid))
        rows = [dict(dedupe_key=f"bench:pending:{i}", platform="feishu", target_kind="user",
                     target_id=f"ou_bench{users[i % len(users)]}", target_name="", status="pending", attempts=0,
                     payload={"parts": [f"积压消息 {i}"], "card": None}, not_before=NOW, created_at=NOW, last_error="")
                for i in range(pending)]
        for start in range(0, len(rows), 5000):
            s.execute(insert(OutboxMessage), rows[start:start + 5000])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--tasks", type=int, default=100_000)
    parser.add_argument("--pending", type=int, default=10_000)
    parser.add_argument("--run-seconds", type=float, default=60.0)
    parser.add_argument("--backend", choices=("sqlite", "postgresql"), default="sqlite")
    args = parser.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="bench-restart-"))
    server = None
    if args.backend == "sqlite":
        url = f"sqlite:///{tmp / 'bot.db'}"
    else:
        from tests.pgserver import make_database, start_postgres

        server = start_postgres(tmp)
        url = make_database(server, "bench_restart", replace=True)
    try:
        db = Database(url)
        upgrade(db.engine)
        started = time.perf_counter()
        fill(db, args.tasks, args.pending)
        print(f"# filled {args.tasks} tasks and {args.pending} pending rows in {time.perf_counter() - started:.1f} s "
              f"({args.backend}); {os.cpu_count()} cores, load {os.getloadavg()[0]:.2f}")
        with ThreadedFake() as fake:
            port = free_port()
            config = write_config(tmp / "config.toml", url, port=port, extra=f"""
[feishu]
app_id = "{fake.app_id}"
app_secret = "{fake.app_secret}"
verification_token = "{cb.TOKEN}"
encrypt_key = "{cb.ENCRYPT_KEY}"
bot_open_id = "ou_bot"
base_url = "{fake.url}"
""")
            (tmp / "clock.txt").write_text(NOW.isoformat(), encoding="utf-8")
            body = cb.message("我的任务", sender="ou_newcomer", chat_id="oc_p2p", chat_type="p2p",
                              at=datetime.now(UTC))
            begin = time.perf_counter()
            serve = ServeProcess(config, clock_file=tmp / "clock.txt")
            url_events = f"http://127.0.0.1:{port}/feishu/events"
            accepted = None
            while accepted is None and time.perf_counter() - begin < 120:
                headers, raw = cb.envelope(body, at=NOW)
                try:
                    request = urllib.request.Request(url_events, data=raw, headers=headers, method="POST")
                    with urllib.request.urlopen(request, timeout=5) as response:
                        if response.status == 200:
                            accepted = time.perf_counter() - begin
                except (urllib.error.URLError, OSError):
                    time.sleep(0.05)
            rss_start = rss_mb(serve.proc.pid)
            time.sleep(args.run_seconds)
            rss_later = rss_mb(serve.proc.pid)
            sent = len(fake.sent())
            serve.stop()
        with db.transaction() as s:
            left = s.scalar(select(func.count()).select_from(OutboxMessage).where(OutboxMessage.status == "pending"))
        print("| tasks | pending rows | accepted after | RSS at accept | RSS after run | sent in run | still pending |")
        print("| --- | --- | --- | --- | --- | --- | --- |")
        shown = f"{accepted:.2f} s" if accepted is not None else "never"
        print(f"| {args.tasks} | {args.pending} | {shown} | {rss_start:.0f} MB | {rss_later:.0f} MB "
              f"({args.run_seconds:g} s) | {sent} | {left} |")
        db.dispose()
    finally:
        if server is not None:
            server.stop()


if __name__ == "__main__":
    main()
