"""Making a task and telling its owner: shared by the task commands and by approvals (一键转任务)."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import select

from collabbot.bot.context import Ctx
from collabbot.bot.handlers.common import present
from collabbot.bot.replies import Card, Message, Part
from collabbot.bot.views import task_card
from collabbot.bot.waits import open_wait
from collabbot.storage.models import Chat, Department, Project, Task, User


def card(ctx: Ctx, task: Task, full: bool = False) -> Card:
    return task_card(ctx.s, task, ctx.lang, ctx.now, ctx.bot.calendar.tz, full=full)


def task_chat(ctx: Ctx, project: Project | None) -> Chat | None:
    """Where a task (or a record) of `project` lives: this chat, unless it is another project's group (a
    subtask of 新品上市 typed in 双十二大促群 is 新品上市's, and so are its nags); else the project's group."""
    if ctx.chat is not None and (project is None or ctx.chat.project_id in (None, project.id)):
        return ctx.chat
    if project is None:
        return None
    return ctx.s.scalar(select(Chat).where(Chat.project_id == project.id, Chat.active.is_(True)).order_by(Chat.id))


def new_task(ctx: Ctx, *, title: str, owner: User, project: Project | None, parent: Task | None,
             deadline: datetime | None, priority: str, collaborators: list[User], department: Department | None,
             initiating_dept_id: int | None, deliverable: str = "", attachments: list[str] | None = None,
             remarks: str = "") -> Task:
    present(ctx, owner)  # however the owner was named (a mention, a meeting's action line), not someone who left
    chat = task_chat(ctx, project) or (parent.chat if parent else None)
    task = Task(
        project_id=project.id if project else None,
        parent_id=parent.id if parent else None,
        chat_id=chat.id if chat else None,
        title=title,
        initiator_id=ctx.actor.id,
        initiating_dept_id=initiating_dept_id,
        department=department or (ctx.s.get(Department, owner.department_id) if owner.department_id else None),
        owner=owner,
        status="todo",
        priority=priority,
        deadline=deadline,
        original_deadline=deadline,
        deliverable_expected=deliverable,
        attachments=attachments or [],
        remarks=remarks,
        percent=0,
        created_at=ctx.now,
        updated_at=ctx.now,
        version=1,
    )
    task.collaborators = [u for u in collaborators if u.id != owner.id]
    if owner.id == ctx.actor.id:  # one's own task needs no 确认收到: acknowledged as it is made
        task.acknowledged_at = ctx.now
    ctx.s.add(task)
    ctx.s.flush()
    if task.acknowledged_at is None:
        open_wait(ctx, "assign", "task", task.id, owner, task.chat)
    ctx.audit("task.create", task)
    return task


def announce_assignment(ctx: Ctx, task: Task, headline: str) -> None:
    """The owner hears it privately with the card; the group sees one line with real mentions."""
    c = card(ctx, task)
    parts: list[Part] = [headline, ctx.at(task.owner)]
    for i, u in enumerate(task.collaborators):  # named as collaborators: not read as a second owner
        parts += [ctx.t("collab_intro") if i == 0 else "、", ctx.at(u)]
    if task.chat is not None:
        ctx.tell_chat(task.chat, Message(tuple(parts), c))
    if task.chat is None or ctx.chat is None or ctx.chat.id != task.chat.id:  # typed elsewhere: answered there too
        ctx.say(*parts)
    if task.acknowledged_at is None:  # "please acknowledge" is not for the one who made it their own task
        ctx.tell_user(task.owner, Message((ctx.t("task_assigned"),), c),
                      key=f"assign:task:{task.id}:{task.owner_id}:{task.version}")
