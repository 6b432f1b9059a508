"""An in-process WeCom setup for tests: engine + WecomAdapter (robot long connection to the fake, the app
callback behind a real aiohttp server) + the fake WeCom."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from aiohttp.test_utils import TestClient, TestServer
from aiohttp.web import Application
from sqlalchemy import func, select

from collabbot.adapters.hub import Hub
from collabbot.adapters.wecom.adapter import WecomAdapter
from collabbot.adapters.wecom.config import parse_settings
from collabbot.bot.app import Bot
from collabbot.bot.clock import ManualClock
from collabbot.bot.config import Config, DeliverySettings
from collabbot.bot.org import Org, OrgPerson, apply_org
from collabbot.scheduler.delivery import DeliveryWorker
from collabbot.scheduler.limits import Limit
from collabbot.storage.db import Database

from . import fake_wecom as fw

ORG = Org(
    departments={"市场部": "张三", "技术部": "陈七"},
    people=(
        OrgPerson("赵总", "", "", {"wecom": "zhaozong"}),
        OrgPerson("张三", "市场部", "赵总", {"wecom": "zhangsan"}),
        OrgPerson("陈七", "技术部", "赵总", {"wecom": "chenqi"}),
        OrgPerson("李四", "技术部", "陈七", {"wecom": "lisi"}),
        OrgPerson("赵六", "技术部", "陈七", {"wecom": "zhaoliu"}),
    ),
)
DEPARTMENTS = [
    {"id": 1, "name": "公司", "parentid": 0, "department_leader": ["zhaozong"]},
    {"id": 2, "name": "市场部", "parentid": 1, "department_leader": ["zhangsan"]},
    {"id": 3, "name": "技术部", "parentid": 1, "department_leader": ["chenqi"]},
]
USERS = [
    {"userid": "zhaozong", "name": "赵总", "department": [1], "main_department": 1, "direct_leader": [], "status": 1},
    {"userid": "zhangsan", "name": "张三", "department": [2], "main_department": 2, "direct_leader": ["zhaozong"],
     "status": 1},
    {"userid": "chenqi", "name": "陈七", "department": [3], "main_department": 3, "direct_leader": ["zhaozong"],
     "status": 1},
    {"userid": "lisi", "name": "李四", "department": [3], "main_department": 3, "direct_leader": [], "status": 1},
    {"userid": "zhaoliu", "name": "赵六", "department": [3], "main_department": 3, "direct_leader": ["chenqi"],
     "status": 1},
    {"userid": "gone", "name": "离职者", "department": [3], "main_department": 3, "direct_leader": [], "status": 5},
]
def count(db: Database, model: Any) -> int:
    with db.transaction() as s:
        return s.scalar(select(func.count()).select_from(model)) or 0


TIME_SCALE = 0.01  # the fake's windows and our declared limits, both 100 times shorter: a burst takes milliseconds
SCALED_LIMITS = (Limit("chat", 30, 60.0 * TIME_SCALE), Limit("chat", 1000, 3600.0 * TIME_SCALE),
                 Limit("user", 30, 60.0 * TIME_SCALE), Limit("user", 1000, 3600.0 * TIME_SCALE))


def settings_raw(fake: fw.FakeWecom, **overrides: Any) -> dict[str, Any]:
    return {"corp_id": fw.CORP_ID, "agent_id": fw.AGENT_ID, "app_secret": fw.APP_SECRET, "app_token": fw.APP_TOKEN,
            "app_encoding_aes_key": fw.APP_AES_KEY, "bot_id": fw.BOT_ID, "bot_secret": fw.BOT_SECRET,
            "bot_name": "协作机器人", "base_url": fake.url, "ws_url": fake.ws_url, "heartbeat_seconds": 0.2,
            "watchdog_seconds": 1.0, "takeover_seconds": 0.2, **overrides}


@dataclass
class WecomEnv:
    db: Database
    clock: ManualClock
    fake: fw.FakeWecom
    bot: Bot
    hub: Hub
    adapter: WecomAdapter
    worker: DeliveryWorker
    http: TestClient

    async def post_app(self, query: str, body: bytes) -> tuple[int, str]:
        response = await self.http.post(f"{self.adapter.settings.app_path}?{query}", data=body,
                                         headers={"Content-Type": "text/xml"})
        text = await response.text()
        await self.adapter.inbound.drain()
        return response.status, text

    async def app_says(self, xml: str, *, at: datetime | None = None, **kw: Any) -> tuple[int, str]:
        query, body = fw.app_envelope(xml, at=(at or self.clock.now()).timestamp(), **kw)
        return await self.post_app(query, body)

    async def robot_says(self, text: str, *, userid: str, chatid: str = "", msgid: str = "") -> None:
        """A message over the robot's long connection: as documented, with no create_time."""
        await self.fake.say(text, userid=userid, chatid=chatid, msgid=msgid)
        await self.settle()

    async def settle(self) -> None:
        """Wait until the frames the fake pushed have been handled."""
        import asyncio

        for _ in range(3):
            await asyncio.sleep(0.02)
            assert self.adapter.robot is not None
            await self.adapter.robot.drain()
            await self.adapter.inbound.drain()

    async def deliver(self) -> int:
        return await self.worker.drain()

    async def stop(self) -> None:
        """This process goes away (the fake WeCom and the database stay)."""
        await self.http.close()
        await self.adapter.stop()
        self.hub.close()

    async def restart(self, **wecom: Any) -> WecomEnv:
        """Stop, then a new process: new engine, hub, adapter and worker on the same database and fake WeCom."""
        await self.stop()
        return await make_env(self.db, self.clock.now(), config=self.bot.config, fake=self.fake, **wecom)

    async def close(self) -> None:
        await self.http.close()
        await self.adapter.stop()
        await self.fake.close()


async def make_env(db: Database, start: datetime, *, config: Config | None = None, fake: fw.FakeWecom | None = None,
                   limits: tuple[Limit, ...] = SCALED_LIMITS, **wecom: Any) -> WecomEnv:
    import asyncio

    fake = fake or fw.FakeWecom(time_scale=TIME_SCALE, users=USERS, departments=DEPARTMENTS)
    if fake.runner is None:
        await fake.start()
    clock = ManualClock(start)
    bot = Bot(db, config or Config(), clock)
    with db.transaction() as s:
        apply_org(s, ORG, clock.now(), platform="wecom")
    hub = Hub(bot)
    settings = parse_settings(settings_raw(fake, **wecom), bot.config)
    adapter = WecomAdapter(settings, hub, limits=limits)
    # windows 100 times shorter, but a burst of 30 sends still takes its real milliseconds to go out (the manual
    # clock cannot see them): a wider margin than the 5 % that covers a real 60 s window
    worker = DeliveryWorker(db, {"wecom": adapter.sender}, DeliverySettings(per_platform_per_second=1000,
                                                                            per_chat_per_minute=1000,
                                                                            limit_margin=0.5), clock,
                            chat_unreachable=bot.chat_unreachable)
    hub.worker = worker
    app = Application()
    adapter.add_routes(app)
    http = TestClient(TestServer(app))
    await http.start_server()
    await adapter.start()
    if adapter.robot is not None:
        await asyncio.wait_for(adapter.robot.connected.wait(), 10)
    return WecomEnv(db, clock, fake, bot, hub, adapter, worker, http)
