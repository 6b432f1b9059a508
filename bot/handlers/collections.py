"""Collection requests (常规信息同步): `收集 月度经营数据 对象 市场部,销售部 截止 周四 18:00`.

Each department named is asked through its head (or each person named, directly), privately, with the
request's card. `提交 #C1 链接 …` records a submission (a second one replaces the first). The card shows
who has and has not submitted, and every sent copy of it follows each change (`bot/copies.py`). What was
submitted is shown only to the requester (and admins): the group's and the targets' copies say who and
when, not what — a department's monthly figures are not the whole group's business.

Chasing: a submission is owed at the deadline, so each target's wait is raised *at the deadline*: the
first nag comes 2 working hours after it, the escalation (to the target's supervisor, as for every wait)
24 hours after it — the same nag → escalation rules as tasks, counted from when the answer became late.
Only those who have not submitted are chased: a submission closes the submitter's wait. Nags go
privately (the request was asked privately); the group sees the card. When the last submission
arrives, the requester gets the complete set.
"""

from __future__ import annotations

import re
from typing import Any

from sqlalchemy import select

from collabbot.bot import texts
from collabbot.bot.commands import Command
from collabbot.bot.context import Ctx, Refused, snapshot
from collabbot.bot.copies import SentCopy, update_copies
from collabbot.bot.handlers.common import (
    MAX_TEXT,
    MAX_TITLE,
    capped,
    missing,
    not_allowed,
    present,
    user_by_name,
    when,
)
from collabbot.bot.handlers.records import announce, group_of, may_see_project, private_cmd, record_project
from collabbot.bot.replies import Card, Message, Part, Reply
from collabbot.bot.reports.scope import heads_of
from collabbot.bot.rules.reminders import next_step
from collabbot.bot.waits import close_waits
from collabbot.storage.models import (
    CollectionRequest,
    CollectionTarget,
    Department,
    Identity,
    Project,
    User,
    Wait,
)

REF = re.compile(r"#C(\d{1,9})\b", re.IGNORECASE)
# the targets follow 对象 (departments by name, people by name or @mention)
_TARGETS = re.compile(r"(?:^|\s)(?:对象|提交对象|提交人|targets?|from)(?:[=:：＝]\s*|\s+|$)", re.IGNORECASE)
# words that may lead a submission's content: 提交 #C1 链接 https://… / 内容 …
_LEAD = re.compile(r"^(?:链接|附件|内容|link|content)(?:[=:：＝]\s*|\s+)", re.IGNORECASE)
ACTIONS = {"列表": "list", "list": "list", "关闭": "close", "结束": "close", "取消": "close", "close": "close",
           "cancel": "close"}
# one row per person asked, after the requester and deadline: 20 fields, the smallest platform's card (WeCom)
MAX_TARGETS = 18
OPEN, COMPLETE, CLOSED = "open", "complete", "closed"


def is_submission(cmd: Command) -> bool:
    """`提交 #C1 …` (the 提交 of a task takes `#12`): a collection's reference among the first words."""
    return cmd.tasks == () and REF.match(cmd.text.strip()) is not None


# --- the card ------------------------------------------------------------------------------------

def _target_label(target: CollectionTarget) -> str:
    return f"{target.department.name} {target.user.name}" if target.department is not None else target.user.name


def collection_card(ctx: Ctx, c: CollectionRequest, *, full: bool) -> Card:
    """The request as a card: who has and has not submitted; with `full` (the requester's copy) what each sent."""
    done = sum(t.submitted_at is not None for t in c.targets)
    late = ctx.now > c.deadline
    fields: list[tuple[str, str]] = [(ctx.t("f_collect_by"), c.requester.name),
                                     (ctx.t("f_collect_deadline"), ctx.fmt(c.deadline))]
    for target in c.targets:
        if target.submitted_at is None:
            value = ctx.t("collect_row_missing_late" if late and c.status == OPEN else "collect_row_missing")
        else:
            value = ctx.t("collect_row_done", when=ctx.fmt(target.submitted_at))
            if full:
                value = texts.labelled(ctx.lang, value, " ".join(x for x in (target.content, *target.links) if x))
        fields.append((_target_label(target), value))
    if c.status == COMPLETE:
        status, color = ctx.t("collect_complete"), "green"
    elif c.status == CLOSED:
        status, color = ctx.t("collect_closed", done=done, n=len(c.targets)), "grey"
    else:
        status = ctx.t("collect_progress", done=done, n=len(c.targets))
        color = "red" if late else "blue"
    return Card(kind="collection", key=f"collection:{c.id}", title=ctx.t("collect_title", id=c.id, title=c.title),
                status=status, color=color, fields=tuple(fields),
                note=ctx.t("collect_how", id=c.id) if c.status == OPEN else "")


def _viewer(ctx: Ctx, copy: SentCopy) -> User | None:
    if copy.target_kind != "user":
        return None
    return ctx.s.scalar(select(User).join(Identity, Identity.user_id == User.id).where(
        Identity.platform == copy.platform, Identity.platform_user_id == copy.target_id))


def _follow(ctx: Ctx, c: CollectionRequest) -> None:
    """Every sent copy of the card shows the change: the requester's with the contents, the others without."""
    ctx.s.flush()
    ctx.s.refresh(c)
    plain = collection_card(ctx, c, full=False)

    def view(copy: SentCopy) -> Card | None:
        viewer = _viewer(ctx, copy)
        return collection_card(ctx, c, full=True) if viewer is not None and viewer.id == c.requester_id else plain

    update_copies(ctx.s, plain, key=f"{ctx.event_key}:collection:{c.id}", now=ctx.now, view=view)


# --- commands ------------------------------------------------------------------------------------

def collect(ctx: Ctx, cmd: Command) -> Reply | None:
    """收集 标题 对象 部门,… [@某人] 截止 … | 收集 #C1 | 收集 列表 | 收集 关闭 #C1."""
    cmd = private_cmd(ctx, cmd)
    text = cmd.text.strip()
    first = text.split(maxsplit=1)[0].lower() if text else ""
    if REF.fullmatch(text):
        return _show(ctx, _load(ctx, text))
    action = ACTIONS.get(first)
    if action == "close":
        return _close(ctx, _load(ctx, text))
    if action == "list" or (not text and not cmd.mentions and "deadline" not in cmd.fields):
        return _list(ctx, cmd)
    return _create(ctx, cmd)


def _load(ctx: Ctx, text: str) -> CollectionRequest:
    found = REF.search(text)
    if found is None:
        raise Refused("collect_no_ref")
    stmt = select(CollectionRequest).where(CollectionRequest.id == int(found.group(1)))
    if ctx.s.get_bind().dialect.name == "postgresql":
        stmt = stmt.with_for_update()  # two submissions at once: the second sees the first (the last one completes)
    c = ctx.s.scalar(stmt.execution_options(populate_existing=True))
    if c is None or not _may_see(ctx, c):
        raise Refused("collect_not_found", id=found.group(1))
    return c


def _may_see(ctx: Ctx, c: CollectionRequest) -> bool:
    """As for tasks: the requester, the people asked and the heads above them, the project's members, admins,
    and the project's group."""
    me = ctx.actor.id
    if me == c.requester_id or any(t.user_id == me for t in c.targets):
        return True
    if any(me in heads_of(ctx.s, t.user) for t in c.targets):
        return True
    return may_see_project(ctx, c.project_id) if c.project_id is not None else ctx.is_admin()


def _targets(ctx: Ctx, cmd: Command, names_text: str) -> list[tuple[User, Department | None]]:
    out: list[tuple[User, Department | None]] = []
    for name in (n for n in re.split(r"[,，、\s]+", names_text) if n):
        dept = ctx.s.scalar(select(Department).where(Department.name == name.lstrip("@")))
        if dept is not None:
            if dept.head is None:
                raise Refused("no_head", dept=dept.name)
            out.append((dept.head, dept))
            continue
        try:
            out.append((user_by_name(ctx, name), None))
        except Refused as exc:
            if exc.key == "person_left":
                raise
            known = texts.names(ctx.lang, ctx.s.scalars(select(Department.name).order_by(Department.id)))
            raise Refused("collect_unknown_target", name=name[:40], known=known or ctx.t("none")) from None
    out += [(present(ctx, ctx.mention(i)), None) for i in cmd.mentions]
    unique: dict[int, tuple[User, Department | None]] = {}
    for user, dept in out:
        if user.id not in unique or (dept is not None and unique[user.id][1] is None):
            unique[user.id] = (user, dept)
    return list(unique.values())


def _may_request(ctx: Ctx, project: Project) -> bool:
    """The project's coordinator, a department head, or an admin asks departments for their figures."""
    if ctx.actor.id == project.coordinator_id or ctx.is_admin():
        return True
    return ctx.s.scalar(select(Department.id).where(Department.head_id == ctx.actor.id).limit(1)) is not None


def _create(ctx: Ctx, cmd: Command) -> Reply | None:
    project = record_project(ctx, cmd, create=True)
    if not _may_request(ctx, project):
        raise not_allowed(ctx, "a_collect", ctx.t("w_collect"))
    split = _TARGETS.search(cmd.text)
    title = (cmd.text[:split.start()] if split else cmd.text).strip()
    names = cmd.text[split.end():] if split else ""
    if not title:
        raise missing(ctx, "collect_title")
    targets = _targets(ctx, cmd, names)
    if not targets:
        raise missing(ctx, "collect_targets")
    if len(targets) > MAX_TARGETS:
        raise Refused("collect_too_many", max=MAX_TARGETS)
    deadline = when(ctx, cmd, "deadline")
    if deadline is None:
        raise missing(ctx, "collect_deadline")
    if deadline <= ctx.now:
        raise Refused("deadline_past", when=ctx.fmt(deadline))
    group = group_of(ctx, project)
    c = CollectionRequest(project_id=project.id, chat_id=group.id if group else None,
                          title=capped(ctx, title, "collect_title", MAX_TITLE), requester_id=ctx.actor.id,
                          deadline=deadline, status=OPEN, created_at=ctx.now, updated_at=ctx.now, version=1)
    ctx.s.add(c)
    ctx.s.flush()
    rules = ctx.bot.config.rules
    # owed at the deadline: the nag and escalation rules count from there (see the module's docstring)
    step = next_step(deadline, 0, None, False, rules, ctx.bot.calendar)
    for user, dept in targets:
        ctx.s.add(CollectionTarget(collection_id=c.id, user_id=user.id, department_id=dept.id if dept else None,
                                   content="", links=[]))
        ctx.s.add(Wait(kind="collection", entity_type="collection", entity_id=c.id, person_id=user.id, chat_id=None,
                       raised_at=deadline, nags_sent=0, next_due_at=step[1] if step else None))
    ctx.s.flush()
    ctx.s.refresh(c)
    ctx.audit("collection.create", c)
    card = collection_card(ctx, c, full=False)
    parts: list[Part] = [ctx.t("collect_created", id=c.id, title=c.title, deadline=ctx.fmt(deadline))]
    for i, target in enumerate(c.targets):
        parts += ([ctx.t("sep_names")] if i else []) + [ctx.at(target.user)]
    announce(ctx, project, *parts, card=card)
    for target in c.targets:
        dept = ctx.t("collect_for_dept", dept=target.department.name) if target.department is not None else ""
        ctx.tell_user(target.user, Message((ctx.t("collect_ask", name=ctx.actor.name, title=c.title, dept=dept,
                                                  deadline=ctx.fmt(deadline), id=c.id),), card),
                      key=f"collection:{c.id}:ask:{target.user_id}")
    return None


def submit(ctx: Ctx, cmd: Command) -> Reply | None:
    """提交 #C1 链接 https://… [说明]: my submission to a collection (again: it replaces the earlier one)."""
    c = _load(ctx, cmd.text)
    if c.status == CLOSED:
        raise Refused("collect_is_closed", id=c.id)
    mine = next((t for t in c.targets if t.user_id == ctx.actor.id), None)
    if mine is None:
        raise not_allowed(ctx, "a_collect_submit", ctx.t("w_collect_submit", names=texts.names(
            ctx.lang, (_target_label(t) for t in c.targets))))
    found = REF.search(cmd.text)
    assert found is not None
    content = _LEAD.sub("", cmd.text[found.end():].strip())
    links = [link for link in cmd.links if link not in content.split()]
    if not content and not links:
        raise missing(ctx, "collect_content")
    again = mine.submitted_at is not None
    before = snapshot(mine)
    mine.content = capped(ctx, content, "collect_content", MAX_TEXT)
    mine.links = list(links)[:10]
    mine.submitted_at, mine.submitted_by_id = ctx.now, ctx.actor.id
    c.updated_at, c.version = ctx.now, c.version + 1
    close_waits(ctx, "collection", c.id, person_id=ctx.actor.id)
    ctx.s.flush()
    ctx.audit("collection.submit", mine, before)
    done = sum(t.submitted_at is not None for t in c.targets)
    ctx.say(ctx.t("collect_submitted_again" if again else "collect_submitted", id=c.id, title=c.title, done=done,
                  n=len(c.targets)))
    completed = c.status == OPEN and done == len(c.targets)
    if completed:
        c.status, c.closed_at = COMPLETE, ctx.now
        ctx.audit("collection.complete", c)
    _follow(ctx, c)
    full = collection_card(ctx, c, full=True)
    if completed:
        ctx.tell_user(c.requester, Message((ctx.t("collect_all_in", id=c.id, title=c.title, n=len(c.targets)),),
                                           full), key=f"collection:{c.id}:complete")
        if c.chat is not None and c.chat.active:
            ctx.tell_chat(c.chat, Message((ctx.t("collect_all_in_group", id=c.id, title=c.title),)),
                          key=f"collection:{c.id}:complete:chat")
    elif again and c.status == COMPLETE:
        ctx.tell_user(c.requester, Message((ctx.t("collect_amended", id=c.id, name=ctx.actor.name),), full))
    return None


def _close(ctx: Ctx, c: CollectionRequest) -> Reply | None:
    """收集 关闭 #C1: the requester (or the coordinator, an admin) stops it; nobody is chased any more."""
    coordinator = c.project.coordinator_id if c.project is not None else None
    if ctx.actor.id not in (c.requester_id, coordinator) and not ctx.is_admin():
        raise not_allowed(ctx, "a_collect_close", ctx.t("w_collect_close"))
    if c.status != OPEN:
        raise Refused("collect_is_closed", id=c.id)
    before = snapshot(c)
    c.status, c.closed_at, c.updated_at, c.version = CLOSED, ctx.now, ctx.now, c.version + 1
    close_waits(ctx, "collection", c.id)
    ctx.s.flush()
    ctx.audit("collection.close", c, before)
    done = sum(t.submitted_at is not None for t in c.targets)
    ctx.say(ctx.t("collect_closed_note", id=c.id, done=done, n=len(c.targets)))
    _follow(ctx, c)
    if done and (ctx.chat is not None or ctx.actor.id != c.requester_id):
        # what came in so far, for the requester's eyes only
        ctx.tell_user(c.requester, Message((ctx.t("collect_closed_note", id=c.id, done=done, n=len(c.targets)),),
                                           collection_card(ctx, c, full=True)), key=f"collection:{c.id}:closed")
    return None


def _show(ctx: Ctx, c: CollectionRequest) -> Reply | None:
    full = ctx.chat is None and (ctx.actor.id == c.requester_id or ctx.is_admin())
    ctx.say(card=collection_card(ctx, c, full=full))
    return None


def _list(ctx: Ctx, cmd: Command) -> Reply | None:
    project = record_project(ctx, cmd)
    found = list(ctx.s.scalars(select(CollectionRequest).where(CollectionRequest.project_id == project.id,
                                                               CollectionRequest.status == OPEN)
                               .order_by(CollectionRequest.deadline, CollectionRequest.id).limit(20)))
    rows = []
    for c in found:
        waiting = [t.user.name for t in c.targets if t.submitted_at is None]
        rows.append((ctx.t("collect_title", id=c.id, title=c.title),
                     ctx.t("collect_list_row", deadline=ctx.fmt(c.deadline), done=len(c.targets) - len(waiting),
                           n=len(c.targets), waiting=texts.names(ctx.lang, waiting) or ctx.t("none"))))
    ctx.say(card=Card(kind="collection_list", key=f"collections:{project.id}",
                      title=ctx.t("collect_list_title", name=project.name), color="blue", fields=tuple(rows),
                      note="" if rows else ctx.t("collect_list_empty")))
    return None


# --- how a wait on a collection reads (待我处理, nags, escalations) ---------------------------------

def _title(s: Any, wait: Wait) -> str:
    c = s.get(CollectionRequest, wait.entity_id)
    return c.title[:60] if c is not None else ""


def describe_waiting(ctx: Ctx, wait: Wait) -> str:
    return ctx.t("waiting_collect", id=wait.entity_id, title=_title(ctx.s, wait), deadline=ctx.fmt(wait.raised_at))


def describe_nag(n: Any, wait: Wait) -> str:  # n: the sweep's Notifier
    return n.t("nag_collect", id=wait.entity_id, title=_title(n.s, wait), deadline=n.fmt(wait.raised_at))


def describe_what(n: Any, wait: Wait) -> str:
    return n.t("what_collect", id=wait.entity_id, title=_title(n.s, wait))


WAIT_DESCRIBERS = {"collection": describe_waiting, "collection:nag": describe_nag, "collection:what": describe_what}
HELP_LINES: tuple[tuple[str, str, str], ...] = (
    ("collect", "收集 月度经营数据 对象 市场部,技术部 截止 周四 18:00；提交 #C1 链接 https://…；收集 #C1；收集 关闭 #C1",
     "collect monthly figures targets 市场部,技术部 due thu 18:00; done #C1 https://…; collect #C1"),
)
