"""Binding a group to a project, showing it, and department heads' weekly notes."""

from __future__ import annotations

import re
from datetime import timedelta

from sqlalchemy import select

from collabbot.bot import texts
from collabbot.bot.commands import Command
from collabbot.bot.context import Ctx, Refused, snapshot
from collabbot.bot.handlers.common import (
    MAX_TITLE,
    capped,
    chat_project,
    closed_at,
    missing,
    not_allowed,
    people,
    present,
    project_named,
    refuse_if_closed,
    when,
)
from collabbot.bot.handlers.records import private_cmd, record_project
from collabbot.bot.replies import Card, Reply
from collabbot.bot.signoff_view import signoff_fields
from collabbot.storage.models import Chat, Department, JobRun, Project, WeeklyNote


def _departments(ctx: Ctx, text: str) -> list[Department]:
    names = [n for n in re.split(r"[,，、\s]+", text) if n]
    return [ctx.department(n) for n in names]


def project_card(ctx: Ctx, project: Project) -> Card:
    fields = [
        (ctx.t("f_coordinator"), project.coordinator.name if project.coordinator else ctx.t("none")),
        (ctx.t("f_dept"), project.initiating_dept.name if project.initiating_dept else ctx.t("none")),
        (ctx.t("f_departments"), texts.names(ctx.lang, (d.name for d in project.departments)) or ctx.t("none")),
    ]
    if project.goal:
        fields.append((ctx.t("f_goal"), project.goal))
    if project.kpis:
        fields.append((ctx.t("f_kpis"), project.kpis))
    if project.scope:
        fields.append((ctx.t("f_scope"), project.scope))
    if project.start_date or project.end_date:
        fields.append((ctx.t("f_dates"), f"{project.start_date or '?'} ~ {project.end_date or '?'}"))
    if project.remarks:
        fields.append((ctx.t("f_remarks"), project.remarks))
    fields += signoff_fields(ctx, project)  # who of the departments' heads confirmed the goal, KPIs and scope
    closed = closed_at(ctx, project)
    return Card(kind="project", key=f"project:{project.id}", title=ctx.t("project_line", name=project.name),
                status=ctx.t("archive_closed", when=ctx.fmt(closed)) if closed else "",
                color="grey" if closed else "blue", fields=tuple(fields))


def bind_project(ctx: Ctx, cmd: Command) -> Reply | None:
    if ctx.chat is None:
        raise Refused("need_group")
    # the group's row as it stands, locked: the engine may remember an older one (bot/known.py), and two binds
    # at once must not both create a project
    ctx.s.flush()
    ctx.s.refresh(ctx.chat, with_for_update=True)
    project = ctx.s.get(Project, ctx.chat.project_id) if ctx.chat.project_id else None
    if project is not None and closed_at(ctx, project) is not None:
        project = None  # the group's last project is closed: this binds its next one (the old stays archived)
    moved = _homeless(ctx, cmd.text.strip()) if project is None else None
    if moved:
        project = moved  # the project lost its group (bot removed, group disbanded): it moves here
    if project is not None:
        coordinator = project.coordinator
        if not (ctx.is_admin() or (coordinator is not None and coordinator.id == ctx.actor.id)):
            raise not_allowed(ctx, "a_edit_project", ctx.t("w_coordinator", name=coordinator.name if coordinator else "-"))
    elif not cmd.text:
        raise missing(ctx, "project_name")
    coordinators = people(ctx, cmd, "coordinator") or [present(ctx, ctx.mention(i)) for i in cmd.mentions[:1]]
    start = when(ctx, cmd, "start", "date")
    end = when(ctx, cmd, "end", "date")
    before = snapshot(project) if project is not None else None
    if project is None:
        project = Project(name=capped(ctx, cmd.text, "project_name", MAX_TITLE), created_by_id=ctx.actor.id,
                          created_at=ctx.now, coordinator_id=(coordinators[0] if coordinators else ctx.actor).id,
                          initiating_dept_id=ctx.actor.department_id)
        ctx.s.add(project)
        ctx.s.flush()
        ctx.chat.project_id = project.id
        key = "project_bound"
    else:
        key = "project_updated"
        if moved:
            ctx.chat.project_id = project.id
            key = "project_moved"
        elif cmd.text:
            project.name = capped(ctx, cmd.text, "project_name", MAX_TITLE)
        if coordinators:
            project.coordinator_id = coordinators[0].id
    if cmd.get("initiating_dept"):
        project.initiating_dept_id = ctx.department(cmd.get("initiating_dept")).id
    if cmd.get("departments"):
        project.departments = _departments(ctx, cmd.get("departments"))
    for name in ("goal", "kpis", "remarks", "scope"):
        if cmd.get(name):
            setattr(project, name, capped(ctx, cmd.get(name), name))
    if start is not None:
        project.start_date = start.date()
    if end is not None:
        project.end_date = end.date()
    if project.start_date and project.end_date and project.end_date < project.start_date:
        raise Refused("bad_field", field=ctx.t("f_dates"), value=f"{project.start_date}~{project.end_date}",
                      example="开始 12-01 结束 12-31")
    ctx.s.flush()
    ctx.s.refresh(project)
    ctx.audit("project.bind" if before is None else "project.move" if moved else "project.update", project, before)
    if key in ("project_bound", "project_moved"):
        ctx.say(ctx.t(key, name=project.name), ctx.at(project.coordinator), card=project_card(ctx, project))
    else:
        ctx.say(ctx.t(key, name=project.name), card=project_card(ctx, project))
    return None


def _homeless(ctx: Ctx, name: str) -> Project | None:
    """The open project of that name that has no group the bot is in (its group was lost), if any."""
    project = project_named(ctx, name) if name else None
    if project is None or closed_at(ctx, project) is not None:
        return None
    if ctx.s.scalar(select(Chat.id).where(Chat.project_id == project.id, Chat.active.is_(True)).limit(1)):
        return None
    return project


def show_project(ctx: Ctx, cmd: Command) -> Reply | None:
    if ctx.chat is None:  # a private chat has no group to ask about: the project is named
        name = (cmd.get("project") or cmd.text).strip()
        found = project_named(ctx, name) if name else None
        if found is None:
            raise Refused("no_project_private", name=name[:40]) if name else Refused("no_project_named")
        ctx.say(card=project_card(ctx, found))
        return None
    project = chat_project(ctx, cmd)
    ctx.say(card=project_card(ctx, project))
    return None


def weekly_note(ctx: Ctx, cmd: Command) -> Reply | None:
    cmd = private_cmd(ctx, cmd)  # in a private chat: `项目 新品上市` names it, or the head's only project
    project = refuse_if_closed(ctx, record_project(ctx, cmd))
    headed = list(ctx.s.scalars(select(Department).where(Department.head_id == ctx.actor.id).order_by(Department.id)))
    if not headed:
        raise not_allowed(ctx, "a_weekly_note", ctx.t("w_dept_head"))
    # for the department of theirs that takes part in the project (a head of two writes for the right one)
    taking_part = {d.id for d in project.departments} | ({project.initiating_dept_id} - {None})
    mine = [d for d in headed if d.id in taking_part]
    if project.departments and not mine:
        raise not_allowed(ctx, "a_weekly_note", ctx.t("w_project_dept_head", name=project.name))
    dept = (mine or headed)[0]
    text = ctx.with_names(cmd.spoken)  # "@李四 辛苦了": the name stays in the note
    if not text:
        raise missing(ctx, "weekly_note")
    today = ctx.local(ctx.now).date()
    year, week, _ = today.isocalendar()
    slot = f"{year}-W{week:02d}"
    sent = ctx.s.scalar(select(JobRun.id).where(JobRun.job == "weekly_summary", JobRun.slot == slot)) is not None
    if sent:  # this week's summary has gone out: the note goes with the next one, rather than nowhere
        year, week, _ = (today + timedelta(days=7)).isocalendar()
        slot = f"{year}-W{week:02d}"
    note = ctx.s.scalar(select(WeeklyNote).where(WeeklyNote.project_id == project.id,
                                                 WeeklyNote.department_id == dept.id, WeeklyNote.week == slot))
    if note is None:
        note = WeeklyNote(project_id=project.id, department_id=dept.id, week=slot, author_id=ctx.actor.id,
                          text="", created_at=ctx.now)
        ctx.s.add(note)
    note.text = capped(ctx, text, "weekly_note")
    note.author_id = ctx.actor.id
    ctx.s.flush()
    ctx.audit("project.weekly_note", note)
    ctx.say(ctx.t("weekly_note_saved_next" if sent else "weekly_note_saved", dept=dept.name))
    return None
