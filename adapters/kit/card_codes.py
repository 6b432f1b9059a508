"""A platform's one-time codes for changing a sent card (or answering a chat) later, kept in the database.

WeCom, say, changes an app card already sent only with a response_code: `message/send` gives one for
each `button_interaction` card, a tap's callback another; each is valid 72 hours and usable once. Kept
in memory they died with the process, and after a restart every changed card was posted again. In the
database (storage/card_codes.py) only the latest code of each copy is kept (a tap's replaces the
send's), under the id the engine knows the copy by, with the id of the card that shows it now; any
instance may use it.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from datetime import timedelta
from typing import Any, TypeVar

from collabbot.bot.clock import Clock
from collabbot.storage import card_codes
from collabbot.storage.card_codes import Code
from collabbot.storage.db import Database

T = TypeVar("T")


class CardCodes:
    def __init__(self, db: Database, clock: Clock, platform: str, valid: timedelta) -> None:
        self.db = db
        self.clock = clock
        self.platform = platform
        self.valid = valid  # how long the platform honours a code, less a margin

    async def keep(self, message_id: str, task_id: str, code: str, valid: timedelta | None = None) -> bool:
        """Remember `code` as the copy's latest; False when it is the one already kept (a redelivered tap)."""
        now = self.clock.now()
        until = now + (self.valid if valid is None else valid)
        return await asyncio.to_thread(self._run, card_codes.keep, self.platform, message_id, task_id, code, until,
                                       now)

    async def take(self, message_id: str) -> Code | None:
        """The copy's code, now used; None when it has none that is still valid and unused."""
        return await asyncio.to_thread(self._run, card_codes.take, self.platform, message_id, self.clock.now())

    async def give_back(self, message_id: str, code: str) -> None:
        """The call with `code` failed before the platform took it: usable again."""
        await asyncio.to_thread(self._run, card_codes.give_back, self.platform, message_id, code)

    def _run(self, fn: Callable[..., T], *args: Any) -> T:
        with self.db.transaction() as s:
            return fn(s, *args)
