"""Opening and closing "waits": the unanswered items that the nag and escalation rules watch.

A wait is opened when someone is asked to answer (an assignment, an approval step, a help
request) and closed, at once, by anything that answers it. Its `next_due_at` is the next reminder's
time, so the sweep finds due reminders with one indexed query. A closed wait that was escalated settles
the leader's escalation card: 已处理, without the 再次提醒 / 转交 buttons.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from sqlalchemy import delete, select

from collabbot.bot.context import Ctx
from collabbot.bot.copies import sent_copies, update_copies
from collabbot.bot.replies import Card, card_from_json
from collabbot.bot.rules.reminders import next_step
from collabbot.storage.models import Chat, OutboxMessage, User, Wait


def open_wait(ctx: Ctx, kind: str, entity_type: str, entity_id: int, person: User, chat: Chat | None, *,
              urgent: bool = False) -> Wait:
    """`urgent`: an urgent task's response (确认收到), chased on [rules.urgent]'s rhythm from the start, as
    the sweep goes on chasing it."""
    rules = ctx.bot.config.rules.for_urgent() if urgent else ctx.bot.config.rules
    step = next_step(ctx.now, 0, None, False, rules, ctx.bot.calendar)
    wait = Wait(kind=kind, entity_type=entity_type, entity_id=entity_id, person_id=person.id,
                chat_id=chat.id if chat else None, raised_at=ctx.now, nags_sent=0,
                next_due_at=step[1] if step else None)
    ctx.s.add(wait)
    ctx.s.flush()
    return wait


def close_waits(ctx: Ctx, entity_type: str, entity_id: int, *, kind: str | None = None,
                person_id: int | None = None, withdrawn: bool = False) -> int:
    """Mark the open waits on an entity answered (optionally only one kind or one person's); `withdrawn`
    when they close because no answer is needed any more, which the reports do not count as a response."""
    stmt = select(Wait).where(Wait.entity_type == entity_type, Wait.entity_id == entity_id,
                              Wait.answered_at.is_(None))
    if kind is not None:
        stmt = stmt.where(Wait.kind == kind)
    if person_id is not None:
        stmt = stmt.where(Wait.person_id == person_id)
    count = 0
    for wait in list(ctx.s.scalars(stmt)):  # read whole: settling a card reads the outbox meanwhile
        wait.answered_at = ctx.now
        wait.next_due_at = None
        wait.withdrawn = withdrawn
        count += 1
        if wait.escalated_at is not None:
            settle_escalation_card(ctx, wait)
            # a leader's 再次提醒 still waiting for working time is about what no longer needs an answer
            ctx.s.execute(delete(OutboxMessage).where(OutboxMessage.dedupe_key.startswith(remind_prefix(wait.id), autoescape=True),
                                                      OutboxMessage.status == "pending"))
    return count


def remind_prefix(wait_id: int) -> str:
    """The outbox keys of the leader's 再次提醒 about a wait begin with this (one per tap)."""
    return f"remind:wait:{wait_id}:"


def _handled(ctx: Ctx, shown: dict[str, Any] | None) -> Card | None:
    if not shown:
        return None
    return replace(card_from_json(shown), status=ctx.t("wait_handled_status"), color="grey", buttons=())


def handled_card(ctx: Ctx, wait: Wait) -> Card | None:
    """The escalation card about `wait` as it shows once the wait is over: 已处理, no 再次提醒 / 转交."""
    found = sent_copies(ctx.s, f"wait:{wait.id}")
    return _handled(ctx, found[-1].shows) if found else None


def settle_escalation_card(ctx: Ctx, wait: Wait) -> None:
    """The wait was answered (or reassigned, or cancelled): every sent copy of the leader's escalation card
    stops offering the buttons that would chase it."""
    found = sent_copies(ctx.s, f"wait:{wait.id}")
    base = _handled(ctx, found[-1].shows) if found else None
    if base is not None:
        update_copies(ctx.s, base, key=f"{ctx.event_key}:wait:{wait.id}", now=ctx.now, copies=found,
                      view=lambda copy: _handled(ctx, copy.shows))
