"""The robot's long connection (subscribe, heartbeat, watchdog, a second subscriber kicking the first, one
holder across instances), group messages with "@名字", pushes to unbound groups, the app client's token
and throttles, the per-member limit, org sync, and the config."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
from collections.abc import AsyncIterator, Callable
from datetime import datetime
from typing import Any

import aiohttp
import pytest
from sqlalchemy import select

from collabbot.adapters.kit.client import ApiError
from collabbot.adapters.wecom import parse
from collabbot.adapters.wecom.config import parse_settings
from collabbot.adapters.wecom.contacts import build_org, directory
from collabbot.adapters.wecom.sender import LIMITS
from collabbot.bot.config import ConfigError
from collabbot.bot.events import MessageEvent, mention_marker
from collabbot.bot.replies import At, Button, Card, CardAction, Message
from collabbot.scheduler.delivery import DeliveryError
from collabbot.storage.db import Database
from collabbot.storage.models import Chat, OutboxMessage, Task

from . import fake_wecom as fw
from . import odd_json
from .conftest import TZ
from .media_checks import tiny_png
from .wecom_env import DEPARTMENTS, USERS, WecomEnv, count, make_env, settings_raw

START = datetime(2026, 12, 1, 9, 0, tzinfo=TZ)


async def until(condition: Callable[[], bool], timeout: float = 5.0) -> None:
    """Wait for a network condition (a reconnect, a takeover), polling; fail after `timeout`."""
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        await asyncio.sleep(0.02)


@pytest.fixture
async def env(sqlite_db: Database) -> AsyncIterator[WecomEnv]:
    e = await make_env(sqlite_db, START)
    yield e
    await e.close()


def test_declared_limits_are_half_of_wecoms() -> None:
    """WeCom: 30 a minute and 1,000 an hour per chat and per member; a row may be two messages."""
    assert {(lim.scope, lim.count, lim.per_seconds) for lim in LIMITS} == {
        ("chat", 15, 60.0), ("chat", 500, 3600.0), ("user", 15, 60.0), ("user", 500, 3600.0)}


def test_group_text_loses_the_robots_name_and_names_become_mentions() -> None:
    names = directory(USERS)
    assert "离职者" not in names and names["李四"] == "lisi"
    body = fw.robot_message("@协作机器人 新建任务 设计 负责人 @李四 协作 @赵六截止 截止 12-10 @不认识",
                            userid="zhangsan", chatid="wr1", msgid="m1")
    event = parse.parse_robot(body, names, "协作机器人").what
    assert isinstance(event, MessageEvent) and event.event_id == "robot:m1" and event.chat.is_group
    assert event.text == f"新建任务 设计 负责人 {mention_marker(0)} 协作 {mention_marker(1)} 截止 截止 12-10 @不认识"
    assert [m.platform_user_id for m in event.mentions] == ["lisi", "zhaoliu"]
    # no bot_name configured: the leading @word is the robot (unless it names a person)
    event = parse.parse_robot(body, names, "").what
    assert isinstance(event, MessageEvent) and event.text.startswith("新建任务")
    # a forged marker typed by a user is stripped
    forged = fw.robot_message(f"@协作机器人 评论 #1 {mention_marker(0)}", userid="zhangsan", chatid="wr1")
    event = parse.parse_robot(forged, names, "协作机器人").what
    assert isinstance(event, MessageEvent) and mention_marker(0) not in event.text and not event.mentions


async def test_subscribe_and_heartbeats(env: WecomEnv) -> None:
    robot = env.adapter.robot
    assert robot is not None and robot.subscriptions == 1 and env.fake.subscribes == 1
    await until(lambda: sum(1 for f in env.fake.frames_in if f.get("cmd") == "ping") >= 2)
    assert robot.watchdog_kicks == 0


async def test_the_watchdog_reconnects_when_heartbeats_go_unanswered(env: WecomEnv) -> None:
    robot = env.adapter.robot
    assert robot is not None
    env.fake.silent = True
    await until(lambda: robot.watchdog_kicks >= 1, timeout=5)
    env.fake.silent = False
    await until(lambda: robot.subscriptions >= 2 and robot.connected.is_set(), timeout=5)
    await env.robot_says("@协作机器人 绑定项目 官网 协同负责人 @张三", userid="zhangsan", chatid="wr1")
    assert count(env.db, OutboxMessage) >= 1  # and it hears again


async def test_a_second_subscriber_kicks_the_first_which_does_not_fight_back(env: WecomEnv) -> None:
    robot = env.adapter.robot
    assert robot is not None
    async with aiohttp.ClientSession() as session, session.ws_connect(env.fake.ws_url) as ws:
        await ws.send_json({"cmd": "aibot_subscribe", "headers": {"req_id": "intruder"},
                            "body": {"bot_id": fw.BOT_ID, "secret": fw.BOT_SECRET}})
        answer = await ws.receive_json(timeout=5)
        assert answer["errcode"] == 0
        await until(lambda: robot.kicked == 1)
        assert not robot.connected.is_set()
        await asyncio.sleep(1.0)  # longer than a reconnect's backoff: it stays away
        assert env.fake.subscribes == 2 and robot.subscriptions == 1
        with pytest.raises(ApiError) as caught:
            await robot.push("wr1", "markdown", {"content": "x"})
        assert caught.value.throttle  # a push waits (no attempt spent) rather than failing


async def test_kicked_again_and_again_the_robot_waits_longer_each_time(env: WecomEnv, monkeypatch: pytest.MonkeyPatch,
                                                                       caplog: pytest.LogCaptureFixture) -> None:
    """A second deployment of the same robot: each kick in a row doubles the pause, so the two do not take the
    connection from each other every minute (the official SDKs never reconnect after a kick)."""
    from collabbot.adapters.wecom import robot as robot_module

    monkeypatch.setattr(robot_module, "KICKED_PAUSE", 0.2)
    robot = env.adapter.robot
    assert robot is not None
    with caplog.at_level(logging.ERROR):
        async with aiohttp.ClientSession() as session:
            for kick in (1, 2):
                async with session.ws_connect(env.fake.ws_url) as ws:
                    await until(lambda: robot.connected.is_set())
                    await ws.send_json({"cmd": "aibot_subscribe", "headers": {"req_id": f"intruder-{kick}"},
                                        "body": {"bot_id": fw.BOT_ID, "secret": fw.BOT_SECRET}})
                    assert (await ws.receive_json(timeout=5))["errcode"] == 0
                    await until(lambda k=kick: robot.kicked == k)
    pauses = [r.getMessage().split("not reconnecting for ")[1].split(" s")[0] for r in caplog.records
              if "not reconnecting for" in r.getMessage()]
    assert pauses == ["0.2", "0.4"], pauses


async def test_a_group_nobody_wrote_in_is_refused_with_a_clear_log_line(env: WecomEnv,
                                                                         caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.ERROR), pytest.raises(DeliveryError) as caught:
        await env.adapter.sender.post("chat", "wr_never", Message(("进度汇总",)), "inst:key-1")
    assert not caught.value.transient
    assert any("nobody has written to the robot" in r.getMessage() for r in caplog.records)
    assert env.fake.pushes == [] and env.fake.refused_pushes == []  # refused here, never sent
    # once someone writes there (binding the project), the group is reachable
    await env.robot_says("@协作机器人 绑定项目 官网 协同负责人 @张三", userid="zhangsan", chatid="wr_never")
    await env.deliver()
    assert [p["chatid"] for p in env.fake.pushes] and env.fake.refused_pushes == []


async def test_an_at_message_creates_a_task_a_tap_updates_the_card_for_everyone_and_redelivery_changes_nothing(
        env: WecomEnv) -> None:
    await env.robot_says("@协作机器人 绑定项目 官网 协同负责人 @张三", userid="zhangsan", chatid="wr1", msgid="b1")
    await env.robot_says("@协作机器人 新建任务 活动H5开发 负责人 @李四 截止 12-10", userid="zhangsan", chatid="wr1",
                         msgid="m1")
    await env.robot_says("@协作机器人 新建任务 活动H5开发 负责人 @李四 截止 12-10", userid="zhangsan", chatid="wr1",
                         msgid="m1")  # WeCom's redelivery
    assert count(env.db, Task) == 1
    await env.deliver()
    group_cards = [p for p in env.fake.pushes if p["msgtype"] == "template_card" and p["chatid"] == "wr1"]
    card = group_cards[-1]["template_card"]
    action = next(b["key"] for b in card["button_list"] if "|ack|" in b["key"] or "|finish|" in b["key"])
    started = time.monotonic()
    answer = await env.fake.tap(card["task_id"], action, userid="lisi", chatid="wr1", msgid="t1")
    assert answer is not None and time.monotonic() - started < 5.0
    assert answer["response_type"] == "update_template_card" and "userids" not in answer  # for everyone
    assert answer["template_card"]["task_id"] == card["task_id"]
    assert env.fake.cards[card["task_id"]].changed("tap")  # WeCom accepted it (req_id and task_id match)
    await env.deliver()  # the owner's private copy follows: updated in place with its send's response_code
    [owner] = [c for c in env.fake.cards.values() if c.target == "lisi" and c.via == "app"]
    [updated] = owner.changed("code")
    assert updated["task_id"] == owner.task_id and updated != owner.versions[0][1]
    before = count(env.db, OutboxMessage)
    await env.fake.tap(card["task_id"], action, userid="lisi", chatid="wr1", msgid="t1")  # redelivered tap
    await env.settle()
    assert count(env.db, OutboxMessage) == before


async def test_a_tap_whose_fields_sit_on_the_event_itself_is_taken_too(env: WecomEnv) -> None:
    """The official long-connection SDKs read a tap's task_id and event_key on the event; devices have been
    seen to nest them under template_card_event. Either is a tap."""
    await env.robot_says("@协作机器人 新建任务 活动H5开发 负责人 @李四 截止 12-10", userid="zhangsan", chatid="wr1")
    await env.deliver()
    card = [p for p in env.fake.pushes if p["msgtype"] == "template_card" and p["chatid"] == "wr1"][-1]["template_card"]
    action = next(b["key"] for b in card["button_list"] if "|ack|" in b["key"])
    answer = await env.fake.tap(card["task_id"], action, userid="lisi", chatid="wr1", flat=True)
    assert answer is not None and answer["response_type"] == "update_template_card"
    with env.db.transaction() as s:
        assert s.scalar(select(Task)).acknowledged_at is not None


async def test_a_group_the_robot_was_removed_from_is_lost_and_its_coordinator_told(env: WecomEnv) -> None:
    await env.robot_says("@协作机器人 绑定项目 官网 协同负责人 @张三", userid="zhangsan", chatid="wr1")
    await env.deliver()
    env.fake.left_groups.add("wr1")  # 93008 不在群里 from now on
    await env.robot_says("@协作机器人 新建任务 活动H5开发 负责人 @李四 截止 12-10", userid="zhangsan", chatid="wr1")
    env.fake.bound.add("wr1")
    await env.deliver()
    with env.db.transaction() as s:
        assert not s.scalar(select(Chat.active).where(Chat.platform_chat_id == "wr1"))
    told = [m for m in env.fake.sent if m.get("touser") == "zhangsan" and "官网" in json.dumps(m, ensure_ascii=False)
            and "平台拒绝" in json.dumps(m, ensure_ascii=False)]
    assert len(told) == 1, env.fake.sent


async def test_the_app_token_is_refreshed_once_and_throttles_are_throttles(env: WecomEnv) -> None:
    client = env.adapter.client
    await client.send("lisi", "markdown", {"content": "a"})
    fetched = client.token_fetches
    env.fake.expire_tokens()
    await asyncio.gather(*(client.send("lisi", "markdown", {"content": f"b{i}"}) for i in range(4)))
    assert client.token_fetches - fetched == 1
    for code in (45009, 45033):
        env.fake.fail_next("/cgi-bin/message/send", code)
        with pytest.raises(ApiError) as caught:
            await client.send("lisi", "markdown", {"content": "c"})
        assert caught.value.throttle and caught.value.retry_after
    env.fake.fail_next("/cgi-bin/message/send", 40003)
    with pytest.raises(ApiError) as caught:
        await client.send("lisi", "markdown", {"content": "d"})
    assert not caught.value.transient
    sent = env.fake.sent[-1]
    assert sent["enable_id_trans"] == 0 and sent["enable_duplicate_check"] == 1
    assert await client.upload_image(tiny_png()) in env.fake.media


async def test_the_member_limit_is_kept_so_nothing_is_silently_dropped(env: WecomEnv) -> None:
    for i in range(40):
        await env.adapter.sender.post("user", "lisi", Message((f"提醒 {i}",)), f"inst:burst-{i}")
    # called directly, nothing paces them: WeCom answers ok and drops the excess, which only the fake sees
    assert len(env.fake.dropped) == 10
    env.fake.dropped.clear()
    env.fake._window.clear()
    with env.db.transaction() as s:
        from collabbot.storage import outbox

        for i in range(40):
            outbox.enqueue(s, dedupe_key=f"burst2-{i}", platform="wecom", target_kind="user", target_id="zhaoliu",
                           target_name="", payload=Message((f"提醒 {i}",)).to_json(), now=env.clock.now())
    await env.deliver()  # through the worker: paced under the declared limits
    assert len([s for s in env.fake.sent if s["touser"] == "zhaoliu"]) == 40 and env.fake.dropped == []


async def test_org_sync_reads_departments_heads_and_direct_leaders(env: WecomEnv) -> None:
    from collabbot.adapters.wecom.contacts import fetch_org

    before = len(env.fake.calls_to("/cgi-bin/user/list"))
    org = await fetch_org(env.adapter.client, 1)
    people = {p.name: p for p in org.people}
    assert set(people) == {"赵总", "张三", "陈七", "李四", "赵六"}  # the inactive one left out
    # user/list lists a department's own members: read once per department, no fetch_child
    reads = env.fake.calls_to("/cgi-bin/user/list")[before:]
    assert sorted(c.query["department_id"] for c in reads) == ["1", "2", "3"]
    assert not any("fetch_child" in c.query for c in reads)
    assert people["张三"].supervisor == "赵总"  # direct_leader
    assert people["李四"].supervisor == "陈七"  # no direct_leader: the head of 技术部
    assert people["陈七"].supervisor == "赵总"
    assert org.departments["技术部"] == "陈七" and people["李四"].ids == {"wecom": "lisi"}
    assert org.complete and not (await fetch_org(env.adapter.client, 2)).complete  # only the whole company says who left
    same = build_org([*DEPARTMENTS, {"id": 4, "name": "技术部", "parentid": 2, "department_leader": []}], USERS)
    assert {"技术部（公司）", "技术部（市场部）"} <= set(same.departments)
    assert same.department_ids["技术部（市场部）"] == "4"  # a rename on WeCom finds the same row by it


async def test_two_instances_on_postgresql_hold_one_connection_and_the_standby_takes_over(
        pg_database: Database) -> None:
    from .conftest import truncate_all

    truncate_all(pg_database)
    first = await make_env(pg_database, START)
    try:
        from collabbot.adapters.hub import Hub
        from collabbot.adapters.wecom.adapter import WecomAdapter

        settings = parse_settings(settings_raw(first.fake), first.bot.config)
        second = WecomAdapter(settings, Hub(first.bot))
        await second.start()
        try:
            assert second.robot is not None and first.adapter.robot is not None
            await asyncio.sleep(0.5)  # a few takeover periods: the standby must not subscribe
            assert first.fake.subscribes == 1 and not second.robot.connected.is_set()
            with pytest.raises(ApiError) as caught:
                await second.robot.push("wr1", "markdown", {"content": "x"})
            assert caught.value.throttle
            started = time.monotonic()
            await first.adapter.robot.stop()  # the holder goes away (its lock with it)
            await asyncio.wait_for(second.robot.connected.wait(), 10)
            assert time.monotonic() - started < 5.0 and first.fake.subscribes == 2 and first.fake.kicks == 0
        finally:
            await second.stop()
    finally:
        await first.close()


def test_config_refuses_what_would_not_work() -> None:
    ok = {k: v for k, v in settings_raw(fw.FakeWecom()).items() if k not in ("base_url", "ws_url")}
    assert parse_settings(ok).robot_mode == "websocket"
    for bad, key in ((dict(ok, bot_secret=""), "wecom.bot_secret"),
                     (dict(ok, app_encoding_aes_key="short"), "wecom.app_encoding_aes_key"),
                     (dict(ok, robot_mode="callback"), "wecom.robot_token"),
                     (dict(ok, secret_typo="x"), "wecom.secret_typo"),
                     ({k: v for k, v in ok.items() if k != "agent_id"}, "wecom.agent_id"),
                     (dict(ok, heartbeat_seconds=5, watchdog_seconds=2), "wecom.watchdog_seconds")):
        with pytest.raises(ConfigError) as caught:
            parse_settings(bad)
        assert caught.value.args[0] == key or key in str(caught.value), (key, caught.value)


def test_robot_card_ids_round_trip() -> None:
    assert parse.split_message_id(parse.robot_message_id("wr|x", "cb-1")) == ("robot", "wr|x", "cb-1")
    with pytest.raises(ValueError):
        parse.split_message_id("om_feishu_id")
    assert json.loads(json.dumps(fw.robot_tap("cb-1", "k", userid="u")))["event"]["eventtype"] == "template_card_event"



def test_the_commented_wecom_section_of_the_example_config_is_complete_and_valid(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """Uncommented, config.example.toml's [wecom] lines parse, show every key, and show the defaults."""
    import tomllib

    from collabbot.adapters.wecom import config as wecom_config
    from collabbot.bot.config import parse_config

    from .conftest import ROOT

    lines = (ROOT / "config.example.toml").read_text(encoding="utf-8").splitlines()
    section = []
    for line in lines[lines.index("# [wecom]"):]:
        if not line.startswith("# "):
            break
        if not line[2:].startswith(("#", " ")):
            section.append(line[2:])
    data = tomllib.loads("\n".join(section))
    assert set(data["wecom"]) == wecom_config._KNOWN
    for name, value in (("WECOM_APP_SECRET", "s"), ("WECOM_APP_TOKEN", "t"), ("WECOM_APP_AES_KEY", fw.APP_AES_KEY),
                        ("WECOM_BOT_SECRET", "b")):
        monkeypatch.setenv(name, value)
    config = parse_config(data)
    settings = parse_settings(config.platforms["wecom"], config)
    assert settings.robot_mode == "websocket" and settings.app_encoding_aes_key == fw.APP_AES_KEY
    defaults = parse_settings({"corp_id": "c", "agent_id": 1, "app_secret": "s", "bot_id": "b", "bot_secret": "x"})
    for key in wecom_config._KNOWN - {"corp_id", "agent_id", "app_secret", "app_token", "app_encoding_aes_key",
                                      "bot_id", "bot_secret"}:
        assert getattr(settings, key) == getattr(defaults, key), key


def test_a_card_with_nothing_to_tap_goes_as_markdown() -> None:
    from collabbot.adapters.wecom.sender import render_message
    from collabbot.bot.replies import Button, Card

    quiet = render_message(Message((), Card("summary", "summary:1", "本周总结", fields=(("完成", "3 项"),))), "cb-1")
    assert quiet["msgtype"] == "markdown" and "template_card" not in quiet
    assert "本周总结" in quiet["markdown"]["content"] and "3 项" in quiet["markdown"]["content"]
    card = Card("task", "task:1", "设计", buttons=(Button("确认收到", "v1|ack|task|1|0"),))
    assert render_message(Message((), card), "cb-2")["template_card"]["task_id"] == "cb-2"


async def test_wechatpys_client_reads_the_fakes_answers(env: WecomEnv) -> None:
    """The fake's app API, checked with WeCom's most used Python client (its host made configurable)."""
    from wechatpy.enterprise import WeChatClient

    base = env.fake.url + "/cgi-bin/"

    class Local(WeChatClient):  # type: ignore[misc]
        API_BASE_URL = base

        def fetch_access_token(self) -> Any:
            return self._fetch_access_token(url=base + "gettoken",
                                            params={"corpid": self.corp_id, "corpsecret": self.secret})

    def run() -> tuple[Any, Any, Any]:
        client = Local(fw.CORP_ID, fw.APP_SECRET)
        return (client.message.send_text(fw.AGENT_ID, "lisi", "你好"), client.user.list(3),
                client.department.get())

    sent, users, departments = await asyncio.to_thread(run)
    assert sent["errcode"] == 0 and sent["msgid"] and env.fake.sent[-1]["touser"] == "lisi"
    assert {u["userid"] for u in users} == {"chenqi", "lisi", "zhaoliu", "gone"}  # 技术部's own members
    assert {d["name"] for d in departments} == {"公司", "市场部", "技术部"}


async def test_a_dropped_connection_is_resubscribed_after_a_jittered_pause(env: WecomEnv) -> None:
    robot = env.adapter.robot
    assert robot is not None
    pauses = []
    for round_ in range(2):
        dropped = time.monotonic()
        await env.fake.subscribers[0].close()  # WeCom closes the socket (a deploy, a network blip)
        await until(lambda round_=round_: robot.subscriptions == round_ + 2 and robot.connected.is_set())
        pauses.append(time.monotonic() - dropped)
    # 1 s with 50-100 % jitter after a connection that had worked: never at once, never long
    assert all(0.4 <= p <= 2.0 for p in pauses), pauses
    assert robot.reconnects == 2 and env.fake.kicks == 0


@pytest.mark.parametrize("errcode", [45009, 45033])
async def test_a_robot_push_refused_as_too_frequent_waits_without_spending_an_attempt(env: WecomEnv,
                                                                                      errcode: int) -> None:
    from datetime import timedelta

    from collabbot.storage import outbox

    await env.robot_says("@协作机器人 帮助", userid="zhangsan", chatid="wr_busy")
    await env.deliver()
    pushed = len(env.fake.pushes)
    with env.db.transaction() as s:
        outbox.enqueue(s, dedupe_key="throttle-1", platform="wecom", target_kind="chat", target_id="wr_busy",
                       target_name="", payload=Message(("进度汇总",)).to_json(), now=env.clock.now())
    env.fake.fail_next_push(errcode)
    await env.deliver()
    assert env.fake.refused_pushes == [("wr_busy", errcode)] and len(env.fake.pushes) == pushed
    with env.db.transaction() as s:
        row = s.query(OutboxMessage).filter_by(dedupe_key="throttle-1").one()
        assert (row.status, row.attempts) == ("pending", 0)  # a throttle is not a failure
        assert row.not_before > env.clock.now()
    env.clock.advance(timedelta(minutes=2))
    await env.deliver()
    assert len(env.fake.pushes) == pushed + 1 and env.fake.pushes[-1]["chatid"] == "wr_busy"


async def test_a_row_whose_card_was_throttled_does_not_mention_the_people_twice(env: WecomEnv) -> None:
    """Its words went out, its card was refused as too frequent: the retry sends the card alone."""
    from datetime import timedelta

    from collabbot.storage import outbox

    await env.robot_says("@协作机器人 帮助", userid="zhangsan", chatid="wr_twice")
    await env.deliver()
    card = Card(kind="task", key="task:1", title="活动H5开发",
                buttons=(Button("确认收到", CardAction("ack", "task", 1, 0).pack()),))
    with env.db.transaction() as s:
        outbox.enqueue(s, dedupe_key="mention-1", platform="wecom", target_kind="chat", target_id="wr_twice",
                       target_name="", payload=Message((At(0, "lisi", "李四"), " 请确认"), card).to_json(),
                       now=env.clock.now())
    env.fake.fail_next_push(0)  # the words pass (errcode 0: answered ok) ...
    env.fake.fail_next_push(45009)  # ... the card is refused
    await env.deliver()
    env.clock.advance(timedelta(minutes=2))
    await env.deliver()
    words = [p for p in env.fake.pushes if p["chatid"] == "wr_twice" and "请确认" in json.dumps(p, ensure_ascii=False)
             and p["msgtype"] == "markdown"]
    cards = [p for p in env.fake.pushes if p["chatid"] == "wr_twice" and p["msgtype"] == "template_card"]
    assert len(words) == 1 and len(cards) == 1


def test_a_card_update_sent_again_is_paced_as_a_message_to_its_copys_chat_or_member(env: WecomEnv) -> None:
    sender = env.adapter.sender
    assert sender.paced_as("update", "robot|wr_x|cb-1") == ("chat", "wr_x")
    assert sender.paced_as("update", "app|lisi|cb-1") == ("user", "lisi")
    assert sender.paced_as("chat", "wr_x") == ("chat", "wr_x")
    assert env.worker._keys(OutboxMessage(platform="wecom", target_kind="update", target_id="robot|wr_x|cb-1")) \
        .keys() == {"wecom:chat:wr_x"}


async def test_a_group_gets_its_rows_at_once_under_wecoms_real_limits_and_the_rest_a_minute_later(
        sqlite_db: Database) -> None:
    """The declared limits on the delivery worker's sliding windows, against the fake's real one-minute
    window of 30: a quiet group gets 15 rows (up to 30 messages) in one burst, none refused, and the 16th
    waits for the minute. Every row here @mentions, so each is two pushes: the words, then the card."""
    from datetime import timedelta

    from collabbot.storage import outbox

    fake = fw.FakeWecom(users=USERS, departments=DEPARTMENTS)  # real windows: 30 a minute per chat
    env = await make_env(sqlite_db, START, fake=fake, limits=LIMITS)
    try:
        await env.robot_says("@协作机器人 帮助", userid="zhangsan", chatid="wr_burst")
        await env.deliver()  # the help answer: one of the chat's 30
        start = env.clock.now()
        card = Card(kind="task", key="task:1", title="活动H5开发",
                    buttons=(Button("确认收到", CardAction("ack", "task", 1, 0).pack()),))
        with env.db.transaction() as s:
            for i in range(15):
                message = Message((At(0, "lisi", "李四"), f" 提醒 {i}"), card)
                outbox.enqueue(s, dedupe_key=f"burst-{i}", platform="wecom", target_kind="chat", target_id="wr_burst",
                               target_name="", payload=message.to_json(), now=start)
        started = time.monotonic()
        await env.deliver()
        pushed = [p for p in fake.pushes if p["chatid"] == "wr_burst"]
        assert len(pushed) == 1 + 2 * 14 and fake.refused_pushes == []  # the help answer, 14 rows of two
        assert time.monotonic() - started < 5.0  # a burst, not one every two seconds
        with env.db.transaction() as s:
            [waiting] = s.query(OutboxMessage).filter_by(status="pending").all()
            assert waiting.attempts == 0 and waiting.not_before >= start + timedelta(seconds=60)
    finally:
        await env.close()


def test_any_odd_value_anywhere_in_a_robot_body_is_parsed_or_refused_as_malformed() -> None:
    """A signed (or long-connection) body may hold anything anywhere: Malformed, never a crash."""
    names = {"李四": "lisi"}
    tried = 0
    for original in (fw.robot_message("@协作机器人 我的任务 @李四", userid="zhangsan", chatid="wrc1", msgid="m1"),
                     fw.robot_message("我的任务", userid="zhangsan", msgid="m2"),
                     fw.robot_tap("t-1", "v1|ack|task|1|0", userid="lisi", chatid="wrc1", msgid="m3")):
        for body in odd_json.variants(original):
            with contextlib.suppress(parse.Malformed):
                parse.parse_robot(body, names, "协作机器人")
            tried += 1
    assert tried > 300
