"""Nothing is answered before it is durable: the inbound queue, its resumption, and the webhook's guards.

A platform does not retry a callback we answered, so the kit writes each verified event to the
inbound queue before answering, works it from there, and a restart resumes what a dead process left.
A card tap answered in time is made durable by the engine's own commit instead.
Follow-up work after the answer (fetching a Feishu approval instance) is durable too, with retries.
"""

from __future__ import annotations

import asyncio
import gzip
import json
import threading
import urllib.request
from collections.abc import AsyncIterator
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import func, select, update

from collabbot.adapters.feishu import crypto
from collabbot.bot.events import event_from_json, event_to_json
from collabbot.storage import inbound
from collabbot.storage.db import Database
from collabbot.storage.models import ApprovalRequest, InboundQueueItem, InboundReceipt, Task

from . import feishu_callbacks as cb
from .conftest import TZ
from .feishu_env import FeishuEnv, count, make_env
from .serve_process import ServeProcess, free_port, write_config
from .test_feishu_serve import ORG, post, wait

START = datetime(2026, 12, 1, 9, 0, tzinfo=TZ)
CREATE = "新建任务 活动H5开发 负责人 @_user_2 截止 12-10"


@pytest.fixture
async def env(sqlite_db: Database) -> AsyncIterator[FeishuEnv]:
    e = await make_env(sqlite_db, START)
    yield e
    await e.close()


def queued(db: Database) -> int:
    return count(db, InboundQueueItem)


async def test_an_answered_event_leaves_no_queue_row_once_worked(env: FeishuEnv) -> None:
    status, _ = await env.say(CREATE, sender="ou_zhang", mentions=[("ou_li", "李四")])
    assert status == 200 and count(env.db, Task) == 1
    await env.adapter.inbound.pipeline.hub.journal.put([])  # the next commit carries the pending delete
    assert queued(env.db) == 0


async def test_group_chatter_not_to_the_bot_is_neither_queued_nor_worked(env: FeishuEnv) -> None:
    assert (await env.say("大家好", sender="ou_zhang", bot=False))[0] == 200
    assert queued(env.db) == 0 and count(env.db, InboundReceipt) == 0


def test_every_event_kind_survives_its_queue_row() -> None:
    body = cb.message("@_user_1 " + CREATE, sender="ou_zhang", mentions=[("ou_bot", "bot"), ("ou_li", "李四")],
                      at=START)
    from collabbot.adapters.feishu import parse

    events = [parse.parse_callback(body, "ou_bot").what,
              parse.parse_callback(cb.card_action({"action": "v1|ack|task|1|0"}, operator="ou_li", message_id="om_1",
                                                  chat_id="oc_group", at=START), "ou_bot").what.event(True),
              parse.parse_callback(cb.bot_member("oc_x", "群", added=True, operator="ou_li", at=START), "ou_bot").what]
    for event in events:
        assert event_from_json(json.loads(json.dumps(event_to_json(event)))) == event
    with pytest.raises(ValueError):
        event_from_json({"kind": "nope"})


async def test_a_row_left_by_a_dead_process_is_resumed_after_a_restart(sqlite_db: Database) -> None:
    first = await make_env(sqlite_db, START)
    body = cb.message("@_user_1 " + CREATE, sender="ou_zhang", mentions=[("ou_bot", "bot"), ("ou_li", "李四")],
                      at=START)
    event = first.adapter.inbound.parse(body).what
    # the process wrote the row and answered, then died before the engine ran
    await first.hub.journal.put([("feishu", "event", event_to_json(event))])
    await first.close()
    assert queued(sqlite_db) == 1 and count(sqlite_db, Task) == 0

    second = await make_env(sqlite_db, START)  # its pipeline resumes at start
    try:
        await wait_until(lambda: count(sqlite_db, Task) == 1, second)
        await second.hub.journal.put([])
        assert queued(sqlite_db) == 0
        # the platform's retry of that same event now changes nothing
        assert (await second.post(body))[0] == 200 and count(sqlite_db, Task) == 1
    finally:
        await second.close()


async def test_on_postgresql_a_row_is_resumed_once_its_lease_ran_out(pg_database: Database) -> None:
    from .conftest import truncate_all

    truncate_all(pg_database)
    env = await make_env(pg_database, START)
    try:
        body = cb.message("@_user_1 " + CREATE, sender="ou_zhang", mentions=[("ou_bot", "bot"), ("ou_li", "李四")],
                          at=START)
        event = env.adapter.inbound.parse(body).what
        [ticket] = await env.hub.journal.put([("feishu", "event", event_to_json(event))])
        row_id = ticket.id
        pipeline = env.adapter.inbound.pipeline
        assert await pipeline.resume() == 0  # still leased to its (live, other) holder
        with pg_database.transaction() as s:
            s.execute(update(InboundQueueItem).where(InboundQueueItem.id == row_id).values(
                claimed_until=inbound.wall_now() - timedelta(seconds=1)))
        assert await pipeline.resume() == 1
        await pipeline.drain()
        assert count(pg_database, Task) == 1
    finally:
        await env.close()


async def wait_until(condition, env: FeishuEnv, rounds: int = 200) -> None:  # type: ignore[no-untyped-def]
    import asyncio

    for _ in range(rounds):
        await env.adapter.inbound.drain()
        if condition():
            return
        await asyncio.sleep(0.02)
    raise AssertionError("condition not met")


async def test_an_approval_fetch_that_fails_is_retried_from_its_row(sqlite_db: Database) -> None:
    env = await make_env(sqlite_db, START, approvals={"APPROVAL-1": "人力支持申请"})
    try:
        env.fake.add_approval_instance("INST-1", "APPROVAL-1", "APPROVED", "ou_zhang",
                                       [{"id": "w1", "name": "支持部门", "type": "input", "value": "技术部"}])
        env.fake.fail("server_error", method="GET", path="/open-apis/approval/v4/instances/", times=1)
        assert (await env.post(cb.approval_instance("APPROVAL-1", "INST-1", "APPROVED")))[0] == 200
        await env.adapter.inbound.drain()
        with sqlite_db.transaction() as s:
            row = s.scalar(select(InboundQueueItem))
            assert row is not None and row.attempts == 1 and "502" in row.last_error
            assert s.scalar(select(func.count()).select_from(ApprovalRequest)) == 0
            row.not_before = inbound.wall_now()  # its backoff has passed
        assert await env.adapter.inbound.pipeline.resume() == 1
        await env.adapter.inbound.drain()
        assert count(sqlite_db, ApprovalRequest) == 1
        await env.hub.journal.put([])
        assert queued(sqlite_db) == 0
    finally:
        await env.close()


async def test_compressed_deeply_nested_and_huge_bodies_are_refused_before_any_work(env: FeishuEnv) -> None:
    body = cb.message("@_user_1 " + CREATE, sender="ou_zhang", mentions=[("ou_bot", "bot"), ("ou_li", "李四")],
                      at=START)
    headers, raw = cb.envelope(body, at=START)
    bomb = gzip.compress(b"{" + b" " * 5_000_000 + b"}")
    response = await env.http.post(env.adapter.settings.path, data=bomb,
                                   headers=dict(headers, **{"Content-Encoding": "gzip"}))
    assert response.status == 415
    deep = b"[" * 100_000 + b"]" * 100_000
    for raw_body, signed in ((deep, True), (deep, False),
                             (json.dumps({"encrypt": crypto.encrypt(b"[" * 5000 + b"]" * 5000, cb.ENCRYPT_KEY,
                                                                    b"4" * 16)}).encode(), True)):
        ts, nonce = str(int(START.timestamp())), "n-deep"
        h = {crypto.TIMESTAMP_HEADER: ts, crypto.NONCE_HEADER: nonce,
             crypto.SIGNATURE_HEADER: crypto.signature(ts, nonce, cb.ENCRYPT_KEY, raw_body)} if signed else {}
        status, answer = await env.post_raw(h, raw_body)
        assert status == (400 if signed else 401) and answer == {"msg": "refused"}
    assert count(env.db, Task) == 0 and queued(env.db) == 0
    assert (await env.post_raw(headers, raw))[0] == 200 and count(env.db, Task) == 1


@pytest.mark.slow
def test_a_burst_then_kill_9_loses_no_acknowledged_callback(tmp_path: Path) -> None:
    """Every callback answered 200 becomes a task, though the process is killed right after the last answer."""
    from .fake_feishu import ThreadedFake

    (tmp_path / "org.toml").write_text(ORG, encoding="utf-8")
    db_url = f"sqlite:///{tmp_path / 'bot.db'}"
    port = free_port()
    with ThreadedFake() as fake:
        config = write_config(tmp_path / "config.toml", db_url, port=port, extra=f"""
[bot]
org_file = "org.toml"
[feishu]
app_id = "{fake.app_id}"
app_secret = "{fake.app_secret}"
verification_token = "{cb.TOKEN}"
encrypt_key = "{cb.ENCRYPT_KEY}"
bot_open_id = "ou_bot"
base_url = "{fake.url}"
stale_message_seconds = 0
answer_within_seconds = 0.02
""")
        url = f"http://127.0.0.1:{port}/feishu/events"
        serve = ServeProcess(config)

        def healthy() -> bool:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=2) as r:
                    return r.status == 200
            except OSError:
                return False

        answered: list[str] = []
        lock = threading.Lock()

        def one(i: int) -> None:
            now = datetime.now(TZ)
            due = (now + timedelta(days=30)).date().isoformat()  # serve's clock is the system's: never past
            body = cb.message(f"@_user_1 新建任务 任务{i} 负责人 @_user_2 截止 {due}", sender="ou_zhang",
                              mentions=[("ou_bot", "bot"), ("ou_li", "李四")], at=now, message_id=f"om_burst_{i}")
            if post(url, *cb.envelope(body, at=now))[0] == 200:
                with lock:
                    answered.append(f"任务{i}")

        try:
            wait(healthy, "the server", serve)
            with ThreadPoolExecutor(24) as pool:
                list(pool.map(one, range(400)))
        finally:
            serve.kill()  # kill -9 the moment the last answer went out (and never left running)
        db = Database(db_url)
        try:
            with db.transaction() as s:
                done_before = s.scalar(select(func.count()).select_from(Task))
            restarted = ServeProcess(config)
            try:
                wait(lambda: count(db, Task) >= len(answered), "every acknowledged task after the restart",
                     restarted, timeout=60)
                with db.transaction() as s:
                    titles = set(s.scalars(select(Task.title)))
                assert set(answered) <= titles and len(titles) == count(db, Task)  # none lost, none twice
            finally:
                restarted.stop()
        finally:
            db.dispose()
        print(f"\nburst: {len(answered)} answered, {done_before} done before kill -9, "
              f"{len(answered) - done_before} resumed after the restart")


async def test_a_database_stall_is_answered_in_time_from_the_spool_and_loses_nothing(
        sqlite_db: Database, tmp_path: Path) -> None:
    import asyncio
    import sqlite3
    import time

    from collabbot.adapters.kit.spool import Spool

    env = await make_env(sqlite_db, START)
    env.hub.journal.spool = Spool(tmp_path / "inbound.spool")  # spool_after as configured: 1 s
    try:
        blocker = sqlite3.connect(str(sqlite_db.engine.url.database), timeout=0, isolation_level=None)
        blocker.execute("BEGIN IMMEDIATE")  # the database stalls for 5 s: no writer gets in
        release = asyncio.get_running_loop().call_later(5.0, blocker.rollback)
        started = time.monotonic()

        async def create(i: int) -> float:
            body = cb.message(f"@_user_1 新建任务 停顿{i} 负责人 @_user_2 截止 12-30", sender="ou_zhang",
                              mentions=[("ou_bot", "bot"), ("ou_li", "李四")], at=START, event_id=f"stall-{i}")
            headers, raw = cb.envelope(body, at=START)
            response = await env.http.post(env.adapter.settings.path, data=raw, headers=headers)
            assert response.status == 200
            return time.monotonic() - started

        answered = await asyncio.gather(*(create(i) for i in range(3)))
        assert max(answered) < 2.5  # within Feishu's 3 s although nothing could be written
        assert time.monotonic() - started < 5.0  # answered during the stall, not after it
        assert len(Spool(tmp_path / "inbound.spool").pending()) == 3  # durable meanwhile, in the spool
        await asyncio.sleep(0)
        await env.adapter.inbound.drain()  # the stall ends; the engine finishes the work
        release.cancel()
        blocker.close()
        assert count(sqlite_db, Task) == 3
        assert Spool(tmp_path / "inbound.spool").pending() == []  # it reached the database: marked landed
    finally:
        await env.close()


async def test_rows_left_in_the_spool_by_a_dead_process_are_worked_at_the_next_start(
        sqlite_db: Database, tmp_path: Path) -> None:
    from collabbot.adapters.hub import Hub
    from collabbot.adapters.kit.spool import Spool

    spool = Spool(tmp_path / "inbound.spool")
    body = cb.message("@_user_1 " + CREATE, sender="ou_zhang", mentions=[("ou_bot", "bot"), ("ou_li", "李四")],
                      at=START)
    env = await make_env(sqlite_db, START)
    event = env.adapter.inbound.parse(body).what
    await env.close()
    spool.append([("feishu", "event", event_to_json(event))])
    with spool.path.open("a", encoding="utf-8") as f:
        f.write('{"id": "torn')  # a crash in the middle of a line
    env = await make_env(sqlite_db, START)
    try:
        hub = Hub(env.bot, spool=spool)  # what `serve` builds: the spool beside the database
        assert await hub.journal.recover() == 1 and spool.pending() == []
        assert await env.adapter.inbound.pipeline.resume(after_start=True) == 1
        await env.adapter.inbound.drain()
        assert count(sqlite_db, Task) == 1
        hub.close()
    finally:
        await env.close()


def test_the_start_check_of_the_spool_leaves_no_file_behind_but_keeps_one_with_rows(tmp_path: Path) -> None:
    """`serve` probes that the spool can be written; an empty probe file would litter the directory."""
    from collabbot.adapters.kit.spool import Spool

    spool = Spool(tmp_path / "inbound.spool")
    spool.check()
    assert not spool.path.exists()
    spool.append([("feishu", "event", {"x": 1})])
    spool.check()
    assert len(spool.pending()) == 1


async def test_the_backlog_works_in_order_on_one_thread_and_hands_every_result_back() -> None:
    """Queued engine calls run one after the other on one thread (never on the one kept for taps); each
    result, a failure included, reaches its caller on the loop, in batches that wake the delivery once."""
    from collabbot.adapters.hub import Backlog

    opened, threads, worked, results, deliveries = threading.Event(), set(), [], [], []

    def run(event: Any) -> Any:
        opened.wait(5)
        threads.add(threading.current_thread().name)
        worked.append(event)
        if event == "bad":
            raise ValueError(event)
        return event.upper()

    backlog = Backlog(run, lambda: None, lambda: deliveries.append(len(results)))
    for event in ["a", "bad", "b", "c"]:
        backlog.put(event, results.append)
    assert backlog.pending == 4 and results == []  # nothing is worked on the loop
    opened.set()
    await backlog.settled()
    assert [r if isinstance(r, str) else type(r) for r in results] == ["A", ValueError, "B", "C"]
    assert threads == {"collabbot-backlog"} and backlog.pending == 0
    assert 1 <= len(deliveries) <= 4  # once per batch handed back
    backlog.put("d", results.append)
    backlog.close()  # what is queued is worked before the thread stops
    assert worked == ["a", "bad", "b", "c", "d"] and threads == {"collabbot-backlog"}


async def test_a_tap_during_a_burst_of_messages_is_answered_before_the_backlog(sqlite_db: Database) -> None:
    """Messages are answered once durable and worked behind; a tap's answer carries its card, so it
    goes before them in the engine and keeps its deadline however long the backlog."""
    import asyncio

    env = await make_env(sqlite_db, START)
    held = threading.Event()  # a slow engine, held for certain: how far a real one gets is the machine's
    try:
        assert (await env.say(CREATE, sender="ou_zhang", mentions=[("ou_li", "李四")]))[0] == 200
        await env.deliver()
        [owner_card] = [m for m in env.fake.sent("ou_li") if m["msg_type"] == "interactive"]
        ack = next(v for v in cb.button_values(owner_card["content"]) if "|ack|" in v)
        env.hub.backlog._give_way = lambda: held.wait(10)

        async def message(i: int) -> Any:
            body = cb.message(f"@_user_1 新建任务 积压{i} 负责人 @_user_2 截止 12-30", sender="ou_zhang",
                              mentions=[("ou_bot", "bot"), ("ou_li", "李四")], at=START, event_id=f"burst-{i}")
            headers, raw = cb.envelope(body, at=START)
            return await env.http.post(env.adapter.settings.path, data=raw, headers=headers)

        burst = await asyncio.gather(*(message(i) for i in range(30)))
        assert all(r.status == 200 for r in burst)  # all answered, and the engine is behind
        tap = cb.card_action({"action": ack}, operator="ou_li", message_id=owner_card["message_id"],
                             chat_id="oc_p2p_ou_li", at=START)
        headers, raw = cb.envelope(tap, at=START)
        response = await env.http.post(env.adapter.settings.path, data=raw, headers=headers)
        answer = await response.json()
        assert answer["card"]["type"] == "raw"  # the tap got its card in time
        assert count(sqlite_db, Task) == 1  # ... while every message answered before it was still queued
        assert env.hub.backlog.pending >= 30
        held.set()
        await env.adapter.inbound.drain()
        assert count(sqlite_db, Task) == 31
    finally:
        held.set()
        await env.close()


async def test_a_tap_answered_in_time_is_made_durable_by_the_engine_alone(env: FeishuEnv) -> None:
    """The engine's commit (with the tap's receipt) comes before the answer: no queue row is needed."""
    from sqlalchemy import event

    assert (await env.say(CREATE, sender="ou_zhang", mentions=[("ou_li", "李四")]))[0] == 200
    await env.deliver()
    [owner_card] = [m for m in env.fake.sent("ou_li") if m["msg_type"] == "interactive"]
    ack = next(v for v in cb.button_values(owner_card["content"]) if "|ack|" in v)
    queue_writes: list[str] = []

    def seen(_conn: Any, _cursor: Any, statement: str, *_: Any) -> None:
        if "inbound_queue" in statement:
            queue_writes.append(statement)

    event.listen(env.db.engine, "before_cursor_execute", seen)
    try:
        status, answer = await env.post(cb.card_action({"action": ack}, operator="ou_li",
                                                       message_id=owner_card["message_id"], chat_id="oc_p2p_ou_li",
                                                       at=START))
    finally:
        event.remove(env.db.engine, "before_cursor_execute", seen)
    assert status == 200 and answer["card"]["type"] == "raw"
    assert queue_writes == []
    with env.db.transaction() as s:
        assert s.scalar(select(Task)).acknowledged_at is not None
        assert s.scalar(select(func.count()).select_from(InboundReceipt)) == 2  # the message's and the tap's


async def test_a_tap_the_engine_cannot_finish_in_time_is_written_down_before_its_answer(
        sqlite_db: Database, tmp_path: Path) -> None:
    """The database stalls under a tap: its event goes to the queue (here, the spool) before the answer,
    the answer comes in time and empty, and the tap takes effect once the stall ends."""
    import asyncio
    import sqlite3
    import time

    from collabbot.adapters.kit.spool import Spool

    env = await make_env(sqlite_db, START)
    env.hub.journal.spool = Spool(tmp_path / "inbound.spool")
    try:
        assert (await env.say(CREATE, sender="ou_zhang", mentions=[("ou_li", "李四")]))[0] == 200
        await env.deliver()
        [owner_card] = [m for m in env.fake.sent("ou_li") if m["msg_type"] == "interactive"]
        ack = next(v for v in cb.button_values(owner_card["content"]) if "|ack|" in v)
        blocker = sqlite3.connect(str(sqlite_db.engine.url.database), timeout=0, isolation_level=None)
        blocker.execute("BEGIN IMMEDIATE")
        release = asyncio.get_running_loop().call_later(3.5, blocker.rollback)
        headers, raw = cb.envelope(cb.card_action({"action": ack}, operator="ou_li",
                                                  message_id=owner_card["message_id"], chat_id="oc_p2p_ou_li",
                                                  at=START), at=START)
        started = time.monotonic()
        response = await env.http.post(env.adapter.settings.path, data=raw, headers=headers)
        status, answer = response.status, await response.json()
        took = time.monotonic() - started
        assert status == 200 and answer.get("toast", {}).get("type") == "info" and "card" not in answer and took < 2.9  # 3 s
        [(platform, kind, payload)] = Spool(tmp_path / "inbound.spool").pending()  # durable before the answer
        tapped = event_from_json(payload)
        assert (platform, kind, tapped.value) == ("feishu", "event", ack)
        await asyncio.sleep(0)
        await env.adapter.inbound.drain()
        release.cancel()
        blocker.close()
        with sqlite_db.transaction() as s:
            assert s.scalar(select(Task)).acknowledged_at is not None
        assert Spool(tmp_path / "inbound.spool").pending() == []
    finally:
        await env.close()


async def test_background_work_gives_way_while_answering_is_saturated_but_never_for_long(
        sqlite_db: Database, monkeypatch: pytest.MonkeyPatch) -> None:
    """Answers have a deadline and queued work has none: with BUSY callbacks being answered, a queued
    message's engine work waits until they are answered (a tap's does not), and never longer than
    YIELD_TO_ANSWERS."""
    import asyncio
    from contextlib import ExitStack

    from collabbot.adapters import hub as hub_module

    env = await make_env(sqlite_db, START)
    try:
        monkeypatch.setattr(hub_module, "YIELD_TO_ANSWERS", 5.0)
        with ExitStack() as answering:  # as many callbacks being answered as saturate the loop
            for _ in range(hub_module.BUSY):
                answering.enter_context(env.hub.answer())
            headers, raw = cb.envelope(cb.message("@_user_1 " + CREATE, sender="ou_zhang", at=START,
                                                  mentions=[("ou_bot", "bot"), ("ou_li", "李四")]), at=START)
            response = await env.http.post(env.adapter.settings.path, data=raw, headers=headers)
            assert response.status == 200 and queued(sqlite_db) == 1  # answered, durable ...
            await asyncio.sleep(0.1)
            assert count(sqlite_db, Task) == 0  # ... and its work gives way to the answers under way
            tapped = asyncio.get_running_loop().time()
            headers, raw = cb.envelope(cb.card_action({"action": "v1|help|none|0|0"}, operator="ou_li",
                                                      message_id="om_x", chat_id="oc_group", at=START), at=START)
            response = await env.http.post(env.adapter.settings.path, data=raw, headers=headers)
            assert response.status == 200 and "toast" in await response.json()  # a tap's engine call does not wait ...
            assert asyncio.get_running_loop().time() - tapped < 2.5
            assert count(sqlite_db, Task) == 0  # ... nor does it let the queued work through
        await asyncio.wait_for(env.adapter.inbound.drain(), 5)  # answered: the work goes on
        assert count(sqlite_db, Task) == 1 and queued(sqlite_db) == 0

        monkeypatch.setattr(hub_module, "YIELD_TO_ANSWERS", 0.2)
        with ExitStack() as answering:  # answering never stops: the work waits a bounded time only
            for _ in range(hub_module.BUSY):
                answering.enter_context(env.hub.answer())
            started = asyncio.get_running_loop().time()
            await env.say("新建任务 第二件事 负责人 @_user_2 截止 12-11", sender="ou_zhang", mentions=[("ou_li", "李四")])
            assert count(sqlite_db, Task) == 2
            assert asyncio.get_running_loop().time() - started >= 0.2
        assert env.hub.answering == 0
    finally:
        await env.close()


async def test_callbacks_read_a_turn_of_the_loop_apart_share_one_journal_commit(sqlite_db: Database) -> None:
    """Under load the loop reads callbacks one after another; each commit is a hand-off to the journal's
    thread that costs more than its rows, so the rows of callbacks ready within a couple of turns go together."""
    from collabbot.adapters.hub import Journal

    journal = Journal(sqlite_db)
    try:
        async def put_after(turns: int, n: int) -> list[int | None]:
            for _ in range(turns):
                await asyncio.sleep(0)
            tickets = await journal.put([("feishu", "event", {"n": n})])
            return [t.id for t in tickets]

        ids = await asyncio.gather(*(put_after(turns, turns) for turns in (0, 1, 2)))
        assert journal.commits == 1
        with sqlite_db.transaction() as s:
            payloads = {r.id: r.payload["n"] for r in s.scalars(select(InboundQueueItem))}
        assert [payloads[i] for [i] in ids] == [0, 1, 2]  # each callback's own row
    finally:
        journal.close()
