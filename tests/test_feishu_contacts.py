"""`collabbot org sync` from Feishu's contact API (the fake, paging two items at a time): idempotent."""

from __future__ import annotations

import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path

import pytest
from sqlalchemy import select

from collabbot.adapters.feishu.client import FeishuApiError, FeishuClient
from collabbot.adapters.feishu.config import parse_settings
from collabbot.adapters.feishu.contacts import fetch_org
from collabbot.bot.org import Org, apply_org
from collabbot.storage.db import Database
from collabbot.storage.models import Department, Identity, User

from .fake_feishu import FakeFeishu, ThreadedFake
from .subtree_checks import assert_the_root_department_is_kept, user_named


def company(fake: FakeFeishu) -> None:
    def dept(did: str, name: str, parent: str, leader: str) -> dict:
        return {"open_department_id": did, "department_id": did[3:], "name": name, "parent_department_id": parent,
                "leader_user_id": leader, "member_count": 1, "status": {"is_deleted": False}}

    def user(oid: str, name: str, depts: list[str], leader: str = "", resigned: bool = False) -> dict:
        return {"open_id": oid, "union_id": f"on_{oid}", "name": name, "department_ids": depts,
                "leader_user_id": leader, "status": {"is_resigned": resigned, "is_activated": True}}

    fake.departments = [
        dept("od-market", "市场部", "0", "ou_zhang"),
        dept("od-tech", "技术部", "0", "ou_chen"),
        dept("od-test-a", "测试组", "od-tech", "ou_li"),
        dept("od-test-b", "测试组", "od-market", ""),
        dept("od-design", "设计部", "0", "ou_gone"),
    ]
    fake.users = [
        user("ou_boss", "赵总", ["0"]),
        user("ou_zhang", "张三", ["od-market"], "ou_boss"),
        user("ou_chen", "陈七", ["od-tech"], "ou_boss"),
        user("ou_li", "李四", ["od-test-a", "od-tech"], "ou_chen"),
        user("ou_wei1", "张伟", ["od-tech"], "ou_chen"),
        user("ou_wei2", "张伟", ["od-market"], "ou_zhang"),
        user("ou_gone", "离职者", ["od-design"], resigned=True),
    ]


def settings(url: str):
    return parse_settings({"app_id": "cli_test", "app_secret": "test-secret", "verification_token": "t",
                           "base_url": url})


async def test_org_sync_pages_through_everything_and_is_idempotent(sqlite_db: Database) -> None:
    fake = FakeFeishu()
    company(fake)
    client = FeishuClient(settings(await fake.start()))
    try:
        org = await fetch_org(client)
    finally:
        await client.close()
        await fake.close()
    children = fake.api_calls("GET", "/open-apis/contact/v3/departments/0/children")
    assert len(children) == 3 and {c.query.get("page_token", "") for c in children} == {"", "2", "4"}
    assert all(c.query["fetch_child"] == "true" and c.auth.startswith("Bearer t-fake-") for c in children)
    assert org.departments == {"市场部": "张三", "技术部": "陈七", "测试组（技术部）": "李四", "测试组（市场部）": "",
                               "设计部": ""}  # the resigned head is left out
    people = {p.name: p for p in org.people}
    assert set(people) == {"赵总", "张三", "陈七", "李四", "张伟（技术部）", "张伟（市场部）"}
    assert people["李四"].department == "测试组（技术部）" and people["李四"].supervisor == "陈七"
    assert people["张伟（市场部）"].supervisor == "张三" and people["赵总"].supervisor == ""
    assert people["张三"].ids == {"feishu": "ou_zhang"}

    now = datetime(2026, 12, 1, tzinfo=UTC)
    with sqlite_db.transaction() as s:
        first = apply_org(s, org, now, platform="feishu")
    assert "person added: 李四" in first and "head of 技术部: 陈七" in first and "supervisor of 李四: 陈七" in first
    with sqlite_db.transaction() as s:
        assert apply_org(s, org, now, platform="feishu") == []
        li = s.scalar(select(User).join(Identity).where(Identity.platform == "feishu", Identity.platform_user_id == "ou_li"))
        assert li.name == "李四" and li.supervisor.name == "陈七" and li.department.name == "测试组（技术部）"
        assert s.scalar(select(Department).where(Department.name == "技术部")).head.name == "陈七"


def test_org_sync_command_against_the_fake(tmp_path: Path) -> None:
    with ThreadedFake() as fake:
        company(fake)
        config = tmp_path / "c.toml"
        config.write_text(f"""
[database]
url = "sqlite:///{tmp_path / 'bot.db'}"
[feishu]
app_id = "cli_test"
app_secret = "${{FEISHU_SECRET}}"
verification_token = "t"
base_url = "{fake.url}"
""", encoding="utf-8")
        env = {"FEISHU_SECRET": "test-secret", "PATH": "/usr/bin:/bin"}
        command = [sys.executable, "-m", "collabbot.adapters.server", "--config", str(config), "org", "sync",
                   "--platform", "feishu"]
        first = subprocess.run(command, capture_output=True, text=True, env=env, timeout=60)
        assert first.returncode == 0, first.stderr
        assert "person added: 李四" in first.stdout and "6 people from Feishu" in first.stdout
        second = subprocess.run(command, capture_output=True, text=True, env=env, timeout=60)
        assert second.returncode == 0 and "; 0 change(s)" in second.stdout
        bad = subprocess.run(command, capture_output=True, text=True, env={**env, "FEISHU_SECRET": "wrong"}, timeout=60)
        assert bad.returncode == 4 and bad.stdout == "" and bad.stderr.count("org sync failed") == 1, bad.stderr


# --- a sub-tree sync (org_root_department = "od-…", for an app whose 通讯录权限范围 is one department) -----
def tech_only(fake: FakeFeishu) -> None:
    """技术部 under the root, 前端组 and 测试组 under it; its head 陈七 reports to 钱总, who sits at the root."""
    def dept(did: str, name: str, parent: str, leader: str) -> dict:
        return {"open_department_id": did, "department_id": did[3:], "name": name, "parent_department_id": parent,
                "leader_user_id": leader, "member_count": 1, "status": {"is_deleted": False}}

    def user(oid: str, name: str, depts: list[str], leader: str = "", resigned: bool = False) -> dict:
        return {"open_id": oid, "name": name, "department_ids": depts, "leader_user_id": leader,
                "status": {"is_resigned": resigned, "is_activated": True}}

    fake.departments = [dept("od-tech", "技术部", "0", "ou_chen"), dept("od-fe", "前端组", "od-tech", "ou_li"),
                        dept("od-qa", "测试组", "od-tech", "ou_gone")]
    fake.users = [user("ou_qian", "钱总", ["0"]), user("ou_chen", "陈七", ["od-tech"], "ou_qian"),
                  user("ou_zhao", "赵六", ["od-tech"], "ou_chen"), user("ou_li", "李四", ["od-fe"], "ou_chen"),
                  user("ou_gone", "离职者", ["od-qa"], resigned=True), user("ou_sun", "孙九", ["od-qa"], "ou_gone")]


async def read(fake: FakeFeishu, root: str = "0") -> Org:
    client = FeishuClient(settings(fake.url))
    try:
        return await fetch_org(client, root)
    finally:
        await client.close()


async def synced_whole_then_tech(db: Database) -> tuple[Org, list[str], FakeFeishu]:
    """A whole-tenant sync, then the app's 通讯录权限范围 narrowed to 技术部 and a sync from od-tech."""
    fake = FakeFeishu()
    tech_only(fake)
    await fake.start()
    try:
        whole = await read(fake)
        with db.transaction() as s:
            apply_org(s, whole, datetime(2026, 12, 1, tzinfo=UTC), platform="feishu")
        fake.contact_scope = {"od-tech"}
        with pytest.raises(FeishuApiError):  # the root "0" now needs a scope the app no longer has
            await read(fake)
        org = await read(fake, "od-tech")
    finally:
        await fake.close()
    with db.transaction() as s:
        changes = apply_org(s, org, datetime(2026, 12, 2, tzinfo=UTC), platform="feishu")
    return org, changes, fake


async def test_a_sub_tree_sync_keeps_the_root_department_with_its_own_members_and_head(sqlite_db: Database) -> None:
    org, changes, fake = await synced_whole_then_tech(sqlite_db)
    assert_the_root_department_is_kept(org, changes, sqlite_db)
    [get] = [c for c in fake.api_calls("GET") if c.path == "/open-apis/contact/v3/departments/od-tech"]
    assert get.status == 200 and get.query == {"department_id_type": "open_department_id", "user_id_type": "open_id"}


async def test_a_sub_tree_sync_gives_a_supervisor_outside_it_as_unknown_not_as_none(sqlite_db: Database) -> None:
    org, _, _ = await synced_whole_then_tech(sqlite_db)
    people = {p.name: p for p in org.people}
    assert people["陈七"].supervisor is None  # 钱总 is outside 技术部: not known here, so not "" (none)
    assert people["孙九"].supervisor == ""  # a resigned leader inside the scope is known to be gone
    assert people["赵六"].supervisor == "陈七"


async def test_a_sub_tree_sync_leaves_the_stored_supervisor_of_its_head_alone(sqlite_db: Database) -> None:
    _, changes, _ = await synced_whole_then_tech(sqlite_db)
    with sqlite_db.transaction() as s:
        chen = user_named(s, "陈七")
        assert chen.supervisor is not None and chen.supervisor.name == "钱总", changes


async def test_a_department_renamed_or_deleted_on_feishu_is_that_row_not_a_second_one(sqlite_db: Database) -> None:
    fake = FakeFeishu()
    company(fake)
    client = FeishuClient(settings(await fake.start()))
    now = datetime(2026, 12, 1, tzinfo=UTC)

    async def sync() -> list[str]:
        org = await fetch_org(client)
        with sqlite_db.transaction() as s:
            return apply_org(s, org, now, platform="feishu")

    try:
        await sync()
        with sqlite_db.transaction() as s:
            test_a = s.scalar(select(Department).where(Department.name == "测试组（技术部）")).id
        fake.departments = [{**d, "name": "质量组"} if d["open_department_id"] == "od-test-a" else d
                            for d in fake.departments]
        changes = await sync()
        assert "department renamed: 测试组（技术部） -> 质量组" in changes
        # the other 测试组 needs no qualifier any more: renamed too, the same row
        assert "department renamed: 测试组（市场部） -> 测试组" in changes
        with sqlite_db.transaction() as s:
            quality = s.scalar(select(Department).where(Department.name == "质量组"))
            assert quality.id == test_a and quality.head.name == "李四" and quality.platform_id == "feishu:od-test-a"
            assert s.scalar(select(User).where(User.name == "李四")).department_id == test_a
        fake.departments = [d for d in fake.departments if d["open_department_id"] != "od-test-a"]
        fake.users = [{**u, "department_ids": ["od-tech"]} if u["open_id"] == "ou_li" else u for u in fake.users]
        changes = await sync()
        assert "department gone: 质量组 — head cleared; 0 member(s) still listed in it" in changes
        assert "department of 李四: 技术部" in changes
        with sqlite_db.transaction() as s:
            assert s.get(Department, test_a).head_id is None
        assert not [c for c in await sync() if c.startswith("department")]  # settled: the next sync changes nothing
    finally:
        await client.close()
        await fake.close()
