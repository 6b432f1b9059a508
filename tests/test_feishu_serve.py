"""End to end: a real `collabbot serve` process with a `[feishu]` section pointed at the fake Feishu API.

Callbacks are encrypted and signed as Feishu sends them; time is a simulated clock file the test
moves. A group message creates a task (the group post and the owner's card reach the fake API); a
card tap updates the card in place; an unanswered assignment is nagged after 2 working hours and
escalated to the supervisor after 24 hours; a replayed event and a forged signature change nothing.
"""

from __future__ import annotations

import json
import os
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from typing import Any

from sqlalchemy import func, select

from collabbot.adapters.feishu import crypto
from collabbot.bot.replies import CardAction
from collabbot.storage.db import Database
from collabbot.storage.models import InboundReceipt, OutboxMessage, Task

from . import feishu_callbacks as cb
from .conftest import TZ
from .fake_feishu import FakeFeishu, ThreadedFake
from .serve_process import ServeProcess, free_port, write_config

ORG = """
[[departments]]
name = "市场部"
head = "张三"
[[departments]]
name = "技术部"
head = "陈七"
[[people]]
name = "赵总"
ids = { feishu = "ou_boss" }
[[people]]
name = "张三"
department = "市场部"
supervisor = "赵总"
ids = { feishu = "ou_zhang" }
[[people]]
name = "陈七"
department = "技术部"
supervisor = "赵总"
ids = { feishu = "ou_chen" }
[[people]]
name = "李四"
department = "技术部"
supervisor = "陈七"
ids = { feishu = "ou_li" }
[[people]]
name = "赵六"
department = "技术部"
supervisor = "陈七"
ids = { feishu = "ou_zhao" }
"""


class Clock:
    def __init__(self, path: Path, start: str) -> None:
        self.path = path
        self.set(start)

    def set(self, moment: str) -> None:
        self.now = datetime.fromisoformat(moment).replace(tzinfo=TZ)
        tmp = self.path.with_suffix(".tmp")
        tmp.write_text(self.now.isoformat(), encoding="utf-8")
        os.replace(tmp, self.path)  # the server never reads half a file


def wait(condition: Callable[[], Any], what: str, serve: ServeProcess, timeout: float = 30) -> Any:
    deadline = time.monotonic() + timeout
    while not (result := condition()):
        if serve.proc.poll() is not None:
            raise AssertionError(f"serve exited with {serve.proc.returncode}: {serve.log[-20:]}")
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}; log tail: {serve.log[-15:]}")
        time.sleep(0.05)
    return result


def post(url: str, headers: dict[str, str], raw: bytes) -> tuple[int, dict[str, Any]]:
    request = urllib.request.Request(url, data=raw, headers=headers, method="POST")
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as err:
        return err.code, json.loads(err.read() or b"{}")


def state(db: Database) -> tuple[int, int, int]:
    with db.transaction() as s:
        return (s.scalar(select(func.count()).select_from(Task)),
                s.scalar(select(func.count()).select_from(OutboxMessage)),
                s.scalar(select(func.count()).select_from(InboundReceipt)))


def cards_to(fake: FakeFeishu, receive_id: str) -> list[dict[str, Any]]:
    return [m for m in fake.sent(receive_id) if m["msg_type"] == "interactive"]


def test_feishu_end_to_end_through_a_real_serve_process(tmp_path: Path) -> None:
    clock = Clock(tmp_path / "clock.txt", "2026-12-01T09:00")  # a Tuesday, 09:00 Beijing time
    (tmp_path / "org.toml").write_text(ORG, encoding="utf-8")
    port = free_port()
    db_url = f"sqlite:///{tmp_path / 'bot.db'}"
    with ThreadedFake() as fake:
        config = write_config(tmp_path / "config.toml", db_url, port=port, extra=f"""
[bot]
org_file = "org.toml"
[feishu]
app_id = "{fake.app_id}"
app_secret = "${{TEST_FEISHU_SECRET}}"
verification_token = "{cb.TOKEN}"
encrypt_key = "{cb.ENCRYPT_KEY}"
bot_open_id = "ou_bot"
base_url = "{fake.url}"
""")
        serve = ServeProcess(config, clock_file=clock.path, env={"TEST_FEISHU_SECRET": fake.app_secret})
        url = f"http://127.0.0.1:{port}/feishu/events"
        db = Database(db_url)
        try:
            def healthy() -> bool:
                try:
                    with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=2) as r:
                        return r.status == 200
                except OSError:
                    return False

            wait(healthy, "the server to answer /healthz", serve)

            # 1. a group message addressed to the bot creates a task
            create = cb.message("@_user_1 新建任务 活动H5开发 负责人 @_user_2 截止 12-10", sender="ou_zhang",
                                mentions=[("ou_bot", "协作机器人"), ("ou_li", "李四")], at=clock.now,
                                message_id="om_e2e_create_1")
            headers, raw = cb.envelope(create, at=clock.now)
            assert post(url, headers, raw) == (200, {})
            wait(lambda: cards_to(fake, "ou_li") and fake.sent("oc_group"), "the owner's card and the group post", serve)
            group_card = wait(lambda: cards_to(fake, "oc_group"), "the group's task card", serve)[0]
            owner_card = cards_to(fake, "ou_li")[0]
            posts = fake.api_calls("POST", "/open-apis/im/v1/messages")
            assert all(c.auth.startswith("Bearer t-fake-") and c.body["uuid"] for c in posts)

            # 2. the same event again, a re-push under a new event id, and a forged one: nothing changes
            before, sent_before = state(db), len(fake.sent())
            assert post(url, headers, raw) == (200, {})
            repush = dict(create, header=dict(create["header"], event_id="another-event-id"))
            assert post(url, *cb.envelope(repush, at=clock.now)) == (200, {})
            forged = dict(headers, **{crypto.SIGNATURE_HEADER: "0" * 64})
            assert post(url, forged, raw)[0] == 401
            other = cb.message("@_user_1 新建任务 伪造任务 负责人 @_user_2", sender="ou_zhang",
                               mentions=[("ou_bot", "bot"), ("ou_li", "李四")], at=clock.now)
            forged_headers, forged_raw = cb.envelope(other, at=clock.now, key="not-the-key")
            assert post(url, forged_headers, forged_raw)[0] == 401
            assert state(db) == before
            time.sleep(0.5)  # a few delivery rounds: still nothing new went out
            assert len(fake.sent()) == sent_before

            # 3. the owner taps 确认收到 in private chat: the answer carries the new card, the group's copy is patched
            ack = next(v for v in cb.button_values(owner_card["content"]) if CardAction.unpack(v).action == "ack")
            tap = cb.card_action({"action": ack}, operator="ou_li", message_id=owner_card["message_id"],
                                 chat_id="oc_p2p_li", at=clock.now)
            status, answer = post(url, *cb.envelope(tap, at=clock.now))
            assert status == 200 and answer["toast"]["content"] and answer["card"]["type"] == "raw"
            assert ack not in cb.button_values(answer["card"]["data"])
            wait(lambda: fake.patches(group_card["message_id"]), "the group's card to be updated in place", serve)
            assert fake.messages[group_card["message_id"]]["updates"][-1] == answer["card"]["data"] or \
                fake.messages[group_card["message_id"]]["updates"][-1]["header"] == answer["card"]["data"]["header"]

            # 4. a second task, for 赵六, that nobody acknowledges
            second = cb.message("@_user_1 新建任务 物料清单 负责人 @_user_2 截止 12-11", sender="ou_zhang",
                                mentions=[("ou_bot", "bot"), ("ou_zhao", "赵六")], at=clock.now)
            assert post(url, *cb.envelope(second, at=clock.now)) == (200, {})
            wait(lambda: cards_to(fake, "ou_zhao"), "赵六's card", serve)
            to_li = len(fake.sent("ou_li"))

            # 5. two working hours later: 赵六 is nagged (privately and @mentioned in the group); 李四 is not
            clock.set("2026-12-01T11:01")
            wait(lambda: len(fake.sent("ou_zhao")) >= 2, "the first nag to 赵六", serve)
            wait(lambda: any("ou_zhao" in json.dumps(m["content"]) for m in fake.sent("oc_group")[2:]),
                 "the nag in the group", serve)
            clock.set("2026-12-01T14:31")
            wait(lambda: len(fake.sent("ou_zhao")) >= 3, "the second nag", serve)
            assert not fake.sent("ou_chen")

            # 6. 24 hours after the assignment: escalated to 赵六's supervisor 陈七, privately
            clock.set("2026-12-02T09:01")
            escalation = wait(lambda: cards_to(fake, "ou_chen"), "the escalation to 陈七", serve)
            assert len(escalation) == 1
            assert len(fake.sent("ou_li")) == to_li  # the acknowledged task never nagged its owner

            # 7. yesterday's request replayed today is refused by the replay window
            assert post(url, headers, raw)[0] == 401
        finally:
            serve.stop()
            db.dispose()
        assert serve.proc.returncode == 0, serve.log[-20:]


def test_a_bad_feishu_section_stops_serve_with_the_key_named(tmp_path: Path) -> None:
    config = write_config(tmp_path / "config.toml", f"sqlite:///{tmp_path / 'bot.db'}", port=free_port(), extra="""
[feishu]
app_id = "cli_x"
app_secret = "s"
verification_token = "t"
mode = "stream"
""")
    serve = ServeProcess(config)
    try:
        assert serve.proc.wait(60) == 2
    finally:
        serve.stop()
    assert any("feishu.mode" in line for line in serve.log), serve.log[-5:]
