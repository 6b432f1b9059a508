"""The escalation card's buttons (再次提醒 / 转交) tapped by someone the escalation is not for: the refusal
names the button that was tapped and who may act instead — the escalation's target, by the role
`[rules.escalation] to` gave them — in the configured language. Real SQLite, the console platform."""

from __future__ import annotations

import uuid
from dataclasses import replace

from sqlalchemy import select

from collabbot.bot.config import Config
from collabbot.bot.events import CardActionEvent, ChatRef, UserRef
from collabbot.bot.replies import CardAction, Reply
from collabbot.storage.db import Database
from collabbot.storage.models import Department, User, Wait

from .conftest import Harness

G = "in 新品上市群 as"


def harness_with(db: Database, *, to: str = "supervisor", language: str = "zh") -> Harness:
    """The demo org, except that 李四's supervisor is 钱总 while 陈七 heads 技术部: the two roles differ."""
    config = Config(language=language)
    h = Harness(db, replace(config, rules=replace(config.rules, escalation_to=to)))
    with h.db.transaction() as s:
        li = s.scalar(select(User).where(User.name == "李四"))
        li.supervisor = s.scalar(select(User).where(User.name == "钱总"))
    return h


def escalate_about_li(h: Harness) -> tuple[str, str]:
    """A task 李四 never acknowledges, escalated; the card's two button values."""
    h.run(f"{G} 张三: @bot 新建任务 活动H5开发 负责人 @李四 截止 12-10", "wait 1d2h")
    with h.db.transaction() as s:
        wait = s.scalar(select(Wait).where(Wait.escalated_at.is_not(None)))
        assert wait is not None and wait.person.name == "李四"
        return CardAction("remind", "wait", wait.id, 0).pack(), CardAction("reassign", "wait", wait.id, 0).pack()


def tap(h: Harness, who: str, value: str) -> Reply:
    chat = ChatRef("console", f"dm:{who}", who, is_group=False)
    return h.bot.handle(CardActionEvent(uuid.uuid4().hex, chat, UserRef("console", who, who), value))


def test_a_refused_reassign_tap_names_reassign_and_the_supervisor_the_escalation_went_to(sqlite_db: Database) -> None:
    h = harness_with(sqlite_db)
    remind, reassign = escalate_about_li(h)
    reply = tap(h, "陈七", reassign)  # the department head, but escalations go to the supervisor first
    assert reply.toast == "你不能转交这件事：只有 李四 的上级 钱总 或管理员可以" and reply.toast_kind == "warning"
    assert tap(h, "陈七", remind).toast == "你不能再次提醒：只有 李四 的上级 钱总 或管理员可以"
    assert tap(h, "钱总", remind).toast == "已再次提醒 李四。"  # the one named may indeed act


def test_with_escalations_to_the_department_head_the_refusal_names_the_head(sqlite_db: Database) -> None:
    h = harness_with(sqlite_db, to="department_head")
    remind, reassign = escalate_about_li(h)
    assert tap(h, "钱总", reassign).toast == "你不能转交这件事：只有 李四 的部门负责人 陈七 或管理员可以"
    assert tap(h, "钱总", remind).toast == "你不能再次提醒：只有 李四 的部门负责人 陈七 或管理员可以"
    assert tap(h, "陈七", remind).toast == "已再次提醒 李四。"


def test_the_refusal_is_in_english_when_the_bot_speaks_english(sqlite_db: Database) -> None:
    h = harness_with(sqlite_db, language="en")
    remind, reassign = escalate_about_li(h)
    assert tap(h, "陈七", reassign).toast == "You cannot hand this over: only 李四's supervisor 钱总 or an admin may"
    assert tap(h, "陈七", remind).toast == "You cannot remind them again: only 李四's supervisor 钱总 or an admin may"


def test_when_nobody_is_above_any_more_the_refusal_says_only_an_admin_may(sqlite_db: Database) -> None:
    h = harness_with(sqlite_db)
    _, reassign = escalate_about_li(h)
    with h.db.transaction() as s:  # the org changed since: 李四 has no supervisor and 技术部 no head
        s.scalar(select(User).where(User.name == "李四")).supervisor = None
        s.scalar(select(Department).where(Department.name == "技术部")).head = None
    assert tap(h, "陈七", reassign).toast == "你不能转交这件事：李四 没有可升级的上级，只有管理员可以"


def test_the_leader_an_escalation_went_to_may_still_act_on_it_after_the_org_changed(sqlite_db: Database) -> None:
    """钱总 got the card; then 李四's supervisor became 陈七. 钱总's card and 转交 still work for him, rather
    than leave the matter with nobody told; the new supervisor may act too."""
    h = harness_with(sqlite_db)
    remind, reassign = escalate_about_li(h)
    with h.db.transaction() as s:
        s.scalar(select(User).where(User.name == "李四")).supervisor = s.scalar(select(User).where(User.name == "陈七"))
    reminded = tap(h, "钱总", remind)
    assert reminded.toast_kind == "success" and "李四" in reminded.toast
    assert "转交 #1" in tap(h, "钱总", reassign).toast
    assert "已转交" in h.text("dm as 钱总: 转交 #1 @赵六 原因 李四请假")
    assert tap(h, "孙九", remind).toast.startswith("你不能再次提醒")  # and nobody else
