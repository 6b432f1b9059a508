"""The webhook behind a real aiohttp server, with callbacks encrypted and signed as Feishu does it.

Refused requests (forged, stale, wrong token, malformed, oversized) change nothing; a retried or
re-sent event changes nothing; a group message addressed to the bot creates a task; chatter does not.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import AsyncIterator
from datetime import datetime, timedelta

import pytest
from sqlalchemy import select

from collabbot.adapters.feishu import crypto
from collabbot.storage.db import Database
from collabbot.storage.models import ApprovalRequest, Chat, Identity, InboundReceipt, OutboxMessage, Task, User

from . import feishu_callbacks as cb
from .conftest import TZ
from .fake_feishu import FakeFeishu
from .feishu_env import FeishuEnv, count, make_env

START = datetime(2026, 12, 1, 9, 0, tzinfo=TZ)  # a Tuesday, a working day
CREATE = "新建任务 活动H5开发 负责人 @_user_2 截止 12-10"


@pytest.fixture
async def env(sqlite_db: Database) -> AsyncIterator[FeishuEnv]:
    e = await make_env(sqlite_db, START)
    yield e
    await e.close()


def snapshot(db: Database) -> tuple[int, int, int]:
    return count(db, Task), count(db, OutboxMessage), count(db, InboundReceipt)


async def test_url_verification_challenge_is_answered_after_its_token(env: FeishuEnv) -> None:
    status, answer = await env.post(cb.challenge(), signed=False)  # Feishu sends it unsigned
    assert (status, answer) == (200, {"challenge": "ajls384kdjx98XX"})
    status, answer = await env.post(cb.challenge(token="forged"), signed=False)
    assert status == 401 and "challenge" not in answer


@pytest.mark.parametrize("flavour", ["sqlite", "postgresql"])
async def test_a_group_message_creates_a_task_once_however_often_it_arrives(
        flavour: str, sqlite_db: Database, request: pytest.FixtureRequest) -> None:
    db = sqlite_db if flavour == "sqlite" else request.getfixturevalue("pg_database")
    if flavour == "postgresql":
        from .conftest import truncate_all
        truncate_all(db)
    env = await make_env(db, START)
    try:
        body = cb.message("@_user_1 " + CREATE, sender="ou_zhang", mentions=[("ou_bot", "bot"), ("ou_li", "李四")],
                          at=START, message_id="om_create")
        headers, raw = cb.envelope(body, at=START)
        status, answer = await env.post_raw(headers, raw)
        assert (status, answer) == (200, {})
        with db.transaction() as s:
            task = s.scalar(select(Task))
            assert task.title == "活动H5开发" and task.owner.name == "李四" and task.initiator.name == "张三"
            assert s.scalar(select(Chat).where(Chat.platform_chat_id == "oc_group")).platform == "feishu"
            rows = {(r.target_kind, r.target_id, r.card_key) for r in s.scalars(select(OutboxMessage))}
        assert ("chat", "oc_group", f"task:{task.id}") in rows and ("user", "ou_li", f"task:{task.id}") in rows
        before = snapshot(db)
        assert await env.post_raw(headers, raw) == (200, {})  # Feishu's retry of the same request
        again = cb.message("@_user_1 " + CREATE, sender="ou_zhang", mentions=[("ou_bot", "bot"), ("ou_li", "李四")],
                           at=START, message_id="om_create")  # a re-push under a new event_id
        assert again["header"]["event_id"] != body["header"]["event_id"]
        assert await env.post(again) == (200, {})
        assert snapshot(db) == before
    finally:
        await env.close()


async def test_group_chatter_without_the_bot_does_nothing(env: FeishuEnv) -> None:
    assert await env.say(CREATE, sender="ou_zhang", mentions=[("ou_li", "李四")], bot=False) == (200, {})
    assert snapshot(env.db) == (0, 0, 0)


async def test_private_messages_are_commands_and_answered_privately(env: FeishuEnv) -> None:
    await env.say("帮助", sender="ou_li", bot=False, chat_id="oc_p2p_li", chat_type="p2p")
    with env.db.transaction() as s:
        rows = [(r.target_kind, r.target_id) for r in s.scalars(select(OutboxMessage))]
        assert s.scalar(select(Chat)) is None  # a private chat is not a group
    assert rows == [("user", "ou_li")]


async def test_an_unknown_sender_is_created_on_the_fly(env: FeishuEnv) -> None:
    await env.say("我的任务", sender="ou_newcomer", bot=False, chat_type="p2p", chat_id="oc_p2p_new")
    with env.db.transaction() as s:
        from collabbot.storage.models import Identity
        identity = s.scalar(select(Identity).where(Identity.platform_user_id == "ou_newcomer"))
        assert identity is not None and identity.user.name == "ou_newcomer"


async def test_forged_stale_and_wrongly_tokened_requests_are_refused_and_change_nothing(env: FeishuEnv) -> None:
    body = cb.message("@_user_1 " + CREATE, sender="ou_zhang", mentions=[("ou_bot", "bot"), ("ou_li", "李四")], at=START)
    headers, raw = cb.envelope(body, at=START)
    forged = dict(headers, **{crypto.SIGNATURE_HEADER: crypto.signature(
        headers[crypto.TIMESTAMP_HEADER], headers[crypto.NONCE_HEADER], "guessed-key", raw)})
    assert (await env.post_raw(forged, raw))[0] == 401
    other_body = json.dumps({"encrypt": crypto.encrypt(b'{"schema": "2.0"}', cb.ENCRYPT_KEY, b"1" * 16)}).encode()
    assert (await env.post_raw(headers, other_body))[0] == 401  # a body swapped under a valid signature
    assert (await env.post(body, at=START - timedelta(minutes=6)))[0] == 401  # stale
    assert (await env.post(body, at=START + timedelta(minutes=6)))[0] == 401  # from the future
    assert (await env.post(body, signed=False))[0] == 401  # unsigned, and not a challenge
    wrong_token = cb.message("@_user_1 " + CREATE, sender="ou_zhang", token="nope",
                             mentions=[("ou_bot", "bot"), ("ou_li", "李四")], at=START)
    assert (await env.post(wrong_token))[0] == 401
    assert (await env.post(body, key="another-key"))[0] == 401
    assert snapshot(env.db) == (0, 0, 0)
    assert env.adapter.webhook.refused == 7
    assert (await env.post(body))[0] == 200 and count(env.db, Task) == 1  # the genuine one still works


async def test_malformed_and_oversized_bodies(env: FeishuEnv) -> None:
    def signed(raw: bytes) -> dict[str, str]:
        ts, nonce = str(int(START.timestamp())), "n1"
        return {crypto.TIMESTAMP_HEADER: ts, crypto.NONCE_HEADER: nonce,
                crypto.SIGNATURE_HEADER: crypto.signature(ts, nonce, cb.ENCRYPT_KEY, raw)}

    for raw in (b"not json", b'{"schema": "2.0"}', b'{"encrypt": "@@@"}', b"[]",
                json.dumps({"encrypt": crypto.encrypt(b"not json", cb.ENCRYPT_KEY, b"2" * 16)}).encode(),
                json.dumps({"encrypt": crypto.encrypt(b'{"schema": "2.0", "header": {}}', cb.ENCRYPT_KEY, b"3" * 16)}).encode()):
        status, _ = await env.post_raw(signed(raw), raw)
        assert status == 400, raw
    huge = json.dumps({"encrypt": "A" * (env.adapter.settings.max_body_bytes + 10)}).encode()
    assert (await env.post_raw(signed(huge), huge))[0] == 413
    assert snapshot(env.db) == (0, 0, 0)


async def test_a_message_typed_long_ago_is_not_executed(env: FeishuEnv) -> None:
    """Feishu retries for hours and flushes queues after a reconnect: old commands are not run blindly."""
    old = cb.message("@_user_1 " + CREATE, sender="ou_zhang", mentions=[("ou_bot", "bot"), ("ou_li", "李四")],
                     at=START - timedelta(minutes=20))
    assert await env.post(old, at=START) == (200, {})
    assert snapshot(env.db) == (0, 0, 0)


async def test_bot_added_to_a_group_says_welcome_and_removed_deactivates(env: FeishuEnv) -> None:
    await env.post(cb.bot_member("oc_new", "新品上市群", added=True, operator="ou_zhang", at=START))
    with env.db.transaction() as s:
        chat = s.scalar(select(Chat).where(Chat.platform_chat_id == "oc_new"))
        assert chat.name == "新品上市群" and chat.active
        assert [(r.target_kind, r.target_id) for r in s.scalars(select(OutboxMessage))] == [("chat", "oc_new")]
    await env.post(cb.bot_member("oc_new", "新品上市群", added=False, operator="ou_zhang", at=START))
    with env.db.transaction() as s:
        assert not s.scalar(select(Chat).where(Chat.platform_chat_id == "oc_new")).active


async def test_linked_approval_instances_are_mirrored_and_their_outcome_told_once(sqlite_db: Database) -> None:
    """审批实例状态变更 carries codes only: the adapter answers at once, reads the instance (form and
    initiator) from the approval API, and the engine mirrors it; retries and duplicates change nothing."""
    env = await make_env(sqlite_db, START, approvals={"7C468A54-8745": "人力支持申请"})
    try:
        form = [{"id": "w1", "name": "支持部门", "type": "input", "value": "技术部"},
                {"id": "w2", "name": "人数", "type": "number", "value": 2},
                {"id": "w3", "name": "用途", "type": "textarea", "value": '<at user_id="all">活动H5</at>'},
                {"id": "w4", "name": "附件", "type": "attachmentV2", "value": ["https://x/1"]}]
        env.fake.add_approval_instance("INST-1", "7C468A54-8745", "PENDING", "ou_zhang", form)
        assert await env.post(cb.approval_instance("7C468A54-8745", "INST-1", "PENDING")) == (200, {})
        env.fake.approval_instances["INST-1"]["status"] = "APPROVED"
        approved = cb.approval_instance("7C468A54-8745", "INST-1", "APPROVED")
        assert await env.post(approved) == (200, {})
        assert await env.post(approved) == (200, {})  # Feishu's retry
        assert await env.post({**approved, "uuid": "another-id"}) == (200, {})  # a duplicate under a new id
        assert await env.post(cb.approval_instance("UNLINKED", "INST-2", "APPROVED")) == (200, {})
        reads = env.fake.api_calls("GET", "/open-apis/approval/v4/instances/")
        assert {c.path.rsplit("/", 1)[-1] for c in reads} == {"INST-1"}
        assert all(c.query.get("user_id_type") == "open_id" for c in reads)
        with env.db.transaction() as s:
            [req] = s.scalars(select(ApprovalRequest)).all()
            assert (req.status, req.external_id, req.initiator.name) == ("approved", "feishu:INST-1", "张三")
            assert req.values["支持部门"] == "技术部" and req.values["人数"] == "2" and "附件" not in req.values
        await env.deliver()
        [told] = env.fake.sent("ou_zhang")
        assert told["msg_type"] == "interactive" and "人力支持申请" in json.dumps(told["content"], ensure_ascii=False)
        assert "<at" not in json.dumps(told["content"], ensure_ascii=False)  # the form's text mentions nobody
        with env.db.transaction() as s:  # one receipt per instance and status, however often it came
            receipts = sorted(s.scalars(select(InboundReceipt.event_id).where(
                InboundReceipt.event_id.like("approval:%"))))
        assert receipts == ["approval:INST-1:approved", "approval:INST-1:pending"]
    finally:
        await env.close()


async def test_linked_approval_definitions_are_subscribed_at_start(sqlite_db: Database,
                                                                  caplog: pytest.LogCaptureFixture) -> None:
    """Feishu sends no approval event before the app asked for the definition's (订阅审批事件); asking again
    is answered "subscription existed", which is fine; a missing permission is logged with what to grant."""
    fake = FakeFeishu()
    env = await make_env(sqlite_db, START, fake=fake, approvals={"7C468A54-8745": "人力支持申请"})
    await env.close()
    assert fake.approval_subscriptions == {"7C468A54-8745"}
    with caplog.at_level(logging.INFO, logger="collabbot.adapters.feishu"):
        env = await make_env(sqlite_db, START, fake=fake, approvals={"7C468A54-8745": "人力支持申请",
                                                                     "NEW-CODE": "人力支持申请"})
        await env.close()
    assert fake.approval_subscriptions == {"7C468A54-8745", "NEW-CODE"}
    assert any("7C468A54-8745's events were already subscribed" in r.getMessage() for r in caplog.records)
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR]
    fake.approval_scope = False
    with caplog.at_level(logging.ERROR, logger="collabbot.adapters.feishu"):
        env = await make_env(sqlite_db, START, fake=fake, approvals={"THIRD": "人力支持申请"})
        await env.close()
    assert any("grant the app approval:approval" in r.getMessage() for r in caplog.records)


async def test_an_approval_instance_that_cannot_be_read_changes_nothing(sqlite_db: Database) -> None:
    env = await make_env(sqlite_db, START, approvals={"7C468A54-8745": "人力支持申请"})
    try:
        assert await env.post(cb.approval_instance("7C468A54-8745", "NO-SUCH", "APPROVED")) == (200, {})
        assert count(env.db, ApprovalRequest) == 0 and count(env.db, InboundReceipt) == 0
    finally:
        await env.close()


async def test_the_answer_does_not_wait_for_a_slow_engine(env: FeishuEnv, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(env.adapter.inbound.pipeline, "answer_within", 0.2)
    handle = env.bot.handle

    def slow(event):  # type: ignore[no-untyped-def]
        time.sleep(1.0)
        return handle(event)

    monkeypatch.setattr(env.bot, "handle", slow)
    headers, raw = cb.envelope(cb.message("@_user_1 " + CREATE, sender="ou_zhang",
                                          mentions=[("ou_bot", "bot"), ("ou_li", "李四")], at=START), at=START)
    started = time.monotonic()
    response = await env.http.post(env.adapter.settings.path, data=raw, headers=headers)
    assert response.status == 200 and await response.json() == {}
    assert time.monotonic() - started < 0.8
    await env.adapter.inbound.drain()  # the engine still finishes the work
    assert count(env.db, Task) == 1


async def test_no_encrypt_key_means_plain_bodies_checked_by_token(sqlite_db: Database) -> None:
    env = await make_env(sqlite_db, START, encrypt_key="")
    try:
        body = cb.message("@_user_1 " + CREATE, sender="ou_zhang", mentions=[("ou_bot", "bot"), ("ou_li", "李四")],
                          at=START)
        response = await env.http.post(env.adapter.settings.path, json=body)
        assert response.status == 200
        wrong = dict(body, header=dict(body["header"], token="nope"))
        assert (await env.http.post(env.adapter.settings.path, json=wrong)).status == 401
        headers, raw = cb.envelope(body, at=START)
        assert (await env.post_raw(headers, raw))[0] == 400  # encrypted, but we have no key
        assert count(env.db, Task) == 1
    finally:
        await env.close()


async def test_bot_open_id_is_learned_from_the_bot_info_api(sqlite_db: Database) -> None:
    env = await make_env(sqlite_db, START, bot_open_id="")
    try:
        assert env.adapter.inbound.bot_open_id == "ou_bot"
        assert len(env.fake.api_calls("GET", "/open-apis/bot/v3/info")) == 1
        await env.say(CREATE, sender="ou_zhang", mentions=[("ou_li", "李四")])
        assert count(env.db, Task) == 1
    finally:
        await env.close()


async def test_concurrent_copies_of_one_event_make_one_task(env: FeishuEnv) -> None:
    body = cb.message("@_user_1 " + CREATE, sender="ou_zhang", mentions=[("ou_bot", "bot"), ("ou_li", "李四")], at=START)
    results = await asyncio.gather(*(env.post(body) for _ in range(5)))
    assert {status for status, _ in results} == {200}
    assert count(env.db, Task) == 1


async def test_a_bot_menu_tap_runs_its_command_and_answers_privately(env: FeishuEnv) -> None:
    menu = {"schema": "2.0", "header": cb.header("application.bot.menu_v6", at=START),
            "event": {"operator": {"operator_name": "李四", "operator_id": cb.user_id("ou_li")},
                      "event_key": "/我的任务", "timestamp": str(int(START.timestamp()))}}
    assert await env.post(menu) == (200, {})
    await env.deliver()
    [answer] = env.fake.sent("ou_li")
    assert answer["receive_id_type"] == "open_id" and "没有" in json.dumps(answer["content"], ensure_ascii=False)
    assert await env.post(menu) == (200, {})  # Feishu's retry of the same tap: nothing new
    await env.deliver()
    assert len(env.fake.sent("ou_li")) == 1


async def test_the_fakes_approval_subscription_answers_lark_oapi_as_feishu_does() -> None:
    """The fake cannot drift from the API: lark-oapi's own client subscribes through it, then is told it
    already had."""
    import lark_oapi as lark
    from lark_oapi.api.approval.v4 import SubscribeApprovalRequest

    fake = FakeFeishu()
    await fake.start()
    try:
        client = lark.Client.builder().app_id(fake.app_id).app_secret(fake.app_secret).domain(fake.url) \
            .log_level(lark.LogLevel.ERROR).build()
        request = SubscribeApprovalRequest.builder().approval_code("7C468A54-8745").build()
        # its calls are blocking ones: on a thread, so that the fake (on this loop) can answer
        first = await asyncio.to_thread(client.approval.v4.approval.subscribe, request)
        again = await asyncio.to_thread(client.approval.v4.approval.subscribe, request)
        assert first.success() and fake.approval_subscriptions == {"7C468A54-8745"}
        assert not again.success() and again.code == 1390007
    finally:
        await fake.close()


async def test_someone_no_sync_lists_is_named_by_the_first_mention_that_carries_their_name(env: FeishuEnv) -> None:
    """Feishu's message event names nobody but the mentioned: a guest outside the synced scope first writes
    (known by open_id), then is @mentioned, and from then on is called by name."""
    await env.say("任务列表", sender="ou_guest")
    with env.db.transaction() as s:
        assert s.scalar(select(User.name).join(Identity).where(Identity.platform_user_id == "ou_guest")) == "ou_guest"
    await env.say("新建任务 海报 负责人 @_user_2 截止 12-10", sender="ou_zhang", mentions=[("ou_guest", "王访客")])
    with env.db.transaction() as s:
        assert s.scalar(select(User.name).join(Identity).where(Identity.platform_user_id == "ou_guest")) == "王访客"
        assert s.scalar(select(Task)).owner.name == "王访客"
    await env.say("新建任务 文案 负责人 @_user_2 截止 12-10", sender="ou_zhang", mentions=[("ou_li", "小李")])
    with env.db.transaction() as s:  # a synced name is the org's, whatever a mention calls them
        assert s.scalar(select(User.name).join(Identity).where(Identity.platform_user_id == "ou_li")) == "李四"
