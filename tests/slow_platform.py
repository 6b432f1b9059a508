"""A slow test platform inside a real `collabbot serve`: each send takes `delay_seconds` (longer than the
lease, in the tests), then prints one JSON line, as the console platform does.

Run as `python -m tests.slow_platform --config C serve`: it adds the platform through the two places a
platform is declared (the config's platform sections and the adapter registry), in this process only,
and runs the real command line. The config names it in a `[slowtest]` section: `delay_seconds = 1.5`.
"""

from __future__ import annotations

import asyncio
import json
import os
import sys
from typing import Any

from aiohttp import web

from collabbot.storage.outbox import OutboxItem

NAME = "slowtest"


class SlowSender:
    platform = NAME
    limits = ()  # no platform limits: the test is about leases, not pacing

    def __init__(self, delay: float) -> None:
        self.delay = delay

    async def send(self, item: OutboxItem) -> str | None:
        await asyncio.sleep(self.delay)
        line = json.dumps({"id": item.id, "key": item.dedupe_key, "pid": os.getpid()})
        sys.stdout.write(line + "\n")
        sys.stdout.flush()
        return f"slow-{item.id}"


class SlowAdapter:
    platform = NAME

    def __init__(self, delay: float) -> None:
        self.sender = SlowSender(delay)

    def add_routes(self, app: web.Application) -> None:
        return None

    async def start(self) -> None:
        return None

    async def stop(self) -> None:
        return None


def check_config(raw: dict[str, Any], config: Any) -> None:
    if not isinstance(raw.get("delay_seconds", 0), int | float):
        raise ValueError("delay_seconds must be a number")


def make_adapter(raw: dict[str, Any], hub: Any, config: Any) -> SlowAdapter:
    return SlowAdapter(float(raw.get("delay_seconds", 1.0)))


def make_org_source(raw: dict[str, Any], config: Any) -> Any:
    raise NotImplementedError


def main() -> int:
    from collabbot.adapters import registry, server
    from collabbot.bot import config

    config.PLATFORM_SECTIONS = (*config.PLATFORM_SECTIONS, NAME)
    registry.PLATFORMS[NAME] = (__name__, "")
    return server.main(sys.argv[1:])


if __name__ == "__main__":
    sys.exit(main())
