"""The contract suite runs once per platform: each supplies a driver around its own fake."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import datetime

import pytest

from collabbot.storage.db import Database

from ..conftest import TZ
from .dingtalk_driver import DingTalkDriver
from .driver import Driver
from .feishu_driver import FeishuDriver
from .wecom_driver import WecomDriver

DRIVERS: dict[str, type] = {"feishu": FeishuDriver, "dingtalk": DingTalkDriver, "wecom": WecomDriver}
START = datetime(2026, 12, 1, 9, 0, tzinfo=TZ)  # a Tuesday, working time


@pytest.fixture(params=sorted(DRIVERS))
async def driver(request: pytest.FixtureRequest, sqlite_db: Database) -> AsyncIterator[Driver]:
    d = DRIVERS[request.param]()
    await d.start(sqlite_db, START)
    yield d
    await d.close()
