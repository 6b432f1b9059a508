"""The archive (协作案例库): a closed project's records written once, cut into words, searched with the
database's own full-text index.

Chinese has no spaces, so words are cut at write time with jieba's search mode (a long word also yields the
shorter words in it: 市场推广 → 市场, 推广, 市场推广) and stored space-joined in `archive_records.tokens`.
Migration 0011 indexes that column: SQLite's FTS5 (unicode61 over the spaces), PostgreSQL's GIN over a
generated column `to_tsvector('simple', tokens)`. A query is cut in jieba's precise mode and every word must match, so a
two-character query such as 推广 finds a record whose title holds it as a word. Results are the newest first.

This module knows rows only: who may see what, and the words people type, are the handlers' business.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import jieba
from sqlalchemy import ColumnElement, Select, and_, exists, func, literal_column, or_, select, table, text, union
from sqlalchemy.orm import Session

from collabbot.storage.models import (
    ArchiveDepartment,
    ArchiveRecord,
    Department,
    Project,
    ProjectDepartment,
    Task,
    TaskCollaborator,
)

KINDS = ("project", "task", "approval", "risk", "meeting", "collection", "retro")
MAX_QUERY_WORDS = 12  # a longer query is cut: each word is one more index probe
_init_lock = threading.Lock()
_ready = False


def _jieba() -> None:
    """Load jieba's dictionary once, quietly (about a second, then kept in memory)."""
    global _ready
    if _ready:
        return
    with _init_lock:
        if not _ready:
            jieba.setLogLevel(logging.WARNING)
            jieba.initialize()
            _ready = True


def _keep(word: str) -> str | None:
    word = word.strip().lower()
    return word if any(ch.isalnum() for ch in word) else None


def index_words(text: str) -> list[str]:
    """The words a record is found by: jieba's search mode (sub-words of long words too), lower-cased,
    punctuation dropped, each once."""
    _jieba()
    out = dict.fromkeys(w for w in map(_keep, jieba.cut_for_search(text)) if w)
    return list(out)


def query_words(text: str) -> list[str]:
    """The words of a query: jieba's precise mode, so 市场推广 is one word that a record must hold."""
    _jieba()
    out = dict.fromkeys(w for w in map(_keep, jieba.cut(text)) if w)
    return list(out)[:MAX_QUERY_WORDS]


@dataclass
class Entry:
    """One record to archive, before it is a row."""

    kind: str
    entity_id: int
    title: str
    body: str
    happened_at: datetime
    departments: set[int] = field(default_factory=set)


def write(s: Session, project_id: int, entries: Iterable[Entry], now: datetime) -> int:
    """Archive `entries` for the project; a record archived before (same kind and id) is rewritten. Returns how
    many were written. A few statements for the whole batch, not a few per record."""
    items = list(entries)
    existing: dict[tuple[str, int], ArchiveRecord] = {}
    for kind in {e.kind for e in items}:
        ids = [e.entity_id for e in items if e.kind == kind]
        for chunk in range(0, len(ids), 500):
            for row in s.scalars(select(ArchiveRecord).where(ArchiveRecord.kind == kind,
                                                             ArchiveRecord.entity_id.in_(ids[chunk:chunk + 500]))):
                existing[(row.kind, row.entity_id)] = row
    written: list[tuple[ArchiveRecord, Entry]] = []
    for entry in items:
        row = existing.get((entry.kind, entry.entity_id))
        if row is None:
            row = ArchiveRecord(project_id=project_id, kind=entry.kind, entity_id=entry.entity_id, archived_at=now)
            s.add(row)
            existing[(entry.kind, entry.entity_id)] = row
        row.title, row.body, row.happened_at = entry.title[:200], entry.body, entry.happened_at
        row.tokens = " ".join(index_words(f"{entry.title} {entry.body}"))
        written.append((row, entry))
    s.flush()
    known: set[tuple[int, int]] = set()
    record_ids = [row.id for row, _ in written]
    for chunk in range(0, len(record_ids), 500):
        known |= {(r, d) for r, d in s.execute(select(ArchiveDepartment.record_id, ArchiveDepartment.department_id)
                                               .where(ArchiveDepartment.record_id.in_(record_ids[chunk:chunk + 500])))}
    s.add_all(ArchiveDepartment(record_id=row.id, department_id=d) for row, entry in written
              for d in sorted(entry.departments) if (row.id, d) not in known)
    s.flush()
    return len(written)


@dataclass(frozen=True)
class Filters:
    kind: str = ""
    department_id: int | None = None
    start: datetime | None = None
    end: datetime | None = None  # exclusive


def visible_projects(viewer_id: int) -> Select[Any]:
    """The projects whose archive `viewer_id` may read: as for a project's tasks and reports, its coordinator
    and creator, whoever owned, started or helped on one of its tasks, and the heads of its departments."""
    return union(
        select(Project.id).where(or_(Project.coordinator_id == viewer_id, Project.created_by_id == viewer_id)),
        select(Task.project_id).where(Task.project_id.is_not(None),
                                      or_(Task.owner_id == viewer_id, Task.initiator_id == viewer_id)),
        select(Task.project_id).join(TaskCollaborator, TaskCollaborator.task_id == Task.id)
        .where(TaskCollaborator.user_id == viewer_id, Task.project_id.is_not(None)),
        select(ProjectDepartment.project_id).join(Department, Department.id == ProjectDepartment.department_id)
        .where(Department.head_id == viewer_id),
        select(Project.id).join(Department, Department.id == Project.initiating_dept_id)
        .where(Department.head_id == viewer_id),
    )  # type: ignore[return-value]


def _match(s: Session, words: list[str]) -> ColumnElement[bool]:
    """The full-text condition on ArchiveRecord for all of `words`, in the database's own dialect."""
    if s.get_bind().dialect.name == "postgresql":
        return text("archive_records.archive_fts_tsv @@ plainto_tsquery('simple', :archive_q)") \
            .bindparams(archive_q=" ".join(words))  # type: ignore[return-value]
    phrase = " ".join('"' + w.replace('"', '""') + '"' for w in words)  # each word quoted: no FTS5 syntax gets in
    fts = table("archive_fts", literal_column("rowid"))
    matching = select(literal_column("rowid")).select_from(fts).where(text("archive_fts MATCH :archive_q")
                                                                      .bindparams(archive_q=phrase))
    return ArchiveRecord.id.in_(matching)


def search(s: Session, words: list[str], filters: Filters | None = None, *, viewer_id: int | None = None,
           limit: int = 10, offset: int = 0) -> tuple[int, list[tuple[ArchiveRecord, str]]]:
    """(how many records match, `limit` of them with their project's name, newest first after skipping the
    newest `offset`). `viewer_id` None: every project's records (an admin); else only the projects they
    may read."""
    if not words:
        return 0, []
    filters = filters or Filters()
    conditions: list[ColumnElement[bool]] = [_match(s, words)]
    if filters.kind:
        conditions.append(ArchiveRecord.kind == filters.kind)
    if filters.department_id is not None:
        conditions.append(exists().where(ArchiveDepartment.record_id == ArchiveRecord.id,
                                         ArchiveDepartment.department_id == filters.department_id))
    if filters.start is not None:
        conditions.append(ArchiveRecord.happened_at >= filters.start)
    if filters.end is not None:
        conditions.append(ArchiveRecord.happened_at < filters.end)
    if viewer_id is not None:
        conditions.append(ArchiveRecord.project_id.in_(visible_projects(viewer_id)))
    # The matching ids first, with every condition inside (on PostgreSQL MATERIALIZED: read once, so no plan can
    # scan the matches again for each row of another index, as one did on a table not yet analysed).
    matched = select(ArchiveRecord.id.label("id")).where(and_(*conditions)).cte("archive_match")
    if s.get_bind().dialect.name == "postgresql":
        matched = matched.prefix_with("MATERIALIZED")
    total = s.scalar(select(func.count()).select_from(matched)) or 0
    rows = s.execute(select(ArchiveRecord, Project.name).join(matched, matched.c.id == ArchiveRecord.id)
                     .join(Project, Project.id == ArchiveRecord.project_id)
                     .order_by(ArchiveRecord.happened_at.desc(), ArchiveRecord.id.desc())
                     .limit(limit).offset(offset)).all()
    return total, [(r[0], r[1]) for r in rows]


def departments_of(s: Session, record_ids: list[int]) -> dict[int, list[str]]:
    """Each record's department names, for showing."""
    out: dict[int, list[str]] = {}
    if record_ids:
        for record_id, name in s.execute(select(ArchiveDepartment.record_id, Department.name)
                                         .join(Department, Department.id == ArchiveDepartment.department_id)
                                         .where(ArchiveDepartment.record_id.in_(record_ids))
                                         .order_by(Department.id)):
            out.setdefault(record_id, []).append(name)
    return out
