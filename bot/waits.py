"""Opening and closing "waits": the unanswered items that the nag and escalation rules watch.

A wait is opened when someone is asked to answer (an assignment, an approval step, a help
request) and closed, at once, by anything that answers it. Its `next_due_at` is the next reminder's
time, so the sweep finds due reminders with one indexed query.
"""

from __future__ import annotations

from sqlalchemy import select

from collabbot.bot.context import Ctx
from collabbot.bot.rules.reminders import next_step
from collabbot.storage.models import Chat, User, Wait


def open_wait(ctx: Ctx, kind: str, entity_type: str, entity_id: int, person: User, chat: Chat | None) -> Wait:
    rules = ctx.bot.config.rules
    step = next_step(ctx.now, 0, None, False, rules, ctx.bot.calendar)
    wait = Wait(kind=kind, entity_type=entity_type, entity_id=entity_id, person_id=person.id,
                chat_id=chat.id if chat else None, raised_at=ctx.now, nags_sent=0,
                next_due_at=step[1] if step else None)
    ctx.s.add(wait)
    ctx.s.flush()
    return wait


def close_waits(ctx: Ctx, entity_type: str, entity_id: int, *, kind: str | None = None,
                person_id: int | None = None) -> int:
    """Mark the open waits on an entity answered (optionally only one kind or one person's)."""
    stmt = select(Wait).where(Wait.entity_type == entity_type, Wait.entity_id == entity_id,
                              Wait.answered_at.is_(None))
    if kind is not None:
        stmt = stmt.where(Wait.kind == kind)
    if person_id is not None:
        stmt = stmt.where(Wait.person_id == person_id)
    count = 0
    for wait in ctx.s.scalars(stmt):
        wait.answered_at = ctx.now
        wait.next_due_at = None
        count += 1
    return count
