"""DingTalk's pieces on their own: the parser (one test per parsing rule), the HTTP signatures, the config,
HTTP mode's card callback route (registered at start, its taps signed), each send path against the fake
(cards, robot sends, session webhooks, DING, errors), and the org sync."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select

from collabbot.adapters.dingtalk import parse, sign
from collabbot.adapters.dingtalk.client import DingTalkClient
from collabbot.adapters.dingtalk.config import parse_settings
from collabbot.adapters.dingtalk.contacts import fetch_org
from collabbot.adapters.dingtalk.sender import DingTalkSender, SessionWebhooks, out_track_id
from collabbot.adapters.dingtalk.webhook import CardRoute
from collabbot.adapters.kit.client import ApiError
from collabbot.adapters.kit.webhook import Refused
from collabbot.bot.clock import ManualClock
from collabbot.bot.config import Config, ConfigError, ReportSettings
from collabbot.bot.events import MARKER, mention_marker
from collabbot.bot.replies import At, Button, Card, CardAction, Message
from collabbot.scheduler.delivery import DeliveryError, Throttled
from collabbot.storage.db import Database
from collabbot.storage.models import Task
from collabbot.storage.outbox import OutboxItem

from . import dingtalk_payloads as p
from . import odd_json
from .conftest import TZ
from .dingtalk_env import NAMES, DingTalkEnv, make_env
from .fake_dingtalk import FakeDingTalk, ThreadedFake
from .feishu_env import count

NOW = datetime(2026, 12, 1, 9, 0, tzinfo=TZ)
ACK = CardAction("ack", "task", 1, 0).pack()


# --- parsing -----------------------------------------------------------------------------------
def test_a_group_message_resolves_mentions_in_order_and_drops_the_robot() -> None:
    data = p.robot_message("新建任务 H5 负责人 @李四 协助 @赵六 截止 12-10", sender="zhang01", at=NOW,
                           at_users=["li01", "zhao01"])
    event = parse.parse_message(data).what
    assert isinstance(event, parse.MessageEvent) and event.to_bot and event.chat.is_group
    assert [m.platform_user_id for m in event.mentions] == ["li01", "zhao01"]
    assert event.text == f"新建任务 H5 负责人  {mention_marker(0)}  协助  {mention_marker(1)}  截止 12-10".strip()


def test_the_robots_own_token_is_removed_when_dingtalk_leaves_it_in_the_text() -> None:
    data = p.robot_message("@协作机器人 负责人 @李四", sender="zhang01", at=NOW, at_users=["li01"])
    event = parse.parse_message(data).what
    assert isinstance(event, parse.MessageEvent)
    assert "协作机器人" not in event.text and [m.platform_user_id for m in event.mentions] == ["li01"]


def test_an_email_address_is_not_a_mention() -> None:
    data = p.robot_message("备注 a@b.com 负责人 @李四", sender="zhang01", at=NOW, at_users=["li01"])
    event = parse.parse_message(data).what
    assert isinstance(event, parse.MessageEvent) and "a@b.com" in event.text and len(event.mentions) == 1


def test_an_at_sign_without_a_listed_user_stays_text() -> None:
    event = parse.parse_message(p.robot_message("评论 #1 @all 看看", sender="zhang01", at=NOW)).what
    assert isinstance(event, parse.MessageEvent) and "@all" in event.text and event.mentions == ()


def test_typed_marker_characters_cannot_forge_a_mention() -> None:
    event = parse.parse_message(p.robot_message(f"负责人 {mention_marker(0)}", sender="zhang01", at=NOW)).what
    assert isinstance(event, parse.MessageEvent) and not MARKER.search(event.text)


def test_a_group_message_not_addressed_to_the_robot_is_ignored() -> None:
    data = p.robot_message("大家好", sender="zhang01", at=NOW, to_robot=False)
    assert isinstance(parse.parse_message(data).what, parse.Ignored)


def test_a_private_message_is_addressed_to_the_robot_and_has_no_chat() -> None:
    event = parse.parse_message(p.robot_message("我的任务", sender="li01", at=NOW, group=False)).what
    assert isinstance(event, parse.MessageEvent) and event.to_bot and not event.chat.is_group


def test_a_message_without_msg_id_is_malformed() -> None:
    data = p.robot_message("x", sender="li01", at=NOW)
    del data["msgId"]
    with pytest.raises(parse.Malformed):
        parse.parse_message(data)


def test_a_card_callback_carries_the_packed_action_and_the_card_instance() -> None:
    tap = parse.parse_card_callback("f-1", p.card_callback(ACK, user="li01", out_track_id="cb-1"))
    assert tap.value == ACK and tap.out_track_id == "cb-1" and tap.event().message_id == "cb-1"
    assert tap.is_group and tap.operator.platform_user_id == "li01"
    forged = parse.parse_card_callback("f-2", p.card_callback("v1|ack|task|1|0|extra", user="li01", out_track_id="c"))
    assert forged.value == ""
    with pytest.raises(parse.Malformed):
        parse.parse_card_callback("f-3", dict(p.card_callback(ACK, user="li01", out_track_id="c"), content="{not json"))


# --- the HTTP sign -------------------------------------------------------------------------------
def test_the_sign_is_hmac_sha256_of_timestamp_and_secret_in_base64() -> None:
    # computed independently: base64(HMAC-SHA256(key=secret, "1764550800000\nsecret"))
    import base64
    import hashlib
    import hmac
    expected = base64.b64encode(hmac.new(b"secret", b"1764550800000\nsecret", hashlib.sha256).digest()).decode()
    assert sign.sign("1764550800000", "secret") == expected
    sign.check({"timestamp": "1764550800000", "sign": expected}, "secret",
               datetime.fromtimestamp(1764550800, TZ) + timedelta(minutes=59), 3600)


@pytest.mark.parametrize("headers", [
    {}, {"timestamp": "1764550800000"}, {"sign": "x"}, {"timestamp": "abc", "sign": "x"},
    {"timestamp": "1764550800000", "sign": "wrong"}, {"timestamp": "１７６４５５０８０００００", "sign": "x"},
])
def test_a_bad_sign_is_refused_with_one_answer(headers: dict[str, str]) -> None:
    with pytest.raises(Refused) as refused:
        sign.check(headers, "secret", datetime.fromtimestamp(1764550800, TZ), 3600)
    assert refused.value.status == 401


def test_a_sign_older_than_the_window_is_refused() -> None:
    """5 minutes by default: neither signature covers the body, so a captured pair vouches for any body
    as long as the window lets it."""
    window = parse_settings({"client_id": "ding1", "client_secret": "s", "card_template_id": "t"}).sign_window_seconds
    assert window == 300
    sign.check(p.signed_headers("secret", NOW - timedelta(minutes=4)), "secret", NOW, window)
    for off in (timedelta(minutes=6), -timedelta(minutes=6), timedelta(minutes=61)):
        with pytest.raises(Refused):
            sign.check(p.signed_headers("secret", NOW - off), "secret", NOW, window)


def test_the_card_callback_signature_is_hmac_sha256_of_the_timestamp_by_the_api_secret() -> None:
    import base64
    import hashlib
    import hmac
    expected = base64.b64encode(hmac.new(b"api", b"1764550800000", hashlib.sha256).digest()).decode()
    assert sign.card_sign("1764550800000", "api") == expected
    at = datetime.fromtimestamp(1764550800, TZ)
    headers = {"x-ddpaas-signature-timestamp": "1764550800000", "x-ddpaas-signature": expected}
    sign.check_card(headers, "api", at + timedelta(minutes=59), 3600)
    for bad in ({**headers, "x-ddpaas-signature": sign.sign("1764550800000", "api")},
                {"x-ddpaas-signature": expected}, {"x-ddpaas-signature-timestamp": "1764550800000"}):
        with pytest.raises(Refused):
            sign.check_card(bad, "api", at, 3600)
    with pytest.raises(Refused):
        sign.check_card(headers, "api", at + timedelta(minutes=61), 3600)
    # derived from the app secret: nothing new for the admin to keep, the same on every instance
    assert sign.api_secret("s1") == sign.api_secret("s1") != sign.api_secret("s2")
    assert "s1" not in sign.api_secret("s1") and len(sign.api_secret("s1")) == 64


# --- config --------------------------------------------------------------------------------------
def test_the_config_refuses_typos_and_missing_keys() -> None:
    base = {"client_id": "ding1", "client_secret": "s", "card_template_id": "t"}
    assert parse_settings(base).mode == "stream" and parse_settings(base).robot == "ding1"
    for raw, key in [({**base, "modee": "http"}, "dingtalk.modee"), ({**base, "mode": "webhook"}, "dingtalk.mode"),
                     ({k: v for k, v in base.items() if k != "card_template_id"}, "dingtalk.card_template_id"),
                     ({**base, "answer_within_seconds": 2.5}, "dingtalk.answer_within_seconds"),
                     ({**base, "sign_window_seconds": 7200}, "dingtalk.sign_window_seconds"),
                     ({**base, "group_text": "both"}, "dingtalk.group_text")]:
        with pytest.raises(ConfigError) as error:
            parse_settings(raw)
        assert str(error.value).startswith(key + ":")


def test_http_mode_needs_the_public_url_card_taps_are_registered_at() -> None:
    base = {"client_id": "ding1", "client_secret": "s", "card_template_id": "t", "mode": "http"}
    for config in (None, Config()):
        with pytest.raises(ConfigError) as error:
            parse_settings(base, config)
        assert str(error.value).startswith("reports.public_url:") and "/dingtalk/callback" in str(error.value)
    config = Config(reports=ReportSettings(public_url="https://bot.example.com"))
    assert parse_settings(base, config).callback_url == "https://bot.example.com/dingtalk/callback"
    assert parse_settings({**base, "mode": "stream"}).public_url == ""  # stream mode needs no public address


# --- sending -------------------------------------------------------------------------------------
@pytest.fixture
async def fake() -> Any:
    fake = FakeDingTalk()
    await fake.start()
    yield fake
    await fake.close()


def sender_for(fake: FakeDingTalk, clock: ManualClock | None = None, **raw: Any) -> DingTalkSender:
    settings = parse_settings({"client_id": fake.client_id, "client_secret": fake.client_secret,
                               "card_template_id": "tpl", "base_url": fake.url, "oapi_url": fake.url,
                               "session_webhook_hosts": [fake.url], **raw})
    return DingTalkSender(DingTalkClient(settings), settings, clock or ManualClock(NOW))


def item(kind: str, target: str, message: Message, key: str = "k1") -> OutboxItem:
    return OutboxItem(1, key, "dingtalk", kind, target, "", message.to_json(), None, 0, NOW, f"inst:{key}", "tok")


CARD = Card(kind="task", key="task:1", title="活动H5开发", buttons=(Button("确认收到", ACK),))


async def test_a_card_is_created_once_under_its_out_track_id(fake: FakeDingTalk) -> None:
    sender = sender_for(fake)
    try:
        message = Message((At(2, "li01", "李四"), " 请确认"), CARD)
        first = await sender.send(item("chat", "cidG", message))
        again = await sender.send(item("chat", "cidG", message))  # a resend after a crash: cardAlreadyExist
        assert first == again == out_track_id("inst:k1")
        assert len(fake.sent("cidG")) == 1
        card = fake.cards[first]
        assert card["at_users"] == {"li01": "李四"} and card["callback"] == "STREAM"
        assert card["params"]["btn1_action"] == ACK
    finally:
        await sender.client.close()


async def test_a_card_not_delivered_is_a_permanent_failure(fake: FakeDingTalk) -> None:
    fake.undelivered.add("cidBroken")
    sender = sender_for(fake)
    try:
        with pytest.raises(DeliveryError) as failed:
            await sender.send(item("chat", "cidBroken", Message((), CARD)))
        assert not failed.value.transient and "not delivered" in str(failed.value)
    finally:
        await sender.client.close()


async def test_a_disbanded_group_or_one_the_robot_left_is_unreachable_not_just_a_failed_row(fake: FakeDingTalk) -> None:
    """机器人发送群聊消息 refuses a dissolved group with group.disbanded; a card's delivery to a group without
    the robot comes back success=false: either way the group is lost (the engine stops writing to it)."""
    fake.disbanded.add("cidGone")
    sender, robot = sender_for(fake), sender_for(fake, group_text="robot")
    try:
        for s, message, key in ((sender, Message((), CARD), "c1"), (robot, Message(("周报已发布",)), "c2")):
            with pytest.raises(DeliveryError) as failed:
                await s.send(item("chat", "cidGone", message, key=key))
            assert not failed.value.transient and failed.value.unreachable, failed.value
        fake.undelivered.add("li01")
        with pytest.raises(DeliveryError) as failed:  # a person's card refused says nothing of any group
            await sender.send(item("user", "li01", Message((), CARD), key="k2"))
        assert not failed.value.unreachable
    finally:
        await sender.client.close()
        await robot.client.close()


async def test_a_private_text_goes_by_batch_send_and_unreached_users_are_never_sent(fake: FakeDingTalk) -> None:
    fake.unreached.update({"gone01": "invalid", "busy01": "flow", "quiet01": "filtered"})
    sender = sender_for(fake)
    try:
        assert await sender.send(item("user", "li01", Message(("你好",))))
        assert fake.sent("li01")[0]["content"] == {"content": "你好"}
        with pytest.raises(Throttled):
            await sender.send(item("user", "busy01", Message(("你好",))))
        for user in ("gone01", "quiet01"):  # filteredStaffIdList (the SDK's answer model) is not reached either
            with pytest.raises(DeliveryError) as failed:
                await sender.send(item("user", user, Message(("你好",))))
            assert not failed.value.transient  # not in the org, or out of the robot's reach: never worth a retry
    finally:
        await sender.client.close()


async def test_group_text_with_a_mention_is_a_card_by_default(fake: FakeDingTalk) -> None:
    sender = sender_for(fake)
    try:
        await sender.send(item("chat", "cidG", Message((At(2, "li01", "李四"), " 该更新进度了"))))
        [sent] = fake.sent("cidG")
        assert sent["kind"] == "card" and sent["content"]["atUserIds"] == {"li01": "李四"}
        assert sender.paths["text_as_card"] == 1
    finally:
        await sender.client.close()


async def test_robot_mode_uses_group_send_and_a_valid_session_webhook_for_mentions(fake: FakeDingTalk) -> None:
    clock = ManualClock(NOW)
    sender = sender_for(fake, clock, group_text="robot")
    try:
        await sender.send(item("chat", "cidG", Message(("大家好",)), key="a"))
        assert fake.sent("cidG")[0]["kind"] == "text"
        nag = Message((At(2, "li01", "李四"), " 该更新进度了"))
        await sender.send(item("chat", "cidG", nag, key="b"))  # no webhook known yet: a card
        assert fake.sent("cidG")[-1]["kind"] == "card"
        assert sender.webhooks.remember(parse.SessionWebhook("cidG", f"{fake.url}/robot/sendBySession?session=s1",
                                                             NOW + timedelta(minutes=90)))
        await sender.send(item("chat", "cidG", nag, key="c"))
        [post] = fake.webhook_posts
        assert post["at"] == {"atUserIds": ["li01"], "isAtAll": False} and "@li01" in post["text"]["content"]
        clock.advance(timedelta(minutes=90))  # expired: back to a card
        await sender.send(item("chat", "cidG", nag, key="d"))
        assert len(fake.webhook_posts) == 1 and fake.sent("cidG")[-1]["kind"] == "card"
    finally:
        await sender.client.close()


def test_a_session_webhook_on_another_host_is_refused() -> None:
    hooks = SessionWebhooks(("oapi.dingtalk.com",))
    for url in ("http://oapi.dingtalk.com/robot/sendBySession?session=1", "https://evil.example/robot?x=1",
                "https://user:pw@oapi.dingtalk.com/x", "https://oapi.dingtalk.com.evil.example/x"):
        assert not hooks.remember(parse.SessionWebhook("c", url, NOW + timedelta(hours=1))), url
    assert hooks.remember(parse.SessionWebhook("c", "https://oapi.dingtalk.com/robot/sendBySession?session=1",
                                               NOW + timedelta(hours=1)))


async def test_an_urgent_message_goes_as_ding_when_allowed(fake: FakeDingTalk) -> None:
    allowed, off = sender_for(fake, ding=True), sender_for(fake)
    try:
        # a right-to-left override in a title must not turn the DING's plain text round ("…已通过")
        urgent = Message(("李四的任务「客户投诉\u202e过通已」已超时",), CARD, urgent=True)
        await allowed.send(item("user", "chen01", urgent, key="e1"))
        await off.send(item("user", "chen01", urgent, key="e2"))
        [ding] = fake.dings
        assert ding["receiverUserIdList"] == ["chen01"] and ding["remindType"] == 1
        assert "\u202e" not in ding["content"] and "客户投诉过通已" in ding["content"]
        fake.fail("no_permission", path="/v1.0/robot/ding/send")
        assert await allowed.send(item("user", "chen01", urgent, key="e3"))  # a refused DING fails nothing
    finally:
        await allowed.client.close()
        await off.client.close()


async def test_the_qps_limit_is_a_throttle_and_a_refused_token_is_refreshed_once(fake: FakeDingTalk) -> None:
    sender = sender_for(fake)
    try:
        fake.fail("qps_limit", path="/v1.0/card/instances/createAndDeliver")
        with pytest.raises(Throttled):
            await sender.send(item("chat", "cidG", Message((), CARD), key="q1"))
        assert await sender.send(item("chat", "cidG", Message((), CARD), key="q1"))
        fetched = sender.client.token_fetches
        fake.fail("token_invalid", path="/v1.0/card/instances/createAndDeliver")
        assert await sender.send(item("chat", "cidG", Message((), CARD), key="q2"))
        assert sender.client.token_fetches == fetched + 1
    finally:
        await sender.client.close()


@pytest.mark.parametrize("fault, path, waits", [
    ("ip_ban", "/v1.0/card/instances/createAndDeliver", 300.0),  # answered 200, and nothing was sent
    ("monthly_quota", "/v1.0/card/instances/createAndDeliver", 3600.0),  # lifted when the admin raises it
    ("ip_ban", "/v1.0/robot/oToMessages/batchSend", 300.0),
])
async def test_answers_that_mean_wait_are_throttles_never_sent_or_dead(fake: FakeDingTalk, fault: str, path: str,
                                                                       waits: float) -> None:
    sender = sender_for(fake)
    message = Message((), CARD) if "card" in path else Message(("你好",))
    target = ("chat", "cidG") if "card" in path else ("user", "li01")
    try:
        fake.fail(fault, path=path)
        with pytest.raises(Throttled) as throttled:
            await sender.send(item(*target, message, key="w1"))
        assert throttled.value.retry_after == waits and fake.sent(target[1]) == []
        assert await sender.send(item(*target, message, key="w1"))  # the wait over: sent once
        assert len(fake.sent(target[1])) == 1
    finally:
        await sender.client.close()


async def test_a_group_over_its_limit_waits_out_the_block(fake: FakeDingTalk) -> None:
    fake.enforce_group_limit(2, 60.0, block=600)
    sender = sender_for(fake)
    try:
        for i in range(2):
            assert await sender.send(item("chat", "cidG", Message((), CARD), key=f"g{i}"))
        with pytest.raises(Throttled) as throttled:  # the row waits; it used to be dead at once
            await sender.send(item("chat", "cidG", Message((), CARD), key="g2"))
        assert throttled.value.retry_after == 600.0
    finally:
        await sender.client.close()


async def test_a_page_instead_of_json_and_an_update_not_made_are_tried_again(fake: FakeDingTalk) -> None:
    sender = sender_for(fake)
    try:
        fake.fail("html", path="/v1.0/card/instances/createAndDeliver")
        with pytest.raises(DeliveryError) as failed:
            await sender.send(item("chat", "cidG", Message((), CARD), key="h1"))
        assert failed.value.transient
        track = await sender.send(item("chat", "cidG", Message((), CARD), key="h1"))
        done = Card(kind="task", key="task:1", title="活动H5开发", status="已确认")
        update = OutboxItem(2, "u1", "dingtalk", "update", track, "", Message((), done).to_json(), None, 0, NOW,
                            "inst:u1", "tok")
        fake.fail("not_updated", path="/v1.0/card/instances")
        with pytest.raises(DeliveryError) as failed:
            await sender.send(update)
        assert failed.value.transient and "not updated" in str(failed.value)
        await sender.send(update)
        assert fake.messages[track]["updates"][-1]["status"] == "已确认"
    finally:
        await sender.client.close()


async def test_an_update_replaces_the_cards_variables(fake: FakeDingTalk) -> None:
    sender = sender_for(fake)
    try:
        track = await sender.send(item("chat", "cidG", Message((), CARD)))
        done = Card(kind="task", key="task:1", title="活动H5开发", status="已确认")
        await sender.send(OutboxItem(2, "u1", "dingtalk", "update", track, "", Message((), done).to_json(), None, 0,
                                     NOW, "inst:u1", "tok"))
        [update] = fake.messages[track]["updates"]
        assert update["status"] == "已确认" and update["btn1_visible"] == "false"
    finally:
        await sender.client.close()


# --- org sync ------------------------------------------------------------------------------------
async def test_org_sync_reads_departments_heads_people_and_supervisors(fake: FakeDingTalk) -> None:
    fake.add_department(2, "技术部", 1, ["chen01"])
    fake.add_department(3, "测试组", 2, [])
    fake.add_department(4, "测试组", 1, [])
    fake.add_user("boss01", "赵总", [1])
    fake.add_user("chen01", "陈七", [2], manager="boss01")
    fake.add_user("li01", "李四", [3], manager="chen01")
    fake.add_user("gone01", "离职", [2], active=False)
    settings = parse_settings({"client_id": fake.client_id, "client_secret": fake.client_secret,
                               "card_template_id": "t", "base_url": fake.url, "oapi_url": fake.url})
    client = DingTalkClient(settings)
    try:
        org = await fetch_org(client, 1)
    finally:
        await client.close()
    people = {person.name: person for person in org.people}
    assert set(people) == {"赵总", "陈七", "李四"}
    assert people["李四"].supervisor == "陈七" and people["李四"].ids == {"dingtalk": "li01"}
    assert people["李四"].department == "测试组（技术部）"
    assert org.departments["技术部"] == "陈七" and org.department_ids["技术部"].isdigit()  # a rename finds the row by it
    assert all(c.token for c in fake.api_calls("POST", "/topapi/"))
    assert org.complete  # the whole organisation: whoever it does not list has left
    client = DingTalkClient(settings)
    try:
        assert not (await fetch_org(client, 2)).complete  # a sub-tree says nothing of the people outside it
    finally:
        await client.close()
    # 88 with sub_code 60011 (no permission to call it) is not a refused token: no new token, no retries,
    # and the admin reads what is missing
    fake.topapi_permitted = False
    client = DingTalkClient(settings)
    tokens = len(fake.api_calls("POST", "/v1.0/oauth2/accessToken"))
    try:
        with pytest.raises(ApiError) as refused:
            await fetch_org(client, 1)
    finally:
        await client.close()
    assert not refused.value.transient and "60011" in str(refused.value) and "没有调用该接口的权限" in str(refused.value)
    assert len(fake.api_calls("POST", "/v1.0/oauth2/accessToken")) - tokens <= 1  # the first token, not a refresh


def test_a_rendered_text_message_never_mentions_everyone() -> None:
    from collabbot.adapters.dingtalk.sender import text

    rendered = text(Message((At(2, "@ALL", "所有人"), " hi")), real_mentions=True)
    assert json.loads(json.dumps(rendered))["at"]["isAtAll"] is False


def test_the_org_sync_command_against_the_fake(tmp_path: Path) -> None:
    with ThreadedFake() as threaded:
        fake = threaded.fake
        threaded.call(lambda: (fake.add_department(2, "技术部", 1, ["chen01"]), fake.add_user("chen01", "陈七", [2]),
                               fake.add_user("li01", "李四", [2], manager="chen01")))
        config = tmp_path / "c.toml"
        config.write_text(f"""
[database]
url = "sqlite:///{tmp_path / 'bot.db'}"
[dingtalk]
client_id = "{fake.client_id}"
client_secret = "${{DINGTALK_SECRET}}"
card_template_id = "tpl"
base_url = "{fake.url}"
oapi_url = "{fake.url}"
""", encoding="utf-8")
        env = {"DINGTALK_SECRET": fake.client_secret, "PATH": "/usr/bin:/bin"}
        command = [sys.executable, "-m", "collabbot.adapters.server", "--config", str(config), "org", "sync",
                   "--platform", "dingtalk"]
        first = subprocess.run(command, capture_output=True, text=True, env=env, timeout=60)
        assert first.returncode == 0, first.stderr
        assert "李四" in first.stdout and "2 people from DingTalk" in first.stdout
        second = subprocess.run(command, capture_output=True, text=True, env=env, timeout=60)
        assert second.returncode == 0 and "; 0 change(s)" in second.stdout
        bad = subprocess.run(command, capture_output=True, text=True, env={**env, "DINGTALK_SECRET": "wrong"},
                             timeout=60)
        assert bad.returncode == 4 and bad.stdout == "" and bad.stderr.count("org sync failed") == 1, bad.stderr


def test_the_example_config_shows_every_dingtalk_key_with_its_default(monkeypatch: pytest.MonkeyPatch) -> None:
    """Uncommented, config.example.toml's [dingtalk] lines parse, show every key, and show the defaults."""
    import tomllib

    from collabbot.adapters.dingtalk import config as dingtalk_config
    from collabbot.bot.config import parse_config

    from .conftest import ROOT

    lines = (ROOT / "config.example.toml").read_text(encoding="utf-8").splitlines()
    section = []
    for line in lines[lines.index("# [dingtalk]"):]:
        if not line.startswith("# "):
            break
        if not line[2:].startswith(("#", " ")):
            section.append(line[2:])
    data = tomllib.loads("\n".join(section))
    assert set(data["dingtalk"]) == dingtalk_config._KNOWN
    monkeypatch.setenv("DINGTALK_CLIENT_SECRET", "from-the-environment")
    config = parse_config(data)
    shown = parse_settings(config.platforms["dingtalk"], config)
    assert shown.client_secret == "from-the-environment" and shown.mode == "stream"
    defaults = parse_settings({"client_id": "x", "client_secret": "y", "card_template_id": "z"})
    for key in dingtalk_config._KNOWN - {"client_id", "client_secret", "card_template_id"}:
        assert getattr(shown, key) == getattr(defaults, key), key


# --- HTTP mode: the card callback route --------------------------------------------------------
async def test_http_mode_registers_the_card_route_at_start_overwriting_an_old_url(sqlite_db: Database) -> None:
    fake = FakeDingTalk()
    await fake.start()
    old = sender_for(fake)  # an earlier deployment registered another URL (forceUpdate false: insert only)
    await old.client.call("POST", "/v1.0/card/callbacks/register", json={
        "callbackRouteKey": "collabbot", "callbackUrl": "https://old.example.com/cb", "apiSecret": "old",
        "forceUpdate": False})
    await old.client.call("POST", "/v1.0/card/callbacks/register", json={
        "callbackRouteKey": "collabbot", "callbackUrl": "https://other.example.com/cb", "apiSecret": "other",
        "forceUpdate": False})
    assert fake.card_routes["collabbot"] == {"callbackUrl": "https://old.example.com/cb", "apiSecret": "old"}
    await old.client.close()
    env = await make_env(sqlite_db, NOW, fake=fake)
    try:
        await asyncio.wait_for(env.adapter.card_route.registered.wait(), 5)
        settings = env.adapter.settings
        assert fake.card_routes["collabbot"] == {"callbackUrl": settings.callback_url,
                                                 "apiSecret": sign.api_secret(fake.client_secret)}
        [call] = fake.api_calls("POST", "/v1.0/card/callbacks/register")[2:]
        assert call.body["forceUpdate"] is True and call.token in fake.tokens
    finally:
        await env.close()


async def test_a_failed_registration_is_retried_with_backoff_and_does_not_hold_up_start(
        sqlite_db: Database) -> None:
    fake = FakeDingTalk()
    await fake.start()
    fake.fail("server_error", path="/v1.0/card/callbacks/register", times=1000)
    env = await make_env(sqlite_db, NOW, fake=fake)  # returns although DingTalk refuses the registration
    try:
        assert not env.adapter.card_route.registered.is_set()
        status, _ = await env.post(p.robot_message("新建任务 活动H5开发 负责人 @李四 截止 12-10", sender=NAMES["张三"],
                                                   at=env.clock.now(), at_users=[NAMES["李四"]]))
        assert status == 200  # messages are heard meanwhile
        fake.faults.clear()
        fake.fail("server_error", path="/v1.0/card/callbacks/register", times=2)
        route = CardRoute(env.adapter.settings, env.adapter.client, first_delay=0.01)
        await asyncio.wait_for(route.register(), 5)
        assert route.attempts == 3 and route.registered.is_set() and "collabbot" in fake.card_routes
    finally:
        await env.close()


async def _owner_card(env: DingTalkEnv) -> tuple[str, str]:
    """A task created in HTTP mode; its owner's card and the card's 确认收到 value."""
    from collabbot.bot.replies import CardAction as Action

    await env.post(p.robot_message("新建任务 活动H5开发 负责人 @李四 截止 12-10", sender=NAMES["张三"],
                                   at=env.clock.now(), at_users=[NAMES["李四"]]))
    await env.deliver()
    [card] = [m for m in env.fake.sent(NAMES["李四"]) if m["kind"] == "card"]
    value = next(v for k, v in card["content"]["cardParamMap"].items()
                 if k.endswith("_action") and v and (a := Action.unpack(v)) and a.action == "ack")
    return card["id"], value


async def test_an_http_card_tap_that_does_not_say_where_finds_the_group_by_its_copy(sqlite_db: Database) -> None:
    """事件回调's HTTP body has no spaceType or spaceId: a tap on the group's copy is still the group's, so an
    acceptance tapped there is not posted to the group a second time as if decided elsewhere."""
    env = await make_env(sqlite_db, NOW)
    try:
        for text, who in (("新建任务 活动H5开发 负责人 @李四 截止 12-10", "张三"), ("确认收到 #1", "李四"),
                          ("完成 #1 交付物 https://h5.example.com", "李四")):
            await env.post(p.robot_message(text, sender=NAMES[who], at=env.clock.now(), at_users=[NAMES["李四"]]))
            await env.deliver()  # the group's copy exists before the next change updates it
        await asyncio.wait_for(env.adapter.card_route.registered.wait(), 5)
        group_card, accept = next((m, v) for m in env.fake.sent("cidGroup") if m["kind"] == "card"
                                  for k, v in env.fake.cards[m["id"]]["params"].items()  # as updated since
                                  if k.endswith("_action") and v and CardAction.unpack(v).action == "accept")
        before = len(env.fake.sent("cidGroup"))
        status, _ = await env.tap(p.card_callback(accept, user=NAMES["张三"], out_track_id=group_card["id"], http=True))
        assert status == 200
        await env.deliver()
        assert len(env.fake.sent("cidGroup")) == before  # the group's card changed; no note besides it
        with env.db.transaction() as s:
            assert s.scalar(select(Task.status)) == "done"
    finally:
        await env.close()


async def test_a_forged_or_stale_card_callback_is_refused_alike_and_changes_nothing(sqlite_db: Database) -> None:
    env = await make_env(sqlite_db, NOW)
    try:
        track, value = await _owner_card(env)
        await asyncio.wait_for(env.adapter.card_route.registered.wait(), 5)
        tap = p.card_callback(value, user=NAMES["李四"], out_track_id=track, space_id=NAMES["李四"], group=False)
        robot = p.robot_message("新建任务 伪造 负责人 @李四 截止 12-10", sender=NAMES["张三"], at=env.clock.now(),
                                at_users=[NAMES["李四"]])
        now, api = env.clock.now(), sign.api_secret(env.fake.client_secret)
        good = p.card_signed_headers(api, now)
        cases = [
            ("signed with a guessed apiSecret", tap, p.card_signed_headers("guessed", now)),
            ("signed with the app secret itself", tap, p.card_signed_headers(env.fake.client_secret, now)),
            ("signature of another timestamp", tap, dict(good, **{"x-ddpaas-signature-timestamp":
                                                                   str(int(good["x-ddpaas-signature-timestamp"]) + 1)})),
            ("no signature", tap, {k: v for k, v in good.items() if k != "x-ddpaas-signature"}),
            ("no timestamp", tap, {k: v for k, v in good.items() if k != "x-ddpaas-signature-timestamp"}),
            ("stale", tap, p.card_signed_headers(api, now - timedelta(minutes=61))),
            ("from the future", tap, p.card_signed_headers(api, now + timedelta(minutes=61))),
            ("a robot message under the card signature", robot, good),
            ("a robot message under both, the card's forged", robot,
             {**p.signed_headers(env.fake.client_secret, now), **p.card_signed_headers("guessed", now)}),
        ]
        tasks, refused = count(sqlite_db, Task), env.adapter.webhook.refused
        answers = {label: await env.post(body, headers=headers) for label, body, headers in cases}
        assert all(answer == (401, {"msg": "refused"}) for answer in answers.values()), answers
        assert env.adapter.webhook.refused == refused + len(cases)
        await env.deliver()
        assert count(sqlite_db, Task) == tasks and env.fake.messages[track]["updates"] == []
        with sqlite_db.transaction() as s:
            assert s.scalar(select(Task)).acknowledged_at is None
        status, answer = await env.post(tap)  # the genuine tap: through the registered route, signed
        assert status == 200 and value not in answer["cardData"]["cardParamMap"].values()
        # each kind only under its own signature: a tap under the robot sign is refused too
        assert (await env.post(tap, headers=p.signed_headers(env.fake.client_secret, now)))[0] == 401
    finally:
        await env.close()


def test_any_odd_value_anywhere_in_a_body_is_parsed_or_refused_as_malformed() -> None:
    """A signed (or Stream-delivered) body may hold anything anywhere: Malformed, never a crash."""
    rich = {"richText": [{"text": "我的任务"}, {"downloadCode": "x"}]}
    card = p.card_callback(ACK, user="li01", out_track_id="cb-1")
    card["content"] = json.loads(card["content"])  # the JSON string as what it holds, so that it too is varied
    tried = 0
    for original in (p.robot_message("我的任务", sender="li01", at=NOW, at_users=["wang01"]),
                     p.robot_message("", sender="li01", at=NOW, msgtype="richText", content=rich), card):
        for body in odd_json.variants(original):
            try:
                if original is card:
                    if isinstance(body, dict) and isinstance(body.get("content"), (dict, list)):
                        body["content"] = json.dumps(body["content"])
                    parse.parse_card_callback("f-1", body)
                else:
                    parse.parse_message(body)
            except parse.Malformed:
                pass
            tried += 1
    assert tried > 500
