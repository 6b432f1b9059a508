"""The engine remembers identities and groups across commands (bot/known.py), and never wrongly.

Each test runs on SQLite and PostgreSQL. "Another instance" is a change this process's ORM sessions never
saw: a Core UPDATE on a connection of its own, as an org sync in another `serve` process would commit.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import func, insert, select, update

from collabbot.bot.events import ChatRef, UserRef
from collabbot.bot.known import Known
from collabbot.bot.people import find_chat, resolve_user
from collabbot.storage.db import Database
from collabbot.storage.models import Chat, Identity, Project, User

from .conftest import Harness
from .test_hot_path import metered

G = "in 新品上市群 as"
CREATE = f"{G} 张三: @bot 新建任务 物料设计 负责人 @李四 截止 12-10"
AGAIN = f"{G} 张三: @bot 新建任务 横幅 负责人 @李四 截止 12-12"


def _warm(harness: Harness) -> None:
    """The group's first command binds it (a change: nothing is remembered from it); the second is remembered."""
    harness.text(CREATE)
    harness.text(f"{G} 张三: @bot 新建任务 海报 负责人 @李四 截止 12-11")


def _reads_of_people(statements: list[str]) -> list[str]:
    return [s for s in statements if s.lstrip().upper().startswith("SELECT")
            and ("JOIN identities" in s or "FROM chats" in s)]


def test_a_second_command_reads_neither_its_sender_nor_its_group(harness: Harness) -> None:
    _warm(harness)
    with metered(harness) as meter:
        out = harness.text(f"{G} 李四: @bot 进度 #1 50% 初稿完成")
    assert "已记录" in out or "50%" in out, out
    assert meter.statements and _reads_of_people(meter.statements) == []


def test_a_change_committed_here_is_seen_by_the_next_command(harness: Harness) -> None:
    _warm(harness)
    with harness.db.transaction() as s:  # as `org sync` renames someone
        s.scalar(select(User).where(User.name == "李四")).name = "李小四"
    out = harness.text(AGAIN)
    assert "负责人 @李小四" in out, out


def test_another_instances_change_is_seen_within_a_minute(harness: Harness) -> None:
    _warm(harness)
    with harness.db.engine.begin() as conn:  # not through this process's sessions
        conn.execute(update(User).where(User.name == "李四").values(name="李小四"))
    assert "负责人 @李四" in harness.text(AGAIN)  # still remembered: the price of not asking
    harness.clock.advance(timedelta(seconds=61))
    out = harness.text(f"{G} 张三: @bot 新建任务 展架 负责人 @李四 截止 12-12")
    assert "负责人 @李小四" in out, out


class Clock:
    def now(self) -> datetime:
        return datetime(2026, 12, 1, 1, 0, tzinfo=UTC)


def test_nothing_is_remembered_from_a_transaction_that_rolled_back(db: Database) -> None:
    known, now = Known(Clock()), Clock().now()
    ref = UserRef("feishu", "ou_new", "新人")
    with pytest.raises(RuntimeError), db.transaction() as s:
        user = resolve_user(s, ref, now, known)  # created here (first contact)
        assert resolve_user(s, ref, now, known) is user  # read back in the same transaction
        raise RuntimeError("the command failed")
    with db.transaction() as s:
        assert known.get(s, User, "feishu", "ou_new") is False  # unknown: it never existed
        assert s.scalar(select(Identity).where(Identity.platform_user_id == "ou_new")) is None


def test_a_committed_read_is_remembered_and_a_group_never_seen_is_known_absent(db: Database) -> None:
    known, now = Known(Clock()), Clock().now()
    ref = UserRef("feishu", "ou_old", "老员工")
    with db.transaction() as s:
        resolve_user(s, ref, now)  # exists before the reads below
    with db.transaction() as s:
        first = resolve_user(s, ref, now, known)
        assert find_chat(s, ChatRef("feishu", "oc_private", is_group=False), known) is None
        first_id = first.id
    with db.transaction() as s:
        remembered = known.get(s, User, "feishu", "ou_old")
        assert isinstance(remembered, User) and remembered.id == first_id and remembered.name == "老员工"
        assert remembered in s and not s.dirty  # an ordinary, unchanged row of this session
        assert known.get(s, User, "feishu", "ou_other") is False
        assert known.get(s, Chat, "feishu", "oc_private") is None


def test_binding_a_group_reads_the_group_afresh(harness: Harness) -> None:
    """A remembered group may be a minute old: 绑定项目 locks and re-reads it, so a bind made meanwhile by
    another instance is neither overwritten nor duplicated, and its coordinator's rights hold."""
    harness.text(f"{G} 张三: @bot 帮助")  # the group is created (a change: nothing remembered)
    harness.text(f"{G} 张三: @bot 帮助")  # remembered now, without a project
    with harness.db.engine.begin() as conn:  # another instance binds it, coordinated by 李四
        li = conn.execute(select(User.id).where(User.name == "李四")).scalar_one()
        bound = conn.execute(insert(Project).values(name="另一实例的项目", created_by_id=li, coordinator_id=li,
                                                    created_at=datetime.now(UTC)).returning(Project.id)).scalar_one()
        conn.execute(update(Chat).where(Chat.name == "新品上市群").values(project_id=bound))
    out = harness.text(f"{G} 张三: @bot 绑定项目 我的项目")
    with harness.db.transaction() as s:
        assert s.scalar(select(Chat.project_id).where(Chat.name == "新品上市群")) == bound, out
        assert s.scalar(select(func.count()).select_from(Project)) == 1, out
    assert "李四" in out, out  # told whose project it is
