"""The full inbound path against a bare aiohttp handler, in the same run, open loop and closed loop.

    python bench/inbound.py                               # SQLite and a throwaway PostgreSQL
    python bench/inbound.py --backends sqlite --rates 50,200 --seconds 3
    python bench/inbound.py --pg-url postgresql+psycopg://user@host/db
    python bench/inbound.py --kinds query,create --rates 50 --seconds 1 --closed 3000 --answer-only

Each server runs in a process of its own on 127.0.0.1: the bare handler (reads the body, answers
`{}`) and `collabbot`'s Feishu webhook (signature, decryption, parse, durable queue row, engine,
receipt, outbox rows) on a fresh database. The load generator schedules request i at
`start + i / rate` and measures each latency from that scheduled moment (an open loop, so a slow
server cannot slow the generator down and hide its own queueing: no coordinated omission).
Every request is a distinct, correctly signed and encrypted Feishu callback, made before the clock
starts. Kinds: `query` (我的任务 in a private chat), `create` (新建任务 in the group), `tap` (a card
button). Then a closed loop (32 clients, as fast as answers come) gives throughput against bare.

A message is answered once it is durable (a row in the inbound queue); the engine works it in the
background and its replies go out through the outbox. So each run also waits until the queue is empty
and prints how long after the last answer the work was done ("work done +s"), and the closed loop
prints both answers/s and work done/s: the first is what the platform sees, the second what the
engine sustains. A card tap is answered with the updated card, so its answer waits for the engine.
The closed loop also prints each server's CPU time per event (user + system, all threads, from /proc,
until the work is done): the load generator shares the cores, so the bare handler's requests/s is
partly the generator's own speed, while CPU per event is the server's cost alone.
`--answer-only` replaces the engine by one that does nothing: what remains is the cost of answering
(verify, decrypt, parse, queue row), which shows whether the engine or the answering limits a closed loop.

Goals: p99 <= 50 ms at 200 requests/s for every kind on one process; closed-loop throughput
>= 40 % of bare.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import multiprocessing as mp
import os
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import aiohttp  # noqa: E402
from aiohttp import web  # noqa: E402

KINDS = ("query", "create", "tap")
BOT = "ou_bot"


# --- the servers (each in its own process) ---------------------------------------------------------
def run_bare(port: int, ready: Any) -> None:
    async def handle(request: web.Request) -> web.Response:
        await request.read()
        return web.json_response({})

    async def main() -> None:
        app = web.Application()
        app.router.add_post("/feishu/events", handle)
        runner = web.AppRunner(app, access_log=None)
        await runner.setup()
        await web.TCPSite(runner, "127.0.0.1", port).start()
        ready.set()
        await asyncio.Event().wait()

    asyncio.run(main())


def run_collabbot(port: int, db_url: str, reuse_port: bool, answer_only: bool, ready: Any) -> None:
    from collabbot.adapters.feishu.adapter import FeishuAdapter
    from collabbot.adapters.feishu.config import parse_settings
    from collabbot.adapters.hub import Hub, favour_the_loop, settle_the_heap
    from collabbot.bot.app import Bot
    from collabbot.bot.clock import SystemClock
    from collabbot.bot.config import Config
    from collabbot.bot.org import apply_org
    from collabbot.bot.replies import Reply
    from collabbot.storage.db import Database
    from collabbot.storage.migrate import upgrade
    from tests import feishu_callbacks as cb
    from tests.feishu_env import ORG

    # past the engine's pace every late tap logs a warning: counted in the table, not printed one by one
    logging.getLogger("collabbot.adapters.kit.pipeline").setLevel(logging.ERROR)

    async def main() -> None:
        db = Database(db_url)
        upgrade(db.engine)
        clock = SystemClock()
        with db.transaction() as s:
            apply_org(s, ORG, clock.now(), platform="feishu")
        bot = Bot(db, Config(), clock)
        if answer_only:  # the engine does nothing: what is left is the answering path's own cost
            bot.handle = lambda event: Reply()  # type: ignore[method-assign]
        favour_the_loop()  # as collabbot serve does
        hub = Hub(bot)
        settings = parse_settings({"app_id": "cli_bench", "app_secret": "s", "verification_token": cb.TOKEN,
                                   "encrypt_key": cb.ENCRYPT_KEY, "bot_open_id": BOT,
                                   "base_url": "http://127.0.0.1:9"})
        adapter = FeishuAdapter(settings, hub)
        app = web.Application(client_max_size=settings.max_body_bytes)
        adapter.add_routes(app)
        runner = web.AppRunner(app, access_log=None)
        await runner.setup()
        settle_the_heap()  # as collabbot serve does
        await web.TCPSite(runner, "127.0.0.1", port, reuse_port=reuse_port or None).start()
        await adapter.inbound.pipeline.start()
        ready.set()
        await asyncio.Event().wait()

    asyncio.run(main())


def start(target: Any, *args: Any) -> mp.Process:
    ready = mp.get_context("spawn").Event()
    proc = mp.get_context("spawn").Process(target=target, args=(*args, ready), daemon=True)
    proc.start()
    if not ready.wait(60):
        raise RuntimeError(f"{target.__name__} did not start")
    return proc


# --- the requests ----------------------------------------------------------------------------------
def requests(kind: str, n: int, tag: str) -> list[tuple[dict[str, str], bytes]]:
    """n distinct signed callbacks of one kind, built before the clock starts."""
    from tests import feishu_callbacks as cb

    out = []
    now = datetime.now(UTC)
    for i in range(n):
        eid = f"{tag}-{kind}-{i}"
        if kind == "query":
            body = cb.message("我的任务", sender="ou_zhao", chat_id="oc_p2p_zhao", chat_type="p2p", at=now, event_id=eid)
        elif kind == "create":
            body = cb.message("@_user_1 新建任务 压测任务 负责人 @_user_2 截止 12-30", sender="ou_zhang",
                              mentions=[(BOT, "bot"), ("ou_li", "李四")], at=now, event_id=eid)
        else:
            body = cb.card_action({"action": "v1|progress|task|1|1"}, operator="ou_li", message_id="om_bench",
                                  chat_id="oc_group", at=now, event_id=eid)
        out.append(cb.envelope(body, at=now))
    return out


async def open_loop(url: str, reqs: list[tuple[dict[str, str], bytes]], rate: float) -> tuple[list[float], int]:
    """Latencies (s) measured from each request's scheduled time, and the number of non-200 answers."""
    latencies: list[float] = []
    errors = 0
    connector = aiohttp.TCPConnector(limit=0)
    async with aiohttp.ClientSession(connector=connector, timeout=aiohttp.ClientTimeout(total=30)) as session:
        async def one(scheduled: float, headers: dict[str, str], raw: bytes) -> None:
            nonlocal errors
            delay = scheduled - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
            try:
                async with session.post(url, data=raw, headers=headers) as resp:
                    await resp.read()
                    if resp.status != 200:
                        errors += 1
            except (aiohttp.ClientError, TimeoutError):
                errors += 1
            latencies.append(time.perf_counter() - scheduled)

        begin = time.perf_counter() + 0.2
        await asyncio.gather(*(one(begin + i / rate, h, r) for i, (h, r) in enumerate(reqs)))
    return latencies, errors


async def closed_loop(url: str, reqs: list[tuple[dict[str, str], bytes]], clients: int = 32) -> float:
    """Requests per second with `clients` each sending the next request when its answer came."""
    pending = list(reversed(reqs))
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0)) as session:
        async def client() -> None:
            while pending:
                headers, raw = pending.pop()
                async with session.post(url, data=raw, headers=headers) as resp:
                    await resp.read()

        started = time.perf_counter()
        await asyncio.gather(*(client() for _ in range(clients)))
        return len(reqs) / (time.perf_counter() - started)


def caught_up(db_url: str, limit: float = 300.0) -> float:
    """Seconds until the inbound queue is empty (the engine has done every accepted event's work)."""
    import sqlalchemy as sa

    engine = sa.create_engine(db_url)
    started = time.perf_counter()
    try:
        while time.perf_counter() - started < limit:
            with engine.connect() as conn:
                if not conn.execute(sa.text("SELECT count(*) FROM inbound_queue")).scalar():
                    break
            time.sleep(0.02)
    finally:
        engine.dispose()
    return time.perf_counter() - started


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))] * 1000


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--backends", default="sqlite,postgresql")
    parser.add_argument("--rates", default="50,100,200,400")
    parser.add_argument("--kinds", default=",".join(KINDS))
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--closed", type=int, default=1500, help="requests in the closed-loop run (0: skip)")
    parser.add_argument("--pg-url", default="")
    parser.add_argument("--processes", type=int, default=1,
                        help="collabbot processes sharing the port (SO_REUSEPORT; PostgreSQL only)")
    parser.add_argument("--answer-only", action="store_true",
                        help="the engine does nothing (each event is answered, queued and dropped): the cost of "
                             "answering alone, to see which part limits the closed loop")
    args = parser.parse_args()
    rates = [float(r) for r in args.rates.split(",")]
    kinds = args.kinds.split(",")
    print(f"# machine: {os.cpu_count()} cores, load average {os.getloadavg()[0]:.2f} at start")
    print("| db | kind | rate/s | p50 ms | p99 ms | p99.9 ms | bare p99 ms | p99 ratio | errors | work done +s |")
    print("| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |")
    server = None
    closed: list[str] = []
    try:
        for backend in args.backends.split(","):
            if backend == "sqlite":
                url = f"sqlite:///{Path(tempfile.mkdtemp(prefix='bench-inbound-')) / 'bot.db'}"
            else:
                from tests.pgserver import make_database, start_postgres

                if not args.pg_url and server is None:
                    server = start_postgres(Path(tempfile.mkdtemp(prefix="bench-pg-")))
                url = make_database(args.pg_url or server, "bench_inbound", replace=True)  # type: ignore[arg-type]
            bare_port, bot_port = free_ports(2)
            bare = start(run_bare, bare_port)
            processes = args.processes if backend == "postgresql" else 1
            bots = [start(run_collabbot, bot_port, url, processes > 1, args.answer_only) for _ in range(processes)]
            try:
                bare_url = f"http://127.0.0.1:{bare_port}/feishu/events"
                bot_url = f"http://127.0.0.1:{bot_port}/feishu/events"
                for kind in kinds:
                    for rate in rates:
                        n = int(rate * args.seconds)
                        tag = f"{backend}-{rate:g}-{time.time_ns()}"
                        base, _ = asyncio.run(open_loop(bare_url, requests(kind, n, tag + "b"), rate))
                        lat, errors = asyncio.run(open_loop(bot_url, requests(kind, n, tag), rate))
                        behind = caught_up(url)
                        print(f"| {backend} | {kind} | {rate:g} | {pct(lat, .5):.1f} | {pct(lat, .99):.1f} | "
                              f"{pct(lat, .999):.1f} | {pct(base, .99):.1f} | {pct(lat, .99) / pct(base, .99):.1f} | "
                              f"{errors} | {behind:.2f} |", flush=True)
                if args.closed:
                    for kind in kinds:
                        tag = f"{backend}-closed-{time.time_ns()}"
                        bare_reqs, bot_reqs = requests(kind, args.closed, tag + "b"), requests(kind, args.closed, tag)
                        bare_cpu = cpu_seconds([bare])
                        bare_rps = asyncio.run(closed_loop(bare_url, bare_reqs))
                        bare_cpu = cpu_seconds([bare]) - bare_cpu
                        bot_cpu = cpu_seconds(bots)
                        started = time.perf_counter()
                        bot_rps = asyncio.run(closed_loop(bot_url, bot_reqs))
                        caught_up(url)
                        done_rps = args.closed / (time.perf_counter() - started)
                        bot_cpu = cpu_seconds(bots) - bot_cpu
                        closed.append(f"| {backend} ×{processes} | {kind} | {bot_rps:.0f} | {done_rps:.0f} | "
                                      f"{bare_rps:.0f} | {100 * bot_rps / bare_rps:.0f} % | "
                                      f"{1e6 * bot_cpu / args.closed:.0f} | {1e6 * bare_cpu / args.closed:.0f} |")
            finally:
                bare.kill()
                for bot in bots:
                    bot.kill()
        if closed:
            print("\n| db | kind | collabbot answers/s | work done/s | bare req/s | answers: share of bare | "
                  "collabbot CPU µs per event | bare CPU µs per request |")
            print("| --- | --- | --- | --- | --- | --- | --- | --- |")
            print("\n".join(closed))
        print(f"# load average {os.getloadavg()[0]:.2f} at the end")
    finally:
        if server is not None:
            server.stop()


def cpu_seconds(procs: list[mp.Process]) -> float:
    """CPU time (user + system, every thread) the processes have used so far, from /proc (Linux; NaN elsewhere).
    Unlike requests/s it does not depend on how fast the load generator, sharing the cores, can send."""
    total = 0.0
    for proc in procs:
        try:
            with open(f"/proc/{proc.pid}/stat", encoding="ascii") as f:
                fields = f.read().rpartition(")")[2].split()
        except OSError:
            return float("nan")
        total += (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    return total


def free_ports(n: int) -> list[int]:
    """n distinct free ports (held open together while they are picked, so none is picked twice)."""
    import socket

    socks = [socket.socket() for _ in range(n)]
    try:
        for s in socks:
            s.bind(("127.0.0.1", 0))
        return [s.getsockname()[1] for s in socks]
    finally:
        for s in socks:
            s.close()


def free_port() -> int:
    return free_ports(1)[0]


if __name__ == "__main__":
    main()
