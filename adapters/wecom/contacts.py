"""The contact directory through the app: `collabbot org sync --platform wecom`, and "@名字" → userid.

Reads (the app's 通讯录 visibility):
* `department/list?id=<root>`: every department below the root, its `name`, `parentid` and
  `department_leader` (its heads, userids);
* `user/list?department_id=<id>` for each of them (it lists a department's own members): every member
  with `department`, `main_department` and `direct_leader` (直属上级), each once.

A person's supervisor is their first `direct_leader`, else the first head of their main department
who is not themselves. Names are the org's keys, so two departments or people with one name are told
apart by their department ("测试组（技术部）"). Members whose `status` is not 1 (inactive, resigned)
are left out.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import replace
from typing import Any

from collabbot.adapters.kit.orgsync import unique_names
from collabbot.adapters.wecom.client import WecomClient
from collabbot.bot.org import Org, OrgPerson

PLATFORM = "wecom"


async def fetch_org(client: WecomClient, root: int = 1) -> Org:
    departments = await client.departments(root)
    # the whole company as the app's visibility shows it: whoever it does not list has left
    return replace(build_org(departments, await client.users(departments)), complete=root == 1)


def _active(user: dict[str, Any]) -> bool:
    return bool(str(user.get("userid") or "")) and bool(str(user.get("name") or "").strip()) and \
        user.get("status", 1) in (1, "1")


def directory(users: list[dict[str, Any]]) -> dict[str, str]:
    """Display name → userid for names that belong to exactly one active member."""
    active = [u for u in users if _active(u)]
    counts = Counter(str(u["name"]).strip() for u in active)
    return {str(u["name"]).strip(): str(u["userid"]) for u in active if counts[str(u["name"]).strip()] == 1}



def build_org(departments: list[dict[str, Any]], users: list[dict[str, Any]]) -> Org:
    depts = {str(d.get("id")): d for d in departments if str(d.get("name") or "").strip() and d.get("id") is not None}
    dept_names = unique_names({k: str(d["name"]).strip()[:60] for k, d in depts.items()},
                              {k: str(depts[str(d.get("parentid"))]["name"]).strip() for k, d in depts.items()
                               if str(d.get("parentid")) in depts})
    members = {str(u["userid"]): u for u in users if _active(u)}
    home: dict[str, str] = {}
    for userid, u in members.items():
        ids = [str(i) for i in (u.get("department") or [])]
        main = str(u.get("main_department") or "")
        home[userid] = main if main in depts else next((i for i in ids if i in depts), "")
    names = unique_names({k: str(u["name"]).strip()[:60] for k, u in members.items()},
                         {k: dept_names.get(home[k], "") for k in members})

    def heads(dept_id: str) -> list[str]:
        leaders = depts.get(dept_id, {}).get("department_leader") or []
        return [str(x) for x in leaders if str(x) in members]

    people = []
    for userid, u in members.items():
        leaders = [str(x) for x in (u.get("direct_leader") or []) if str(x) in members and str(x) != userid]
        if not leaders:
            leaders = [x for x in heads(home[userid]) if x != userid]
        people.append(OrgPerson(name=names[userid], department=dept_names.get(home[userid], ""),
                                supervisor=names[leaders[0]] if leaders else "", ids={PLATFORM: userid}))
    departments_out = {}
    for dept_id, name in dept_names.items():
        leaders = heads(dept_id)
        departments_out[name] = names[leaders[0]] if leaders else ""
    return Org(departments_out, tuple(people), department_ids={name: d for d, name in dept_names.items()})
