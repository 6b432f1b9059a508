"""The form: reading `字段=值` pairs against a template, and who each stage asks (resolved at submission)."""

from __future__ import annotations

import re

from sqlalchemy import and_, or_, select

from collabbot.bot import texts
from collabbot.bot.approval_templates import ApprovalTemplate, FieldSpec, StageSpec, example_value, parse_value
from collabbot.bot.commands import ALIASES
from collabbot.bot.context import Ctx, Refused
from collabbot.bot.handlers.approvals.base import TASK_PAIR_NAMES
from collabbot.storage.models import (
    ApprovalApprover,
    ApprovalRequest,
    ApprovalStep,
    Department,
    Identity,
    Project,
    Task,
    User,
)


def word(ctx: Ctx, command: str) -> str:
    """The command's word in the reply language (申请 / apply)."""
    aliases = ALIASES[command]
    return next((a for a in aliases if a.isascii()), aliases[0]) if ctx.lang == "en" else aliases[0]


def example(ctx: Ctx, template: ApprovalTemplate) -> str:
    task = " #12" if template.kind == "extension" else ""
    pairs = " ".join(f"{f.name}={example_value(f)}" for f in template.fields if f.required)
    return f"{word(ctx, 'apply')} {template.name}{task} {pairs}".strip()


def _kind_name(ctx: Ctx, spec: FieldSpec) -> str:
    return ctx.t(f"approval_type_{spec.type}", choices="/".join(spec.choices))


def read_pairs(ctx: Ctx, template: ApprovalTemplate, pairs: tuple[tuple[str, str], ...],
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
            known = texts.names(ctx.lang, (f.name for f in template.fields)) or ctx.t("none")
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
        raise Refused("missing_approval_fields", fields=texts.names(ctx.lang, absent), example=example(ctx, template))
    return out, changed


def departments(ctx: Ctx, text: str) -> list[Department]:
    found: list[Department] = []
    for name in re.split(r"[,，、\s]+", text):
        if name:
            dept = ctx.department(name)
            if dept not in found:
                found.append(dept)
    return found


def receiving_department(ctx: Ctx, template: ApprovalTemplate, values: dict[str, str]) -> Department:
    depts = departments(ctx, values.get(template.receiving_department_field, ""))
    if not depts:
        raise Refused("missing_approval_fields", fields=template.receiving_department_field, example=example(ctx, template))
    return depts[0]


def _person(ctx: Ctx, label: str, ids: tuple[str, ...], stage: StageSpec) -> User:
    """The approver with one of these platform identities (a display name matches nobody: a second
    赵总 in the company is not the 运营总监); the identity on the platform at hand first."""
    pairs = [tuple(i.split(":", 1)) for i in ids]
    found = list(ctx.s.execute(select(User, Identity.platform).join(Identity, Identity.user_id == User.id).where(
        or_(*(and_(Identity.platform == p, Identity.platform_user_id == u) for p, u in pairs)))).all()) if pairs else []
    if not found:
        raise Refused("approver_missing", stage=stage.name, name=label)
    found.sort(key=lambda row: (row[1] != ctx.platform, row[0].id))
    return found[0][0]


def plan_stages(ctx: Ctx, template: ApprovalTemplate, values: dict[str, str], project: Project | None,
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
            depts = departments(ctx, values.get(stage.departments_field, "")) if stage.departments_field else []
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
            for label, ids in zip(stage.people, stage.identities or ((),) * len(stage.people), strict=True):
                user = _person(ctx, label, ids, stage)
                if all(user.id != u.id for u, _ in approvers):
                    approvers.append((user, None))
        plan.append(approvers)
    return plan


def create_round(ctx: Ctx, req: ApprovalRequest, template: ApprovalTemplate,
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
