"""Real `collabbot serve` processes on a real PostgreSQL: kill -9 in the middle of delivery, and two
instances side by side for a simulated week. Output is read from the console platform's JSON lines."""

from __future__ import annotations

import re
from collections import Counter
from datetime import datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import func, select, update

from collabbot.adapters.console.app import Console
from collabbot.adapters.console.transcript import parse_line
from collabbot.bot.app import Bot
from collabbot.bot.clock import ManualClock
from collabbot.bot.config import Config
from collabbot.bot.org import apply_org, load_org_file
from collabbot.bot.replies import Message
from collabbot.storage import outbox
from collabbot.storage.db import Database
from collabbot.storage.migrate import upgrade
from collabbot.storage.models import OutboxMessage

from .conftest import EXAMPLES, TZ
from .pgserver import make_database
from .serve_process import ServeProcess, free_port, slow_instances, write_config


def fresh_db(pg_url: str, name: str) -> tuple[str, Database]:
    url = make_database(pg_url, name, replace=True)
    db = Database(url)
    upgrade(db.engine)
    return url, db


def test_kill_9_in_the_middle_of_delivery_loses_nothing(pg_url: str, tmp_path: Path) -> None:
    url, db = fresh_db(pg_url, "kill_test")
    now = datetime.now(TZ)
    with db.transaction() as s:
        for i in range(1000):
            outbox.enqueue(s, dedupe_key=f"due:{i}", platform="console", target_kind="chat", target_id=f"c{i % 30}",
                           target_name="c", payload={"parts": [f"message {i}"], "card": None}, now=now)
    config = write_config(tmp_path / "c.toml", url, port=free_port(), extra="""
[delivery]
per_platform_per_second = 400
per_chat_per_minute = 100000
batch_size = 50
claim_seconds = 1
""")
    first = ServeProcess(config)
    try:
        first.wait_for(lambda: len(first.sent) >= 300, what="300 deliveries")
    finally:
        first.kill()  # kill -9 mid-delivery (and never left running)
    delivered_before = len(first.sent)
    assert delivered_before < 1000, "the kill came too late to test anything"
    second = ServeProcess(config)
    try:
        second.wait_for(lambda: len({m["key"] for m in first.sent + second.sent}) >= 1000, timeout=90,
                        what="every message delivered")
    finally:
        second.stop()
    keys = Counter(m["key"] for m in first.sent + second.sent)
    duplicates = sum(n - 1 for n in keys.values())
    print(f"kill -9 after {delivered_before} sends: 1000 delivered, {duplicates} duplicate(s)")
    assert set(keys) == {f"due:{i}" for i in range(1000)}
    # The only window is a message printed (sent) whose row was not yet marked when the process
    # died: at most the sends in flight, one batch (a real platform drops these resends by their
    # idempotency key; the console platform has none, so they show here).
    assert duplicates <= 50
    with db.transaction() as s:
        assert s.scalar(select(func.count()).select_from(OutboxMessage).where(OutboxMessage.status != "sent")) == 0
    db.dispose()


G = "in 新品上市群 as"
PEOPLE = ["李四", "王五", "赵六", "孙九", "吴十", "陈七", "周八"]
MONDAY = datetime(2026, 11, 30, 9, 0, tzinfo=TZ)


def populate(db: Database) -> Bot:
    """500 tasks created in five batches on Monday, some acknowledged, started or reported on."""
    clock = ManualClock(MONDAY)
    bot = Bot(db, Config(), clock)
    org = load_org_file(EXAMPLES / "demo-org.toml")
    with db.transaction() as s:
        apply_org(s, org, clock.now())
    console = Console(bot, clock, org)
    console.run(parse_line(f"{G} 张三: @bot 绑定项目 周测 协同负责人 @张三"))  # type: ignore[arg-type]
    for i in range(500):
        if i % 100 == 0 and i:
            clock.advance(timedelta(minutes=47))
        owner = PEOPLE[i % len(PEOPLE)]
        due = (MONDAY + timedelta(days=1 + i % 6, hours=i % 9)).strftime("%m-%d %H:%M")
        bot.handle(console._message(parse_line(f"{G} 张三: @bot 新建任务 T{i} 负责人 @{owner} 截止 {due}")))  # type: ignore[arg-type]
        if i % 3 == 0:
            bot.handle(console._message(parse_line(f"{G} {owner}: @bot 确认收到 #{i + 1}")))  # type: ignore[arg-type]
        if i % 5 == 0:
            bot.handle(console._message(parse_line(f"{G} {owner}: @bot 进度 #{i + 1} 30%")))  # type: ignore[arg-type]
    with db.transaction() as s:  # the setup's own messages are not what this test counts
        s.execute(update(OutboxMessage).values(status="sent"))
    return bot


def reference_run(bot: Bot, end: datetime) -> tuple[list[datetime], Counter[str]]:
    """One instance, in process: the moments at which something is due, and what it writes (`written`)."""
    clock: ManualClock = bot.clock  # type: ignore[assignment]
    steps: list[datetime] = []
    before = set_up_keys(bot.db)
    while True:
        due = bot.next_due(clock.now())
        if due is None or due > end:
            break
        clock.set(max(due, clock.now()))
        steps.append(clock.now())
        bot.sweep(clock.now())
        with bot.db.transaction() as s:
            s.execute(update(OutboxMessage).where(OutboxMessage.status == "pending",
                                                  OutboxMessage.not_before <= clock.now()).values(status="sent"))
    return steps, written(bot.db, before, end)


def set_up_keys(db: Database) -> set[str]:
    with db.transaction() as s:
        return set(s.scalars(select(OutboxMessage.dedupe_key)))


def written(db: Database, before: set[str], end: datetime) -> Counter[str]:
    """What the rules wrote, comparable between runs: each row by its key less the wait's row id, except
    the group notes of a chase, which one sweep joins per person (`以下 N 项…`) as its batch happens to
    hold them: those count as their lines, one entry a wait's note, wherever they were joined."""
    with db.transaction() as s:
        rows = s.execute(select(OutboxMessage.dedupe_key, OutboxMessage.target_id, OutboxMessage.payload)
                         .where(OutboxMessage.not_before <= end)).all()
    out: Counter[str] = Counter()
    for key, target, payload in rows:
        if key in before:
            continue
        if key.startswith(("nag:", "escalate:")) and ":chat" in key:
            first, *rest = Message.from_json(payload).plain_text.split("\n")
            out.update(f"note:{target}:{line}" for line in (rest or [first.split(" ", 1)[1]]))
        else:
            out[without_wait_id(key)] += 1
    return out


def without_wait_id(key: str) -> str:
    """`nag:task:12:overdue:529:1:dm` -> `nag:task:12:overdue:1:dm`: the key less its wait's row id."""
    return WAIT_ID.sub(r"\1", key)


WAIT_ID = re.compile(r"^((?:nag|escalate):[a-z]+:\d+:[a-z_]+):\d+")


def test_two_instances_fire_every_rule_once_over_a_simulated_week(pg_url: str, tmp_path: Path) -> None:
    _, ref_db = fresh_db(pg_url, "week_ref")
    ref_bot = populate(ref_db)
    end = MONDAY + timedelta(days=7)
    steps, expected = reference_run(ref_bot, end)
    ref_db.dispose()
    assert sum(expected.values()) > 500  # nags, escalations, overdue warnings, prompts and summaries all fired

    url, db = fresh_db(pg_url, "week_multi")
    bot = populate(db)
    before = set_up_keys(db)
    clock_file = tmp_path / "clock"
    clock_file.write_text(bot.clock.now().isoformat())
    config = write_config(tmp_path / "c.toml", url, port=0, extra="[delivery]\nper_platform_per_second = 100000\n"
                          "per_chat_per_minute = 100000\n")
    procs = []
    for _ in range(2):
        port_config = tmp_path / f"c{len(procs)}.toml"
        port_config.write_text(config.read_text().replace("port = 0", f"port = {free_port()}"))
        procs.append(ServeProcess(port_config, clock_file=clock_file))
    try:
        for when in steps:
            clock_file.write_text(when.isoformat())
            for p in procs:
                p.wait_for(lambda p=p, when=when: any(f"swept {when.isoformat()}" in line for line in p.log[-50:]),
                           what=f"a sweep at {when}")

            def drained(when: datetime = when) -> bool:
                with db.transaction() as s:
                    return not s.scalar(select(func.count()).select_from(OutboxMessage).where(
                        OutboxMessage.status == "pending", OutboxMessage.not_before <= when))

            procs[0].wait_for(drained, what=f"delivery at {when}")
    finally:
        for p in procs:
            p.stop()
    sent = Counter(m["key"] for p in procs for m in p.sent)
    per_process = [len(p.sent) for p in procs]
    print(f"simulated week: {len(steps)} steps, {sum(expected.values())} rule outputs, per process {per_process}")
    assert max(sent.values()) == 1
    # Two instances sweep the tasks in another order than one does, so the waits they open (an
    # overdue warning's, say) get other row ids, and a person's group notes are joined by whichever
    # sweep holds them: both runs are compared as `written` says, as multisets, so a rule that fired
    # twice for one task still shows as one entry too many.
    with db.transaction() as s:  # what is compared below is what the processes delivered, row for row
        rows = set(s.scalars(select(OutboxMessage.dedupe_key).where(OutboxMessage.not_before <= end))) - before
    assert set(sent) == rows
    want, got = expected, written(db, before, end)
    assert not want - got, sorted((want - got).elements())[:20]
    assert not got - want, sorted((got - want).elements())[:20]
    assert all(n > 0 for n in per_process)  # both instances did real work
    db.dispose()


def queue_slow_rows(db: Database, n: int) -> None:
    now = datetime.now(TZ)
    rows = [dict(dedupe_key=f"slow:{i}", platform="slowtest", target_kind="chat", target_id=f"c{i % 50}",
                 target_name="c", payload={"parts": [f"m{i}"], "card": None}, status="pending", attempts=0,
                 not_before=now, created_at=now, last_error="") for i in range(n)]
    with db.transaction() as s:
        s.execute(OutboxMessage.__table__.insert(), rows)


@pytest.mark.slow
def test_three_instances_with_sends_slower_than_the_lease_send_each_row_once(pg_url: str, tmp_path: Path) -> None:
    url, db = fresh_db(pg_url, "slow_instances")
    queue_slow_rows(db, 2000)
    figures = slow_instances(url, tmp_path, processes=3, rows=2000, delay=1.5, claim_seconds=1.0)
    print(f"3 instances, sends of 1.5 s under a 1 s lease: {figures}")
    assert figures["delivered"] == 2000 and figures["duplicates"] == 0 and figures["lost"] == 0
    assert figures["fewest_per_process"] > 0  # all three took part
    assert figures["metrics_sent"] == 2000  # /metrics counts every send, across the processes
    with db.transaction() as s:
        assert s.scalar(select(func.count()).select_from(OutboxMessage).where(OutboxMessage.status != "sent")) == 0
    db.dispose()
