"""The time-driven rules through the console platform: nags, escalations, overdue warnings, the
daily prompt, the weekly summary — on working time, each once (both databases)."""

from __future__ import annotations

import json
from datetime import datetime, timedelta

import pytest
from sqlalchemy import func, select

from collabbot.bot.replies import Message
from collabbot.storage.models import AuditEntry, OutboxMessage, Task, User, Wait

from .conftest import TZ, Harness

G = "in 新品上市群 as"


def lines_with(out: list[str], needle: str) -> list[str]:
    return [line for line in out if needle in line]


def test_unacknowledged_assignment_is_nagged_twice_then_escalated(make_harness) -> None:
    h: Harness = make_harness()
    h.run(f"{G} 张三: @bot 新建任务 物料采购 负责人 @孙九 截止 12-10")
    out = h.run("wait 1d2h")
    nags = lines_with(out, "新品上市群: @孙九 请确认收到任务 #1")
    assert [n[:13] for n in nags] == ["[12-01 11:00]", "[12-01 14:30]"]
    assert len(lines_with(out, "孙九（私聊）: 请确认收到任务 #1")) == 2
    escalation = lines_with(out, "→ 赵总（私聊）: 孙九 的这件事已超过 24 小时未回应")
    assert len(escalation) == 1 and escalation[0].startswith("[12-02 09:00]")
    assert lines_with(out, "已超过 24 小时未回应，已告知 赵总")
    assert "[再次提醒] [转交]" in "\n".join(out)
    with h.db.transaction() as s:
        assert s.scalar(select(func.count()).select_from(AuditEntry).where(AuditEntry.action == "rule.escalate")) == 1
    out = h.run("wait 3d")  # then silence: no third nag, no second escalation; Friday's summary is all
    messages = [line for line in out if line.startswith("[")]
    assert len(messages) == 1 and "本周周报" in messages[0], messages


def test_an_answer_stops_the_later_steps(make_harness) -> None:
    h: Harness = make_harness()
    h.run(f"{G} 张三: @bot 新建任务 渠道报名 负责人 @吴十 截止 12-10")
    out = h.run("wait 2h30m")
    assert len(lines_with(out, "@吴十 请确认收到任务 #1")) == 1
    h.run(f"{G} 吴十: tap 确认收到")
    out = h.run("wait 2d")
    assert not lines_with(out, "请确认收到") and not lines_with(out, "升级提醒")


def test_acknowledged_in_time_gets_nothing(make_harness) -> None:
    h: Harness = make_harness()
    h.run(f"{G} 张三: @bot 新建任务 渠道报名 负责人 @吴十 截止 12-10", f"{G} 吴十: @bot 确认收到 #1")
    out = h.run("wait 1d2h")
    assert not lines_with(out, "吴十")


def test_escalation_waits_for_the_nags_across_a_holiday(make_harness) -> None:
    """The README's worked example: assigned 2026-09-30 17:30, the eve of the National Day week."""
    h: Harness = make_harness(start=datetime(2026, 9, 30, 17, 30, tzinfo=TZ))
    h.run(f"{G} 张三: @bot 新建任务 国庆物料 负责人 @孙九")
    out = h.run("wait 9d")
    nags = [line[:13] for line in lines_with(out, "新品上市群: @孙九 请确认收到")]
    assert nags == ["[10-08 10:30]", "[10-08 14:00]"]
    assert [line[:13] for line in lines_with(out, "赵总（私聊）")] == ["[10-08 16:00]"]


def test_help_request_is_nagged_and_an_answer_stops_it(make_harness) -> None:
    h: Harness = make_harness()
    h.run(f"{G} 李四: @bot 求助 设计部 需要一名设计师")
    out = h.run("wait 2h")
    assert lines_with(out, "@周八 求助 #H1 还在等你答复")
    h.run(f"{G} 周八: @bot 答复 #H1 已安排")
    assert not lines_with(h.run("wait 2d"), "周八")


def test_overdue_warning_once_and_outside_working_time_waits_for_monday(make_harness) -> None:
    h: Harness = make_harness(start=datetime(2026, 11, 27, 9, 0, tzinfo=TZ))  # a Friday
    h.run(f"{G} 张三: @bot 新建任务 周末上线 负责人 @李四 截止 11-29 03:00", f"{G} 李四: @bot 开始 #1")
    out = h.run("wait 3d")
    owner = lines_with(out, "→ 李四（私聊）: 任务 #1「周末上线」已过截止时间")
    coordinator = lines_with(out, "→ 张三（私聊）: 延期预警：任务 #1「周末上线」")
    assert [line[:13] for line in owner] == ["[11-30 09:00]"]  # due Sunday 03:00 → Monday 09:00
    assert len(coordinator) == 1


def test_the_overdue_warning_says_how_to_apply_as_the_configured_extension_template_reads(make_harness) -> None:
    """The command it suggests is the configured template's (name and fields), and none when no template
    is for extensions: the owner is never told to type something that does not exist."""
    from dataclasses import replace

    from collabbot.bot.config import parse_config

    h: Harness = make_harness()
    h.run(f"{G} 张三: @bot 新建任务 A 负责人 @李四 截止 12-01 12:00")
    warned = lines_with(h.run("wait 5h"), "→ 李四（私聊）: 任务 #1「A」已过截止时间")
    assert len(warned) == 1 and "「申请 延期申请 #1 新截止日期=… 原因=… 补救措施=…」申请延期" in warned[0], warned
    extension = {"name": "改期", "kind": "extension", "deadline_field": "新日期",
                 "fields": [{"name": "新日期", "type": "date"}, {"name": "说明"}],
                 "stages": [{"name": "发起人", "kind": "task_initiator"}]}
    general = {"name": "采购", "fields": [{"name": "物品"}], "stages": [{"name": "初审", "kind": "dept_head"}]}
    cases = (([general, extension], "「申请 改期 #2 新日期=… 说明=…」申请延期。"), ([general], "「进度 #3 …」更新进度。"))
    for task_id, (templates, expected) in enumerate(cases, start=2):
        h.bot.config = replace(h.config, approval_templates=parse_config({"approval_templates": templates}).approval_templates)
        h.run(f"{G} 张三: @bot 新建任务 B{task_id} 负责人 @李四 截止 12-0{task_id} 12:00")
        [line] = lines_with(h.run("wait 1d"), f"→ 李四（私聊）: 任务 #{task_id}「B{task_id}」已过截止时间")
        assert line.endswith(expected) and "延期申请" not in line, line


def test_daily_prompt_lists_in_progress_tasks_without_progress_today(make_harness) -> None:
    h: Harness = make_harness()
    h.run(f"{G} 张三: @bot 新建任务 A 负责人 @李四 截止 12-20", f"{G} 张三: @bot 新建任务 B 负责人 @王五 截止 12-20",
          f"{G} 李四: @bot 开始 #1", f"{G} 王五: @bot 开始 #2", f"{G} 王五: @bot 进度 #2 20%")
    out = h.run("wait 2h")
    prompt = lines_with(out, "新品上市群: 今日进度提醒")
    assert len(prompt) == 1 and "@李四" in prompt[0] and prompt[0][:12] >= "[12-01 10:00"
    assert "#2 B" not in prompt[0]
    assert lines_with(out, "→ 李四（私聊）: 今天请更新任务 #1「A」的进度")
    assert not lines_with(out, "→ 王五（私聊）: 今天请更新")
    out = h.run("wait 1d")  # Wednesday: both lack progress now
    assert len(lines_with(out, "新品上市群: 今日进度提醒")) == 1 and lines_with(out, "→ 王五（私聊）: 今天请更新")


def test_an_owner_with_several_waiting_tasks_gets_one_private_prompt(make_harness) -> None:
    h: Harness = make_harness()
    h.run(*(f"{G} 张三: @bot 新建任务 {t} 负责人 @李四 截止 12-20" for t in "ABC"),
          *(f"{G} 李四: @bot 开始 #{i}" for i in (1, 2, 3)))
    out = h.run("wait 2h")
    private = lines_with(out, "→ 李四（私聊）: 今天请更新")
    assert len(private) == 1 and "这 3 个任务" in private[0], private
    assert all(f"[更新进度 #{i}]" in "\n".join(out) for i in (1, 2, 3))  # a button for each


def test_several_waits_of_one_person_make_one_note_in_the_group(make_harness) -> None:
    """Three unacknowledged tasks: each nag round is one @mention in the group with three lines (and the
    escalation round one note), while each task's private nag keeps its own card."""
    h: Harness = make_harness()
    h.run(*(f"{G} 张三: @bot 新建任务 {t} 负责人 @李四 截止 12-20" for t in "ABC"))
    out = h.run("wait 1d2h")
    notes = lines_with(out, "新品上市群: @李四")
    assert [line[:13] for line in notes] == ["[12-01 11:00]", "[12-01 14:30]", "[12-02 09:00]"], notes
    assert all("以下 3 项等你回应" in line and all(f"#{i}" in line for i in (1, 2, 3)) for line in notes)
    assert "已告知 陈七" in notes[-1]
    assert len(lines_with(out, "→ 李四（私聊）: 请确认收到任务")) == 6  # 3 tasks × 2 nags, each with its card


def test_no_daily_prompt_on_a_holiday_or_weekend(make_harness) -> None:
    h: Harness = make_harness(start=datetime(2026, 9, 30, 9, 0, tzinfo=TZ))
    h.run(f"{G} 张三: @bot 新建任务 A 负责人 @李四 截止 2026-10-30", f"{G} 李四: @bot 开始 #1")
    out = h.run("wait 10d2h")  # to Saturday 10-10, a make-up workday (调休)
    days = sorted({line[1:6] for line in lines_with(out, "新品上市群: 今日进度提醒")})
    assert days == ["09-30", "10-08", "10-09", "10-10"]


def test_an_owner_in_two_projects_gets_one_private_daily_prompt(make_harness) -> None:
    h: Harness = make_harness(start=datetime(2026, 12, 1, 9, 0, tzinfo=TZ))
    h.run(f"{G} 张三: @bot 新建任务 物料采购 负责人 @李四 截止 12-10",
          "in 双十二大促群 as 张三: @bot 新建任务 渠道报名 负责人 @李四 截止 12-10",
          f"{G} 李四: @bot 开始 #1", "in 双十二大促群 as 李四: @bot 开始 #2")
    out = h.run("wait 1h10m")
    assert len(lines_with(out, "群: 今日进度提醒")) == 2  # each group its own
    private = [i for i, line in enumerate(out) if "→ 李四（私聊）" in line]
    assert len(private) == 1, out
    card = "\n".join(out[private[0]:private[0] + 6])
    assert "#1 物料采购" in card and "#2 渠道报名" in card, card


def test_weekly_summary_on_friday_and_on_the_last_workday_before_a_holiday_friday(make_harness) -> None:
    h: Harness = make_harness(start=datetime(2026, 9, 28, 9, 0, tzinfo=TZ))
    h.run(f"{G} 张三: @bot 新建任务 A 负责人 @李四 截止 2026-10-09", f"{G} 李四: @bot 进度 #1 40%",
          f"{G} 张三: @bot 新建任务 B 负责人 @王五 截止 2026-09-29", f"{G} 王五: @bot 完成 #2 交付物 稿件",
          f"{G} 张三: @bot 通过 #2", f"{G} 陈七: @bot 本周总结 技术部本周完成接口联调")
    out = h.run("wait 3d")
    start = [i for i, line in enumerate(out) if "本周周报如下" in line]
    assert len(start) == 1 and out[start[0]].startswith("[09-30 17:0")  # Friday 10-02 is a holiday
    card = "\n".join(out[start[0]:start[0] + 12])
    assert "本周完成：#2 B" in card and "进行中：#1 A ▓▓▓▓░░░░░░ 40%" in card
    assert "技术部：技术部本周完成接口联调" in card
    with h.db.transaction() as s:
        [summary] = [Message.from_json(m.payload).card for m in s.scalars(select(OutboxMessage).where(
            OutboxMessage.dedupe_key.like("summary:%")))]
    assert summary is not None and summary.chart == (("设计部", 100),)  # 王五 (设计部) did B on time
    out = h.run("wait 10d")
    assert [line[1:6] for line in lines_with(out, "本周周报如下")] == ["10-09"]


def test_handed_in_by_the_deadline_is_on_time_though_accepted_after_it(make_harness) -> None:
    """A slow reviewer does not make the owner late: the summary and 报表 judge the hand-in."""
    h: Harness = make_harness(start=datetime(2026, 12, 1, 9, 0, tzinfo=TZ))
    h.run(f"{G} 张三: @bot 新建任务 A 负责人 @李四 截止 12-02 18:00", f"{G} 李四: @bot 确认收到 #1")
    h.run("wait 1d", f"{G} 李四: @bot 完成 #1 交付物 稿件")  # 12-02 09:00, in time
    h.run("wait 1d", f"{G} 张三: @bot 通过 #1")  # 12-03 09:00, after the deadline
    out = h.run("wait 2d")
    assert lines_with(out, "本周周报如下")
    with h.db.transaction() as s:
        [summary] = [Message.from_json(m.payload).card for m in s.scalars(select(OutboxMessage).where(
            OutboxMessage.dedupe_key.like("summary:%")))]
    assert summary is not None and [rate for _, rate in summary.chart] == [100]
    report = "\n".join(h.run(f"{G} 张三: @bot 报表"))
    assert "完成 1（按原截止按时 1，延期后按时 0，逾期完成 0）" in report, report


def test_after_a_day_of_downtime_no_daily_prompt_at_night_and_the_summary_waits_for_monday(make_harness) -> None:
    h: Harness = make_harness(start=datetime(2026, 12, 1, 9, 0, tzinfo=TZ))
    h.run(f"{G} 张三: @bot 新建任务 物料采购 负责人 @李四 截止 12-20", f"{G} 李四: @bot 开始 #1")
    out = h.run("clock 2026-12-02 09:30", "clock 2026-12-02 21:00")  # down from 09:30 until 21:00
    assert not lines_with(out, "今日进度提醒") and not lines_with(out, "今天请更新"), out
    out = h.run("wait 14h")  # the next morning's comes at its time
    prompts = lines_with(out, "新品上市群: 今日进度提醒")
    assert len(prompts) == 1 and prompts[0].startswith("[12-03 10:"), out
    out = h.run("clock 2026-12-04 16:00", "clock 2026-12-04 23:00", "wait 10m")  # down over Friday's 17:00
    assert not lines_with(out, "本周周报如下"), out
    out = h.run("clock 2026-12-07 08:50", "wait 30m")
    assert [line[:9] for line in lines_with(out, "本周周报如下")] == ["[12-07 09"], out


def test_a_sweep_after_downtime_sends_each_late_nag_once(db) -> None:
    h = Harness(db)
    h.run(f"{G} 张三: @bot 新建任务 A 负责人 @李四 截止 12-20")
    h.clock.advance(timedelta(hours=6))  # nobody swept for six hours
    h.bot.sweep()
    h.bot.sweep()
    with db.transaction() as s:
        nags = s.scalar(select(func.count()).select_from(OutboxMessage).where(OutboxMessage.dedupe_key.like("nag:%dm")))
        wait = s.scalar(select(Wait))
        assert nags == 1 and wait is not None and wait.nags_sent == 1
        assert wait.next_due_at is not None and wait.next_due_at > h.clock.now()


def test_nags_can_be_switched_off(make_harness) -> None:
    """Only the nags: the escalation still comes, so the switch is what silenced them."""
    h: Harness = make_harness(config=rules_with(nag_enabled=False))
    h.run(f"{G} 张三: @bot 新建任务 A 负责人 @李四 截止 12-20")
    out = h.run("wait 3d")
    assert not lines_with(out, "请确认收到")
    assert len(lines_with(out, "→ 陈七（私聊）: 李四 的这件事已超过 24 小时未回应")) == 1


def test_escalations_can_be_switched_off(make_harness) -> None:
    """Only the escalation: both nags still come, and nobody is told after 24 hours."""
    h: Harness = make_harness(config=rules_with(escalation_enabled=False))
    h.run(f"{G} 张三: @bot 新建任务 A 负责人 @李四 截止 12-20")
    out = h.run("wait 3d")
    assert len(lines_with(out, "李四（私聊）: 请确认收到任务 #1")) == 2
    assert not lines_with(out, "未回应，请跟进") and not lines_with(out, "已超过 24 小时未回应")
    with h.db.transaction() as s:
        assert s.scalar(select(func.count()).select_from(AuditEntry).where(AuditEntry.action == "rule.escalate")) == 0


def test_an_overdue_owner_is_chased_for_a_reason_until_a_progress_update(make_harness) -> None:
    h: Harness = make_harness()
    h.run(f"{G} 张三: @bot 新建任务 A 负责人 @李四 截止 12-01 12:00", f"{G} 李四: @bot 开始 #1")
    out = h.run("wait 7h")  # due 12:00, warned at 13:30 (after lunch), chased 2 working hours later
    assert [line[:13] for line in lines_with(out, "→ 李四（私聊）: 任务 #1「A」已过截止时间")] == ["[12-01 13:30]"]
    assert [line[:13] for line in lines_with(out, "@李四 任务 #1「A」已延期，请回复原因")] == ["[12-01 15:30]"]
    h.run(f"{G} 李四: @bot 进度 #1 80% 问题 接口延期 下一步 明天上线")
    assert not lines_with(h.run("wait 2d"), "已延期，请回复原因")


def rules_with(**changes: object):
    from dataclasses import replace

    from collabbot.bot.config import Config

    cfg = Config()
    return replace(cfg, rules=replace(cfg.rules, **changes))


def test_who_hears_a_nag_and_an_escalation_is_configurable(make_harness) -> None:
    h: Harness = make_harness(config=rules_with(nag_in_group=False, escalation_in_group=False))
    h.run(f"{G} 张三: @bot 新建任务 物料采购 负责人 @孙九 截止 12-10")
    out = h.run("wait 1d2h")
    assert not lines_with(out, "新品上市群: @孙九 请确认收到") and not lines_with(out, "已告知 赵总")
    assert len(lines_with(out, "孙九（私聊）: 请确认收到任务 #1")) == 2
    assert len(lines_with(out, "→ 赵总（私聊）: 孙九 的这件事已超过 24 小时未回应")) == 1

    h = make_harness(config=rules_with(nag_private=False))
    h.run(f"{G} 张三: @bot 新建任务 物料采购 负责人 @孙九 截止 12-10")
    out = h.run("wait 6h")  # 11:00 and 14:30 (lunch is not working time)
    assert len(lines_with(out, "新品上市群: @孙九 请确认收到任务")) == 2 and not lines_with(out, "孙九（私聊）: 请确认收到")


def test_an_escalation_can_go_to_the_department_head_first(make_harness) -> None:
    from collabbot.storage.models import User

    for first, boss in (("supervisor", "钱总"), ("department_head", "陈七")):
        h: Harness = make_harness(config=rules_with(escalation_to=first))
        with h.db.transaction() as s:  # 李四 of 技术部 (head 陈七) reports to 钱总 on this project
            users = {u.name: u for u in s.scalars(select(User))}
            users["李四"].supervisor_id = users["钱总"].id
        h.run(f"{G} 张三: @bot 新建任务 接口联调 负责人 @李四 截止 12-10")
        out = h.run("wait 1d2h")
        assert [line.split("→ ")[1].split("（")[0] for line in lines_with(out, "的这件事已超过 24 小时未回应")] == [boss]


def test_the_prompt_and_the_overdue_warning_can_leave_out_the_group_or_the_coordinator(make_harness) -> None:
    h: Harness = make_harness(config=rules_with(daily_prompt_in_group=False, overdue_tell_coordinator=False))
    h.run(f"{G} 张三: @bot 新建任务 A 负责人 @李四 截止 12-01 12:00", f"{G} 李四: @bot 开始 #1")
    out = h.run("wait 1d2h")  # the overdue warning on 12-01, the prompt on 12-02 10:00
    assert lines_with(out, "→ 李四（私聊）: 任务 #1「A」已过截止时间")
    assert not lines_with(out, "→ 张三（私聊）: 延期预警：任务 #1「A」")  # the coordinator is not told
    assert not lines_with(out, "新品上市群: 今日进度提醒")
    assert len(lines_with(out, "→ 李四（私聊）: 今天请更新任务 #1「A」的进度")) == 2  # privately, each morning


def test_by_default_the_prompt_goes_to_the_group_and_the_coordinator_hears_of_the_overdue(make_harness) -> None:
    """The same run on the defaults: the lines the test above expects to be missing are the real ones."""
    h: Harness = make_harness()
    h.run(f"{G} 张三: @bot 新建任务 A 负责人 @李四 截止 12-01 12:00", f"{G} 李四: @bot 开始 #1")
    out = h.run("wait 1d2h")
    assert len(lines_with(out, "→ 张三（私聊）: 延期预警：任务 #1「A」")) == 1
    assert len(lines_with(out, "新品上市群: 今日进度提醒")) == 2
    assert len(lines_with(out, "→ 李四（私聊）: 今天请更新任务 #1「A」的进度")) == 2


# --- the escalation card's 再次提醒 once the wait is over ---------------------------------------------

def _tap_escalation(h: Harness, who: str, wait_id: int, action: str = "remind"):
    """Tap a button of the escalation card about wait `wait_id` as `who` (its copy, as a platform would)."""
    import uuid

    from collabbot.bot.events import CardActionEvent, ChatRef, UserRef
    from collabbot.bot.replies import CardAction

    with h.db.transaction() as s:
        mid = s.scalar(select(OutboxMessage.platform_message_id).where(OutboxMessage.card_key == f"wait:{wait_id}",
                                                                       OutboxMessage.target_kind == "user"))
    reply = h.bot.handle(CardActionEvent(uuid.uuid4().hex, ChatRef("console", f"dm:{who}", who, is_group=False),
                                         UserRef("console", who, who), CardAction(action, "wait", wait_id, 0).pack(),
                                         message_id=mid or ""))
    h.console.settle()
    return reply, h.console.take_output()


def _escalated_card(h: Harness, wait_id: int):
    return next(c.card for c in reversed(h.console.sender.cards) if c.card.key == f"wait:{wait_id}")


def test_remind_again_on_an_open_wait_still_reminds(make_harness) -> None:
    h: Harness = make_harness()
    h.run(f"{G} 张三: @bot 新建任务 物料采购 负责人 @李四 截止 12-20", "wait 1d30m")
    reply, out = _tap_escalation(h, "陈七", 1)
    assert reply.toast == "已再次提醒 李四。"
    assert lines_with(out, "→ 李四（私聊）: 陈七 请你尽快处理：任务 #1「物料采购」待确认收到")


def test_a_second_remind_again_within_the_hour_is_not_sent_twice(make_harness) -> None:
    h: Harness = make_harness()
    h.run(f"{G} 张三: @bot 新建任务 物料采购 负责人 @李四 截止 12-20", "wait 1d30m")
    first, out = _tap_escalation(h, "陈七", 1)
    second, again = _tap_escalation(h, "陈七", 1)  # a double tap on a phone
    assert first.toast == "已再次提醒 李四。" and second.toast.startswith("李四 已于 12-02 09:30 被提醒过"), second
    assert len(lines_with(out + again, "→ 李四（私聊）: 陈七 请你尽快处理")) == 1


def test_remind_again_at_night_waits_for_the_morning_and_is_dropped_once_answered(make_harness) -> None:
    h: Harness = make_harness()
    h.run(f"{G} 张三: @bot 新建任务 物料采购 负责人 @李四 截止 12-20", "wait 1d30m", "clock 2026-12-02 22:00")
    reply, out = _tap_escalation(h, "陈七", 1)
    assert reply.toast == "现在是非工作时间，将于 12-03 09:00 提醒 李四（若届时已处理则不再提醒）。", reply
    assert not lines_with(out, "请你尽快处理")
    h.run("clock 2026-12-03 08:30", f"{G} 张三: @bot 转交 #1 @赵六 原因 李四出差")
    out = h.run("wait 1h")
    assert not lines_with(out, "陈七 请你尽快处理") and not lines_with(out, "@李四"), out
    # not answered by morning: it is sent then
    h.run(f"{G} 张三: @bot 新建任务 渠道报名 负责人 @李四 截止 12-20", "wait 1d30m", "clock 2026-12-04 21:00")
    with h.db.transaction() as s:
        wait_id = s.scalar(select(Wait.id).where(Wait.entity_id == 2, Wait.escalated_at.is_not(None)))
    _tap_escalation(h, "陈七", wait_id)
    out = h.run("clock 2026-12-07 08:50", "wait 20m")
    assert [line[:13] for line in lines_with(out, "→ 李四（私聊）: 陈七 请你尽快处理：任务 #2")] == ["[12-07 09:00]"]


@pytest.mark.parametrize("answer", [f"{G} 李四: @bot 确认收到 #1", f"{G} 张三: @bot 取消任务 #1",
                                    f"{G} 张三: @bot 转交 #1 @赵六"])
def test_remind_again_after_the_wait_is_over_sends_nothing(make_harness, answer: str) -> None:
    h: Harness = make_harness()
    h.run(f"{G} 张三: @bot 新建任务 物料采购 负责人 @李四 截止 12-20", "wait 1d30m")
    assert [b.label for b in _escalated_card(h, 1).buttons] == ["再次提醒", "转交"]
    h.run(answer)
    card = _escalated_card(h, 1)  # the leader's card follows: no button left to chase with
    assert card.buttons == () and card.status == "已处理"
    for action in ("remind", "reassign"):
        reply, out = _tap_escalation(h, "陈七", 1, action)
        assert reply.toast == "这件事已经处理了，无需再提醒。", reply
        assert not [line for line in out if "→" in line], out  # nobody hears anything: no nag, no @mention
    with h.db.transaction() as s:
        assert s.scalar(select(func.count()).select_from(AuditEntry).where(AuditEntry.action == "wait.remind")) == 0
    out = h.run("wait 3h")  # after a 转交 only the new owner is chased, never the old one
    assert not lines_with(out, "李四")
    if "转交" in answer:
        assert lines_with(out, "新品上市群: @赵六 请确认收到任务 #1")


def test_a_task_handed_in_on_time_and_returned_after_its_deadline_is_warned_then(make_harness) -> None:
    h: Harness = make_harness()
    h.run(f"{G} 孙九: @bot 新建任务 物料清单 负责人 @李四 截止 12-02", f"{G} 李四: @bot 开始 #1",
          "clock 2026-12-02 17:00", f"{G} 李四: @bot 完成 #1 交付物 https://docs/x")
    out = h.run("clock 2026-12-03 10:30")
    assert not lines_with(out, "已过截止时间"), out  # in review, handed in on time: nothing to chase
    out = h.run(f"{G} 孙九: @bot 退回 #1 原因 缺少报价", "wait 10m")
    assert lines_with(out, "→ 李四（私聊）: 任务 #1「物料清单」已过截止时间"), out
    assert lines_with(out, "→ 孙九（私聊）: 延期预警：任务 #1「物料清单」"), out  # the coordinator


def test_a_closed_projects_group_gets_its_closing_weeks_summary_and_no_more(make_harness) -> None:
    h: Harness = make_harness(start=datetime(2026, 12, 1, 9, 0, tzinfo=TZ))
    h.run(f"{G} 张三: @bot 绑定项目 新品上市 协同负责人 @张三", f"{G} 张三: @bot 新建任务 A 负责人 @张三 截止 12-20",
          f"{G} 张三: @bot 完成 #1 交付物 稿件", f"{G} 张三: @bot 通过 #1", f"{G} 张三: @bot 结项")
    out = h.run("wait 4d")
    assert len(lines_with(out, "本周周报如下")) == 1, out  # the closing week's
    out = h.run("wait 14d")
    assert not lines_with(out, "本周周报如下"), out


# --- an extension request outlives nothing it asked about --------------------------------------------

def _with_an_extension_asked(h: Harness) -> Harness:
    """王五's task #1, and his 延期申请 #A1 on it, pending with 张三."""
    h.run(f"{G} 张三: @bot 新建任务 快闪店物料设计 负责人 @王五 截止 12-03", f"{G} 王五: @bot 确认收到 #1",
          f"{G} 王五: @bot 延期申请 #1 新截止日期=12-08 原因=商品图未到 补救措施=先出线框稿")
    return h


def test_cancelling_a_task_voids_its_pending_extension_request(make_harness) -> None:
    h = _with_an_extension_asked(make_harness())
    out = h.run(f"{G} 张三: @bot 取消任务 #1")
    assert lines_with(out, "审批 #A1「延期申请」已取消。任务 #1 已取消。"), out
    assert lines_with(out, "→ 王五（私聊）: 审批 #A1「延期申请」已作废，无需再审批：任务 #1 已取消。"), out
    out = h.run("wait 2d")
    assert not lines_with(out, "#A1"), out  # no nag, no escalation about it
    assert lines_with(h.run("dm as 张三: 同意 #A1"), "已取消")


def test_reassigning_a_task_voids_the_old_owners_extension_request(make_harness) -> None:
    h = _with_an_extension_asked(make_harness())
    out = h.run(f"{G} 张三: @bot 转交 #1 @李四 原因 王五请假")
    assert lines_with(out, "→ 王五（私聊）: 审批 #A1「延期申请」已作废，无需再审批：任务 #1 已转交给 李四"), out
    out = h.run("wait 3h")
    assert not lines_with(out, "#A1"), out
    out = h.run(f"{G} 李四: @bot 延期申请 #1 新截止日期=12-09 原因=接手 补救措施=加班")  # the new owner asks anew
    assert lines_with(out, "#A2"), out


# --- an extension request answers the overdue chase ---------------------------------------------

def test_a_filed_extension_answers_the_overdue_chase_until_it_is_rejected(make_harness) -> None:
    h: Harness = make_harness()
    h.run(f"{G} 张三: @bot 新建任务 物料采购 负责人 @李四 截止 12-01 17:00", f"{G} 李四: @bot 确认收到 #1",
          f"{G} 李四: @bot 进度 #1 30% 完成 初稿")
    out = h.run("wait 8h30m")
    assert lines_with(out, "→ 李四（私聊）: 任务 #1「物料采购」已过截止时间")
    h.run(f"{G} 李四: @bot 延期申请 #1 新截止日期=12-08 17:00 原因=供应商延迟 补救措施=加班")
    out = h.run("wait 2d")
    assert not lines_with(out, "已延期，请回复原因") and not lines_with(out, "延期未说明原因"), out
    assert not lines_with(out, "李四 的这件事已超过")
    h.run("dm as 张三: 驳回 #A1 补救措施不够")  # rejected on 12-03 17:30: the reason is owed again, chased as before
    out = h.run("wait 1d")
    nags = lines_with(out, "新品上市群: @李四 任务 #1「物料采购」已延期，请回复原因")
    assert [line[:13] for line in nags] == ["[12-04 10:30]", "[12-04 14:00]"], nags


def test_an_extension_filed_before_the_deadline_spares_the_chase(make_harness) -> None:
    h: Harness = make_harness()
    h.run(f"{G} 张三: @bot 新建任务 物料采购 负责人 @李四 截止 12-01 17:00", f"{G} 李四: @bot 开始 #1",
          f"{G} 李四: @bot 延期申请 #1 新截止日期=12-08 17:00 原因=供应商延迟 补救措施=加班")
    out = h.run("wait 2d")
    assert lines_with(out, "→ 李四（私聊）: 任务 #1「物料采购」已过截止时间")  # the warning itself still goes
    assert lines_with(out, "你的延期申请还在审批中") and not lines_with(out, "申请延期。")  # not told to apply again
    assert not lines_with(out, "已延期，请回复原因") and not lines_with(out, "李四 的这件事已超过")
    h.run(f"{G} 李四: @bot 撤回 #A1")  # withdrawn: nothing answers the overdue any more
    out = h.run("wait 3h")
    assert lines_with(out, "@李四 任务 #1「物料采购」已延期，请回复原因")


# --- an urgent task: only the response is urgent -------------------------------------------------

def test_an_urgent_tasks_overdue_reason_is_chased_like_an_ordinary_nag(make_harness) -> None:
    h: Harness = make_harness(start=datetime(2026, 12, 7, 15, 0, tzinfo=TZ))  # Monday 15:00
    h.run(f"{G} 张三: @bot 紧急 客户投诉升级 负责人 @李四 协作部门 技术部", f"{G} 李四: @bot 确认收到 #1")
    out = h.run("wait 3d")  # due 12-08 15:00 (respond_hours)
    nags = [line[:13] for line in lines_with(out, "新品上市群: @李四 任务 #1「客户投诉升级」已延期，请回复原因")]
    assert nags == ["[12-08 17:00]", "[12-09 10:00]"], nags  # working hours, nag max 2: not hourly, not at night
    with h.db.transaction() as s:
        chased = [r for r in s.scalars(select(OutboxMessage)) if r.dedupe_key.startswith(("nag:task:1:overdue",
                                                                                          "escalate:task:1:overdue"))]
    assert chased and not any(r.payload.get("urgent") for r in chased)
    escalation = lines_with(out, "任务 #1「客户投诉升级」延期未说明原因，已超过 24 小时未回应")
    assert [line[:13] for line in escalation] == ["[12-09 15:00]"]


# --- nobody to escalate to ------------------------------------------------------------------------

def test_an_escalation_with_nobody_above_does_not_claim_anyone_was_told(make_harness) -> None:
    from collabbot.bot import texts
    from collabbot.storage.models import User

    h: Harness = make_harness()
    with h.db.transaction() as s:  # 张三 heads 市场部 and, here, answers to nobody
        s.scalar(select(User).where(User.name == "张三")).supervisor_id = None
    h.run(f"{G} 李四: @bot 新建任务 物料采购 负责人 @张三 截止 12-20")
    out = h.run("wait 1d2h")
    note = lines_with(out, "新品上市群: @张三 任务 #1「物料采购」待确认收到，已超过 24 小时未回应")
    assert len(note) == 1 and "已告知" not in note[0] and "没有可升级的上级" in note[0], note
    assert not lines_with(out, "的这件事已超过")
    english = texts.t("en", "escalation_group_nobody", what="Task #1", hours="24")
    assert "was told" not in english and "nobody" in english


def test_the_top_leader_is_never_escalated_to_his_own_subordinate(make_harness) -> None:
    """赵总 answers to nobody and sits in 运营部, whose head 孙九 reports to him: nobody is above him."""
    h: Harness = make_harness()
    h.run(f"{G} 张三: @bot 新建任务 供应商框架协议签字 负责人 @赵总 截止 12-20")
    out = h.run("wait 1d2h")
    note = lines_with(out, "新品上市群: @赵总 任务 #1「供应商框架协议签字」待确认收到，已超过 24 小时未回应")
    assert len(note) == 1 and "没有可升级的上级" in note[0] and "孙九" not in note[0], note
    assert not lines_with(out, "的这件事已超过")


# --- what the leader an escalation reached can do ----------------------------------------------------

def test_the_leader_hands_an_escalated_risk_on_with_the_risk_command(make_harness) -> None:
    h: Harness = make_harness()
    h.run(f"{G} 张三: @bot 新建任务 物料采购 负责人 @王五 截止 12-20", f"{G} 王五: @bot 确认收到 #1",
          f"{G} 张三: @bot 风险 新增 描述 供应商交付延迟 可能性 高 影响 中 负责人 @李四")
    out = h.run("wait 1d2h")
    assert lines_with(out, "→ 陈七（私聊）: 李四 的这件事已超过 24 小时未回应")
    out = h.run("dm as 陈七: tap 转交")
    assert lines_with(out, "仅 陈七 可见: 请发送：风险 更新 #R1 负责人 @新负责人"), out
    out = h.run("dm as 陈七: 风险 更新 #R1 负责人 @赵六")
    assert lines_with(out, "→ 赵六（私聊）") and not lines_with(out, "不能"), out
    with h.db.transaction() as s:  # task #1 (王五's) is untouched
        assert s.scalar(select(Task.owner_id).where(Task.id == 1)) == s.scalar(
            select(User.id).where(User.name == "王五"))


def test_the_leader_hands_an_escalated_approval_step_to_someone_else(make_harness) -> None:
    h: Harness = make_harness()
    h.run(f"{G} 李四: @bot 申请 人力支持申请 支持部门=设计部 人数=1 技能要求=视觉 支持时间=12-20 用途=H5",
          "dm as 陈七: 同意 #A1")
    out = h.run("wait 1d2h")
    assert lines_with(out, "→ 赵总（私聊）: 周八 的这件事已超过 24 小时未回应")
    out = h.run("dm as 赵总: tap 转交")
    assert lines_with(out, "仅 赵总 可见: 请发送：转交 #A1 @新审批人 原因 …"), out
    out = h.run("dm as 赵总: 转交 #A1 @王五 原因 周八出差")
    assert lines_with(out, "→ 王五（私聊）: 赵总 将审批 #A1「人力支持申请」"), out
    assert lines_with(out, "→ 周八（私聊）: 赵总 已将审批 #A1「人力支持申请」中你的审批转交给 王五：周八出差"), out
    out = h.run("dm as 张三: 转交 #A1 @赵六 原因 x")  # not 王五's leader (nor an approver): refused
    assert lines_with(out, "轮到 王五 审批，你不能操作"), out
    out = h.run("dm as 王五: 同意 #A1")
    assert not lines_with(out, "不能") and not lines_with(h.run("wait 1d"), "周八 的这件事"), out


def test_a_help_request_escalated_has_nothing_to_reassign_on_its_card(make_harness) -> None:
    h: Harness = make_harness()
    h.run(f"{G} 张三: @bot 新建任务 物料采购 负责人 @王五 截止 12-20", f"{G} 王五: @bot 确认收到 #1",
          f"{G} 王五: @bot 求助 技术部 需要两名前端支援 #1")
    h.run("wait 1d2h")
    with h.db.transaction() as s:
        cards = [Message.from_json(m.payload).card for m in s.scalars(select(OutboxMessage).where(
            OutboxMessage.dedupe_key.like("escalate:help:%:boss")))]
    assert cards and all(len(c.buttons) == 1 for c in cards if c is not None), cards


# --- a task one assigns to oneself ------------------------------------------------------------------

def test_a_task_assigned_to_oneself_is_acknowledged_at_creation(make_harness) -> None:
    h: Harness = make_harness()
    out = h.run(f"{G} 张三: @bot 新建任务 自己的任务 负责人 @张三 截止 12-01 17:00")
    assert "[确认收到]" not in "\n".join(out) and not lines_with(out, "请确认收到")
    out = h.run("wait 1d2h")
    assert not lines_with(out, "请确认收到") and not lines_with(out, "待确认收到")
    assert lines_with(out, "→ 张三（私聊）: 任务 #1「自己的任务」已过截止时间")  # the deadline is still watched
    with h.db.transaction() as s:
        assert s.scalar(select(func.count()).select_from(Wait).where(Wait.kind == "assign")) == 0


def test_a_long_weekly_summary_lists_eight_of_each_and_says_how_many_more_on_every_platform(make_harness) -> None:
    """A platform cuts a long field wherever its limit falls; the overdue list must say it is not whole."""
    from collabbot.cards.render import render_message

    h: Harness = make_harness(start=datetime(2026, 11, 30, 9, 0, tzinfo=TZ))
    h.run(f"{G} 张三: @bot 绑定项目 新品上市 协同负责人 @张三 参与部门 市场部,技术部 开始 11-30 结束 12-31",
          *(f"{G} 张三: @bot 新建任务 物料{i:02d} 负责人 @李四 截止 12-01 12:00" for i in range(1, 13)))
    [overdue] = lines_with(h.run("wait 4d9h"), "已延期：#1 物料01（李四）；")  # Friday 12-04 18:00
    assert overdue.endswith("#8 物料08（李四）；…另有 4 项") and "#9 物料09" not in overdue
    with h.db.transaction() as s:
        [summary] = [Message.from_json(m.payload) for m in s.scalars(select(OutboxMessage).where(
            OutboxMessage.dedupe_key.like("summary:%")))]
    wecom = render_message("wecom", summary)  # nothing to tap: markdown, whose lines are not cut at 40 characters
    assert wecom["msgtype"] == "markdown" and "#8 物料08（李四）；…另有 4 项" in wecom["markdown"]["content"]
    dingtalk = json.dumps(render_message("dingtalk", summary), ensure_ascii=False)
    assert "另有 4 项" in dingtalk


def test_work_done_after_fridays_summary_is_in_the_next_and_a_late_note_goes_with_it(make_harness) -> None:
    """The summary covers from the previous one to now: nothing done on a Friday evening falls between two."""
    h: Harness = make_harness(start=datetime(2026, 11, 23, 9, 0, tzinfo=TZ))
    h.run(f"{G} 张三: @bot 绑定项目 新品上市 协同负责人 @张三 参与部门 市场部,技术部 开始 11-23 结束 12-31",
          f"{G} 张三: @bot 新建任务 接口开发 负责人 @李四 截止 11-27 18:00",
          f"{G} 张三: @bot 新建任务 周末值守 负责人 @赵六 截止 11-28 18:00", f"{G} 李四: @bot 确认收到 #1",
          f"{G} 赵六: @bot 确认收到 #2")
    h.clock.advance(timedelta(days=4, hours=7, minutes=50))  # Friday 11-27 16:50
    [due] = lines_with(h.run("wait 20m"), "一周内到期")  # the summary: #2 is due on Saturday
    assert "#2 周末值守 11-28 18:00" in due
    h.run(f"{G} 李四: @bot 完成 #1 交付物 https://x/1", f"{G} 张三: @bot 通过 #1")
    assert "将附在下周的周报里" in h.text(f"{G} 陈七: @bot 本周总结 接口联调完成，下周压测")
    h.clock.advance(timedelta(days=7) - timedelta(minutes=20))
    out = h.run("wait 20m")  # Friday 12-04
    assert lines_with(out, "本周完成：#1 接口开发") and lines_with(out, "技术部：接口联调完成，下周压测")


def test_a_wait_timed_by_rules_since_changed_is_retimed_not_escalated_early(db) -> None:
    """Nags turned off and the bot restarted: the wait stored for the first nag (11:00) must not bring the
    escalation forward to then, worded "24 小时"; it comes 24 hours after the assignment."""
    from dataclasses import replace

    from collabbot.bot.config import Config

    first = Harness(db)
    first.run(f"{G} 张三: @bot 新建任务 物料采购 负责人 @孙九 截止 12-10", "wait 30m")
    config = Config()
    restarted = Harness(db, replace(config, rules=replace(config.rules, nag_enabled=False)),
                        start=first.clock.now())
    out = restarted.run("wait 20h")
    assert not lines_with(out, "赵总（私聊）"), out
    out = restarted.run("wait 4h")
    escalation = lines_with(out, "→ 赵总（私聊）: 孙九 的这件事已超过 24 小时未回应")
    assert len(escalation) == 1 and escalation[0].startswith("[12-02 09:00]"), out


def test_an_urgent_task_handed_on_is_chased_on_the_urgent_rhythm(make_harness) -> None:
    """转交 of an unanswered urgent task: its new owner's 确认收到 is nagged within the hour, evening included,
    not two working hours later (Monday morning for a Friday hand-over)."""
    h: Harness = make_harness(start=datetime(2026, 12, 4, 16, 0, tzinfo=TZ))
    h.run(f"{G} 张三: @bot 紧急 客户投诉升级 负责人 @李四", "wait 10m", f"{G} 张三: @bot 转交 #1 @赵六")
    out = h.run("wait 70m")
    nags = lines_with(out, "@赵六 请确认收到任务 #1")
    assert nags and nags[0].startswith("[12-04 17:10]"), out


def test_a_reminder_that_comes_due_outside_working_time_waits_for_the_next_working_moment(make_harness) -> None:
    """Friday's summary is queued for 17:03; the process is down from 17:01 until 03:00 on Saturday. It goes
    out on Monday at 09:00, not at 03:00; a reply to someone typing at night still goes at once."""
    h: Harness = make_harness()
    h.run(f"{G} 张三: @bot 新建任务 物料采购 负责人 @李四 截止 12-20", f"{G} 李四: @bot 确认收到 #1",
          "clock 2026-12-04 17:00")
    out = h.run("clock 2026-12-05 03:00")
    assert not lines_with(out, "本周周报"), out
    assert lines_with(h.run(f"{G} 李四: @bot 进度 #1 30%"), "[12-05 03:00]")  # a reply is not held
    out = h.run("clock 2026-12-07 09:00")
    assert [line[:13] for line in lines_with(out, "本周周报如下")] == ["[12-07 09:00]"], out
    with h.db.transaction() as s:
        [row] = [r for r in s.scalars(select(OutboxMessage)) if r.dedupe_key.startswith("summary:")]
        assert row.status == "sent" and row.attempts == 1  # waiting was not an attempt


def test_a_daily_prompt_decided_during_lunch_goes_out_after_it(make_harness) -> None:
    h: Harness = make_harness()
    h.run(f"{G} 张三: @bot 新建任务 物料采购 负责人 @李四 截止 12-20", f"{G} 李四: @bot 开始 #1", "clock 2026-12-01 09:30")
    assert not lines_with(h.run("clock 2026-12-01 12:20"), "今日进度提醒")
    prompts = [line for line in h.run("clock 2026-12-01 13:30") if line.startswith("[") and "今日进度提醒" in line]
    assert prompts and all(p.startswith("[12-01 13:30]") for p in prompts)


def test_a_weekly_summary_missed_while_the_bot_was_down_goes_out_the_next_working_morning(make_harness) -> None:
    """Down from Friday 16:00 until Saturday 10:00: the week's summary goes out on Monday morning, once,
    rather than never; the next Friday's comes as usual."""
    h: Harness = make_harness(start=datetime(2026, 11, 27, 9, 0, tzinfo=TZ))
    h.run(f"{G} 张三: @bot 绑定项目 新品上市 协同负责人 @张三")
    assert lines_with(h.run("wait 8h10m"), "本周周报如下")  # 11-27: the bot sends summaries
    h.run(f"{G} 张三: @bot 新建任务 物料采购 负责人 @张三 截止 12-09", f"{G} 张三: @bot 完成 #1 交付物 https://x.example/a",
          "clock 2026-12-04 16:00")
    assert not lines_with(h.run("clock 2026-12-05 10:00"), "本周周报如下")  # not on Saturday
    out = h.run("clock 2026-12-07 09:10")
    assert [line[:10] for line in lines_with(out, "本周周报如下")] == ["[12-07 09:"], out
    out = h.run("wait 4d8h")
    assert [line[:10] for line in lines_with(out, "本周周报如下")] == ["[12-11 17:"], out


def test_a_note_filed_for_a_week_without_a_summary_comes_with_the_next_one(make_harness) -> None:
    """After Friday 02-13's summary a head files 本周总结 on the make-up Saturday; it is promised for next
    week's summary, but the Spring Festival week has none: it comes with 02-27's."""
    h: Harness = make_harness(start=datetime(2026, 2, 9, 9, 0, tzinfo=TZ))
    h.run(f"{G} 张三: @bot 绑定项目 新品上市 协同负责人 @张三", "wait 4d8h10m")
    saved = h.text("clock 2026-02-14 09:00", f"{G} 张三: @bot 本周总结 渠道签约完成 80%，节后启动物料")
    assert "将附在下周的周报里" in saved
    out = "\n".join(h.run("clock 2026-02-24 09:00", "wait 3d8h10m"))
    assert "本周周报如下" in out and "市场部：渠道签约完成 80%" in out
