"""What employees type on phones, read as they meant it, and told what concerns them (both databases)."""

from __future__ import annotations

from .conftest import Harness

G = "in 新品上市群 as"
D = "in 双十二大促群 as"


def lines_with(out: list[str], needle: str) -> list[str]:
    return [line for line in out if needle in line]


def test_a_subtask_typed_in_another_projects_group_lives_in_its_own_projects_group(make_harness) -> None:
    h: Harness = make_harness()
    h.run(f"{G} 张三: @bot 新建任务 海报 负责人 @李四 截止 12-10", f"{G} 李四: @bot 确认收到 #1",
          f"{D} 张三: @bot 绑定项目 双十二大促 协同负责人 @张三")
    out = h.run(f"{D} 李四: @bot 子任务 #1 切图 负责人 @赵六 截止 12-08")
    assert lines_with(out, "→ 新品上市群: 已为 #1 拆分子任务 #2「切图」")  # where the project's people are
    assert lines_with(out, "→ 双十二大促群: 已为 #1 拆分子任务 #2「切图」")  # and an answer where it was typed
    out = h.run("wait 2h")
    assert lines_with(out, "→ 新品上市群: @赵六 请确认收到任务 #2") and not lines_with(out, "→ 双十二大促群"), out


def test_a_name_inside_a_comment_or_an_answer_stays_in_it(make_harness) -> None:
    h: Harness = make_harness()
    h.run(f"{G} 张三: @bot 新建任务 海报 负责人 @王五 截止 12-10")
    out = h.run(f"{G} 张三: @bot 评论 #1 需要，找 @李四 要")
    [line] = lines_with(out, "#1 评论：需要，找 @李四 要")
    assert line.count("李四") == 1, line  # mentioned where the name stands, not a second time after the text
    out = h.run(f"{G} 张三: @bot 评论 #1 @王五 请看一下设计稿")  # whom it is addressed to is not part of it
    assert lines_with(out, "#1 评论：请看一下设计稿 @王五"), out
    h.run(f"{G} 王五: @bot 求助 技术部 需要接口")
    out = h.run(f"{G} 陈七: @bot 答复 #H1 已安排 @李四 支援")
    assert lines_with(out, "→ 王五（私聊）: 你的求助 #H1 已由 陈七 处理：已安排 @李四 支援"), out
    assert lines_with(out, "→ 李四（私聊）: 陈七 在求助 #H1 的答复中安排了你：已安排 @李四 支援"), out


def test_the_owner_hears_a_cancellation_or_a_reassignment_and_why(make_harness) -> None:
    h: Harness = make_harness()
    h.run(f"{G} 张三: @bot 新建任务 海报 负责人 @王五 截止 12-10", f"{G} 张三: @bot 新建任务 物料 负责人 @王五 截止 12-10")
    out = h.run(f"{G} 张三: @bot 转交 #1 @赵六 原因 王五请假")
    assert lines_with(out, "→ 新品上市群: 任务 #1 已转交给 @赵六（原负责人 王五）原因：王五请假"), out
    assert lines_with(out, "→ 王五（私聊）: 张三 已将任务 #1「海报」转交给 赵六，无需你再处理。原因：王五请假"), out
    out = h.run(f"{G} 张三: @bot 取消任务 #2 原因 需求变更")
    assert lines_with(out, "→ 新品上市群: 任务 #2 已取消。原因：需求变更"), out
    assert lines_with(out, "→ 王五（私聊）: 张三 取消了任务 #2「物料」，无需再处理。原因：需求变更"), out


def test_a_task_number_without_its_hash_is_answered_with_the_command_they_typed(make_harness) -> None:
    h: Harness = make_harness()
    h.run(f"{G} 张三: @bot 新建任务 海报 负责人 @李四 截止 12-10")
    assert lines_with(h.run(f"{G} 李四: @bot 确认收到 1"), "任务编号前要加 #，例如：确认收到 #1")
    assert lines_with(h.run(f"{G} 李四: @bot 开始"), "缺少任务编号。例如：开始 #12")
    out = h.run(f"{G} 李四: @bot 确认收到 ＃１。", f"{G} 李四: @bot 进度 #1 30 完成 初稿")
    assert lines_with(out, "已确认收到任务 #1") and lines_with(out, "任务 #1 进度已更新：30%"), out
    card = "\n".join(h.run("dm as 李四: 任务 #1"))
    assert "已完成：初稿" in card and "更新进度 30%" in card, card


def test_a_comment_typed_privately_without_a_name_reaches_the_owner(make_harness) -> None:
    h: Harness = make_harness()
    h.run(f"{G} 张三: @bot 新建任务 海报 负责人 @王五 截止 12-10")
    out = h.run("dm as 张三: 评论 #1 请尽快")
    assert lines_with(out, "→ 王五（私聊）: 张三 ") and lines_with(out, "请尽快"), out
    out = h.run("dm as 王五: 评论 #1 明天给")  # the owner's own comment: the one who asked for it hears it
    assert lines_with(out, "→ 张三（私聊）: 王五 "), out


def test_two_owners_are_answered_with_where_the_second_goes(make_harness) -> None:
    h: Harness = make_harness()
    out = h.run(f"{G} 张三: @bot 新建任务 A13 负责人 @李四 @王五 截止 12-10")
    assert lines_with(out, "一个任务只有一个负责人：负责人 @李四，其他人请写在协作里：协作 @王五"), out


def test_a_private_task_without_its_project_is_answered_with_how_to_name_it(make_harness) -> None:
    h: Harness = make_harness()
    out = h.run("dm as 张三: 新建任务 竞品调研 负责人 @吴十 截止 12-10")
    assert lines_with(out, "私聊里请写明项目，例如：新建任务 竞品调研 负责人 @吴十 截止 12-10 项目 项目名"), out
    assert not lines_with(out, "本群")


def test_a_project_named_in_another_projects_group_is_the_one_used(make_harness) -> None:
    h: Harness = make_harness()
    h.run(f"{G} 张三: @bot 绑定项目 新品上市 协同负责人 @张三", f"{D} 张三: @bot 绑定项目 双十二大促 协同负责人 @张三")
    out = h.run(f"{D} 张三: @bot 新建任务 新品海报 负责人 @李四 截止 12-10 项目 新品上市")
    card = "\n".join(out)
    assert "项目：新品上市" in card and lines_with(out, "→ 新品上市群: 已创建任务 #1「新品海报」"), card
    assert lines_with(h.run(f"{D} 张三: @bot 新建任务 B 负责人 @李四 截止 12-10 项目 没有的项目"), "找不到项目「没有的项目」")


def test_a_help_request_may_name_its_department_with_a_colon(make_harness) -> None:
    h: Harness = make_harness()
    out = h.run(f"{G} 王五: @bot 求助 技术部：需要接口文档")
    assert lines_with(out, "→ 陈七（私聊）: 王五 向你求助 #H1：需要接口文档"), out


def test_a_subtask_takes_a_date_ending_its_text_and_says_when_it_takes_the_parents(make_harness) -> None:
    h: Harness = make_harness()
    h.run(f"{G} 张三: @bot 新建任务 海报 负责人 @李四 截止 12-10", f"{G} 李四: @bot 确认收到 #1")
    out = h.run(f"{G} 李四: @bot 拆分 #1 后端接口 @赵六 周五")
    assert lines_with(out, "已为 #1 拆分子任务 #2「后端接口」，负责人 @赵六"), out
    assert "截止：12-04 18:00" in "\n".join(out)
    out = h.run(f"{G} 李四: @bot 拆分 #1 切图 @赵六")
    assert lines_with(out, "已为 #1 拆分子任务 #3「切图」（截止沿用 #1：12-10 18:00），负责人 @赵六"), out
