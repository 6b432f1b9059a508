"""`collabbot org sync`: one generic sync over every platform's contact API.

A platform supplies an `OrgSource` whose `fetch()` returns the org as the platform shows it to the
app (departments and their heads, people with their department and supervisor, each person's
platform id). `collabbot org sync` (adapters/serve.py) applies it with `apply_org(…, platform=…)`,
which matches people by their platform id, so a second run changes nothing and a rename on the
platform renames them here. A source sets `Org.complete` only when it read the whole organisation to
the end: then whoever it does not list is marked as left (a sub-tree read must not do so).
"""

from __future__ import annotations

from collections import Counter
from typing import Protocol

from collabbot.bot.org import Org

EXIT_API = 4  # `org sync`'s exit status when the platform's API failed


class OrgSource(Protocol):
    platform: str
    display_name: str  # "Feishu", for the summary line

    async def fetch(self) -> Org: ...

    async def close(self) -> None: ...


async def fetch_org(source: OrgSource) -> Org:
    """The platform's org; the source's client is closed either way (raises the kit's `ApiError`)."""
    try:
        return await source.fetch()
    finally:
        await source.close()


def unique_names(names: dict[str, str], qualifier: dict[str, str]) -> dict[str, str]:
    """id → a name unique among all: duplicates get "（qualifier）" (the department, or the parent
    department for a department), then the id's tail if still equal. Typed names must find one person."""
    counts = Counter(names.values())
    out = {k: (f"{v}（{qualifier[k]}）" if counts[v] > 1 and qualifier.get(k) else v) for k, v in names.items()}
    counts = Counter(out.values())
    return {k: (f"{v}·{k[-6:]}" if counts[v] > 1 else v) for k, v in out.items()}
