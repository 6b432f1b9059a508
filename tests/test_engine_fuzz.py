"""Property test of the engine's one door, on SQLite and PostgreSQL: whatever is typed or tapped,
`Bot.handle` answers without raising, records an inbound receipt, and leaves no half-done change.

Hypothesis throws sequences of group and private messages (real command aliases with random fields,
mention markers whose indexes may point nowhere, huge strings, control characters, SQL-looking text,
`<at user_id="all">`), card taps with arbitrary values, platform retries and clock ticks (with the rule
sweep) at one bot, then checks the invariants after every event and every sequence. Some steps are
sent as a task's own owner or initiator with a fresh button value, so real state changes happen too.
CI runs 40 sequences per database; `COLLABBOT_FUZZ_EXAMPLES=1000` hunts longer.
"""

from __future__ import annotations

import os
import re
import uuid
from collections import Counter
from dataclasses import dataclass
from datetime import timedelta

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import func, select

from collabbot.bot.commands import ALIASES, FIELD_WORDS
from collabbot.bot.events import CardActionEvent, ChatRef, MessageEvent, UserRef, mention_marker
from collabbot.bot.replies import CardAction, Reply
from collabbot.bot.rules.states import CLOSED
from collabbot.storage.db import Database
from collabbot.storage.models import AuditEntry, Identity, InboundReceipt, OutboxMessage, Task, Wait

from .conftest import Harness

EXAMPLES_PER_DB = int(os.environ.get("COLLABBOT_FUZZ_EXAMPLES", "40"))  # more for a long local hunt
PEOPLE = ("赵总", "钱总", "张三", "李四", "王五", "赵六", "陈七", "周八", "孙九", "吴十")
STRANGERS = ("陌生人", "ou_" + "x" * 60)
CHATS = (
    ChatRef("console", "新品上市群", "新品上市群"),
    ChatRef("console", "双十二大促群", "双十二大促群"),
    ChatRef("console", "oc_unknown_group", "没见过的群"),
)
COMMAND_WORDS = [alias for aliases in ALIASES.values() for alias in aliases]
FIELD_WORD_LIST = [word for words in FIELD_WORDS.values() for word in words]
NASTY = [
    "'); DROP TABLE tasks;--", "1' OR '1'='1", '"; DELETE FROM outbox;--', '<at user_id="all">', '<at user_id="all"></at>',
    "@all", "@所有人", "%s%n{0}{id}", "\x00", "\x1b[2J", "\u202e", "\u200b", "\ufeff", "\r\n", "\t", "\ue000", "\ue001",
    "\ue000\ue001", "\ue000-1\ue001", "\ue00099999999999999999999\ue001", "#0", "#1", "#2", "#3", "#A1", "#H1",
    "#999999999", "#A999999999", "100%", "150%", "0%", "-5%", "12-10", "12-10 18:00", "明天", "下周五", "2026-11-30",
    "2099-01-01", "高", "超高", "https://x.example.com/a?b=c", "javascript:alert(1)", "=", "：", "预算金额=5万",
    "市场活动预算审批", "延期申请", "新截止日期=12-20", "技术部", "财务部", "😀", "𠀀",
]
HUGE = ["字" * 4001, "x" * 100_000, "新建任务 " + "题" * 10_000 + " 负责人 \ue0000\ue001", "a " * 3000]
TAP_ACTIONS = ("ack", "start", "accept", "progress", "finish", "reassign", "return", "help_done", "remind",
               "approve", "reject", "transfer", "to_task", "drop")
TAP_ENTITIES = ("task", "help", "wait", "approval", "user", "Task")
# the dedupe keys rules and handlers write, besides the receipt-derived "evt:<receipt id>:…"
RULE_KEY = re.compile(r"^(assign|review|accepted|unblocked|returned|approval|help|nag|escalate|overdue|prompt|summary"
                      r"|welcome|cancel|reassign|deadline|urgent|collection|retro):")
EVT_KEY = re.compile(r"^evt:(\d+):")


# --- what is thrown -------------------------------------------------------------------------------

markers = st.integers(-2, 12).map(mention_marker)
word = st.one_of(
    st.sampled_from(COMMAND_WORDS), st.sampled_from(FIELD_WORD_LIST), st.sampled_from(NASTY), markers,
    st.integers(0, 8).map(lambda i: f"#{i}"), st.text(max_size=12),
)
command_text = st.builds(lambda alias, rest, sep: sep.join([alias, *rest]), st.sampled_from(COMMAND_WORDS),
                         st.lists(word, max_size=8), st.sampled_from([" ", "  ", "", "\n"]))
# the fields whose refusals quote the value back ("优先级「…」看不懂"), with values that are hard to store or show
QUOTED_FIELDS = ("优先级", "截止", "部门", "模板", "项目", "负责人", "协作", "附件", "完成比例", "原因", "发起部门")
CONTROL = ["\x00", "a\x00b", "\x00\x01\x02", "\x7f", "\x1b[0m", "\ud7ff", "\U0010ffff"]
field_with_nasty_value = st.builds(lambda f, v: f"{f} {v}", st.sampled_from(QUOTED_FIELDS),
                                   st.one_of(st.sampled_from(NASTY), st.sampled_from(CONTROL)))
good_create = st.builds(lambda title, extra: f"新建任务 {title} 负责人 {mention_marker(0)} {extra}",
                        st.text(st.characters(categories=["L", "N"]), min_size=1, max_size=20),
                        st.one_of(st.sampled_from(["", "截止 12-10", f"协作 {mention_marker(1)}", "优先级 高", "截止 昨天"]),
                                  field_with_nasty_value))
texts = st.one_of(command_text, command_text, good_create, st.text(max_size=300), st.sampled_from(NASTY),
                  st.sampled_from(HUGE))
packed = st.builds(lambda a, e, i, v: f"v1|{a}|{e}|{i}|{v}", st.sampled_from(TAP_ACTIONS), st.sampled_from(TAP_ENTITIES),
                   st.integers(0, 6), st.integers(0, 6))
tap_values = st.one_of(packed, packed, st.text(max_size=300), st.sampled_from(["", "x" * 10_240, '{"action": "ack"}',
                                                                              "v2|ack|task|1|1", *NASTY]))
senders = st.one_of(st.sampled_from(PEOPLE), st.sampled_from(STRANGERS))
chats = st.one_of(st.sampled_from(CHATS), senders.map(lambda p: ChatRef("console", f"dm:{p}", p, is_group=False)))


@dataclass(frozen=True)
class Say:
    sender: str
    chat: ChatRef
    text: str
    mentions: tuple[str, ...]
    to_bot: bool


@dataclass(frozen=True)
class Tap:
    sender: str
    chat: ChatRef
    value: str


@dataclass(frozen=True)
class Retry:
    pass


@dataclass(frozen=True)
class Tick:
    minutes: int


@dataclass(frozen=True)
class Insider:
    """A command or a tap, with a fresh button value, by a task's owner or initiator (chosen when run)."""

    role: str  # owner | initiator
    pick: int  # which of the existing tasks
    template: str
    action: str
    tap: bool
    mentions: tuple[str, ...]


# commands on tasks, help requests and approvals that exist (or not): `{n}` a number, `{m}` the first mention
FOLLOW_UPS = [
    "确认收到 #{n}", "开始 #{n}", "进度 #{n} 50% 完成 首页 下一步 联调 问题 无", "进度 #{n} 100%",
    "完成 #{n} 交付物 https://x.example.com/{n}", "通过 #{n}", "退回 #{n} 原因 缺埋点", "转交 #{n} {m} 原因 调整",
    "取消任务 #{n}", "子任务 #{n} 设计 负责人 {m} 截止 12-05", "依赖 #{n} #1", "取消依赖 #{n} #1", "评论 #{n} {m} 请看",
    "求助 技术部 需要支援 #{n}", "答复 #H{n} 已安排", "任务 #{n}", "我的任务", "待我处理", "帮助", "项目信息",
    "申请 市场活动预算审批 活动方案=快闪店 预算金额=5万 预算明细=场地 预期效果=会员", "同意 #A{n}", "驳回 #A{n} 原因 太贵",
    "撤回 #A{n}", "审批 #A{n}", "转交 #A{n} {m}", "本周总结 完成联调", "绑定项目 新品上市 协同负责人 {m} 参与部门 技术部",
]
follow_up = st.builds(lambda template, n, extra: f"{template.format(n=n, m=mention_marker(0))} {extra}".strip(),
                      st.sampled_from(FOLLOW_UPS), st.integers(1, 12),
                      st.one_of(st.sampled_from(["", "", *NASTY]), field_with_nasty_value))
busy_people = st.sampled_from(("张三", "李四", "王五", "赵六", "陈七", "周八", "赵总"))
main_group = st.sampled_from(CHATS[:1] * 3 + CHATS[1:2])
some_people = st.lists(st.sampled_from(PEOPLE), min_size=1, max_size=2).map(tuple)

steps = st.one_of(
    st.builds(Say, senders, chats, texts, st.lists(st.sampled_from(PEOPLE + STRANGERS), max_size=3).map(tuple),
              st.sampled_from([True, True, True, False])),
    st.builds(Say, busy_people, main_group, good_create, some_people, st.just(True)),
    st.builds(Say, busy_people, st.one_of(main_group, chats), follow_up, some_people, st.just(True)),
    st.builds(Say, busy_people, main_group, follow_up, some_people, st.just(True)),
    st.builds(Tap, senders, chats, tap_values),
    st.builds(Tap, busy_people, main_group, packed),
    st.builds(Insider, st.sampled_from(["owner", "owner", "initiator"]), st.integers(0, 50), st.sampled_from(FOLLOW_UPS),
              st.sampled_from(TAP_ACTIONS[:7]), st.booleans(), some_people),
    st.just(Retry()),
    st.builds(Tick, st.integers(1, 36 * 60)),
)


# --- the invariants -------------------------------------------------------------------------------

def user(name: str) -> UserRef:
    return UserRef("console", name, name)


def insider_event(db: Database, step: Insider) -> Say | Tap | None:
    with db.transaction() as s:
        tasks = list(s.scalars(select(Task).order_by(Task.id)))
        if not tasks:
            return None
        task = tasks[step.pick % len(tasks)]
        who = task.owner if step.role == "owner" else task.initiator
        platform_id = s.scalar(select(Identity.platform_user_id).where(Identity.user_id == who.id))
        if step.tap:
            return Tap(platform_id, CHATS[0], CardAction(step.action, "task", task.id, task.version).pack())
        return Say(platform_id, CHATS[0], step.template.format(n=task.id, m=mention_marker(0)), step.mentions, True)


def to_event(step: Say | Tap) -> MessageEvent | CardActionEvent:
    if isinstance(step, Say):
        return MessageEvent(uuid.uuid4().hex, step.chat, user(step.sender), step.text,
                            tuple(user(m) for m in step.mentions), to_bot=step.to_bot or not step.chat.is_group)
    return CardActionEvent(uuid.uuid4().hex, step.chat, user(step.sender), step.value)


def task_count(db: Database) -> int:
    with db.transaction() as s:
        return s.scalar(select(func.count()).select_from(Task)) or 0


def last_outbox_id(db: Database) -> int:
    with db.transaction() as s:
        return s.scalar(select(func.max(OutboxMessage.id))) or 0


def check_event(db: Database, event: MessageEvent | CardActionEvent, reply: Reply, retried: bool,
                tasks_before: int, outbox_before: int) -> None:
    """One event: a receipt with its reply; a refusal (or a retry) changed nothing but its answer."""
    with db.transaction() as s:
        receipt = s.scalar(select(InboundReceipt).where(InboundReceipt.platform == event.platform,
                                                        InboundReceipt.event_id == event.event_id))
        new_keys = list(s.scalars(select(OutboxMessage.dedupe_key).where(OutboxMessage.id > outbox_before)))
    if isinstance(event, MessageEvent) and event.chat.is_group and not event.to_bot:
        assert receipt is None and new_keys == [] and reply == Reply()
        return
    assert receipt is not None, "no inbound receipt for the event"
    assert receipt.reply is not None
    assert Reply.from_json(receipt.reply) == reply
    if retried:
        assert new_keys == [] and task_count(db) == tasks_before, "a retry changed something"
        return
    assert not any(k.startswith(f"evt:{receipt.id}:error:") for k in new_keys), f"an internal error: {event!r}"
    answer_keys = (f"evt:{receipt.id}:refused:", f"evt:{receipt.id}:error:")
    refused = reply.toast_kind in ("warning", "error") or any(k.startswith(answer_keys) for k in new_keys)
    if refused:
        assert task_count(db) == tasks_before, f"a refused event made a task: {new_keys}"
        assert all(k.startswith(answer_keys) for k in new_keys), f"a refused event left messages: {new_keys}"


def check_database(db: Database) -> None:
    """No half-done change anywhere: every task is fully made, every message has a known key."""
    with db.transaction() as s:
        tasks = list(s.scalars(select(Task).order_by(Task.id)))
        created = Counter(s.scalars(select(AuditEntry.entity_id).where(
            AuditEntry.action == "task.create", AuditEntry.outcome == "ok", AuditEntry.entity_type == "tasks")))
        reassigned = Counter(s.scalars(select(AuditEntry.entity_id).where(
            AuditEntry.action == "task.reassign", AuditEntry.outcome == "ok")))
        # a task its owner made for themself is acknowledged as it is made: nobody is asked to acknowledge it
        own = {entity_id for entity_id, after in s.execute(select(AuditEntry.entity_id, AuditEntry.after).where(
            AuditEntry.action == "task.create", AuditEntry.outcome == "ok", AuditEntry.entity_type == "tasks"))
            if (after or {}).get("acknowledged_at")}
        waits: dict[int, list[Wait]] = {}
        for wait in s.scalars(select(Wait).where(Wait.kind == "assign", Wait.entity_type == "task").order_by(Wait.id)):
            waits.setdefault(wait.entity_id, []).append(wait)
        keys = list(s.scalars(select(OutboxMessage.dedupe_key)))
        receipts = set(s.scalars(select(InboundReceipt.id)))
        unanswered = s.scalar(select(func.count()).select_from(InboundReceipt).where(InboundReceipt.reply.is_(None)))
        # an internal error is answered politely too, but it is a bug, never a refusal
        errors = list(s.execute(select(AuditEntry.action, AuditEntry.reason).where(AuditEntry.outcome == "error")))
    assert errors == [], f"internal errors: {errors}"
    assert created == Counter(t.id for t in tasks), "task rows and their task.create audit entries differ"
    assert set(waits) <= {t.id for t in tasks}
    for task in tasks:
        mine = waits.get(task.id, [])
        assert len(mine) == (task.id not in own) + reassigned[task.id], f"task #{task.id}: {len(mine)} assign waits"
        assert not mine or mine[-1].person_id == task.owner_id, f"task #{task.id}: the last assign wait is not the owner's"
        still_open = [w for w in mine if w.answered_at is None]
        assert len(still_open) <= 1
        expect_open = task.acknowledged_at is None and task.status not in CLOSED
        assert bool(still_open) == expect_open, f"task #{task.id} ({task.status}): open assign waits {still_open}"
    for key in keys:
        evt = EVT_KEY.match(key)
        if evt is not None:
            assert int(evt.group(1)) in receipts, f"{key}: no such receipt"
        else:
            assert RULE_KEY.match(key), f"outbox key {key!r} is neither receipt-derived nor a rule's"
    assert unanswered == 0


def test_whatever_arrives_the_engine_answers_and_stays_consistent(db: Database) -> None:
    harness = Harness(db)  # the demo org, a manual clock at 2026-12-01 09:00
    bot, clock = harness.bot, harness.clock

    @settings(max_examples=EXAMPLES_PER_DB, deadline=None, database=None,
              suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow,
                                     HealthCheck.data_too_large])
    @given(st.lists(steps, min_size=1, max_size=12))
    def run(sequence: list[Say | Tap | Insider | Retry | Tick]) -> None:
        last: MessageEvent | CardActionEvent | None = None
        for step in sequence:
            if isinstance(step, Tick):
                clock.advance(timedelta(minutes=step.minutes))
                bot.sweep(clock.now())
                continue
            if isinstance(step, Insider):
                step = insider_event(db, step)
                if step is None:
                    continue
            retried = isinstance(step, Retry)
            if retried:
                if last is None:
                    continue
                event = last
            else:
                event = to_event(step)
            tasks_before, outbox_before = task_count(db), last_outbox_id(db)
            reply = bot.handle(event)  # must not raise, whatever the input
            check_event(db, event, reply, retried, tasks_before, outbox_before)
            last = event
        check_database(db)

    run()



