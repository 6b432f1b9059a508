"""`collabbot org sync` for Feishu: departments, people, department heads and supervisors from 通讯录.

Reads (tenant token, contact scope of the app's 通讯录权限范围):
* `GET /open-apis/contact/v3/departments/:id` for a configured root other than "0" (a sub-tree,
  `{data: {department}}`): the root department itself is one of the org's, with its members and head;
* `GET /open-apis/contact/v3/departments/:id/children?fetch_child=true` from the configured root
  ("0" = the whole tenant), paged (`has_more` / `page_token`, page_size ≤ 50): each department's
  name and `leader_user_id` (its head);
* `GET /open-apis/contact/v3/users/find_by_department` for the root and every department, paged:
  each person's open_id, name, `department_ids` and `leader_user_id` (their supervisor, 直属上级).

It builds an `Org`, which the kit's generic org sync applies (people matched by their open_id). The org's
keys are names, so two departments or two people with the same name are told apart with their
department path ("测试组（技术部）") rather than one silently replacing the other. Resigned people are left
out. Group chats are not synced: the bot learns them when it is added to one or @mentioned there.

A sub-tree sync sees only part of the company: a supervisor or head who is outside it is not known to
have changed, so it is given as None ("not known here": keep what is stored), never as "" (none),
which would clear it. "" stays for nobody, for a resigned leader, and for a leader missing from a
whole-tenant sync.
"""

from __future__ import annotations

import logging
from collections.abc import Collection
from dataclasses import dataclass, replace
from typing import Any

from collabbot.adapters.feishu.client import FeishuClient
from collabbot.adapters.kit.orgsync import unique_names
from collabbot.bot.org import Org, OrgPerson

log = logging.getLogger(__name__)

PLATFORM = "feishu"
DEPARTMENT = "/open-apis/contact/v3/departments/{}"
DEPARTMENTS = "/open-apis/contact/v3/departments/{}/children"
WHOLE_TENANT = "0"
USERS = "/open-apis/contact/v3/users/find_by_department"


@dataclass(frozen=True)
class _Dept:
    id: str
    name: str
    parent: str
    leader: str


def _dept(item: dict[str, Any]) -> _Dept | None:
    dept_id = str(item.get("open_department_id") or item.get("department_id") or "")
    name = str(item.get("name") or "").strip()
    if not dept_id or not name:
        return None
    return _Dept(dept_id, name, str(item.get("parent_department_id") or ""), str(item.get("leader_user_id") or ""))


async def fetch_org(client: FeishuClient, root: str = WHOLE_TENANT) -> Org:
    """The tenant's org as Feishu's contact API shows it to the app: `root` and everything below it."""
    ids = {"department_id_type": "open_department_id", "user_id_type": "open_id"}
    depts: dict[str, _Dept] = {}
    if root != WHOLE_TENANT:  # the children list leaves the root out, though its own people belong to it
        answer = await client.call("GET", DEPARTMENT.format(root), params=ids)
        found = (answer.get("data") or {}).get("department")
        if isinstance(found, dict) and (top := _dept(found)) is not None:
            depts[root] = replace(top, id=root)
    async for item in client.pages(DEPARTMENTS.format(root), {**ids, "fetch_child": "true"}):
        if (dept := _dept(item)) is not None:
            depts[dept.id] = dept
    people: dict[str, dict[str, Any]] = {}
    resigned: set[str] = set()
    for dept_id in [root, *(d for d in depts if d != root)]:
        async for user in client.pages(USERS, {"department_id": dept_id, **ids}):
            open_id = str(user.get("open_id") or "")
            status = user.get("status") if isinstance(user.get("status"), dict) else {}
            if open_id and status.get("is_resigned"):
                resigned.add(open_id)
            elif open_id and str(user.get("name") or "").strip():
                people.setdefault(open_id, user)
    org = build_org(list(depts.values()), list(people.values()),
                    partial=root != WHOLE_TENANT, resigned=resigned - set(people))
    # the whole tenant, to its last page: whoever it does not list has left (a sub-tree says nothing of the rest)
    return replace(org, complete=root == WHOLE_TENANT)



def build_org(depts: list[_Dept], users: list[dict[str, Any]], *, partial: bool = False,
              resigned: Collection[str] = ()) -> Org:
    """`partial`: the org of a sub-tree, so a leader not among `users` (nor `resigned`) is outside it."""
    by_id = {d.id: d for d in depts}
    dept_names = unique_names({d.id: d.name for d in depts},
                              {d.id: by_id[d.parent].name for d in depts if d.parent in by_id})
    user_names = {str(u["open_id"]): str(u["name"]).strip()[:60] for u in users}
    home: dict[str, str] = {}
    for u in users:
        ids = [i for i in (u.get("department_ids") or []) if i in by_id]
        home[str(u["open_id"])] = ids[0] if ids else ""
    person_names = unique_names(user_names, {k: dept_names.get(v, "") for k, v in home.items()})

    def named(leader: str, of: str = "") -> str | None:
        if leader in person_names and leader != of:
            return person_names[leader]
        return None if partial and leader and leader != of and leader not in resigned else ""

    people = []
    for u in users:
        open_id = str(u["open_id"])
        people.append(OrgPerson(
            name=person_names[open_id],
            department=dept_names.get(home[open_id], ""),
            supervisor=named(str(u.get("leader_user_id") or ""), of=open_id),
            ids={PLATFORM: open_id},
        ))
    departments = {dept_names[d.id]: named(d.leader) for d in depts}
    return Org(departments, tuple(people), department_ids={name: d for d, name in dept_names.items()})
