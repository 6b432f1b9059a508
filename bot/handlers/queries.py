"""Questions people ask, mostly in private chat: 我的任务, 任务 #N, 待我处理, 帮助."""

from __future__ import annotations

from sqlalchemy import or_, select
from sqlalchemy.orm import joinedload

from collabbot.bot import texts
from collabbot.bot.commands import ALIASES, Command
from collabbot.bot.context import Ctx
from collabbot.bot.handlers.common import missing, not_allowed
from collabbot.bot.handlers.task_creation import card
from collabbot.bot.replies import Reply
from collabbot.bot.reports.scope import heads_of, is_project_member
from collabbot.bot.rules import states
from collabbot.bot.views import blocked_ids
from collabbot.storage.models import HelpRequest, Project, Task, Wait

GROUP_ORDER = ("overdue", "blocked", "review", "in_progress", "todo")


def _line(ctx: Ctx, task: Task) -> str:
    return ctx.t("task_line", id=task.id, title=task.title, owner=task.owner.name, deadline=ctx.fmt(task.deadline),
                 percent=task.percent)


def my_tasks(ctx: Ctx, cmd: Command) -> Reply | None:
    tasks = list(ctx.s.scalars(select(Task).where(Task.owner_id == ctx.actor.id, Task.status.in_(states.OPEN))
                               .options(joinedload(Task.owner))
                               .order_by(Task.deadline.is_(None), Task.deadline, Task.id)))
    if not tasks:
        ctx.say(ctx.t("my_tasks_empty"))
        return None
    blocked = blocked_ids(ctx.s, [t.id for t in tasks])  # one query, not one per task
    groups: dict[str, list[Task]] = {g: [] for g in GROUP_ORDER}
    for task in tasks:
        flags = states.flags(task.status, task.deadline, ctx.now, task.id in blocked, task.submitted_at)
        groups[flags[0]].append(task)
    lines = [ctx.t("my_tasks_title")]
    for name in GROUP_ORDER:
        if groups[name]:
            lines.append(ctx.t("group_heading", name=texts.status_name(ctx.lang, name)))
            lines += [_line(ctx, t) for t in groups[name]]
    ctx.say("\n".join(lines))
    return None


def may_view_task(ctx: Ctx, task: Task) -> bool:
    """Who may read a task (remarks included), as for approvals: the project's members, the people on
    the task, the heads above them and the task's department head, admins, and the task's own group."""
    actor = ctx.actor.id
    if ctx.chat is not None and ctx.chat.id == task.chat_id:
        return True
    on_task = [task.owner, task.initiator, *task.collaborators]
    if actor in {u.id for u in on_task}:
        return True
    heads = set().union(*(heads_of(ctx.s, u) for u in on_task))
    if task.department is not None and task.department.head_id is not None:
        heads.add(task.department.head_id)
    if actor in heads or ctx.is_admin():
        return True
    return task.project_id is not None and is_project_member(ctx.s, actor, task.project_id)


def show_task(ctx: Ctx, cmd: Command) -> Reply | None:
    if not cmd.tasks:
        raise missing(ctx, "task")
    task = ctx.task(cmd.tasks[0], lock=False, to_read=True)  # a cancelled one too: its card says so
    if not may_view_task(ctx, task):
        raise not_allowed(ctx, "a_view_task", ctx.t("w_task_viewers"))
    ctx.say(card=card(ctx, task, full=True))
    return None


def waiting_on_me(ctx: Ctx, cmd: Command) -> Reply | None:
    me = ctx.actor.id
    lines = [ctx.t("waiting_title")]
    waits = list(ctx.s.scalars(select(Wait).where(Wait.person_id == me, Wait.answered_at.is_(None))
                               .order_by(Wait.raised_at)))
    # what the lines name, read in one query per kind rather than one per wait
    tasks = {t.id: t for t in ctx.s.scalars(select(Task).where(Task.id.in_(
        {w.entity_id for w in waits if w.entity_type == "task" and w.kind != "overdue"})))}
    helps = {h.id: h for h in ctx.s.scalars(select(HelpRequest).where(HelpRequest.id.in_(
        {w.entity_id for w in waits if w.entity_type == "help"})))}
    for wait in waits:
        since = ctx.fmt(wait.raised_at)
        if wait.entity_type == "task" and wait.kind == "overdue":
            continue  # listed below with the other overdue tasks
        if wait.entity_type == "task":
            task = tasks.get(wait.entity_id)
            if task is not None:
                lines.append(ctx.t("waiting_ack", id=task.id, title=task.title, since=since))
        elif wait.entity_type == "help":
            req = helps.get(wait.entity_id)
            if req is not None:
                lines.append(ctx.t("waiting_help", id=req.id, text=req.text[:60], since=since))
        else:
            line = ctx.bot.describe_wait(ctx, wait)
            if line:
                lines.append(line)
    coordinated = select(Project.id).where(Project.coordinator_id == me)
    for task in ctx.s.scalars(select(Task).where(Task.status == "review", or_(Task.initiator_id == me,
                                                 Task.project_id.in_(coordinated))).order_by(Task.id)):
        lines.append(ctx.t("waiting_review", id=task.id, title=task.title))
    for task in ctx.s.scalars(select(Task).where(Task.owner_id == me, Task.status.in_(("todo", "in_progress")),
                                                 Task.deadline < ctx.now).order_by(Task.deadline)):
        lines.append(ctx.t("waiting_overdue", id=task.id, title=task.title))
    ctx.say("\n".join(lines) if len(lines) > 1 else ctx.t("waiting_empty"))
    return None


HELP_EXAMPLES: tuple[tuple[str, str, str], ...] = (
    ("bind_project", "绑定项目 新品上市 协同负责人 @张三 参与部门 市场部,技术部 目标 双十二上线 开始 12-01 结束 12-31",
     "project bind Launch coordinator @Zhang departments 市场部,技术部 start 12-01 end 12-31"),
    ("show_project", "项目信息", "project info"),
    ("create_task", "新建任务 活动H5开发 负责人 @李四 协作 @王五 截止 12-10 优先级 高 交付物 H5链接",
     "task new Campaign-H5 owner @Li with @Wang due 12-10 priority high"),
    ("add_subtask", "子任务 #1 接口联调 负责人 @王五 截止 12-08 部门 技术部", "subtask #1 API owner @Wang due 12-08"),
    ("add_dependency", "依赖 #3 #2（#3 等 #2 完成）", "depend #3 #2 (#3 waits for #2)"),
    ("remove_dependency", "取消依赖 #3 #2", "undepend #3 #2"),
    ("acknowledge", "确认收到 #1", "ack #1"),
    ("start_task", "开始 #1", "start #1"),
    ("report_progress", "进度 #1 60% 完成 首页 下一步 联调 问题 接口未就绪", "progress #1 60% done home next api"),
    ("finish_task", "完成 #1 交付物 https://example.com/h5", "done #1 deliverable https://example.com/h5"),
    ("accept_task", "通过 #1", "accept #1"),
    ("return_task", "退回 #1 原因 缺少埋点", "return #1 reason tracking is missing"),
    ("reassign_task", "转交 #1 @王五 原因 人手调整", "reassign #1 @Wang reason workload"),
    ("set_deadline", "截止 #1 12-10（还没有截止时间的任务）", "due #1 12-10 (a task without a deadline)"),
    ("comment", "评论 #1 @王五 请看一下设计稿", "comment #1 @Wang please check the design"),
    ("ask_help", "求助 技术部 需要两名前端支援 #1", "ask 技术部 need two front-end devs #1"),
    ("answer_help", "答复 #H1 已安排小王支援", "answer #H1 Wang will help"),
    ("cancel_task", "取消任务 #1", "task cancel #1"),
    ("weekly_note", "本周总结 完成H5联调，下周上线", "weekly note H5 done, launch next week"),
    ("my_tasks", "我的任务", "my tasks"),
    ("show_task", "任务 #1", "task #1"),
    ("audit_log", "操作记录 #1", "log #1"),
    ("waiting_on_me", "待我处理", "todo"),
    ("help", "帮助", "help"),
)

def help_command(ctx: Ctx, cmd: Command) -> Reply | None:
    """帮助: one example per command; the engine assembles the lines of every handler module (`Bot.help_lines`)."""
    lines = [ctx.t("help_title")]
    for name, zh, en in ctx.bot.help_lines:
        aliases = ALIASES[name]
        english = next((a for a in aliases if a.isascii()), "")
        head = f"{aliases[0]} / {english}" if ctx.lang == "zh" else f"{english} / {aliases[0]}"
        lines.append("• " + texts.labelled(ctx.lang, head, zh if ctx.lang == "zh" else en))
    ctx.say("\n".join(lines))
    return None
