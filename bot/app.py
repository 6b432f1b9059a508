"""The one door into the engine: `Bot.handle(event) -> Reply`, and `Bot.sweep(now)` for the rules.

`handle` runs everything that happens because someone said or tapped something in ONE transaction:
the inbound receipt (so a platform's retry gets the same answer and changes nothing), the change,
its audit entries and its outbox rows. A refused command rolls back to a savepoint, then the
refusal is audited and answered in the same transaction. Nothing a user types can raise out of
`handle`: an unexpected error is logged, rolled back, and answered with an apology.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import replace
from datetime import datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError, OperationalError
from sqlalchemy.orm import Session

from collabbot.bot import audit_log, commands, copies, groups, sweep, texts, waits
from collabbot.bot.approval_templates import templates_of
from collabbot.bot.calendar import WorkCalendar
from collabbot.bot.clock import Clock
from collabbot.bot.commands import Command, ParseError
from collabbot.bot.config import Config
from collabbot.bot.context import Ctx, HelpLine, Refused
from collabbot.bot.events import (
    ApprovalEvent,
    CardActionEvent,
    ChatRef,
    InboundEvent,
    MemberEvent,
    MessageEvent,
    UserRef,
    sanitized,
    show_markers,
)
from collabbot.bot.handlers import (
    approvals,
    archive,
    assist,
    collections,
    projects,
    queries,
    records,
    reports,
    signoff,
    task_creation,
    tasks,
)
from collabbot.bot.handlers.approvals import base as approvals_base
from collabbot.bot.known import Known
from collabbot.bot.people import escalation_target, find_chat, resolve_chat, resolve_user
from collabbot.bot.replies import Card, CardAction, Reply
from collabbot.storage import receipts
from collabbot.storage.db import Database
from collabbot.storage.models import ApprovalRequest, Chat, Department, Identity, Task, User, Wait

log = logging.getLogger(__name__)
HANDLE_ATTEMPTS = 3  # an event that loses a race on a unique row or a deadlock runs again, this many times in all

CommandHandler = Callable[[Ctx, Command], Reply | None]
ActionHandler = Callable[[Ctx, CardAction], Reply | None]

COMMANDS: dict[str, CommandHandler] = {
    "bind_project": signoff.bind_project,
    "show_project": projects.show_project,
    "weekly_note": projects.weekly_note,
    "create_task": tasks.create_task,
    "add_subtask": tasks.add_subtask,
    "add_dependency": tasks.add_dependency,
    "remove_dependency": tasks.remove_dependency,
    "acknowledge": tasks.ack_command,
    "start_task": tasks.start_command,
    "report_progress": tasks.report_progress,
    "finish_task": lambda ctx, cmd: (collections.submit if collections.is_submission(cmd) else tasks.finish)(ctx, cmd),
    "accept_task": tasks.accept_command,
    "return_task": tasks.return_task,
    "reassign_task": lambda ctx, cmd: (approvals.transfer if cmd.approvals and not cmd.tasks else tasks.reassign)(ctx, cmd),
    "comment": tasks.comment,
    "set_deadline": tasks.set_deadline,
    "cancel_task": tasks.cancel,
    "ask_help": assist.ask_help,
    "answer_help": assist.answer_command,
    "my_tasks": queries.my_tasks,
    "show_task": queries.show_task,
    "audit_log": audit_log.show_log,
    "waiting_on_me": queries.waiting_on_me,
    "help": queries.help_command,
    "apply": approvals.apply,
    "my_approvals": approvals.my_approvals,
    "show_approval": approvals.show,
    "approve": signoff.following(approvals.approve_command),
    "reject": signoff.following(approvals.reject_command),
    "withdraw": approvals.withdraw,
    "cancel_approval": approvals.cancel,
    "resubmit": approvals.resubmit,
    "report": reports.report,
    "export_report": reports.export_report,
    "list_tasks": records.list_tasks,
    "urgent": records.urgent,
    "risk": records.risk,
    "minutes": records.minutes,
    "show_meeting": records.show_meeting,
    "milestone": records.milestone,
    "close_project": archive.close_project,
    "retrospective": archive.retrospective,
    "search_archive": archive.search_archive,
    "collect": collections.collect,
}


def _hint(key: str, task_id: int) -> ActionHandler:
    return lambda ctx, action: Reply(toast=ctx.t(key, id=task_id))


# buttons that only say what to type (the change needs text): they read the task, change nothing
_HINTS = {"progress": "hint_progress", "finish": "hint_finish", "reassign": "hint_reassign", "return": "hint_return"}


def _task_action(ctx: Ctx, action: CardAction) -> Reply | None:
    hint = _HINTS.get(action.action)
    # a hint neither locks the task nor loads what its card shows, unless the card must be drawn again
    task = ctx.task(action.entity_id, lock=hint is None, for_card=hint is None)
    if tasks.stale_tap(ctx, task, action):  # an unrelated change (a subtask, a dependency) keeps the tap valid
        task = ctx.task(action.entity_id, lock=False) if hint else task
        return Reply(toast=ctx.t("stale_card"), toast_kind="warning", card=tasks.card(ctx, task))
    if hint:
        return Reply(toast=ctx.t(hint, id=task.id))
    handler = {
        "ack": lambda: tasks.acknowledge(ctx, task, via_card=True),
        "start": lambda: tasks.start(ctx, task, via_card=True),
        "accept": lambda: tasks.accept(ctx, task, via_card=True),
    }.get(action.action)
    if handler is None:
        raise Refused("bad_button")
    return handler()


def _help_action(ctx: Ctx, action: CardAction) -> Reply | None:
    if action.action != "help_done":
        raise Refused("bad_button")
    return assist.answer_help(ctx, action.entity_id, "", via_card=True)


def _not_escalated_to(ctx: Ctx, wait: Wait, tapped: str) -> Refused:
    """A tap on the escalation card by someone it is not for: names the button tapped and who may act,
    the escalation's current target, by the role that made them it (`[rules.escalation] to` orders
    supervisor and department head; the head's supervisor comes after both)."""
    person, first = wait.person, ctx.bot.config.rules.escalation_to
    what = ctx.t("a_wait_remind" if tapped == "remind" else "a_wait_reassign")
    boss = escalation_target(ctx.s, person, first)
    if boss is None:
        return Refused("not_allowed", action=what, why=ctx.t("w_escalated_nobody", name=person.name))
    dept = ctx.s.get(Department, person.department_id) if person.department_id is not None else None
    holders = {"supervisor": person.supervisor_id, "dept_head": dept.head_id if dept is not None else None}
    order = ("dept_head", "supervisor") if first == "department_head" else ("supervisor", "dept_head")
    role = next((r for r in order if holders[r] == boss.id), "above")
    return Refused("not_allowed", action=what, why=ctx.t(f"w_escalated_{role}", name=person.name, boss=boss.name))


def _wait_action(ctx: Ctx, action: CardAction) -> Reply | None:
    """The escalation card's buttons: remind the person again, or how to reassign."""
    # locked: two taps at once (a double tap on a phone) must see each other's reminder
    wait = ctx.s.get(Wait, action.entity_id, with_for_update=action.action == "remind")
    if wait is None or action.action not in ("remind", "reassign"):
        raise Refused("bad_button")
    if not (ctx.escalated_to(wait.person) or ctx.is_admin() or ctx.received_escalation(wait.entity_type,
                                                                                         wait.entity_id, wait.id)):
        raise _not_escalated_to(ctx, wait, action.action)
    if wait.answered_at is not None:  # answered, reassigned or cancelled since: nobody is chased, the card settles
        return Reply(toast=ctx.t("wait_handled"), card=waits.handled_card(ctx, wait))
    if action.action == "reassign":
        hint = sweep.REASSIGN_HINTS.get(wait.entity_type)
        if hint is None:
            raise Refused("bad_button")
        return Reply(toast=ctx.t(hint, id=wait.entity_id))
    if wait.last_nag_at is not None and ctx.now - wait.last_nag_at < sweep.REMIND_GAP:
        return Reply(toast=ctx.t("reminded_recently", name=wait.person.name, when=ctx.fmt(wait.last_nag_at)))
    at = sweep.remind_again(ctx.bot, ctx.s, wait, ctx.now, ctx.actor, key=waits.remind_prefix(wait.id) + ctx.event_key)
    ctx.audit("wait.remind", wait)
    if at > ctx.now:  # outside working time: it waits for the morning, and is dropped if answered before
        return Reply(toast=ctx.t("remind_scheduled", name=wait.person.name, when=ctx.fmt(at)), toast_kind="success")
    return Reply(toast=ctx.t("reminded", name=wait.person.name), toast_kind="success")


ACTIONS: dict[str, ActionHandler] = {"task": _task_action, "help": _help_action, "wait": _wait_action,
                                     "approval": signoff.following(approvals.card_action)}


def _task_view(ctx: Ctx, task_id: int, viewer: User | None) -> Card | None:
    task = ctx.s.get(Task, task_id)
    return task_creation.card(ctx, task) if task is not None else None


def _approval_view(result: bool) -> Callable[[Ctx, int, User | None], Card | None]:
    def draw(ctx: Ctx, request_id: int, viewer: User | None) -> Card | None:
        req = ctx.s.get(ApprovalRequest, request_id)
        return approvals_base.card_for(ctx, req, viewer, result=result) if req is not None else None
    return draw


# a sent card's kind -> how to draw it again for one viewer (None: a group's copy), after its entity changed
CARD_VIEWS: dict[str, Callable[[Ctx, int, User | None], Card | None]] = {
    "task": _task_view, "approval": _approval_view(False), "approval_result": _approval_view(True)}
# kinds drawn alike for every viewer: after a tap, the answer's card is what every copy shows
SAME_FOR_EVERYONE = frozenset({"task"})


class Bot:
    """The workflow engine, built from its parts so tests can hand it any database and clock."""

    def __init__(self, db: Database, config: Config, clock: Clock) -> None:
        self.db = db
        self.config = config
        self.clock = clock
        self.calendar: WorkCalendar = config.calendar
        self.known = Known(clock)  # identities and groups, remembered across commands (bot/known.py)
        # extension points: other engine modules (approvals, reminders) register here
        self.commands: dict[str, CommandHandler] = dict(COMMANDS)
        self.actions: dict[str, ActionHandler] = dict(ACTIONS)
        self.wait_describers: dict[str, Callable[[Ctx, Wait], str]] = {**approvals.WAIT_DESCRIBERS,
                                                                        **records.WAIT_DESCRIBERS,
                                                                        **collections.WAIT_DESCRIBERS,
                                                                        **archive.WAIT_DESCRIBERS}
        self.help_lines: tuple[HelpLine, ...] = (*queries.HELP_EXAMPLES, *approvals.HELP_LINES, *records.HELP_LINES,
                                                   *collections.HELP_LINES, *reports.HELP_LINES,
                                                   *archive.HELP_LINES)

    # --- people and places (bot/people.py) -----------------------------------------------------
    def resolve_user(self, s: Session, ref: UserRef, now: datetime) -> User:
        return resolve_user(s, ref, now, self.known)

    def knows_group(self, platform: str, chat_id: str) -> bool:
        """Has the engine seen this group (someone wrote to the bot there)? For adapters whose platform
        refuses pushes into a group until then."""
        with self.db.transaction() as s:
            return self.find_chat(s, ChatRef(platform, chat_id)) is not None

    def find_chat(self, s: Session, ref: ChatRef) -> Chat | None:
        return find_chat(s, ref, self.known)

    def resolve_chat(self, s: Session, ref: ChatRef) -> Chat | None:
        return resolve_chat(s, ref, self.known)

    def sweep(self, now: datetime | None = None) -> int:
        """Run the time-driven rules due at `now` (see `bot/sweep.py`)."""
        return sweep.sweep(self, now or self.clock.now())

    def next_due(self, now: datetime) -> datetime | None:
        return sweep.next_due(self, now)

    def describe_wait(self, ctx: Ctx, wait: Wait) -> str:
        describe = self.wait_describers.get(wait.entity_type)
        return describe(ctx, wait) if describe else ""

    # --- the door -------------------------------------------------------------------------------
    def handle(self, event: InboundEvent) -> Reply:
        if isinstance(event, MessageEvent) and event.chat.is_group and not event.to_bot:
            return Reply()  # group chatter not addressed to us
        event = sanitized(event)
        for attempt in range(1, HANDLE_ATTEMPTS + 1):
            try:
                with self.db.transaction() as s:
                    return self._handle(s, event)
            except (IntegrityError, OperationalError) as exc:
                # The same event arrived twice at the same moment: the other copy's answer stands. Or a row
                # this event creates (someone's first message, a new group) was created by another event
                # meanwhile, or PostgreSQL broke a deadlock: run it again, it then finds those rows.
                stored = self._stored_reply(event)
                if stored is not None:
                    return stored
                log.warning("%s event %s lost a race (attempt %s): %s", event.platform, event.event_id, attempt,
                            type(exc).__name__)
            except Exception:
                log.exception("%s event %s failed and was not recorded", event.platform, event.event_id)
                break
        else:
            log.error("%s event %s lost %s races; not recorded", event.platform, event.event_id, HANDLE_ATTEMPTS)
        # Nothing was recorded, so a platform's retry of this event runs it again. Never raise to the adapter.
        return Reply(toast=texts.t(self.config.language, "internal_error"), toast_kind="error")

    def _stored_reply(self, event: InboundEvent) -> Reply | None:
        try:
            with self.db.transaction() as s:
                seen, stored = receipts.stored(s, event.platform, event.event_id)
                return Reply.from_json(stored) if seen else None
        except Exception:
            log.exception("cannot read the receipt of %s event %s", event.platform, event.event_id)
            return None

    def _handle(self, s: Session, event: InboundEvent) -> Reply:
        now = self.clock.now()
        receipt_id, stored = receipts.first_sight(s, event.platform, event.event_id, now)
        if receipt_id is None:
            return Reply.from_json(stored)
        if isinstance(event, MemberEvent):
            reply = self._member_event(s, event, now, receipt_id)
            receipts.set_reply(s, receipt_id, reply.to_json())
            return reply
        s.info.pop("touched", None)  # filled by this event's audit entries only
        actor = self.resolve_user(s, event.sender, now)
        # a tap's chat is a group when we know it as one (private chats never get a Chat row)
        chat = self.find_chat(s, event.chat) if isinstance(event, CardActionEvent) else self.resolve_chat(s, event.chat)
        if isinstance(event, CardActionEvent) and not event.chat.platform_chat_id and event.message_id:
            chat = self._tapped_in(s, event)  # a callback that does not say where the card was (DingTalk's HTTP one)
        if chat is not None and isinstance(event, MessageEvent):
            groups.back(chat)  # written to there, so the bot is in that group (again)
        ctx = Ctx(s=s, bot=self, now=now, actor=actor, platform=event.platform, chat=chat,
                  event_key=f"evt:{receipt_id}")
        action_name = "message"
        refused_subject: tuple[Any, Any] = (None, None)  # the command or tap a refusal is audited under
        try:
            with s.begin_nested():
                if isinstance(event, MessageEvent):
                    ctx.mentions = [self.resolve_user(s, m, now) for m in event.mentions]
                    parsed = commands.parse(event.text)
                    if isinstance(parsed, ParseError) and parsed.reason == "unknown_command":
                        parsed = self._as_application(event.text) or parsed
                    if isinstance(parsed, ParseError):
                        action_name = "parse"
                        raise Refused(parsed.reason, **self._parse_error_values(parsed))
                    action_name = parsed.name
                    refused_subject = (parsed, None)
                    reply = self.commands[parsed.name](ctx, parsed) or Reply()
                elif isinstance(event, ApprovalEvent):
                    action_name = "approval.native"
                    reply = approvals.native(ctx, event)
                else:
                    action = CardAction.unpack(event.value)
                    if action is None or action.entity not in self.actions:
                        raise Refused("bad_button")
                    action_name = f"tap.{action.entity}.{action.action}"
                    refused_subject = (None, action)
                    reply = self.actions[action.entity](ctx, action) or Reply()
        except Refused as refusal:
            names = [m.name for m in ctx.mentions]
            text = ctx.t(refusal.key, **{k: show_markers(v, names) if isinstance(v, str) else v
                                         for k, v in refusal.values.items()})
            ctx._sent = 0
            ctx.event_key = f"evt:{receipt_id}:refused"
            if action_name != "parse":
                audited, entity_type, entity_id = audit_log.refused_as(action_name, *refused_subject)
                ctx.audit(audited, outcome="refused", reason=text, entity_type=entity_type, entity_id=entity_id)
            reply = self._answer(ctx, event, text, "warning")
        except Exception:
            if isinstance(event, ApprovalEvent):
                raise  # a machine's event: not recorded as failed, so its redelivery runs it again
            log.exception("handler failed on %s event %s", event.platform, event.event_id)
            ctx._sent = 0
            ctx.event_key = f"evt:{receipt_id}:error"
            audited, entity_type, entity_id = audit_log.refused_as(action_name, *refused_subject)
            ctx.audit(audited, outcome="error", reason="internal error", entity_type=entity_type, entity_id=entity_id)
            reply = self._answer(ctx, event, ctx.t("internal_error"), "error")
        if isinstance(event, CardActionEvent) and reply.card is not None:
            reply = self._follow_card(ctx, event, reply, receipt_id)
        elif isinstance(event, MessageEvent) and action_name not in ("parse", "error"):
            self._follow_entities(ctx, receipt_id)
        receipts.set_reply(s, receipt_id, reply.to_json())
        return reply

    def _follow_entities(self, ctx: Ctx, receipt_id: int) -> None:
        """A typed command (同意 #A1, 确认收到 #1 in a private chat) changed tasks or approvals: every sent
        copy of their cards follows, as after a tap (the group's copy does not stay at 初审 with live buttons)."""
        touched = ctx.s.info.pop("touched", set())
        mine: set[tuple[str, str]] | None = None  # read once, when a card has a copy (a new task has none)
        for entity_type, entity_id in sorted(touched, key=str):
            kind = {"tasks": "task", "approval_requests": "approval"}.get(entity_type)
            if kind is None or not isinstance(entity_id, int):
                continue
            found = copies.sent_copies(ctx.s, f"{kind}:{entity_id}")
            if found and mine is None:
                mine = {(p, i) for p, i in ctx.s.execute(select(Identity.platform, Identity.platform_user_id)
                                                        .where(Identity.user_id == ctx.actor.id))}
            # the typer's own private copies stay as they are: a tap on one is answered from the current state
            found = [c for c in found if not (c.target_kind == "user" and (c.platform, c.target_id) in (mine or ()))]
            base = CARD_VIEWS[kind](ctx, entity_id, None) if found else None
            if base is None:
                continue

            def view(copy: copies.SentCopy, kind: str = kind, entity_id: int = entity_id, base: Card = base) -> Card | None:
                draw = CARD_VIEWS.get((copy.shows or {}).get("kind", kind))
                if draw is None:
                    return None
                if copy.target_kind != "user" and draw is CARD_VIEWS[kind]:
                    return base  # a group's copy is drawn for no one in particular, as the base was
                viewer = None
                if copy.target_kind == "user":
                    viewer = ctx.s.scalar(select(User).join(Identity, Identity.user_id == User.id).where(
                        Identity.platform == copy.platform, Identity.platform_user_id == copy.target_id))
                return draw(ctx, entity_id, viewer)

            copies.update_copies(ctx.s, base, key=f"evt:{receipt_id}:{kind}:{entity_id}", now=ctx.now, copies=found,
                                 view=view)

    def _follow_card(self, ctx: Ctx, event: CardActionEvent, reply: Reply, receipt_id: int) -> Reply:
        """The tapped copy is updated by the answer (with the text it showed); every other copy by the outbox,
        each drawn for whoever sees it (an approval card's buttons are for the approver whose turn it is)."""
        assert reply.card is not None
        found = copies.sent_copies(ctx.s, reply.card.key)
        tapped = copies.tapped_copy(found, event.platform, event.message_id)
        raw_id = reply.card.key.partition(":")[2]

        def view(copy: copies.SentCopy) -> Card | None:
            shown = (copy.shows or {}).get("kind", reply.card.kind) if reply.card else ""
            if reply.card is not None and shown == reply.card.kind and shown in SAME_FOR_EVERYONE:
                return reply.card  # drawn a moment ago, from the state this transaction leaves
            draw = CARD_VIEWS.get(shown)
            if draw is None or not raw_id.isdigit():
                return None
            viewer = None
            if copy.target_kind == "user":
                viewer = ctx.s.scalar(select(User).join(Identity, Identity.user_id == User.id).where(
                    Identity.platform == copy.platform, Identity.platform_user_id == copy.target_id))
            return draw(ctx, int(raw_id), viewer)

        copies.update_copies(ctx.s, reply.card, key=f"evt:{receipt_id}", now=ctx.now, copies=found,
                             except_message=(event.platform, event.message_id), view=view)
        return replace(reply, parts=tapped.parts) if tapped is not None else reply

    def _answer(self, ctx: Ctx, event: InboundEvent, text: str, kind: str) -> Reply:
        if isinstance(event, CardActionEvent):
            return Reply(toast=text, toast_kind=kind)  # only the tapper sees it
        if isinstance(event, ApprovalEvent):
            return Reply()  # nobody typed anything: the refusal is audited (and logged) only
        ctx.say(ctx.at(ctx.actor), " ", text) if ctx.chat is not None else ctx.say(text)
        return Reply()

    def _as_application(self, text: str) -> Command | None:
        """`延期申请 #1 …` read as `申请 延期申请 #1 …`: people name the form they want (the seed's own word
        for it), not the command that files it. Only a template's exact name counts."""
        stripped = text.strip().lstrip(commands.SLASHES)
        first = stripped.split(maxsplit=1)[0] if stripped else ""
        if not any(t.name == first for t in templates_of(self.config)):
            return None
        parsed = commands.parse(f"申请 {stripped}")
        return parsed if isinstance(parsed, Command) else None

    @staticmethod
    def _alias_in(lang: str, primary: str) -> str:
        """A command's name as a person writing `lang` would type it (its first alias in that script)."""
        aliases = next((a for a in commands.ALIASES.values() if a[0] == primary), (primary,))
        if lang == "zh":
            return aliases[0]
        return next((a for a in aliases if a.isascii()), aliases[0])

    def _parse_error_values(self, error: ParseError) -> dict[str, str]:
        lang = self.config.language
        if error.reason == "unknown_command":
            names = [self._alias_in(lang, name) for name in error.suggestions]
            hint = texts.t(lang, "did_you_mean", names=texts.t(lang, "list_separator").join(names)) if names else ""
            return {"value": error.value, "suggestions": hint}
        if error.reason == "bad_field":
            return {"field": texts.field_name(lang, error.field), "value": error.value[:40],
                    "example": texts.field_example(lang, error.field)}
        return {"value": error.value}

    def _tapped_in(self, s: Session, event: CardActionEvent) -> Chat | None:
        """The group whose copy of the card was tapped, found through the copies we sent; None for a private one."""
        action = CardAction.unpack(event.value)
        if action is None:
            return None
        copy = copies.tapped_copy(copies.sent_copies(s, f"{action.entity}:{action.entity_id}"), event.platform,
                                  event.message_id)
        if copy is None or copy.target_kind != "chat":
            return None
        return self.find_chat(s, ChatRef(event.platform, copy.target_id, "", True))

    def chat_unreachable(self, platform: str, chat_id: str, row_id: int) -> None:
        """The platform refused a message to a group because the bot is no longer in it (the delivery
        worker calls this once the row is dead): the group is lost, as if the bot had been removed."""
        with self.db.transaction() as s:
            chat = s.scalar(select(Chat).where(Chat.platform == platform, Chat.platform_chat_id == chat_id)
                            .with_for_update())
            if chat is not None:
                groups.lost(s, self, chat, self.clock.now(), groups.REFUSED, f"row{row_id}")

    def _member_event(self, s: Session, event: MemberEvent, now: datetime, receipt_id: int) -> Reply:
        chat = self.resolve_chat(s, event.chat)
        if chat is None:
            return Reply()
        if event.added:
            groups.joined(s, self, chat, now, f"{receipt_id}")
        else:
            groups.lost(s, self, chat, now, groups.DISBANDED if event.disbanded else groups.REMOVED, f"evt{receipt_id}")
        return Reply()

