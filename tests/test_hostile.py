"""Hostile and careless input through the whole engine, on SQLite and PostgreSQL: huge messages, huge
titles, SQL-looking text, forged mention markers, forged or garbage card values, taps by people who
may not, and a platform retrying an event with an over-long id. Every case must be answered (a reply
or a toast), change nothing it should not, and never raise out of `Bot.handle`."""

from __future__ import annotations

import json
import uuid

import pytest
from sqlalchemy import func, select

from collabbot.bot.events import (
    MENTION_CLOSE,
    MENTION_OPEN,
    CardActionEvent,
    ChatRef,
    MessageEvent,
    UserRef,
    mention_marker,
    strip_markers,
)
from collabbot.bot.replies import CardAction, Reply
from collabbot.storage.models import AuditEntry, InboundReceipt, OutboxMessage, Project, Task, Wait

from .conftest import Harness

G = "in 新品上市群 as"
GROUP = ChatRef("console", "新品上市群", "新品上市群")
TOO_LONG = "消息太长（超过 4000 字）"


def count(db, model, *where) -> int:
    with db.transaction() as s:
        return s.scalar(select(func.count()).select_from(model).where(*where)) or 0


def person(name: str) -> UserRef:
    return UserRef("console", name, name)


def say(h: Harness, who: str, text: str, mentions: tuple[str, ...] = (), chat: ChatRef = GROUP) -> Reply:
    event = MessageEvent(uuid.uuid4().hex, chat, person(who), text, tuple(person(m) for m in mentions))
    return h.bot.handle(event)


def tap(h: Harness, who: str, value: str, chat: ChatRef = GROUP) -> Reply:
    return h.bot.handle(CardActionEvent(uuid.uuid4().hex, chat, person(who), value))


def world(h: Harness) -> tuple:
    """Everything a refused input must leave as it was (audit rows aside)."""
    with h.db.transaction() as s:
        tasks = [(t.id, t.title, t.status, t.owner_id, t.version, t.acknowledged_at, t.percent)
                 for t in s.scalars(select(Task).order_by(Task.id))]
        waits = [(w.id, w.answered_at, w.nags_sent, w.next_due_at) for w in s.scalars(select(Wait).order_by(Wait.id))]
        outbox = s.scalar(select(func.count()).select_from(OutboxMessage))
        projects = s.scalar(select(func.count()).select_from(Project))
    return tasks, waits, outbox, projects


def outbox_texts(h: Harness) -> list[str]:
    with h.db.transaction() as s:
        return [json.dumps(p, ensure_ascii=False) for p in s.scalars(select(OutboxMessage.payload))]


def create(h: Harness) -> None:
    h.run(f"{G} 张三: @bot 新建任务 活动H5开发 负责人 @李四 截止 12-10")


# --- size -----------------------------------------------------------------------------------------

def test_a_100000_character_message_is_refused_as_too_long_and_writes_no_task(harness: Harness) -> None:
    huge = "活动" * 50_000
    out = harness.text(f"{G} 张三: @bot 新建任务 {huge} 负责人 @李四")
    assert TOO_LONG in out and out.count("\n") == 0  # one short line, not an echo of the text
    assert TOO_LONG in harness.text(f"dm as 张三: {'x' * 100_000}")
    assert say(harness, "张三", "新建任务 " + "字" * 100_000 + f" 负责人 {mention_marker(0)}", ("李四",)) == Reply()
    assert count(harness.db, Task) == 0 and count(harness.db, Project) == 0
    assert count(harness.db, InboundReceipt) == 3
    assert all(len(t) < 1000 for t in outbox_texts(harness))


def test_a_10000_character_title_is_refused_as_too_long(harness: Harness) -> None:
    assert TOO_LONG in harness.text(f"{G} 张三: @bot 新建任务 {'题' * 10_000} 负责人 @李四")
    # under the message cap but over the title's: the title's own limit answers
    assert "任务标题太长了（最多 200 字）" in harness.text(f"{G} 张三: @bot 新建任务 {'题' * 201} 负责人 @李四")
    assert count(harness.db, Task) == 0
    assert "已创建任务 #1" in harness.text(f"{G} 张三: @bot 新建任务 {'题' * 200} 负责人 @李四")


def test_other_long_fields_are_refused_too(harness: Harness) -> None:
    create(harness)
    before = world(harness)
    assert "太长了" in harness.text(f"{G} 李四: @bot 进度 #1 50% 完成 {'做' * 2500}")
    assert "太长了" in harness.text(f"{G} 李四: @bot 评论 #1 {'说' * 2500}")
    tasks, waits, _, _ = world(harness)
    assert (tasks, waits) == before[:2]


def test_refusals_name_the_field_in_the_users_language(harness: Harness) -> None:
    """A refusal says which field is wrong, by the name the person typed, never an internal key."""
    create(harness)
    long = "长" * 2001
    assert "附件「ftp://x」看不懂" in harness.text(f"{G} 张三: @bot 新建任务 活动页 负责人 @李四 附件 ftp://x")
    assert "备注太长了" in harness.text(f"{G} 张三: @bot 新建任务 活动页 负责人 @李四 备注 {long}")
    assert "下一步太长了" in harness.text(f"{G} 李四: @bot 进度 #1 50% 下一步 {long}")
    assert "问题太长了" in harness.text(f"{G} 李四: @bot 进度 #1 50% 问题 {long}")
    assert count(harness.db, Task) == 1


# --- SQL-looking and markup text is data ----------------------------------------------------------

INJECTIONS = [
    "'); DROP TABLE tasks;--",
    "Robert'); DROP TABLE users; --",
    "1' OR '1'='1",
    "\"; DELETE FROM outbox WHERE 1=1; --",
    "'; SELECT pg_sleep(30);--",
    "%s%s%s%n {0} {title} {{id}}",
    "<script>alert(1)</script>",
    '<at user_id="all">所有人</at>',
    "@所有人 @all",
]


@pytest.mark.parametrize("title", INJECTIONS)
def test_sql_and_markup_in_a_title_is_stored_verbatim(harness: Harness, title: str) -> None:
    out = harness.text(f"{G} 张三: @bot 新建任务 {title} 负责人 @李四")
    assert f"已创建任务 #1「{title}」，负责人 @李四" in out
    with harness.db.transaction() as s:
        task = s.get(Task, 1)
        assert task is not None and task.title == title
    assert count(harness.db, Task) == 1 and count(harness.db, OutboxMessage) >= 2  # the tables are all there
    # "all" is text: nobody but the owner is really mentioned
    with harness.db.transaction() as s:
        payloads = list(s.scalars(select(OutboxMessage.payload)))
    mentioned = {p["name"] for payload in payloads for p in payload["parts"] if isinstance(p, dict)}
    assert mentioned == {"李四"}


def test_sql_in_comments_progress_and_reasons_is_stored_verbatim(harness: Harness) -> None:
    create(harness)
    harness.run(f"{G} 李四: @bot 评论 #1 '); DROP TABLE comments;--",
                f"{G} 李四: @bot 进度 #1 30% 完成 1' OR '1'='1 问题 \"; DELETE FROM tasks;--")
    with harness.db.transaction() as s:
        task = s.get(Task, 1)
        assert task is not None and task.percent == 30
    assert "'); DROP TABLE comments;--" in harness.text("dm as 张三: 任务 #1")
    assert count(harness.db, Task) == 1


# --- forged mentions ------------------------------------------------------------------------------

def test_strip_markers_removes_only_the_marker_characters() -> None:
    assert strip_markers(f"负责人 {mention_marker(0)} 协作 {MENTION_OPEN}12{MENTION_CLOSE}") == "负责人 0 协作 12"
    assert strip_markers("普通文本 @李四 #1") == "普通文本 @李四 #1"
    assert strip_markers(MENTION_OPEN * 3 + MENTION_CLOSE) == ""


def test_markers_typed_at_the_console_cannot_mention_anyone(harness: Harness) -> None:
    forged = mention_marker(0)
    out = harness.text(f"{G} 张三: @bot 新建任务 活动页 负责人 {forged}")
    assert "缺少负责人" in out  # plain "0" in free text is no person: it stays in the title
    # a real mention first, then a forged marker pointing at it: the forgery is plain text "0"
    out = harness.text(f"{G} 张三: @bot 新建任务 活动页 负责人 @李四 协作 {forged}")
    assert "找不到成员 0" in out
    assert count(harness.db, Task) == 0


def test_a_marker_with_no_mention_behind_it_is_refused(harness: Harness) -> None:
    """An adapter that forgot to strip: the engine still refuses markers that point at no mention."""
    say(harness, "张三", f"新建任务 活动页 负责人 {mention_marker(0)}")
    say(harness, "张三", f"新建任务 活动页 负责人 {mention_marker(5)}", ("李四",))
    say(harness, "张三", f"新建任务 活动页 负责人 {mention_marker(10**8)}", ("李四",))
    assert count(harness.db, Task) == 0
    assert count(harness.db, OutboxMessage) == 3
    assert all("找不到成员" in t for t in outbox_texts(harness))


def test_marker_characters_never_reach_a_chat(harness: Harness) -> None:
    """Refusals quote what was typed; the quote shows mentions as @names, never as raw markers."""
    harness.run(f"{G} 张三: @bot 新建任物 活动页 负责人 @李四",
                f"{G} 张三: @bot 新建任务 活动页 负责人 @李四 优先级 @王五",
                f"{G} 张三: @bot 新建任务 活动页 负责人 @李四 截止 @王五")
    leaked = [t for t in outbox_texts(harness) if MENTION_OPEN in t or MENTION_CLOSE in t
              or "\\ue000" in t or "\\ue001" in t]
    assert leaked == []


# --- forged and garbage card values ---------------------------------------------------------------

GARBAGE = [
    "v1|accept|task|1|99999",  # a version the task never had: stale
    "v1|ack|task|1|0",
    "v2|ack|task|1|1",  # a format we never wrote
    "v0|ack|task|1|1",
    "v1|ack|task|99999|1",  # no such task
    "v1|ack|task|-1|1",
    "v1|ack|task|1|1|extra",
    "v1|ack|task|1",
    "v1|drop table|task|1|1",
    "v1|ack|tasks; DROP TABLE tasks|1|1",
    "v1|ack|Task|1|1",
    "v1|ack|user|1|1",
    "v1|launch|task|1|1",
    "v1|ack|task|²|1",  # str.isdigit() says yes, int() says no
    "v1|ack|task|1|¹",
    "v1|ack|task|1e3|1",
    "v1|ack|task|" + "9" * 12 + "|1",
    "v1|remind|wait|1|0",
    "v1|help_done|help|1|0",
    "v1|approve|approval|1|1",
    "",
    "|||||",
    "\x00",
    "x" * 10_240,
    json.dumps({"action": "ack", "entity": "task", "id": 1, "version": 1}),
    '{"value": "v1|ack|task|1|1"}',
]


@pytest.mark.parametrize("value", GARBAGE, ids=[f"garbage{i}" for i in range(len(GARBAGE))])
def test_a_forged_card_value_is_refused_with_a_toast_and_changes_nothing(harness: Harness, value: str) -> None:
    create(harness)
    before = world(harness)
    reply = tap(harness, "李四", value)  # the owner: the one person a real ack button works for
    assert reply.toast and reply.toast_kind == "warning", reply
    assert world(harness) == before
    assert count(harness.db, AuditEntry, AuditEntry.outcome == "error") == 0


def test_a_tap_that_is_not_allowed_is_refused_audited_and_changes_nothing(harness: Harness) -> None:
    create(harness)
    ack = CardAction("ack", "task", 1, 1).pack()
    before = world(harness)
    reply = tap(harness, "王五", ack)
    assert reply.toast == "你不能确认这个任务：只有负责人 李四 可以" and reply.toast_kind == "warning"
    assert world(harness) == before
    with harness.db.transaction() as s:
        refused = list(s.scalars(select(AuditEntry).where(AuditEntry.outcome == "refused")))
    assert [(a.action, a.entity_type, a.entity_id, a.reason) for a in refused] == [("task.acknowledge", "tasks", 1, reply.toast)]
    # the same value from the owner works: it was the person, not the button, that was refused
    assert tap(harness, "李四", ack).toast_kind == "success"


def test_accepting_someone_elses_review_by_tap_is_refused(harness: Harness) -> None:
    create(harness)
    harness.run(f"{G} 李四: @bot 完成 #1 交付物 https://h5.example.com")
    with harness.db.transaction() as s:
        task = s.get(Task, 1)
        assert task is not None and task.status == "review"
        accept = CardAction("accept", "task", 1, task.version).pack()
    before = world(harness)
    for intruder in ("李四", "王五", "吴十"):  # the owner may not accept their own work either
        reply = tap(harness, intruder, accept)
        assert "你不能验收这个任务" in reply.toast and reply.toast_kind == "warning"
    assert world(harness) == before
    assert count(harness.db, AuditEntry, AuditEntry.action == "task.accept", AuditEntry.outcome == "refused") == 3


def test_only_the_boss_may_tap_remind_on_an_escalation(harness: Harness) -> None:
    harness.run(f"{G} 张三: @bot 新建任务 物料采购 负责人 @孙九 截止 12-10", "wait 1d2h")
    with harness.db.transaction() as s:
        wait = s.scalar(select(Wait).where(Wait.escalated_at.is_not(None)))
        assert wait is not None
        remind = CardAction("remind", "wait", wait.id, 0).pack()
    before = world(harness)
    reply = tap(harness, "吴十", remind, ChatRef("console", "dm:吴十", "吴十", is_group=False))
    assert "你不能再次提醒" in reply.toast and reply.toast_kind == "warning"
    assert world(harness) == before
    assert count(harness.db, AuditEntry, AuditEntry.action == "wait.remind", AuditEntry.outcome == "refused") == 1
    reply = tap(harness, "赵总", remind, ChatRef("console", "dm:赵总", "赵总", is_group=False))
    assert reply.toast == "已再次提醒 孙九。"


# --- odd characters and odd ids -------------------------------------------------------------------

@pytest.mark.parametrize("title", ["a\x00b", "a\x1b[31mred", "a\u202eevil", "tab\there", "zero\u200bwidth", "😀" * 10])
def test_control_characters_in_a_title_never_cause_an_internal_error(harness: Harness, title: str) -> None:
    say(harness, "张三", f"新建任务 {title} 负责人 {mention_marker(0)}", ("李四",))
    assert count(harness.db, AuditEntry, AuditEntry.outcome == "error") == 0
    assert not any("处理时出错了" in t for t in outbox_texts(harness))


@pytest.mark.parametrize("field", ["优先级", "截止", "附件", "模板", "部门"])
def test_a_nul_in_a_refused_field_is_answered_not_raised(harness: Harness, field: str) -> None:
    """The refusal quotes the value ("优先级「…」看不懂"); PostgreSQL text cannot hold U+0000."""
    say(harness, "张三", f"新建任务 活动页 负责人 {mention_marker(0)} {field} a\x00b", ("李四",))
    with harness.db.transaction() as s:
        receipts = s.scalar(select(func.count()).select_from(InboundReceipt))
    assert receipts == 1
    assert count(harness.db, Task) == 0
    assert count(harness.db, OutboxMessage) == 1


def test_a_retried_event_with_a_very_long_id_gets_the_same_answer(harness: Harness) -> None:
    create(harness)
    event = CardActionEvent("evt-" + "x" * 300, GROUP, person("李四"), CardAction("ack", "task", 1, 1).pack())
    first = harness.bot.handle(event)
    assert first.toast_kind == "success"
    assert harness.bot.handle(event) == first
    assert count(harness.db, InboundReceipt) == 2
