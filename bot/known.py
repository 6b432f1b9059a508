"""This process's memory of who a platform identity is and which group a platform chat is.

Every callback names its sender and its chat, and a burst is the same few people in the same few
groups, so reading them again for each command is the commonest statement on the inbound path. What
is remembered is a row's columns; a command gets the row into its own session without a query
(`Session.merge(load=False)`).

What keeps it right:

* Only what a transaction read and then committed without changing any user, identity or chat is
  remembered (a row created or changed in a transaction that rolls back is never seen here).
* A committed change to a user, an identity or a chat in this process (org sync, a new person, a bound
  or renamed group, the bot leaving a group) makes every memory of the process forget everything; a
  read that raced that change is dropped too (its generation is gone).
* An entry lives a minute (`ttl`, by the engine's clock): a change made by another process
  (`collabbot org sync`, another instance) is seen within that.
"""

from __future__ import annotations

import threading
import weakref
from datetime import datetime, timedelta
from itertools import chain
from typing import Any, TypeVar

from sqlalchemy import event, inspect
from sqlalchemy.orm import Session, make_transient_to_detached

from collabbot.bot.clock import Clock
from collabbot.storage.models import Chat, Identity, User

T = TypeVar("T", User, Chat)

TTL = timedelta(seconds=60)
MOST_ENTRIES = 100_000  # far more than a company's people and groups; past it, start again
_WATCHED = (User, Identity, Chat)
_ALL: weakref.WeakSet[Known] = weakref.WeakSet()
_ABSENT: dict[str, Any] = {}  # a chat known not to be a group's (a private chat's tap)


class Known:
    """One per engine (per database): rows by (kind, platform, platform id)."""

    def __init__(self, clock: Clock, ttl: timedelta = TTL) -> None:
        self.clock = clock
        self.ttl = ttl
        self.generation = 0
        self._rows: dict[tuple[str, str, str], tuple[datetime, dict[str, Any]]] = {}
        self._lock = threading.Lock()
        _ALL.add(self)

    def get(self, s: Session, cls: type[T], platform: str, platform_id: str) -> T | bool | None:
        """The row as an object of `s` (no query), None when it is known not to exist, False when unknown."""
        found = self._rows.get((cls.__tablename__, platform, platform_id))
        if found is None or not found[0] <= self.clock.now() < found[0] + self.ttl:
            return False
        values = found[1]
        if values is _ABSENT:
            return None
        held = s.identity_map.get(inspect(cls).identity_key_from_primary_key((values["id"],)))
        if held is not None:
            return held  # already in this session, perhaps changed there: that copy stands
        row = cls(**values)
        make_transient_to_detached(row)
        return s.merge(row, load=False)

    def learn(self, s: Session, cls: type[T], platform: str, platform_id: str, row: T | None) -> None:
        """Remember `row` (None: that there is none) once `s` commits, if it changes no such rows."""
        values = _ABSENT if row is None else {a.key: getattr(row, a.key) for a in inspect(cls).column_attrs}
        s.info.setdefault("known", []).append((self, self.generation, (cls.__tablename__, platform, platform_id),
                                               values))

    def _remember(self, generation: int, key: tuple[str, str, str], values: dict[str, Any]) -> None:
        with self._lock:
            if generation != self.generation:
                return  # a change was committed after the read: the read may predate it
            if len(self._rows) >= MOST_ENTRIES:
                self._rows.clear()
            self._rows[key] = (self.clock.now(), values)

    def forget(self) -> None:
        with self._lock:
            self.generation += 1
            self._rows.clear()


def _columns_changed(obj: object) -> bool:
    """A row's own values changed (not merely a relationship's collection, as when a task gets an owner)."""
    state = inspect(obj)
    return any(state.attrs[a.key].history.has_changes() for a in state.mapper.column_attrs)


@event.listens_for(Session, "after_flush")
def _note_changes(session: Session, _context: Any) -> None:
    if (any(isinstance(obj, _WATCHED) for obj in chain(session.new, session.deleted))
            or any(isinstance(obj, _WATCHED) and _columns_changed(obj) for obj in session.dirty)):
        session.info["people_changed"] = True


@event.listens_for(Session, "after_commit")
def _publish(session: Session) -> None:
    if session.in_nested_transaction():
        return  # a savepoint: the transaction is not over
    learned = session.info.pop("known", ())
    if session.info.pop("people_changed", False):
        for known in list(_ALL):
            known.forget()
        return
    for known, generation, key, values in learned:
        known._remember(generation, key, values)


@event.listens_for(Session, "after_rollback")
def _drop(session: Session) -> None:
    if not session.in_nested_transaction():  # (after a savepoint's rollback, what it flushed counts as changed)
        session.info.pop("known", None)
        session.info.pop("people_changed", None)
