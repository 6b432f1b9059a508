"""`FeishuAdapter`: the Feishu platform inside `collabbot serve` (the `PlatformAdapter` protocol).

Composition only: settings from `[feishu]`, one API client shared by the sender, the org sync and the
bot-id lookup, the inbound dispatcher, and either the webhook route or the long connection. At start
it learns the bot's own open_id (from the config, else `GET /open-apis/bot/v3/info`), which is how a
group message addressed to the bot is told from chatter: Feishu lists the bot among the mentions.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import Any

from aiohttp import web

from collabbot.adapters.feishu.client import FeishuApiError, FeishuClient
from collabbot.adapters.feishu.config import FeishuSettings, parse_settings
from collabbot.adapters.feishu.inbound import FeishuInbound
from collabbot.adapters.feishu.sender import FeishuSender
from collabbot.adapters.feishu.webhook import FeishuWebhook
from collabbot.adapters.hub import Hub
from collabbot.bot.config import Config, ConfigError
from collabbot.bot.org import Org

log = logging.getLogger(__name__)

BOT_ID_RETRY_SECONDS = 30.0


class FeishuAdapter:
    platform = "feishu"

    def __init__(self, settings: FeishuSettings, hub: Hub, *, client: FeishuClient | None = None) -> None:
        self.settings = settings
        self.hub = hub
        self.client = client or FeishuClient(settings)
        self.sender = FeishuSender(self.client, settings)
        self.inbound = FeishuInbound(hub, settings, self.client, late_update=self.sender.update)
        self.webhook = FeishuWebhook(settings, self.inbound, hub.bot.clock)
        self.long_connection: Any = None
        self._bot_id_task: asyncio.Task[None] | None = None

    @classmethod
    def from_config(cls, raw: dict[str, Any], hub: Hub, config: Config) -> FeishuAdapter:
        settings = parse_settings(raw, config)
        if settings.mode == "websocket":
            require_long_connection_sdk()
        if settings.mode == "webhook" and not settings.encrypt_key:
            log.warning("feishu: no encrypt_key: callbacks are neither signed nor encrypted, and no replay window "
                        "applies; set an Encrypt Key in the developer console (事件与回调 → 加密策略)")
        return cls(settings, hub)

    def add_routes(self, app: web.Application) -> None:
        if self.settings.mode == "webhook":
            app.router.add_post(self.settings.path, self.webhook.handle)

    def connected(self) -> bool | None:
        """Long-connection mode: is the connection up (`/metrics`)? None in webhook mode, which has none."""
        if self.settings.mode != "websocket":
            return None
        return self.long_connection is not None and self.long_connection.up()

    async def start(self) -> None:
        await self.inbound.pipeline.start()
        await self._subscribe_approvals()
        if not self.inbound.bot_open_id and not await self._learn_bot_id():
            self._bot_id_task = asyncio.create_task(self._learn_bot_id_later(), name="feishu-bot-id")
        if self.settings.mode == "websocket":
            from collabbot.adapters.feishu.ws import LongConnection

            self.long_connection = LongConnection(self.settings, self.inbound)
            await self.long_connection.start()

    async def _subscribe_approvals(self) -> None:
        """Each linked approval definition's events are asked for once (Feishu sends none before): an app
        that already asked is told so, which is fine; a refusal is logged with the permission to grant."""
        for code in self.settings.approvals:
            try:
                fresh = await self.client.subscribe_approval(code)
            except FeishuApiError as exc:
                log.error("feishu: cannot subscribe to approval %s's events (%s); its instances are not mirrored "
                          "until it is: grant the app approval:approval (查看、创建、更新、删除审批应用相关信息) and "
                          "restart", code, exc)
                continue
            log.info("feishu: approval %s's events %s", code, "subscribed" if fresh else "were already subscribed")

    async def _learn_bot_id(self) -> bool:
        try:
            self.inbound.bot_open_id = await self.client.bot_open_id()
        except FeishuApiError as exc:
            log.error("feishu: cannot learn the bot's open_id (%s); group messages are not recognised as "
                      "addressed to the bot until it is known (or set [feishu] bot_open_id)", exc)
            return False
        log.info("feishu: the bot is %s", self.inbound.bot_open_id)
        return True

    async def _learn_bot_id_later(self) -> None:
        while not await self._learn_bot_id():
            await asyncio.sleep(BOT_ID_RETRY_SECONDS)

    async def stop(self) -> None:
        if self._bot_id_task is not None:
            self._bot_id_task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._bot_id_task
        if self.long_connection is not None:
            await self.long_connection.stop()
        await self.inbound.pipeline.stop()
        await self.client.close()


def require_long_connection_sdk() -> None:
    """Long-connection mode runs on lark-oapi, installed by the `feishu` extra."""
    try:
        import lark_oapi  # noqa: F401
    except ImportError:
        raise ConfigError("feishu.mode", "websocket mode needs lark-oapi: pip install 'collabbot[feishu]'") from None


class FeishuOrgSource:
    """`collabbot org sync --platform feishu`: the tenant's 通讯录 through the contact API."""

    platform = "feishu"
    display_name = "Feishu"

    def __init__(self, raw: dict[str, Any], config: Config) -> None:
        self.settings = parse_settings(raw, config)
        self.client = FeishuClient(self.settings)

    async def fetch(self) -> Org:
        from collabbot.adapters.feishu.contacts import fetch_org

        return await fetch_org(self.client, self.settings.org_root_department)

    async def close(self) -> None:
        await self.client.close()
