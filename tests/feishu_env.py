"""An in-process Feishu setup for tests: engine + FeishuAdapter behind a real aiohttp server + the fake API."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from aiohttp.test_utils import TestClient, TestServer
from aiohttp.web import Application
from sqlalchemy import func, select

from collabbot.adapters.feishu.adapter import FeishuAdapter
from collabbot.adapters.feishu.client import FeishuClient
from collabbot.adapters.feishu.config import parse_settings
from collabbot.adapters.hub import Hub
from collabbot.bot.app import Bot
from collabbot.bot.clock import ManualClock
from collabbot.bot.config import Config, DeliverySettings
from collabbot.bot.org import Org, OrgPerson, apply_org
from collabbot.scheduler.delivery import DeliveryWorker
from collabbot.storage.db import Database

from . import feishu_callbacks as cb
from .fake_feishu import FakeFeishu

ORG = Org(
    departments={"市场部": "张三", "技术部": "陈七"},
    people=(
        OrgPerson("赵总", "", "", {"feishu": "ou_boss"}),
        OrgPerson("张三", "市场部", "赵总", {"feishu": "ou_zhang"}),
        OrgPerson("陈七", "技术部", "赵总", {"feishu": "ou_chen"}),
        OrgPerson("李四", "技术部", "陈七", {"feishu": "ou_li"}),
        OrgPerson("赵六", "技术部", "陈七", {"feishu": "ou_zhao"}),
    ),
)


def count(db: Database, model: Any, *where: Any) -> int:
    with db.transaction() as s:
        return s.scalar(select(func.count()).select_from(model).where(*where)) or 0


@dataclass
class FeishuEnv:
    db: Database
    clock: ManualClock
    fake: FakeFeishu
    bot: Bot
    hub: Hub
    adapter: FeishuAdapter
    worker: DeliveryWorker
    http: TestClient
    answers: list[dict[str, Any]] = field(default_factory=list)

    async def post(self, body: dict[str, Any], *, at: datetime | None = None, signed: bool = True,
                   key: str = cb.ENCRYPT_KEY) -> tuple[int, dict[str, Any]]:
        headers, raw = cb.envelope(body, at=at or self.clock.now(), signed=signed, key=key)
        return await self.post_raw(headers, raw)

    async def post_raw(self, headers: dict[str, str], raw: bytes) -> tuple[int, dict[str, Any]]:
        response = await self.http.post(self.adapter.settings.path, data=raw, headers=headers)
        answer = await response.json()
        await self.adapter.inbound.drain()
        return response.status, answer

    async def say(self, text: str, *, sender: str, mentions: tuple[tuple[str, str], ...] | list[tuple[str, str]] = (), bot: bool = True,
                  chat_id: str = "oc_group", chat_type: str = "group", **kw: Any) -> tuple[int, dict[str, Any]]:
        people = [("ou_bot", "协作机器人"), *mentions] if bot else list(mentions)
        prefix = "@_user_1 " if bot else ""
        return await self.post(cb.message(prefix + text, sender=sender, mentions=people, at=self.clock.now(),
                                          chat_id=chat_id, chat_type=chat_type, **kw))

    async def deliver(self) -> int:
        return await self.worker.drain()

    async def close(self) -> None:
        await self.http.close()
        await self.adapter.stop()
        self.hub.close()  # its threads end with the test
        await self.fake.close()


async def make_env(db: Database, start: datetime, *, config: Config | None = None,
                   fake: FakeFeishu | None = None, **feishu: Any) -> FeishuEnv:
    fake = fake or FakeFeishu()
    await fake.start()
    clock = ManualClock(start)
    bot = Bot(db, config or Config(), clock)
    with db.transaction() as s:
        apply_org(s, ORG, clock.now(), platform="feishu")
    hub = Hub(bot)
    raw = {"app_id": fake.app_id, "app_secret": fake.app_secret, "verification_token": cb.TOKEN,
           "encrypt_key": cb.ENCRYPT_KEY, "bot_open_id": "ou_bot", "base_url": fake.url, **feishu}
    settings = parse_settings(raw, bot.config)
    adapter = FeishuAdapter(settings, hub, client=FeishuClient(settings))
    worker = DeliveryWorker(db, {"feishu": adapter.sender}, DeliverySettings(per_platform_per_second=1000,
                                                                             per_chat_per_minute=1000), clock,
                            chat_unreachable=bot.chat_unreachable)
    hub.worker = worker
    app = Application()
    adapter.add_routes(app)
    http = TestClient(TestServer(app))
    await http.start_server()
    await adapter.start()
    return FeishuEnv(db, clock, fake, bot, hub, adapter, worker, http)
