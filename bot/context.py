"""What a handler works with: the unit of work, the clock's now, who acts, where, and how to speak.

A handler refuses by raising `Refused`; the engine then rolls back the handler's writes, audits
the refusal and tells the person why. Every message a handler sends goes through `say`/`tell_*`,
which write outbox rows in the same transaction as the change that caused them.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Any, Protocol

from sqlalchemy import select
from sqlalchemy.orm import Session, joinedload, selectinload

from collabbot.bot import people, texts
from collabbot.bot.events import MARKER, show_markers, strip_markers
from collabbot.bot.replies import At, Card, Message, Part
from collabbot.storage import outbox
from collabbot.storage.models import AuditEntry, Chat, Department, HelpRequest, Identity, Task, User, Wait

if TYPE_CHECKING:
    from collabbot.bot.calendar import WorkCalendar
    from collabbot.bot.clock import Clock
    from collabbot.bot.config import Config
    from collabbot.storage.db import Database

HelpLine = tuple[str, str, str]  # (command name, zh example, en example)


class Engine(Protocol):
    """What handlers and rules use of the engine (`bot.app.Bot` is the one), so they need not import it."""

    db: Database
    config: Config
    clock: Clock
    calendar: WorkCalendar
    # "approval", "approval:nag", "approval:what" -> a sentence; "approval:prefetch" loads a sweep batch's rows
    wait_describers: dict[str, Callable[..., Any]]
    help_lines: tuple[HelpLine, ...]

    def describe_wait(self, ctx: Ctx, wait: Wait) -> str: ...


# The mentions a text begins or ends with: whom it is addressed to, not part of what it says.
ADDRESSEES = re.compile(f"^(?:\\s*{MARKER.pattern})+|(?:\\s*{MARKER.pattern})+\\s*$")


class Refused(Exception):
    """A command that may not or cannot be done; `key` and `values` make the reply."""

    def __init__(self, key: str, **values: Any) -> None:
        super().__init__(key)
        self.key = key
        self.values = values


def snapshot(entity: Any) -> dict[str, Any]:
    """The entity's columns as JSON-ready values, for the audit log's before/after."""
    data: dict[str, Any] = {}
    for column in entity.__table__.columns:
        value = getattr(entity, column.key)
        data[column.key] = value.isoformat() if hasattr(value, "isoformat") else value
    return data


@dataclass
class Ctx:
    s: Session
    bot: Engine
    now: datetime
    actor: User
    platform: str
    chat: Chat | None  # None in a private chat
    event_key: str  # makes the dedupe keys of this event's messages
    mentions: list[User] = field(default_factory=list)
    _sent: int = 0
    _held: dict[int, Task] = field(default_factory=dict)

    # --- language -------------------------------------------------------------------------------
    @property
    def lang(self) -> str:
        return self.bot.config.language

    def t(self, key: str, **values: Any) -> str:
        return texts.t(self.lang, key, **values)

    def local(self, when: datetime) -> datetime:
        return when.astimezone(self.bot.calendar.tz)

    def fmt(self, when: datetime | None) -> str:
        if when is None:
            return self.t("none")
        local, now = self.local(when), self.local(self.now)
        return local.strftime("%m-%d %H:%M") if local.year == now.year else local.strftime("%Y-%m-%d %H:%M")

    # --- roles ----------------------------------------------------------------------------------
    def is_admin(self, user: User | None = None) -> bool:
        return people.is_admin(self.s, user or self.actor, self.bot.config.admins)

    def escalated_to(self, person: User) -> bool:
        """The actor is whom an escalation about `person` goes to: they may remind them, or hand what
        `person` is stuck on to someone else."""
        boss = people.escalation_target(self.s, person, self.bot.config.rules.escalation_to)
        return boss is not None and boss.id == self.actor.id

    def received_escalation(self, entity_type: str, entity_id: int, wait_id: int | None = None) -> bool:
        """The actor was sent an escalation about this entity (that wait's, when given), though the org may
        have changed since (a new supervisor or head): what it asks of them stays theirs to do, rather than
        leave the matter with nobody told."""
        sent = self.s.scalars(select(AuditEntry.after).where(
            AuditEntry.action == "rule.escalate", AuditEntry.entity_type == entity_type,
            AuditEntry.entity_id == entity_id))
        return any(isinstance(a, dict) and a.get("to") == self.actor.id and wait_id in (None, a.get("wait"))
                   for a in sent)

    def heads_department(self, user: User, department_id: int | None) -> bool:
        if department_id is None:
            return False
        dept = self.s.get(Department, department_id)
        return dept is not None and dept.head_id == user.id

    # --- lookups --------------------------------------------------------------------------------
    def task(self, task_id: int, *, lock: bool = True, for_card: bool = True, to_read: bool = False) -> Task:
        """The task, with what its card shows (owner, project, department, collaborators) loaded with it unless
        `for_card` is False (asked again with True when a card is drawn after all). It is held for the
        event: the session's identity map is weak, so a card drawn again later in the event (the other
        copies) would otherwise read the task and its relations from the database again. A cancelled task
        is refused as such (only an admin still acts on it), except `to_read` (its card, its trail)."""
        stmt = select(Task).where(Task.id == task_id)
        if for_card:
            stmt = stmt.options(joinedload(Task.owner), joinedload(Task.project), joinedload(Task.department),
                                selectinload(Task.collaborators))
        if lock and self.s.get_bind().dialect.name == "postgresql":
            stmt = stmt.with_for_update(of=Task)
        task = self.s.scalar(stmt)
        if task is None:
            raise Refused("not_found_task", id=task_id)
        if task.status == "cancelled" and not (to_read or self.is_admin()):
            raise Refused("task_is_cancelled", id=task_id)
        self._held[task.id] = task
        return task

    def help_request(self, help_id: int) -> HelpRequest:
        req = self.s.get(HelpRequest, help_id)
        if req is None:
            raise Refused("not_found_help", id=help_id)
        return req

    def department(self, name: str) -> Department:
        dept = self.s.scalar(select(Department).where(Department.name == name.strip()))
        if dept is None:
            known = texts.names(self.lang, self.s.scalars(select(Department.name).order_by(Department.id)))
            raise Refused("unknown_dept", name=name.strip()[:50], known=known or self.t("none"))
        return dept

    def mention(self, index: int) -> User:
        if index >= len(self.mentions):
            raise Refused("unknown_user", name=f"#{index}")
        return self.mentions[index]

    def with_names(self, text: str) -> str:
        """`text` with each mention inside it written as @name: what was typed, as a person reads it. The
        people it begins or ends with are whom it is addressed to (mentioned apart), not part of it."""
        return show_markers(ADDRESSEES.sub("", text), [u.name for u in self.mentions]).strip()

    def with_ats(self, text: str) -> list[Part]:
        """`with_names` as message parts, each mention inside the text a real one: said in a group, the
        person named is notified where the name stands, not by a second mention after the text."""
        inner = ADDRESSEES.sub("", text).strip()
        parts: list[Part] = []
        start = 0
        for m in MARKER.finditer(inner):
            parts.append(strip_markers(inner[start:m.start()]))
            if (i := int(m.group(1))) < len(self.mentions):
                parts.append(self.at(self.mentions[i]))
            start = m.end()
        parts.append(strip_markers(inner[start:]))
        return [p for p in parts if p]

    # --- speaking -------------------------------------------------------------------------------
    def at(self, user: User) -> At:
        return At(user.id, people.platform_id(self.s, user, self.platform), user.name)

    def _key(self, suffix: str = "") -> str:
        self._sent += 1
        return f"{self.event_key}:{self._sent}{suffix}"

    def say(self, *parts: Part, card: Card | None = None) -> None:
        """Answer where the command came from: the group, or the person in private chat."""
        message = Message(tuple(parts), card)
        if self.chat is not None:
            self.tell_chat(self.chat, message, self._key())
        else:
            self.tell_user(self.actor, message, self._key())

    def tell_user(self, user: User, message: Message, key: str | None = None,
                  not_before: datetime | None = None) -> bool:
        if user.left_at is not None and user.id != self.actor.id:
            return False  # someone who has left hears nothing more: the platform would refuse it (a dead row)
        platform = self.platform if people.platform_id(self.s, user, self.platform) else None
        return people.post_to_user(self.s, user, message, key or self._key(), self.now,
                                   platform=platform, not_before=not_before)

    def tell_chat(self, chat: Chat, message: Message, key: str | None = None,
                  not_before: datetime | None = None) -> bool:
        return outbox.enqueue(
            self.s, dedupe_key=key or self._key(), platform=chat.platform, target_kind="chat",
            target_id=chat.platform_chat_id, target_name=chat.name, payload=message.to_json(), now=self.now,
            not_before=not_before, card_key=message.card.key if message.card else None,
        )

    # --- audit ----------------------------------------------------------------------------------
    def audit(self, action: str, entity: Any = None, before: dict[str, Any] | None = None,
              *, outcome: str = "ok", reason: str = "", entity_type: str = "", entity_id: int | None = None) -> None:
        if outcome == "ok" and entity is not None:  # what changed: every sent copy of its card follows (Bot)
            self.s.info.setdefault("touched", set()).add((entity_type or entity.__tablename__, getattr(entity, "id", None)))
        self.s.add(
            AuditEntry(
                at=self.now,
                actor_id=self.actor.id,
                action=action,
                entity_type=entity_type or (entity.__tablename__ if entity is not None else ""),
                entity_id=entity_id if entity_id is not None else getattr(entity, "id", None),
                outcome=outcome,
                reason=reason[:2000],
                before=before,
                after=snapshot(entity) if entity is not None else None,
            )
        )


def identity_of(s: Session, user: User, platform: str) -> Identity | None:
    return s.scalar(select(Identity).where(Identity.user_id == user.id, Identity.platform == platform))
