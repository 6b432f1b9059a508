"""The archive's full-text search on both databases (SQLite FTS5, PostgreSQL tsvector over jieba's words):
Chinese found by its words, not by a LIKE scan; the filters; hostile queries are only words."""

from __future__ import annotations

from datetime import UTC, datetime

from collabbot.bot import archive
from collabbot.bot.archive import Entry, Filters
from collabbot.storage.db import Database
from collabbot.storage.models import ArchiveRecord, Department, Project

NOW = datetime(2026, 12, 1, 2, 0, tzinfo=UTC)


def _setup(db: Database) -> tuple[int, int, int]:
    with db.transaction() as s:
        market, tech = Department(name="市场部"), Department(name="技术部")
        project = Project(name="新品上市", created_at=NOW)
        s.add_all([market, tech, project])
        s.flush()
        archive.write(s, project.id, [
            Entry("task", 1, "双十二市场推广方案评审", "交付物 方案PPT", datetime(2026, 10, 5, tzinfo=UTC), {market.id}),
            Entry("task", 2, "活动H5开发", "前端 联调 接口", datetime(2026, 11, 5, tzinfo=UTC), {tech.id}),
            Entry("risk", 3, "供应商交付延迟", "启用备选供应商", datetime(2026, 11, 20, tzinfo=UTC), {market.id}),
            Entry("meeting", 4, "新品上市发布会筹备", "决议 采用方案B", datetime(2026, 11, 25, tzinfo=UTC),
                  {market.id, tech.id}),
        ], NOW)
        return project.id, market.id, tech.id


def _found(db: Database, query: str, filters: Filters | None = None, viewer: int | None = None) -> list[tuple[str, int]]:
    with db.transaction() as s:
        total, rows = archive.search(s, archive.query_words(query), filters or Filters(), viewer_id=viewer)
        assert total == len(rows)
        return [(r.kind, r.entity_id) for r, _ in rows]


def test_a_two_character_query_finds_the_word_in_a_title(db: Database) -> None:
    _setup(db)
    assert _found(db, "推广") == [("task", 1)]  # 市场推广 is one word in precise mode; its parts are indexed too
    assert _found(db, "市场推广") == [("task", 1)]
    assert _found(db, "供应商") == [("risk", 3)]
    assert _found(db, "方案") == [("meeting", 4), ("task", 1)]  # newest first; the body counts too
    assert _found(db, "发布会") == [("meeting", 4)]
    assert _found(db, "h5") == [("task", 2)]  # case does not matter
    assert _found(db, "推广 方案") == [("task", 1)]  # every word must match
    assert _found(db, "推广 延迟") == []
    assert _found(db, "场推") == []  # not a word: a LIKE scan would have found it


def test_a_page_is_read_from_the_database_not_cut_from_all_before_it(db: Database) -> None:
    _setup(db)
    with db.transaction() as s:
        total, rows = archive.search(s, archive.query_words("方案"), Filters(), limit=1, offset=1)
        assert (total, [(r.kind, r.entity_id) for r, _ in rows]) == (2, [("task", 1)])  # the second newest alone


def test_the_filters_by_type_department_and_time(db: Database) -> None:
    _, market, tech = _setup(db)
    assert _found(db, "方案", Filters(kind="task")) == [("task", 1)]
    assert _found(db, "方案", Filters(department_id=tech)) == [("meeting", 4)]
    assert _found(db, "方案", Filters(department_id=market)) == [("meeting", 4), ("task", 1)]
    assert _found(db, "方案", Filters(start=datetime(2026, 11, 1, tzinfo=UTC), end=datetime(2026, 12, 1, tzinfo=UTC))) \
        == [("meeting", 4)]


def test_a_record_written_again_is_reindexed_not_doubled(db: Database) -> None:
    project_id, _, _ = _setup(db)
    with db.transaction() as s:
        archive.write(s, project_id, [Entry("risk", 3, "物流延误", "改用顺丰", NOW)], NOW)
    assert _found(db, "供应商") == []
    assert _found(db, "物流") == [("risk", 3)]
    with db.transaction() as s:
        assert s.query(ArchiveRecord).count() == 4


def test_hostile_queries_are_only_words(db: Database) -> None:
    _setup(db)
    for query in ['" OR 1=1 --', "推广 OR 供应商", "NEAR(推广 方案)", "推广*", "'); DROP TABLE archive_records; --",
                  "推广 & !方案 | (x", "\\\"\x00"]:
        assert ("risk", 3) not in _found(db, query)
    assert _found(db, "推广*") == [("task", 1)]  # the star is punctuation, dropped
    with db.transaction() as s:
        assert s.query(ArchiveRecord).count() == 4


def test_only_the_projects_a_person_may_see(db: Database) -> None:
    project_id, _, _ = _setup(db)
    assert _found(db, "推广", viewer=999) == []
    with db.transaction() as s:
        from collabbot.storage.models import User
        user = User(name="张三", created_at=NOW)
        s.add(user)
        s.flush()
        s.get(Project, project_id).coordinator_id = user.id
        uid = user.id
    assert _found(db, "推广", viewer=uid) == [("task", 1)]
