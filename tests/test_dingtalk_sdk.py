"""The fake DingTalk checked against DingTalk's official SDKs, so it cannot drift from the real API:
dingtalk-stream's client connects to it, parses its frames with its own models and acks them in the
shape the fake expects; alibabacloud-dingtalk's response models read its answers. And the defect
that made us write our own Stream client: the SDK opens its connection with a blocking call on the
event loop."""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from datetime import datetime
from typing import Any

import aiohttp
import pytest

from collabbot.adapters.dingtalk import parse
from collabbot.adapters.dingtalk.client import DingTalkClient
from collabbot.adapters.dingtalk.config import parse_settings
from collabbot.adapters.dingtalk.inbound import DingTalkInbound
from collabbot.adapters.dingtalk.sender import SessionWebhooks
from collabbot.adapters.dingtalk.stream import StreamConnection

from . import dingtalk_payloads as p
from .conftest import TZ
from .fake_dingtalk import CARD_TOPIC, ROBOT_TOPIC, FakeDingTalk, ThreadedFake

dingtalk_stream = pytest.importorskip("dingtalk_stream")
NOW = datetime(2026, 12, 1, 9, 0, tzinfo=TZ)


class Recorder(dingtalk_stream.CallbackHandler):
    def __init__(self) -> None:
        super().__init__()
        self.messages: list[Any] = []

    async def process(self, callback: Any) -> tuple[int, str]:
        self.messages.append(callback)
        return dingtalk_stream.AckMessage.STATUS_OK, "OK"


async def _stop(task: asyncio.Task[Any]) -> None:
    # the SDK catches one CancelledError in its loop (and sleeps 10 s): cancel until it ends
    while not task.done():
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError, Exception):
            await asyncio.wait_for(asyncio.shield(task), 0.5)


def sdk_client(fake: FakeDingTalk, monkeypatch: pytest.MonkeyPatch) -> tuple[Any, Recorder, Recorder]:
    monkeypatch.setattr(dingtalk_stream.DingTalkStreamClient, "OPEN_CONNECTION_API",
                        fake.url + "/v1.0/gateway/connections/open")
    client = dingtalk_stream.DingTalkStreamClient(dingtalk_stream.Credential(fake.client_id, fake.client_secret))
    robot, cards = Recorder(), Recorder()
    client.register_callback_handler(ROBOT_TOPIC, robot)
    client.register_callback_handler(CARD_TOPIC, cards)
    return client, robot, cards


async def test_the_official_stream_client_connects_to_the_fake_and_reads_its_frames(
        monkeypatch: pytest.MonkeyPatch) -> None:
    with ThreadedFake() as threaded:
        fake = threaded.fake
        client, robot, cards = sdk_client(fake, monkeypatch)
        task = asyncio.create_task(client.start())
        try:
            deadline = time.monotonic() + 10
            while not threaded.call(fake.live):
                assert time.monotonic() < deadline, "the SDK did not connect"
                await asyncio.sleep(0.05)
            message = p.robot_message("新建任务 活动 负责人 @li01", sender="zhang01", at=NOW, at_users=["li01"])
            ack = await asyncio.to_thread(threaded.run, fake.robot_message(message, message_id="m-1"))
            assert ack["code"] == 200 and ack["headers"]["messageId"] == "m-1"
            ping = await asyncio.to_thread(threaded.run, fake.ping(message_id="p-1"))
            assert ping["code"] == 200 and json.loads(ping["data"])["opaque"].startswith("opaque-")
            tap = p.card_callback("v1|ack|task|1|0", user="li01", out_track_id="cb-1")
            await asyncio.to_thread(threaded.run, fake.push("CALLBACK", CARD_TOPIC, tap))
            # the SDK's own models read what the fake sent, as our parser does
            sdk = dingtalk_stream.ChatbotMessage.from_dict(robot.messages[0].data)
            ours = parse.parse_message(robot.messages[0].data)
            assert sdk.message_id == ours.what.event_id == message["msgId"]  # type: ignore[union-attr]
            assert sdk.sender_staff_id == "zhang01" and sdk.is_in_at_list is True
            assert [u.staff_id for u in sdk.at_users if u.staff_id] == [m.platform_user_id for m in ours.what.mentions]  # type: ignore[union-attr]
            assert sdk.text.content == message["text"]["content"]
            card = dingtalk_stream.CardCallbackMessage.from_dict(cards.messages[0].data)
            assert card.card_instance_id == "cb-1" and card.user_id == "li01"
            assert card.content["cardPrivateData"]["params"]["action"] == parse.parse_card_callback("e", tap).value
        finally:
            await _stop(task)


async def _lag_while(work: Any, seconds: float) -> float:
    """The longest the event loop was blocked while `work` runs."""
    worst, last = 0.0, time.monotonic()
    end = last + seconds
    task = asyncio.ensure_future(work)
    try:
        while time.monotonic() < end:
            await asyncio.sleep(0.02)
            now = time.monotonic()
            worst = max(worst, now - last - 0.02)
            last = now
    finally:
        await _stop(task)
    return worst


async def test_the_sdk_blocks_the_event_loop_while_opening_a_connection_and_ours_does_not(
        monkeypatch: pytest.MonkeyPatch, sqlite_db: Any) -> None:
    with ThreadedFake() as threaded:
        fake = threaded.fake
        fake.open_delay = 1.0  # a slow gateway
        client, _, _ = sdk_client(fake, monkeypatch)
        sdk_lag = await _lag_while(client.start(), 1.5)
        assert sdk_lag > 0.8  # every callback of the process waits for the gateway

        from collabbot.adapters.hub import Hub
        from collabbot.bot.app import Bot
        from collabbot.bot.clock import ManualClock
        from collabbot.bot.config import Config

        settings = parse_settings({"client_id": fake.client_id, "client_secret": fake.client_secret,
                                   "card_template_id": "t", "base_url": fake.url})
        hub = Hub(Bot(sqlite_db, Config(), ManualClock(NOW)))
        api = DingTalkClient(settings)
        ours = StreamConnection(settings, api, DingTalkInbound(hub, settings, SessionWebhooks(())))
        await ours.start()
        try:
            our_lag = await _lag_while(asyncio.sleep(1.5), 1.5)
        finally:
            await ours.stop()
            await api.close()
            hub.close()
        assert our_lag < 0.5  # (a loaded CI machine has gaps of its own; the SDK blocks for the full second)


async def test_the_official_api_models_read_the_fakes_answers() -> None:
    from alibabacloud_dingtalk.card_1_0 import models as card
    from alibabacloud_dingtalk.oauth2_1_0 import models as oauth2
    from alibabacloud_dingtalk.robot_1_0 import models as robot

    fake = FakeDingTalk()
    await fake.start()
    fake.undelivered.add("cidBroken")
    fake.unreached["gone01"] = "invalid"
    fake.unreached["busy01"] = "flow"
    try:
        async with aiohttp.ClientSession() as http:
            async def post(path: str, body: dict[str, Any], method: str = "POST", token: str = "") -> dict[str, Any]:
                headers = {"x-acs-dingtalk-access-token": token} if token else {}
                async with http.request(method, fake.url + path, json=body, headers=headers) as resp:
                    return await resp.json()

            answer = await post("/v1.0/oauth2/accessToken", {"appKey": fake.client_id, "appSecret": fake.client_secret})
            got = oauth2.GetAccessTokenResponseBody().from_map(answer)
            assert got.access_token and got.expire_in == 7200
            token = got.access_token
            sent = robot.OrgGroupSendResponseBody().from_map(await post("/v1.0/robot/groupMessages/send", {
                "robotCode": fake.client_id, "openConversationId": "cidG", "msgKey": "sampleText",
                "msgParam": json.dumps({"content": "hi"})}, token=token))
            assert sent.process_query_key
            batch = robot.BatchSendOTOResponseBody().from_map(await post("/v1.0/robot/oToMessages/batchSend", {
                "robotCode": fake.client_id, "userIds": ["li01", "gone01", "busy01"], "msgKey": "sampleText",
                "msgParam": json.dumps({"content": "hi"})}, token=token))
            assert batch.invalid_staff_id_list == ["gone01"] and batch.flow_controlled_staff_id_list == ["busy01"]
            created = card.CreateAndDeliverResponseBody().from_map(await post("/v1.0/card/instances/createAndDeliver", {
                "cardTemplateId": "t", "outTrackId": "cb-x", "callbackType": "STREAM",
                "cardData": {"cardParamMap": {"title": "x"}}, "openSpaceId": "dtv1.card//IM_GROUP.cidBroken",
                "imGroupOpenDeliverModel": {"robotCode": fake.client_id}}, token=token))
            assert created.success and created.result.out_track_id == "cb-x"
            assert [r.success for r in created.result.deliver_results] == [False]
            updated = card.UpdateCardResponseBody().from_map(await post("/v1.0/card/instances", {
                "outTrackId": "cb-x", "cardData": {"cardParamMap": {"title": "y"}},
                "cardUpdateOptions": {"updateCardDataByKey": True}}, method="PUT", token=token))
            assert updated.success and updated.result is True
            ding = robot.RobotSendDingResponseBody().from_map(await post("/v1.0/robot/ding/send", {
                "robotCode": fake.client_id, "remindType": 1, "receiverUserIdList": ["li01"], "content": "急"},
                token=token))
            assert ding.open_ding_id
    finally:
        await fake.close()
