"""Several `collabbot serve` processes on one PostgreSQL, with sends slower than the claim lease.

Each run queues `--rows` rows for a test platform whose every send takes `--delay` seconds (1.5 s by
default, under a 1 s lease), starts 2 and then 3 real `collabbot serve` processes on the database
(tests/slow_platform.py adds the platform), and reads every process's output. Figures: rows
delivered, duplicates (a row sent by two processes, as when a lease outlived by a slow send let a
second instance take the row), lost rows, the time to drain, the fewest rows one process sent, and
the sum of the processes' /metrics "sent" counters.

    python bench/instances.py [--rows 10000] [--delay 1.5] [--lease 1.0]
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

from common import fresh, postgres, queue_rows, table

from tests.serve_process import slow_instances


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=10000)
    parser.add_argument("--delay", type=float, default=1.5)
    parser.add_argument("--lease", type=float, default=1.0)
    parser.add_argument("--batch", type=int, default=200)
    args = parser.parse_args()
    lines = []
    with postgres() as server:
        for processes in (2, 3):
            url, db = fresh(server, f"bench_instances_{processes}")
            queue_rows(db, args.rows, "slowtest", prefix="slow")
            db.dispose()
            f = slow_instances(url, Path(tempfile.mkdtemp(prefix="bench-serve-")), processes=processes,
                               rows=args.rows, delay=args.delay, claim_seconds=args.lease, batch_size=args.batch,
                               timeout=600)
            lines.append([processes, args.rows, f"{args.delay} s / {args.lease} s", int(f["delivered"]),
                          int(f["duplicates"]), int(f["lost"]), f["seconds"], int(f["fewest_per_process"]),
                          int(f["metrics_sent"])])
    print(table(["processes", "rows", "send / lease", "delivered", "duplicates", "lost", "seconds",
                 "fewest rows per process", "/metrics sent"], lines))


if __name__ == "__main__":
    main()
