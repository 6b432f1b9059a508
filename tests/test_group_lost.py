"""A group the bot has lost: removed from it, the group disbanded, or Feishu refusing the bot there (230002).

The group gets nothing more, the project's coordinator hears it once (in working time) when it was the
project's last group, a message to the bot in that group brings it back, and 绑定项目 in a new group moves
the project there. Feishu behind a real aiohttp server, callbacks signed and encrypted as Feishu does.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from datetime import datetime, timedelta

import pytest
from sqlalchemy import select

from collabbot.storage.db import Database
from collabbot.storage.models import Chat, OutboxMessage, Project

from . import feishu_callbacks as cb
from .conftest import TZ
from .feishu_env import FeishuEnv, count, make_env

START = datetime(2026, 12, 1, 10, 0, tzinfo=TZ)  # a Tuesday, working time
BIND = "绑定项目 新品上市 协同负责人 @_user_2"


@pytest.fixture
async def env(sqlite_db: Database) -> AsyncIterator[FeishuEnv]:
    e = await make_env(sqlite_db, START)
    await e.say(BIND, sender="ou_li", mentions=[("ou_zhang", "张三")])
    await e.deliver()
    yield e
    await e.close()


def said(env: FeishuEnv, receive_id: str) -> list[str]:
    return [json.dumps(m["content"], ensure_ascii=False) for m in env.fake.sent(receive_id)]


def active(env: FeishuEnv, chat_id: str) -> bool:
    with env.db.transaction() as s:
        return s.scalar(select(Chat.active).where(Chat.platform_chat_id == chat_id))


async def test_a_disbanded_group_is_lost_and_the_coordinator_hears_once(env: FeishuEnv) -> None:
    event = cb.chat_disbanded("oc_group", "新品上市群", operator="ou_li", at=START)
    assert await env.post(event) == (200, {})
    assert await env.post({**event, "header": {**event["header"], "event_id": "again"}}) == (200, {})
    await env.deliver()
    assert not active(env, "oc_group")
    [notice] = [t for t in said(env, "ou_zhang") if "已解散" in t]
    assert "新品上市" in notice and "绑定项目 新品上市" in notice  # what to type next
    before = len(env.fake.sent("oc_group"))
    env.clock.set(START.replace(hour=17) + timedelta(days=3))  # Friday: the summary, prompts, in between
    env.bot.sweep()
    await env.deliver()
    assert len(env.fake.sent("oc_group")) == before
    assert count(env.db, OutboxMessage, OutboxMessage.target_id == "oc_group", OutboxMessage.sent_at.is_(None)) == 0


@pytest.mark.parametrize("flavour", ["sqlite", "postgresql"])
async def test_a_send_refused_with_230002_loses_the_group_once(flavour: str, request: pytest.FixtureRequest) -> None:
    db = request.getfixturevalue("sqlite_db" if flavour == "sqlite" else "pg_database")
    if flavour == "postgresql":
        from .conftest import truncate_all
        truncate_all(db)
    env = await make_env(db, START)
    try:
        await env.say(BIND, sender="ou_li", mentions=[("ou_zhang", "张三")])
        await env.deliver()
        env.fake.leave_chat("oc_group")  # removed while our event subscription was off: we were never told
        await env.say("新建任务 海报设计 负责人 @_user_2 截止 12-10", sender="ou_zhang", mentions=[("ou_li", "李四")])
        await env.say("新建任务 文案 负责人 @_user_2 截止 12-10", sender="ou_zhang", mentions=[("ou_li", "李四")])
        await env.deliver()
        assert not active(env, "oc_group")
        notices = [t for t in said(env, "ou_zhang") if "平台拒绝" in t]
        assert len(notices) == 1 and "新品上市" in notices[0]
        assert any("海报设计" in t for t in said(env, "ou_li"))  # people still hear privately
    finally:
        await env.close()


async def test_the_group_comes_back_when_someone_writes_to_the_bot_there(env: FeishuEnv) -> None:
    env.fake.leave_chat("oc_group")
    await env.say("新建任务 海报设计 负责人 @_user_2 截止 12-10", sender="ou_zhang", mentions=[("ou_li", "李四")])
    await env.deliver()
    assert not active(env, "oc_group")
    env.fake.chats_left.clear()  # added back (DingTalk and WeCom say so only by a message)
    await env.say("任务列表", sender="ou_li")
    assert active(env, "oc_group")


async def test_added_back_the_group_hears_its_project_continues(env: FeishuEnv) -> None:
    await env.post(cb.bot_member("oc_group", "新品上市群", added=False, operator="ou_li", at=START))
    await env.post(cb.bot_member("oc_group", "新品上市群", added=True, operator="ou_li", at=START))
    await env.deliver()
    assert active(env, "oc_group")
    assert "新品上市" in said(env, "oc_group")[-1] and "我回来了" in said(env, "oc_group")[-1]


async def test_a_project_with_another_group_is_not_reported(env: FeishuEnv) -> None:
    with env.db.transaction() as s:
        project = s.scalar(select(Project))
        s.add(Chat(platform="feishu", platform_chat_id="oc_second", name="第二群", project_id=project.id, active=True))
    await env.post(cb.bot_member("oc_group", "新品上市群", added=False, operator="ou_li", at=START))
    await env.deliver()
    assert not active(env, "oc_group") and active(env, "oc_second")
    assert not [t for t in said(env, "ou_zhang") if "移出" in t]


async def test_lost_at_night_the_coordinator_hears_in_the_morning(env: FeishuEnv) -> None:
    night = START.replace(hour=22)
    env.clock.set(night)
    await env.post(cb.bot_member("oc_group", "新品上市群", added=False, operator="ou_li", at=night))
    await env.deliver()
    assert not [t for t in said(env, "ou_zhang") if "移出" in t]
    env.clock.set(START + timedelta(days=1, hours=-1))  # Wednesday 09:00
    await env.deliver()
    assert [t for t in said(env, "ou_zhang") if "移出" in t]


async def test_bind_in_a_new_group_moves_a_project_that_lost_its_group(env: FeishuEnv) -> None:
    await env.post(cb.chat_disbanded("oc_group", "新品上市群", operator="ou_li", at=START))
    await env.say("绑定项目 新品上市", sender="ou_li", chat_id="oc_new")  # not the coordinator
    await env.deliver()
    assert any("张三" in t for t in said(env, "oc_new"))  # refused: names who may
    await env.say("绑定项目 新品上市", sender="ou_zhang", chat_id="oc_new")
    await env.deliver()
    with env.db.transaction() as s:
        [project] = s.scalars(select(Project)).all()
        assert s.scalar(select(Chat.project_id).where(Chat.platform_chat_id == "oc_new")) == project.id
    assert "已搬到本群" in said(env, "oc_new")[-1]
    await env.say("新建任务 海报设计 负责人 @_user_2 截止 12-10", sender="ou_zhang", chat_id="oc_new",
                  mentions=[("ou_li", "李四")])
    await env.deliver()
    assert any("海报设计" in t for t in said(env, "oc_new"))


async def test_bind_of_a_name_whose_project_still_has_a_group_creates_a_new_one(env: FeishuEnv) -> None:
    await env.say("绑定项目 新品上市", sender="ou_zhang", chat_id="oc_new")
    assert count(env.db, Project) == 2  # as before: the old project keeps its group
