"""End to end: a real `collabbot serve` process with a `[dingtalk]` section, against the fake DingTalk.

Stream mode (the default): a group @message creates a task; the owner's tap on their card is
answered with the new card and the group's copy follows; a repeated frame changes nothing; a
dead socket (no pong to the bot's pings) is noticed and replaced; a burst of 30 tasks in one group is delivered exactly once
within the robot's group limit (its window shortened tenfold so the test stays short). HTTP mode: a
forged sign is refused and changes nothing, a genuine one is worked, and a tap reaches the card
callback route `serve` registered at start.
"""

from __future__ import annotations

import json
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import pytest

from collabbot.bot.replies import CardAction
from collabbot.storage.db import Database

from . import dingtalk_payloads as p
from .fake_dingtalk import FakeDingTalk, ThreadedFake
from .serve_process import ServeProcess, free_port, write_config
from .test_feishu_serve import Clock, state, wait

ORG = """
[[departments]]
name = "技术部"
head = "陈七"
[[people]]
name = "张三"
ids = { dingtalk = "zhang01" }
[[people]]
name = "陈七"
department = "技术部"
ids = { dingtalk = "chen01" }
[[people]]
name = "李四"
department = "技术部"
supervisor = "陈七"
ids = { dingtalk = "li01" }
"""
GROUP = "cidGroup"
WINDOW = 6.0  # the robot's 20-per-minute group limit, its window shortened tenfold


def start(tmp_path: Path, fake: FakeDingTalk, clock: Clock, **dingtalk: Any) -> tuple[ServeProcess, int, str]:
    (tmp_path / "org.toml").write_text(ORG, encoding="utf-8")
    port = free_port()
    db_url = f"sqlite:///{tmp_path / 'bot.db'}"
    section = "\n".join(f"{k} = {json.dumps(v)}" for k, v in dingtalk.items())
    config = write_config(tmp_path / "config.toml", db_url, port=port, extra=f"""
[bot]
org_file = "org.toml"
[reports]
public_url = "http://127.0.0.1:{port}"
[dingtalk]
client_id = "{fake.client_id}"
client_secret = "${{TEST_DINGTALK_SECRET}}"
card_template_id = "tpl.collabbot"
base_url = "{fake.url}"
oapi_url = "{fake.url}"
{section}
""")
    serve = ServeProcess(config, clock_file=clock.path, env={"TEST_DINGTALK_SECRET": fake.client_secret})
    return serve, port, db_url


def task_cards(fake: FakeDingTalk, target: str) -> list[dict[str, Any]]:
    return [m for m in fake.sent(target) if m["kind"] == "card" and m["content"]["cardParamMap"].get("kind") == "task"]


@pytest.mark.slow
def test_dingtalk_stream_end_to_end_through_a_real_serve_process(tmp_path: Path) -> None:
    clock = Clock(tmp_path / "clock.txt", "2026-12-01T09:00")
    threaded = ThreadedFake()
    threaded.fake.ping_every = 0.3
    with threaded:
        fake = threaded.fake
        fake.enforce_group_limit(20, WINDOW, block=600)
        serve, _, db_url = start(tmp_path, fake, clock, watchdog_seconds=1.5, group_limit_seconds=WINDOW)
        db = Database(db_url)
        try:
            wait(lambda: threaded.call(fake.live), "the stream to connect", serve)

            # 1. a group @message creates a task: the group's card and the owner's card go out
            create = p.robot_message("新建任务 活动H5开发 负责人 @李四 截止 12-10", sender="zhang01", at=clock.now,
                                     at_users=["li01"], msg_id="msg-create-1")
            ack = threaded.run(fake.robot_message(create, message_id="frame-1"))
            assert ack["code"] == 200
            group_card = wait(lambda: task_cards(fake, GROUP), "the group's task card", serve)[0]
            owner_card = wait(lambda: task_cards(fake, "li01"), "the owner's card", serve)[0]
            assert group_card["content"]["atUserIds"] == {"li01": "李四"}  # a real @ in the group

            # 2. the same frame twice, and the same msgId in a new frame: nothing changes
            before, sent_before = state(db), len(fake.sent())
            threaded.run(fake.robot_message(create, message_id="frame-1"))
            threaded.run(fake.robot_message(create, message_id="frame-2"))
            time.sleep(0.5)
            assert state(db) == before and len(fake.sent()) == sent_before

            # 3. the owner taps 确认收到: the ack carries the new card; the group's copy is updated in place
            params = owner_card["content"]["cardParamMap"]
            ack_value = next(v for k, v in params.items() if k.endswith("_action") and v
                             and CardAction.unpack(v).action == "ack")  # type: ignore[union-attr]
            started = time.monotonic()
            answer = threaded.run(fake.card_callback(p.card_callback(ack_value, user="li01",
                                                                     out_track_id=owner_card["id"], group=False,
                                                                     space_id="li01")))
            assert time.monotonic() - started < 2.0
            assert ack_value not in answer["cardData"]["cardParamMap"].values()
            wait(lambda: fake.messages[group_card["id"]]["updates"], "the group's card to be updated", serve)
            assert ack_value not in fake.messages[group_card["id"]]["updates"][-1].values()

            # 4. the socket dies (no frame, no pong): the bot's pings notice and a new connection takes over
            silenced = threaded.call(fake.kill)
            began = time.monotonic()
            wait(lambda: [ws for ws in threaded.call(fake.live) if ws is not silenced], "a new connection", serve,
                 timeout=60)
            reconnected_after = time.monotonic() - began
            assert reconnected_after < 1.5 + 2.0  # within watchdog_seconds, and the new connection opened

            # 5. a burst of 30 tasks in one group: each delivered once, within the group limit, no refusal
            sent_before = len(task_cards(fake, GROUP))
            began = time.monotonic()
            for i in range(30):
                burst = p.robot_message(f"新建任务 任务{i} 负责人 @李四 截止 12-10", sender="zhang01", at=clock.now,
                                        at_users=["li01"], msg_id=f"msg-burst-{i}")
                threaded.run(fake.robot_message(burst))
            wait(lambda: len(task_cards(fake, GROUP)) - sent_before >= 30, "30 group cards", serve, timeout=60)
            burst_seconds = time.monotonic() - began
            time.sleep(1.0)
            cards = task_cards(fake, GROUP)[sent_before:]
            titles = [c["content"]["cardParamMap"]["title"] for c in cards]
            assert len(cards) == 30 and len(set(titles)) == 30  # exactly once each
            assert fake.limit_refusals == []
            times = sorted(m["at"] for m in fake.sent(GROUP))
            assert all(times[i + 20] - times[i] >= WINDOW * 0.95 for i in range(len(times) - 20))
            print(f"\nburst: 30 tasks, {len(fake.sent(GROUP))} group sends in {burst_seconds:.1f} s, "
                  f"0 refusals; dead socket replaced after {reconnected_after:.1f} s")
        finally:
            serve.stop()
            db.dispose()


@pytest.mark.slow
def test_dingtalk_http_mode_refuses_a_forged_sign_through_a_real_serve_process(tmp_path: Path) -> None:
    clock = Clock(tmp_path / "clock.txt", "2026-12-01T09:00")
    with ThreadedFake() as threaded:
        fake = threaded.fake
        serve, port, db_url = start(tmp_path, fake, clock, mode="http")
        db = Database(db_url)
        url = f"http://127.0.0.1:{port}/dingtalk/callback"

        def post(headers: dict[str, str], body: dict[str, Any]) -> tuple[int, Any]:
            request = urllib.request.Request(url, data=json.dumps(body).encode(), headers=headers, method="POST")
            try:
                with urllib.request.urlopen(request, timeout=10) as response:
                    return response.status, json.loads(response.read())
            except urllib.error.HTTPError as err:
                return err.code, json.loads(err.read() or b"{}")
            except OSError:
                return 0, None

        try:
            wait(lambda: post({}, {})[0] == 401, "the server to answer", serve)
            create = p.robot_message("新建任务 活动H5开发 负责人 @李四 截止 12-10", sender="zhang01", at=clock.now,
                                     at_users=["li01"])
            before = state(db)
            forged = p.signed_headers("guessed-secret", clock.now)
            stale = p.signed_headers(fake.client_secret, clock.now.replace(hour=7))
            assert post(forged, create) == post(stale, create) == (401, {"msg": "refused"})
            assert state(db) == before
            assert post(p.signed_headers(fake.client_secret, clock.now), create) == (200, {})
            owner_card = wait(lambda: task_cards(fake, "li01"), "the owner's card", serve)[0]

            # the owner's tap, as DingTalk posts it: to the route serve registered at start, card-signed
            assert owner_card and fake.cards[owner_card["id"]]["callback"] == "HTTP"
            fake.wall = lambda: clock.now.timestamp()
            params = owner_card["content"]["cardParamMap"]
            ack_value = next(v for k, v in params.items() if k.endswith("_action") and v
                             and CardAction.unpack(v).action == "ack")  # type: ignore[union-attr]
            tap = p.card_callback(ack_value, user="li01", out_track_id=owner_card["id"], group=False, space_id="li01")
            status, answer = threaded.run(fake.http_card_callback(tap))
            assert status == 200 and ack_value not in answer["cardData"]["cardParamMap"].values()
            assert threaded.call(lambda: fake.card_routes["collabbot"]["callbackUrl"]) == url
        finally:
            serve.stop()
            db.dispose()
