"""The console platform inside `collabbot serve`: messages are printed instead of sent.

With no platform configured, `collabbot serve` runs the whole machinery (sweeps, outbox, delivery)
and prints each message, one line each; `COLLABBOT_CONSOLE_JSON=1` prints JSON lines instead,
which the multi-process tests read. Each line is flushed before the row is marked sent, so a
crash between the two is the only window for a duplicate, exactly as with a real platform.
"""

from __future__ import annotations

import json
import os
import sys
from typing import TextIO

from aiohttp import web

from collabbot.adapters.hub import OutboxItem
from collabbot.bot.clock import Clock
from collabbot.bot.copies import UPDATE
from collabbot.bot.org import CONSOLE
from collabbot.bot.replies import Message


class StdoutSender:
    platform = CONSOLE

    def __init__(self, clock: Clock, stream: TextIO | None = None, as_json: bool | None = None) -> None:
        self.clock = clock
        self.stream = stream or sys.stdout
        self.as_json = os.environ.get("COLLABBOT_CONSOLE_JSON") == "1" if as_json is None else as_json

    async def send(self, item: OutboxItem) -> str | None:
        if item.target_kind == UPDATE:  # a terminal cannot change what it printed: nothing to show
            return item.target_id
        text = Message.from_json(item.payload).plain_text
        if self.as_json:
            line = json.dumps({"id": item.id, "key": item.dedupe_key, "kind": item.target_kind,
                               "target": item.target_id, "text": text[:200], "pid": os.getpid()}, ensure_ascii=False)
        else:
            line = f"[{self.clock.now():%m-%d %H:%M}] → {item.target_name}: {text}"
        self.stream.write(line + "\n")
        self.stream.flush()
        return f"console-{item.id}"


class ConsoleAdapter:
    """No routes and no connection: the console platform only prints what the bot sends."""

    platform = CONSOLE

    def __init__(self, clock: Clock) -> None:
        self.sender = StdoutSender(clock)

    def add_routes(self, app: web.Application) -> None:
        return None

    async def start(self) -> None:
        return None

    async def stop(self) -> None:
        return None
