"""`WecomAdapter`: WeCom inside `collabbot serve` (the `PlatformAdapter` protocol).

Composition only: settings from `[wecom]`; one app API client shared by the sender, the contact
directory and the org sync; the robot's long connection (held by one instance, the kit's `Holder`) or
its URL-callback route; the app's callback route.
"""

from __future__ import annotations

import logging
from typing import Any

from aiohttp import web

from collabbot.adapters.hub import Hub
from collabbot.adapters.kit.holder import Holder
from collabbot.adapters.wecom.client import WecomClient
from collabbot.adapters.wecom.config import WecomSettings, parse_settings
from collabbot.adapters.wecom.inbound import WecomInbound
from collabbot.adapters.wecom.parse import PLATFORM
from collabbot.adapters.wecom.robot import RobotConnection
from collabbot.adapters.wecom.sender import CODE_VALID, LIMITS, WecomSender
from collabbot.adapters.wecom.webhook import WecomWebhooks
from collabbot.bot.config import Config
from collabbot.bot.org import Org
from collabbot.scheduler.limits import Limit

log = logging.getLogger(__name__)


class WecomAdapter:
    platform = "wecom"

    def __init__(self, settings: WecomSettings, hub: Hub, *, client: WecomClient | None = None,
                 limits: tuple[Limit, ...] = LIMITS) -> None:
        self.settings = settings
        self.hub = hub
        self.client = client or WecomClient(settings)
        self.robot: RobotConnection | None = None
        if settings.robot_mode == "websocket":
            self.robot = RobotConnection(settings, Holder(hub.lock_url, PLATFORM, "the robot's long connection",
                                                            f"wecom:robot:{settings.bot_id}"), self._robot_frame)
        self._bound: set[str] = set()
        self.sender = WecomSender(self.client, settings, self.robot, self.bound,
                                  hub.card_codes(PLATFORM, CODE_VALID), limits=limits)
        self.inbound = WecomInbound(hub, settings, self.client, self.sender)
        self.webhooks = WecomWebhooks(settings, self.inbound, hub.bot.clock)

    @classmethod
    def from_config(cls, raw: dict[str, Any], hub: Hub, config: Config) -> WecomAdapter:
        settings = parse_settings(raw, config)
        if not settings.app_token:
            log.warning("wecom: no app_token / app_encoding_aes_key: taps on the app's cards in private chats and "
                        "private messages to the app are not received")
        return cls(settings, hub)

    def connected(self) -> bool | None:
        """The robot's long connection: up on this instance (`/metrics`; 0 on a standby, which holds none)?
        None in URL-callback mode."""
        return None if self.robot is None else self.robot.connected.is_set()

    async def _robot_frame(self, frame: dict[str, Any]) -> dict[str, Any] | None:
        return await self.inbound.robot_frame(frame)

    def bound(self, chat_id: str) -> bool:
        """Has anyone written to the robot in this group? (The engine knows a group only from a message
        there.)"""
        if chat_id in self._bound:
            return True
        known = self.hub.bot.knows_group(self.platform, chat_id)
        if known:
            self._bound.add(chat_id)
        return known

    def add_routes(self, app: web.Application) -> None:
        self.webhooks.add_routes(app)

    async def start(self) -> None:
        await self.inbound.start()
        if self.robot is not None:
            await self.robot.start()

    async def stop(self) -> None:
        if self.robot is not None:
            await self.robot.stop()
        await self.inbound.stop()
        await self.client.close()


class WecomOrgSource:
    """`collabbot org sync --platform wecom`: departments, heads and direct leaders through the app."""

    platform = "wecom"
    display_name = "WeCom"

    def __init__(self, raw: dict[str, Any], config: Config) -> None:
        self.settings = parse_settings(raw, config)
        self.client = WecomClient(self.settings)

    async def fetch(self) -> Org:
        from collabbot.adapters.wecom.contacts import fetch_org

        return await fetch_org(self.client, self.settings.org_root_department)

    async def close(self) -> None:
        await self.client.close()
