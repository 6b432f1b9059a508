"""Stream mode against the fake DingTalk: frames acked at once (a robot message once it is durable), pings echoed, taps answered with the new
card, `disconnect` and a silent socket reconnected, redeliveries harmless, two instances on one database."""

from __future__ import annotations

import asyncio
import json
import time
from datetime import datetime

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
        await env.fake.robot_message(create(env))  # the new connection works
        await settle(env)
        assert count(sqlite_db, Task) == 1
    finally:
        await env.close()


async def test_a_silent_socket_is_noticed_by_the_watchdog_and_replaced(sqlite_db: Database) -> None:
    fake = FakeDingTalk()
    await fake.start()
    fake.silent_first = 1  # the first connection never hears a frame, not even a ping
    env = await make_env(sqlite_db, START, fake=fake, mode="stream", watchdog_seconds=0.5)
    try:
        started = time.monotonic()
        await fake.wait_connected(timeout=5)
        assert time.monotonic() - started < 3.0
        assert env.adapter.stream.kicks >= 1 and fake.open_calls >= 2  # type: ignore[union-attr]
        await fake.robot_message(create(env))
        await settle(env)
        assert count(sqlite_db, Task) == 1
    finally:
        await env.close()


async def test_a_redelivered_frame_and_a_repushed_message_change_nothing(sqlite_db: Database) -> None:
    env = await stream_env(sqlite_db)
    try:
        env.fake.redeliver_after = 0.0  # DingTalk sends the frame again before it sees the ack
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
    env = await make_env(sqlite_db, START, answer_within_seconds=0.01)  # HTTP mode: the engine always late
    try:
        await env.post(create(env))
        await env.adapter.inbound.drain()
        await env.deliver()
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


async def test_a_robot_message_that_cannot_be_kept_is_not_acked_and_its_redelivery_is_worked(
        sqlite_db: Database) -> None:
    env = await stream_env(sqlite_db)
    try:
        with sqlite_db.engine.begin() as conn:  # the queue cannot take the row: a real failure, not a stand-in
            conn.exec_driver_sql("ALTER TABLE inbound_queue RENAME TO inbound_queue_away")
        frame = create(env)
        try:
            await env.fake.robot_message(frame, message_id="frame-lost", timeout=0.5)
            raise AssertionError("a message that was not kept was acked")
        except TimeoutError:
            pass
        with sqlite_db.engine.begin() as conn:
            conn.exec_driver_sql("ALTER TABLE inbound_queue_away RENAME TO inbound_queue")
        ack = await env.fake.robot_message(frame, message_id="frame-lost")  # DingTalk delivers it again
        assert ack["code"] == 200
        await settle(env)
        assert count(sqlite_db, Task) == 1
    finally:
        await env.close()
