"""Outbox throughput on PostgreSQL: the delivery worker against a raw `FOR UPDATE SKIP LOCKED` loop.

Each run queues `--rows` rows and drains them with 1, 2 and 4 worker processes, each either

* **worker**: CollabBot's `DeliveryWorker` with a no-op sender declaring no limits (claim a batch under
  a token, send row by row, mark each row sent in its own transaction by id and claim token), or
* **raw**: the textbook loop: one transaction locks a batch with `FOR UPDATE SKIP LOCKED`, "sends"
  it and marks it sent with one UPDATE.

Figures: rows/s, duplicates (rows sent more than once) and lost rows, and the worker's share of
the raw loop's rate (goal >= 60 %). Both use the same batch size.

    python bench/outbox.py [--rows 10000] [--batch 50]
"""

from __future__ import annotations

import argparse
import asyncio
import multiprocessing as mp
import time
from collections import Counter
from typing import Any

from common import fresh, postgres, queue_rows, table
from sqlalchemy import text

from collabbot.bot.clock import SystemClock
from collabbot.bot.config import DeliverySettings
from collabbot.scheduler.delivery import DeliveryWorker
from collabbot.storage.db import Database
from collabbot.storage.outbox import OutboxItem


class NoOp:
    platform = "bench"
    limits = ()

    def __init__(self) -> None:
        self.sent: list[int] = []

    async def send(self, item: OutboxItem) -> str | None:
        self.sent.append(item.id)
        return None


def ready(db: Database, barrier: Any) -> None:
    """Connected and imported: wait for the others, so the clock measures only the draining."""
    with db.engine.connect() as conn:
        conn.exec_driver_sql("SELECT 1")
    barrier.wait(120)


def run_worker(url: str, batch: int, barrier: Any, out: mp.Queue) -> None:
    db = Database(url)
    sender = NoOp()
    worker = DeliveryWorker(db, {"bench": sender}, DeliverySettings(batch_size=batch), SystemClock())
    ready(db, barrier)
    asyncio.run(worker.drain())
    out.put(sender.sent)
    db.dispose()


def run_raw(url: str, batch: int, barrier: Any, out: mp.Queue) -> None:
    db = Database(url)
    sent: list[int] = []
    ready(db, barrier)
    while True:
        with db.engine.begin() as conn:
            ids = list(conn.execute(text(
                "SELECT id FROM outbox WHERE status = 'pending' ORDER BY id LIMIT :n FOR UPDATE SKIP LOCKED"),
                {"n": batch}).scalars())
            if not ids:
                break
            sent.extend(ids)  # the no-op "send"
            conn.execute(text("UPDATE outbox SET status = 'sent', sent_at = now(), attempts = attempts + 1 "
                              "WHERE id = ANY(:ids)"), {"ids": ids})
    out.put(sent)
    db.dispose()


def measure(server: str, kind: str, workers: int, rows: int, batch: int) -> dict[str, float]:
    url, db = fresh(server, f"bench_outbox_{kind}_{workers}")
    queue_rows(db, rows, "bench")
    db.dispose()
    ctx = mp.get_context("spawn")
    out: mp.Queue = ctx.Queue()
    barrier = ctx.Barrier(workers + 1)
    target = run_worker if kind == "worker" else run_raw
    procs = [ctx.Process(target=target, args=(url, batch, barrier, out)) for _ in range(workers)]
    for p in procs:
        p.start()
    barrier.wait(120)
    start = time.monotonic()
    sent = [i for _ in procs for i in out.get(timeout=600)]
    took = time.monotonic() - start
    for p in procs:
        p.join(30)
    counts = Counter(sent)
    return {"rows/s": rows / took, "duplicates": sum(n - 1 for n in counts.values()), "lost": rows - len(counts),
            "seconds": took}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=10000)
    parser.add_argument("--batch", type=int, default=50)
    args = parser.parse_args()
    lines = []
    with postgres() as server:
        for workers in (1, 2, 4):
            raw = measure(server, "raw", workers, args.rows, args.batch)
            ours = measure(server, "worker", workers, args.rows, args.batch)
            lines.append([workers, args.rows, ours["rows/s"], raw["rows/s"], ours["rows/s"] / raw["rows/s"],
                          f"{ours['duplicates']} / {raw['duplicates']}", f"{ours['lost']} / {raw['lost']}"])
    print(table(["workers", "rows", "worker rows/s", "raw rows/s", "worker / raw", "duplicates (worker / raw)",
                 "lost (worker / raw)"], lines))


if __name__ == "__main__":
    main()
