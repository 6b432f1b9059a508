"""What every platform adapter is given: one way into the engine from the event loop.

`Hub.handle(event)` runs `Bot.handle` in a worker thread (the engine and its database calls are
synchronous, so they never block the loop that must answer callbacks within the platforms'
deadlines), then wakes the delivery worker so the messages it queued go out at once.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import Protocol

from aiohttp import web

from collabbot.bot.app import Bot
from collabbot.bot.events import InboundEvent
from collabbot.bot.replies import Reply
from collabbot.scheduler.delivery import DeliveryWorker, Sender


@dataclass
class Hub:
    bot: Bot
    worker: DeliveryWorker | None = None

    async def handle(self, event: InboundEvent) -> Reply:
        reply = await asyncio.to_thread(self.bot.handle, event)
        if self.worker is not None:
            self.worker.wake.set()
        return reply


class PlatformAdapter(Protocol):
    """One platform: its webhook routes and/or long connection, and its sender."""

    platform: str
    sender: Sender

    def add_routes(self, app: web.Application) -> None: ...

    async def start(self) -> None: ...

    async def stop(self) -> None: ...
