"""An org file and a platform's sync describe the same people: the file's `[people.ids]` link its people to
the ones a sync already met instead of making copies (which would take over department heads the platform
cannot reach), and ids that already belong to two different people are reported, never merged."""

from __future__ import annotations

from datetime import datetime

import pytest
from sqlalchemy import func, select

from collabbot.bot.org import Org, OrgPerson, apply_org
from collabbot.storage.db import Database
from collabbot.storage.models import Department, Identity, User

from .conftest import TZ

NOW = datetime(2026, 12, 1, 10, 0, tzinfo=TZ)
SYNCED = Org({"市场部": "张三"}, (
    OrgPerson("赵总", "", "", {"feishu": "ou_boss"}),
    OrgPerson("张三", "市场部", "赵总", {"feishu": "ou_zhang"}),
    OrgPerson("吴十", "市场部", "张三", {"feishu": "ou_wu"}),
), complete=True)
FILE = Org({"市场部": "张三"}, (
    OrgPerson("赵总", "", "", {"feishu": "ou_boss"}),
    OrgPerson("张三", "市场部", "赵总", {"feishu": "ou_zhang"}),
    OrgPerson("吴十", "市场部", "张三", {"feishu": "ou_wu"}),
    OrgPerson("王五", "市场部", "张三", {}),  # on the console only
), complete=True)


@pytest.fixture(params=["sqlite", "postgresql"])
def db(request: pytest.FixtureRequest) -> Database:
    if request.param == "sqlite":
        return request.getfixturevalue("sqlite_db")
    from .conftest import truncate_all
    database = request.getfixturevalue("pg_database")
    truncate_all(database)
    return database


def apply(db: Database, org: Org, platform: str) -> list[str]:
    with db.transaction() as s:
        return apply_org(s, org, NOW, platform=platform)


def identities_of(db: Database, name: str) -> list[set[str]]:
    """Per user of that name, their identities as "platform:id"."""
    with db.transaction() as s:
        return [{f"{i.platform}:{i.platform_user_id}" for i in s.scalars(select(Identity).where(Identity.user_id == u))}
                for u in s.scalars(select(User.id).where(User.name == name).order_by(User.id))]


def test_an_org_file_after_a_sync_links_its_people_to_the_synced_ones(db: Database) -> None:
    apply(db, SYNCED, "feishu")
    changes = apply(db, FILE, "console")
    assert "person linked: 张三 (console:张三)" in changes and "person added: 王五" in changes
    assert not [c for c in changes if c.startswith("person added: 张三")]
    assert identities_of(db, "张三") == [{"feishu:ou_zhang", "console:张三"}]
    with db.transaction() as s:
        assert s.scalar(select(func.count()).select_from(User)) == 4
        head = s.scalar(select(Department).where(Department.name == "市场部")).head
        assert {i.platform for i in head.identities} == {"feishu", "console"}  # reachable on Feishu
    assert apply(db, FILE, "console") == []  # the same file again changes nothing
    assert [c for c in apply(db, SYNCED, "feishu") if c.startswith("person ")] == []  # nor does the next sync


def test_a_sync_after_an_org_file_finds_the_people_the_file_linked(db: Database) -> None:
    apply(db, FILE, "console")
    changes = apply(db, SYNCED, "feishu")
    assert not [c for c in changes if c.startswith("person added")]
    assert identities_of(db, "吴十") == [{"feishu:ou_wu", "console:吴十"}]


def test_ids_that_already_belong_to_two_people_are_reported_and_kept_apart(db: Database) -> None:
    apply(db, SYNCED, "feishu")
    apply(db, Org({}, (OrgPerson("张三", "", "", {}),)), "console")  # an earlier file without ids: a copy
    changes = apply(db, FILE, "console")
    assert [c for c in changes if c.startswith("person not linked")] == [
        "person not linked: 张三 — console:张三 and feishu:ou_zhang are already different people; they stay apart"]
    assert identities_of(db, "张三") == [{"feishu:ou_zhang"}, {"console:张三"}]
