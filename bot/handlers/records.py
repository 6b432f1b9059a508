"""The project's records kept in the chat: 任务列表 (the project's 任务分工表), filterable and paged, and
紧急事务 (an urgent task that must be answered within `[rules.urgent] respond_hours`).

A list is a card of one page: each task one field (name → owner, collaborators, deadline, deliverable,
priority, dependencies, status), so every platform shows the same table and the platforms' size caps
shorten a long row with "…" instead of refusing the card. Ten rows per page keeps within the smallest
platform's field count (WeCom's 20) with room for the page line.
"""

from __future__ import annotations

import re
from dataclasses import replace
from datetime import timedelta
from typing import Any

from sqlalchemy import or_, select

from collabbot.bot import texts
from collabbot.bot.commands import Command, parse, priority_of
from collabbot.bot.context import ADDRESSEES, Ctx, Refused, snapshot
from collabbot.bot.dates import parse_held_at, parse_when
from collabbot.bot.events import MARKER
from collabbot.bot.handlers.common import (
    MAX_TITLE,
    bad,
    capped,
    chat_project,
    missing,
    not_allowed,
    people,
    present,
    priority_named,
    project_named,
    refuse_if_closed,
    when,
    with_project,
)
from collabbot.bot.handlers.task_creation import card, new_task, task_chat
from collabbot.bot.replies import Card, Message, Part, Reply
from collabbot.bot.reports.scope import is_project_member
from collabbot.bot.rules import states
from collabbot.bot.rules.reminders import next_step
from collabbot.bot.views import COLORS, blocked_ids, status_label
from collabbot.bot.waits import close_waits, open_wait
from collabbot.storage.models import (
    Chat,
    Department,
    Meeting,
    MeetingAction,
    Milestone,
    Project,
    ProjectDepartment,
    Risk,
    Task,
    TaskCollaborator,
    TaskDependency,
    User,
    Wait,
)

PAGE_SIZE = 10
MAX_PAGE = 999
# `项目 新品上市` typed anywhere in a private command's text (a text field's word is only a field in some places)
_PROJECT_WORDS = re.compile(r"(?:^|\s)(?:项目|project)(?:[=:：＝]\s*|\s+)(\S+)", re.IGNORECASE)


# --- records in private chat: the project is named, or the person's only one -----------------------


def private_cmd(ctx: Ctx, cmd: Command) -> Command:
    """In a private chat, `项目 新品上市` anywhere in the text names the project (and leaves the text)."""
    if ctx.chat is not None or cmd.get("project"):
        return cmd
    found = _PROJECT_WORDS.search(cmd.text)
    if found is None:
        return cmd
    text = (cmd.text[:found.start()] + " " + cmd.text[found.end():]).strip()
    spoken = _PROJECT_WORDS.sub(" ", cmd.spoken, count=1)  # the same words out of the text as typed
    return replace(cmd, text=" ".join(text.split()), spoken=" ".join(spoken.split()),
                   fields={**cmd.fields, "project": found.group(1)})


def member_projects(ctx: Ctx) -> list[Project]:
    """The projects the actor belongs to, by the visibility rule of tasks (coordinator, creator, on one of
    its tasks, head of one of its departments)."""
    me = ctx.actor.id
    on_task = select(Task.project_id).where(Task.project_id.is_not(None), or_(Task.owner_id == me,
                                                                            Task.initiator_id == me))
    collab = (select(Task.project_id).join(TaskCollaborator, TaskCollaborator.task_id == Task.id)
              .where(TaskCollaborator.user_id == me))
    headed = select(Department.id).where(Department.head_id == me)
    in_dept = select(ProjectDepartment.project_id).where(ProjectDepartment.department_id.in_(headed))
    return list(ctx.s.scalars(select(Project).where(or_(
        Project.coordinator_id == me, Project.created_by_id == me, Project.id.in_(on_task), Project.id.in_(collab),
        Project.id.in_(in_dept), Project.initiating_dept_id.in_(headed))).order_by(Project.id)))


def record_project(ctx: Ctx, cmd: Command, *, create: bool = False) -> Project:
    """The project a record command is about: the group's; in a private chat the one named with 项目 (if the
    person may see it), else the person's only project."""
    if ctx.chat is not None:
        return chat_project(ctx, cmd, create=create)
    name = cmd.get("project").strip()
    if name:
        found = project_named(ctx, name)
        if found is None:
            raise Refused("no_project_private", name=name[:40])
        if not (ctx.is_admin() or is_project_member(ctx.s, ctx.actor.id, found.id)):
            raise Refused("record_not_member", name=found.name)
        return refuse_if_closed(ctx, found) if create else found
    mine = member_projects(ctx)
    if len(mine) == 1:
        return refuse_if_closed(ctx, mine[0]) if create else mine[0]
    if not mine:
        raise Refused("record_no_project", example=with_project(ctx, cmd, ""))
    raise Refused("record_which_project", names=texts.names(ctx.lang, (p.name for p in mine[:10])),
                  example=with_project(ctx, cmd, mine[0].name))


def may_see_project(ctx: Ctx, project_id: int | None) -> bool:
    """A record of a project: in that project's group, or for its members (and admins) anywhere."""
    if project_id is None or ctx.is_admin():
        return True
    if ctx.chat is not None and ctx.chat.project_id == project_id:
        return True
    return is_project_member(ctx.s, ctx.actor.id, project_id)


def group_of(ctx: Ctx, project: Project) -> Chat | None:
    """Where a record made in private chat is announced: this group, or the project's first active group."""
    return task_chat(ctx, project)


def announce(ctx: Ctx, project: Project, *parts: Part, card: Card | None = None) -> None:
    """Said where the command came from; a command typed anywhere but the project's group (a private chat,
    another project's group with 项目 …) is also posted to the project's group."""
    ctx.say(*parts, card=card)
    group = group_of(ctx, project) if ctx.chat is None or ctx.chat.project_id != project.id else None
    if group is not None and group is not ctx.chat:
        ctx.tell_chat(group, Message(tuple(parts), card))


# the order a list shows: what needs attention first
FLAG_ORDER = ("overdue", "blocked", "review", "in_progress", "todo", "done", "cancelled")
# status filter words beyond each status's own name: every open task
OPEN_WORDS = frozenset({"未完成", "open", "进行中的"})
# what the reports and people call a late task, besides its status name (已延期)
OVERDUE_WORDS = frozenset({"逾期", "已逾期", "延期", "超期", "过期", "late"})


def _status_filter(ctx: Ctx, value: str) -> str:
    """A status name in either language (or its key) -> the flag it means; 未完成/open -> "open"."""
    word = value.strip().lower()
    if word in OPEN_WORDS:
        return "open"
    if word in OVERDUE_WORDS:
        return "overdue"
    for lang in ("zh", "en"):
        for flag in FLAG_ORDER:
            if word in (flag, texts.status_name(lang, flag).lower()):
                return flag
    known = texts.names(ctx.lang, (texts.status_name(ctx.lang, f) for f in FLAG_ORDER))
    raise Refused("list_bad_status", value=value.strip()[:20], known=known)


def _page(ctx: Ctx, cmd: Command) -> int:
    value = cmd.get("page").strip()
    if not value and "page" not in cmd.fields:
        return 1
    if not re.fullmatch(r"\d{1,3}", value) or not 1 <= int(value) <= MAX_PAGE:
        raise Refused("list_bad_page", value=value[:20])
    return int(value)


def list_tasks(ctx: Ctx, cmd: Command) -> Reply | None:
    """任务列表 [状态 进行中] [部门 技术部] [@某人] [页 2]: the project's tasks, most pressing first."""
    cmd = private_cmd(ctx, cmd)
    project = record_project(ctx, cmd)
    wanted = _status_filter(ctx, cmd.get("status")) if cmd.get("status") else ""
    if not wanted and cmd.text:
        wanted = _status_filter(ctx, cmd.text)
    page = _page(ctx, cmd)
    stmt = select(Task).where(Task.project_id == project.id)
    filters: list[str] = []
    if cmd.get("department"):
        dept = ctx.department(cmd.get("department"))
        stmt = stmt.where(Task.department_id == dept.id)
        filters.append(dept.name)
    person: User | None = ctx.mention(cmd.mentions[0]) if cmd.mentions else None
    if person is not None:
        collaborating = select(TaskCollaborator.task_id).where(TaskCollaborator.user_id == person.id)
        stmt = stmt.where((Task.owner_id == person.id) | Task.id.in_(collaborating))
        filters.append(person.name)
    if wanted == "open" or wanted in ("overdue", "blocked", "in_progress", "todo", "review"):
        stmt = stmt.where(Task.status.in_(states.OPEN))
    elif wanted in ("done", "cancelled"):
        stmt = stmt.where(Task.status == wanted)
    else:
        stmt = stmt.where(Task.status != "cancelled")
    if wanted:
        filters.append(texts.t(ctx.lang, "list_open") if wanted == "open" else texts.status_name(ctx.lang, wanted))
    tasks = list(ctx.s.scalars(stmt.order_by(Task.id)))
    blocked = blocked_ids(ctx.s, [t.id for t in tasks])
    flagged = [(states.flags(t.status, t.deadline, ctx.now, t.id in blocked, t.submitted_at), t) for t in tasks]
    if wanted and wanted != "open":
        flagged = [(f, t) for f, t in flagged if wanted in f]
    far = ctx.now.replace(year=9999)
    # open urgent matters first, then the most pressing state, the nearest deadline
    flagged.sort(key=lambda ft: (not (ft[1].urgent and ft[1].status in states.OPEN), FLAG_ORDER.index(ft[0][0]),
                                 ft[1].deadline or far, ft[1].id))
    pages = max(1, -(-len(flagged) // PAGE_SIZE))
    if page > pages:
        raise Refused("list_no_page", page=page, pages=pages)
    shown = [t for _, t in flagged[(page - 1) * PAGE_SIZE:page * PAGE_SIZE]]
    ctx.say(card=_card(ctx, project.id, project.name, shown, blocked, len(flagged), page, pages, filters))
    return None


def _dependencies(ctx: Ctx, task_ids: list[int]) -> dict[int, list[int]]:
    out: dict[int, list[int]] = {}
    rows = ctx.s.execute(select(TaskDependency.task_id, TaskDependency.depends_on_id)
                         .where(TaskDependency.task_id.in_(task_ids)).order_by(TaskDependency.depends_on_id))
    for task_id, depends_on in rows:
        out.setdefault(task_id, []).append(depends_on)
    return out


def task_row(ctx: Ctx, task: Task, depends: list[int], blocked: bool) -> tuple[str, str]:
    """One row of the 任务分工表: (#id name, status｜owner｜deadline｜collaborators｜deliverable｜priority｜deps):
    the status first, so that a small card (WeCom cuts a row short) still says which tasks are late."""
    label, _ = status_label(ctx.lang, task, ctx.now, blocked)
    none = ctx.t("none")
    value = ctx.t(
        "list_row",
        owner=task.owner.name,
        collaborators=texts.names(ctx.lang, (u.name for u in task.collaborators)) or none,
        deadline=ctx.fmt(task.deadline),
        deliverable=task.deliverable_expected or none,
        priority=texts.priority_name(ctx.lang, task.priority),
        depends=texts.names(ctx.lang, (f"#{d}" for d in depends)) or none,
        status=label,
    )
    return f"#{task.id} {task.title}", value


def _card(ctx: Ctx, project_id: int, name: str, tasks: list[Task], blocked: set[int], total: int, page: int,
          pages: int, filters: list[str]) -> Card:
    depends = _dependencies(ctx, [t.id for t in tasks])
    rows = tuple(task_row(ctx, t, depends.get(t.id, []), t.id in blocked) for t in tasks)
    status = ctx.t("list_count", n=total) + (f" · {' · '.join(filters)}" if filters else "")
    note = ctx.t("list_page", page=page, pages=pages)
    if page < pages:
        note += ctx.t("list_next", page=page + 1)
    worst = states.flags(tasks[0].status, tasks[0].deadline, ctx.now, tasks[0].id in blocked,
                         tasks[0].submitted_at)[0] if tasks else "done"
    if not tasks:
        note = ctx.t("list_empty")
    return Card(kind="task_list", key=f"tasklist:{project_id}", title=ctx.t("list_title", name=name), status=status,
                color=COLORS[worst] if tasks else "grey", fields=rows, note=note)


def urgent(ctx: Ctx, cmd: Command) -> Reply | None:
    """紧急 客户投诉升级 负责人 @李四 协作部门 技术部,设计部 [截止 …]: an urgent task. The owner must respond
    (确认收到) within `[rules.urgent] respond_hours`; the collaborating departments' heads join it; every
    message about it carries the platforms' strongest alert."""
    cmd = private_cmd(ctx, cmd)
    project = record_project(ctx, cmd, create=True)
    if not cmd.text:
        raise missing(ctx, "title")
    title = capped(ctx, cmd.text, "title", MAX_TITLE)
    owners = people(ctx, cmd, "owner") or [ctx.mention(i) for i in cmd.mentions[:1]]
    if not owners:
        raise missing(ctx, "owner")
    if len(owners) > 1:
        raise Refused("one_owner", first=owners[0].name, others=" ".join(f"@{u.name}" for u in owners[1:]))
    owner = owners[0]
    depts = [ctx.department(n) for n in re.split(r"[,，、\s]+", cmd.get("collab_depts")) if n]
    heads = [d.head for d in depts if d.head is not None]
    collaborators = people(ctx, cmd, "collaborators") + [h for h in heads if h.id != owner.id]
    rules = ctx.bot.config.rules
    deadline = when(ctx, cmd, "deadline") or ctx.now + timedelta(hours=rules.urgent_respond_hours)
    if deadline < ctx.now:
        raise Refused("deadline_past", when=ctx.fmt(deadline))
    task = new_task(ctx, title=title, owner=owner, project=project, parent=None, deadline=deadline, priority="high",
                    collaborators=list(dict.fromkeys(collaborators)), department=None,
                    initiating_dept_id=ctx.actor.department_id)
    task.urgent = True
    # the assignment's wait follows the urgent rhythm from the start
    step = next_step(ctx.now, 0, None, False, rules.for_urgent(), ctx.bot.calendar)
    for wait in ctx.s.scalars(select(Wait).where(Wait.entity_type == "task", Wait.entity_id == task.id,
                                                 Wait.answered_at.is_(None))):
        wait.next_due_at = step[1] if step else None
    ctx.s.flush()
    ctx.audit("task.urgent", task)
    respond_by = ctx.fmt(ctx.now + timedelta(hours=rules.urgent_respond_hours))
    c = card(ctx, task)
    headline = ctx.t("urgent_created", id=task.id, title=task.title, by=respond_by)
    parts: list[Part] = [headline, ctx.at(owner)]
    for u in task.collaborators:
        parts += [" ", ctx.at(u)]
    if task.chat is not None:
        ctx.tell_chat(task.chat, Message(tuple(parts), c, urgent=True))
    if task.chat is None or ctx.chat is None or ctx.chat.id != task.chat.id:  # typed elsewhere: answered there too
        ctx.say(*parts)
    ctx.tell_user(owner, Message((ctx.t("urgent_assigned", by=respond_by),), c, urgent=True),
                  key=f"assign:task:{task.id}:{owner.id}:{task.version}")
    for head in heads:
        if head.id != owner.id:
            ctx.tell_user(head, Message((ctx.t("urgent_dept", id=task.id, title=task.title),), c, urgent=True),
                          key=f"urgent:task:{task.id}:{head.id}")
    return None


HELP_LINES: tuple[tuple[str, str, str], ...] = (
    ("list_tasks", "任务列表 状态 进行中 部门 技术部 @李四 页 2", "tasks all status in_progress dept 技术部 page 2"),
    ("urgent", "紧急 客户投诉升级 负责人 @李四 协作部门 技术部,设计部",
     "urgent Customer complaint owner @Li with-depts 技术部,设计部"),
)


# --- the risk register (风险记录表) -----------------------------------------------------------------

LEVELS = ("high", "mid", "low")
_RISK_REF = re.compile(r"#R(\d{1,9})\b", re.IGNORECASE)
RISK_ACTIONS = {"新增": "add", "新建": "add", "登记": "add", "add": "add", "new": "add", "列表": "list", "list": "list",
                "更新": "update", "修改": "update", "update": "update", "关闭": "close", "close": "close"}


def risk_level(risk: Risk) -> str:
    """The register's level: the worse of likelihood and impact."""
    return min((risk.likelihood, risk.impact), key=LEVELS.index)


def _level_word(ctx: Ctx, cmd: Command, field: str) -> str | None:
    value = cmd.get(field)
    if not value and field not in cmd.fields:
        return None
    level = priority_of(value)
    if level is None:
        raise bad(ctx, field, value)
    return level


def risk_card(ctx: Ctx, risk: Risk) -> Card:
    level = risk_level(risk)
    status = ctx.t("risk_open" if risk.status == "open" else "risk_closed")
    fields = (
        (ctx.t("f_risk_level"), texts.priority_name(ctx.lang, level)),
        (ctx.t("f_likelihood"), texts.priority_name(ctx.lang, risk.likelihood)),
        (ctx.t("f_impact"), texts.priority_name(ctx.lang, risk.impact)),
        (ctx.t("f_response"), risk.response or ctx.t("none")),
        (ctx.t("f_owner"), risk.owner.name),
        (ctx.t("f_risk_since"), ctx.fmt(risk.created_at)),
    )
    color = "grey" if risk.status != "open" else {"high": "red", "mid": "orange", "low": "blue"}[level]
    return Card(kind="risk", key=f"risk:{risk.id}", title=ctx.t("risk_title", id=risk.id, text=risk.description),
                status=status, color=color, fields=fields)


def _one_risk(ctx: Ctx, cmd: Command) -> Risk:
    found = _RISK_REF.search(cmd.text)
    if found is None:  # the example is the command they typed, with the number where it goes
        typed = " ".join(cmd.raw.split()[:2]) if len(cmd.raw.split()) > 1 else cmd.raw.strip()
        bare = re.search(r"(?<![#\w])[Rr]?(\d{1,9})\b", cmd.text)
        raise Refused("risk_no_ref", example=f"{typed} #R{bare.group(1) if bare else 1}")
    risk = ctx.s.get(Risk, int(found.group(1)))
    # the owner's leader sees it too: an escalation about it reached them, wherever they are in the project
    if risk is None or not (may_see_project(ctx, risk.project_id) or ctx.escalated_to(risk.owner)):
        raise Refused("risk_not_found", id=found.group(1))
    return risk


def _may_edit_risk(ctx: Ctx, risk: Risk) -> None:
    coordinator = risk.project.coordinator_id if risk.project else None
    if (ctx.actor.id not in (risk.owner_id, risk.created_by_id, coordinator) and not ctx.is_admin()
            and not ctx.escalated_to(risk.owner)):
        raise not_allowed(ctx, "a_edit_risk", ctx.t("w_risk_editors"))


def risk(ctx: Ctx, cmd: Command) -> Reply | None:
    """风险 新增 描述 … 可能性 高 影响 中 应对 … 负责人 @… | 风险 列表 | 风险 更新 #R1 … | 风险 关闭 #R1 | 风险 #R1."""
    cmd = private_cmd(ctx, cmd)
    words = cmd.text.split(maxsplit=1)
    action = RISK_ACTIONS.get(words[0].lower()) if words else "list"
    rest = words[1] if action and len(words) > 1 else ("" if action else cmd.text)
    if action is None:
        if _RISK_REF.fullmatch(cmd.text.strip()):
            ctx.say(card=risk_card(ctx, _one_risk(ctx, cmd)))
            return None
        raise Refused("risk_bad_action", value=(words[0] if words else "")[:20])
    if action == "list":
        return _list_risks(ctx, cmd)
    if action == "add":
        return _add_risk(ctx, cmd, rest)
    found = _one_risk(ctx, cmd)
    _may_edit_risk(ctx, found)
    if found.status != "open":
        raise Refused("risk_is_closed", id=found.id)
    before = snapshot(found)
    if action == "close":
        found.status, found.closed_at = "closed", ctx.now
        close_waits(ctx, "risk", found.id)
        key = "risk_closed_note"
    else:
        changed = _apply_risk_fields(ctx, cmd, found)
        if not changed:
            raise missing(ctx, "risk_fields")
        if ctx.actor.id == found.owner_id:
            close_waits(ctx, "risk", found.id, person_id=found.owner_id)
        key = "risk_updated"
    found.updated_at, found.version = ctx.now, found.version + 1
    ctx.s.flush()
    ctx.audit(f"risk.{action}", found, before)
    announce(ctx, found.project, ctx.t(key, id=found.id), card=risk_card(ctx, found))  # typed privately: the group too
    return None


def _apply_risk_fields(ctx: Ctx, cmd: Command, found: Risk) -> bool:
    changed = False
    for field in ("likelihood", "impact"):
        level = _level_word(ctx, cmd, field)
        if level is not None:
            setattr(found, field, level)
            changed = True
    if cmd.get("response"):
        found.response = capped(ctx, cmd.get("response"), "response")
        changed = True
    owners = people(ctx, cmd, "owner")
    if owners:
        if len(owners) > 1:
            raise bad(ctx, "owner", texts.names(ctx.lang, (u.name for u in owners)))
        if owners[0].id != found.owner_id:
            close_waits(ctx, "risk", found.id)
            found.owner_id = owners[0].id
            ctx.s.flush()
            ctx.s.refresh(found)
            open_wait(ctx, "risk", "risk", found.id, found.owner, found.chat)
            ctx.tell_user(found.owner, Message((ctx.t("risk_assigned", id=found.id),), risk_card(ctx, found)),
                          key=f"assign:risk:{found.id}:{found.owner_id}:{found.version}")
        changed = True
    return changed


def _add_risk(ctx: Ctx, cmd: Command, rest: str) -> Reply | None:
    project = record_project(ctx, cmd, create=True)
    group = group_of(ctx, project)
    # the description as typed, a name inside it kept (`@王五 那边人手不足`: 王五 is what it is about, not
    # who owns it); a mention before or after it, or after 负责人, names the owner
    typed = cmd.spoken.strip().partition(" ")[2]  # after the action word (新增)
    inside = {int(m.group(1)) for m in MARKER.finditer(ADDRESSEES.sub("", typed))}
    rest = ctx.with_names(typed) if typed else rest
    description = re.sub(r"^(描述|description)(?:[=:：＝]\s*|\s+)", "", rest.strip(), flags=re.IGNORECASE).strip()
    if not description:
        raise missing(ctx, "risk_description")
    likelihood, impact = _level_word(ctx, cmd, "likelihood"), _level_word(ctx, cmd, "impact")
    if likelihood is None:
        raise missing(ctx, "likelihood")
    if impact is None:
        raise missing(ctx, "impact")
    owners = people(ctx, cmd, "owner") or [present(ctx, ctx.mention(i)) for i in cmd.mentions
                                           if i not in inside][:1] or [ctx.actor]
    if len(owners) > 1:
        raise bad(ctx, "owner", texts.names(ctx.lang, (u.name for u in owners)))
    found = Risk(project_id=project.id, chat_id=group.id if group else None, description=capped(ctx, description, "risk_description",
                                                                                  MAX_TITLE),
                 likelihood=likelihood, impact=impact, response=capped(ctx, cmd.get("response"), "response"),
                 owner_id=owners[0].id, created_by_id=ctx.actor.id, status="open", created_at=ctx.now,
                 updated_at=ctx.now, version=1)
    ctx.s.add(found)
    ctx.s.flush()
    ctx.s.refresh(found)
    # the owner owes an answer (a response plan, an update) unless they just gave one themselves
    if found.owner_id != ctx.actor.id or not found.response:
        open_wait(ctx, "risk", "risk", found.id, found.owner, group)
    ctx.audit("risk.add", found)
    c = risk_card(ctx, found)
    announce(ctx, project, ctx.t("risk_created", id=found.id), ctx.at(found.owner), card=c)
    if found.owner_id != ctx.actor.id:
        ctx.tell_user(found.owner, Message((ctx.t("risk_assigned", id=found.id),), c),
                      key=f"assign:risk:{found.id}:{found.owner_id}:{found.version}")
    return None


def _list_risks(ctx: Ctx, cmd: Command) -> Reply | None:
    project = record_project(ctx, cmd)
    every = list(ctx.s.scalars(select(Risk).where(Risk.project_id == project.id).order_by(Risk.id)))
    shown = sorted((r for r in every if r.status == "open"), key=lambda r: (LEVELS.index(risk_level(r)), r.id))
    rows = tuple((ctx.t("risk_title", id=r.id, text=r.description),
                  ctx.t("risk_row", level=texts.priority_name(ctx.lang, risk_level(r)),
                        likelihood=texts.priority_name(ctx.lang, r.likelihood),
                        impact=texts.priority_name(ctx.lang, r.impact), owner=r.owner.name,
                        response=r.response or ctx.t("none"))) for r in shown[:PAGE_SIZE * 2])
    closed = len(every) - len(shown)
    worst = risk_level(shown[0]) if shown else ""
    ctx.say(card=Card(kind="risk_list", key=f"risklist:{project.id}", title=ctx.t("risk_list_title", name=project.name),
                      status=ctx.t("risk_list_count", open=len(shown), closed=closed),
                      color={"high": "red", "mid": "orange", "low": "blue"}.get(worst, "grey"), fields=rows,
                      note="" if shown else ctx.t("risk_list_empty")))
    return None


def describe_risk_waiting(ctx: Ctx, wait: Wait) -> str:
    found = ctx.s.get(Risk, wait.entity_id)
    return ctx.t("waiting_risk", id=wait.entity_id, text=found.description[:60] if found else "",
                 since=ctx.fmt(wait.raised_at))


def describe_risk_nag(n: Any, wait: Wait) -> str:  # n: the sweep's Notifier
    found = n.s.get(Risk, wait.entity_id)
    return n.t("nag_risk", id=wait.entity_id, text=found.description[:60] if found else "", since=n.fmt(wait.raised_at))


def describe_risk_what(n: Any, wait: Wait) -> str:
    found = n.s.get(Risk, wait.entity_id)
    return n.t("what_risk", id=wait.entity_id, text=found.description[:60] if found else "")


WAIT_DESCRIBERS = {"risk": describe_risk_waiting, "risk:nag": describe_risk_nag, "risk:what": describe_risk_what}
HELP_LINES += (
    ("risk", "风险 新增 描述 供应商交付延迟 可能性 高 影响 中 应对 启用备选供应商 负责人 @李四；风险 列表；风险 更新 #R1 应对 …；风险 关闭 #R1",
     "risk add supplier late likelihood high impact mid response backup supplier owner @Li; risk list; risk close #R1"),
)


# --- meeting minutes and action items (会议纪要与行动项表) ---------------------------------------------

# each 行动项 word starts an action item: usually on its own line of a multi-line message
_ACTION_SPLIT = re.compile(r"(?:^|\s)(?:行动项|action)(?:[:：]|(?=\s))", re.IGNORECASE)
# minutes on several lines: an action item is a line that begins with the word (one inside the summary
# is part of it); on one line, any standalone word begins one
_ACTION_LINE = re.compile(r"(?:^|\n)\s*(?:行动项|action)(?:[:：]|(?=\s))", re.IGNORECASE)
_MEETING_REF = re.compile(r"#M(\d{1,9})\b", re.IGNORECASE)
MAX_ACTIONS = 20


def meeting_card(ctx: Ctx, meeting: Meeting) -> Card:
    none = ctx.t("none")
    fields: list[tuple[str, str]] = [
        (ctx.t("f_held_at"), ctx.fmt(meeting.held_at) if meeting.held_at else none),
        *([(ctx.t("f_attendees"), meeting.attendees)] if meeting.attendees else []),
        (ctx.t("f_departments"), meeting.departments or none),
        (ctx.t("f_summary"), meeting.summary or none),
        (ctx.t("f_decisions"), meeting.decisions or none),
    ]
    blocked = blocked_ids(ctx.s, [t.id for t in meeting.actions])
    for task in meeting.actions:
        label, _ = status_label(ctx.lang, task, ctx.now, task.id in blocked)
        fields.append((ctx.t("meeting_action", id=task.id, title=task.title),
                       ctx.t("meeting_action_row", owner=task.owner.name, deadline=ctx.fmt(task.deadline),
                             status=label)))
    done = sum(t.status == "done" for t in meeting.actions)
    return Card(kind="meeting", key=f"meeting:{meeting.id}", title=ctx.t("meeting_title", id=meeting.id,
                                                                          topic=meeting.topic),
                status=ctx.t("meeting_status", done=done, n=len(meeting.actions)),
                color="green" if done == len(meeting.actions) else "blue", fields=tuple(fields),
                note=ctx.t("meeting_note", who=meeting.recorder.name, when=ctx.fmt(meeting.created_at)))


def minutes(ctx: Ctx, cmd: Command) -> Reply | None:
    """会议纪要 主题 … 时间 … 参与部门 … 摘要 … 决议 …, then `行动项 内容 负责人 @… 截止 …` lines: the minutes
    and one task per action item (owner, deadline, a link back to the meeting), in one step."""
    project = record_project(ctx, private_cmd(ctx, cmd), create=True)
    group = group_of(ctx, project)
    head, *items = (_ACTION_LINE if "\n" in cmd.raw.strip() else _ACTION_SPLIT).split(cmd.raw)
    header = parse(head)
    if not isinstance(header, Command):
        raise Refused("meeting_bad")
    header = private_cmd(ctx, header)
    leftover = ctx.with_names(header.spoken)
    if header.get("topic") and leftover:  # words no field took: never recorded as if they were not typed
        raise Refused("meeting_unread", text=leftover[:60])
    topic = header.get("topic") or leftover
    if not topic:
        raise missing(ctx, "topic")
    if len(items) > MAX_ACTIONS:
        raise Refused("meeting_too_many", max=MAX_ACTIONS)
    held_at = when(ctx, header, "held_at", "held_at", read=parse_held_at)  # looking back: 周三 on a Friday
    attendees = texts.names(ctx.lang, [*(ctx.mention(i).name for i in header.field_mentions.get("attendees", ())),
                                       *(w for w in re.split(r"[,，、\s]+", header.get("attendees")) if w)])
    departments = header.get("departments")
    for name in re.split(r"[,，、\s]+", departments):
        if name:
            ctx.department(name)  # refuses an unknown department by name
    meeting = Meeting(project_id=project.id, chat_id=group.id if group else None, topic=capped(ctx, topic, "topic", MAX_TITLE),
                      held_at=held_at, departments=departments, summary=capped(ctx, header.get("summary"), "summary"),
                      decisions=capped(ctx, header.get("decisions"), "decisions"),
                      attendees=capped(ctx, attendees, "attendees"), recorder_id=ctx.actor.id,
                      created_at=ctx.now)
    ctx.s.add(meeting)
    ctx.s.flush()
    tasks: list[Task] = []
    for n, item in enumerate(items, 1):
        tasks.append(_action_task(ctx, project, meeting, n, item))
    ctx.s.add_all(MeetingAction(meeting_id=meeting.id, task_id=t.id) for t in tasks)
    ctx.s.flush()
    ctx.s.refresh(meeting)
    ctx.audit("meeting.record", meeting)
    c = meeting_card(ctx, meeting)
    parts: list[Part] = [ctx.t("meeting_recorded", id=meeting.id, n=len(tasks))]
    for owner in dict.fromkeys(t.owner for t in tasks):
        parts += [" ", ctx.at(owner)]
    announce(ctx, project, *parts, card=c)
    for task in tasks:
        ctx.tell_user(task.owner, Message((ctx.t("meeting_action_assigned", id=meeting.id, topic=meeting.topic),),
                                          card(ctx, task)),
                      key=f"assign:task:{task.id}:{task.owner_id}:{task.version}")
    return None


def _action_task(ctx: Ctx, project: Any, meeting: Meeting, n: int, item: str) -> Task:
    parsed = parse(f"新建任务 {item.strip()}")
    if not isinstance(parsed, Command):
        raise Refused("meeting_bad_action", n=n)
    title = re.sub(r"^(内容|content)(?:[=:：＝]\s*|\s+)", "", parsed.text, flags=re.IGNORECASE).strip()
    if not title:
        raise Refused("meeting_action_missing", n=n, what=texts.field_name(ctx.lang, "title"))
    owners = people(ctx, parsed, "owner") or [ctx.mention(i) for i in parsed.mentions[:1]]
    if len(owners) != 1:
        raise Refused("meeting_action_missing", n=n, what=texts.field_name(ctx.lang, "owner"))
    deadline = when(ctx, parsed, "deadline")
    if deadline is not None and deadline < ctx.now:
        raise Refused("deadline_past", when=ctx.fmt(deadline))
    link = ctx.t("meeting_link", id=meeting.id, topic=meeting.topic)
    remarks = f"{parsed.get('remarks')}；{link}" if parsed.get("remarks") else link
    return new_task(ctx, title=capped(ctx, title, "title", MAX_TITLE), owner=owners[0], project=project, parent=None,
                    deadline=deadline, priority=priority_named(ctx, parsed, "mid"),  # as 新建任务 … reads it
                    collaborators=people(ctx, parsed, "collaborators"),
                    department=ctx.department(parsed.get("department")) if parsed.get("department") else None,
                    initiating_dept_id=ctx.actor.department_id,
                    deliverable=capped(ctx, parsed.get("deliverable"), "deliverable"),
                    remarks=capped(ctx, remarks, "remarks"))


def show_meeting(ctx: Ctx, cmd: Command) -> Reply | None:
    """会议 #M1: the minutes with each action item's status now; 会议 (or 会议 列表) lists the project's."""
    found = _MEETING_REF.search(cmd.text)
    if found is None:
        if cmd.text.strip().lower() in ("", "列表", "全部", "list", "all"):
            return _list_meetings(ctx, private_cmd(ctx, cmd))
        raise Refused("meeting_no_ref")
    meeting = ctx.s.get(Meeting, int(found.group(1)))
    if meeting is None or not may_see_project(ctx, meeting.project_id):
        raise Refused("meeting_not_found", id=found.group(1))
    ctx.say(card=meeting_card(ctx, meeting))
    return None


def _list_meetings(ctx: Ctx, cmd: Command) -> Reply | None:
    project = record_project(ctx, cmd)
    every = list(ctx.s.scalars(select(Meeting).where(Meeting.project_id == project.id)
                               .order_by(Meeting.id.desc()).limit(PAGE_SIZE * 2)))
    rows = tuple((f"#M{m.id} {m.topic}", ctx.fmt(m.held_at or m.created_at)) for m in every)
    ctx.say(card=Card(kind="meetings", key=f"meetings:{project.id}", title=ctx.t("meetings_title", name=project.name),
                      color="blue", fields=rows, note=ctx.t("meetings_hint") if rows else ctx.t("meetings_empty")))
    return None


HELP_LINES += (
    ("minutes", "会议纪要 主题 双十二方案评审 时间 12-03 14:00 参与部门 市场部,技术部 摘要 … 决议 采用方案B（换行）"
                "行动项 内容 完成H5改版 负责人 @李四 截止 12-10",
     "minutes topic Launch review held 12-03 14:00 departments 市场部,技术部 decisions plan B (new line) "
     "action redo the H5 owner @Li due 12-10"),
    ("show_meeting", "会议 #M1；会议 列表", "meeting #M1; meeting list"),
)


# --- milestones (关键里程碑) ---------------------------------------------------------------------------


def milestone_at_risk(ctx: Ctx, milestone: Milestone) -> bool:
    """At risk: its task (or, for a project milestone, a task due by then) is late, or its task is due after it."""
    if milestone.status == "done":
        return False
    if milestone.task_id is not None:
        task = ctx.s.get(Task, milestone.task_id)
        if task is None or task.status in states.CLOSED:
            return False
        return states.is_overdue(task.status, task.deadline, ctx.now, task.submitted_at) or (
            task.deadline is not None and task.deadline > milestone.due)
    late = select(Task.id).where(Task.project_id == milestone.project_id, Task.status.in_(states.OPEN),
                                 Task.deadline.is_not(None), Task.deadline <= milestone.due,
                                 Task.deadline < ctx.now).limit(1)
    return ctx.s.scalar(late) is not None


def _milestone_due(ctx: Ctx, cmd: Command) -> tuple[str, Any]:
    """The title and due date: `截止 10-15`, or a date ending the text (`里程碑 方案初稿 10-15`)."""
    due = when(ctx, cmd, "deadline")
    words = cmd.text.split()
    if due is None:
        for n in (2, 1):
            if len(words) > n and (found := parse_when(" ".join(words[-n:]), ctx.local(ctx.now))) is not None:
                due, words = found, words[:-n]
                break
    if due is None:
        raise missing(ctx, "deadline")
    if due <= ctx.now:  # a milestone is ahead; one already past would only ever show as missed
        raise Refused("deadline_past", when=ctx.fmt(due))
    return " ".join(words), due


_MILESTONE_REF = re.compile(r"#MS(\d{1,9})\b", re.IGNORECASE)
MILESTONE_DONE_WORDS = frozenset({"完成", "已完成", "达成", "done", "complete"})


def milestone(ctx: Ctx, cmd: Command) -> Reply | None:
    """里程碑 方案初稿 10-15 [#3]: a milestone of the project (or of task #3); 里程碑 alone lists them;
    里程碑 完成 #MS1 (or its name) marks one reached."""
    cmd = private_cmd(ctx, cmd)
    project = record_project(ctx, cmd)
    words = cmd.text.split(maxsplit=1)
    if words and words[0].lower() in MILESTONE_DONE_WORDS and "deadline" not in cmd.fields and (
            len(words) > 1 or cmd.tasks) and not _ends_with_date(ctx, cmd.text):
        return _milestone_done(ctx, cmd, refuse_if_closed(ctx, project), words[1] if len(words) > 1 else "")
    if not cmd.text and not cmd.tasks and "deadline" not in cmd.fields:
        return _list_milestones(ctx, project.id, project.name)
    refuse_if_closed(ctx, project)
    task = ctx.task(cmd.tasks[0]) if cmd.tasks else None
    if task is not None and task.project_id != project.id:
        raise Refused("not_found_task", id=task.id)
    title, due = _milestone_due(ctx, cmd)
    if not title:
        raise missing(ctx, "milestone_title")
    refuse_if_closed(ctx, project)
    found = Milestone(project_id=project.id, task_id=task.id if task else None,
                      title=capped(ctx, title, "milestone_title", MAX_TITLE), due=due, status="open",
                      created_by_id=ctx.actor.id, created_at=ctx.now)
    ctx.s.add(found)
    ctx.s.flush()
    ctx.audit("milestone.add", found)
    announce(ctx, project, ctx.t("milestone_added", title=found.title, due=ctx.fmt(due), id=found.id,
                                 task=ctx.t("milestone_of_task", id=task.id) if task else ""))
    return None


def _ends_with_date(ctx: Ctx, text: str) -> bool:
    """`里程碑 完成验收 12-20` adds a milestone named 完成验收; `里程碑 完成 方案初稿` marks one done."""
    words = text.split()
    return len(words) > 1 and any(parse_when(" ".join(words[-n:]), ctx.local(ctx.now)) is not None
                                  for n in (1, 2) if len(words) > n)


def _milestone_done(ctx: Ctx, cmd: Command, project: Project, rest: str) -> Reply | None:
    """里程碑 完成 #MS1 | 里程碑 完成 方案初稿 | 里程碑 完成 #3 (task #3's only open milestone)."""
    stmt = select(Milestone).where(Milestone.project_id == project.id)
    ref = _MILESTONE_REF.search(rest)
    if ref is not None:
        candidates = list(ctx.s.scalars(stmt.where(Milestone.id == int(ref.group(1)))))
        if not candidates:
            raise Refused("milestone_not_found", name=f"#MS{ref.group(1)}", name_list=_open_names(ctx, project.id))
    elif rest.strip():
        candidates = list(ctx.s.scalars(stmt.where(Milestone.title == rest.strip()).order_by(Milestone.id)))
        if not candidates:
            raise Refused("milestone_not_found", name=rest.strip()[:40], name_list=_open_names(ctx, project.id))
    else:
        candidates = list(ctx.s.scalars(stmt.where(Milestone.task_id == cmd.tasks[0], Milestone.status == "open")
                                        .order_by(Milestone.id)))
        if not candidates:
            raise Refused("milestone_not_found", name=f"#{cmd.tasks[0]}", name_list=_open_names(ctx, project.id))
    open_ones = [m for m in candidates if m.status == "open"]
    if not open_ones:
        done = candidates[0]
        raise Refused("milestone_already_done", title=done.title, when=ctx.fmt(done.done_at),
                      who=ctx.s.get(User, done.done_by_id).name if done.done_by_id else "-")
    if len(open_ones) > 1:
        raise Refused("milestone_ambiguous", refs=texts.names(ctx.lang, (f"#MS{m.id} {ctx.fmt(m.due)}" for m in open_ones)))
    found = open_ones[0]
    task = ctx.s.get(Task, found.task_id) if found.task_id else None
    allowed = {project.coordinator_id, found.created_by_id, task.owner_id if task else None}
    if ctx.actor.id not in allowed and not ctx.is_admin():
        raise not_allowed(ctx, "a_milestone_done", ctx.t("w_milestone_done"))
    before = snapshot(found)
    found.status, found.done_at, found.done_by_id = "done", ctx.now, ctx.actor.id
    ctx.s.flush()
    ctx.audit("milestone.done", found, before)
    late = ctx.t("milestone_late", due=ctx.fmt(found.due)) if ctx.now > found.due else ""
    announce(ctx, project, ctx.t("milestone_reached", title=found.title, id=found.id, who=ctx.actor.name) + late)
    return None


def _open_names(ctx: Ctx, project_id: int) -> str:
    names = ctx.s.scalars(select(Milestone.title).where(Milestone.project_id == project_id,
                                                        Milestone.status == "open").order_by(Milestone.due).limit(8))
    return texts.names(ctx.lang, names) or ctx.t("none")


def _list_milestones(ctx: Ctx, project_id: int, name: str) -> Reply | None:
    every = list(ctx.s.scalars(select(Milestone).where(Milestone.project_id == project_id)
                               .order_by(Milestone.due, Milestone.id)))
    rows = []
    for m in every[:PAGE_SIZE * 2]:
        if m.status == "done":
            state = ctx.t("milestone_done_row", when=ctx.fmt(m.done_at))
        elif m.due < ctx.now:  # its day has gone and it was not marked reached
            state = ctx.t("milestone_missed")
        else:
            state = ctx.t("milestone_at_risk") if milestone_at_risk(ctx, m) else ctx.t("milestone_ok")
        rows.append((f"#MS{m.id} {ctx.fmt(m.due)} {m.title}",
                     state + (ctx.t("milestone_of_task", id=m.task_id) if m.task_id else "")))
    done = sum(m.status == "done" for m in every)
    ctx.say(card=Card(kind="milestones", key=f"milestones:{project_id}", title=ctx.t("milestones_title", name=name),
                      status=ctx.t("milestones_count", done=done, n=len(every)) if every else "",
                      color="green" if every and done == len(every) else "blue", fields=tuple(rows),
                      note=ctx.t("milestones_hint") if rows else ctx.t("milestones_empty")))
    return None


HELP_LINES += (("milestone", "里程碑 方案初稿 12-15（或 里程碑 #1 联调完成 12-08）；里程碑；里程碑 完成 #MS1",
                 "milestone draft 12-15; milestone; milestone done #MS1"),)
