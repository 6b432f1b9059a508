"""`collabbot org sync` for Feishu: departments, people, department heads and supervisors from 通讯录.

Reads (tenant token, contact scope of the app's 通讯录权限范围):
* `GET /open-apis/contact/v3/departments/:id/children?fetch_child=true` from the configured root
  ("0" = the whole tenant), paged (`has_more` / `page_token`, page_size ≤ 50): each department's
  name and `leader_user_id` (its head);
* `GET /open-apis/contact/v3/users/find_by_department` for the root and every department, paged:
  each person's open_id, name, `department_ids` and `leader_user_id` (their supervisor, 直属上级).

It builds an `Org`, which the kit's generic org sync applies (people matched by their open_id). The org's
keys are names, so two departments or two people with the same name are told apart with their
department path ("测试组（技术部）") rather than one silently replacing the other. Resigned people are left
out. Group chats are not synced: the bot learns them when it is added to one or @mentioned there.
"""

from __future__ import annotations

import logging
from collections import Counter
from dataclasses import dataclass
from typing import Any

from collabbot.adapters.feishu.client import FeishuClient
from collabbot.bot.org import Org, OrgPerson

log = logging.getLogger(__name__)

PLATFORM = "feishu"
DEPARTMENTS = "/open-apis/contact/v3/departments/{}/children"
USERS = "/open-apis/contact/v3/users/find_by_department"


@dataclass(frozen=True)
class _Dept:
    id: str
    name: str
    parent: str
    leader: str


async def fetch_org(client: FeishuClient, root: str = "0") -> Org:
    """The tenant's org as Feishu's contact API shows it to the app."""
    depts: dict[str, _Dept] = {}
    async for item in client.pages(DEPARTMENTS.format(root), {"department_id_type": "open_department_id",
                                                               "user_id_type": "open_id", "fetch_child": "true"}):
        dept_id = str(item.get("open_department_id") or item.get("department_id") or "")
        name = str(item.get("name") or "").strip()
        if dept_id and name:
            depts[dept_id] = _Dept(dept_id, name, str(item.get("parent_department_id") or ""),
                                   str(item.get("leader_user_id") or ""))
    people: dict[str, dict[str, Any]] = {}
    for dept_id in [root, *depts]:
        async for user in client.pages(USERS, {"department_id": dept_id, "department_id_type": "open_department_id",
                                               "user_id_type": "open_id"}):
            open_id = str(user.get("open_id") or "")
            status = user.get("status") if isinstance(user.get("status"), dict) else {}
            if open_id and str(user.get("name") or "").strip() and not status.get("is_resigned"):
                people.setdefault(open_id, user)
    return build_org(list(depts.values()), list(people.values()))


def _unique(names: dict[str, str], qualifier: dict[str, str]) -> dict[str, str]:
    """id → a name unique among all: duplicates get "（qualifier）", then the id's tail if still equal."""
    counts = Counter(names.values())
    out = {k: (f"{v}（{qualifier[k]}）" if counts[v] > 1 and qualifier.get(k) else v) for k, v in names.items()}
    counts = Counter(out.values())
    return {k: (f"{v}·{k[-6:]}" if counts[v] > 1 else v) for k, v in out.items()}


def build_org(depts: list[_Dept], users: list[dict[str, Any]]) -> Org:
    by_id = {d.id: d for d in depts}
    dept_names = _unique({d.id: d.name for d in depts},
                         {d.id: by_id[d.parent].name for d in depts if d.parent in by_id})
    user_names = {str(u["open_id"]): str(u["name"]).strip()[:60] for u in users}
    home: dict[str, str] = {}
    for u in users:
        ids = [i for i in (u.get("department_ids") or []) if i in by_id]
        home[str(u["open_id"])] = ids[0] if ids else ""
    person_names = _unique(user_names, {k: dept_names.get(v, "") for k, v in home.items()})
    people = []
    for u in users:
        open_id = str(u["open_id"])
        leader = str(u.get("leader_user_id") or "")
        people.append(OrgPerson(
            name=person_names[open_id],
            department=dept_names.get(home[open_id], ""),
            supervisor=person_names.get(leader, "") if leader != open_id else "",
            ids={PLATFORM: open_id},
        ))
    departments = {dept_names[d.id]: person_names.get(d.leader, "") for d in depts}
    return Org(departments, tuple(people))
