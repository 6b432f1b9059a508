"""The time-driven rules, derived from rows: nags, escalations, overdue warnings, the daily prompt and
the weekly summary.

`sweep(bot, now)` runs every minute (and the console runs it at each due moment). It finds what is
due with indexed queries, writes the outbox rows and moves each row's `next_due_at` on, all in one
transaction, so a restart loses nothing and a sweep after downtime sends each late reminder once.
Calendar jobs fire once per slot anywhere: a `job_runs` row with a unique (job, slot) is inserted
in the same transaction as the messages, so a second instance or a re-run inserts nothing.
"""

from __future__ import annotations

import logging
import zlib
from collections.abc import Callable, Iterable
from datetime import date, datetime, time, timedelta
from typing import TYPE_CHECKING, TypeVar

from sqlalchemy import Row, func, select, text, update
from sqlalchemy import insert as sa_insert
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session, selectinload

from collabbot.bot import people, risk_report, texts
from collabbot.bot.approval_templates import extension_form
from collabbot.bot.org import CONSOLE
from collabbot.bot.replies import At, Button, Card, CardAction, Message
from collabbot.bot.reports.trend import WeeklyTrend
from collabbot.bot.rules import approval_stages, states
from collabbot.bot.rules.reminders import next_step
from collabbot.bot.views import blocked_ids, task_card
from collabbot.storage import outbox
from collabbot.storage.models import (
    ApprovalRequest,
    AuditEntry,
    Chat,
    Department,
    HelpRequest,
    Identity,
    JobRun,
    Milestone,
    OutboxMessage,
    Project,
    ProjectArchive,
    Risk,
    Task,
    TaskDependency,
    User,
    Wait,
    WeeklyNote,
)

if TYPE_CHECKING:
    from collabbot.bot.context import Engine

BATCH = 5000
OVERDUE_INDEX_CONDITION = "tasks.status <> 'done' AND tasks.status <> 'cancelled' AND tasks.overdue_warned_at IS NULL"
SKIPPED_WAIT_RETRY = timedelta(hours=1)  # a wait whose reminder failed is tried again this much later

log = logging.getLogger(__name__)
T = TypeVar("T")


class Notifier:
    """Outbox rows and audit entries for the sweep, which acts as nobody in particular.

    Rows are collected and written in one multi-row INSERT per table by `flush()`, and platform
    identities are loaded once per batch: a sweep with 1,000 due reminders must not make 10,000 queries.
    """

    def __init__(self, bot: Engine, s: Session, now: datetime) -> None:
        self.bot, self.s, self.now = bot, s, now
        self.lang = bot.config.language
        self.rows: list[dict] = []
        self.audits: list[dict] = []
        self.ids: dict[int, dict[str, str]] = {}
        self.facts: dict[tuple[str, int], object] = {}  # what describers read for many waits at once (prefetch)
        self.keep: list[object] = []  # rows loaded ahead, held so the session's identity map keeps them
        self.wait_updates: list[dict] = []  # id and new reminder columns of each wait, one executemany UPDATE

    def update_wait(self, wait: Wait, **values: object) -> None:
        """Move a wait on (written with the batch, not through the ORM's per-object flush)."""
        row = {"id": wait.id, "nags_sent": wait.nags_sent, "last_nag_at": wait.last_nag_at,
               "escalated_at": wait.escalated_at, "next_due_at": wait.next_due_at}
        row.update(values)
        self.wait_updates.append(row)

    def _write(self) -> None:
        if self.wait_updates:
            self.s.execute(update(Wait), self.wait_updates)
            self.wait_updates = []
        self.s.flush()

    def load_identities(self, user_ids: set[int]) -> None:
        missing = [u for u in user_ids if u not in self.ids]
        for u in missing:
            self.ids[u] = {}
        if missing:
            for ident in self.s.scalars(select(Identity).where(Identity.user_id.in_(missing)).order_by(Identity.id)):
                self.ids[ident.user_id].setdefault(ident.platform, ident.platform_user_id)

    def platform_ids(self, user: User) -> dict[str, str]:
        self.load_identities({user.id})
        return self.ids[user.id]

    def flush(self) -> None:
        """Write the collected rows with one executemany per table (batched into multi-row INSERTs)."""
        dialect = self.s.get_bind().dialect.name
        insert = postgresql.insert if dialect == "postgresql" else sqlite.insert
        connection = self.s.connection()
        if self.rows:
            stmt = insert(OutboxMessage.__table__).on_conflict_do_nothing(index_elements=["dedupe_key"])
            connection.execute(stmt, self.rows)
        if self.audits:
            connection.execute(sa_insert(AuditEntry.__table__), self.audits)
        self.rows, self.audits = [], []

    def t(self, key: str, **values: object) -> str:
        return texts.t(self.lang, key, **values)

    def fmt(self, when: datetime | None) -> str:
        if when is None:
            return "-"
        local = when.astimezone(self.bot.calendar.tz)
        return local.strftime("%m-%d %H:%M")

    def send_window(self, outside_ok: bool = False) -> datetime:
        """Now, or the start of the next working period when now is outside working time."""
        return self.now if outside_ok else self.bot.calendar.next_working_moment(self.now)

    def at(self, user: User, platform: str) -> At | str:
        """A real @mention; only the name, marked, for someone who has left (nobody to call)."""
        if user.left_at is not None:
            return self.t("person_left_name", name=user.name)
        return At(user.id, self.platform_ids(user).get(platform, ""), user.name)

    def _row(self, key: str, platform: str, kind: str, target_id: str, name: str, message: Message,
             not_before: datetime, anytime: bool = False) -> None:
        payload = message.to_json()
        if not anytime:  # timed for working time: delivery holds it there if it comes due outside
            payload[outbox.WORKING_TIME] = True
        self.rows.append(dict(dedupe_key=key, platform=platform, target_kind=kind, target_id=target_id,
                              target_name=name, payload=payload, status="pending", attempts=0,
                              card_key=message.card.key if message.card else None, not_before=not_before,
                              created_at=self.now, last_error=""))

    def to_user(self, user: User, message: Message, key: str, not_before: datetime, platform: str = "", *,
                anytime: bool = False) -> bool:
        """Queue `message` for `user`; `anytime` when the rule may reach them outside working time."""
        ids = self.platform_ids(user)
        if not ids or user.left_at is not None:  # someone who has left is chased no more (and unreachable)
            return False
        # someone with a platform identity and a console one (an org file loaded by `serve`) hears it on the platform
        chosen = platform if platform in ids else next((p for p in ids if p != CONSOLE), next(iter(ids)))
        self._row(key, chosen, "user", ids[chosen], user.name, message, not_before, anytime)
        return True

    def to_chat(self, chat: Chat, message: Message, key: str, not_before: datetime, *, anytime: bool = False) -> bool:
        self._row(key, chat.platform, "chat", chat.platform_chat_id, chat.name, message, not_before, anytime)
        return True

    def audit(self, action: str, entity_type: str, entity_id: int, after: dict | None, *, outcome: str = "ok",
              reason: str = "") -> None:
        self.audits.append(dict(at=self.now, actor_id=None, action=action, entity_type=entity_type,
                                entity_id=entity_id, outcome=outcome, reason=reason[:2000], before=None, after=after))

    def each(self, rule: str, items: Iterable[T], work: Callable[[T], bool], entity: Callable[[T], tuple[str, int]],
             skipped: Callable[[T], None] | None = None) -> int:
        """`work(item)` for every item, isolated: an item that fails is logged, audited and skipped (then
        `skipped(item)` runs), and the others go on. How many items `work` acted on.

        The whole batch runs in one savepoint first; only when it fails is it run again with one savepoint
        per item, so a sweep with nothing wrong pays for no per-item savepoints.
        """
        items = list(items)
        rows, audits, updates = len(self.rows), len(self.audits), len(self.wait_updates)
        try:
            with self.s.begin_nested():
                with self.s.no_autoflush:  # rows changed here are written once, at the end of the batch
                    done = sum(1 for item in items if work(item))
                self._write()
            return done
        except Exception:
            del self.rows[rows:], self.audits[audits:], self.wait_updates[updates:]
            log.warning("sweep: a %s batch of %s failed; running it item by item", rule, len(items))
        done = 0
        for item in items:
            rows, audits, updates = len(self.rows), len(self.audits), len(self.wait_updates)
            try:
                with self.s.begin_nested():
                    acted = work(item)
                    self._write()
                done += acted
            except Exception as exc:
                del self.rows[rows:], self.audits[audits:], self.wait_updates[updates:]
                entity_type, entity_id = entity(item)
                log.exception("sweep: %s skipped %s #%s", rule, entity_type, entity_id)
                self.audit(f"{rule}.skip", entity_type, entity_id, None, outcome="error",
                           reason=f"{type(exc).__name__}: {exc}")
                if skipped is not None:
                    try:
                        with self.s.begin_nested():
                            skipped(item)
                            self._write()
                    except Exception:
                        log.exception("sweep: cannot set %s #%s aside", entity_type, entity_id)
        return done


def _insert_once(s: Session, job: str, slot: str, now: datetime) -> bool:
    insert = postgresql.insert if s.get_bind().dialect.name == "postgresql" else sqlite.insert
    stmt = (insert(JobRun).values(job=job, slot=slot, ran_at=now)
            .on_conflict_do_nothing(index_elements=["job", "slot"]).returning(JobRun.id))
    return s.execute(stmt).first() is not None  # not rowcount: -1 on PostgreSQL through the ORM insert


def _spread(key: str, minutes: int) -> timedelta:
    """A stable offset of 0..minutes for `key`, so 10:00 jobs do not all hit the platform at :00."""
    return timedelta(seconds=zlib.crc32(key.encode()) % (max(minutes, 0) * 60 + 1))


# --- waits: nags and escalations ----------------------------------------------------------------

def _what(n: Notifier, wait: Wait, tasks: dict[int, Task] | None = None) -> str:
    if wait.entity_type == "task":
        task = (tasks or {}).get(wait.entity_id) or n.s.get(Task, wait.entity_id)
        key = "what_overdue" if wait.kind == "overdue" else "what_assign"
        return n.t(key, id=wait.entity_id, title=task.title if task else "")
    if wait.entity_type == "help":
        return n.t("what_help", id=wait.entity_id)
    describe = n.bot.wait_describers.get(wait.entity_type + ":what")
    return describe(n, wait) if describe else wait.entity_type  # type: ignore[arg-type]


def _urgent_response(wait: Wait, tasks: dict[int, Task]) -> bool:
    """Is this wait an urgent task's response (确认收到)? Only that keeps the urgent rhythm ([rules.urgent]);
    an urgent task's overdue reason is chased like any other nag, in working time."""
    return wait.entity_type == "task" and wait.kind == "assign" and getattr(tasks.get(wait.entity_id), "urgent", False)


def _nag(n: Notifier, wait: Wait, tasks: dict[int, Task], blocked: set[int]) -> None:
    person, platform = wait.person, wait.chat.platform if wait.chat else ""
    number = wait.nags_sent + 1
    since = n.fmt(wait.raised_at)
    card = None
    urgent = _urgent_response(wait, tasks)  # an urgent task's response nags carry the platforms' strongest alert
    if wait.entity_type == "task":
        task = tasks.get(wait.entity_id)
        if task is None:
            return
        line = n.t("nag_overdue" if wait.kind == "overdue" else "nag_assign", id=task.id, title=task.title,
                   since=since)
        card = task_card(n.s, task, n.lang, n.now, n.bot.calendar.tz, blocked=task.id in blocked)
    elif wait.entity_type == "help":
        req = n.s.get(HelpRequest, wait.entity_id)
        line = n.t("nag_help", id=wait.entity_id, text=req.text[:60] if req else "", since=since)
    else:
        describe = n.bot.wait_describers.get(wait.entity_type + ":nag")
        line = describe(n, wait) if describe else n.t("nag_generic", since=since)  # type: ignore[arg-type]
    anytime = urgent or n.bot.config.rules.nag_outside_working_hours
    when = n.send_window(anytime)
    key = f"nag:{wait.entity_type}:{wait.entity_id}:{wait.kind}:{wait.id}:{number}"
    rules = n.bot.config.rules
    if rules.nag_in_group and wait.chat is not None and wait.chat.active:
        n.to_chat(wait.chat, Message((n.at(person, platform), " ", line), urgent=urgent), key + ":chat", when,
                  anytime=anytime)
    if rules.nag_private or urgent:
        n.to_user(person, Message((line,), card, urgent=urgent), key + ":dm", when, platform, anytime=anytime)
    n.audit("rule.nag", wait.entity_type, wait.entity_id, {"wait": wait.id, "person": person.id, "nag": number})


# what the leader an escalation reaches sends to hand the wait's work to someone else (its 转交 button's hint);
# a help request or a retrospective is not handed on, so its card has no such button
REASSIGN_HINTS = {"task": "hint_reassign", "approval": "hint_reassign_approval", "risk": "hint_reassign_risk"}


def _escalate(n: Notifier, wait: Wait, tasks: dict[int, Task]) -> None:
    person = wait.person
    rules = n.bot.config.rules
    boss = people.escalation_target(n.s, person, rules.escalation_to)
    task_urgent = _urgent_response(wait, tasks)
    hours = f"{rules.urgent_respond_hours if task_urgent else rules.escalation_after_hours:g}"
    what = _what(n, wait, tasks)
    anytime = task_urgent or rules.escalation_outside_working_hours
    when = n.send_window(anytime)
    key = f"escalate:{wait.entity_type}:{wait.entity_id}:{wait.kind}:{wait.id}"
    gone = person.left_at is not None  # they left the company: the leader hands it on; nobody to remind
    if boss is not None:
        card = Card(
            kind="escalation", key=f"wait:{wait.id}", title=n.t("escalation_title", name=person.name),
            status=n.t("left_status" if gone else "unanswered"), color="red",
            fields=((n.t("f_waiting"), what), (n.t("f_person"), person.name),
                    (n.t("f_since"), n.fmt(wait.raised_at)), (n.t("f_nags"), str(wait.nags_sent))),
            buttons=(*([] if gone else [Button(n.t("b_remind"), CardAction("remind", "wait", wait.id, 0).pack(),
                                               "primary")]),
                     *([Button(n.t("b_reassign"), CardAction("reassign", "wait", wait.id, 0).pack())]
                       if wait.entity_type in REASSIGN_HINTS else [])),
        )
        urgent = task_urgent or rules.escalation_urgent == "all" or (
            rules.escalation_urgent == "high" and wait.entity_type == "task"
            and getattr(tasks.get(wait.entity_id), "priority", "") == "high")
        intro = (n.t("escalation_left_private", name=person.name) if gone
                 else n.t("escalation_private", name=person.name, hours=hours))
        n.to_user(boss, Message((intro,), card, urgent=urgent), key + ":boss", when, anytime=anytime)
    if rules.escalation_in_group and wait.chat is not None and wait.chat.active:
        platform = wait.chat.platform
        if gone:  # said of them, not to them: no @mention
            note = (n.t("escalation_left_group", name=person.name, what=what, boss=boss.name) if boss is not None
                    else n.t("escalation_left_group_nobody", name=person.name, what=what))
            n.to_chat(wait.chat, Message((note,)), key + ":chat", when, anytime=anytime)
        else:
            note = (n.t("escalation_group", what=what, hours=hours, boss=boss.name) if boss is not None
                    else n.t("escalation_group_nobody", what=what, hours=hours))
            n.to_chat(wait.chat, Message((n.at(person, platform), " ", note)), key + ":chat", when, anytime=anytime)
    n.audit("rule.escalate", wait.entity_type, wait.entity_id,
            {"wait": wait.id, "person": person.id, "to": boss.id if boss else None, **({"left": True} if gone else {})})


def _hand_up(n: Notifier, wait: Wait, tasks: dict[int, Task]) -> bool:
    """A wait on someone who has left: no nag (nobody would read it); it goes to their escalation target at
    once, in working time, rather than after the nags and 24 hours, and once. The org sync made it due."""
    rules = n.bot.config.rules
    if wait.escalated_at is not None or not rules.escalation_enabled:
        n.update_wait(wait, next_due_at=None)
        return False
    window = n.send_window(_urgent_response(wait, tasks) or rules.escalation_outside_working_hours)
    if window > n.now:
        n.update_wait(wait, next_due_at=window)
        return False
    _escalate(n, wait, tasks)
    n.update_wait(wait, escalated_at=n.now, next_due_at=None)
    return True


def _prefetch(n: Notifier, waits: list[Wait]) -> None:
    """Everything the batch's nags and escalations read, in a few queries for the whole batch: help
    requests, what other modules' describers need, the people's departments, heads and supervisors
    (escalation targets) and all of their platform identities."""
    s = n.s
    help_ids = [w.entity_id for w in waits if w.entity_type == "help"]
    if help_ids:
        n.keep += s.scalars(select(HelpRequest).where(HelpRequest.id.in_(help_ids))).all()
    by_type: dict[str, list[Wait]] = {}
    for w in waits:
        by_type.setdefault(w.entity_type, []).append(w)
    for entity_type, some in by_type.items():
        prefetch = n.bot.wait_describers.get(entity_type + ":prefetch")
        if prefetch is not None:
            prefetch(n, some)
    dept_ids = {w.person.department_id for w in waits if w.person.department_id is not None}
    depts = s.scalars(select(Department).where(Department.id.in_(dept_ids))
                      .options(selectinload(Department.head).selectinload(User.supervisor))).all() if dept_ids else []
    n.keep += depts
    people = {w.person_id for w in waits} | {w.person.supervisor_id for w in waits if w.person.supervisor_id}
    for d in depts:
        if d.head is not None:
            people |= {d.head.id} | ({d.head.supervisor_id} if d.head.supervisor_id else set())
    n.load_identities(people)


def sweep_waits(bot: Engine, s: Session, now: datetime) -> int:
    stmt = (select(Wait).where(Wait.answered_at.is_(None), Wait.next_due_at.is_not(None), Wait.next_due_at <= now)
            .order_by(Wait.next_due_at).limit(BATCH)
            .options(selectinload(Wait.person).selectinload(User.supervisor), selectinload(Wait.chat)))
    if s.get_bind().dialect.name == "postgresql":
        stmt = stmt.with_for_update(skip_locked=True, of=Wait)
    n = Notifier(bot, s, now)
    rules = bot.config.rules
    waits = list(s.scalars(stmt))
    task_ids = [w.entity_id for w in waits if w.entity_type == "task"]
    tasks = {t.id: t for t in s.scalars(select(Task).where(Task.id.in_(task_ids)).options(
        selectinload(Task.owner), selectinload(Task.collaborators), selectinload(Task.project),
        selectinload(Task.department)))} if task_ids else {}
    blocked = blocked_ids(s, task_ids)
    _prefetch(n, waits)

    urgent_rules = rules.for_urgent()

    def one(wait: Wait) -> bool:
        if wait.person.left_at is not None:
            return _hand_up(n, wait, tasks)
        r = urgent_rules if _urgent_response(wait, tasks) else rules  # [rules.urgent]: the response only
        step = next_step(wait.raised_at, wait.nags_sent, wait.last_nag_at, wait.escalated_at is not None,
                         r, bot.calendar)
        if step is None:
            n.update_wait(wait, next_due_at=None)
            return False
        if step[1] > now:  # timed by rules since changed (nags turned off, a longer wait): not due yet
            n.update_wait(wait, next_due_at=step[1])
            return False
        # Decided when sent: a reminder due outside working time is not queued for the next period (the
        # wait may be answered by then); the wait comes back at that period's start and is judged again.
        outside_ok = r.nag_outside_working_hours if step[0] == "nag" else r.escalation_outside_working_hours
        window = n.send_window(outside_ok)
        if window > now:
            n.update_wait(wait, next_due_at=window)
            return False
        nags_sent, last_nag_at, escalated_at = wait.nags_sent, wait.last_nag_at, wait.escalated_at
        if step[0] == "nag":
            _nag(n, wait, tasks, blocked)
            nags_sent, last_nag_at = nags_sent + 1, now
        else:
            _escalate(n, wait, tasks)
            escalated_at = now
        following = next_step(wait.raised_at, nags_sent, last_nag_at, escalated_at is not None, r, bot.calendar)
        n.update_wait(wait, nags_sent=nags_sent, last_nag_at=last_nag_at, escalated_at=escalated_at,
                      next_due_at=following[1] if following else None)
        return True

    def set_aside(wait: Wait) -> None:
        n.update_wait(wait, next_due_at=now + SKIPPED_WAIT_RETRY)

    before = len(n.rows)
    count = n.each("rule.wait", waits, one, lambda w: ("wait", w.id), set_aside)
    n.rows[before:] = _one_note_a_person(n, n.rows[before:])
    n.flush()
    return count


def _one_note_a_person(n: Notifier, rows: list[dict]) -> list[dict]:
    """The group notes of one sweep (nags, escalation notes) for the same person in the same group, due at
    the same moment, become one message, where the first of them was: twelve waiting tasks are one @mention
    with twelve lines, not twelve messages in the group. Private messages stay one a wait (each carries
    its card's buttons)."""
    order: list[dict | tuple[object, ...]] = []
    notes: dict[tuple[object, ...], list[dict]] = {}
    for row in rows:
        parts = row["payload"].get("parts") or []
        key = row["dedupe_key"]
        if (row["target_kind"] == "chat" and key.startswith(("nag:", "escalate:")) and key.endswith(":chat")
                and isinstance(parts[0] if parts else None, dict)):
            same = (row["platform"], row["target_id"], parts[0].get("user_id"), row["not_before"],
                    bool(row["payload"].get("urgent")))
            if same not in notes:
                order.append(same)
            notes.setdefault(same, []).append(row)
        else:
            order.append(row)
    return [item if isinstance(item, dict) else _joined(n, notes[item]) for item in order]


def _joined(n: Notifier, same: list[dict]) -> dict:
    first = same[0]
    if len(same) == 1:
        return first
    lines = ["".join(p for p in r["payload"]["parts"][1:] if isinstance(p, str)).strip() for r in same]
    payload = {**first["payload"], "parts": [first["payload"]["parts"][0], " " + n.t("notes_many", n=len(same)),
                                             *("\n" + line for line in lines)]}
    return {**first, "dedupe_key": f"{first['dedupe_key']}:with:{len(same)}"[:200], "payload": payload}


# --- overdue ------------------------------------------------------------------------------------

def _milestones_at_risk(n: Notifier, task: Task, occurrence: str, when: datetime) -> None:
    """A late task puts at risk the open milestones behind it (its own, and the project's due after its
    deadline): the group and the coordinator are warned, once per milestone and occurrence."""
    if task.project_id is None or task.deadline is None:
        return
    behind = (Milestone.task_id == task.id) | (Milestone.task_id.is_(None) & (Milestone.due >= task.deadline))
    for m in n.s.scalars(select(Milestone).where(Milestone.project_id == task.project_id, Milestone.status == "open",
                                                 behind).order_by(Milestone.due, Milestone.id)):
        line = n.t("milestone_warning", title=m.title, due=n.fmt(m.due), id=task.id, task=task.title)
        if task.chat is not None and task.chat.active:
            n.to_chat(task.chat, Message((line,)), f"{occurrence}:milestone:{m.id}:chat", when)
        coordinator = task.project.coordinator if task.project else None
        if coordinator is not None:
            n.to_user(coordinator, Message((line,)), f"{occurrence}:milestone:{m.id}:coordinator", when)
        n.audit("rule.milestone_at_risk", "milestone", m.id, {"task": task.id})


def sweep_overdue(bot: Engine, s: Session, now: datetime) -> int:
    if not bot.config.rules.overdue_enabled:
        return 0
    # the partial index ix_tasks_overdue_due is used only when its condition is written out with literals
    stmt = (select(Task).where(text(OVERDUE_INDEX_CONDITION), Task.status.in_(states.OPEN),
                               Task.deadline.is_not(None), Task.deadline <= now)
            .order_by(Task.deadline).limit(BATCH)
            .options(selectinload(Task.owner), selectinload(Task.project).selectinload(Project.coordinator),
                     selectinload(Task.collaborators), selectinload(Task.department)))
    if s.get_bind().dialect.name == "postgresql":
        stmt = stmt.with_for_update(skip_locked=True, of=Task)
    n = Notifier(bot, s, now)
    when = n.send_window()
    if when > now:
        return 0  # decided when sent: a task done or extended before the next working period is not warned
    tasks = list(s.scalars(stmt))
    blocked = blocked_ids(s, [t.id for t in tasks])
    # a pending 延期申请 already gives the reason and the remedy: the owner is not chased for them
    extending = set(s.scalars(select(ApprovalRequest.task_id).where(
        ApprovalRequest.task_id.in_([t.id for t in tasks]), ApprovalRequest.status == approval_stages.PENDING))) \
        if tasks else set()
    n.load_identities({t.owner_id for t in tasks} | {t.project.coordinator_id for t in tasks
                                                      if t.project and t.project.coordinator_id})

    def one(task: Task) -> bool:
        task.overdue_warned_at = now
        if task.status == "review":
            return False  # submitted in time for review: nothing to chase
        deadline = n.fmt(task.deadline)
        occurrence = f"overdue:task:{task.id}:{int(task.deadline.timestamp())}"  # a new deadline warns again
        card = task_card(s, task, n.lang, now, bot.calendar.tz, blocked=task.id in blocked)
        # not "apply" if applied, nor a command that does not exist when no template is for extensions
        form = None if task.id in extending else extension_form(bot.config, task.id)
        warning = ("overdue_owner_extending" if task.id in extending else "overdue_owner" if form
                   else "overdue_owner_no_form")
        n.to_user(task.owner, Message((n.t(warning, id=task.id, title=task.title, deadline=deadline, **(form or {})),),
                                      card), f"{occurrence}:owner", when)
        # The owner owes a reason and a remedy: a wait, so the nag and escalation rules chase it until a
        # progress update, a submission or an extension request answers it (one pending answers it already;
        # its rejection or withdrawal opens the wait then: bot/handlers/approvals/flow.py).
        if task.id not in extending:
            step = next_step(when, 0, None, False, bot.config.rules, bot.calendar)
            due = when if task.owner.left_at is not None else step[1] if step else None  # left: to their leader now
            s.add(Wait(kind="overdue", entity_type="task", entity_id=task.id, person_id=task.owner_id,
                       chat_id=task.chat_id, raised_at=when, nags_sent=0, next_due_at=due))
        coordinator = task.project.coordinator if task.project else None
        if bot.config.rules.overdue_tell_coordinator and coordinator is not None and coordinator.id != task.owner_id:
            n.to_user(coordinator, Message((n.t("overdue_coordinator", id=task.id, title=task.title,
                                                owner=task.owner.name, deadline=deadline),)),
                      f"{occurrence}:coordinator", when)
        n.audit("rule.overdue", "task", task.id, {"deadline": task.deadline.isoformat() if task.deadline else None})
        _milestones_at_risk(n, task, occurrence, when)
        return True

    def set_aside(task: Task) -> None:
        task.overdue_warned_at = now  # audited as skipped: not retried every minute

    count = n.each("rule.overdue", tasks, one, lambda t: ("task", t.id), set_aside)
    n.flush()
    return count


# --- calendar jobs ------------------------------------------------------------------------------

def _local_day_start(bot: Engine, day: date) -> datetime:
    return datetime.combine(day, time(0), tzinfo=bot.calendar.tz)


PROMPT_CHAT_JOB = "daily_prompt:chat"  # one job_runs row per group and day: its prompt was decided


def _prompt_due(bot: Engine, chat_id: int, start: datetime) -> datetime:
    """When a group's daily prompt is due: the prompt time plus the group's stable spread."""
    return start + _spread(f"prompt:{chat_id}", bot.config.rules.daily_prompt_spread_minutes)


def daily_prompt(bot: Engine, s: Session, now: datetime, force: bool = False) -> int:
    """Each group's prompt is decided at its own due moment (the prompt time plus its spread) and sent
    then: a task reported on in the minutes before is not listed. A `job_runs` row per group and day
    makes it once anywhere; the day's row closes the day once every spread has passed."""
    rules = bot.config.rules
    local = now.astimezone(bot.calendar.tz)
    today = local.date()
    if not rules.daily_prompt_enabled or not bot.calendar.is_workday(today):
        return 0
    start = datetime.combine(today, rules.daily_prompt_time, tzinfo=bot.calendar.tz)
    if now < start and not force:
        return 0
    day = today.isoformat()
    if s.scalar(select(JobRun.id).where(JobRun.job == "daily_prompt", JobRun.slot == day)) is not None:
        return 0
    if not force and bot.calendar.next_working_moment(now).date() != today:
        # the working day is over (the process was down at the prompt's time): a prompt about "today" at
        # night helps nobody, and tomorrow's comes at its time
        _insert_once(s, "daily_prompt", day, now)
        return 0
    ran = set(s.scalars(select(JobRun.slot).where(JobRun.job == PROMPT_CHAT_JOB, JobRun.slot.like(f"{day}:%"))))
    candidates = s.scalars(select(Chat).where(Chat.project_id.is_not(None), Chat.active.is_(True)).order_by(Chat.id))
    chats = [c for c in candidates if f"{day}:{c.id}" not in ran and (force or _prompt_due(bot, c.id, start) <= now)]
    chats = [c for c in chats if _insert_once(s, PROMPT_CHAT_JOB, f"{day}:{c.id}", now)]  # another instance's: skip
    if force or now >= start + timedelta(minutes=max(rules.daily_prompt_spread_minutes, 0), seconds=1):
        _insert_once(s, "daily_prompt", day, now)  # every group's moment has passed: the day is done
    if not chats:
        return 0
    n = Notifier(bot, s, now)
    day_start = _local_day_start(bot, today)
    # every group's stale tasks in one query (not one per group)
    stale_by_project: dict[int, list[Task]] = {}
    unreported = (Task.status == "in_progress") & (Task.last_progress_at.is_(None) | (Task.last_progress_at < day_start))
    stale_stmt = (select(Task).where(Task.project_id.in_({c.project_id for c in chats}), unreported)
                  .order_by(Task.id).options(selectinload(Task.owner)))
    for task in s.scalars(stale_stmt) if chats else ():
        stale_by_project.setdefault(task.project_id, []).append(task)  # type: ignore[arg-type]
    every = [t for tasks in stale_by_project.values() for t in tasks]
    # the private copy: one message an owner and day, listing their tasks of every project, sent with the
    # first of their groups' prompts (the day's key keeps it one however many groups follow)
    owners_stale: dict[int, list[Task]] = {}
    if rules.daily_prompt_private and every:
        grouped = select(Chat.project_id).where(Chat.project_id.is_not(None), Chat.active.is_(True))
        for task in s.scalars(select(Task).where(
                Task.owner_id.in_({t.owner_id for t in every}), Task.project_id.in_(grouped), unreported)
                .order_by(Task.id).options(selectinload(Task.owner), selectinload(Task.collaborators),
                                           selectinload(Task.project), selectinload(Task.department))):
            owners_stale.setdefault(task.owner_id, []).append(task)
    blocked = blocked_ids(s, [t.id for ts in owners_stale.values() for t in ts]) if rules.daily_prompt_private else set()
    n.load_identities({t.owner_id for t in every})
    told: set[int] = set()

    def one(chat: Chat) -> bool:
        stale = stale_by_project.get(chat.project_id, [])  # type: ignore[arg-type]
        if not stale:
            return False
        # decided now, at the group's moment: sent now, or after lunch when the process was down till then
        when = bot.calendar.next_working_moment(now)
        parts: list = [n.t("prompt_group")]
        for task in stale:
            parts += ["\n", f"#{task.id} {task.title} {task.percent}% ", n.at(task.owner, chat.platform)]
        card = _prompt_card(n, f"prompt:{chat.id}:{today.isoformat()}", stale, with_owner=True)
        if rules.daily_prompt_in_group:
            n.to_chat(chat, Message(tuple(parts), card), f"prompt:{today.isoformat()}:chat:{chat.id}", when)
        for owner_id in dict.fromkeys(t.owner_id for t in stale) if rules.daily_prompt_private else ():
            theirs = owners_stale.get(owner_id, [])
            if owner_id in told or not theirs:
                continue
            told.add(owner_id)
            key = f"prompt:{today.isoformat()}:owner:{owner_id}"  # one an owner and day, whichever group is first
            if len(theirs) == 1:
                task = theirs[0]
                n.to_user(task.owner, Message((n.t("prompt_private", id=task.id, title=task.title, percent=task.percent),),
                                              task_card(s, task, n.lang, now, bot.calendar.tz, blocked=task.id in blocked)),
                          key, when)
                continue
            mine = _prompt_card(n, f"prompt:{today.isoformat()}:{owner_id}", theirs, with_owner=False)
            n.to_user(theirs[0].owner, Message((n.t("prompt_private_many", n=len(theirs)),), mine), key, when)
        return True

    sent = n.each("rule.daily_prompt", chats, one, lambda c: ("chat", c.id))
    n.flush()
    return sent


def _prompt_card(n: Notifier, key: str, tasks: list[Task], *, with_owner: bool) -> Card:
    """The daily prompt's card: a line and a 更新进度 button (the first six) for each task."""
    return Card(kind="prompt", key=key, title=n.t("prompt_title"), color="blue",
                fields=tuple((f"#{t.id} {t.title}", f"{t.owner.name} · {t.percent}%" if with_owner else f"{t.percent}%")
                             for t in tasks),
                buttons=tuple(Button(f"{n.t('b_progress')} #{t.id}", CardAction("progress", "task", t.id, t.version).pack())
                              for t in tasks[:6]))


def _week_bounds(bot: Engine, day: date) -> tuple[datetime, datetime]:
    monday = day - timedelta(days=day.weekday())
    start = _local_day_start(bot, monday)
    return start, start + timedelta(days=7)


def summary_window(bot: Engine, s: Session, today: date, slot: str, now: datetime) -> tuple[datetime, datetime]:
    """What a weekly summary covers: from the previous summary (at most a week before this Monday: after
    a long pause, the week before) to now. So work done after one Friday's summary, or at the weekend, is
    in the next one, and none in two."""
    monday, _ = _week_bounds(bot, today)
    previous = s.scalar(select(func.max(JobRun.ran_at)).where(JobRun.job == "weekly_summary", JobRun.slot < slot))
    start = max(previous, monday - timedelta(days=7)) if previous is not None else monday
    return start, now


def _week_slot(day: date) -> str:
    year, week, _ = day.isocalendar()
    return f"{year}-W{week:02d}"


def _missed_summary(bot: Engine, s: Session, today: date) -> str | None:
    """The slot of a summary that never went out (the bot was down from its moment into the weekend or
    the next week): this week's once its last workday has passed, else last week's. It goes out now, once,
    rather than not at all; only for a bot that was sending summaries before (a new installation does not
    open with last week's)."""
    last = bot.calendar.last_workday_of_week(today)
    day = today if last is not None and last < today else today - timedelta(days=7)
    if bot.calendar.last_workday_of_week(day) is None:
        return None  # a week off (the Spring Festival): it had no summary to miss
    slot = _week_slot(day)
    ran = s.scalar(select(func.max(JobRun.slot)).where(JobRun.job == "weekly_summary", JobRun.slot <= slot))
    return slot if ran is not None and ran < slot else None


def weekly_summary(bot: Engine, s: Session, now: datetime, force: bool = False) -> int:
    rules = bot.config.rules
    local = now.astimezone(bot.calendar.tz)
    today = local.date()
    if not rules.weekly_summary_enabled:
        return 0
    slot = _week_slot(today)
    if not force and (bot.calendar.last_workday_of_week(today) != today or local.time() < rules.weekly_summary_time):
        missed = _missed_summary(bot, s, today)
        if missed is None:
            return 0
        slot = missed
    if not _insert_once(s, "weekly_summary", slot, now):
        return 0
    n = Notifier(bot, s, now)
    start, end = summary_window(bot, s, today, slot, now)
    # a project closed (结项) before this summary's window has nothing more to say: its closing week's was the last
    closed = select(ProjectArchive.project_id).where(ProjectArchive.closed_at < start)
    chats = list(s.scalars(select(Chat).where(Chat.project_id.is_not(None), Chat.active.is_(True),
                                              Chat.project_id.not_in(closed)).order_by(Chat.id)))
    facts = SummaryFacts.load(s, {c.project_id for c in chats}, start, end, now, slot)  # type: ignore[misc]
    # the trend warning: named in the summaries of the departments' projects, and to the admins privately
    trend = WeeklyTrend.load(s, bot.calendar, now, set(facts.projects), n.lang)
    facts.trend = trend.by_project
    trend.tell_admins(n, bot.config.admins, slot)

    def one(chat: Chat) -> bool:
        card = summary_card(n, facts, chat.project_id, start, end, slot)  # type: ignore[arg-type]
        # in working time: after a night's downtime it waits for the next working morning
        when = bot.calendar.next_working_moment(now) + _spread(f"summary:{chat.id}", rules.weekly_summary_spread_minutes)
        n.to_chat(chat, Message((n.t("summary_intro"),), card), f"summary:{slot}:chat:{chat.id}", when)
        return True

    sent = n.each("rule.weekly_summary", chats, one, lambda c: ("chat", c.id))
    n.flush()
    return sent


SUMMARY_LINES = 8  # per list of the weekly summary; more: "另有 N 项"


def bar(percent: int, width: int = 10) -> str:
    """A text progress bar, the weekly summary's chart that every platform can show: ▓▓▓▓▓▓░░░░."""
    filled = max(0, min(width, round(percent * width / 100)))
    return "▓" * filled + "░" * (width - filled)


class SummaryFacts:
    """What the weekly summaries of many projects show, read with a handful of queries for all of them.

    Only the tasks a summary can list are read (in progress or in review, done this week, due before the
    end of next week, or waiting for an open predecessor), as plain rows rather than ORM objects.
    """

    def __init__(self) -> None:
        self.projects: dict[int, str] = {}
        self.tasks: dict[int, list[Row]] = {}
        self.blocked: set[int] = set()
        self.notes: dict[int, list[tuple[str, str]]] = {}
        self.trend: dict[int, list[str]] = {}  # project -> its departments' trend warnings (bot/reports/trend.py)

    @classmethod
    def load(cls, s: Session, project_ids: set[int], start: datetime, end: datetime, now: datetime,
             slot: str) -> SummaryFacts:
        facts = cls()
        if not project_ids:
            return facts
        ids = sorted(project_ids)
        facts.projects = dict(s.execute(select(Project.id, Project.name).where(Project.id.in_(ids))).all())
        open_preds = (select(TaskDependency.task_id).join(Task, Task.id == TaskDependency.depends_on_id)
                      .where(Task.status.not_in(states.CLOSED)))
        facts.blocked = set(s.scalars(select(TaskDependency.task_id).join(Task, Task.id == TaskDependency.task_id)
                                      .where(Task.project_id.in_(ids), Task.status.in_(("todo", "in_progress")),
                                             TaskDependency.task_id.in_(open_preds))))
        later = end + timedelta(days=7)
        rows = s.execute(
            select(Task.id, Task.project_id, Task.title, Task.status, Task.percent, Task.deadline, Task.done_at,
                   Task.original_deadline, Task.extensions, Task.submitted_at,
                   User.name.label("owner"), Department.name.label("department"))
            .join(User, User.id == Task.owner_id).outerjoin(Department, Department.id == Task.department_id)
            .where(Task.project_id.in_(ids), Task.status != "cancelled",
                   Task.status.in_(("in_progress", "review"))
                   | ((Task.status == "done") & (Task.done_at > start) & (Task.done_at <= end))
                   | (Task.status.in_(states.OPEN) & (Task.deadline < later))
                   | Task.id.in_(facts.blocked or {0}))
            .order_by(Task.id)).all()
        for row in rows:
            facts.tasks.setdefault(row.project_id, []).append(row)
        # the heads' notes since the previous summary: a note filed for a week that had none (a week off, a
        # summary missed) comes with this one rather than never
        previous = s.scalar(select(func.max(JobRun.slot)).where(JobRun.job == "weekly_summary", JobRun.slot < slot))
        for project_id, dept, note in s.execute(
                select(WeeklyNote.project_id, Department.name, WeeklyNote.text)
                .join(Department, Department.id == WeeklyNote.department_id)
                .where(WeeklyNote.project_id.in_(ids), WeeklyNote.week <= slot, WeeklyNote.week > (previous or ""))
                .order_by(WeeklyNote.week, Department.id)):
            facts.notes.setdefault(project_id, []).append((dept, note))
        return facts


def summary_card(n: Notifier, facts: SummaryFacts, project_id: int, start: datetime, end: datetime,
                 slot: str) -> Card:
    tasks = facts.tasks.get(project_id, [])
    now = n.now

    def lines(items: Iterable[str]) -> str:
        """A list of at most SUMMARY_LINES items and how many more (a platform cuts a long field wherever
        its limit falls, and a head must know whether the overdue list is whole)."""
        shown = list(items)
        more = len(shown) - SUMMARY_LINES
        if more > 1:
            shown = [*shown[:SUMMARY_LINES], n.t("summary_more", n=more)]
        return texts.items(n.lang, shown) or n.t("none")

    done = [t for t in tasks if t.status == "done" and t.done_at and start < t.done_at <= end]
    in_progress = [t for t in tasks if t.status == "in_progress"]
    in_review = [t for t in tasks if t.status == "review"]  # submitted: awaiting the reviewer, not in progress
    overdue = [t for t in tasks if states.is_overdue(t.status, t.deadline, now, t.submitted_at)]
    blocked = [t for t in tasks if t.status in ("todo", "in_progress") and t.id in facts.blocked]
    due_soon = sorted((t for t in tasks if t.status in states.OPEN and t.deadline  # the weekend's included
                       and end <= t.deadline < end + timedelta(days=7)), key=lambda t: (t.deadline, t.id))
    rate: dict[str, list[int]] = {}  # department -> [on time, done, extended]
    for t in done:
        due = t.original_deadline or t.deadline  # on time = by the deadline in force when it was set
        finished = t.submitted_at or t.done_at  # handed in, as the reports judge: not the reviewer's acceptance
        if due:
            name = t.department or "-"
            rate.setdefault(name, [0, 0, 0])
            rate[name][1] += 1
            rate[name][0] += finished <= due
            # done within an extension: after the first deadline, by the one in force (as the reports count)
            rate[name][2] += finished > due and t.deadline is not None and finished <= t.deadline
    notes = facts.notes.get(project_id, [])
    fields = [
        (n.t("summary_done"), lines(f"#{t.id} {t.title}" for t in done)),
        (n.t("summary_in_progress"), lines(f"#{t.id} {t.title} {bar(t.percent)} {t.percent}%" for t in in_progress)),
        *([(n.t("summary_review"), lines(f"#{t.id} {t.title}{texts.paren(n.lang, t.owner)}" for t in in_review))]
          if in_review else []),
        (n.t("summary_overdue"), lines(f"#{t.id} {t.title}{texts.paren(n.lang, t.owner)}" for t in overdue)),
        (n.t("summary_blocked"), lines(f"#{t.id} {t.title}" for t in blocked)),
        (n.t("summary_next_week"), lines(f"#{t.id} {t.title} {n.fmt(t.deadline)}" for t in due_soon)),
        (n.t("summary_on_time"), lines(
            f"{d} {ok}/{total}" + texts.paren(n.lang, f"{round(100 * ok / total)}%"
                                              + (n.t("summary_extended", n=late) if late else ""))
            for d, (ok, total, late) in sorted(rate.items()))),
    ]
    if notes:
        fields.append((n.t("summary_notes"), lines(texts.labelled(n.lang, d, text) for d, text in notes)))
    # the risk register's open high risks (high likelihood or high impact)
    risks = n.s.scalars(select(Risk).where(Risk.project_id == project_id, Risk.status == "open",
                                           (Risk.likelihood == "high") | (Risk.impact == "high")).order_by(Risk.id))
    risk_lines = [f"#R{r.id} {r.description}{texts.paren(n.lang, r.owner.name)}" for r in risks]
    # this week's and the next two; an open one whose day has gone stays, marked missed, until it is reached
    upcoming = n.s.scalars(select(Milestone).where(Milestone.project_id == project_id, Milestone.status == "open",
                                                   Milestone.due < end + timedelta(days=14))
                           .order_by(Milestone.due, Milestone.id))
    milestone_lines = [f"{n.fmt(m.due)} {m.title}" + (n.t("milestone_missed_mark") if m.due < n.now else "")
                       for m in upcoming]
    if milestone_lines:
        fields.append((n.t("summary_milestones"), lines(milestone_lines)))
    if risk_lines:
        fields.append((n.t("summary_risks"), lines(risk_lines)))
    if facts.trend.get(project_id):
        fields.append((n.t("summary_trend"), lines(facts.trend[project_id])))
    return Card(kind="summary", key=f"summary:{project_id}:{slot}",
                title=n.t("summary_title", project=facts.projects.get(project_id, "-")), color="blue",
                fields=tuple(fields),
                chart=tuple((d, round(100 * ok / total)) for d, (ok, total, _) in sorted(rate.items())))


# --- the whole sweep ----------------------------------------------------------------------------

def sweep(bot: Engine, now: datetime) -> int:
    """Run every rule that is due at `now`; the number of things it acted on."""
    with bot.db.transaction() as s:
        count = sweep_waits(bot, s, now)
        count += sweep_overdue(bot, s, now)
    with bot.db.transaction() as s:
        count += daily_prompt(bot, s, now)
    with bot.db.transaction() as s:
        count += weekly_summary(bot, s, now)
    with bot.db.transaction() as s:
        count += risk_report.monthly(bot, s, now)
    return count


def next_due(bot: Engine, now: datetime) -> datetime | None:
    """The earliest moment after which a sweep or a delivery would do something (for the console)."""
    candidates: list[datetime] = []
    rules, cal = bot.config.rules, bot.calendar
    local = now.astimezone(cal.tz)
    year, week, _ = local.date().isocalendar()
    with bot.db.transaction() as s:
        w = s.scalar(select(func.min(Wait.next_due_at)).where(Wait.answered_at.is_(None), Wait.next_due_at.is_not(None)))
        d = s.scalar(select(func.min(Task.deadline)).where(Task.status.in_(("todo", "in_progress")),
                                                           Task.overdue_warned_at.is_(None), Task.deadline.is_not(None)))
        o = outbox.next_due(s)
        # only the slots from today / this week on (ISO dates and weeks sort as text), not every slot ever run
        ran_prompt = set(s.scalars(select(JobRun.slot).where(JobRun.job == "daily_prompt",
                                                             JobRun.slot >= local.date().isoformat())))
        today = local.date().isoformat()
        pending_groups: list[int] = []  # today's groups whose prompt is not decided yet
        if rules.daily_prompt_enabled and today not in ran_prompt:
            ran_groups = set(s.scalars(select(JobRun.slot).where(JobRun.job == PROMPT_CHAT_JOB,
                                                                 JobRun.slot.like(f"{today}:%"))))
            pending_groups = [c for c in s.scalars(select(Chat.id).where(Chat.project_id.is_not(None),
                                                                          Chat.active.is_(True)))
                              if f"{today}:{c}" not in ran_groups]
        ran_summary = set(s.scalars(select(JobRun.slot).where(JobRun.job == "weekly_summary",
                                                              JobRun.slot >= f"{year}-W{week:02d}")))
        r = risk_report.next_moment(bot, s, now)
    if d is not None:  # an overdue warning is decided in working time only
        d = cal.next_working_moment(max(d, now)) if rules.overdue_enabled else None
    candidates += [x for x in (w, d, o, r) if x is not None]
    for offset in range(0, 15):
        day = local.date() + timedelta(days=offset)
        if rules.daily_prompt_enabled and cal.is_workday(day) and day.isoformat() not in ran_prompt:
            start = datetime.combine(day, rules.daily_prompt_time, tzinfo=cal.tz)
            if offset == 0 and now >= start:  # each group at its own moment, then the day's close
                closes = start + timedelta(minutes=max(rules.daily_prompt_spread_minutes, 0), seconds=1)
                candidates.append(min([_prompt_due(bot, c, start) for c in pending_groups] + [closes]))
            else:
                candidates.append(start)
            break
    for offset in range(0, 15):
        day = local.date() + timedelta(days=offset)
        year, week, _ = day.isocalendar()
        if (rules.weekly_summary_enabled and cal.last_workday_of_week(day) == day
                and f"{year}-W{week:02d}" not in ran_summary):
            candidates.append(datetime.combine(day, rules.weekly_summary_time, tzinfo=cal.tz))
            break
    return min(candidates) if candidates else None


REMIND_GAP = timedelta(hours=1)  # a 再次提醒 within this of the last reminder is not sent again


def remind_again(bot: Engine, s: Session, wait: Wait, now: datetime, by: User, key: str) -> datetime:
    """The escalation card's 再次提醒: one more reminder to the person, in working time; when it is sent.
    Outside working time it waits for the morning, and `waits.close_waits` drops it if the wait closes
    first (answered, reassigned, cancelled): nobody is chased over what no longer concerns them."""
    n = Notifier(bot, s, now)
    what = _what(n, wait)
    message = Message((n.t("remind_again", boss=by.name, what=what),))
    at = n.send_window()
    n.to_user(wait.person, message, key, at)
    if wait.chat is not None and wait.chat.active:
        n.to_chat(wait.chat, Message((n.at(wait.person, wait.chat.platform), " ", message.plain_text)), key + ":chat",
                  at)
    n.flush()
    s.execute(update(Wait).where(Wait.id == wait.id).values(last_nag_at=now))
    return at
