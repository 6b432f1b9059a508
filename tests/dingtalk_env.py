"""An in-process DingTalk setup for tests: engine + DingTalkAdapter (Stream or HTTP mode) + the fake DingTalk."""

from __future__ import annotations

import json
from dataclasses import dataclass, replace
from datetime import datetime
from typing import Any

from aiohttp.test_utils import TestClient, TestServer
from aiohttp.web import Application

from collabbot.adapters.dingtalk.adapter import DingTalkAdapter
from collabbot.adapters.dingtalk.config import parse_settings
from collabbot.adapters.hub import Hub
from collabbot.bot.app import Bot
from collabbot.bot.clock import ManualClock
from collabbot.bot.config import Config, DeliverySettings
from collabbot.bot.org import Org, OrgPerson, apply_org
from collabbot.scheduler.delivery import DeliveryWorker
from collabbot.storage.db import Database

from . import dingtalk_payloads as p
from .fake_dingtalk import FakeDingTalk
from .serve_process import free_port

ORG = Org(
    departments={"市场部": "张三", "技术部": "陈七"},
    people=(
        OrgPerson("赵总", "", "", {"dingtalk": "boss01"}),
        OrgPerson("张三", "市场部", "赵总", {"dingtalk": "zhang01"}),
        OrgPerson("陈七", "技术部", "赵总", {"dingtalk": "chen01"}),
        OrgPerson("李四", "技术部", "陈七", {"dingtalk": "li01"}),
        OrgPerson("赵六", "技术部", "陈七", {"dingtalk": "zhao01"}),
    ),
)
NAMES = {person.name: person.ids["dingtalk"] for person in ORG.people}
GROUP = "cidGroup"


@dataclass
class DingTalkEnv:
    db: Database
    clock: ManualClock
    fake: FakeDingTalk
    bot: Bot
    hub: Hub
    adapter: DingTalkAdapter
    worker: DeliveryWorker
    http: TestClient

    async def post(self, body: dict[str, Any], *, at: datetime | None = None,
                   headers: dict[str, str] | None = None) -> tuple[int, Any]:
        """An HTTP-mode callback as DingTalk sends it: a card tap by the fake, to the route the adapter
        registered and with the card signature; a robot message signed with the app secret. `headers`
        (or `at`) post the body here as given instead."""
        if headers is None and at is None and "outTrackId" in body:
            return await self.tap(body)
        headers = headers if headers is not None else p.signed_headers(self.fake.client_secret, at or self.clock.now())
        response = await self.http.post(self.adapter.settings.path, data=json.dumps(body, ensure_ascii=False).encode(),
                                        headers=headers)
        answer = await response.json()
        await self.adapter.inbound.drain()
        return response.status, answer

    async def tap(self, body: dict[str, Any]) -> tuple[int, Any]:
        """An HTTP-mode card tap as DingTalk sends it: to the registered route, with the card signature."""
        answer = await self.fake.http_card_callback(body)
        await self.adapter.inbound.drain()
        return answer

    async def deliver(self) -> int:
        return await self.worker.drain()

    async def close(self) -> None:
        await self.http.close()
        await self.adapter.stop()
        self.hub.close()  # its threads end with the test
        await self.fake.close()


async def make_env(db: Database, start: datetime, *, config: Config | None = None, fake: FakeDingTalk | None = None,
                   **dingtalk: Any) -> DingTalkEnv:
    fake = fake or FakeDingTalk()
    if not fake.url:
        await fake.start()
    clock = ManualClock(start)
    bot = Bot(db, config or Config(), clock)
    with db.transaction() as s:
        apply_org(s, ORG, clock.now(), platform="dingtalk")
    hub = Hub(bot)
    # http mode registers public_url + path for card taps: the test server's address, known before it starts
    port = free_port()
    public = replace(bot.config, reports=replace(bot.config.reports, public_url=f"http://127.0.0.1:{port}"))
    fake.wall = lambda: clock.now().timestamp()  # DingTalk's callbacks are timestamped by the same clock
    raw = {"client_id": fake.client_id, "client_secret": fake.client_secret, "card_template_id": "tpl.collabbot",
           "base_url": fake.url, "oapi_url": fake.url, "session_webhook_hosts": [fake.url], "mode": "http",
           **dingtalk}
    settings = parse_settings(raw, public)
    adapter = DingTalkAdapter(settings, hub)
    worker = DeliveryWorker(db, {"dingtalk": adapter.sender},
                            DeliverySettings(per_platform_per_second=1000, per_chat_per_minute=1000), clock,
                            chat_unreachable=bot.chat_unreachable)
    hub.worker = worker
    app = Application()
    adapter.add_routes(app)
    http = TestClient(TestServer(app, port=port))
    await http.start_server()
    await adapter.start()
    return DingTalkEnv(db, clock, fake, bot, hub, adapter, worker, http)
