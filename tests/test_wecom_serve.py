"""End to end: real `collabbot serve` processes with a `[wecom]` section pointed at the fake WeCom.

1. One process on SQLite: an @message to the robot creates a task (the group's card through the robot,
   the owner's card through the app); WeCom redelivering the message changes nothing; a tap on the group's
   card is answered within 5 s with the card for everyone (same task_id); `org sync --platform wecom`.
2. Two processes on PostgreSQL: exactly one holds the robot's connection; the holder is killed with
   kill -9 while a push is in flight; the other takes the connection over (measured), the in-flight
   row is sent once, and new messages are heard: nothing lost, nothing doubled, no kick between them.
"""

from __future__ import annotations

import subprocess
import sys
import time
import urllib.request
from collections import Counter
from collections.abc import Callable
from datetime import date, timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import func, select

from collabbot.storage.db import Database
from collabbot.storage.models import InboundReceipt, OutboxMessage, Task

from . import fake_wecom as fw
from .conftest import truncate_all
from .serve_process import ROOT, ServeProcess, free_port, write_config
from .wecom_env import DEPARTMENTS, USERS

ORG = """
[[departments]]
name = "技术部"
head = "陈七"
[[people]]
name = "张三"
ids = { wecom = "zhangsan" }
[[people]]
name = "陈七"
department = "技术部"
ids = { wecom = "chenqi" }
[[people]]
name = "李四"
department = "技术部"
supervisor = "陈七"
ids = { wecom = "lisi" }
"""
GROUP = "wrproject01"


def wecom_section(fake: fw.FakeWecom, **extra: Any) -> str:
    lines = [f'corp_id = "{fw.CORP_ID}"', f"agent_id = {fw.AGENT_ID}", 'app_secret = "${TEST_WECOM_APP_SECRET}"',
             f'app_token = "{fw.APP_TOKEN}"', f'app_encoding_aes_key = "{fw.APP_AES_KEY}"',
             f'bot_id = "{fw.BOT_ID}"', 'bot_secret = "${TEST_WECOM_BOT_SECRET}"', 'bot_name = "协作机器人"',
             f'base_url = "{fake.url}"', f'ws_url = "{fake.ws_url}"', "heartbeat_seconds = 1", "watchdog_seconds = 5"]
    lines += [f"{k} = {v}" for k, v in extra.items()]
    return "[wecom]\n" + "\n".join(lines) + "\n"


ENV = {"TEST_WECOM_APP_SECRET": fw.APP_SECRET, "TEST_WECOM_BOT_SECRET": fw.BOT_SECRET}
# `serve` runs on the system's clock here: a deadline a month ahead, never one that has passed by the time CI runs
DUE = (date.today() + timedelta(days=30)).isoformat()


def wait(condition: Callable[[], Any], what: str, procs: list[ServeProcess], timeout: float = 30) -> Any:
    deadline = time.monotonic() + timeout
    while not (result := condition()):
        for p in procs:
            if p.proc.poll() is not None and p.proc.returncode not in (-9,):
                raise AssertionError(f"serve exited with {p.proc.returncode}: {p.log[-20:]}")
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}; log tails: {[p.log[-8:] for p in procs]}")
        time.sleep(0.05)
    return result


def count(db: Database, model: Any) -> int:
    with db.transaction() as s:
        return s.scalar(select(func.count()).select_from(model)) or 0


def healthy(port: int) -> bool:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=2) as r:
            return r.status == 200
    except OSError:
        return False


def group_cards(fake: fw.FakeWecom) -> list[dict[str, Any]]:
    return [p for p in fake.pushes if p["chatid"] == GROUP and p["msgtype"] == "template_card"]


@pytest.mark.slow
def test_wecom_end_to_end_through_a_real_serve_process(tmp_path: Path) -> None:
    (tmp_path / "org.toml").write_text(ORG, encoding="utf-8")
    port = free_port()
    db_url = f"sqlite:///{tmp_path / 'bot.db'}"
    with fw.ThreadedFake(users=USERS, departments=DEPARTMENTS) as threaded:
        fake = threaded.fake
        config = write_config(tmp_path / "config.toml", db_url, port=port,
                              extra='[bot]\norg_file = "org.toml"\n' + wecom_section(fake))
        serve = ServeProcess(config, env=ENV)
        db = Database(db_url)
        try:
            wait(lambda: healthy(port) and fake.subscribes == 1, "serve up and subscribed", [serve])
            threaded.run(fake.say("@协作机器人 绑定项目 官网改版 协同负责人 @张三", userid="zhangsan", chatid=GROUP,
                                  msgid="bind-1"))
            create = f"@协作机器人 新建任务 活动H5开发 负责人 @李四 截止 {DUE}"
            threaded.run(fake.say(create, userid="zhangsan", chatid=GROUP, msgid="create-1"))
            wait(lambda: count(db, Task) == 1, "the task", [serve])
            card = wait(lambda: [c["template_card"] for c in group_cards(fake)
                                 if "活动H5开发" in c["template_card"]["main_title"]["title"]],
                        "the group's card", [serve])[-1]
            wait(lambda: [s for s in fake.sent if s["touser"] == "lisi" and s["msgtype"] == "template_card"],
                 "the owner's card through the app", [serve])

            # WeCom redelivers the message: nothing changes
            before = (count(db, Task), count(db, OutboxMessage), count(db, InboundReceipt))
            threaded.run(fake.say(create, userid="zhangsan", chatid=GROUP, msgid="create-1"))
            time.sleep(0.5)  # the redelivery has been read and answered by now
            assert (count(db, Task), count(db, OutboxMessage), count(db, InboundReceipt)) == before

            # a tap on the group's card: the answer is the card for everyone, same task_id, within 5 s
            action = card["button_list"][0]["key"]
            started = time.monotonic()
            answer = threaded.run(fake.tap(card["task_id"], action, userid="lisi", chatid=GROUP, msgid="tap-1"))
            assert answer is not None and time.monotonic() - started < 5.0
            assert answer["template_card"]["task_id"] == card["task_id"] and "userids" not in answer
            assert answer["template_card"] != card
            assert fake.cards[card["task_id"]].changed("tap")

            # the org from the app's contacts
            sync = subprocess.run([sys.executable, "-m", "collabbot.adapters.server", "--config", str(config), "org",
                                   "sync", "--platform", "wecom"], capture_output=True, text=True, cwd=ROOT,
                                  env={**__import__("os").environ, **ENV}, timeout=60)
            assert sync.returncode == 0, sync.stderr[-2000:]
            assert "from WeCom" in sync.stdout
            bad = subprocess.run(sync.args, capture_output=True, text=True, cwd=ROOT, timeout=60,
                                 env={**__import__("os").environ, **ENV, "TEST_WECOM_APP_SECRET": "wrong"})
            assert bad.returncode == 4 and bad.stdout == "" and bad.stderr.count("org sync failed") == 1, bad.stderr
        finally:
            serve.stop()
            db.dispose()


@pytest.mark.slow
def test_two_instances_one_connection_and_a_takeover_after_kill_9(tmp_path: Path, pg_database: Database,
                                                                   pg_url: str) -> None:
    truncate_all(pg_database)
    (tmp_path / "org.toml").write_text(ORG, encoding="utf-8")
    db = pg_database
    with fw.ThreadedFake(users=USERS, departments=DEPARTMENTS) as threaded:
        fake = threaded.fake
        procs: list[ServeProcess] = []
        try:
            for n in range(2):
                port = free_port()
                config = write_config(tmp_path / f"config{n}.toml", pg_url, port=port,
                                      extra='[bot]\norg_file = "org.toml"\n[delivery]\nclaim_seconds = 3\n'
                                            + wecom_section(fake))
                procs.append(ServeProcess(config, env=ENV))
                wait(lambda port=port: healthy(port), f"instance {n} up", procs)
            wait(lambda: fake.subscribes == 1, "one subscription", procs)
            time.sleep(1.0)  # several takeover periods: the other instance must stay a standby
            assert fake.subscribes == 1 and fake.kicks == 0
            holder = next(p for p in procs if any("holds the robot's long connection" in line for line in p.log))
            standby = next(p for p in procs if p is not holder)

            threaded.run(fake.say("@协作机器人 绑定项目 官网改版 协同负责人 @张三", userid="zhangsan", chatid=GROUP,
                                  msgid="bind-1"))
            threaded.run(fake.say(f"@协作机器人 新建任务 任务一 负责人 @李四 截止 {DUE}", userid="zhangsan",
                                  chatid=GROUP, msgid="t1"))
            wait(lambda: len(group_cards(fake)) >= 1, "the first task's group card", procs)

            # a push in flight when the holder dies: WeCom neither took it nor answered
            fake.hold_pushes = True
            threaded.run(fake.say(f"@协作机器人 新建任务 任务二 负责人 @李四 截止 {DUE}", userid="zhangsan",
                                  chatid=GROUP, msgid="t2"))
            wait(lambda: fake.held, "a push in flight", procs)
            holder.proc.kill()  # kill -9
            killed = time.monotonic()
            holder.proc.wait(10)
            fake.hold_pushes = False
            wait(lambda: fake.subscribes == 2, "the standby to take the connection over", [standby], timeout=30)
            takeover = time.monotonic() - killed
            print(f"\nWeCom robot takeover after kill -9: {takeover:.2f} s")
            assert takeover < 30.0

            threaded.run(fake.say(f"@协作机器人 新建任务 任务三 负责人 @李四 截止 {DUE}", userid="zhangsan",
                                  chatid=GROUP, msgid="t3"))
            wait(lambda: count(db, Task) == 3, "the third task, heard by the new holder", [standby])
            with db.transaction() as s:
                rows = [(r.target_kind, r.status) for r in s.scalars(select(OutboxMessage))]

            def settled() -> bool:
                with db.transaction() as s:
                    return not s.scalar(select(func.count()).select_from(OutboxMessage)
                                        .where(OutboxMessage.status != "sent"))

            try:
                wait(settled, "every row sent", [standby], timeout=40)
            except AssertionError as exc:  # say which rows, and what the worker logged of them
                with db.transaction() as s:
                    unsent = [(r.id, r.target_kind, r.status, r.attempts, r.not_before, (r.last_error or "")[:120])
                              for r in s.scalars(select(OutboxMessage).where(OutboxMessage.status != "sent"))]
                outbox_lines = [line for p in procs for line in p.log if "outbox" in line][-20:]
                raise AssertionError(f"{exc}\nunsent rows: {unsent}\nworker log: {outbox_lines}") from None
            titles = Counter(name for c in group_cards(fake) for name in ("任务一", "任务二", "任务三")
                             if name in c["template_card"]["main_title"]["title"])
            assert titles == {"任务一": 1, "任务二": 1, "任务三": 1}, titles  # none lost, none doubled
            req_ids = Counter(p["req_id"] for p in fake.pushes)
            assert max(req_ids.values()) == 1  # no row's push accepted twice
            assert fake.kicks == 0 and rows
        finally:
            for p in procs:
                p.stop()
