"""The app cards' `response_code`s, kept in the database (storage/card_codes.py).

WeCom changes an app card already sent only with a response_code: `message/send` gives one for each
`button_interaction` card, a tap's callback another; each is valid 72 hours and usable once. Kept in
memory they died with the process, and after a restart every changed card was posted again. In the
database only the latest code of each copy is kept (a tap's replaces the send's), under the id the
engine knows the copy by, with the task_id of the card that shows it now.

The robot's URL-callback mode has the same kind of one-time key: a message's `response_url`, the only
way to speak in that chat later (once, within the hour). It is kept here too, as `response_url|<chatid>`,
so the instance that delivers the answer need not be the one that received the message.
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

PLATFORM = "wecom"
T = TypeVar("T")
VALID = timedelta(hours=72) - timedelta(minutes=10)  # WeCom's 72 h, less a margin for clocks and calls in flight


class CardCodes:
    def __init__(self, db: Database, clock: Clock) -> None:
        self.db = db
        self.clock = clock

    async def keep(self, message_id: str, task_id: str, code: str, valid: timedelta = VALID) -> bool:
        """Remember `code` as the copy's latest; False when it is the one already kept (a redelivered tap)."""
        now = self.clock.now()
        return await asyncio.to_thread(self._run, card_codes.keep, PLATFORM, message_id, task_id, code, now + valid,
                                       now)

    async def take(self, message_id: str) -> Code | None:
        """The copy's code, now used; None when it has none that is still valid and unused."""
        return await asyncio.to_thread(self._run, card_codes.take, PLATFORM, message_id, self.clock.now())

    async def give_back(self, message_id: str, code: str) -> None:
        """The call with `code` failed before WeCom took it: usable again."""
        await asyncio.to_thread(self._run, card_codes.give_back, PLATFORM, message_id, code)

    def _run(self, fn: Callable[..., T], *args: Any) -> T:
        with self.db.transaction() as s:
            return fn(s, *args)
