"""`collabbot org sync --platform dingtalk`: departments, heads, people and supervisors from 通讯录.

Through the topapi contact endpoints (the app needs 通讯录 read permissions), from the configured root
department (1 = the whole organisation):
* `/topapi/v2/department/get` {dept_id} of a root other than 1 (a sub-tree): the root department itself
  is one of the org's, with its members and head (listsub lists only what is below it);
* `/topapi/v2/department/listsub` {dept_id}: the child departments, walked breadth first;
* `/topapi/v2/department/get` {dept_id}: each department's `dept_manager_userid_list` (its head);
* `/topapi/user/listid` {dept_id}: the userids in each department;
* `/topapi/v2/user/get` {userid}: name, `dept_id_list` and `manager_userid` (the supervisor).

People are keyed by userid (staffId), the id robot messages carry and the send APIs take. Names that
repeat are told apart as the Feishu sync does (department in brackets, then the id's tail).

A sub-tree sync sees only part of the organisation: a supervisor or head outside it is given as None
("not known here": keep what is stored), never as "" (none), which would clear it; "" stays for
nobody, for an inactive leader, and for a leader missing from a whole-organisation sync.
"""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import replace
from typing import Any

from collabbot.adapters.dingtalk.client import DingTalkClient
from collabbot.adapters.kit.orgsync import unique_names
from collabbot.bot.org import Org, OrgPerson

PLATFORM = "dingtalk"
MAX_DEPARTMENTS = 5000
WHOLE_ORGANISATION = 1
DEPARTMENT = "/topapi/v2/department/get"


def _result(answer: dict[str, Any]) -> Any:
    return answer.get("result")


async def fetch_org(client: DingTalkClient, root: int = WHOLE_ORGANISATION) -> Org:
    departments: dict[int, dict[str, Any]] = {}
    details: dict[int, dict[str, Any]] = {}
    if root != WHOLE_ORGANISATION:  # listsub leaves the root out, though its own people belong to it
        top = _result(await client.topapi(DEPARTMENT, {"dept_id": root}))
        if isinstance(top, dict):
            departments[root] = details[root] = dict(top, dept_id=root)
    frontier = [root]
    while frontier and len(departments) < MAX_DEPARTMENTS:
        parent = frontier.pop(0)
        children = _result(await client.topapi("/topapi/v2/department/listsub", {"dept_id": parent})) or []
        for child in children:
            if isinstance(child, dict) and isinstance(child.get("dept_id"), int) and child["dept_id"] not in departments:
                departments[child["dept_id"]] = dict(child)
                frontier.append(child["dept_id"])
    heads: dict[int, str] = {}
    for dept_id in departments:
        detail = details.get(dept_id) or _result(await client.topapi(DEPARTMENT, {"dept_id": dept_id})) or {}
        managers = detail.get("dept_manager_userid_list") if isinstance(detail, dict) else None
        if isinstance(managers, list) and managers:
            heads[dept_id] = str(managers[0])
    user_ids: list[str] = []
    for dept_id in [root, *(d for d in departments if d != root)]:
        listed = _result(await client.topapi("/topapi/user/listid", {"dept_id": dept_id})) or {}
        for uid in listed.get("userid_list") or [] if isinstance(listed, dict) else []:
            if str(uid) not in user_ids:
                user_ids.append(str(uid))
    users, inactive = [], set()
    for uid in user_ids:
        user = _result(await client.topapi("/topapi/v2/user/get", {"userid": uid, "language": "zh_CN"}))
        if isinstance(user, dict) and user.get("active", True) is False:
            inactive.add(uid)
        elif isinstance(user, dict) and str(user.get("name") or "").strip():
            users.append(user)
    org = build_org(departments, heads, users, partial=root != WHOLE_ORGANISATION, inactive=inactive)
    # the whole organisation, every department read: whoever it does not list has left
    return replace(org, complete=root == 1 and not frontier)



def build_org(departments: dict[int, dict[str, Any]], heads: dict[int, str], users: list[dict[str, Any]], *,
              partial: bool = False, inactive: Collection[str] = ()) -> Org:
    """`partial`: the org of a sub-tree, so a leader not among `users` (nor `inactive`) is outside it."""
    dept_names = unique_names({str(d): str(v.get("name") or "").strip()[:60] or str(d) for d, v in departments.items()},
                              {str(d): str(departments.get(v.get("parent_id"), {}).get("name") or "")
                               for d, v in departments.items()})
    home = {}
    for u in users:
        ids = [str(i) for i in u.get("dept_id_list") or [] if str(i) in dept_names]
        home[str(u["userid"])] = ids[0] if ids else ""
    person_names = unique_names({str(u["userid"]): str(u["name"]).strip()[:60] for u in users},
                                {k: dept_names.get(v, "") for k, v in home.items()})

    def named(leader: str, of: str = "") -> str | None:
        if leader in person_names and leader != of:
            return person_names[leader]
        return None if partial and leader and leader != of and leader not in inactive else ""

    people = []
    for u in users:
        uid = str(u["userid"])
        people.append(OrgPerson(name=person_names[uid], department=dept_names.get(home[uid], ""),
                                supervisor=named(str(u.get("manager_userid") or ""), of=uid), ids={PLATFORM: uid}))
    heads_by_name = {dept_names[str(d)]: named(heads.get(d, "")) for d in departments}
    return Org(heads_by_name, tuple(people), department_ids={name: d for d, name in dept_names.items()})
