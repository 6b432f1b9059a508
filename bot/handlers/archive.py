"""结项, the retrospective (复盘) and the archive's search (查找): a project's end kept inside the chat.

`结项` (the coordinator or an admin) archives the project at once, with its tasks, approvals, risks, minutes,
collections and figures, and asks the coordinator for the retrospective (做得好的, 不足, 改进); that request
is a wait, so the nag and escalation rules chase it until all three are given, in one multi-line message
or one command per field. `查找 关键词 [部门 …] [类型 …] [时间 …] [页 2]` searches every archive the person may
read (bot/archive.py) and answers privately, ten a page, with each record's reference (任务 #3, 会议 #M1 …).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import or_, select

from collabbot.bot import archive, texts
from collabbot.bot.archive import Entry, Filters
from collabbot.bot.commands import FIELD_WORDS, Command
from collabbot.bot.context import Ctx, Refused, snapshot
from collabbot.bot.events import show_markers
from collabbot.bot.handlers.common import MAX_TEXT, chat_project, not_allowed, project_named
from collabbot.bot.handlers.records import MAX_PAGE, PAGE_SIZE
from collabbot.bot.replies import Card, Message, Reply
from collabbot.bot.reports import figures
from collabbot.bot.reports.period import PeriodError, from_days, parse_period
from collabbot.bot.reports.scope import Scope
from collabbot.bot.rules import approval_stages, states
from collabbot.bot.waits import close_waits, open_wait
from collabbot.storage.models import (
    ApprovalRequest,
    Chat,
    CollectionRequest,
    Department,
    HelpRequest,
    Meeting,
    Project,
    ProjectArchive,
    ProjectDepartment,
    Risk,
    Task,
    User,
    Wait,
)

RETRO_FIELDS: dict[str, tuple[str, ...]] = {
    "went_well": ("做得好的", "做得好", "亮点", "went-well", "good"),
    "fell_short": ("不足", "问题与不足", "fell-short", "short"),
    "improve": ("改进建议", "改进", "improvements", "improve"),
}
_RETRO_WORD = {w.lower(): f for f, words in RETRO_FIELDS.items() for w in words}
# a field word opens a line, or follows a space, and is followed by a space or `：`/`:`/`=`
_RETRO_SPLIT = re.compile(r"(?:^|(?<=\s))(" + "|".join(sorted(map(re.escape, _RETRO_WORD), key=len, reverse=True))
                          + r")(?=[\s:：=＝]|$)[:：=＝]?", re.IGNORECASE | re.MULTILINE)
_PROJECT_REF = re.compile(r"#P(\d{1,9})\b", re.IGNORECASE)
_PROJECT_NAMED = re.compile(r"(?:^|\s)(?:项目|project)[=:：＝\s]\s*(\S+)", re.IGNORECASE)

FILTER_WORDS = {"部门": "department", "dept": "department", "department": "department", "类型": "kind",
                "type": "kind", "时间": "period", "期间": "period", "time": "period", "period": "period",
                # 任务列表's page words (页 2, page 2), so the two commands page alike
                **{word.lower(): "page" for word in FIELD_WORDS["page"]}}
KIND_WORDS = {"任务": "task", "task": "task", "审批": "approval", "approval": "approval", "风险": "risk",
              "risk": "risk", "会议": "meeting", "会议纪要": "meeting", "meeting": "meeting", "收集": "collection",
              "collection": "collection", "复盘": "retro", "retro": "retro", "项目": "project", "project": "project"}
SHOWN = PAGE_SIZE  # a page of results, as 任务列表's


# --- 结项 ------------------------------------------------------------------------------------------------

def _archive_of(ctx: Ctx, project_id: int) -> ProjectArchive | None:
    return ctx.s.scalar(select(ProjectArchive).where(ProjectArchive.project_id == project_id))


def _project_departments(ctx: Ctx, project: Project) -> set[int]:
    depts = set(ctx.s.scalars(select(ProjectDepartment.department_id)
                              .where(ProjectDepartment.project_id == project.id)))
    return depts | ({project.initiating_dept_id} if project.initiating_dept_id else set())


def _depts(*people: User | None) -> set[int]:
    return {u.department_id for u in people if u is not None and u.department_id is not None}


def _status(ctx: Ctx, status: str) -> str:
    return texts.status_name(ctx.lang, status) if status in states.OPEN + states.CLOSED else status


def entries(ctx: Ctx, project: Project) -> list[Entry]:
    """Every record of the project, as the archive keeps it (cancelled tasks are left out)."""
    out = [Entry("project", project.id, project.name,
                 " ".join(filter(None, (project.goal, project.kpis, project.remarks, getattr(project, "scope", "")))),
                 project.created_at, _project_departments(ctx, project))]
    for task in ctx.s.scalars(select(Task).where(Task.project_id == project.id, Task.status != "cancelled")
                              .order_by(Task.id)):
        people = [task.owner, *task.collaborators]
        body = " ".join(filter(None, (task.deliverable_expected, task.deliverable, task.remarks,
                                      " ".join(u.name for u in people), _status(ctx, task.status))))
        out.append(Entry("task", task.id, task.title, body, task.created_at,
                         _depts(*people) | {d for d in (task.department_id, task.initiating_dept_id) if d}))
    for req in ctx.s.scalars(select(ApprovalRequest).where(ApprovalRequest.project_id == project.id)
                             .order_by(ApprovalRequest.id)):
        values = " ".join(f"{k} {v}" for k, v in (req.values or {}).items())
        out.append(Entry("approval", req.id, req.template, f"{values} {req.initiator.name}", req.created_at,
                         {req.department_id} if req.department_id else _depts(req.initiator)))
    for risk in ctx.s.scalars(select(Risk).where(Risk.project_id == project.id).order_by(Risk.id)):
        out.append(Entry("risk", risk.id, risk.description, f"{risk.response} {risk.owner.name}", risk.created_at,
                         _depts(risk.owner)))
    for meeting in ctx.s.scalars(select(Meeting).where(Meeting.project_id == project.id).order_by(Meeting.id)):
        names = [n for n in re.split(r"[,，、\s]+", meeting.departments) if n]
        named = set(ctx.s.scalars(select(Department.id).where(Department.name.in_(names)))) if names else set()
        body = " ".join((meeting.summary, meeting.decisions, meeting.departments,
                         " ".join(t.title for t in meeting.actions)))
        out.append(Entry("meeting", meeting.id, meeting.topic, body, meeting.held_at or meeting.created_at,
                         named | _depts(meeting.recorder)))
    for request in ctx.s.scalars(select(CollectionRequest).where(CollectionRequest.project_id == project.id)
                                 .order_by(CollectionRequest.id)):
        asked = {t.department_id for t in request.targets if t.department_id} | _depts(*(t.user for t in request.targets))
        # what was submitted is the requester's alone (collections.py): searchable are the title and who
        body = " ".join((request.requester.name, *(t.user.name for t in request.targets)))
        out.append(Entry("collection", request.id, request.title, body, request.created_at, asked))
    return out


def project_figures(ctx: Ctx, project: Project, counts: dict[str, int]) -> dict[str, Any]:
    """The project's figures over its whole life (the reports' formulas), kept with the archive."""
    first = ctx.local(project.created_at).date()
    if project.start_date is not None and project.start_date < first:
        first = project.start_date
    last = max(first, ctx.local(ctx.now).date())
    frame = figures.Frame(s=ctx.s, scope=Scope("project", project.id, project.name),
                          period=from_days(first, last, ctx.bot.calendar.tz), now=ctx.now, calendar=ctx.bot.calendar)
    tc = figures.task_counts(frame)
    rate = tc.on_time_rate
    return {"first_day": first.isoformat(), "last_day": last.isoformat(), "tasks": tc.created, "done": tc.done,
            "on_time": tc.on_time, "extended": tc.extended, "late": tc.late,
            "on_time_rate": None if rate is None else round(rate, 3),
            "departments": [{"name": r.name, "on_time": r.on_time, "total": r.total}
                            for r in figures.on_time_rates(frame, "department")], **counts}


def close_project(ctx: Ctx, cmd: Command) -> Reply | None:
    """结项 [项目 名称]: archive the project and ask its coordinator for the retrospective."""
    project = chat_project(ctx, cmd)
    if ctx.actor.id != project.coordinator_id and not ctx.is_admin():
        raise not_allowed(ctx, "a_close_project", ctx.t("w_coordinator_admin"))
    if _archive_of(ctx, project.id) is not None:
        raise Refused("close_already", name=project.name)
    owed = [f"#{i}" for i in ctx.s.scalars(select(Task.id).where(Task.project_id == project.id,
                                                                  Task.status.in_(states.OPEN)).order_by(Task.id))]
    owed += [f"#A{i}" for i in ctx.s.scalars(select(ApprovalRequest.id).where(  # a returned one may come back
        ApprovalRequest.project_id == project.id,
        ApprovalRequest.status.in_((approval_stages.PENDING, approval_stages.RETURNED))).order_by(ApprovalRequest.id))]
    owed += [f"#C{i}" for i in ctx.s.scalars(select(CollectionRequest.id).where(
        CollectionRequest.project_id == project.id, CollectionRequest.status == "open"))]
    if owed:
        raise Refused("close_open_items", n=len(owed),
                      ids=texts.names(ctx.lang, owed[:8]) + ("…" if len(owed) > 8 else ""))
    # open risks end with the project: they did not happen; their owners owe nothing more
    for risk in ctx.s.scalars(select(Risk).where(Risk.project_id == project.id, Risk.status == "open")):
        risk.status, risk.closed_at, risk.updated_at, risk.version = "closed", ctx.now, ctx.now, risk.version + 1
        close_waits(ctx, "risk", risk.id)
    _end_help_requests(ctx, project)
    found = entries(ctx, project)
    counts = {kind: sum(e.kind == kind for e in found) for kind in ("approval", "risk", "meeting", "collection")}
    record = ProjectArchive(project_id=project.id, closed_by_id=ctx.actor.id, closed_at=ctx.now,
                            figures=project_figures(ctx, project, counts), went_well="", fell_short="", improve="")
    ctx.s.add(record)
    ctx.s.flush()
    written = archive.write(ctx.s, project.id, found, ctx.now)
    coordinator = project.coordinator or ctx.actor
    group = ctx.chat or ctx.s.scalar(select(Chat).where(Chat.project_id == project.id, Chat.active.is_(True))
                                     .order_by(Chat.id).limit(1))
    open_wait(ctx, "retro", "retro", project.id, coordinator, group)
    ctx.audit("project.close", record)
    card = archive_card(ctx, project, record)
    said = Message((ctx.t("close_done", name=project.name, n=written), ctx.at(coordinator),
                    ctx.t("retro_ask_group")), card)
    if ctx.chat is not None:
        ctx.say(*said.parts, card=card)
    elif group is not None:  # closed from a private chat: the group hears it, the coordinator is asked below
        ctx.tell_chat(group, said)
        if ctx.actor.id != coordinator.id:
            ctx.say(ctx.t("close_done", name=project.name, n=written), card=card)
    ctx.tell_user(coordinator, Message((ctx.t("retro_ask", name=project.name, id=project.id),), card),
                  key=f"retro:ask:{project.id}")
    return None


def _end_help_requests(ctx: Ctx, project: Project) -> None:
    """A help request still open for the project's work ends with it: nobody is chased for support to a
    project that is over (its card shows why)."""
    chats = select(Chat.id).where(Chat.project_id == project.id)
    tasks = select(Task.id).where(Task.project_id == project.id)
    for req in ctx.s.scalars(select(HelpRequest).where(
            HelpRequest.status == "open", or_(HelpRequest.task_id.in_(tasks), HelpRequest.chat_id.in_(chats)))):
        before = snapshot(req)
        req.status, req.answer, req.answered_at = "closed", ctx.t("help_ended_by_close"), ctx.now
        close_waits(ctx, "help", req.id, withdrawn=True)
        ctx.audit("help.close", req, before)


# --- 复盘 -----------------------------------------------------------------------------------------------

def _retro_project(ctx: Ctx, head: str, cmd: Command) -> Project:
    """The project a 复盘 is about: `#P3`, `项目 名称`, the group's, or (in private) the one project whose
    retrospective the person owes."""
    ref = _PROJECT_REF.search(head)
    if ref is not None:
        project = ctx.s.get(Project, int(ref.group(1)))
        if project is None:
            raise Refused("retro_not_found", id=ref.group(1))
        return project
    named = _PROJECT_NAMED.search(head)
    if named is not None:
        project = project_named(ctx, named.group(1))
        if project is None:
            raise Refused("no_project_private", name=named.group(1)[:50])
        return project
    if ctx.chat is not None:
        return chat_project(ctx, cmd)
    owed = list(ctx.s.scalars(select(Wait.entity_id).where(Wait.entity_type == "retro", Wait.person_id == ctx.actor.id,
                                                           Wait.answered_at.is_(None))))
    if len(owed) == 1:
        return ctx.s.get(Project, owed[0])  # type: ignore[return-value]
    raise Refused("retro_which")


def _retro_values(ctx: Ctx, raw: str) -> tuple[str, dict[str, str]]:
    """(the text before the first field word, field -> value): `做得好的 … 不足 … 改进 …`, on one line or many."""
    pieces = _RETRO_SPLIT.split(raw)
    head, values = pieces[0], {}
    for word, value in zip(pieces[1::2], pieces[2::2], strict=True):
        name = _RETRO_WORD[word.lower()]
        if name in values:
            raise Refused("retro_twice", field=ctx.t(f"f_{name}"))
        value = "\n".join(" ".join(line.split()) for line in value.strip().splitlines() if line.strip())
        if len(value) > MAX_TEXT:
            raise Refused("too_long_field", field=ctx.t(f"f_{name}"), max=MAX_TEXT)
        values[name] = value
    return head, values


def retrospective(ctx: Ctx, cmd: Command) -> Reply | None:
    """复盘 做得好的 … 不足 … 改进 … (a field per line, or one per command); 复盘 [#P3] alone shows it."""
    head, values = _retro_values(ctx, show_markers(cmd.raw, [u.name for u in ctx.mentions]))  # @李四, not a marker
    project = _retro_project(ctx, head, cmd)
    visible = ctx.is_admin() or project.id in set(ctx.s.scalars(archive.visible_projects(ctx.actor.id)))
    if not visible and not (ctx.chat is not None and ctx.chat.project_id == project.id):
        # `#P3` tells nobody outside the project what project 3 is, closed or not
        raise not_allowed(ctx, "a_view_retro", ctx.t("w_project_members"))
    record = _archive_of(ctx, project.id)
    if record is None:
        raise Refused("retro_not_closed", name=project.name)
    if not values:
        if not visible:
            raise not_allowed(ctx, "a_view_retro", ctx.t("w_project_members"))
        ctx.say(card=archive_card(ctx, project, record))
        return None
    if ctx.actor.id not in (project.coordinator_id, record.closed_by_id) and not ctx.is_admin():
        raise not_allowed(ctx, "a_write_retro", ctx.t("w_coordinator_admin"))
    for name, value in values.items():
        setattr(record, name, value)
    record.retro_by_id, record.retro_at = ctx.actor.id, ctx.now
    body = "\n".join(f"{ctx.t('f_' + n)} {getattr(record, n)}" for n in RETRO_FIELDS if getattr(record, n))
    archive.write(ctx.s, project.id, [Entry("retro", project.id, ctx.t("retro_title", name=project.name), body,
                                            ctx.now, _project_departments(ctx, project))], ctx.now)
    ctx.s.flush()
    ctx.audit("project.retro", record)
    missing = [ctx.t(f"f_{n}") for n in RETRO_FIELDS if not getattr(record, n)]
    if missing:
        ctx.say(ctx.t("retro_partly", missing=texts.names(ctx.lang, missing)), card=archive_card(ctx, project, record))
        return None
    close_waits(ctx, "retro", project.id)
    ctx.say(ctx.t("retro_done", name=project.name), card=archive_card(ctx, project, record))
    return None


def _figures_line(ctx: Ctx, f: dict[str, Any]) -> str:
    rate = f.get("on_time_rate")
    return ctx.t("archive_figures", tasks=f.get("tasks", 0), done=f.get("done", 0),
                 rate="-" if rate is None else f"{round(100 * rate)}%", approvals=f.get("approval", 0),
                 risks=f.get("risk", 0), meetings=f.get("meeting", 0), collections=f.get("collection", 0))


def archive_card(ctx: Ctx, project: Project, record: ProjectArchive) -> Card:
    none = ctx.t("retro_missing")
    f = record.figures or {}
    fields = [(ctx.t(f"f_{n}"), getattr(record, n) or none) for n in RETRO_FIELDS]
    fields.append((ctx.t("f_figures"), _figures_line(ctx, f)))
    rates = texts.items(ctx.lang, (f"{d['name']} {d['on_time']}/{d['total']}" for d in f.get("departments", [])))
    if rates:
        fields.append((ctx.t("f_on_time_by_dept"), rates))
    done = all(getattr(record, n) for n in RETRO_FIELDS)
    return Card(kind="retro", key=f"retro:{project.id}", title=ctx.t("retro_title", name=project.name),
                status=ctx.t("archive_closed", when=ctx.fmt(record.closed_at)), color="green" if done else "orange",
                fields=tuple(fields), note=ctx.t("archive_note", id=project.id))


# --- 查找 -----------------------------------------------------------------------------------------------

def _period(ctx: Ctx, value: str) -> tuple[datetime, datetime]:
    try:
        p = parse_period(value, ctx.now, ctx.bot.calendar.tz)
    except PeriodError as exc:
        raise Refused("search_bad_period", value=value[:30]) from exc
    return p.start, p.end


@dataclass(frozen=True)
class SearchTerms:
    """What a `查找 …` asked for; `typed` lets the card say what to send for the next page."""

    query: str  # the keywords
    filters: Filters
    page: int
    typed: str  # what was typed but the page: the next page's command repeats it


def _search_terms(ctx: Ctx, text: str) -> SearchTerms:
    """Split `推广 部门 市场部 类型 任务 时间 2026-11 页 2` into the keywords, the filters and the page."""
    words, keywords, typed = text.split(), [], []
    kind, dept_id, start, end, page = "", None, None, None, 1
    i = 0
    while i < len(words):
        word, value = words[i], None
        inline = re.match(r"^(\w+)[=:：＝](.+)$", word)
        name = FILTER_WORDS.get((inline.group(1) if inline else word).lower())
        if name is not None and inline:
            value = inline.group(2)
        elif name == "page" and (i + 1 == len(words) or not re.fullmatch(r"\d{1,3}", words[i + 1])):
            pass  # as in 任务列表: a page word starts the page before a number (or a colon), else it is a word
        elif name is not None and i + 1 < len(words):
            value = words[i + 1]
            i += 1
        if name != "page" or value is None:
            typed += [word] if value is None or inline else [word, value]
        if value is None:
            keywords.append(word)
        elif name == "department":
            dept_id = ctx.department(value).id
        elif name == "page":
            if not re.fullmatch(r"\d{1,3}", value) or not 1 <= int(value) <= MAX_PAGE:  # as 任务列表 reads it
                raise Refused("search_bad_page", value=value[:20])
            page = int(value)
        elif name == "kind":
            kind = KIND_WORDS.get(value.lower(), "")
            if not kind:
                raise Refused("search_bad_type", value=value[:20], known=texts.names(ctx.lang, dict.fromkeys(
                    k for k in KIND_WORDS if k.isascii() == (ctx.lang == "en"))))
        else:
            start, end = _period(ctx, value)
        i += 1
    return SearchTerms(" ".join(keywords), Filters(kind=kind, department_id=dept_id, start=start, end=end), page,
                       " ".join(typed))


REFS = {"task": "ref_task", "approval": "ref_approval", "risk": "ref_risk", "meeting": "ref_meeting",
        "collection": "ref_collection", "retro": "ref_project", "project": "ref_project"}


def search_archive(ctx: Ctx, cmd: Command) -> Reply | None:
    """查找 关键词 [部门 市场部] [类型 任务] [时间 2026-11|上月|2026-10~2026-12] [页 2]: the archive, newest first,
    ten a page as 任务列表 shows its tasks."""
    terms = _search_terms(ctx, cmd.text)
    words = archive.query_words(terms.query)
    if not words:
        raise Refused("search_empty")
    viewer = None if ctx.is_admin() else ctx.actor.id
    total, rows = archive.search(ctx.s, words, terms.filters, viewer_id=viewer, limit=SHOWN,
                                 offset=(terms.page - 1) * SHOWN)
    pages = max(1, -(-total // SHOWN))
    if terms.page > pages:
        raise Refused("list_no_page", page=terms.page, pages=pages)
    depts = archive.departments_of(ctx.s, [r.id for r, _ in rows])
    fields = tuple((f"{ctx.t(REFS[r.kind], id=r.entity_id)} {r.title}",
                    " · ".join(filter(None, (name, ctx.t(f"kind_{r.kind}"), ctx.local(r.happened_at).strftime("%Y-%m-%d"),
                                             texts.names(ctx.lang, depts.get(r.id, [])))))) for r, name in rows)
    note = ctx.t("search_none") if not rows else ctx.t("list_page", page=terms.page, pages=pages) if pages > 1 else ""
    if terms.page < pages:
        note += ctx.t("search_next", terms=terms.typed, page=terms.page + 1)
    card = Card(kind="archive_search", key=f"search:{ctx.actor.id}", title=ctx.t("search_title", q=terms.query[:40]),
                status=ctx.t("search_count", n=total), color="blue" if rows else "grey", fields=fields, note=note)
    ctx.audit("archive.search", entity_type="archive", reason=terms.query[:200])
    if ctx.chat is None:
        ctx.say(card=card)
    else:  # what one person may read is not the group's: the results go to them alone
        ctx.tell_user(ctx.actor, Message((), card))
        ctx.say(ctx.at(ctx.actor), " ", ctx.t("search_sent_private"))
    return None


# --- the retrospective's wait ---------------------------------------------------------------------------

def _name(s: Any, project_id: int) -> str:
    project = s.get(Project, project_id)
    return project.name if project is not None else ""


def describe_retro_waiting(ctx: Ctx, wait: Wait) -> str:
    return ctx.t("waiting_retro", name=_name(ctx.s, wait.entity_id), id=wait.entity_id, since=ctx.fmt(wait.raised_at))


def describe_retro_nag(n: Any, wait: Wait) -> str:  # n: the sweep's Notifier
    return n.t("nag_retro", name=_name(n.s, wait.entity_id), id=wait.entity_id, since=n.fmt(wait.raised_at))


def describe_retro_what(n: Any, wait: Wait) -> str:
    return n.t("what_retro", name=_name(n.s, wait.entity_id))


WAIT_DESCRIBERS = {"retro": describe_retro_waiting, "retro:nag": describe_retro_nag, "retro:what": describe_retro_what}
HELP_LINES: tuple[tuple[str, str, str], ...] = (
    ("close_project", "结项（项目群里，协同负责人）", "close project (in the project's group, its coordinator)"),
    ("retrospective", "复盘 做得好的 沟通及时（换行）不足 联调晚了（换行）改进 提前对齐接口；复盘 #P1",
     "retro went-well quick replies short late integration improve align APIs early; retro #P1"),
    ("search_archive", "查找 推广 部门 市场部 类型 任务 时间 2026-11", "search launch dept 市场部 type task time 2026-11"),
)
