"""What a sub-tree org sync must keep, on every platform whose contacts read one (the same demo tree:
技术部 with 前端组 and 测试组 below it)."""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.orm import Session

from collabbot.bot.org import Org
from collabbot.storage.db import Database
from collabbot.storage.models import Department, User


def user_named(s: Session, name: str) -> User:
    return s.scalar(select(User).where(User.name == name))


def assert_the_root_department_is_kept(org: Org, changes: list[str], db: Database) -> None:
    """The root department is read with its own members and head; a head no longer active is none."""
    assert org.departments == {"技术部": "陈七", "前端组": "李四", "测试组": ""}
    assert {p.name: p.department for p in org.people} == {"陈七": "技术部", "赵六": "技术部", "李四": "前端组",
                                                           "孙九": "测试组"}
    assert not any(c.startswith(("department of", "head of", "department added")) for c in changes), changes
    with db.transaction() as s:
        assert user_named(s, "陈七").department.name == "技术部" and user_named(s, "赵六").department.name == "技术部"
        assert s.scalar(select(Department).where(Department.name == "技术部")).head.name == "陈七"
