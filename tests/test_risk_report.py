"""The monthly 协同风险报告 through the console on SQLite and PostgreSQL: on the first working day of the month
(not on the 1st when that is a Sunday), once, to the project's coordinator and the heads involved, with
the month's new and closed risks, the open ones and the overdue responses, as the register stands then."""

from __future__ import annotations

from datetime import datetime

from collabbot.storage.models import AuditEntry, OutboxMessage
from tests.conftest import TZ

G = "in 新品上市群 as"


def _reports(h) -> list[OutboxMessage]:
    with h.db.transaction() as s:
        rows = s.query(OutboxMessage).filter(OutboxMessage.dedupe_key.like("riskreport:%")).order_by(OutboxMessage.id).all()
        s.expunge_all()
        return rows


def test_the_monthly_risk_report_on_the_first_working_day_once(make_harness) -> None:
    h = make_harness(start=datetime(2026, 10, 20, 9, 0, tzinfo=TZ))
    h.run(f"{G} 张三: @bot 绑定项目 新品上市 协同负责人 @张三 参与部门 市场部,设计部",
          f"{G} 王五: @bot 风险 新增 描述 供应商交付延迟 可能性 高 影响 中 负责人 @李四",  # 李四 never answers
          f"{G} 王五: @bot 风险 新增 海报印刷色差 可能性 低 影响 低 应对 换印刷厂",
          f"{G} 王五: @bot 风险 关闭 #R2")
    h.run("wait 12d")  # Sunday 11-01 09:00: the 1st is no working day
    h.run("wait 1d")  # Monday 11-02 09:00: before the morning moment
    assert _reports(h) == []
    out = h.text("wait 1h")  # 11-02 10:00
    assert "协同风险报告 · 新品上市 · 2026-10" in out and "未关闭 1 · 逾期 1" in out and "上月新增 2" in out and "上月关闭 1" in out and "应对逾期 1" in out
    assert "#R1 供应商交付延迟（高，李四）" in out and "#R2 海报印刷色差" in out
    rows = _reports(h)
    # the coordinator (张三), the heads of the project's departments (市场部 张三, 设计部 周八) and of the
    # risk owner's (技术部 陈七), each once, privately
    assert sorted(r.target_name for r in rows) == ["周八", "张三", "陈七"]
    assert all(r.target_kind == "user" for r in rows)
    h.run("wait 3d")
    assert len(_reports(h)) == 3  # once a month, whatever the sweeps
    with h.db.transaction() as s:
        audit = s.query(AuditEntry).filter(AuditEntry.action == "rule.risk_report").one()
        assert audit.after == {"month": "2026-10", "new": 2, "closed": 1, "open": 1, "overdue": 1}
    # December's report (for November): the open risk again, nothing new; R1 answered meanwhile is no longer overdue
    h.run(f"{G} 李四: @bot 风险 更新 #R1 可能性 低 应对 已签备选供应商")
    december = h.text("wait 26d")  # to 12-01 10:00 (a Tuesday)
    assert "协同风险报告 · 新品上市 · 2026-11" in december and "未关闭 1 · 逾期 0" in december and "上月新增 0" in december
    assert len(_reports(h)) == 6


def test_a_project_without_risks_gets_no_report(make_harness) -> None:
    h = make_harness(start=datetime(2026, 10, 30, 9, 0, tzinfo=TZ))
    h.run(f"{G} 张三: @bot 绑定项目 新品上市 协同负责人 @张三 参与部门 市场部", f"{G} 张三: @bot 新建任务 海报 负责人 @李四")
    h.run("wait 4d")
    assert _reports(h) == []
    with h.db.transaction() as s:  # decided: the month's job ran, with nothing to say
        assert s.query(AuditEntry).filter(AuditEntry.action == "rule.risk_report").count() == 0
