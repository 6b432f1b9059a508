"""Delivery through the fake Feishu API: uuid = dedupe key, retries with backoff, cards updated in place,
加急 for escalations. The outbox rows come from the real engine handling real (encrypted) callbacks."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from datetime import datetime, timedelta

import pytest
from sqlalchemy import func, select

from collabbot.adapters.kit import pipeline
from collabbot.bot.config import parse_config
from collabbot.bot.replies import CardAction
from collabbot.storage import outbox
from collabbot.storage.db import Database
from collabbot.storage.models import InboundQueueItem, OutboxMessage, Task

from . import feishu_callbacks as cb
from .conftest import TZ
from .feishu_env import FeishuEnv, make_env

START = datetime(2026, 12, 1, 9, 0, tzinfo=TZ)  # Tuesday


@pytest.fixture
async def env(sqlite_db: Database) -> AsyncIterator[FeishuEnv]:
    e = await make_env(sqlite_db, START)
    yield e
    await e.close()


def rows(db: Database) -> list[OutboxMessage]:
    with db.transaction() as s:
        found = list(s.scalars(select(OutboxMessage).order_by(OutboxMessage.id)))
        s.expunge_all()
        return found


async def create_task(env: FeishuEnv, owner: tuple[str, str] = ("ou_li", "李四"), extra: str = "") -> None:
    status, _ = await env.say(f"新建任务 活动H5开发 负责人 @_user_2 截止 12-10 {extra}", sender="ou_zhang",
                              mentions=[owner])
    assert status == 200


async def test_messages_go_out_with_the_installation_unique_dedupe_key_as_uuid(env: FeishuEnv) -> None:
    await create_task(env)
    assert await env.deliver() >= 2
    sent = rows(env.db)
    assert all(r.status == "sent" and r.platform_message_id for r in sent)
    calls = env.fake.api_calls("POST", "/open-apis/im/v1/messages")
    uuids = sorted(c.body["uuid"] for c in calls)
    installation = {u.partition(":")[0] for u in uuids}
    assert len(installation) == 1 and len(installation.pop()) >= 8  # one random id of this installation
    assert sorted(u.partition(":")[2] for u in uuids) == sorted(r.dedupe_key for r in sent)
    group = env.fake.sent("oc_group")
    owner = env.fake.sent("ou_li")
    assert group and group[0]["receive_id_type"] == "chat_id"
    assert owner and owner[0]["receive_id_type"] == "open_id" and owner[0]["msg_type"] == "interactive"
    assert "ou_li" in json.dumps(group, ensure_ascii=False)  # a real mention of the owner


async def test_rate_limits_wait_for_the_reset_without_spending_an_attempt_and_send_once(env: FeishuEnv) -> None:
    with env.db.transaction() as s:
        outbox.enqueue(s, dedupe_key="k:rate", platform="feishu", target_kind="chat", target_id="oc_group",
                       target_name="g", payload={"parts": ["hello"], "card": None}, now=env.clock.now())
    env.fake.fail("rate_limit")  # HTTP 429, code 99991400, x-ogw-ratelimit-reset: 2
    assert await env.worker.run_once() == 1
    [row] = rows(env.db)
    assert row.status == "pending" and row.attempts == 0  # a throttle is not a failure
    assert row.not_before >= env.clock.now() + timedelta(seconds=2)  # Feishu's reset time is respected
    assert await env.worker.run_once() == 0  # not due yet
    env.clock.advance(timedelta(seconds=row.not_before.timestamp() - env.clock.now().timestamp() + 0.1))
    assert await env.worker.run_once() == 1
    [row] = rows(env.db)
    assert row.status == "sent" and row.attempts == 1
    posts = env.fake.api_calls("POST", "/open-apis/im/v1/messages")
    assert [c.status for c in posts] == [429, 200] and len({c.body["uuid"] for c in posts}) == 1
    assert posts[0].body["uuid"].endswith(":k:rate")
    assert len(env.fake.sent("oc_group")) == 1


async def test_server_errors_retry_permanent_errors_go_dead_and_expired_tokens_refresh(env: FeishuEnv) -> None:
    now = env.clock.now()
    with env.db.transaction() as s:
        for key in ("k:5xx", "k:gone", "k:token"):
            outbox.enqueue(s, dedupe_key=key, platform="feishu", target_kind="chat", target_id="oc_group",
                           target_name="g", payload={"parts": [key], "card": None}, now=now)
    env.fake.fail("server_error")
    env.fake.fail("bot_not_in_chat", times=1)
    await env.worker.run_once()  # 502 for the first, 230002 for the second, the third fine
    status = {r.dedupe_key: r.status for r in rows(env.db)}
    assert status == {"k:5xx": "pending", "k:gone": "dead", "k:token": "sent"}
    env.fake.expire_tokens()
    env.clock.advance(timedelta(minutes=15))
    await env.worker.drain()
    assert {r.dedupe_key: r.status for r in rows(env.db)}["k:5xx"] == "sent"
    assert env.adapter.client.token_fetches == 2


async def test_a_card_tap_updates_the_tapped_card_and_every_other_copy_in_place(env: FeishuEnv) -> None:
    await create_task(env)
    await env.deliver()
    [owner_card] = [m for m in env.fake.sent("ou_li") if m["msg_type"] == "interactive"]
    [group_card] = [m for m in env.fake.sent("oc_group") if m["msg_type"] == "interactive"]
    ack = next(v for v in cb.button_values(owner_card["content"]) if CardAction.unpack(v).action == "ack")
    tap = cb.card_action({"action": ack}, operator="ou_li", message_id=owner_card["message_id"],
                         chat_id="oc_p2p_ou_li", at=env.clock.now())
    status, answer = await env.post(tap)
    assert status == 200
    assert answer["toast"]["type"] in ("success", "info") and answer["toast"]["content"]
    assert answer["card"]["type"] == "raw" and answer["card"]["data"] != owner_card["content"]
    assert ack not in cb.button_values(answer["card"]["data"])  # 确认收到 is gone from the new card
    with env.db.transaction() as s:
        assert s.scalar(select(Task)).acknowledged_at is not None
    await env.deliver()
    patches = env.fake.patches()
    assert [p.path.rsplit("/", 1)[-1] for p in patches] == [group_card["message_id"]]  # the tapped one rides the answer
    assert env.fake.messages[group_card["message_id"]]["updates"][-1]["header"] == answer["card"]["data"]["header"]
    assert await env.post(tap) == (200, answer)  # the same tap again: the same answer, nothing new
    await env.deliver()
    assert len(env.fake.patches()) == 1


@pytest.mark.parametrize(("days", "patched"), [(13, True), (15, False)])
async def test_a_copy_is_changed_only_within_feishus_14_days(env: FeishuEnv, days: int, patched: bool) -> None:
    """更新已发送的消息卡片 changes only messages sent in the last 14 days: an older copy is left as it is
    (its update row done, with no call that Feishu would refuse and no dead row for the admin)."""
    await create_task(env)
    await env.deliver()
    [owner_card] = [m for m in env.fake.sent("ou_li") if m["msg_type"] == "interactive"]
    [group_card] = [m for m in env.fake.sent("oc_group") if m["msg_type"] == "interactive"]
    env.clock.advance(timedelta(days=days))
    ack = next(v for v in cb.button_values(owner_card["content"]) if CardAction.unpack(v).action == "ack")
    status, answer = await env.post(cb.card_action({"action": ack}, operator="ou_li",
                                                   message_id=owner_card["message_id"], chat_id="oc_p2p_ou_li",
                                                   at=env.clock.now()))
    assert status == 200 and answer["card"]["type"] == "raw"  # the tapped copy rides the answer either way
    await env.deliver()
    assert [p.path.rsplit("/", 1)[-1] for p in env.fake.patches()] == ([group_card["message_id"]] if patched else [])
    [update] = [r for r in rows(env.db) if r.target_kind == "update"]
    assert update.status == "sent"


async def test_a_tap_the_engine_answered_too_late_is_answered_with_a_toast_then_its_card_patched(env: FeishuEnv) -> None:
    await create_task(env)
    await env.deliver()
    [owner_card] = [m for m in env.fake.sent("ou_li") if m["msg_type"] == "interactive"]
    ack = next(v for v in cb.button_values(owner_card["content"]) if CardAction.unpack(v).action == "ack")
    env.adapter.inbound.pipeline.answer_within = 0.0  # the engine is always late
    status, answer = await env.post(cb.card_action({"action": ack}, operator="ou_li",
                                                   message_id=owner_card["message_id"], chat_id="oc_p2p_ou_li",
                                                   at=env.clock.now()))
    assert status == 200 and answer == {"toast": {"type": "info", "content": "已收到，正在处理，卡片稍后更新。"}}
    assert env.adapter.inbound.pipeline.late_answers == 1
    [update] = env.fake.messages[owner_card["message_id"]]["updates"]  # patched once the engine was done
    assert ack not in cb.button_values(update)
    with env.db.transaction() as s:
        assert s.scalar(select(Task)).acknowledged_at is not None


async def test_a_tap_while_the_engine_is_busy_is_answered_once_durable_and_every_copy_follows(
        env: FeishuEnv, monkeypatch: pytest.MonkeyPatch) -> None:
    """Past the engine's capacity a tap does not wait for it: written to the inbound queue, answered with
    "received", and the tapped copy is patched through the outbox with the others."""
    await create_task(env)
    await env.deliver()
    [owner_card] = [m for m in env.fake.sent("ou_li") if m["msg_type"] == "interactive"]
    [group_card] = [m for m in env.fake.sent("oc_group") if m["msg_type"] == "interactive"]
    ack = next(v for v in cb.button_values(owner_card["content"]) if CardAction.unpack(v).action == "ack")
    monkeypatch.setattr(pipeline, "TAPS_IN_HAND", 0)  # as if eight taps were already waiting for the engine
    commits = env.hub.journal.commits
    status, answer = await env.post(cb.card_action({"action": ack}, operator="ou_li",
                                                   message_id=owner_card["message_id"], chat_id="oc_p2p_ou_li",
                                                   at=env.clock.now()))
    assert status == 200 and answer == {"toast": {"type": "info", "content": "已收到，正在处理，卡片稍后更新。"}}
    assert env.adapter.inbound.pipeline.taken_for_later == 1 and env.hub.journal.commits > commits
    await env.hub.journal.settled()
    with env.db.transaction() as s:
        assert s.scalar(select(Task)).acknowledged_at is not None
        assert s.scalar(select(func.count()).select_from(InboundQueueItem)) == 0  # done: its row is gone
    await env.deliver()
    assert sorted(p.path.rsplit("/", 1)[-1] for p in env.fake.patches()) == sorted(
        [owner_card["message_id"], group_card["message_id"]])
    assert ack not in cb.button_values(env.fake.messages[owner_card["message_id"]]["updates"][-1])


async def test_an_update_not_yet_sent_is_retired_by_a_newer_one_so_the_card_never_goes_back(env: FeishuEnv) -> None:
    """Two changes before delivery queue two updates of the group's copy. Sent together, the older one's
    retry (here after a 502) would land after the newer one and put the older state back on the card."""
    await create_task(env)
    await env.deliver()
    [group_card] = [m for m in env.fake.sent("oc_group") if m["msg_type"] == "interactive"]
    [owner_card] = [m for m in env.fake.sent("ou_li") if m["msg_type"] == "interactive"]
    ack = next(v for v in cb.button_values(owner_card["content"]) if CardAction.unpack(v).action == "ack")
    status, _ = await env.post(cb.card_action({"action": ack}, operator="ou_li", message_id=owner_card["message_id"],
                                              chat_id="oc_p2p_ou_li", at=env.clock.now()))
    assert status == 200
    assert (await env.say("进度 #1 60%", sender="ou_li"))[0] == 200
    updates = [r for r in rows(env.db) if r.target_kind == "update" and r.target_id == group_card["message_id"]]
    assert [(r.status, r.last_error) for r in updates] == [("sent", "superseded"), ("pending", "")]
    env.fake.fail("server_error", path=f"/open-apis/im/v1/messages/{group_card['message_id']}", method="PATCH")
    await env.deliver()
    env.clock.advance(timedelta(minutes=5))
    await env.deliver()
    shown = env.fake.messages[group_card["message_id"]]["updates"]
    assert "60%" in json.dumps(shown[-1], ensure_ascii=False)
    assert all("60%" in json.dumps(u, ensure_ascii=False) for u in shown)  # the older state never went out


async def test_an_update_of_a_recalled_card_is_done_not_a_dead_row(env: FeishuEnv) -> None:
    """Someone recalled the group's copy: Feishu answers 230011 to its update, and there is nothing left to
    change; the row is done, without retries or a dead row for the admin to wonder about."""
    await create_task(env)
    await env.deliver()
    [group_card] = [m for m in env.fake.sent("oc_group") if m["msg_type"] == "interactive"]
    [owner_card] = [m for m in env.fake.sent("ou_li") if m["msg_type"] == "interactive"]
    env.fake.recall(group_card["message_id"])
    ack = next(v for v in cb.button_values(owner_card["content"]) if CardAction.unpack(v).action == "ack")
    await env.post(cb.card_action({"action": ack}, operator="ou_li", message_id=owner_card["message_id"],
                                  chat_id="oc_p2p_ou_li", at=env.clock.now()))
    await env.deliver()
    [update] = [r for r in rows(env.db) if r.target_kind == "update"]
    assert update.status == "sent" and update.attempts == 1
    patched = env.fake.api_calls("PATCH", f"/open-apis/im/v1/messages/{group_card['message_id']}")
    assert [c.code for c in patched] == [230011]


async def test_a_stale_or_foreign_button_only_answers_a_toast(env: FeishuEnv) -> None:
    await create_task(env)
    await env.deliver()
    [owner_card] = [m for m in env.fake.sent("ou_li") if m["msg_type"] == "interactive"]
    status, answer = await env.post(cb.card_action({"x": "whatever"}, operator="ou_li",
                                                   message_id=owner_card["message_id"], chat_id="oc_p2p_li",
                                                   at=env.clock.now()))
    assert status == 200 and answer["toast"]["type"] == "warning" and "card" not in answer


@pytest.mark.parametrize(("urgent", "priority", "expected"), [("high", "高", True), ("high", "中", False),
                                                              ("all", "中", True), ("off", "高", False)])
async def test_escalations_are_sent_urgent_when_configured(sqlite_db: Database, urgent: str, priority: str,
                                                           expected: bool) -> None:
    env = await make_env(sqlite_db, START, config=parse_config({"rules": {"escalation": {"urgent": urgent}}}))
    try:
        await create_task(env, ("ou_zhao", "赵六"), f"优先级 {priority}")
        await env.deliver()
        for moment in ("2026-12-01T11:01", "2026-12-01T14:31", "2026-12-02T09:01"):
            env.clock.set(datetime.fromisoformat(moment).replace(tzinfo=TZ))
            env.bot.sweep()
            await env.deliver()
        boss = env.fake.sent("ou_chen")  # 陈七 supervises 赵六
        assert len(boss) == 1 and boss[0]["msg_type"] == "interactive"
        assert boss[0]["urgent"] == (["ou_chen"] if expected else [])
        assert len(env.fake.api_calls("PATCH", "/open-apis/im/v1/messages/")) == (1 if expected else 0)
    finally:
        await env.close()


async def test_a_refused_urgent_does_not_fail_the_message(sqlite_db: Database) -> None:
    env = await make_env(sqlite_db, START, config=parse_config({"rules": {"escalation": {"urgent": "all"}}}))
    try:
        await create_task(env, ("ou_zhao", "赵六"))
        await env.deliver()
        env.fake.fail("forbidden", method="PATCH", path="/open-apis/im/v1/messages/")
        for moment in ("2026-12-01T11:01", "2026-12-01T14:31", "2026-12-02T09:01"):
            env.clock.set(datetime.fromisoformat(moment).replace(tzinfo=TZ))
            env.bot.sweep()
            await env.deliver()
        assert len(env.fake.sent("ou_chen")) == 1
        assert all(r.status == "sent" for r in rows(env.db))
    finally:
        await env.close()
