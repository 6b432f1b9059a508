"""`collabbot org sync`: one generic sync over every platform's contact API.

A platform supplies an `OrgSource` whose `fetch()` returns the org as the platform shows it to the
app (departments and their heads, people with their department and supervisor, each person's
platform id). The sync applies it with `apply_org(…, platform=…)`, which matches people by their
platform id, so a second run changes nothing and a rename on the platform renames them here.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Protocol

from collabbot.adapters.kit.client import ApiError
from collabbot.bot.clock import SystemClock
from collabbot.bot.config import Config
from collabbot.bot.org import Org, apply_org
from collabbot.storage.db import Database
from collabbot.storage.migrate import upgrade

log = logging.getLogger(__name__)

EXIT_API = 4


class OrgSource(Protocol):
    platform: str
    display_name: str  # "Feishu", for the summary line

    async def fetch(self) -> Org: ...

    async def close(self) -> None: ...


def sync_org(config: Config, source: OrgSource) -> int:
    """Fetch and apply; 0 when applied (changed or not), EXIT_API when the platform failed."""

    async def fetch() -> Org:
        try:
            return await source.fetch()
        finally:
            await source.close()

    try:
        org = asyncio.run(fetch())
    except ApiError as exc:
        log.error("%s org sync failed: %s", source.platform, exc)
        print(f"{source.platform} org sync failed: {exc}")
        return EXIT_API
    db = Database(config.database_url)
    try:
        upgrade(db.engine)
        with db.transaction() as s:
            changes = apply_org(s, org, SystemClock().now(), platform=source.platform)
    finally:
        db.dispose()
    for change in changes:
        log.info("org: %s", change)
        print(change)
    print(f"{len(org.departments)} department(s), {len(org.people)} people from {source.display_name}; "
          f"{len(changes)} change(s)")
    return 0
