"""Approval commands and card taps: 申请, 待我审批, 审批 #A, 同意, 驳回, 转交 #A, 撤回, 取消审批, 重新提交,
and the 同意 / 驳回 / 转交 / 一键转任务 buttons.

Every action on a request first locks its row (`FOR UPDATE` on PostgreSQL; SQLite's `BEGIN IMMEDIATE`
already serialises writers), so two approvers of a 会签 tapping at the same moment are counted one
after the other: both votes stand, exactly one of them completes the stage, and the next stage's
approvers are asked once (their messages also carry per-step dedupe keys). A vote is a row with a
unique (step, voter): a retried callback, or a tap and a command racing, cannot vote twice.

Who is asked when: all stages' approvers are resolved at submission (so a missing department head
is refused at once, not halfway), and `on_self` is applied when a stage starts. Each approver of
the current stage gets a private card and a wait row, which the nag and escalation rules chase.
When the flow ends, the initiator and the request's project groups hear the result with its trail.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import Row, exists, select
from sqlalchemy.exc import IntegrityError

from collabbot.bot import texts
from collabbot.bot.approval_templates import (
    ApprovalTemplate,
    FieldSpec,
    StageSpec,
    display_value,
    example_value,
    find_template,
    parse_value,
    templates_of,
)
from collabbot.bot.approval_views import (
    Viewer,
    approval_card,
    current_step,
    fmt,
    steps_of,
    template_of,
    votes_on,
    waiting_on,
)
from collabbot.bot.commands import ALIASES, Command
from collabbot.bot.context import Ctx, Refused, snapshot
from collabbot.bot.events import ApprovalEvent
from collabbot.bot.handlers.common import MAX_TEXT, capped, missing, not_allowed, people
from collabbot.bot.handlers.task_creation import announce_assignment, new_task
from collabbot.bot.replies import Card, CardAction, Message, Part, Reply
from collabbot.bot.rules import approval_stages as rules
from collabbot.bot.waits import close_waits, open_wait
from collabbot.storage.models import (
    ApprovalApprover,
    ApprovalRequest,
    ApprovalStep,
    ApprovalVote,
    Chat,
    Department,
    Project,
    Task,
    User,
    Wait,
)

TASK_PAIR_NAMES = ("任务", "task")  # 延期申请 may name its task as a pair as well as with #12


# --- loading and checking -----------------------------------------------------------------------

def _load(ctx: Ctx, approval_id: int) -> ApprovalRequest:
    """The request, locked for the rest of the transaction (PostgreSQL) and read fresh."""
    stmt = select(ApprovalRequest).where(ApprovalRequest.id == approval_id).execution_options(populate_existing=True)
    if ctx.s.get_bind().dialect.name == "postgresql":
        stmt = stmt.with_for_update()
    req = ctx.s.scalar(stmt)
    if req is None:
        raise Refused("not_found_approval", id=approval_id)
    return req


def _one(ctx: Ctx, cmd: Command) -> ApprovalRequest:
    if not cmd.approvals:
        raise missing(ctx, "approval_id")
    return _load(ctx, cmd.approvals[0])


def _template(ctx: Ctx, req: ApprovalRequest) -> ApprovalTemplate:
    template = template_of(ctx.bot, req)
    if template is None:
        raise Refused("approval_template_gone", name=req.template)
    return template


def _require(ctx: Ctx, req: ApprovalRequest, action: str, action_text: str) -> None:
    if not rules.can(action, req.status):
        raise Refused("approval_closed", id=req.id, status=texts.approval_status_name(ctx.lang, req.status),
                      action=ctx.t(action_text))


def _slot(step: ApprovalStep, user_id: int) -> ApprovalApprover | None:
    return next((a for a in step.approvers if a.user_id == user_id and a.active), None)


def _not_your_turn(ctx: Ctx, req: ApprovalRequest, step: ApprovalStep) -> Refused:
    who = "、".join(u.name for u in waiting_on(ctx.s, step)) or ctx.t("none")
    return Refused("not_your_turn", id=req.id, stage=step.name, who=who)


def _touch(ctx: Ctx, req: ApprovalRequest) -> None:
    req.updated_at = ctx.now
    req.version += 1
    ctx.s.flush()


def _card(ctx: Ctx, req: ApprovalRequest, viewer: User | None, *, result: bool = False) -> Card:
    return approval_card(ctx, req, viewer.id if viewer is not None else None, result=result)


def _mention_list(ctx: Ctx, users: list[User]) -> list[Part]:
    parts: list[Part] = []
    for i, u in enumerate(users):
        parts += (["、"] if i else []) + [ctx.at(u)]
    return parts


# --- the form -----------------------------------------------------------------------------------

def _word(ctx: Ctx, command: str) -> str:
    """The command's word in the reply language (申请 / apply)."""
    aliases = ALIASES[command]
    return next((a for a in aliases if a.isascii()), aliases[0]) if ctx.lang == "en" else aliases[0]


def _example(ctx: Ctx, template: ApprovalTemplate) -> str:
    task = " #12" if template.kind == "extension" else ""
    pairs = " ".join(f"{f.name}={example_value(f)}" for f in template.fields if f.required)
    return f"{_word(ctx, 'apply')} {template.name}{task} {pairs}".strip()


def _kind_name(ctx: Ctx, spec: FieldSpec) -> str:
    return ctx.t(f"approval_type_{spec.type}", choices="/".join(spec.choices))


def _read_pairs(ctx: Ctx, template: ApprovalTemplate, pairs: tuple[tuple[str, str], ...],
                values: dict[str, str]) -> tuple[dict[str, str], list[str]]:
    """`values` updated with the typed pairs (each checked against its field), and what changed."""
    out = dict(values)
    seen: set[str] = set()
    changed: list[str] = []
    for name, raw in pairs:
        if template.kind == "extension" and name in TASK_PAIR_NAMES:
            continue
        spec = template.field(name)
        if spec is None:
            known = "、".join(f.name for f in template.fields) or ctx.t("none")
            raise Refused("unknown_approval_field", template=template.name, field=name[:30], known=known)
        if name in seen:
            raise Refused("duplicate_approval_field", field=name)
        seen.add(name)
        if not raw.strip():  # `名称=` clears an optional field; a required one is then reported missing
            out.pop(name, None)
            changed.append(f"{name}=")
            continue
        value = parse_value(spec, raw, ctx.local(ctx.now))
        if value is None:
            raise Refused("bad_approval_value", field=name, value=raw[:40], kind=_kind_name(ctx, spec),
                          example=example_value(spec))
        out[name] = value
        changed.append(f"{name}={raw.strip()}")
    absent = [f.name for f in template.fields if f.required and not out.get(f.name)]
    if absent:
        raise Refused("missing_approval_fields", fields="、".join(absent), example=_example(ctx, template))
    return out, changed


def _departments(ctx: Ctx, text: str) -> list[Department]:
    found: list[Department] = []
    for name in re.split(r"[,，、\s]+", text):
        if name:
            dept = ctx.department(name)
            if dept not in found:
                found.append(dept)
    return found


def _receiving_department(ctx: Ctx, template: ApprovalTemplate, values: dict[str, str]) -> Department:
    depts = _departments(ctx, values.get(template.receiving_department_field, ""))
    if not depts:
        raise Refused("missing_approval_fields", fields=template.receiving_department_field, example=_example(ctx, template))
    return depts[0]


def _person(ctx: Ctx, name: str, stage: StageSpec) -> User:
    users = list(ctx.s.scalars(select(User).where(User.name == name).limit(2)))
    if len(users) != 1:
        raise Refused("approver_missing", stage=stage.name, name=name)
    return users[0]


def _plan(ctx: Ctx, template: ApprovalTemplate, values: dict[str, str], project: Project | None,
          task: Task | None) -> list[list[tuple[User, Department | None]]]:
    """For each stage, who decides it (and which department they sign for); refuses what cannot be asked."""
    plan = []
    for stage in template.stages:
        approvers: list[tuple[User, Department | None]] = []
        if stage.kind == "dept_head":
            dept = ctx.s.get(Department, ctx.actor.department_id) if ctx.actor.department_id else None
            if dept is None:
                raise Refused("approval_no_dept", stage=stage.name)
            if dept.head is None:
                raise Refused("no_head", dept=dept.name)
            approvers.append((dept.head, dept))
        elif stage.kind == "countersign":
            depts = _departments(ctx, values.get(stage.departments_field, "")) if stage.departments_field else []
            if not depts and project is not None:
                depts = list(project.departments)
            if not depts:
                raise Refused("approval_no_depts", stage=stage.name, field=stage.departments_field or "-")
            for dept in depts:
                if dept.head is None:
                    raise Refused("no_head", dept=dept.name)
                if all(dept.head.id != u.id for u, _ in approvers):
                    approvers.append((dept.head, dept))
        elif stage.kind == "task_initiator":
            assert task is not None
            approvers.append((task.initiator, None))
        else:  # any_of, person, role
            for name in stage.people:
                user = _person(ctx, name, stage)
                if all(user.id != u.id for u, _ in approvers):
                    approvers.append((user, None))
        plan.append(approvers)
    return plan


def _create_round(ctx: Ctx, req: ApprovalRequest, template: ApprovalTemplate,
                  plan: list[list[tuple[User, Department | None]]]) -> None:
    for index, (stage, approvers) in enumerate(zip(template.stages, plan, strict=True)):
        step = ApprovalStep(request_id=req.id, round=req.round, stage_index=index, name=stage.name, kind=stage.kind,
                            mode=stage.mode, status="waiting", note="")
        ctx.s.add(step)
        ctx.s.flush()
        for user, dept in approvers:
            ctx.s.add(ApprovalApprover(step_id=step.id, user_id=user.id, department_id=dept.id if dept else None,
                                       active=True, note="", created_at=ctx.now))
        ctx.s.flush()
        ctx.s.expire(step, ["approvers"])


# --- moving through the stages ------------------------------------------------------------------

def _advance(ctx: Ctx, req: ApprovalRequest, template: ApprovalTemplate) -> ApprovalStep | None:
    """Open the current stage, skipping stages left with nobody to ask; None when no stage is left.

    The caller announces, then calls `_ask` to tell the open stage's approvers."""
    steps = steps_of(ctx.s, req)
    while req.stage_index < len(steps):
        step = steps[req.stage_index]
        stage = template.stages[req.stage_index] if req.stage_index < len(template.stages) else None
        approved_before = {v.voter_id for earlier in steps[:req.stage_index]
                           for v in votes_on(ctx.s, earlier).values() if v.decision == "approve"}
        active = [a for a in step.approvers if a.active]
        left, why = rules.who_decides(step.mode, [a.user_id for a in active], req.initiator_id, approved_before,
                                      stage.on_self if stage else "keep")
        for a in active:
            if a.user_id not in left:
                a.active = False
                a.note = "skip:initiator" if a.user_id == req.initiator_id else "skip:approved_before"
        step.started_at = ctx.now
        if left:
            step.status = "pending"
            ctx.s.flush()
            return step
        step.status, step.note, step.decided_at = "skipped", why, ctx.now
        ctx.s.flush()
        ctx.audit("approval.skip", req, reason=ctx.t(f"skip_{why}"))
        req.stage_index += 1
    ctx.s.flush()
    return None


def _ask(ctx: Ctx, req: ApprovalRequest, step: ApprovalStep, template: ApprovalTemplate) -> None:
    """Each undecided approver of the open step: a wait row and a private card (once per step)."""
    for user in waiting_on(ctx.s, step):
        open_wait(ctx, "approval", "approval", req.id, user, req.chat)
        text = ctx.t("approval_ask", name=req.initiator.name, id=req.id, template=req.template, stage=step.name)
        ctx.tell_user(user, Message((text,), _card(ctx, req, user)), key=f"approval:{req.id}:step:{step.id}:ask:{user.id}")


def _project_chats(ctx: Ctx, req: ApprovalRequest) -> list[Chat]:
    """Where the outcome is posted: the request's group and the other groups of its project."""
    chats = [req.chat] if req.chat is not None and req.chat.active else []
    if req.project_id is not None:
        for chat in ctx.s.scalars(select(Chat).where(Chat.project_id == req.project_id, Chat.active.is_(True))
                                  .order_by(Chat.id)):
            if chat not in chats:
                chats.append(chat)
    return chats


def _extend_task(ctx: Ctx, req: ApprovalRequest, template: ApprovalTemplate) -> str:
    """An approved 延期申请: the task's new deadline, its overdue warning cleared; the sentence to add."""
    task = ctx.s.get(Task, req.task_id) if req.task_id else None
    if task is None or task.status not in ("todo", "in_progress"):
        return ""
    before = snapshot(task)
    task.deadline = datetime.fromisoformat(req.values[template.deadline_field])
    task.overdue_warned_at = None
    task.updated_at = ctx.now
    task.version += 1
    close_waits(ctx, "task", task.id, kind="overdue")
    ctx.s.flush()
    ctx.audit("task.extend", task, before, reason=ctx.t("extend_trail", when=ctx.fmt(task.deadline), id=req.id))
    return ctx.t("task_extended", id=task.id, title=task.title, when=ctx.fmt(task.deadline))


def _finish(ctx: Ctx, req: ApprovalRequest, template: ApprovalTemplate, status: str, reason: str = "") -> None:
    """The flow ended (approved or rejected): effects, then the initiator and the project's groups hear it."""
    req.status = status
    req.decided_at = ctx.now
    close_waits(ctx, "approval", req.id)
    _touch(ctx, req)
    extra = _extend_task(ctx, req, template) if status == rules.APPROVED and template.kind == "extension" else ""
    card = _card(ctx, req, None, result=True)
    mine = ctx.t(f"approval_mine_{status}", id=req.id, template=req.template, reason=reason)
    ctx.tell_user(req.initiator, Message((mine + extra,), card), key=f"approval:{req.id}:r{req.round}:{status}:initiator")
    headline = ctx.t(f"approval_result_{status}", id=req.id, template=req.template)
    for chat in _project_chats(ctx, req):
        ctx.tell_chat(chat, Message((headline, ctx.at(req.initiator), extra and "\n" + extra), card),
                      key=f"approval:{req.id}:r{req.round}:{status}:chat:{chat.id}")


def _return(ctx: Ctx, req: ApprovalRequest, step: ApprovalStep, reason: str) -> None:
    req.status = rules.RETURNED
    close_waits(ctx, "approval", req.id)
    _touch(ctx, req)
    text = ctx.t("approval_returned_mine", id=req.id, template=req.template, name=ctx.actor.name, stage=step.name,
                 reason=reason)
    ctx.tell_user(req.initiator, Message((text,), _card(ctx, req, req.initiator)),
                  key=f"approval:{req.id}:r{req.round}:returned:initiator")
    if req.chat is not None and req.chat.active and (ctx.chat is None or ctx.chat.id != req.chat.id):
        ctx.tell_chat(req.chat, Message((ctx.t("approval_returned_group", id=req.id, template=req.template,
                                                reason=reason),)), key=f"approval:{req.id}:r{req.round}:returned:chat")


def _decide(ctx: Ctx, req: ApprovalRequest, decision: str, comment: str, via_card: bool) -> Reply | None:
    """One approver's 同意 or 驳回 on the current step, and whatever it completes."""
    template = _template(ctx, req)
    _require(ctx, req, decision, "a_approve" if decision == "approve" else "a_reject")
    step = current_step(ctx.s, req)
    assert step is not None  # a pending request always has its step open
    mine = votes_on(ctx.s, step).get(ctx.actor.id)
    if mine is not None:
        raise Refused("already_voted", id=req.id, decision=ctx.t(f"decision_{mine.decision}"), when=ctx.fmt(mine.created_at))
    if _slot(step, ctx.actor.id) is None:
        raise _not_your_turn(ctx, req, step)
    capped(ctx, comment, "reject_reason", MAX_TEXT)
    try:
        with ctx.s.begin_nested():
            ctx.s.add(ApprovalVote(request_id=req.id, step_id=step.id, voter_id=ctx.actor.id, decision=decision,
                                   comment=comment, created_at=ctx.now))
            ctx.s.flush()
    except IntegrityError:  # the same person's other copy got there first (guarded by the row lock too)
        raise Refused("already_voted", id=req.id, decision=ctx.t(f"decision_{decision}"), when=ctx.fmt(ctx.now)) from None
    close_waits(ctx, "approval", req.id, person_id=ctx.actor.id)
    ctx.audit(f"approval.{decision}", req, reason=comment)
    votes = votes_on(ctx.s, step)
    approvals = {uid for uid, v in votes.items() if v.decision == "approve"}
    rejections = {uid for uid, v in votes.items() if v.decision == "reject"}
    active = [a.user_id for a in step.approvers if a.active]
    outcome = rules.stage_outcome(step.mode, active, approvals, rejections)
    after: ApprovalStep | None = None
    if outcome == rules.PENDING:
        done, need = rules.progress(step.mode, active, approvals)
        waiting = "、".join(u.name for u in waiting_on(ctx.s, step))
        parts: list[Part] = [ctx.t("approval_approved_partial", id=req.id, stage=step.name, done=done, need=need,
                             waiting=waiting)]
    elif outcome == rules.APPROVED:
        step.status, step.decided_at = "approved", ctx.now
        close_waits(ctx, "approval", req.id)
        req.stage_index += 1
        after = _advance(ctx, req, template)
        parts = ([ctx.t("approval_approved_final", id=req.id)] if after is None else
                 [ctx.t("approval_approved_next", id=req.id, stage=step.name, next=after.name),
                  *_mention_list(ctx, waiting_on(ctx.s, after))])
    else:
        step.status, step.decided_at = "rejected", ctx.now
        returned = rules.after_rejection(template.on_reject) == rules.RETURNED
        parts = [ctx.t("approval_rejected_return", id=req.id, name=req.initiator.name, reason=comment) if returned
                 else ctx.t("approval_rejected_end", id=req.id, reason=comment)]
    _touch(ctx, req)
    if not via_card:
        ctx.say(*parts)  # the decider's confirmation first, then what it set off
    if outcome == rules.APPROVED and after is None:
        _finish(ctx, req, template, rules.APPROVED)
    elif outcome == rules.REJECTED:
        if rules.after_rejection(template.on_reject) == rules.RETURNED:
            _return(ctx, req, step, comment)
        else:
            _finish(ctx, req, template, rules.REJECTED, comment)
    elif after is not None:
        _ask(ctx, req, after, template)
    if not via_card:
        return None
    toast = "".join(p if isinstance(p, str) else f"@{p.name}" for p in parts)
    return Reply(toast=toast, toast_kind="success", card=_card(ctx, req, ctx.actor, result=req.status in rules.FINAL))


# --- commands -----------------------------------------------------------------------------------

def _list_templates(ctx: Ctx) -> None:
    lines = [ctx.t("approval_templates")]
    for template in templates_of(ctx.bot.config):
        names = "、".join(f.name + ("" if f.required else ctx.t("approval_optional")) for f in template.fields)
        lines.append(ctx.t("approval_template_line", name=template.name, fields=names))
    ctx.say("\n".join(lines))


def _extension_task(ctx: Ctx, cmd: Command, template: ApprovalTemplate, values: dict[str, str]) -> Task:
    refs = list(cmd.tasks)
    for name, raw in cmd.pairs:
        if name in TASK_PAIR_NAMES and raw.strip().lstrip("#").isdigit():
            refs.append(int(raw.strip().lstrip("#")))
    if not refs:
        raise missing(ctx, "extension_task")
    task = ctx.task(refs[0])
    if task.owner_id != ctx.actor.id:
        raise not_allowed(ctx, "a_extend", ctx.t("w_owner_only", name=task.owner.name))
    if task.status not in ("todo", "in_progress"):
        raise Refused("bad_state", id=task.id, status=texts.status_name(ctx.lang, task.status), action=ctx.t("a_extend"))
    new = datetime.fromisoformat(values[template.deadline_field])
    if new <= ctx.now:
        raise Refused("deadline_past", when=ctx.fmt(new))
    if task.deadline is not None and new <= task.deadline:
        raise Refused("extension_not_later", when=ctx.fmt(new), current=ctx.fmt(task.deadline))
    open_one = ctx.s.scalar(select(ApprovalRequest.id).where(
        ApprovalRequest.task_id == task.id, ApprovalRequest.template == template.name,
        ApprovalRequest.status.in_((rules.PENDING, rules.RETURNED))).limit(1))
    if open_one is not None:
        raise Refused("extension_pending", task=task.id, id=open_one)
    return task


def apply(ctx: Ctx, cmd: Command) -> Reply | None:
    """申请 <模板> 字段=值 …: file a request and ask its first stage."""
    if not cmd.text and not cmd.pairs:
        _list_templates(ctx)
        return None
    first, _, rest = cmd.text.partition(" ")
    templates = templates_of(ctx.bot.config)
    template = find_template(templates, first)
    if template is None:
        raise Refused("unknown_approval_template", name=(first or cmd.text)[:40],
                      known="、".join(t.name for t in templates) or ctx.t("none"))
    if rest.strip():
        raise Refused("approval_free_text", text=rest.strip()[:40], example=_example(ctx, template))
    values, _ = _read_pairs(ctx, template, cmd.pairs, {})
    task = _extension_task(ctx, cmd, template, values) if template.kind == "extension" else None
    if template.kind == "resource":
        _receiving_department(ctx, template, values)
    chat = ctx.chat or (task.chat if task is not None else None)
    project = None
    if ctx.chat is not None and ctx.chat.project_id is not None:
        project = ctx.s.get(Project, ctx.chat.project_id)
    elif task is not None:
        project = task.project
    plan = _plan(ctx, template, values, project, task)
    req = ApprovalRequest(template=template.name, initiator_id=ctx.actor.id, department_id=ctx.actor.department_id,
                          chat_id=chat.id if chat else None, project_id=project.id if project else None,
                          task_id=task.id if task else None, values=values, status=rules.PENDING, round=1,
                          stage_index=0, version=1, created_at=ctx.now, updated_at=ctx.now)
    ctx.s.add(req)
    ctx.s.flush()
    ctx.s.refresh(req)
    _create_round(ctx, req, template, plan)
    ctx.audit("approval.submit", req)
    step = _advance(ctx, req, template)
    _announce_round(ctx, req, template, step, "approval_submitted")
    return None


def _announce_round(ctx: Ctx, req: ApprovalRequest, template: ApprovalTemplate, step: ApprovalStep | None,
                    key: str) -> None:
    """After 申请 / 重新提交: where it stands, said where it was asked, then the approvers are asked."""
    if step is None:
        ctx.say(ctx.t(key + "_done", id=req.id, template=req.template, round=req.round))
        _finish(ctx, req, template, rules.APPROVED)
        return
    headline = ctx.t(key, id=req.id, template=req.template, stage=step.name, round=req.round)
    ctx.say(headline, *_mention_list(ctx, waiting_on(ctx.s, step)), card=_card(ctx, req, None if ctx.chat else ctx.actor))
    _ask(ctx, req, step, template)


def approve_command(ctx: Ctx, cmd: Command) -> Reply | None:
    return _decide(ctx, _one(ctx, cmd), "approve", cmd.text, via_card=False)


def reject_command(ctx: Ctx, cmd: Command) -> Reply | None:
    req = _one(ctx, cmd)
    reason = " ".join(x for x in (cmd.get("reason"), cmd.text) if x).strip()
    if not reason:
        raise missing(ctx, "reject_reason")
    return _decide(ctx, req, "reject", reason, via_card=False)


def transfer(ctx: Ctx, cmd: Command) -> Reply | None:
    """转交 #A12 @某人 原因: hand my part of the current step to someone else."""
    req = _one(ctx, cmd)
    _template(ctx, req)
    _require(ctx, req, "transfer", "a_transfer")
    step = current_step(ctx.s, req)
    assert step is not None
    slot = _slot(step, ctx.actor.id)
    if slot is None:
        raise _not_your_turn(ctx, req, step)
    mine = votes_on(ctx.s, step).get(ctx.actor.id)
    if mine is not None:
        raise Refused("already_voted", id=req.id, decision=ctx.t(f"decision_{mine.decision}"), when=ctx.fmt(mine.created_at))
    targets = people(ctx, cmd, "owner") or [ctx.mention(i) for i in cmd.mentions]
    if len(targets) != 1:
        raise missing(ctx, "transfer_target")
    target = targets[0]
    if target.id == ctx.actor.id:
        raise Refused("transfer_self")
    if target.id == req.initiator_id:
        raise Refused("transfer_initiator", name=target.name)
    reason = capped(ctx, " ".join(x for x in (cmd.get("reason"), cmd.text) if x).strip(), "transfer_reason")
    if not reason:
        raise missing(ctx, "transfer_reason")
    existing = next((a for a in step.approvers if a.user_id == target.id), None)
    if existing is not None and (existing.active or target.id in votes_on(ctx.s, step)):
        raise Refused("already_approver", name=target.name)
    slot.active, slot.note = False, f"transferred:{target.id}"
    if existing is not None:
        existing.active, existing.delegated_from_id, existing.note = True, ctx.actor.id, reason
    else:
        ctx.s.add(ApprovalApprover(step_id=step.id, user_id=target.id, department_id=slot.department_id, active=True,
                                   delegated_from_id=ctx.actor.id, note=reason, created_at=ctx.now))
    ctx.s.flush()
    ctx.s.refresh(step)
    close_waits(ctx, "approval", req.id, person_id=ctx.actor.id)
    open_wait(ctx, "approval", "approval", req.id, target, req.chat)
    ctx.audit("approval.transfer", req, reason=ctx.t("transfer_trail", name=target.name, reason=reason))
    _touch(ctx, req)
    ctx.say(ctx.t("approval_transferred", id=req.id, stage=step.name), ctx.at(target))
    notice = ctx.t("approval_transfer_notice", name=ctx.actor.name, id=req.id, template=req.template, stage=step.name,
                   reason=reason)
    ctx.tell_user(target, Message((notice,), _card(ctx, req, target)))
    return None


def _stop(ctx: Ctx, req: ApprovalRequest, status: str, reason: str) -> None:
    """撤回 / 取消审批: the open step is void, its approvers are told, the request's group hears it."""
    step = current_step(ctx.s, req)
    told = waiting_on(ctx.s, step) if step is not None else []
    if step is not None:
        step.status, step.decided_at = "void", ctx.now
    req.status = status
    req.decided_at = ctx.now
    close_waits(ctx, "approval", req.id)
    ctx.audit(f"approval.{'withdraw' if status == rules.WITHDRAWN else 'cancel'}", req, reason=reason)
    _touch(ctx, req)
    text = ctx.t(f"approval_{status}", id=req.id, template=req.template, reason=reason)
    ctx.say(text)
    notice = ctx.t(f"approval_{status}_notice", name=ctx.actor.name, id=req.id, template=req.template)
    for user in told:
        if user.id != ctx.actor.id:
            ctx.tell_user(user, Message((notice,)), key=f"approval:{req.id}:r{req.round}:{status}:{user.id}")
    if req.initiator_id != ctx.actor.id:
        ctx.tell_user(req.initiator, Message((notice,)), key=f"approval:{req.id}:r{req.round}:{status}:initiator")
    if req.chat is not None and req.chat.active and (ctx.chat is None or ctx.chat.id != req.chat.id):
        ctx.tell_chat(req.chat, Message((text,)), key=f"approval:{req.id}:r{req.round}:{status}:chat")


def native(ctx: Ctx, event: ApprovalEvent) -> Reply:
    """A request of a platform's own approval app, linked to a template: mirrored here, so 审批 #A shows
    it and its outcome is announced (and a resource request offers 一键转任务) as for ours. The
    platform runs the flow: the mirror has no stages, and a status after the final one changes nothing
    (events come at least once, and not always in order)."""
    template = next((t for t in templates_of(ctx.bot.config) if t.name == event.template), None)
    if template is None:
        raise Refused("unknown_approval_template", name=event.template[:40],
                      known="、".join(t.name for t in templates_of(ctx.bot.config)))
    stmt = select(ApprovalRequest).where(ApprovalRequest.external_id == event.external_id)
    if ctx.s.get_bind().dialect.name == "postgresql":
        stmt = stmt.with_for_update()
    req = ctx.s.scalar(stmt)
    if req is None:
        specs = {f.name: f for f in template.fields}
        values = {name: parse_value(specs[name], raw, ctx.now) or raw.strip()[:MAX_TEXT]
                  for name, raw in event.values.items() if name in specs and raw.strip()}
        req = ApprovalRequest(template=template.name, initiator_id=ctx.actor.id, department_id=ctx.actor.department_id,
                              values=values, status=rules.PENDING, round=1, stage_index=0, version=1,
                              created_at=ctx.now, updated_at=ctx.now, external_id=event.external_id)
        ctx.s.add(req)
        ctx.s.flush()
        ctx.s.refresh(req)
        ctx.audit("approval.native", req, reason=event.external_id)
    if req.status in rules.FINAL or event.status not in rules.FINAL:
        return Reply()
    if event.status in (rules.APPROVED, rules.REJECTED):
        ctx.audit(f"approval.{'approve' if event.status == rules.APPROVED else 'reject'}", req,
                  reason=event.external_id)
        _finish(ctx, req, template, event.status, ctx.t("native_decided"))
        return Reply()
    req.status, req.decided_at = event.status, ctx.now
    ctx.audit(f"approval.{'withdraw' if event.status == rules.WITHDRAWN else 'cancel'}", req, reason=event.external_id)
    _touch(ctx, req)
    ctx.tell_user(req.initiator, Message((ctx.t(f"approval_{event.status}", id=req.id, template=req.template,
                                                reason=""),)),
                  key=f"approval:{req.id}:r{req.round}:{event.status}:initiator")
    return Reply()


def withdraw(ctx: Ctx, cmd: Command) -> Reply | None:
    req = _one(ctx, cmd)
    if req.initiator_id != ctx.actor.id:
        raise not_allowed(ctx, "a_withdraw", ctx.t("w_initiator_only", name=req.initiator.name))
    _require(ctx, req, "withdraw", "a_withdraw")
    _stop(ctx, req, rules.WITHDRAWN, "")
    return None


def cancel(ctx: Ctx, cmd: Command) -> Reply | None:
    req = _one(ctx, cmd)
    if not ctx.is_admin():
        raise not_allowed(ctx, "a_cancel_approval", ctx.t("w_admin"))
    _require(ctx, req, "cancel", "a_cancel_approval")
    reason = capped(ctx, " ".join(x for x in (cmd.get("reason"), cmd.text) if x).strip(), "reason")
    _stop(ctx, req, rules.CANCELLED, reason)
    return None


def resubmit(ctx: Ctx, cmd: Command) -> Reply | None:
    """重新提交 #A12 字段=值 …: the initiator amends a returned request; a new round starts at the first stage."""
    req = _one(ctx, cmd)
    template = _template(ctx, req)
    if req.initiator_id != ctx.actor.id:
        raise not_allowed(ctx, "a_resubmit", ctx.t("w_initiator_only", name=req.initiator.name))
    _require(ctx, req, "resubmit", "a_resubmit")
    if cmd.text:
        raise Refused("approval_free_text", text=cmd.text[:40], example=f"{_word(ctx, 'resubmit')} #A{req.id} "
                      + " ".join(f"{f.name}={example_value(f)}" for f in template.fields[:1]))
    values, changed = _read_pairs(ctx, template, cmd.pairs, dict(req.values))
    task = ctx.task(req.task_id) if req.task_id is not None else None
    if task is not None and template.kind == "extension":
        new = datetime.fromisoformat(values[template.deadline_field])
        if new <= ctx.now or (task.deadline is not None and new <= task.deadline):
            raise Refused("extension_not_later", when=ctx.fmt(new), current=ctx.fmt(task.deadline))
    if template.kind == "resource":
        _receiving_department(ctx, template, values)
    plan = _plan(ctx, template, values, req.project, task)
    req.values = values
    req.round += 1
    req.stage_index = 0
    req.status = rules.PENDING
    req.decided_at = None
    _touch(ctx, req)
    _create_round(ctx, req, template, plan)
    ctx.audit("approval.resubmit", req, reason="；".join(changed))
    step = _advance(ctx, req, template)
    _announce_round(ctx, req, template, step, "approval_resubmitted")
    return None


def _may_view(ctx: Ctx, req: ApprovalRequest) -> bool:
    if ctx.actor.id == req.initiator_id or ctx.is_admin():
        return True
    if ctx.chat is not None and ctx.chat.id == req.chat_id:
        return True
    return bool(ctx.s.scalar(select(exists().where(
        ApprovalApprover.user_id == ctx.actor.id, ApprovalApprover.step_id == ApprovalStep.id,
        ApprovalStep.request_id == req.id))))


def show(ctx: Ctx, cmd: Command) -> Reply | None:
    """审批 #A12: the card with its whole trail (the result card once the flow ended)."""
    req = _one(ctx, cmd)
    if not _may_view(ctx, req):
        raise not_allowed(ctx, "a_view_approval", ctx.t("w_approval_viewers"))
    ctx.say(card=_card(ctx, req, None if ctx.chat else ctx.actor, result=req.status in rules.FINAL))
    return None


def _waiting_for(ctx: Ctx, user_id: int) -> Sequence[Row[tuple[ApprovalRequest, ApprovalStep]]]:
    """(request, step) pairs whose open step waits for `user_id`'s decision, oldest first."""
    voted = exists().where(ApprovalVote.step_id == ApprovalStep.id, ApprovalVote.voter_id == user_id)
    return ctx.s.execute(
        select(ApprovalRequest, ApprovalStep)
        .join(ApprovalStep, (ApprovalStep.request_id == ApprovalRequest.id) & (ApprovalStep.round == ApprovalRequest.round)
              & (ApprovalStep.stage_index == ApprovalRequest.stage_index))
        .join(ApprovalApprover, ApprovalApprover.step_id == ApprovalStep.id)
        .where(ApprovalRequest.status == rules.PENDING, ApprovalStep.status == "pending",
               ApprovalApprover.user_id == user_id, ApprovalApprover.active.is_(True), ~voted)
        .order_by(ApprovalRequest.id)
    ).all()


def my_approvals(ctx: Ctx, cmd: Command) -> Reply | None:
    """待我审批: what waits for my decision, and my own requests still open."""
    lines = []
    for req, step in _waiting_for(ctx, ctx.actor.id):
        lines.append(ctx.t("approval_line", id=req.id, template=req.template, initiator=req.initiator.name,
                           stage=step.name, since=ctx.fmt(step.started_at)))
    out = [ctx.t("approvals_title"), *lines, ctx.t("approvals_hint")] if lines else [ctx.t("approvals_empty")]
    mine = list(ctx.s.scalars(select(ApprovalRequest).where(
        ApprovalRequest.initiator_id == ctx.actor.id,
        ApprovalRequest.status.in_((rules.PENDING, rules.RETURNED))).order_by(ApprovalRequest.id)))
    if mine:
        out.append(ctx.t("approvals_mine_title"))
        for req in mine:
            step = current_step(ctx.s, req)
            out.append(ctx.t("approval_mine_line", id=req.id, template=req.template,
                             status=texts.approval_status_name(ctx.lang, req.status) + (f" · {step.name}" if step else "")))
    ctx.say("\n".join(out))
    return None


# --- card taps ----------------------------------------------------------------------------------

def _ignored(ctx: Ctx, req: ApprovalRequest, text: str) -> Reply:
    """A stale or repeated tap: nothing changes; the tapper sees why and the card as it is now."""
    ctx.audit("approval.tap_ignored", req, outcome="refused", reason=text)
    return Reply(toast=text, toast_kind="warning", card=_card(ctx, req, ctx.actor, result=req.status in rules.FINAL))


def _to_task(ctx: Ctx, req: ApprovalRequest) -> Reply:
    """一键转任务: an approved resource request becomes a task for the receiving department's head."""
    template = _template(ctx, req)
    if template.kind != "resource":
        raise Refused("bad_button")
    if req.result_task_id is not None:
        return _ignored(ctx, req, ctx.t("to_task_done", id=req.id, task=req.result_task_id))
    _require(ctx, req, "to_task", "a_to_task")
    dept = _receiving_department(ctx, template, req.values)
    if not (ctx.actor.id == req.initiator_id or ctx.heads_department(ctx.actor, dept.id) or ctx.is_admin()):
        raise not_allowed(ctx, "a_to_task", ctx.t("w_to_task", dept=dept.name))
    if dept.head is None:
        raise Refused("no_head", dept=dept.name)
    deadline = None
    for spec in template.fields:
        if spec.type == "date" and req.values.get(spec.name):
            when = datetime.fromisoformat(req.values[spec.name])
            deadline = when if when > ctx.now else None
            break
    specs = {f.name: f for f in template.fields}
    remarks = "；".join(f"{k}：{display_value(specs.get(k), v, lambda d: fmt(d, ctx))}" for k, v in req.values.items())
    title = ctx.t("to_task_title", template=req.template, id=req.id)[:200]
    task = new_task(ctx, title=title, owner=dept.head, project=req.project, parent=None, deadline=deadline,
                     priority="mid", collaborators=[], department=dept, initiating_dept_id=req.department_id,
                     remarks=remarks[:MAX_TEXT])
    req.result_task_id = task.id
    ctx.audit("approval.to_task", req, reason=f"#{task.id}")
    _touch(ctx, req)
    announce_assignment(ctx, task, ctx.t("task_created", id=task.id, title=task.title))
    return Reply(toast=ctx.t("to_task_created", task=task.id, name=dept.head.name), toast_kind="success",
                 card=_card(ctx, req, ctx.actor, result=True))


def card_action(ctx: Ctx, action: CardAction) -> Reply | None:
    """ACTIONS["approval"]: the buttons of the approval and approval_result cards."""
    req = _load(ctx, action.entity_id)
    if action.action == "to_task":
        return _to_task(ctx, req)
    if action.action not in ("approve", "reject", "transfer"):
        raise Refused("bad_button")
    tapped = ctx.s.get(ApprovalStep, action.version)
    if tapped is None or tapped.request_id != req.id:
        raise Refused("bad_button")
    mine = votes_on(ctx.s, tapped).get(ctx.actor.id)
    if mine is not None:
        return _ignored(ctx, req, ctx.t("already_voted", id=req.id, decision=ctx.t(f"decision_{mine.decision}"),
                                        when=ctx.fmt(mine.created_at)))
    step = current_step(ctx.s, req)
    if step is None or step.id != tapped.id:
        return _ignored(ctx, req, ctx.t("approval_stale", id=req.id,
                                        status=texts.approval_status_name(ctx.lang, req.status)))
    if _slot(step, ctx.actor.id) is None:
        raise _not_your_turn(ctx, req, step)
    if action.action == "approve":
        return _decide(ctx, req, "approve", "", via_card=True)
    hint = "hint_reject" if action.action == "reject" else "hint_transfer"
    return Reply(toast=ctx.t(hint, id=req.id))


# --- waits: 待我处理 lines, nags and escalations ----------------------------------------------------

def _wait_facts(src: Viewer, wait: Wait) -> tuple[ApprovalRequest, str] | None:
    req = src.s.get(ApprovalRequest, wait.entity_id)
    if req is None:
        return None
    step = current_step(src.s, req)
    return req, step.name if step is not None else texts.approval_status_name(src.lang, req.status)


def describe_waiting(ctx: Ctx, wait: Wait) -> str:
    facts = _wait_facts(ctx, wait)
    if facts is None:
        return ""
    req, stage = facts
    return ctx.t("waiting_approval", id=req.id, template=req.template, initiator=req.initiator.name, stage=stage,
                 since=ctx.fmt(wait.raised_at))


def describe_nag(n: Any, wait: Wait) -> str:  # n: the sweep's Notifier
    facts = _wait_facts(n, wait)
    if facts is None:
        return ""
    req, stage = facts
    return n.t("nag_approval", id=req.id, template=req.template, stage=stage, since=n.fmt(wait.raised_at))


def describe_what(n: Any, wait: Wait) -> str:
    facts = _wait_facts(n, wait)
    if facts is None:
        return ""
    req, stage = facts
    return n.t("what_approval", id=req.id, template=req.template, stage=stage)


WAIT_DESCRIBERS = {"approval": describe_waiting, "approval:nag": describe_nag, "approval:what": describe_what}

HELP_LINES: tuple[tuple[str, str, str], ...] = (
    ("apply", "申请 市场活动预算审批 活动方案=双十二快闪店 预算金额=5万 预算明细=场地3万,物料2万 预期效果=新增会员5000 "
     "协作部门=技术部,设计部（只发「申请」看全部模板）", "apply 市场活动预算审批 活动方案=… 预算金额=50000 … (send apply alone for the templates)"),
    ("my_approvals", "待我审批", "approvals"),
    ("show_approval", "审批 #A1", "approval #A1"),
    ("approve", "同意 #A1 同意执行", "approve #A1 looks good"),
    ("reject", "驳回 #A1 预算明细不清楚", "reject #A1 the budget lacks detail"),
    ("reassign_task", "转交 #A1 @李四 原因 出差期间代批", "reassign #A1 @Li reason travelling"),
    ("withdraw", "撤回 #A1", "withdraw #A1"),
    ("resubmit", "重新提交 #A1 预算金额=6万", "resubmit #A1 预算金额=60000"),
    ("cancel_approval", "取消审批 #A1 原因 活动取消（管理员）", "approval cancel #A1 reason called off (admins)"),
)
