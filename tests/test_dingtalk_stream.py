"""Stream mode against the fake DingTalk: frames acked at once (a robot message once it is durable), pings echoed, taps answered with the new
card, `disconnect` reconnected at once (work under way acking on the old socket), a dead socket replaced and a
quiet one kept, a message that could not be kept logged as lost, repeats harmless, two instances on one database."""

from __future__ import annotations

import asyncio
import json
import logging
import time
from datetime import datetime
from pathlib import Path

import pytest
from sqlalchemy import select

from collabbot.bot.replies import CardAction
from collabbot.storage.db import Database
from collabbot.storage.models import InboundQueueItem, Task

from . import dingtalk_payloads as p
from .conftest import TZ
from .dingtalk_env import GROUP, NAMES, DingTalkEnv, make_env
from .fake_dingtalk import FakeDingTalk
from .feishu_env import count

START = datetime(2026, 12, 1, 9, 0, tzinfo=TZ)
CREATE = "新建任务 活动H5开发 负责人 @李四 截止 12-10"


async def stream_env(db: Database, fake: FakeDingTalk | None = None, **kw: object) -> DingTalkEnv:
    env = await make_env(db, START, fake=fake, mode="stream", **kw)
    await env.fake.wait_connected()
    return env


def create(env: DingTalkEnv, **kw: object) -> dict:
    return p.robot_message(CREATE, sender=NAMES["张三"], at=env.clock.now(), at_users=[NAMES["李四"]], **kw)


async def settle(env: DingTalkEnv) -> None:
    assert env.adapter.stream is not None
    await env.adapter.stream.drain()


async def a_message_is_worked(env: DingTalkEnv, db: Database) -> None:
    """A task created now over the current connection: the stream works (the first task of the test)."""
    await env.fake.robot_message(create(env))
    await settle(env)
    assert count(db, Task) == 1


async def test_a_group_message_is_acked_at_once_and_creates_a_task(sqlite_db: Database) -> None:
    env = await stream_env(sqlite_db)
    try:
        started = time.monotonic()
        ack = await env.fake.robot_message(create(env), message_id="frame-a")
        assert time.monotonic() - started < 0.5  # acked once durable, not after the engine's work
        assert ack["code"] == 200 and ack["headers"]["messageId"] == "frame-a"
        assert count(sqlite_db, InboundQueueItem) + count(sqlite_db, Task) >= 1  # ... but never before it is kept
        await settle(env)
        with sqlite_db.transaction() as s:
            task = s.scalar(select(Task))
        assert task is not None and task.title == "活动H5开发"
        await env.deliver()
        assert [m for m in env.fake.sent(NAMES["李四"]) if m["kind"] == "card"]
    finally:
        await env.close()


async def test_chatter_without_the_robot_mentioned_is_acked_and_ignored(sqlite_db: Database) -> None:
    env = await stream_env(sqlite_db)
    try:
        ack = await env.fake.robot_message(create(env, to_robot=False))
        assert ack["code"] == 200
        await settle(env)
        assert count(sqlite_db, Task) == 0
    finally:
        await env.close()


async def test_ping_is_answered_with_its_opaque(sqlite_db: Database) -> None:
    env = await stream_env(sqlite_db)
    try:
        ack = await env.fake.ping(message_id="ping-1")
        assert ack["code"] == 200 and ack["headers"]["messageId"] == "ping-1"
        assert json.loads(ack["data"])["opaque"].startswith("opaque-")
    finally:
        await env.close()


async def test_a_tap_is_answered_within_two_seconds_with_the_new_card_and_the_group_copy_follows(
        sqlite_db: Database) -> None:
    env = await stream_env(sqlite_db)
    try:
        await env.fake.robot_message(create(env))
        await settle(env)
        await env.deliver()
        [private] = [m for m in env.fake.sent(NAMES["李四"]) if m["kind"] == "card"]
        [group] = [m for m in env.fake.sent(GROUP) if m["kind"] == "card" and m["content"]["cardParamMap"]["kind"] == "task"]
        params = private["content"]["cardParamMap"]
        ack_value = next(v for k, v in params.items() if k.endswith("_action") and (a := CardAction.unpack(v)) and a.action == "ack")
        started = time.monotonic()
        answer = await env.fake.card_callback(p.card_callback(ack_value, user=NAMES["李四"], out_track_id=private["id"],
                                                              space_id=NAMES["李四"], group=False))
        assert time.monotonic() - started < 2.0
        new = answer["cardData"]["cardParamMap"]
        assert ack_value not in new.values() and answer["cardUpdateOptions"] == {"updateCardDataByKey": True}
        await settle(env)
        await env.deliver()
        [update] = env.fake.messages[group["id"]]["updates"]
        assert ack_value not in update.values()
        assert env.fake.messages[private["id"]]["updates"] == []  # the tapped copy rode the ack
    finally:
        await env.close()


async def test_disconnect_reconnects_at_once(sqlite_db: Database) -> None:
    env = await stream_env(sqlite_db)
    try:
        first = env.fake.live()[-1]
        started = time.monotonic()
        await env.fake.disconnect()
        while not (env.fake.live() and env.fake.live()[-1] is not first):
            assert time.monotonic() - started < 3.0, "no new connection after disconnect"
            await asyncio.sleep(0.02)
        assert env.fake.open_calls == 2 and env.adapter.stream.disconnects == 1  # type: ignore[union-attr]
        await a_message_is_worked(env, sqlite_db)  # the new connection works
    finally:
        await env.close()


async def test_a_dead_socket_is_noticed_by_our_pings_and_replaced(sqlite_db: Database) -> None:
    fake = FakeDingTalk()
    await fake.start()
    fake.dead_first = 1  # the first connection stays open but carries nothing: no frame, no pong
    env = await make_env(sqlite_db, START, fake=fake, mode="stream", watchdog_seconds=0.5)
    try:
        started = time.monotonic()
        await fake.wait_connected(timeout=5)
        assert time.monotonic() - started < 3.0
        assert env.adapter.stream.kicks >= 1 and fake.open_calls >= 2  # type: ignore[union-attr]
        await a_message_is_worked(env, sqlite_db)
    finally:
        await env.close()


async def test_a_quiet_but_alive_socket_is_kept(sqlite_db: Database) -> None:
    """No frame at all for several watchdog periods: our pings are answered, so nothing reconnects."""
    env = await stream_env(sqlite_db, watchdog_seconds=0.4)  # a ping after 0.2 s of quiet
    try:
        [ws] = env.fake.live()
        started = time.monotonic()
        while ws.pings < 6:  # type: ignore[attr-defined]  # three watchdog periods, not a frame sent
            assert time.monotonic() - started < 5.0, "the client does not ping"
            await asyncio.sleep(0.05)
        stream = env.adapter.stream
        assert stream is not None and stream.kicks == 0 and stream.frames == 0
        assert env.fake.open_calls == 1 and env.fake.live() == [ws]
        await a_message_is_worked(env, sqlite_db)  # and it still works
    finally:
        await env.close()


async def test_after_disconnect_work_under_way_acks_on_the_old_socket(sqlite_db: Database) -> None:
    """DingTalk keeps the old socket ~10 s after `disconnect`: a message being kept when it comes is
    acked there, while the new connection is already open."""
    env = await stream_env(sqlite_db)
    inbound = env.adapter.inbound
    gate, keep = asyncio.Event(), inbound.robot_message

    async def slow_keep(data: object) -> None:  # the durable write held back until the new connection is up
        await gate.wait()
        await keep(data)

    inbound.robot_message = slow_keep  # type: ignore[method-assign]
    try:
        old = env.fake.live()[-1]
        acked = asyncio.create_task(env.fake.robot_message(create(env), message_id="frame-during"))
        while env.adapter.stream.frames < 1:  # type: ignore[union-attr]
            await asyncio.sleep(0.01)
        await env.fake.disconnect(old)
        started = time.monotonic()
        while not [ws for ws in env.fake.live() if ws is not old]:
            assert time.monotonic() - started < 3.0, "no new connection after disconnect"
            await asyncio.sleep(0.02)
        assert not old.closed and not acked.done()  # the old socket waits for the work under way
        gate.set()
        assert (await acked)["code"] == 200
        assert [a["headers"]["messageId"] for a in old.acks] == ["frame-during"]  # type: ignore[attr-defined]
        await settle(env)
        assert old.closed and count(sqlite_db, Task) == 1  # ... and is closed once it is done
    finally:
        gate.set()
        await env.close()


async def test_a_redelivered_frame_and_a_repushed_message_change_nothing(sqlite_db: Database) -> None:
    env = await stream_env(sqlite_db)
    try:
        env.fake.redeliver_after = 0.0  # the fake's opt-in: the same frame twice (DingTalk itself does not resend)
        message = create(env)
        await env.fake.robot_message(message, message_id="frame-x")
        env.fake.redeliver_after = None
        await env.fake.robot_message(message, message_id="frame-y")  # the same msgId in a new frame
        await settle(env)
        await env.deliver()
        assert count(sqlite_db, Task) == 1
        assert env.adapter.inbound.duplicates >= 1
        assert len([a for a in env.fake.acks if a["headers"]["messageId"] == "frame-x"]) >= 1
    finally:
        await env.close()


async def test_two_instances_each_hold_a_stream_and_a_message_on_both_makes_one_task(db: Database) -> None:
    """Each `serve` instance holds its own stream; DingTalk may hand a redelivery to the other one."""
    fake = FakeDingTalk()
    await fake.start()
    first = await make_env(db, START, fake=fake, mode="stream")
    second = await make_env(db, START, fake=fake, mode="stream")
    try:
        await fake.wait_connected(2)
        a, b = fake.live()[:2]
        message = create(first)
        await asyncio.gather(fake.robot_message(message, ws=a, message_id="f-1"),
                             fake.robot_message(message, ws=b, message_id="f-2"))
        await asyncio.gather(settle(first), settle(second))
        assert count(db, Task) == 1
    finally:
        await second.close()
        await first.close()


async def test_a_tap_the_engine_misses_the_deadline_for_is_answered_empty_then_updated_by_the_api(
        sqlite_db: Database) -> None:
    env = await make_env(sqlite_db, START)  # HTTP mode
    try:
        await env.post(create(env))
        await env.adapter.inbound.drain()
        await env.deliver()
        env.adapter.inbound.pipeline.answer_within = 0.0  # the engine always late, however fast the machine
        [private] = [m for m in env.fake.sent(NAMES["李四"]) if m["kind"] == "card"]
        params = private["content"]["cardParamMap"]
        ack_value = next(v for k, v in params.items()
                         if k.endswith("_action") and (a := CardAction.unpack(v)) and a.action == "ack")
        status, answer = await env.post(p.card_callback(ack_value, user=NAMES["李四"], out_track_id=private["id"],
                                                        space_id=NAMES["李四"], group=False))
        assert status == 200 and answer == {}
        await env.adapter.inbound.drain()
        [update] = env.fake.messages[private["id"]]["updates"]
        assert ack_value not in update.values()
        with sqlite_db.transaction() as s:
            assert s.scalar(select(Task)).acknowledged_at is not None
    finally:
        await env.close()


async def test_a_robot_message_that_cannot_be_kept_is_logged_as_lost_and_not_acked_as_ok(
        sqlite_db: Database, caplog: pytest.LogCaptureFixture) -> None:
    """DingTalk does not deliver a robot message again (fire-forget): one the queue refused is lost, and says so."""
    env = await stream_env(sqlite_db)
    try:
        with sqlite_db.engine.begin() as conn:  # the queue cannot take the row: a real failure, not a stand-in
            conn.exec_driver_sql("ALTER TABLE inbound_queue RENAME TO inbound_queue_away")
        with caplog.at_level(logging.ERROR, logger="collabbot.adapters.dingtalk.stream"):
            ack = await env.fake.robot_message(create(env), message_id="frame-lost")
        assert ack["code"] != 200 and env.adapter.stream.lost == 1  # type: ignore[union-attr]
        assert any("frame-lost LOST" in r.getMessage() for r in caplog.records)
        with sqlite_db.engine.begin() as conn:
            conn.exec_driver_sql("ALTER TABLE inbound_queue_away RENAME TO inbound_queue")
        await settle(env)
        assert count(sqlite_db, Task) == 0 and len(env.fake.acks) == 1  # nothing came again
        # were the same frame delivered again, it would be worked: it was not marked seen
        ack = await env.fake.robot_message(create(env), message_id="frame-lost")
        await settle(env)
        assert ack["code"] == 200 and count(sqlite_db, Task) == 1
    finally:
        await env.close()


async def test_metrics_say_whether_the_stream_is_up(sqlite_db: Database) -> None:
    """An admin's alert needs more than /healthz (the database): whether the platform's connection is up."""
    from aiohttp.test_utils import TestClient, TestServer

    from collabbot.adapters.serve import build_app

    fake = FakeDingTalk()
    fake.ping_every = 0.1
    env = await make_env(sqlite_db, START, fake=fake, mode="stream", watchdog_seconds=0.5)
    http = TestClient(TestServer(build_app(env.bot.config, env.bot, [env.adapter], env.hub)))
    await http.start_server()
    try:
        await fake.wait_connected(timeout=5)

        async def gauge() -> str:
            text = await (await http.get("/metrics")).text()
            return next(line for line in text.splitlines() if line.startswith("collabbot_platform_connected"))

        assert await gauge() == 'collabbot_platform_connected{platform="dingtalk"} 1'
        # the database gone (its file moved away): /metrics still answers with what the process knows
        path = Path(sqlite_db.url.removeprefix("sqlite:///"))
        sqlite_db.engine.dispose()
        path.rename(path.with_suffix(".away"))
        try:
            response = await http.get("/metrics")
            text = await response.text()
            assert response.status == 200 and "collabbot_database_up 0" in text and "collabbot_outbox_pending" not in text
            assert await gauge() == 'collabbot_platform_connected{platform="dingtalk"} 1'
        finally:
            sqlite_db.engine.dispose()
            path.unlink(missing_ok=True)
            path.with_suffix(".away").rename(path)
        assert "collabbot_database_up 1" in await (await http.get("/metrics")).text()
        await env.adapter.stream.stop()  # type: ignore[union-attr]
        assert await gauge() == 'collabbot_platform_connected{platform="dingtalk"} 0'
    finally:
        await http.close()
        await env.close()
