"""`DingTalkAdapter`: DingTalk inside `collabbot serve` (the `PlatformAdapter` protocol).

Composition only: settings from `[dingtalk]`, one API client shared by the sender, the stream's
gateway call and the org sync; the inbound dispatcher; and either the Stream connection (default)
or the HTTP callback route (and, beside start-up, the registration of the card callback route).
"""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any

from aiohttp import web

from collabbot.adapters.dingtalk.client import DingTalkClient
from collabbot.adapters.dingtalk.config import DingTalkSettings, parse_settings
from collabbot.adapters.dingtalk.inbound import DingTalkInbound
from collabbot.adapters.dingtalk.sender import DingTalkSender, SessionWebhooks
from collabbot.adapters.dingtalk.stream import StreamConnection
from collabbot.adapters.dingtalk.webhook import CardRoute, DingTalkWebhook
from collabbot.adapters.hub import Hub
from collabbot.bot.config import Config
from collabbot.bot.org import Org


class DingTalkAdapter:
    platform = "dingtalk"

    def __init__(self, settings: DingTalkSettings, hub: Hub, *, client: DingTalkClient | None = None) -> None:
        self.settings = settings
        self.hub = hub
        self.client = client or DingTalkClient(settings)
        webhooks = SessionWebhooks(settings.session_webhook_hosts)
        self.sender = DingTalkSender(self.client, settings, hub.bot.clock, webhooks)
        self.inbound = DingTalkInbound(hub, settings, webhooks, late_update=self.sender.update)
        self.webhook = DingTalkWebhook(settings, self.inbound, hub.bot.clock)
        self.stream: StreamConnection | None = None
        self.card_route = CardRoute(settings, self.client)
        self._registering: asyncio.Task[None] | None = None

    @classmethod
    def from_config(cls, raw: dict[str, Any], hub: Hub, config: Config) -> DingTalkAdapter:
        return cls(parse_settings(raw, config), hub)

    def add_routes(self, app: web.Application) -> None:
        if self.settings.mode == "http":
            app.router.add_post(self.settings.path, self.webhook.handle)

    def connected(self) -> bool | None:
        """Stream mode: is the connection up (`/metrics`)? None in HTTP mode, which has none."""
        return None if self.stream is None else self.stream.connected.is_set()

    async def start(self) -> None:
        await self.inbound.pipeline.start()
        if self.settings.mode == "stream":
            self.stream = StreamConnection(self.settings, self.client, self.inbound)
            await self.stream.start()
        else:  # off the start-up path: serve answers messages while DingTalk is out of reach
            self._registering = asyncio.create_task(self.card_route.register(), name="dingtalk-card-route")

    async def stop(self) -> None:
        if self._registering is not None:
            self._registering.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._registering
        if self.stream is not None:
            await self.stream.stop()
        await self.inbound.pipeline.stop()
        await self.client.close()


class DingTalkOrgSource:
    """`collabbot org sync --platform dingtalk`."""

    platform = "dingtalk"
    display_name = "DingTalk"

    def __init__(self, raw: dict[str, Any], config: Config) -> None:
        self.settings = parse_settings(raw, config)
        self.client = DingTalkClient(self.settings)

    async def fetch(self) -> Org:
        from collabbot.adapters.dingtalk.contacts import fetch_org

        return await fetch_org(self.client, self.settings.org_root_department)

    async def close(self) -> None:
        await self.client.close()
