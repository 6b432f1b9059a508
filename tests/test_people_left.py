"""People who leave, on SQLite and PostgreSQL: a complete org sync that no longer lists someone marks them as
left and names what they still hold; the bot stops chasing them, hands their open waits to their leader at
the next sweep, refuses them as owners and approvers, and still shows their name on their past work."""

from __future__ import annotations

import subprocess
import sys
from dataclasses import replace
from pathlib import Path

from sqlalchemy import select

from collabbot.bot.org import Org, OrgPerson, apply_org
from collabbot.storage.models import Identity, OutboxMessage, Task, User

from .conftest import Harness
from .fake_feishu import ThreadedFake

G = "in 新品上市群 as"
BIND = f"{G} 张三: @bot 绑定项目 新品上市 协同负责人 @张三"
BUDGET = "申请 市场活动预算审批 活动方案=快闪店 预算金额=5万 预算明细=场地 预期效果=会员 协作部门=技术部,设计部"


def without(org: Org, *names: str, complete: bool = True) -> Org:
    """The org as a sync shows it once `names` have left: gone from the people, the heads and the supervisors."""
    people = tuple(replace(p, supervisor="" if p.supervisor in names else p.supervisor)
                   for p in org.people if p.name not in names)
    heads = {d: "" if head in names else head for d, head in org.departments.items()}
    return replace(org, people=people, departments=heads, complete=complete)


def sync(h: Harness, org: Org, platform: str = "console") -> list[str]:
    with h.db.transaction() as s:
        return apply_org(s, org, h.clock.now(), platform=platform)


def user(h: Harness, name: str) -> User:
    with h.db.transaction() as s:
        found = s.scalars(select(User).where(User.name == name).order_by(User.id)).first()
        assert found is not None
        s.expunge(found)
        return found


def test_a_complete_sync_marks_who_it_no_longer_lists_and_names_what_they_hold(harness: Harness) -> None:
    h = harness
    h.run(BIND, f"{G} 张三: @bot 新建任务 物料采购 负责人 @李四 截止 12-10",
          f"{G} 李四: @bot 新建任务 设计稿 负责人 @王五 截止 12-09", f"{G} 王五: @bot 确认收到 #2",
          f"{G} 王五: @bot 完成 #2 交付物 https://x.example/a", f"{G} 张三: @bot 求助 @李四 需要接口文档",
          f"{G} 吴十: @bot {BUDGET}", "dm as 张三: 同意 #A1", "dm as 陈七: 转交 #A1 @李四 原因 出差期间代批")
    synced = h.clock.now()
    assert sync(h, without(h.org, "李四")) == ["person left: 李四 — open: 1 task(s) #1; 1 review(s) #2; "
                                                  "1 approval step(s) #A1; 1 other request(s) #H1"]
    said = h.text("wait 1m")  # what waited on him goes to his supervisor now: the approval step too
    assert "等待事项：审批 #A1「市场活动预算审批」（会签）待审批" in said and "李四 已离职：求助 #H1 待答复" in said, said
    assert sync(h, without(h.org, "李四")) == []  # the same org again changes nothing
    li = user(h, "李四")
    assert li.left_at == synced and li.department_id is not None and li.supervisor_id is not None
    with h.db.transaction() as s:
        assert s.scalar(select(Identity.left_at).where(Identity.user_id == li.id)) == synced
    assert sync(h, without(h.org, "王五", complete=True)) == ["person back: 李四", "person left: 王五 — open: 1 task(s) #2"]
    assert user(h, "李四").left_at is None and user(h, "王五").left_at is not None


def test_only_a_complete_read_of_that_platform_marks_anyone(harness: Harness) -> None:
    h = harness
    assert sync(h, without(h.org, "李四", complete=False)) == []  # a sub-tree or an unfinished read
    assert sync(h, Org({}, (), complete=True)) == []  # an empty read is the read's fault: nobody left
    # 李四 is linked to Feishu by the org file; a Feishu sync that lists only 张三 covers his Feishu id alone
    linked = replace(h.org, people=tuple(replace(p, ids={"feishu": "ou_li"}) if p.name == "李四" else p
                                         for p in h.org.people))
    sync(h, linked)
    feishu = Org({"市场部": ""}, (OrgPerson("张三", "市场部", "", {"feishu": "ou_zhang"}),), complete=True)
    assert not [c for c in sync(h, feishu, "feishu") if c.startswith("person left")]
    assert all(user(h, name).left_at is None for name in ("李四", "赵六", "陈七"))  # console-only people untouched
    with h.db.transaction() as s:
        assert s.scalar(select(Identity.left_at).where(Identity.platform_user_id == "ou_li")) is not None
    # … and once the org file drops him too, every identity he has is gone: he has left
    assert sync(h, without(linked, "李四"))[-1].startswith("person left: 李四")


def test_who_left_is_chased_no_more_and_their_waits_go_to_their_leader_at_the_next_sweep(harness: Harness) -> None:
    h = harness
    h.run(BIND, f"{G} 张三: @bot 新建任务 物料采购 负责人 @李四 截止 12-02",
          f"{G} 张三: @bot 新建任务 接口开发 负责人 @李四 截止 12-10", f"{G} 李四: @bot 确认收到 #2",
          f"{G} 李四: @bot 开始 #2", "wait 30m")
    sync(h, without(h.org, "李四"))
    now = h.run("wait 1m")  # the next sweep: not two working hours of nags, nor 24 hours
    said = "\n".join(now)
    assert "[12-01 09:30] → 陈七（私聊）: 李四 已离职（组织同步里已没有 TA），TA 的这件事请你转交或处理：" in said, said
    assert "[12-01 09:30] → 新品上市群: 李四 已离职：任务 #1「物料采购」待确认收到，已请 陈七 转交。" in said
    assert "升级提醒：李四 【已离职】" in said and "[再次提醒]" not in said and "[转交]" in said
    later = h.run("wait 3d")
    text = "\n".join(now + later)
    assert "@李四" not in text and "→ 李四（私聊）" not in text, text  # no nag, prompt, overdue warning or @mention
    assert "#2 接口开发 0% 李四（已离职）" in text  # the group's daily prompt still lists the work, unmentioned
    assert "延期预警：任务 #1「物料采购」（负责人 李四）" in text  # the coordinator hears of the overdue task
    assert "李四 已离职：任务 #1「物料采购」延期未说明原因，已请 陈七 转交。" in text  # and his leader at once
    left_at = user(h, "李四").left_at
    with h.db.transaction() as s:
        assert not s.scalars(select(OutboxMessage.dedupe_key).where(
            OutboxMessage.target_name == "李四", OutboxMessage.created_at >= left_at)).all()


def test_work_cannot_be_given_to_someone_who_left(harness: Harness) -> None:
    h = harness
    h.run(BIND, f"{G} 张三: @bot 新建任务 物料采购 负责人 @赵六")
    h.run(f"{G} 吴十: @bot {BUDGET}", "dm as 张三: 同意 #A1")
    sync(h, without(h.org, "李四"))
    refusal = "李四 已离职（组织同步里已没有 TA），不能再接新的工作或审批。请改 @ 一位在职的同事；TA 手上的事用 转交 #编号 @同事 移交。"
    for line in (f"{G} 张三: @bot 新建任务 新任务 负责人：李四 截止 12-11",  # typed
                 f"{G} 张三: @bot 新建任务 新任务 负责人 @李四 截止 12-11",  # mentioned
                 f"{G} 张三: @bot 子任务 #1 前端 负责人 @李四",
                 f"{G} 张三: @bot 转交 #1 @李四 原因 换人",
                 "dm as 陈七: 转交 #A1 @李四 原因 出差",
                 f"{G} 张三: @bot 求助 @李四 需要支援"):
        assert refusal in h.text(line), line
    with h.db.transaction() as s:
        assert [t.owner.name for t in s.scalars(select(Task))] == ["赵六"]
    # a newcomer who shares the leaver's name is the one a typed name finds
    sync(h, Org({"技术部": ""}, (OrgPerson("李四", "技术部", "", {"feishu": "ou_li2"}),)), "feishu")
    assert "任务 #2" in h.text(f"{G} 张三: @bot 新建任务 新任务 负责人：李四 截止 12-11")


def test_the_refusal_in_english(make_harness) -> None:
    h = make_harness(language="en")
    h.run(BIND)
    sync(h, without(h.org, "李四"))
    assert "李四 has left (no longer in the synced org) and cannot take new work or approvals. @mention a current " \
           "colleague instead" in h.text(f"{G} 张三: @bot task new X owner @李四 due 12-11")


def test_their_past_work_still_shows_their_name(harness: Harness) -> None:
    h = harness
    h.run(BIND, f"{G} 张三: @bot 新建任务 物料采购 负责人 @李四 截止 12-10", f"{G} 李四: @bot 确认收到 #1")
    sync(h, without(h.org, "李四"))
    assert "负责人：李四" in h.text("dm as 张三: 任务 #1")
    assert "李四" in h.text("dm as 张三: 操作记录 #1")
    assert "李四" in h.text(f"{G} 张三: @bot 任务列表")


def test_org_sync_and_org_load_print_who_left(tmp_path: Path) -> None:
    def person(oid: str, name: str, leader: str = "") -> dict:
        return {"open_id": oid, "name": name, "department_ids": ["od-tech"], "leader_user_id": leader,
                "status": {"is_resigned": False, "is_activated": True}}

    with ThreadedFake() as fake:
        fake.departments = [{"open_department_id": "od-tech", "name": "技术部", "parent_department_id": "0",
                             "leader_user_id": "ou_chen", "status": {"is_deleted": False}}]
        fake.users = [person("ou_chen", "陈七"), person("ou_li", "李四", "ou_chen")]
        config = tmp_path / "c.toml"
        config.write_text(f'[database]\nurl = "sqlite:///{tmp_path / "bot.db"}"\n[feishu]\napp_id = "cli_test"\n'
                          f'app_secret = "test-secret"\nverification_token = "t"\nbase_url = "{fake.url}"\n',
                          encoding="utf-8")
        command = [sys.executable, "-m", "collabbot.adapters.server", "--config", str(config), "org", "sync",
                   "--platform", "feishu"]

        def run() -> str:
            done = subprocess.run(command, capture_output=True, text=True, timeout=60, check=False)
            assert done.returncode == 0, done.stderr
            return done.stdout

        run()
        fake.users = fake.users[:1]
        assert "person left: 李四 — nothing open\n" in run()
        assert "; 0 change(s)" in run()
        fake.users = [*fake.users, person("ou_li", "李四", "ou_chen")]
        assert "person back: 李四" in run()
    org = tmp_path / "org.toml"
    org.write_text('[[people]]\nname = "王五"\n[[people]]\nname = "赵六"\n', encoding="utf-8")
    load = [sys.executable, "-m", "collabbot.adapters.server", "org", "load", str(org), "--db",
            f"sqlite:///{tmp_path / 'o.db'}"]
    subprocess.run(load, check=True, capture_output=True, timeout=60)
    org.write_text('[[people]]\nname = "王五"\n', encoding="utf-8")
    dry = subprocess.run([*load, "--dry-run"], capture_output=True, text=True, timeout=60, check=False)
    assert "would change: person left: 赵六 — nothing open" in dry.stdout, dry.stderr


def test_a_typed_name_two_colleagues_share_asks_for_an_at_mention(harness: Harness) -> None:
    h = harness
    h.run(BIND)
    sync(h, Org({"设计部": ""}, (OrgPerson("李四", "设计部", "", {"feishu": "ou_li2"}),)), "feishu")
    said = h.text(f"{G} 张三: @bot 新建任务 新任务 负责人：李四 截止 12-11")
    assert "有 2 位同事叫 李四（技术部、设计部），请用 @ 选择你要找的那一位。" in said, said
    with h.db.transaction() as s:
        assert s.scalar(select(Task)) is None
    assert "任务 #1" in h.text(f"{G} 张三: @bot 新建任务 新任务 负责人 @李四 截止 12-11")  # the console's @ is exact


def test_a_new_department_head_takes_over_the_part_the_old_head_holds(harness: Harness) -> None:
    """A step filed for 技术部's head is 陈七's; once a sync makes 钱总 the head, 钱总 finds it in 待我审批 and
    decides it, taking the part over (its trail says so), and 陈七 is chased for it no more."""
    h = harness
    h.run(BIND, f"{G} 李四: @bot 申请 人力支持申请 支持部门=技术部 人数=1 技能要求=前端 支持时间=下周 用途=活动H5")
    assert "#A1" in h.text("dm as 陈七: 待我审批")
    heads = replace(h.org, departments={**h.org.departments, "技术部": "钱总"})
    assert "head of 技术部: 钱总" in sync(h, heads)
    assert "#A1" in h.text("dm as 钱总: 待我审批")
    said = h.text("dm as 钱总: 同意 #A1")
    assert "不是你" not in said and "#A1" in said, said
    with h.db.transaction() as s:
        from collabbot.storage.models import ApprovalApprover, AuditEntry, Wait
        chen = s.scalar(select(User.id).where(User.name == "陈七"))
        assert s.scalar(select(Wait.id).where(Wait.person_id == chen, Wait.answered_at.is_(None))) is None
        assert s.scalar(select(ApprovalApprover.note).where(ApprovalApprover.user_id == chen)).startswith("head_changed")
        assert s.scalar(select(AuditEntry.id).where(AuditEntry.action == "approval.head_takeover")) is not None
    assert "#A1" not in h.text("dm as 孙九: 待我审批")  # a head of another department takes over nothing
