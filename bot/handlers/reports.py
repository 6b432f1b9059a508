"""报表 / report and 导出 / export: the figures of a scope over a period, as a card or a workbook.

    报表                      this group's project (in a private chat: yourself), this week
    报表 部门 技术部 上月       a department        报表 @李四 本季度      a person
    报表 全部 2026-10-01~2026-12-31              everything (admins)
    导出 …                    the same scope and period as a workbook

A scope other than the group's own project is answered privately: a group is no place for a
department's or a person's figures.
"""

from __future__ import annotations

from sqlalchemy import select

from collabbot.bot.commands import Command
from collabbot.bot.context import Ctx, Refused
from collabbot.bot.handlers.common import not_allowed, project_named
from collabbot.bot.replies import Message, Reply
from collabbot.bot.reports import export, figures
from collabbot.bot.reports.card import report_card, report_chart, scope_name
from collabbot.bot.reports.period import PeriodError, parse_period
from collabbot.bot.reports.scope import Scope, may_see
from collabbot.storage.models import Department, Project

DEPARTMENT_WORDS = ("部门", "dept", "department")
PROJECT_WORDS = ("项目", "project")
ALL_WORDS = ("全部", "所有", "all")


def _scope(ctx: Ctx, cmd: Command) -> tuple[Scope, str]:
    """The scope the command names, and the rest of its text (the period)."""
    words = cmd.text.split()
    head = words[0].lower() if words else ""
    if head in DEPARTMENT_WORDS and len(words) > 1:
        dept = ctx.department(words[1])
        return Scope("department", dept.id, dept.name), " ".join(words[2:])
    if head in PROJECT_WORDS and len(words) > 1:
        project = project_named(ctx, words[1])
        if project is None:
            raise Refused("report_unknown_project", name=words[1][:50])
        return Scope("project", project.id, project.name), " ".join(words[2:])
    if head in ALL_WORDS:
        return Scope("all"), " ".join(words[1:])
    if cmd.mentions:
        person = ctx.mention(cmd.mentions[0])
        return Scope("person", person.id, person.name), cmd.text
    if ctx.chat is not None:
        if ctx.chat.project_id is None:
            raise Refused("report_no_project")
        project = ctx.s.get(Project, ctx.chat.project_id)
        return Scope("project", ctx.chat.project_id, project.name if project else ""), cmd.text
    return Scope("person", ctx.actor.id, ctx.actor.name), cmd.text


def frame(ctx: Ctx, cmd: Command) -> figures.Frame:
    """The scope and period asked for, once the asker may see them; else a refusal saying who may."""
    scope, rest = _scope(ctx, cmd)
    try:
        period = parse_period(rest, ctx.now, ctx.bot.calendar.tz)
    except PeriodError as exc:
        raise _bad_period(ctx, rest, exc) from None
    if not may_see(ctx.s, ctx.actor, scope, ctx.is_admin()):
        raise not_allowed(ctx, "a_report", ctx.t(f"w_report_{scope.kind}"))
    return figures.Frame(ctx.s, scope, period, ctx.now, ctx.bot.calendar)


def _bad_period(ctx: Ctx, rest: str, exc: PeriodError) -> Refused:
    """What to say of a period not understood: too long; a department or project named where the period goes
    (`报表 技术部`, `报表 上周 部门 技术部`: the scope comes first); else the periods there are."""
    if exc.reason == "too_long":
        return Refused("report_period_too_long", value=rest[:40])
    words = rest.split()
    for i, word in enumerate(words):
        scoped = word.lower() in (*DEPARTMENT_WORDS, *PROJECT_WORDS) and i + 1 < len(words)
        name = words[i + 1] if scoped else word
        for kind, model in (("department", Department), ("project", Project)):
            if ctx.s.scalar(select(model.id).where(model.name == name).limit(1)) is not None:
                return Refused(f"report_scope_hint_{kind}", name=name[:40])
    return Refused("report_bad_period", value=rest[:40])


def _to_its_group(ctx: Ctx, f: figures.Frame) -> bool:
    """A project's report asked for in that project's group goes to the group; any other to the asker."""
    return ctx.chat is not None and f.scope.kind == "project" and f.scope.id == ctx.chat.project_id


def _answer(ctx: Ctx, f: figures.Frame, message: Message) -> None:
    if ctx.chat is None or _to_its_group(ctx, f):
        if ctx.chat is not None:
            ctx.tell_chat(ctx.chat, message)
        else:
            ctx.tell_user(ctx.actor, message)
        return
    ctx.tell_user(ctx.actor, message)
    ctx.say(ctx.at(ctx.actor), " ", ctx.t("report_sent_private"))


def report(ctx: Ctx, cmd: Command) -> Reply | None:
    f = frame(ctx, cmd)
    _answer(ctx, f, Message(card=report_card(f, ctx.lang, admin=ctx.is_admin()), attachment=report_chart(f, ctx.lang)))
    ctx.audit("report.show", entity_type="report", reason=f"{f.scope.kind}:{f.scope.id or ''} {f.period.label}")
    return None


def export_report(ctx: Ctx, cmd: Command) -> Reply | None:
    f = frame(ctx, cmd)
    write = export.writer()
    if write is None:
        raise Refused("export_unavailable")
    folder = export.export_dir()
    folder.mkdir(mode=0o700, parents=True, exist_ok=True)  # the company's figures: for the bot's user only
    path = folder / export.file_name(f.scope.kind, f.scope.id, f.period.label)
    reader = None if _to_its_group(ctx, f) else export.Reader(ctx.actor.id, ctx.is_admin())
    write(export.sheets(f, ctx.lang, reader), path)
    path.chmod(0o600)
    _answer(ctx, f, Message((ctx.t("export_done", path=str(path)),),
                            attachment=export.attachment(path, scope_name(ctx.lang, f.scope), f.period.label, ctx.lang)))
    ctx.audit("report.export", entity_type="report", reason=f"{f.scope.kind}:{f.scope.id or ''} {f.period.label} {path}")
    return None


HELP_LINES: tuple[tuple[str, str, str], ...] = (
    ("report", "报表 本月（或 报表 部门 技术部 上月、报表 @李四 本周、报表 2026-10-01~2026-12-31）",
     "report this month (or report dept 技术部 last month, report @Li this week)"),
    ("export_report", "导出 本季度（同样的范围和时间，得到一个 Excel 工作簿）", "export this quarter (the same scope and period, as a workbook)"),
)
