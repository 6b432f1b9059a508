"""`collabbot org sync --platform dingtalk` from a sub-tree (`org_root_department` = a dept id): the root
department itself is part of the org, with its own members and head, and a leader outside the sub-tree
is "not known here" rather than "none". The fake DingTalk's topapi, applied to real SQLite."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime

import pytest

from collabbot.adapters.dingtalk.client import DingTalkClient
from collabbot.adapters.dingtalk.config import parse_settings
from collabbot.adapters.dingtalk.contacts import fetch_org
from collabbot.bot.org import Org, apply_org
from collabbot.storage.db import Database

from .fake_dingtalk import FakeDingTalk
from .subtree_checks import assert_the_root_department_is_kept, user_named


@pytest.fixture
async def fake() -> AsyncIterator[FakeDingTalk]:
    """技术部 (100) under the root, 前端组 (200) and 测试组 (300) under it; its head 陈七 reports to 钱总,
    who sits at the root; 测试组's head has left."""
    fake = FakeDingTalk()
    await fake.start()
    fake.add_department(100, "技术部", 1, ["chen"])
    fake.add_department(200, "前端组", 100, ["li"])
    fake.add_department(300, "测试组", 100, ["gone"])
    fake.add_user("qian", "钱总", [1])
    fake.add_user("chen", "陈七", [100], manager="qian")
    fake.add_user("zhao", "赵六", [100], manager="chen")
    fake.add_user("li", "李四", [200], manager="chen")
    fake.add_user("gone", "离职者", [300], active=False)
    fake.add_user("sun", "孙九", [300], manager="gone")
    yield fake
    await fake.close()


async def read(fake: FakeDingTalk, root: int) -> Org:
    client = DingTalkClient(parse_settings({"client_id": fake.client_id, "client_secret": fake.client_secret,
                                            "card_template_id": "t", "base_url": fake.url, "oapi_url": fake.url}))
    try:
        return await fetch_org(client, root)
    finally:
        await client.close()


async def whole_then_tech(fake: FakeDingTalk, db: Database) -> tuple[Org, list[str]]:
    with db.transaction() as s:
        apply_org(s, await read(fake, 1), datetime(2026, 12, 1, tzinfo=UTC), platform="dingtalk")
    org = await read(fake, 100)
    with db.transaction() as s:
        return org, apply_org(s, org, datetime(2026, 12, 2, tzinfo=UTC), platform="dingtalk")


async def test_a_sub_tree_sync_keeps_the_root_department_with_its_own_members_and_head(
        fake: FakeDingTalk, sqlite_db: Database) -> None:
    org, changes = await whole_then_tech(fake, sqlite_db)
    assert_the_root_department_is_kept(org, changes, sqlite_db)
    root_reads = [c.body for c in fake.api_calls("POST", "/topapi/v2/department/get") if c.body.get("dept_id") == 100]
    assert root_reads == [{"dept_id": 100}, {"dept_id": 100}]  # the full sync's head read, then the sub-tree's one


async def test_a_sub_tree_sync_gives_a_supervisor_outside_it_as_unknown_not_as_none(
        fake: FakeDingTalk, sqlite_db: Database) -> None:
    org, _ = await whole_then_tech(fake, sqlite_db)
    people = {p.name: p for p in org.people}
    assert people["陈七"].supervisor is None  # 钱总 is outside 技术部: not known here, so not "" (none)
    assert people["孙九"].supervisor == ""  # an inactive leader inside the scope is known to be gone
    assert people["赵六"].supervisor == "陈七"


async def test_a_sub_tree_sync_leaves_the_stored_supervisor_of_its_head_alone(
        fake: FakeDingTalk, sqlite_db: Database) -> None:
    _, changes = await whole_then_tech(fake, sqlite_db)
    with sqlite_db.transaction() as s:
        chen = user_named(s, "陈七")
        assert chen.supervisor is not None and chen.supervisor.name == "钱总", changes
