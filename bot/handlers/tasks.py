"""Task commands: create, split, link, acknowledge, start, report, finish, accept, return, reassign,
comment and cancel. Each runs inside the engine's unit of work and refuses with `Refused`."""

from __future__ import annotations

from datetime import datetime, timedelta

from sqlalchemy import select

from collabbot.bot import locks, texts
from collabbot.bot.approval_templates import extension_form
from collabbot.bot.commands import Command, priority_of
from collabbot.bot.context import Ctx, Refused, snapshot
from collabbot.bot.dates import parse_when
from collabbot.bot.handlers.approvals.flow import void_extensions
from collabbot.bot.handlers.common import (
    MAX_TITLE,
    bad,
    capped,
    chat_project,
    coordinator_of,
    is_manager,
    is_reviewer,
    missing,
    not_allowed,
    one_task,
    people,
    present,
    priority_named,
    when,
)
from collabbot.bot.handlers.task_creation import announce_assignment, card, new_task
from collabbot.bot.replies import At, CardAction, Message, Reply
from collabbot.bot.rules import states
from collabbot.bot.rules.deps import find_cycle
from collabbot.bot.texts import status_name
from collabbot.bot.views import open_predecessors
from collabbot.bot.waits import close_waits, open_wait
from collabbot.storage.models import (
    AuditEntry,
    Comment,
    Department,
    HelpRequest,
    ProgressReport,
    Task,
    TaskDependency,
    Wait,
)


def _touch(ctx: Ctx, task: Task) -> None:
    """A new version of the task, written now. Called before its waits are closed: their query would
    flush the task's other changes first, and the version would cost an UPDATE of its own."""
    task.updated_at = ctx.now
    task.version += 1
    ctx.s.flush()


def create_task(ctx: Ctx, cmd: Command) -> Reply | None:
    project = chat_project(ctx, cmd, create=True)
    template = None
    if cmd.get("template"):
        template = ctx.bot.config.task_template(cmd.get("template"))
        if template is None:
            known = texts.names(ctx.lang, (t.name for t in ctx.bot.config.task_templates)) or ctx.t("none")
            raise Refused("unknown_template", name=cmd.get("template")[:40], known=known)
    title = cmd.text or (template.name if template else "")
    if not title:
        raise missing(ctx, "title")
    capped(ctx, title, "title", MAX_TITLE)
    owners = people(ctx, cmd, "owner") or [ctx.mention(i) for i in cmd.mentions[:1]]
    if not owners:
        raise missing(ctx, "owner")
    if len(owners) > 1:
        raise Refused("one_owner", first=owners[0].name, others=" ".join(f"@{u.name}" for u in owners[1:]))
    owner = owners[0]
    deadline = when(ctx, cmd, "deadline")
    if deadline is None and template is not None and template.due_in_days:  # working days from today
        cal = ctx.bot.calendar
        day = cal.add_workdays(ctx.local(ctx.now).date(), template.due_in_days)
        deadline = datetime.combine(day, cal.periods[-1][1], tzinfo=cal.tz)  # the end of that working day
    if deadline is not None and deadline < ctx.now:
        raise Refused("deadline_past", when=ctx.fmt(deadline))
    priority = priority_named(ctx, cmd, template.priority if template else "mid")
    attachments = cmd.get("attachments").split() if cmd.get("attachments") else []
    if any(not a.startswith(("http://", "https://")) for a in attachments):
        raise bad(ctx, "attachments", cmd.get("attachments"))
    department = ctx.department(cmd.get("department")) if cmd.get("department") else None
    init_dept = ctx.department(cmd.get("initiating_dept")).id if cmd.get("initiating_dept") else ctx.actor.department_id
    task = new_task(
        ctx, title=title, owner=owner, project=project, parent=None, deadline=deadline, priority=priority,
        collaborators=people(ctx, cmd, "collaborators"), department=department, initiating_dept_id=init_dept,
        deliverable=capped(ctx, cmd.get("deliverable") or (template.deliverable if template else ""), "deliverable"),
        attachments=attachments, remarks=capped(ctx, cmd.get("remarks") or (template.remarks if template else ""), "remarks"),
    )
    headline = ctx.t("task_created", id=task.id, title=task.title)
    if template is not None and template.subtasks:
        for sub in template.subtasks:
            dept = ctx.department(sub.department) if sub.department else None
            sub_owner = (dept.head if dept is not None and dept.head is not None else owner)
            sub_deadline = _workdays_before(ctx, deadline, sub.offset_days) if deadline else None
            child = new_task(ctx, title=sub.title, owner=sub_owner, project=project, parent=task,
                              deadline=sub_deadline, priority=priority, collaborators=[], department=dept,
                              initiating_dept_id=init_dept)
            if child.acknowledged_at is None:  # not when the creator made it their own
                ctx.tell_user(sub_owner, Message((ctx.t("task_assigned"),), card(ctx, child)),
                              key=f"assign:task:{child.id}:{sub_owner.id}:{child.version}")
        ctx.s.refresh(task)
        headline = ctx.t("task_created_from_template", id=task.id, title=task.title, name=template.name,
                         n=len(template.subtasks))
    announce_assignment(ctx, task, headline)
    return None


def _workdays_before(ctx: Ctx, deadline: datetime, offset: int) -> datetime:
    """A template subtask's deadline: `offset` working days before its parent's (days off not counted), at
    the parent's time of day, never on a day off; a day already past falls due with the parent."""
    cal = ctx.bot.calendar
    local = deadline.astimezone(cal.tz)
    day = cal.add_workdays(local.date(), -offset)
    due = datetime.combine(day, local.timetz())
    return due if due >= ctx.now else deadline


def add_subtask(ctx: Ctx, cmd: Command) -> Reply | None:
    parent = one_task(ctx, cmd)
    if not is_manager(ctx, parent) and not ctx.heads_department(ctx.actor, parent.department_id):
        raise not_allowed(ctx, "a_subtask", ctx.t("w_managers"))
    if parent.status in states.CLOSED:
        raise Refused("bad_state", id=parent.id, status=status_name(ctx.lang, parent.status), action=ctx.t("a_subtask"))
    if not cmd.text:
        raise missing(ctx, "title")
    capped(ctx, cmd.text, "title", MAX_TITLE)
    owners = people(ctx, cmd, "owner") or [ctx.mention(i) for i in cmd.mentions[:1]]
    if len(owners) != 1:
        raise missing(ctx, "owner")
    title, typed = cmd.text, when(ctx, cmd, "deadline")
    *words, last = title.split()
    if typed is None and words and (at := parse_when(last, ctx.local(ctx.now))) is not None:
        title, typed = " ".join(words), at  # 拆分 #1 后端接口 @赵六 周五: a date ending the text is the deadline
    deadline = typed or parent.deadline
    if deadline is not None and deadline < ctx.now:
        raise Refused("deadline_past", when=ctx.fmt(deadline))
    if deadline and parent.deadline and deadline > parent.deadline:
        raise Refused("deadline_after_parent", when=ctx.fmt(parent.deadline))
    priority = parent.priority
    if cmd.get("priority"):
        priority = priority_of(cmd.get("priority")) or ""
        if not priority:
            raise bad(ctx, "priority", cmd.get("priority"))
    department = ctx.department(cmd.get("department")) if cmd.get("department") else None
    child = new_task(ctx, title=title, owner=owners[0], project=parent.project, parent=parent, deadline=deadline,
                      priority=priority, collaborators=people(ctx, cmd, "collaborators"), department=department,
                      initiating_dept_id=parent.initiating_dept_id,
                      deliverable=capped(ctx, cmd.get("deliverable"), "deliverable"),
                      remarks=capped(ctx, cmd.get("remarks"), "remarks"))
    _touch(ctx, parent)
    # the parent's deadline is said, not silently taken: （截止沿用 #1：12-10 18:00）
    due = ctx.t("subtask_parent_due", parent=parent.id, when=ctx.fmt(deadline)) if typed is None and deadline else ""
    announce_assignment(ctx, child, ctx.t("subtask_created", parent=parent.id, id=child.id, title=child.title, due=due))
    return None


GRAPH_LOCK = "task-dependencies"  # one lock for the whole graph: an edge may join tasks of two projects


def _edges_from(ctx: Ctx, start: int) -> dict[int, set[int]]:
    """The dependency edges reachable from `start`, read one level per query (not the whole table)."""
    edges: dict[int, set[int]] = {}
    frontier = {start}
    while frontier:
        rows = ctx.s.execute(select(TaskDependency.task_id, TaskDependency.depends_on_id)
                             .where(TaskDependency.task_id.in_(frontier))).all()
        for task_id, dep_id in rows:
            edges.setdefault(task_id, set()).add(dep_id)
        frontier = {dep_id for _, dep_id in rows} - edges.keys()
    return edges


def add_dependency(ctx: Ctx, cmd: Command) -> Reply | None:
    if len(cmd.tasks) < 2:
        raise missing(ctx, "dependency")
    task = ctx.task(cmd.tasks[0])
    if not is_manager(ctx, task):
        raise not_allowed(ctx, "a_depend", ctx.t("w_managers"))
    # Two commands each adding one edge may close a cycle that neither sees alone (1→2, 3→4, then
    # 依赖 #2 #3 and 依赖 #4 #1 at once): changes to the graph take turns, each reading it committed.
    locks.hold(ctx.s, GRAPH_LOCK)
    added, existing = [], []
    for dep_id in cmd.tasks[1:]:
        dep = ctx.task(dep_id, lock=False)
        if dep.id == task.id:
            raise Refused("dependency_self")
        cycle = find_cycle(_edges_from(ctx, dep.id), task.id, dep.id)
        if cycle is not None:
            raise Refused("dependency_cycle", cycle=" → ".join(f"#{n}" for n in cycle))
        if ctx.s.get(TaskDependency, (task.id, dep.id)) is None:
            ctx.s.add(TaskDependency(task_id=task.id, depends_on_id=dep.id))
            ctx.s.flush()
            added.append(dep.id)
            ctx.audit("task.depend", task, entity_type="task", entity_id=task.id, before=None)
        else:
            existing.append(dep.id)
    if added:
        _touch(ctx, task)
    ctx.say(*[ctx.t("dependency_added", task=task.id, dep=d) for d in added],
            *[ctx.t("dependency_exists", task=task.id, dep=d) for d in existing])
    return None


def remove_dependency(ctx: Ctx, cmd: Command) -> Reply | None:
    if len(cmd.tasks) != 2:
        raise missing(ctx, "dependency")
    task = ctx.task(cmd.tasks[0])
    if not is_manager(ctx, task):
        raise not_allowed(ctx, "a_depend", ctx.t("w_managers"))
    link = ctx.s.get(TaskDependency, (task.id, cmd.tasks[1]))
    if link is None:
        raise Refused("dependency_missing", task=task.id, dep=cmd.tasks[1])
    ctx.s.delete(link)
    _touch(ctx, task)
    ctx.audit("task.undepend", task, before={"depends_on": cmd.tasks[1]})
    ctx.say(ctx.t("dependency_removed", task=task.id, dep=cmd.tasks[1]))
    return None


def _owner_only(ctx: Ctx, task: Task, action: str) -> None:
    if ctx.actor.id != task.owner_id and not ctx.is_admin():
        raise not_allowed(ctx, action, ctx.t("w_owner_only", name=task.owner.name))


def _require_state(ctx: Ctx, task: Task, transition: str, action: str) -> None:
    if not states.can(transition, task.status):
        raise Refused("bad_state", id=task.id, status=status_name(ctx.lang, task.status), action=ctx.t(action))


def _not_blocked(ctx: Ctx, task: Task) -> None:
    preds = open_predecessors(ctx.s, task.id)
    if preds:
        raise Refused("blocked_by", id=task.id, deps=texts.names(ctx.lang, (f"#{p.id}「{p.title}」" for p in preds)))


def acknowledge(ctx: Ctx, task: Task, via_card: bool = False) -> Reply | None:
    _owner_only(ctx, task, "a_ack")
    _require_state(ctx, task, "acknowledge", "a_ack")
    if task.acknowledged_at is not None:
        if via_card:
            return Reply(toast=ctx.t("already_acknowledged", id=task.id), card=card(ctx, task))
        raise Refused("already_acknowledged", id=task.id)
    before = snapshot(task)
    task.acknowledged_at = ctx.now
    _touch(ctx, task)
    close_waits(ctx, "task", task.id, kind="assign")
    ctx.audit("task.acknowledge", task, before)
    text = ctx.t("acknowledged", id=task.id, title=task.title)
    if via_card:
        return Reply(toast=text, toast_kind="success", card=card(ctx, task))
    ctx.say(text)
    return None


def start(ctx: Ctx, task: Task, via_card: bool = False) -> Reply | None:
    _owner_only(ctx, task, "a_start")
    _require_state(ctx, task, "start", "a_start")
    _not_blocked(ctx, task)
    before = snapshot(task)
    task.status = "in_progress"
    task.started_at = task.started_at or ctx.now
    if task.acknowledged_at is None:
        task.acknowledged_at = ctx.now
    _touch(ctx, task)
    close_waits(ctx, "task", task.id, kind="assign")
    ctx.audit("task.start", task, before)
    if via_card:
        return Reply(toast=ctx.t("started", id=task.id), toast_kind="success", card=card(ctx, task))
    ctx.say(ctx.t("started", id=task.id))
    return None


def report_progress(ctx: Ctx, cmd: Command) -> Reply | None:
    task = one_task(ctx, cmd)
    _owner_only(ctx, task, "a_progress")
    _require_state(ctx, task, "progress", "a_progress")
    percent = cmd.percent
    if percent is None:
        raise missing(ctx, "percent")
    if not 0 <= percent <= 100:
        raise Refused("percent_range")
    before = snapshot(task)
    done_text = capped(ctx, " ".join(x for x in (cmd.text, cmd.get("done")) if x), "done")
    report = ProgressReport(task_id=task.id, author_id=ctx.actor.id, status="in_progress", percent=percent,
                            done_text=done_text, next_step=capped(ctx, cmd.get("next_step"), "next_step"),
                            problems=capped(ctx, cmd.get("problems"), "problems"), created_at=ctx.now)
    # a task still waiting for an open predecessor keeps its state: progress is noted, the task is not started
    waits_for = open_predecessors(ctx.s, task.id) if task.status == "todo" else []
    report.status = task.status = "todo" if waits_for else "in_progress"
    if task.status == "in_progress":
        task.started_at = task.started_at or ctx.now
    ctx.s.add(report)
    task.percent = percent
    task.last_progress_at = ctx.now
    if task.acknowledged_at is None:
        task.acknowledged_at = ctx.now
    _touch(ctx, task)
    close_waits(ctx, "task", task.id)
    ctx.audit("task.progress", task, before)
    parts = [ctx.t("progress_saved", id=task.id, percent=percent)]
    if waits_for:
        parts.append(" " + ctx.t("progress_still_blocked", deps=texts.names(ctx.lang, (f"#{p.id}" for p in waits_for))))
    if percent == 100:
        parts.append(" " + ctx.t("progress_hint_100", id=task.id))
    ctx.say(*parts)
    return None


def finish(ctx: Ctx, cmd: Command) -> Reply | None:
    task = one_task(ctx, cmd)
    _owner_only(ctx, task, "a_finish")
    _require_state(ctx, task, "finish", "a_finish")
    deliverable = " ".join(x for x in (cmd.get("deliverable"), cmd.text) if x).strip()
    if not deliverable:
        raise missing(ctx, "deliverable")
    capped(ctx, deliverable, "deliverable")
    _not_blocked(ctx, task)
    open_subs = [st for st in task.subtasks if st.status not in states.CLOSED]
    if open_subs:
        raise Refused("open_subtasks", id=task.id, subs=texts.names(ctx.lang, (f"#{st.id}" for st in open_subs)))
    before = snapshot(task)
    task.status = "review"
    task.started_at = task.started_at or ctx.now
    task.submitted_at = ctx.now
    task.deliverable = deliverable
    task.percent = 100
    if task.acknowledged_at is None:
        task.acknowledged_at = ctx.now
    _touch(ctx, task)
    close_waits(ctx, "task", task.id)
    ctx.audit("task.finish", task, before)
    reviewer = task.initiator
    ctx.say(ctx.t("submitted", id=task.id, who=reviewer.name, deliverable=deliverable))
    if reviewer.id != ctx.actor.id:
        ctx.tell_user(reviewer, Message((ctx.t("review_request", id=task.id, title=task.title),), card(ctx, task)),
                      key=f"review:task:{task.id}:{task.version}")
    return None


def accept(ctx: Ctx, task: Task, via_card: bool = False) -> Reply | None:
    if not is_reviewer(ctx, task):
        coordinator = coordinator_of(ctx, task)
        raise not_allowed(ctx, "a_accept", ctx.t("w_reviewers", initiator=task.initiator.name,
                                                 coordinator=coordinator.name if coordinator else "-"))
    _require_state(ctx, task, "accept", "a_accept")
    before = snapshot(task)
    task.status = "done"
    task.done_at = ctx.now
    _touch(ctx, task)
    ctx.audit("task.accept", task, before)
    text = ctx.t("accepted", id=task.id, title=task.title)
    if task.owner_id != ctx.actor.id:
        ctx.tell_user(task.owner, Message((ctx.t("accepted_notice", id=task.id, title=task.title),)),
                      key=f"accepted:task:{task.id}")
    _notify_unblocked(ctx, task)
    if via_card:
        if task.chat is not None and (ctx.chat is None or ctx.chat.id != task.chat_id):
            ctx.tell_chat(task.chat, Message((text,)))
        return Reply(toast=text, toast_kind="success", card=card(ctx, task))
    ctx.say(text)
    return None


def _notify_unblocked(ctx: Ctx, done: Task) -> None:
    """Tell each successor's owner when their last open predecessor is this task."""
    if not ctx.bot.config.rules.unblocked_enabled:
        return
    successors = ctx.s.scalars(select(Task).join(TaskDependency, TaskDependency.task_id == Task.id)
                               .where(TaskDependency.depends_on_id == done.id, Task.status.in_(states.OPEN)))
    for succ in successors:
        if not open_predecessors(ctx.s, succ.id):
            message = Message((ctx.at(succ.owner), " ", ctx.t("unblocked", id=succ.id, title=succ.title)))
            key = f"unblocked:task:{succ.id}:by:{done.id}:{done.version}"  # each unblocking is its own occurrence
            ctx.tell_user(succ.owner, message, key=key)
            if succ.chat is not None:
                ctx.tell_chat(succ.chat, message, key=f"{key}:chat")


def return_task(ctx: Ctx, cmd: Command) -> Reply | None:
    task = one_task(ctx, cmd)
    if not is_reviewer(ctx, task):
        coordinator = coordinator_of(ctx, task)
        raise not_allowed(ctx, "a_return", ctx.t("w_reviewers", initiator=task.initiator.name,
                                                 coordinator=coordinator.name if coordinator else "-"))
    _require_state(ctx, task, "return", "a_return")
    reason = " ".join(x for x in (cmd.get("reason"), cmd.text) if x).strip()
    if not reason:
        raise missing(ctx, "reason")
    capped(ctx, reason, "reason")
    before = snapshot(task)
    if task.submitted_at is not None and task.deadline is not None and task.submitted_at <= task.deadline < ctx.now:
        task.overdue_warned_at = None  # handed in on time, back after the deadline: late now, warned at the next sweep
    task.status = "in_progress"
    task.submitted_at = None  # handed in again later: judged then
    task.percent = _last_reported(ctx, task)  # handing it in set 100 %
    _touch(ctx, task)
    ctx.audit("task.return", task, before, reason=reason)
    ctx.say(ctx.t("returned", id=task.id, reason=reason))
    ctx.tell_user(task.owner, Message((ctx.t("returned_notice", id=task.id, reason=reason),), card(ctx, task)),
                  key=f"returned:task:{task.id}:{task.version}")
    return None


def _last_reported(ctx: Ctx, task: Task) -> int:
    """What a task returned for more work shows: the share its owner last reported short of 100 % (the
    reviewer has just said it was not done), 0 when none."""
    latest = ctx.s.scalar(select(ProgressReport.percent).where(ProgressReport.task_id == task.id,
                                                               ProgressReport.percent < 100)
                          .order_by(ProgressReport.created_at.desc(), ProgressReport.id.desc()).limit(1))
    return latest or 0


def reassign(ctx: Ctx, cmd: Command) -> Reply | None:
    task = one_task(ctx, cmd)
    targets = people(ctx, cmd, "owner") or [ctx.mention(i) for i in cmd.mentions]
    if len(targets) != 1:
        raise missing(ctx, "new_owner")
    new_owner = present(ctx, targets[0])
    within_dept = ((ctx.heads_department(ctx.actor, task.owner.department_id) or ctx.escalated_to(task.owner)
                    or ctx.received_escalation("task", task.id))
                   and new_owner.department_id == task.owner.department_id)
    cross = new_owner.department_id != task.owner.department_id
    if not cross and not (is_manager(ctx, task) or within_dept):
        raise not_allowed(ctx, "a_reassign", ctx.t("w_reassign"))
    if cross:  # another department takes the work on: the coordinator or that department's head decides
        coordinator = coordinator_of(ctx, task)
        if not ((coordinator is not None and coordinator.id == ctx.actor.id) or ctx.is_admin()
                or ctx.heads_department(ctx.actor, new_owner.department_id)):
            raise not_allowed(ctx, "a_reassign", ctx.t("w_reassign_dept"))
    _require_state(ctx, task, "reassign", "a_reassign")
    if new_owner.id == task.owner_id:
        raise Refused("same_owner", name=new_owner.name, id=task.id)
    reason = capped(ctx, " ".join(x for x in (cmd.get("reason"), cmd.text) if x), "reason")
    before = snapshot(task)
    old = task.owner
    # every open wait on the old owner follows the task: the new owner is asked afresh (an overdue reason too)
    moved = sorted({w.kind for w in ctx.s.scalars(select(Wait).where(
        Wait.entity_type == "task", Wait.entity_id == task.id, Wait.answered_at.is_(None),
        Wait.person_id == old.id, Wait.kind != "assign"))})
    close_waits(ctx, "task", task.id, person_id=old.id, withdrawn=True)
    close_waits(ctx, "task", task.id, kind="assign", withdrawn=True)
    task.owner_id = new_owner.id
    task.owner = new_owner
    if cross and new_owner.department_id is not None:  # the work is that department's now: its figures
        task.department = ctx.s.get(Department, new_owner.department_id)
    # one who takes the task on themself has said so: no 确认收到 to ask for (as when creating one's own)
    task.acknowledged_at = ctx.now if new_owner.id == ctx.actor.id else None
    if new_owner in task.collaborators:
        task.collaborators.remove(new_owner)
    _touch(ctx, task)
    if task.acknowledged_at is None:
        open_wait(ctx, "assign", "task", task.id, new_owner, task.chat, urgent=task.urgent)
    for kind in moved:
        open_wait(ctx, kind, "task", task.id, new_owner, task.chat)
    ctx.audit("task.reassign", task, before, reason=reason)
    headline = ctx.t("reassigned", id=task.id)
    c = card(ctx, task)
    said = (headline, ctx.at(new_owner), ctx.t("reassigned_from", name=old.name))
    if task.chat is not None and (ctx.chat is None or ctx.chat.id != task.chat.id):
        # decided in a private chat: the task's group hears it too (it will see the new owner chased there)
        ctx.tell_chat(task.chat, Message(said), key=f"reassign:task:{task.id}:{task.version}:chat")
    if reason:
        said += (ctx.t("reason_said", reason=reason),)
    ctx.say(*said)
    if task.acknowledged_at is None:
        ctx.tell_user(new_owner, Message((ctx.t("task_assigned"),), c),
                      key=f"assign:task:{task.id}:{new_owner.id}:{task.version}")
    if old.id != ctx.actor.id:  # the old owner learns it is off their desk, and why
        ctx.tell_user(old, Message((ctx.t("reassigned_away", name=ctx.actor.name, id=task.id, title=task.title,
                                          to=new_owner.name), *([ctx.t("reason_said", reason=reason)] if reason else []))),
                      key=f"reassign:task:{task.id}:{task.version}:old")
    void_extensions(ctx, task, ctx.t("extension_void_reassigned", id=task.id, name=new_owner.name))
    return None


def deadline_example(ctx: Ctx) -> str:
    """A date a week from now, as people type it (12-10): the example in a prompt to set a deadline."""
    return (ctx.local(ctx.now) + timedelta(days=7)).strftime("%m-%d")


def set_deadline(ctx: Ctx, cmd: Command) -> Reply | None:
    """截止 #N 12-10: the first deadline of a task made without one (一键转任务, a task created without a date).

    A deadline already set is moved only by an approved 延期申请, so the original one stays what the
    on-time rate counts against.
    """
    task = one_task(ctx, cmd)
    if not (is_manager(ctx, task) or ctx.heads_department(ctx.actor, task.department_id)):
        raise not_allowed(ctx, "a_set_deadline", ctx.t("w_deadline_setters"))
    if task.status in states.CLOSED:
        raise Refused("bad_state", id=task.id, status=status_name(ctx.lang, task.status), action=ctx.t("a_set_deadline"))
    if task.deadline is not None:
        form = extension_form(ctx.bot.config, task.id)
        raise Refused("deadline_exists" if form else "deadline_exists_no_form", id=task.id, when=ctx.fmt(task.deadline),
                      **(form or {}))
    if not cmd.text:
        raise missing(ctx, "deadline")
    deadline = parse_when(cmd.text, ctx.local(ctx.now))
    if deadline is None:
        raise bad(ctx, "deadline", cmd.text)
    if deadline < ctx.now:
        raise Refused("deadline_past", when=ctx.fmt(deadline))
    if task.parent is not None and task.parent.deadline is not None and deadline > task.parent.deadline:
        raise Refused("deadline_after_parent", when=ctx.fmt(task.parent.deadline))
    before = snapshot(task)
    task.deadline = task.original_deadline = deadline  # the deadline in force when it was set
    task.overdue_warned_at = None
    _touch(ctx, task)
    ctx.audit("task.set_deadline", task, before, reason=ctx.fmt(deadline))
    ctx.say(ctx.t("deadline_set", id=task.id, when=ctx.fmt(deadline)))
    if task.owner_id != ctx.actor.id:
        ctx.tell_user(task.owner, Message((ctx.t("deadline_set_notice", who=ctx.actor.name, id=task.id,
                                                 title=task.title, when=ctx.fmt(deadline)),), card(ctx, task)),
                      key=f"deadline:task:{task.id}:{task.version}")
    return None


def comment(ctx: Ctx, cmd: Command) -> Reply | None:
    task = one_task(ctx, cmd)
    if not cmd.text and not cmd.mentions:
        raise missing(ctx, "comment")
    text = capped(ctx, ctx.with_names(cmd.spoken), "comment")  # "找 @王五 要": the name stays in the sentence
    mentioned = [ctx.mention(i) for i in cmd.mentions]
    ctx.s.add(Comment(task_id=task.id, author_id=ctx.actor.id, text=text, mentions=[u.id for u in mentioned],
                      created_at=ctx.now))
    ctx.s.flush()
    ctx.audit("task.comment", task, entity_type="task", entity_id=task.id)
    head, tail = ctx.t("comment_posted", id=task.id, text="\0").split("\0")
    inline = ctx.with_ats(cmd.spoken)  # a name inside the comment is mentioned where it stands, once
    named = {p.user_id for p in inline if isinstance(p, At)}
    parts: list = [head, *inline, tail]
    for u in dict.fromkeys(u for u in mentioned if u.id not in named):
        parts += [" ", ctx.at(u)]
    ctx.say(*parts)
    if ctx.chat is None:  # typed privately: the people named hear it, else the one who answers for the task
        for u in dict.fromkeys(mentioned or [task.owner if task.owner_id != ctx.actor.id else task.initiator]):
            if u.id != ctx.actor.id:
                ctx.tell_user(u, Message((ctx.actor.name, " ", ctx.t("comment_notice", id=task.id, title=task.title,
                                                                      text=text))))
    return None


def cancel(ctx: Ctx, cmd: Command) -> Reply | None:
    task = one_task(ctx, cmd)
    if not is_reviewer(ctx, task):
        raise not_allowed(ctx, "a_cancel", ctx.t("w_cancellers"))
    _require_state(ctx, task, "cancel", "a_cancel")
    reason = capped(ctx, " ".join(x for x in (cmd.get("reason"), cmd.text) if x).strip(), "reason")
    subtasks = _open_subtasks(task)
    for t in (task, *subtasks):  # a subtask serves its parent: it goes with it, and its owner is told
        before = snapshot(t)
        t.status = "cancelled"
        _touch(ctx, t)
        close_waits(ctx, "task", t.id, withdrawn=True)
        _close_help_waits(ctx, t)
        ctx.audit("task.cancel", t, before, reason=reason)
        if t is not task:
            ctx.tell_user(t.owner, Message((ctx.t("cancelled_with_parent", id=t.id, title=t.title, parent=task.id),)),
                          key=f"cancel:task:{t.id}:{t.version}")
    ctx.say(ctx.t("cancelled", id=task.id), *([ctx.t("reason_said", reason=reason)] if reason else []),
            *([ctx.t("cancelled_subtasks", ids=texts.names(ctx.lang, (f"#{t.id}" for t in subtasks)))] if subtasks else []))
    if task.owner_id != ctx.actor.id:  # the owner stops work on it: told why, wherever it was decided
        ctx.tell_user(task.owner, Message((ctx.t("cancelled_notice", name=ctx.actor.name, id=task.id, title=task.title),
                                           *([ctx.t("reason_said", reason=reason)] if reason else []))),
                      key=f"cancel:task:{task.id}:{task.version}")
    for t in (task, *subtasks):
        void_extensions(ctx, t, ctx.t("extension_void_cancelled", id=t.id))
    return None


def _open_subtasks(task: Task) -> list[Task]:
    """The task's subtasks still open, at any depth, parents before their children."""
    found, frontier = [], list(task.subtasks)
    while frontier:
        sub = frontier.pop(0)
        if states.can("cancel", sub.status):
            found.append(sub)
        frontier.extend(sub.subtasks)
    return found


def _close_help_waits(ctx: Ctx, task: Task) -> None:
    """Help asked for this task is no longer needed: whoever was asked stops being chased (the request stays
    readable, and can still be answered)."""
    for help_id in ctx.s.scalars(select(HelpRequest.id).where(HelpRequest.task_id == task.id,
                                                               HelpRequest.status == "open")):
        close_waits(ctx, "help", help_id, withdrawn=True)


def stale_tap(ctx: Ctx, task: Task, action: CardAction) -> bool:
    """Whether a tap on a task card drawn at `action.version` means something else now.

    The task's version moves with every change, most of them unrelated to a button (a subtask, a
    dependency, a comment): those taps are carried out, their handlers judging them on the current
    state (确认收到 by the owner while unacknowledged, 开始 while to do; the hints always). Only
    通过 / 退回 judge one submission: a card drawn before the latest 提交 is stale. A version the task
    never had (0, or one from the future) was never drawn.
    """
    if action.version == task.version:
        return False
    if not 1 <= action.version < task.version:
        return True
    if action.action not in ("accept", "return"):
        return False
    submitted = ctx.s.scalar(select(AuditEntry.after).where(
        AuditEntry.entity_type == "tasks", AuditEntry.entity_id == task.id, AuditEntry.action == "task.finish",
        AuditEntry.outcome == "ok").order_by(AuditEntry.id.desc()).limit(1))
    return not isinstance(submitted, dict) or action.version < int(submitted.get("version") or 0)


def ack_command(ctx: Ctx, cmd: Command) -> Reply | None:
    return acknowledge(ctx, one_task(ctx, cmd))


def start_command(ctx: Ctx, cmd: Command) -> Reply | None:
    return start(ctx, one_task(ctx, cmd))


def accept_command(ctx: Ctx, cmd: Command) -> Reply | None:
    return accept(ctx, one_task(ctx, cmd))
