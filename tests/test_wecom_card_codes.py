"""The app card codes kept in the database (WeCom's response_code: 72 h, usable once), on both back-ends."""

from __future__ import annotations

import logging
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import pytest
from sqlalchemy import select, text, update

from collabbot.adapters.wecom import parse
from collabbot.storage import card_codes
from collabbot.storage.db import Database
from collabbot.storage.models import InboundQueueItem, OutboxMessage

from . import fake_wecom as fw
from .wecom_env import WecomEnv, count, make_env

NOW = datetime(2026, 12, 1, 1, 0, tzinfo=UTC)
LATER = NOW + timedelta(hours=72)


def test_only_the_latest_code_is_kept_and_it_is_used_once(db: Database) -> None:
    with db.transaction() as s:
        assert card_codes.keep(s, "wecom", "app|lisi|cb-1", "cb-1", "rc-send", LATER, NOW)
        assert card_codes.keep(s, "wecom", "app|lisi|cb-1", "cb-1", "rc-click", LATER, NOW)  # a tap's code wins
        assert not card_codes.keep(s, "wecom", "app|lisi|cb-1", "cb-1", "rc-click", LATER, NOW)  # a redelivery
    with db.transaction() as s:
        assert card_codes.take(s, "wecom", "app|lisi|cb-1", NOW) == card_codes.Code("rc-click", "cb-1")
    with db.transaction() as s:
        assert card_codes.take(s, "wecom", "app|lisi|cb-1", NOW) is None  # once
        # a redelivered tap repeats the used code: it does not come back to life
        assert not card_codes.keep(s, "wecom", "app|lisi|cb-1", "cb-1", "rc-click", LATER, NOW)
        assert card_codes.take(s, "wecom", "app|lisi|cb-1", NOW) is None
        assert card_codes.take(s, "feishu", "app|lisi|cb-1", NOW) is None  # platforms apart


def test_an_expired_code_is_not_taken_and_is_pruned(db: Database) -> None:
    with db.transaction() as s:
        card_codes.keep(s, "wecom", "app|lisi|cb-1", "cb-1", "rc-1", LATER, NOW)
    with db.transaction() as s:
        assert card_codes.take(s, "wecom", "app|lisi|cb-1", LATER) is None
        card_codes.keep(s, "wecom", "app|zhaoliu|cb-2", "cb-2", "rc-2", LATER + timedelta(hours=72), LATER)
        # the expired row went on the way: the same code is new again (WeCom would never repeat one)
        assert card_codes.keep(s, "wecom", "app|lisi|cb-1", "cb-1", "rc-1", LATER + timedelta(hours=1), LATER)


def test_a_code_given_back_is_usable_again_unless_a_newer_one_came(db: Database) -> None:
    with db.transaction() as s:
        card_codes.keep(s, "wecom", "m1", "cb-1", "rc-1", LATER, NOW)
        assert card_codes.take(s, "wecom", "m1", NOW) is not None
        assert card_codes.give_back(s, "wecom", "m1", "rc-1")
        assert card_codes.take(s, "wecom", "m1", NOW) == card_codes.Code("rc-1", "cb-1")
        card_codes.keep(s, "wecom", "m1", "cb-9", "rc-2", LATER, NOW)
        assert not card_codes.give_back(s, "wecom", "m1", "rc-1")
        assert card_codes.take(s, "wecom", "m1", NOW) == card_codes.Code("rc-2", "cb-9")


def test_ids_too_long_for_the_table_are_not_kept(db: Database) -> None:
    with db.transaction() as s:
        assert not card_codes.keep(s, "wecom", "x" * 201, "cb-1", "rc-1", LATER, NOW)
        assert not card_codes.keep(s, "wecom", "m1", "c" * 129, "rc-1", LATER, NOW)
        assert not card_codes.keep(s, "wecom", "m1", "cb-1", "", LATER, NOW)


# --- through the adapter, against the fake WeCom, with a restart between the tap and the update ------------
TZ8 = timezone(timedelta(hours=8))
START = datetime(2026, 12, 1, 9, 0, tzinfo=TZ8)
GROUP = "wrcodes1"


async def _task_with_two_copies(env: WecomEnv) -> tuple[dict[str, Any], fw.Card]:
    """A task whose card is in the group (the robot's) and with its owner 李四 (the app's)."""
    await env.robot_says("@协作机器人 绑定项目 官网 协同负责人 @张三", userid="zhangsan", chatid=GROUP, msgid="b1")
    await env.robot_says("@协作机器人 新建任务 活动H5开发 负责人 @李四 截止 12-10", userid="zhangsan", chatid=GROUP,
                         msgid="m1")
    await env.deliver()
    group = [p["template_card"] for p in env.fake.pushes if p["msgtype"] == "template_card" and p["chatid"] == GROUP]
    [owner] = [c for c in env.fake.cards.values() if c.target == "lisi" and c.via == "app"]
    return group[-1], owner


def _app_cards_to(fake: fw.FakeWecom, userid: str) -> list[dict[str, Any]]:
    return [s for s in fake.sent if s["touser"] == userid and s["msgtype"] == "template_card"]


def _key(card: dict[str, Any], verb: str) -> str:
    return next(b["key"] for b in card["button_list"] if f"|{verb}|" in b["key"])


async def test_after_a_restart_an_app_card_is_updated_in_place_and_a_used_code_falls_back_to_a_new_card(
        db: Database) -> None:
    env = await make_env(db, START)
    try:
        group, owner = await _task_with_two_copies(env)
        await env.fake.tap(group["task_id"], _key(group, "ack"), userid="lisi", chatid=GROUP, msgid="t1")
        await env.settle()  # the engine queued the owner's copy's update; this process stops before sending it
        sent_before = len(_app_cards_to(env.fake, "lisi"))
        env = await env.restart()
        await env.deliver()
        [updated] = owner.changed("code")  # in place, with the send's response_code, read from the database
        assert updated["task_id"] == owner.task_id and updated != owner.versions[0][1]
        assert len(_app_cards_to(env.fake, "lisi")) == sent_before  # not posted again

        # that code is used now: the next change is a new card, whose own code is kept for the copy
        tapped = env.fake.cards[group["task_id"]].changed("tap")
        current = tapped[-1] if tapped else group
        await env.fake.tap(group["task_id"], _key(current, "start"), userid="lisi", chatid=GROUP, msgid="t2")
        await env.settle()
        await env.deliver()
        assert len(owner.changed("code")) == 1
        resent = _app_cards_to(env.fake, "lisi")[sent_before:]
        assert len(resent) == 1 and resent[0]["template_card"]["task_id"] != owner.task_id
        with env.db.transaction() as s:
            kept = card_codes.take(s, "wecom", parse.app_message_id("lisi", owner.task_id), env.clock.now())
        assert kept is not None and kept.card_id == resent[0]["template_card"]["task_id"]
    finally:
        await env.close()


async def test_an_expired_code_falls_back_to_a_new_card(db: Database) -> None:
    env = await make_env(db, START)
    try:
        group, owner = await _task_with_two_copies(env)
        env.clock.advance(timedelta(hours=72))
        env = await env.restart()
        await env.fake.tap(group["task_id"], _key(group, "ack"), userid="lisi", chatid=GROUP, msgid="t1")
        await env.settle()
        sent_before = len(_app_cards_to(env.fake, "lisi"))
        await env.deliver()
        assert owner.changed("code") == []  # WeCom would refuse a 72-hour-old code: not even tried
        assert env.fake.api_calls("/cgi-bin/message/update_template_card") == []
        assert len(_app_cards_to(env.fake, "lisi")) == sent_before + 1
    finally:
        await env.close()


async def test_a_tapped_app_card_is_updated_in_place_after_a_restart_and_a_redelivered_tap_changes_nothing(
        db: Database) -> None:
    env = await make_env(db, START)
    try:
        _, owner = await _task_with_two_copies(env)
        code = env.fake.app_tap_code(owner.task_id, "lisi")
        xml = fw.app_tap(owner.task_id, _key(owner.versions[0][1], "ack"), userid="lisi", response_code=code,
                         create_time=int(env.clock.now().timestamp()))
        env.fake.fail_next("/cgi-bin/message/update_template_card", -1)  # WeCom busy: the update waits for a retry
        status, _ = await env.app_says(xml)
        assert status == 200 and owner.changed("click") == []
        env = await env.restart()
        with env.db.transaction() as s:  # the retry's time has come (the queue keeps wall-clock times)
            s.execute(update(InboundQueueItem).values(not_before=datetime.now(UTC) - timedelta(seconds=1),
                                                      claimed_until=None))
        assert await env.adapter.inbound.pipeline.resume() == 1
        await env.adapter.inbound.drain()
        [clicked] = owner.changed("click")  # in place, with the tap's code
        assert clicked["task_id"] == owner.task_id and clicked != owner.versions[0][1]
        assert count(env.db, InboundQueueItem) == 0

        sends, calls = len(env.fake.sent), len(env.fake.calls)
        status, _ = await env.app_says(xml)  # WeCom redelivers the tap, ResponseCode and all
        assert status == 200 and owner.changed("click") == [clicked]
        assert len(env.fake.sent) == sends
        assert [c.path for c in env.fake.calls[calls:]] == []  # its code is known as used: not even tried
    finally:
        await env.close()


async def test_a_throttled_update_keeps_its_code_for_the_next_try(db: Database) -> None:
    env = await make_env(db, START)
    try:
        group, owner = await _task_with_two_copies(env)
        await env.fake.tap(group["task_id"], _key(group, "ack"), userid="lisi", chatid=GROUP, msgid="t1")
        await env.settle()
        sent_before = len(_app_cards_to(env.fake, "lisi"))
        env.fake.fail_next("/cgi-bin/message/update_template_card", 45009)
        await env.deliver()
        assert owner.changed("code") == []
        env.clock.advance(timedelta(minutes=2))
        await env.deliver()
        assert len(owner.changed("code")) == 1 and len(_app_cards_to(env.fake, "lisi")) == sent_before
    finally:
        await env.close()


async def test_a_tap_the_engine_answered_too_late_for_the_callback_still_updates_its_card(db: Database) -> None:
    env = await make_env(db, START)
    try:
        _, owner = await _task_with_two_copies(env)
        env.adapter.inbound.pipeline.answer_within = 0.0  # the callback is answered before the engine is done
        code = env.fake.app_tap_code(owner.task_id, "lisi")
        xml = fw.app_tap(owner.task_id, _key(owner.versions[0][1], "ack"), userid="lisi", response_code=code,
                         create_time=int(env.clock.now().timestamp()))
        status, _ = await env.app_says(xml)
        assert status == 200 and env.adapter.inbound.pipeline.late_answers == 1
        [clicked] = owner.changed("click")  # from the engine's receipt, with the tap's code
        assert clicked["task_id"] == owner.task_id and clicked != owner.versions[0][1]
        assert count(env.db, InboundQueueItem) == 0 and env.adapter.inbound.card_updates_failed == 0
    finally:
        await env.close()


async def test_url_callback_mode_answers_through_the_response_url_after_a_restart_once(db: Database) -> None:
    callback = {"robot_mode": "callback", "robot_token": fw.ROBOT_TOKEN, "robot_encoding_aes_key": fw.ROBOT_AES_KEY}
    env = await make_env(db, START, **callback)
    try:
        at = env.clock.now().timestamp()
        body = fw.robot_message("@协作机器人 帮助", userid="zhangsan", chatid="wrcb", create_time=int(at))
        body["response_url"] = env.fake.url + "/cgi-bin/aibot/response?code=r1"
        query, raw = fw.robot_envelope(body, at=at)
        response = await env.http.post(f"{env.adapter.settings.robot_path}?{query}", data=raw)
        await env.adapter.inbound.drain()
        assert response.status == 200
        env = await env.restart(**callback)  # the answer is still queued; the response_url is in the database
        await env.deliver()
        [answered] = env.fake.calls_to("/cgi-bin/aibot/response")
        assert answered.query["code"] == "r1" and answered.code == 0
        # used: WeCom's redelivery of the same message (same response_url) does not make it usable again
        response = await env.http.post(f"{env.adapter.settings.robot_path}?{query}", data=raw)
        assert response.status == 200
        with env.db.transaction() as s:
            assert card_codes.take(s, "wecom", "response_url|wrcb", env.clock.now()) is None
    finally:
        await env.close()


async def test_a_card_that_went_out_is_sent_even_when_its_code_cannot_be_kept(sqlite_db: Database,
                                                                              caplog: pytest.LogCaptureFixture) -> None:
    """The database failing after WeCom took the card must not fail the row: a resend would be refused as a
    repeated task_id, and the row would die although the card was delivered."""
    from collabbot.bot.replies import Button, Card, Message

    env = await make_env(sqlite_db, START)
    try:
        with sqlite_db.engine.begin() as conn:
            conn.execute(text("DROP TABLE card_update_codes"))
        card = Card("task", "task:1", "设计", buttons=(Button("确认收到", "v1|ack|task|1|0"),))
        with caplog.at_level(logging.WARNING):
            message_id = await env.adapter.sender.post("user", "lisi", Message((), card), "inst:k-1")
        assert message_id is not None and message_id.startswith("app|lisi|")
        assert [s["touser"] for s in env.fake.sent] == ["lisi"]
        assert any("cannot keep the response_code" in r.getMessage() for r in caplog.records)
    finally:
        await env.close()


async def test_a_card_sent_by_an_attempt_whose_process_died_is_recorded_sent_when_resent(db: Database) -> None:
    """A process that sent a card and died before recording it leaves the row pending; the next attempt
    repeats the card's task_id (made from the row's idempotency key), WeCom refuses it as used, and that
    refusal means the card is there: the row is sent, not dead, and nobody gets a second card."""
    env = await make_env(db, START)
    try:
        await _task_with_two_copies(env)
        with env.db.transaction() as s:  # as a kill -9 between the send and its record leaves the rows
            s.execute(update(OutboxMessage).where(OutboxMessage.status == "sent").values(
                status="pending", platform_message_id=None, claim_token=None, claimed_until=None))
        pushes, app_cards = len(env.fake.pushes), len(_app_cards_to(env.fake, "lisi"))
        await env.deliver()
        with env.db.transaction() as s:
            statuses = {r.status for r in s.scalars(select(OutboxMessage).where(OutboxMessage.target_kind != "update"))}
        assert statuses == {"sent"}
        assert len(_app_cards_to(env.fake, "lisi")) == app_cards  # no second card for the owner
        assert [p for p in env.fake.pushes[pushes:] if p["msgtype"] == "template_card"] == []  # nor in the group
    finally:
        await env.close()
