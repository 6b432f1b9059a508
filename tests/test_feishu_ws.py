"""Long-connection mode: lark-oapi's real ws.Client against the fake's endpoint and protobuf frames.

Events arrive on the socket and reach the engine through the same dispatcher as the webhook; when
the socket goes silent (no pong, no event) the watchdog makes the client connect again.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable
from datetime import datetime
from typing import Any

import pytest

from collabbot.bot.replies import CardAction
from collabbot.storage.db import Database
from collabbot.storage.models import Task

from . import feishu_callbacks as cb
from .conftest import TZ
from .fake_feishu import FakeFeishu
from .feishu_env import FeishuEnv, count, make_env

START = datetime(2026, 12, 1, 9, 0, tzinfo=TZ)


async def until(condition: Callable[[], bool], timeout: float = 20, what: str = "condition") -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.05)


@pytest.fixture
async def env(sqlite_db: Database) -> AsyncIterator[FeishuEnv]:
    # a watchdog far longer than the fake's 1 s pings: a busy machine's pause must not look like a dead socket
    e = await make_env(sqlite_db, START, mode="websocket", verification_token="", watchdog_seconds=15)
    yield e
    await e.close()


async def test_events_on_the_long_connection_reach_the_engine(env: FeishuEnv) -> None:
    connection = env.adapter.long_connection
    await until(lambda: bool(env.fake.ws_connections), what="the client to connect")
    await until(lambda: env.adapter.connected() is True, what="/metrics to see the connection up")
    body = cb.message("@_user_1 新建任务 周报模板 负责人 @_user_2", sender="ou_zhang",
                      mentions=[("ou_bot", "bot"), ("ou_li", "李四")], at=START, token="")
    answer = await env.fake.push_event(body)
    assert answer["code"] == 200 and not answer.get("data")
    await env.adapter.inbound.drain()
    assert count(env.db, Task) == 1
    await env.fake.push_event(body)  # the same message again: nothing new
    await env.adapter.inbound.drain()
    assert count(env.db, Task) == 1
    garbage = await env.fake.push_event({"schema": "2.0"})
    assert garbage["code"] == 200  # acknowledged (and logged), never retried forever
    assert connection.frames >= 3 and connection.kicks == 0


async def owner_card_with_ack(env: FeishuEnv) -> tuple[dict[str, Any], str]:
    """A task created over the long connection: the owner's sent card and its 确认收到 button's value."""
    await until(lambda: bool(env.fake.ws_connections), what="the client to connect")
    await env.fake.push_event(cb.message("@_user_1 新建任务 周报模板 负责人 @_user_2", sender="ou_zhang",
                                         mentions=[("ou_bot", "bot"), ("ou_li", "李四")], at=START, token=""))
    await env.adapter.inbound.drain()
    await env.deliver()
    [card] = [m for m in env.fake.sent("ou_li") if m["msg_type"] == "interactive"]
    return card, next(v for v in cb.button_values(card["content"]) if CardAction.unpack(v).action == "ack")


async def test_a_card_tap_on_the_long_connection_is_answered_on_its_frame(env: FeishuEnv) -> None:
    card, ack = await owner_card_with_ack(env)
    tap = cb.card_action({"action": ack}, operator="ou_li", message_id=card["message_id"], chat_id="oc_p2p_li",
                         at=START)
    answer = await env.fake.push_event(tap)
    assert answer["code"] == 200
    assert answer["data"]["toast"]["content"] and answer["data"]["card"]["type"] == "raw"
    assert ack not in cb.button_values(answer["data"]["card"]["data"])


async def test_the_watchdog_reconnects_a_silent_socket(sqlite_db: Database) -> None:
    fake = FakeFeishu()
    fake.ws_silent_first = 1  # pings go unanswered, nothing arrives: a dead socket that looks open
    env = await make_env(sqlite_db, START, fake=fake, mode="websocket", verification_token="", watchdog_seconds=1)
    try:
        await reconnects(env)
    finally:
        await env.close()


async def reconnects(env: FeishuEnv) -> None:
    await until(lambda: env.adapter.connected() is False, timeout=30, what="/metrics to see the silence")
    await until(lambda: env.fake.ws_endpoint_calls >= 2, timeout=30, what="a reconnect by the watchdog")
    assert env.adapter.long_connection.kicks >= 1
    await until(lambda: bool(env.fake.ws_connections), what="the new connection")
    await until(lambda: env.adapter.connected() is True, timeout=30, what="/metrics to see it up again")
    body = cb.message("我的任务", sender="ou_li", chat_type="p2p", chat_id="oc_p2p_li", at=START, token="")
    assert (await env.fake.push_event(body))["code"] == 200


async def test_taps_arriving_together_are_answered_together(env: FeishuEnv, monkeypatch: pytest.MonkeyPatch) -> None:
    """The SDK calls its handler synchronously on its loop: were the answer awaited there, a second tap would
    wait for the first one's engine and could miss Feishu's 3 s. Each frame's answer is awaited on its own."""
    card, ack = await owner_card_with_ack(env)
    taps = [cb.card_action({"action": ack}, operator="ou_li", message_id=card["message_id"], chat_id="oc_p2p_li",
                           at=START, event_id=f"tap-{i}") for i in range(2)]
    engine = env.bot.handle

    def slow_engine(event: object) -> object:  # an engine that takes a second for each tap (a busy database)
        time.sleep(1.0)
        return engine(event)  # type: ignore[arg-type]

    monkeypatch.setattr(env.bot, "handle", slow_engine)
    started = time.monotonic()
    answers = await asyncio.gather(*(env.fake.push_event(tap) for tap in taps))
    elapsed = time.monotonic() - started
    assert all(a["code"] == 200 and a["data"]["toast"]["content"] for a in answers)
    assert elapsed < 1.8, f"the taps were answered one after the other ({elapsed:.2f} s)"
