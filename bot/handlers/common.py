"""Small helpers the handlers share: required fields, people, dates, permissions."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime

from sqlalchemy import select

from collabbot.bot import texts
from collabbot.bot.commands import Command, priority_of, typed_alias
from collabbot.bot.context import Ctx, Refused
from collabbot.bot.dates import parse_when
from collabbot.bot.events import show_markers
from collabbot.bot.reports.scope import is_project_member
from collabbot.storage.models import Project, ProjectArchive, Task, User

MAX_TITLE = 200
MAX_TEXT = 2000


def missing(ctx: Ctx, field: str) -> Refused:
    return Refused("missing_field", field=texts.field_name(ctx.lang, field), example=texts.field_example(ctx.lang, field))


def bad(ctx: Ctx, field: str, value: str) -> Refused:
    return Refused("bad_field", field=texts.field_name(ctx.lang, field), value=value[:40],
                   example=texts.field_example(ctx.lang, field))


def not_allowed(ctx: Ctx, action: str, why: str) -> Refused:
    return Refused("not_allowed", action=ctx.t(action), why=why)


def capped(ctx: Ctx, value: str, field: str, limit: int = MAX_TEXT) -> str:
    if len(value) > limit:
        raise Refused("too_long_field", field=texts.field_name(ctx.lang, field), max=limit)
    return value


def one_task(ctx: Ctx, cmd: Command) -> Task:
    if not cmd.tasks:
        typed = typed_alias(cmd.raw)
        first = cmd.text.split()[0] if cmd.text.split() else ""
        if typed and first.isascii() and first.isdigit():  # 确认收到 1: the number without its #
            raise Refused("ref_needs_hash", example=f"{typed} #{first}")
        if typed and cmd.name != "report_progress":  # the example in the command they typed
            raise Refused("missing_field", field=texts.field_name(ctx.lang, "task"), example=f"{typed} #12")
        raise missing(ctx, "task")
    return ctx.task(cmd.tasks[0])


def present(ctx: Ctx, user: User) -> User:
    """`user`, who is given work here: someone who has left (an org sync no longer lists them) is refused,
    with what to type instead. Their past work still shows their name; only new work is refused."""
    if user.left_at is not None:
        raise Refused("person_left", name=user.name)
    return user


def user_by_name(ctx: Ctx, name: str) -> User:
    """The one person of that name who is still here (a newcomer may share a leaver's name); refused when
    only someone who has left has it."""
    name = name.strip().lstrip("@")
    users = list(ctx.s.scalars(select(User).where(User.name == name).order_by(User.id).limit(5)))
    here = [u for u in users if u.left_at is None]
    if len(here) == 1:
        return here[0]
    if not here and users:
        return present(ctx, users[0])
    if here:  # two people share the name: a guess would give one of them the other's work
        depts = [u.department.name if u.department else ctx.t("none") for u in here]
        raise Refused("ambiguous_user", name=name[:40], count=len(here), depts=texts.names(ctx.lang, depts))
    raise Refused("unknown_user", name=name[:40])


def people(ctx: Ctx, cmd: Command, field: str) -> list[User]:
    """The people a field names, to be given work: its @mentions, or plain names typed without @ (comma
    separated); someone who has left is refused."""
    found = [present(ctx, ctx.mention(i)) for i in cmd.field_mentions.get(field, ())]
    text = cmd.get(field)
    if text:
        for name in text.replace("，", ",").replace("、", ",").replace(",", " ").split():
            found.append(user_by_name(ctx, name))
    unique: list[User] = []
    for user in found:
        if user not in unique:
            unique.append(user)
    return unique


def when(ctx: Ctx, cmd: Command, field: str, example_field: str = "deadline",
         read: Callable[[str, datetime], datetime | None] = parse_when) -> datetime | None:
    """The moment `field` names, read by `read` (a deadline ahead by default; `parse_held_at` for what
    already happened); None when not given, refused when given empty or not understood."""
    value = cmd.get(field)
    if not value:
        if field in cmd.fields:
            raise missing(ctx, example_field)
        return None
    parsed = read(value, ctx.local(ctx.now))
    if parsed is None:
        raise bad(ctx, example_field, value)
    return parsed


def priority_named(ctx: Ctx, cmd: Command, default: str) -> str:
    """The priority the command names (高/中/低 …), else `default`; a word that is none refused by name."""
    if not (cmd.get("priority") or "priority" in cmd.fields):
        return default
    found = priority_of(cmd.get("priority"))
    if not found:
        raise bad(ctx, "priority", cmd.get("priority"))
    return found


def coordinator_of(ctx: Ctx, task: Task) -> User | None:
    project = task.project
    return project.coordinator if project is not None else None


def is_manager(ctx: Ctx, task: Task) -> bool:
    """Initiator, owner, coordinator or admin: may split, link and cancel."""
    coordinator = coordinator_of(ctx, task)
    return ctx.actor.id in (task.initiator_id, task.owner_id) or (
        coordinator is not None and coordinator.id == ctx.actor.id) or ctx.is_admin()


def is_reviewer(ctx: Ctx, task: Task) -> bool:
    coordinator = coordinator_of(ctx, task)
    return ctx.actor.id == task.initiator_id or (
        coordinator is not None and coordinator.id == ctx.actor.id) or ctx.is_admin()


def closed_at(ctx: Ctx, project: Project) -> datetime | None:
    """When the project was closed (结项), or None while it is open."""
    return ctx.s.scalar(select(ProjectArchive.closed_at).where(ProjectArchive.project_id == project.id))


def refuse_if_closed(ctx: Ctx, project: Project) -> Project:
    """A closed project takes no new work: its records are archived as they were. It can still be read."""
    closed = closed_at(ctx, project)
    if closed is not None:
        raise Refused("project_closed", name=project.name, when=ctx.fmt(closed), id=project.id)
    return project


def project_named(ctx: Ctx, name: str) -> Project | None:
    """The project of that name, the newest if there are several (a group's next project may repeat a
    closed one's name): how every command that names a project finds it."""
    return ctx.s.scalar(select(Project).where(Project.name == name).order_by(Project.id.desc()).limit(1))


def chat_project(ctx: Ctx, cmd: Command | None = None, *, create: bool = False) -> Project:
    """The project of this group (or the one named with 项目 in a private chat).

    With `create` (the command adds work to it), a group with no project yet gets one named after the
    group, coordinated by the person who spoke: the first task in a new group should just work, and
    绑定项目 can fill in the rest; a closed project is refused.
    """
    if ctx.chat is not None and ctx.chat.project_id is not None:
        project = ctx.s.get(Project, ctx.chat.project_id)
        named = cmd.get("project").strip() if cmd is not None else ""
        if project is not None and named and named != project.name:
            # `项目 新品上市` typed in another project's group: the project named, not the group's
            other = project_named(ctx, named)
            if other is None:
                raise Refused("no_project_private", name=named[:40])
            return _named_project(ctx, other, create)
        if project is not None:
            return refuse_if_closed(ctx, project) if create else project
    if create and ctx.chat is not None and not (cmd is not None and cmd.get("project")):
        # two first commands in a new group at once: the second waits here, then finds the first's project
        ctx.s.flush()  # a new group name read from this event must not be lost by the refresh
        ctx.s.refresh(ctx.chat, with_for_update=True)
        if ctx.chat.project_id is not None and (project := ctx.s.get(Project, ctx.chat.project_id)) is not None:
            return project
        project = Project(name=ctx.chat.name or ctx.chat.platform_chat_id, created_by_id=ctx.actor.id,
                          created_at=ctx.now, coordinator_id=ctx.actor.id, initiating_dept_id=ctx.actor.department_id)
        ctx.s.add(project)
        ctx.s.flush()
        ctx.chat.project_id = project.id
        ctx.audit("project.bind", project)
        ctx.say(ctx.t("project_auto", name=project.name, who=ctx.actor.name))
        return project
    name = cmd.get("project") if cmd is not None else ""
    if name:
        project = project_named(ctx, name)
        if project is not None:
            return _named_project(ctx, project, create)
    if ctx.chat is None:  # a private chat has no group to take the project from: say how to name it
        if name:
            raise Refused("no_project_private", name=name[:40])
        raise Refused("private_needs_project", example=with_project(ctx, cmd, ""))
    raise Refused("no_project")


def _named_project(ctx: Ctx, project: Project, create: bool) -> Project:
    """A project named with 项目 outside its own group: only its members (and admins) may read or change it
    from there, as in a private chat; in its group everyone there may."""
    if not (ctx.is_admin() or is_project_member(ctx.s, ctx.actor.id, project.id)):
        coordinator = project.coordinator.name if project.coordinator else ctx.t("none")
        raise Refused("not_member_named", name=project.name, coordinator=coordinator)
    return refuse_if_closed(ctx, project) if create else project


def with_project(ctx: Ctx, cmd: Command | None, name: str) -> str:
    """What they typed, with the project named (`name`, else a placeholder): the example a private chat's
    refusal gives, in the command they used."""
    typed = " ".join(show_markers(cmd.raw, [u.name for u in ctx.mentions]).split()) if cmd is not None else ""
    typed = typed if len(typed) <= 40 else typed[:40] + "…"
    word, placeholder = ("项目", "项目名") if ctx.lang == "zh" else ("project", "NAME")
    return f"{typed} {word} {name or placeholder}".strip()
