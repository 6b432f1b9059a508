"""Outbox throughput on PostgreSQL: the delivery worker against a raw `FOR UPDATE SKIP LOCKED` loop.

Each run queues `--rows` rows and drains them with 1, 2 and 4 worker processes, each either

* **worker**: CollabBot's `DeliveryWorker` with a no-op sender declaring no limits (claim a batch under
  a lease and a token, send row by row, mark the rows sent by id and claim token; a full batch's last
  marks and the next claim share one transaction), or
* **raw**: the textbook loop: one transaction reads and locks a batch with `FOR UPDATE SKIP LOCKED`
  (the columns a sender needs: target and payload), "sends" it and marks it sent with one UPDATE.

Figures (medians of `--repeat` alternating runs of each; every run's ratio is shown too): rows/s,
duplicates (rows sent more than once, summed over the runs) and lost rows, and the worker's share of
the raw loop's rate (goal >= 60 %). Both use the same batch size.

    python bench/outbox.py [--rows 10000] [--batch 50] [--repeat 3] [--workers 1,2,4]
"""

from __future__ import annotations

import argparse
import asyncio
import multiprocessing as mp
import statistics
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
            rows = conn.execute(text(
                "SELECT id, dedupe_key, platform, target_kind, target_id, target_name, payload, card_key, attempts "
                "FROM outbox WHERE status = 'pending' ORDER BY id LIMIT :n FOR UPDATE SKIP LOCKED"),
                {"n": batch}).all()
            if not rows:
                break
            ids = [row.id for row in rows]
            sent.extend(ids)  # the no-op "send" (of the rows read: a sender needs their target and payload)
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
    parser.add_argument("--repeat", type=int, default=3, help="runs of each, alternating; the medians are shown")
    parser.add_argument("--workers", default="1,2,4", help="worker process counts, comma-separated")
    args = parser.parse_args()
    lines = []
    with postgres() as server:
        for workers in (int(n) for n in args.workers.split(",")):
            raws, ours = [], []
            for _ in range(args.repeat):
                raws.append(measure(server, "raw", workers, args.rows, args.batch))
                ours.append(measure(server, "worker", workers, args.rows, args.batch))
            raw_rate = statistics.median(r["rows/s"] for r in raws)
            our_rate = statistics.median(r["rows/s"] for r in ours)
            ratios = sorted(o["rows/s"] / r["rows/s"] for o, r in zip(ours, raws, strict=True))
            lines.append([workers, args.rows, our_rate, raw_rate, our_rate / raw_rate,
                          " ".join(f"{x:.2f}" for x in ratios),
                          f"{sum(o['duplicates'] for o in ours)} / {sum(r['duplicates'] for r in raws)}",
                          f"{sum(o['lost'] for o in ours)} / {sum(r['lost'] for r in raws)}"])
    print(table(["workers", "rows", "worker rows/s", "raw rows/s", "worker / raw", "each run", "duplicates (worker / raw)",
                 "lost (worker / raw)"], lines))


if __name__ == "__main__":
    main()
