"""Help requests (求助): asking a department head for what is needed, and their answer."""

from __future__ import annotations

import re

from sqlalchemy import select

from collabbot.bot.commands import Command
from collabbot.bot.context import Ctx, Refused, snapshot
from collabbot.bot.handlers.common import capped, missing, not_allowed, present, refuse_if_closed
from collabbot.bot.replies import Message, Reply
from collabbot.bot.views import help_card
from collabbot.bot.waits import close_waits, open_wait
from collabbot.storage.models import Department, HelpRequest, Project


def ask_help(ctx: Ctx, cmd: Command) -> Reply | None:
    text = cmd.text
    department = None
    if cmd.get("department"):
        department = ctx.department(cmd.get("department"))
    elif cmd.mentions:
        helper = ctx.mention(cmd.mentions[0])
        department = ctx.s.scalar(select(Department).where(Department.head_id == helper.id).limit(1))
    elif text:
        first, _, rest = text.partition(" ")
        joined = re.match(r"(.+?)[:：，,](.*)", first)
        if joined:  # 求助 技术部：需要接口文档
            first, rest = joined.group(1), f"{joined.group(2)} {rest}"
        department = ctx.department(first)
        text = rest.strip()
    if department is None and not cmd.mentions:
        raise missing(ctx, "help_target")
    if cmd.mentions:
        helper = present(ctx, ctx.mention(cmd.mentions[0]))
    else:
        assert department is not None
        if department.head is None:
            raise Refused("no_head", dept=department.name)
        helper = present(ctx, department.head)
    if not text:
        raise missing(ctx, "help_text")
    capped(ctx, text, "help_text")
    task_id = None
    if cmd.tasks:
        task = ctx.task(cmd.tasks[0], lock=False)
        task_id = task.id
        if task.project is not None:
            refuse_if_closed(ctx, task.project)
    elif ctx.chat is not None and ctx.chat.project_id is not None:
        refuse_if_closed(ctx, ctx.s.get(Project, ctx.chat.project_id))
    req = HelpRequest(task_id=task_id, chat_id=ctx.chat.id if ctx.chat else None, requester_id=ctx.actor.id,
                      department_id=department.id if department else helper.department_id, helper_id=helper.id,
                      text=text, status="open", created_at=ctx.now)
    ctx.s.add(req)
    ctx.s.flush()
    ctx.s.refresh(req)
    open_wait(ctx, "help", "help", req.id, helper, ctx.chat)
    ctx.audit("help.ask", req)
    dept_name = req.department.name if req.department else helper.name
    ctx.say(ctx.t("help_sent", dept=dept_name, id=req.id), " ", ctx.at(helper))
    ctx.tell_user(helper, Message((ctx.actor.name, " ", ctx.t("help_notice", id=req.id, text=text)),
                                  help_card(req, ctx.lang)), key=f"help:{req.id}:ask")
    return None


def answer_help(ctx: Ctx, help_id: int, answer: str, via_card: bool = False) -> Reply | None:
    req = ctx.help_request(help_id)
    heads = ctx.heads_department(ctx.actor, req.department_id)
    if ctx.actor.id != req.helper_id and not heads and not ctx.is_admin():
        raise not_allowed(ctx, "a_answer_help", ctx.t("w_helper", name=req.helper.name))
    if req.status != "open":
        if via_card:
            return Reply(toast=ctx.t("help_closed", id=req.id), card=help_card(req, ctx.lang))
        raise Refused("help_closed", id=req.id)
    before = snapshot(req)
    req.status = "answered"
    req.answer = capped(ctx, answer or "✓", "help_text")
    req.answered_at = ctx.now
    close_waits(ctx, "help", req.id)
    ctx.s.flush()
    ctx.audit("help.answer", req, before)
    notice = Message((ctx.t("help_answered_notice", id=req.id, name=ctx.actor.name, answer=req.answer),))
    if req.requester_id != ctx.actor.id:
        ctx.tell_user(req.requester, notice, key=f"help:{req.id}:answered")
    text = ctx.t("help_answered", id=req.id, answer=req.answer)
    if via_card:
        return Reply(toast=text, toast_kind="success", card=help_card(req, ctx.lang))
    ctx.say(text)
    return None


def answer_command(ctx: Ctx, cmd: Command) -> Reply | None:
    if not cmd.helps:
        raise missing(ctx, "help_id")
    if not cmd.text.strip():  # an empty answer would close the request and turn the real one away
        raise missing(ctx, "help_answer")
    answer = ctx.with_names(cmd.spoken)  # "已安排 @李四 支援": who, kept
    reply = answer_help(ctx, cmd.helps[0], answer)
    for i in dict.fromkeys(cmd.mentions):  # the people the answer names hear it: they are the help
        named = ctx.mention(i)
        if named.id != ctx.actor.id:
            ctx.tell_user(named, Message((ctx.t("help_named_notice", id=cmd.helps[0], name=ctx.actor.name,
                                                   answer=answer),)))
    return reply
