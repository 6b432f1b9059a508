"""报表 and 导出 through the console platform: the card, the workbook read back with openpyxl, and
who may see which scope, on SQLite and PostgreSQL."""

from __future__ import annotations

import re
from datetime import datetime, timedelta
from pathlib import Path

import openpyxl
import pytest

from collabbot.bot.reports import export
from collabbot.cards import workbook

from .conftest import TZ

G = "in 新品上市群 as"
SETUP = (
    f"{G} 张三: @bot 绑定项目 新品上市 协同负责人 @张三 参与部门 市场部,技术部 开始 12-01 结束 12-31",
    f"{G} 张三: @bot 新建任务 活动H5开发 负责人 @李四 截止 12-02 18:00",
    f"{G} 李四: tap 确认收到",
    f"{G} 张三: @bot 新建任务 海报 负责人 @赵六 截止 12-03 12:00",
    f"{G} 张三: @bot 新建任务 文案 负责人 @吴十 截止 12-02 12:00",
    f"{G} 李四: @bot 进度 #1 50% 下一步 联调 问题 接口未就绪",
    f"{G} 李四: @bot 完成 #1 交付物 https://h5.example.com/x",
    f"{G} 张三: @bot 通过 #1",
    "wait 2d",
)


@pytest.fixture
def h(make_harness, tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setenv("COLLABBOT_EXPORT_DIR", str(tmp_path / "exports"))
    workbook.install()
    harness = make_harness(admins=("console:赵总",))
    harness.run(*SETUP)
    return harness


def test_the_group_report_card_shows_the_projects_figures(h) -> None:
    out = h.text(f"{G} 张三: @bot 报表")
    assert "报表 · 新品上市 · 2026-11-30~2026-12-06" in out
    assert "新建 3 · 完成 1（按原截止按时 1，延期后按时 0，逾期完成 0）· 逾期未完成 1" in out
    assert "技术部 ▓▓▓▓▓▓▓▓▓▓ 100%（1/1）" in out
    assert "市场部 1 件" in out  # 文案 (吴十, 市场部) is overdue
    assert "审批停留最久" not in out  # for admins only


def test_scopes_outside_the_group_go_privately_and_follow_the_visibility_rule(h) -> None:
    out = h.text(f"{G} 陈七: @bot 报表 部门 技术部 本月")
    assert "报表已私信发给你" in out and "报表 · 技术部 · 2026-12-01~2026-12-31" in out
    refused = h.text(f"{G} 李四: @bot 报表 部门 技术部")
    assert "你不能查看这个报表：只有该部门负责人和管理员可以" in refused
    assert "只有管理员可以" in h.text("dm as 李四: 报表 全部")
    assert "报表 · 全部" in h.text("dm as 赵总: 报表 全部 本季度")
    assert "报表 · 李四" in h.text("dm as 陈七: 报表 @李四")  # his head
    assert "你不能查看这个报表" in h.text("dm as 王五: 报表 @李四")
    assert "报表 · 王五" in h.text("dm as 王五: 报表")  # in private: oneself
    assert "看不懂时间范围「2026-13-01~2026-12-31」" in h.text("dm as 王五: 报表 2026-13-01~2026-12-31")
    assert "找不到部门「不存在部」" in h.text("dm as 赵总: 报表 部门 不存在部")
    # a department where the period goes, or after it: what to type instead
    for typed in ("报表 技术部", "报表 上周 部门 技术部"):
        assert "「技术部」是部门：范围写在时间前面，例如：报表 部门 技术部 本月" in h.text(f"dm as 陈七: {typed}")
    assert "超过一年" in h.text("dm as 王五: 报表 2026-01-01~2027-06-01")
    assert "报表 · 王五 · 2026-11-01~2026-11-30" in h.text("dm as 王五: 报表 2026-11")


def test_export_writes_a_typed_workbook(h) -> None:
    out = h.text(f"{G} 张三: @bot 导出")
    found = re.search(r"报表已导出：(\S+\.xlsx)", out)
    assert found, out
    assert Path(found[1]).stat().st_mode & 0o777 == 0o600 and Path(found[1]).parent.stat().st_mode & 0o077 == 0
    wb = openpyxl.load_workbook(found[1])
    assert wb.sheetnames == ["任务", "进度", "审批", "部门统计", "风险", "会议行动项", "收集"]
    tasks = wb["任务"]
    assert [c.value for c in tasks[1]] == ["任务名称", "负责人", "协作人", "截止时间", "交付物要求", "优先级",
                                           "依赖任务", "状态", "原截止时间"]
    assert tasks.max_row == 4 and tasks.freeze_panes == "A2" and tasks.auto_filter.ref == "A1:I4"
    assert tasks["A2"].value == "#1 活动H5开发" and tasks["B2"].value == "李四"
    assert isinstance(tasks["D2"].value, datetime) and tasks["D2"].value == datetime(2026, 12, 2, 18, 0)
    assert tasks.column_dimensions["A"].width >= 14  # "#1 活动H5开发" is 13 columns wide
    progress = wb["进度"]
    assert [c.value for c in progress[1]][:5] == ["子任务名称", "负责部门", "负责人", "当前状态", "完成比例"]
    row = next(r for r in progress.iter_rows(min_row=2) if r[0].value == "#1 活动H5开发")
    assert row[4].value == 1 and row[4].number_format == "0.0%"
    assert (row[5].value, row[6].value) == ("联调", "接口未就绪")
    depts = wb["部门统计"]
    rows = {r[0].value: [c.value for c in r] for r in depts.iter_rows(min_row=2)}
    assert rows["技术部"][1:4] == [1, 1, 1] and depts["D2"].number_format == "0.0%"
    assert rows["市场部"][5] == 1


def test_export_without_a_writer_is_refused_plainly(h) -> None:
    export._writer.clear()
    try:
        assert "这个安装没有导出功能" in h.text(f"{G} 张三: @bot 导出")
    finally:
        workbook.install()


def test_an_extension_shows_as_extended_and_keeps_the_original_deadline(h) -> None:
    h.run(f"{G} 赵六: @bot 申请 延期 #2 新截止日期=12-08 原因=缺图 补救措施=先出线框",
          "dm as 张三: 同意 #A1",
          "wait 1d",  # past the original deadline (12-03 12:00), before the extended one
          f"{G} 赵六: @bot 完成 #2 交付物 https://img.example.com/p",
          f"{G} 张三: @bot 通过 #2")
    out = h.text(f"{G} 张三: @bot 报表")
    assert "完成 2（按原截止按时 1，延期后按时 1，逾期完成 0）" in out
    found = re.search(r"报表已导出：(\S+\.xlsx)", h.text(f"{G} 张三: @bot 导出"))
    assert found
    tasks = openpyxl.load_workbook(found[1])["任务"]
    row = next(r for r in tasks.iter_rows(min_row=2) if r[0].value == "#2 海报")
    assert (row[3].value, row[8].value) == (datetime(2026, 12, 8, 18, 0), datetime(2026, 12, 3, 12, 0))
    assert row[7].value == "已完成"
    approvals = openpyxl.load_workbook(found[1])["审批"]
    assert approvals.max_row >= 2 and approvals["B2"].value == "延期申请"


def test_hostile_scopes_and_periods_get_a_plain_refusal(h) -> None:
    out = h.text("dm as 赵总: 报表 部门 " + "技" * 300)
    assert "找不到部门「" + "技" * 50 + "」" in out and "技" * 51 not in out
    assert "看不懂时间范围" in h.text("dm as 赵总: 报表 2026-01-01~2026-12-31;DROP TABLE tasks")
    assert "看不懂时间范围" in h.text("dm as 赵总: 报表 0000-01-01~9999-12-31")
    assert "找不到项目「<b>x</b>」" in h.text("dm as 赵总: 报表 项目 <b>x</b>")


def test_the_records_sheets_list_risks_meeting_actions_and_collections(h) -> None:
    from dataclasses import replace

    from sqlalchemy import select

    from collabbot.adapters.console.transcript import parse_line
    from collabbot.storage.models import Chat, CollectionRequest, CollectionTarget, Department, User

    h.run(f"{G} 王五: @bot 风险 新增 描述 供应商交付延迟 可能性 高 影响 中 应对 启用备选供应商 负责人 @李四",
          f"{G} 王五: @bot 风险 新增 海报印刷色差 可能性 低 影响 低")
    step = parse_line(f"{G} 张三: @bot 会议纪要")
    h.console.run(replace(step, text=(
        "@bot 会议纪要 主题 方案评审 时间 12-03 14:00 参与部门 市场部,技术部 摘要 比较方案 决议 采用方案B\n"
        "行动项 内容 完成H5改版 负责人 @李四 截止 12-10\n"
        "行动项 内容 准备物料清单 负责人 @王五 截止 12-08 18:00")))
    now = h.clock.now()
    with h.db.transaction() as s:  # a collection request: 市场部's head has submitted, 技术部's has not
        project_id = s.scalar(select(Chat.project_id).where(Chat.name == "新品上市群"))
        zhang, chen = (s.scalar(select(User).where(User.name == n)) for n in ("张三", "陈七"))
        market, tech = (s.scalar(select(Department.id).where(Department.name == n)) for n in ("市场部", "技术部"))
        c = CollectionRequest(project_id=project_id, title="月度经营数据", requester_id=zhang.id,
                              deadline=now + timedelta(days=1), status="open", created_at=now, updated_at=now)
        s.add(c)
        s.flush()
        s.add_all([CollectionTarget(collection_id=c.id, user_id=zhang.id, department_id=market, submitted_at=now,
                                    submitted_by_id=zhang.id, content="见附件", links=["https://x.example.com/a"]),
                   CollectionTarget(collection_id=c.id, user_id=chen.id, department_id=tech)])
    h.run("wait 1h")
    found = re.search(r"报表已导出：(\S+\.xlsx)", h.text(f"{G} 张三: @bot 导出"))
    assert found
    wb = openpyxl.load_workbook(found[1])
    risks = wb["风险"]
    assert [c.value for c in risks[1]] == ["编号", "项目", "风险描述", "可能性", "影响", "等级", "应对措施", "负责人",
                                           "状态", "登记时间", "关闭时间"]
    assert risks.max_row == 3 and risks.freeze_panes == "A2" and risks.auto_filter.ref.startswith("A1:K")
    first = [c.value for c in risks[2]]
    assert first[:9] == ["#R1", "新品上市", "供应商交付延迟", "高", "中", "高", "启用备选供应商", "李四", "未关闭"]
    assert isinstance(first[9], datetime) and first[10] is None
    assert [c.value for c in risks[3]][5] == "低"
    actions = wb["会议行动项"]
    assert [c.value for c in actions[1]] == ["会议", "会议时间", "行动项", "负责人", "截止时间", "状态", "完成时间"]
    rows = [[c.value for c in r] for r in actions.iter_rows(min_row=2)]
    assert [(r[0], r[3]) for r in rows] == [("#M1 方案评审", "李四"), ("#M1 方案评审", "王五")]
    assert rows[0][1] == datetime(2026, 12, 3, 14, 0) and rows[1][4] == datetime(2026, 12, 8, 18, 0)
    assert rows[0][2].endswith("完成H5改版") and rows[0][6] is None
    collections = wb["收集"]
    rows = [[c.value for c in r] for r in collections.iter_rows(min_row=2)]
    assert [(r[0], r[3], r[4], r[5]) for r in rows] == [("#C1 月度经营数据", "进行中", "张三", "市场部"),
                                                        ("#C1 月度经营数据", "进行中", "陈七", "技术部")]
    # what was submitted is the requester's alone: not in a workbook the whole group gets
    assert isinstance(rows[0][6], datetime) and rows[0][7] == "（已提交，内容仅发起人可见）" and rows[1][6] is None

    def submitted(line: str) -> list[object]:
        found = re.search(r"报表已导出：(\S+\.xlsx)", h.text(line))
        assert found
        return [r[7].value for r in openpyxl.load_workbook(found[1])["收集"].iter_rows(min_row=2)]

    assert submitted("dm as 张三: 导出 项目 新品上市") == ["见附件 https://x.example.com/a", None]  # the requester
    assert submitted("dm as 李四: 导出 项目 新品上市") == ["（已提交，内容仅发起人可见）", None]  # a member
    # a department's workbook keeps its own: 技术部 sees 李四's risk, his action and its head's request
    found = re.search(r"报表已导出：(\S+\.xlsx)", h.text("dm as 陈七: 导出 部门 技术部"))
    assert found
    wb = openpyxl.load_workbook(found[1])
    assert [r[0].value for r in wb["风险"].iter_rows(min_row=2)] == ["#R1"]
    assert [r[3].value for r in wb["会议行动项"].iter_rows(min_row=2)] == ["李四"]
    assert [r[4].value for r in wb["收集"].iter_rows(min_row=2)] == ["陈七"]


def test_a_cancelled_or_reassigned_task_is_no_response_of_its_owner(make_harness) -> None:
    """Closing a wait because nobody needs the answer any more (the task cancelled, or given to someone else)
    is not the person answering: the response times leave those waits out, rather than count hours of
    silence as a quick or a slow answer."""
    h = make_harness()
    h.run(f"{G} 张三: @bot 绑定项目 新品上市 协同负责人 @张三",
          f"{G} 张三: @bot 新建任务 甲 负责人 @李四 截止 12-20",
          f"{G} 张三: @bot 新建任务 乙 负责人 @李四 截止 12-20",
          f"{G} 张三: @bot 新建任务 丙 负责人 @李四 截止 12-20",
          "wait 30m", f"{G} 李四: @bot 确认收到 #3",
          "wait 5h", f"{G} 张三: @bot 取消任务 #1", f"{G} 张三: @bot 转交 #2 @赵六")
    out = h.text(f"{G} 张三: @bot 报表")
    assert re.search(r"指派：中位 0\.5h · P90 0\.5h · 2小时内 100%（1）", out), out  # only 丙's answer


def test_the_approval_sheet_names_stage_states_in_the_readers_language(h) -> None:
    h.run(f"{G} 赵六: @bot 申请 延期 #2 新截止日期=12-10 原因=缺素材 补救措施=加班", "dm as 张三: 同意 #A1")
    found = re.search(r"报表已导出：(\S+\.xlsx)", h.text(f"{G} 张三: @bot 导出"))
    assert found
    sheet = openpyxl.load_workbook(found[1])["审批"]
    assert [c.value for c in sheet[1]][6] == "阶段状态"
    assert {row[6].value for row in sheet.iter_rows(min_row=2)} == {"已通过"}, [c.value for c in sheet[2]]


def test_a_project_named_in_private_is_the_newest_of_that_name_as_for_the_records(make_harness) -> None:
    """A group's next project may repeat its closed predecessor's name: 报表 项目 takes the one in use."""
    h = make_harness(start=datetime(2026, 11, 2, 9, 0, tzinfo=TZ))
    h.run(f"{G} 张三: @bot 绑定项目 新品上市 协同负责人 @张三 参与部门 市场部,技术部 开始 11-02 结束 12-31",
          *(f"{G} 张三: @bot 新建任务 一期{i} 负责人 @李四 截止 11-10" for i in (1, 2, 3)),
          *(line for i in (1, 2, 3) for line in (f"{G} 李四: @bot 完成 #{i} 交付物 https://x/{i}",
                                                 f"{G} 张三: @bot 通过 #{i}")),
          f"{G} 张三: @bot 结项",
          f"{G} 张三: @bot 绑定项目 新品上市 协同负责人 @张三 参与部门 市场部 开始 11-20 结束 12-31",
          f"{G} 张三: @bot 新建任务 二期任务 负责人 @李四 截止 11-25")
    assert "新建 1 ·" in h.text("dm as 张三: 报表 项目 新品上市 本月")


def test_a_task_handed_in_by_its_deadline_is_not_overdue_while_its_reviewer_decides(make_harness) -> None:
    h = make_harness(start=datetime(2026, 11, 30, 9, 0, tzinfo=TZ))
    h.run(f"{G} 张三: @bot 绑定项目 新品上市 协同负责人 @张三 参与部门 市场部,技术部 开始 11-23 结束 12-31",
          f"{G} 张三: @bot 新建任务 接口 负责人 @李四 截止 12-01 18:00", f"{G} 李四: @bot 确认收到 #1",
          "clock 2026-12-01 16:00", f"{G} 李四: @bot 完成 #1 交付物 https://x", "clock 2026-12-02 10:00")
    listed = h.text(f"{G} 张三: @bot 任务列表")
    assert "#1 接口：待审核｜" in listed and "已延期" not in listed
    assert "逾期未完成 0" in h.text(f"{G} 张三: @bot 报表")
    # returned, it is the owner's again, and late
    h.run(f"{G} 张三: @bot 退回 #1 原因 缺少接口文档")
    assert "#1 接口：已延期 · 进行中｜" in h.text(f"{G} 张三: @bot 任务列表")


def test_progress_discipline_counts_the_tasks_the_daily_prompt_asks_about(make_harness) -> None:
    """A task waiting for its predecessor (acknowledged, not started) is not asked for progress, and does not
    lower the share; a task handed in for review neither."""
    h = make_harness(start=datetime(2026, 11, 30, 9, 0, tzinfo=TZ))
    h.run(f"{G} 张三: @bot 绑定项目 新品上市 协同负责人 @张三 参与部门 市场部,技术部 开始 11-23 结束 12-31",
          f"{G} 张三: @bot 新建任务 接口 负责人 @李四 截止 12-20", f"{G} 张三: @bot 新建任务 联调 负责人 @赵六 截止 12-20",
          f"{G} 张三: @bot 新建任务 文档 负责人 @李四 截止 12-20", f"{G} 张三: @bot 依赖 #2 #1",
          f"{G} 李四: @bot 确认收到 #1", f"{G} 李四: @bot 开始 #1", f"{G} 赵六: @bot 确认收到 #2",
          f"{G} 李四: @bot 开始 #3", f"{G} 李四: @bot 完成 #3 交付物 https://x/3")
    for day in ("11-30", "12-01", "12-02", "12-03"):
        h.run(f"clock 2026-{day} 10:30", f"{G} 李四: @bot 进度 #1 20%")
    h.run("clock 2026-12-04 09:00")
    assert "进度纪律（在办任务每个工作日有更新的比例）：100%" in h.text(f"{G} 张三: @bot 报表")


def test_an_approval_stuck_for_weeks_stays_on_every_weeks_sheet_until_decided(make_harness, tmp_path: Path,
                                                                              monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("COLLABBOT_EXPORT_DIR", str(tmp_path / "exports"))
    workbook.install()
    h = make_harness(start=datetime(2026, 11, 23, 9, 0, tzinfo=TZ))
    h.run(f"{G} 张三: @bot 绑定项目 新品上市 协同负责人 @张三 参与部门 市场部,技术部 开始 11-23 结束 12-31",
          f"{G} 吴十: @bot 申请 市场活动预算审批 活动方案=快闪店 预算金额=5万 预算明细=场地3万 预期效果=会员5000 "
          "协作部门=技术部",
          "clock 2026-12-01 10:00")

    def requests(typed: str) -> set[str]:
        found = re.search(r"报表已导出：(\S+\.xlsx)", h.text(f"{G} 张三: @bot {typed}"))
        assert found
        return {row[0].value for row in openpyxl.load_workbook(found[1])["审批"].iter_rows(min_row=2)}

    assert requests("导出") == {"A1"} and requests("导出 上周") == {"A1"}  # filed last week, still waiting
