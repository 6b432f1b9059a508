"""The org: departments, their heads, people, their supervisors, and group chats with members.

An org comes from a TOML file (the console and small deployments) or from a platform's contact
API (`collabbot org sync`); either way it is applied with `apply_org`, idempotently, returning the
list of changes it made for the log. People are matched by their platform identity, so renaming
someone on the platform renames them here. A complete org (`Org.complete`) also says who has gone:
whoever it no longer lists has left (`User.left_at`), is no longer chased or given work, and is named
in the changes with what they still hold; their name stays on their past work.

A file's unknown key is refused with its line: a typo such as `departmnet = "技术部"` would otherwise
read as "no department" and quietly take the person out of theirs.
"""

from __future__ import annotations

import re
import tomllib
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from sqlalchemy import and_, func, or_, select
from sqlalchemy.orm import Session

from collabbot.bot.refs import entity_ref
from collabbot.bot.rules.states import OPEN
from collabbot.storage.models import Chat, Department, Identity, Project, Task, User, Wait

CONSOLE = "console"


class OrgError(ValueError):
    pass


@dataclass(frozen=True)
class OrgPerson:
    name: str
    department: str = ""
    supervisor: str | None = ""  # the supervisor's name (分管领导); None: outside what was read, kept as stored
    ids: dict[str, str] = field(default_factory=dict)  # platform -> platform user id


@dataclass(frozen=True)
class OrgChat:
    name: str
    members: tuple[str, ...] = ()
    platform: str = CONSOLE
    chat_id: str = ""


@dataclass(frozen=True)
class Org:
    departments: dict[str, str | None]  # name -> head's name ("" when none; None: outside the read, kept)
    people: tuple[OrgPerson, ...]
    chats: tuple[OrgChat, ...] = ()
    # lists everyone of its platform: whoever it leaves out has left. An org file is the whole console org;
    # a platform's read is complete only when it read the whole organisation to the end (not a sub-tree)
    complete: bool = False
    department_ids: dict[str, str] = field(default_factory=dict)  # name -> the platform's department id

    def person(self, name: str) -> OrgPerson | None:
        return next((p for p in self.people if p.name == name), None)

    def chat(self, name: str) -> OrgChat | None:
        return next((c for c in self.chats if c.name == name), None)


# the keys each part of an org file may have
KNOWN_KEYS: dict[str, frozenset[str]] = {
    "": frozenset({"departments", "people", "chats"}),
    "departments": frozenset({"name", "head"}),
    "people": frozenset({"name", "department", "supervisor", "ids"}),
    "chats": frozenset({"name", "members", "platform", "chat_id"}),
}
_HEADER = re.compile(r"^\s*\[\[?\s*([A-Za-z0-9_.\-\"' ]+?)\s*\]\]?\s*(?:#.*)?$")


def _line_of(source: str, table: str, index: int | None, key: str) -> int | None:
    """The line (1-based) of `key` in a TOML text: at the top level (`table` ""), or in the `index`-th
    `[[table]]` entry; None when it is written some other way (inline tables, dotted keys)."""
    assignment = re.compile(rf"^\s*[\"']?{re.escape(key)}[\"']?\s*=")
    current, seen = "", -1
    for number, line in enumerate(source.splitlines(), 1):
        header = _HEADER.match(line)
        if header:
            name = header.group(1).strip()
            if not table and name.split(".")[0] == key:
                return number
            if line.lstrip().startswith("[[") and name == table:
                seen += 1
            current = name
            continue
        in_place = (current == "" if not table else (current == table and seen == index))
        if in_place and assignment.match(line):
            return number
    return None


def _check_keys(data: dict[str, Any], source: str | None) -> None:
    """Refuse keys the org format does not have, by line when the text is at hand."""
    def refuse(where: str, table: str, index: int | None, key: str, known: frozenset[str]) -> None:
        line = _line_of(source, table, index, key) if source is not None else None
        at = f"line {line}: " if line is not None else ""
        raise OrgError(f"{at}{where}unknown key {key!r} (known: {', '.join(sorted(known))})")

    for key in data:
        if key not in KNOWN_KEYS[""]:
            refuse("", "", None, key, KNOWN_KEYS[""])
    for table in ("departments", "people", "chats"):
        entries = data.get(table, [])
        if not isinstance(entries, list):
            raise OrgError(f"{table}: must be a list of tables ([[{table}]])")
        for i, entry in enumerate(entries):
            if not isinstance(entry, dict):
                continue  # parse_org says what is wrong with it
            for key in entry:
                if key not in KNOWN_KEYS[table]:
                    name = entry.get("name")
                    label = f" ({name})" if isinstance(name, str) else ""
                    refuse(f"{table}[{i}]{label}: ", table, i, key, KNOWN_KEYS[table])


def parse_org(data: dict[str, Any], source: str | None = None) -> Org:
    """Validate an org document; errors name the entry that is wrong (and its line, given the text)."""
    _check_keys(data, source)
    departments: dict[str, str] = {}
    for i, d in enumerate(data.get("departments", [])):
        if not isinstance(d, dict) or not isinstance(d.get("name"), str) or not d["name"].strip():
            raise OrgError(f"departments[{i}]: needs a name")
        if d["name"].strip() in departments:
            raise OrgError(f"departments[{i}] ({d['name'].strip()}): listed twice; list each department once")
        departments[d["name"].strip()] = str(d.get("head", "")).strip()
    people: list[OrgPerson] = []
    for i, p in enumerate(data.get("people", [])):
        if not isinstance(p, dict) or not isinstance(p.get("name"), str) or not p["name"].strip():
            raise OrgError(f"people[{i}]: needs a name")
        dept = str(p.get("department", "")).strip()
        if dept and dept not in departments:
            raise OrgError(f"people[{i}] ({p['name']}): unknown department {dept!r}")
        ids = p.get("ids", {})
        if not isinstance(ids, dict) or not all(isinstance(v, str) for v in ids.values()):
            raise OrgError(f"people[{i}] ({p['name']}): ids must be a table of strings")
        people.append(OrgPerson(p["name"].strip(), dept, str(p.get("supervisor", "")).strip(), dict(ids)))
    names = {p.name for p in people}
    if len(names) != len(people):
        twice = next(n for n in names if sum(1 for p in people if p.name == n) > 1)
        raise OrgError(f"people ({twice}): listed twice; names must be unique in an org file")
    for p in people:
        if p.supervisor and p.supervisor not in names:
            raise OrgError(f"people ({p.name}): unknown supervisor {p.supervisor!r}")
    _no_supervisor_cycle({p.name: p.supervisor for p in people if p.supervisor})
    for dept, head in departments.items():
        if head and head not in names:
            raise OrgError(f"departments ({dept}): unknown head {head!r}")
    chats: list[OrgChat] = []
    for i, c in enumerate(data.get("chats", [])):
        if not isinstance(c, dict) or not isinstance(c.get("name"), str):
            raise OrgError(f"chats[{i}]: needs a name")
        members = tuple(c.get("members", []))
        unknown = [m for m in members if m not in names]
        if unknown:
            raise OrgError(f"chats[{i}] ({c['name']}): unknown members {unknown}")
        chats.append(OrgChat(c["name"], members, str(c.get("platform", CONSOLE)), str(c.get("chat_id", ""))))
    return Org(departments, tuple(people), tuple(chats), complete=True)


def _no_supervisor_cycle(supervisor_of: dict[str, str]) -> None:
    """A chain of supervisors that comes back to where it began is a typo: escalations would go round it."""
    for start in supervisor_of:
        chain, name = [start], supervisor_of[start]
        while name in supervisor_of and name not in chain:
            chain.append(name)
            name = supervisor_of[name]
        if name == start:
            what = "is their own supervisor" if len(chain) == 1 else \
                "supervisors go round: " + " → ".join([*chain, start])
            raise OrgError(f"people ({start}): {what}")


def load_org_file(path: str | Path) -> Org:
    try:
        source = Path(path).read_text(encoding="utf-8")
        data = tomllib.loads(source)
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError) as exc:
        raise OrgError(f"cannot read org file {path}: {exc}") from None
    try:
        return parse_org(data, source)
    except OrgError as exc:
        raise OrgError(f"{path}: {exc}") from None


def apply_org(s: Session, org: Org, now: datetime, platform: str = CONSOLE) -> list[str]:
    """Make the tables match `org` for `platform`'s identities; returns what changed."""
    changes: list[str] = []
    depts = {name: _department(s, name, org.department_ids.get(name), platform, changes) for name in org.departments}
    s.flush()
    users: dict[str, User] = {}
    for person in org.people:
        pid = person.ids.get(platform) or (person.name if platform == CONSOLE else "")
        identity = s.scalar(select(Identity).where(Identity.platform == platform, Identity.platform_user_id == pid))
        known = _listed_identities(s, person, platform)
        owners = {i.user_id for i in known} | ({identity.user_id} if identity is not None else set())
        if len(owners) > 1:
            shown = ", ".join(f"{i.platform}:{i.platform_user_id}" for i in known)
            changes.append(f"person not linked: {person.name} — {platform}:{pid} and {shown} are already "
                           f"different people; they stay apart")
        if identity is None:
            if known:  # listed under an id a platform sync already met: that person, not a copy
                user = known[0].user
                changes.append(f"person linked: {person.name} ({platform}:{pid})")
            else:
                user = User(name=person.name, created_at=now)
                s.add(user)
                s.flush()
                changes.append(f"person added: {person.name}")
            s.add(Identity(platform=platform, platform_user_id=pid, user_id=user.id))
        else:
            user = identity.user
            if user.name != person.name:
                changes.append(f"person renamed: {user.name} -> {person.name}")
                user.name = person.name
        for other, other_id in person.ids.items():
            if other != platform and other_id and not any(i.platform == other for i in known):
                s.add(Identity(platform=other, platform_user_id=other_id, user_id=user.id))
        dept_id = depts[person.department].id if person.department else None
        if user.department_id != dept_id:
            user.department_id = dept_id
            changes.append(f"department of {person.name}: {person.department or '-'}")
        users[person.name] = user
    s.flush()
    for person in org.people:
        if person.supervisor is None:  # a sub-tree's read cannot see above it: what is stored stays
            continue
        sup_id = users[person.supervisor].id if person.supervisor else None
        if users[person.name].supervisor_id != sup_id:
            users[person.name].supervisor_id = sup_id
            changes.append(f"supervisor of {person.name}: {person.supervisor or '-'}")
    for name, head in org.departments.items():
        if head is None:
            continue
        head_id = users[head].id if head else None
        if depts[name].head_id != head_id:
            depts[name].head_id = head_id
            changes.append(f"head of {name}: {head or '-'}")
    for c in org.chats:
        chat_id = c.chat_id or c.name
        chat = s.scalar(select(Chat).where(Chat.platform == c.platform, Chat.platform_chat_id == chat_id))
        if chat is None:
            s.add(Chat(platform=c.platform, platform_chat_id=chat_id, name=c.name, active=True))
            changes.append(f"chat added: {c.name}")
    s.flush()
    if org.complete and org.people:  # an empty read is a fault of the read, not everyone leaving at once
        listed = {p.ids.get(platform) or (p.name if platform == CONSOLE else "") for p in org.people}
        changes += _leavers_and_returns(s, platform, listed, now)
        changes += _departments_gone(s, platform, {d.id for d in depts.values()})
    return changes


def _department(s: Session, name: str, dept_id: str | None, platform: str, changes: list[str]) -> Department:
    """The department row for `name`, found by the platform's id of it (a rename on the platform renames the
    row) or else by name (a row from an org file or an older sync, which then gets the id)."""
    key = f"{platform}:{dept_id}" if dept_id else None
    dept = s.scalar(select(Department).where(Department.platform_id == key)) if key else None
    if dept is not None:
        if dept.name != name:
            if s.scalar(select(Department.id).where(Department.name == name)) is None:
                changes.append(f"department renamed: {dept.name} -> {name}")
                dept.name = name
            else:
                changes.append(f"department not renamed: {dept.name} -> {name} (a department of that name exists)")
        return dept
    dept = s.scalar(select(Department).where(Department.name == name))
    if dept is None:
        dept = Department(name=name, platform_id=key)
        s.add(dept)
        changes.append(f"department added: {name}")
    elif key and dept.platform_id is None:
        dept.platform_id = key
    return dept


def _departments_gone(s: Session, platform: str, kept: set[int]) -> list[str]:
    """A complete read of `platform` no longer lists these departments of it: they have no head any more
    (an approval or escalation must not wait on one), and the admin learns who still belongs to them."""
    changes = []
    gone = s.scalars(select(Department).where(Department.platform_id.like(f"{platform}:%"), Department.id.not_in(kept),
                                              Department.head_id.is_not(None)).order_by(Department.id))
    for dept in gone:
        dept.head_id = None
        members = s.scalar(select(func.count()).select_from(User).where(User.department_id == dept.id,
                                                                        User.left_at.is_(None)))
        changes.append(f"department gone: {dept.name} — head cleared; {members} member(s) still listed in it")
    return changes


def _listed_identities(s: Session, person: OrgPerson, platform: str) -> list[Identity]:
    """The identities `person` lists on platforms other than `platform` that are already someone's."""
    wanted = [(p, i) for p, i in person.ids.items() if p != platform and i]
    if not wanted:
        return []
    return list(s.scalars(select(Identity).where(or_(*(and_(Identity.platform == p, Identity.platform_user_id == i)
                                                        for p, i in wanted))).order_by(Identity.id)))


def _leavers_and_returns(s: Session, platform: str, listed: set[str], now: datetime) -> list[str]:
    """Mark `platform`'s identities a complete sync left out as gone and the listed ones as here; a person
    has left once every identity they have is gone (someone with a console identity from an org file that
    still lists them stays), and is back when any is listed again."""
    touched: dict[int, User] = {}
    for identity in s.scalars(select(Identity).where(Identity.platform == platform).order_by(Identity.id)):
        gone = identity.platform_user_id not in listed
        if gone != (identity.left_at is not None):
            identity.left_at = now if gone else None
            touched[identity.user_id] = identity.user
    s.flush()
    changes: list[str] = []
    for user in touched.values():
        gone = all(i.left_at is not None for i in user.identities)
        if gone and user.left_at is None:
            user.left_at = now
            _hand_up_now(s, user, now)
            changes.append(f"person left: {user.name} — {open_items(s, user)}")
        elif not gone and user.left_at is not None:
            user.left_at = None
            changes.append(f"person back: {user.name}")
    s.flush()
    return changes


def _hand_up_now(s: Session, user: User, now: datetime) -> None:
    """Their open waits fall due now: the next sweep sends each to their escalation target at once, rather
    than nagging someone who is gone and escalating after 24 hours."""
    for wait in s.scalars(select(Wait).where(Wait.person_id == user.id, Wait.answered_at.is_(None),
                                             Wait.escalated_at.is_(None))):
        wait.next_due_at = now


def open_items(s: Session, user: User) -> str:
    """What a person who left still holds, by number, for the admin to hand on (转交): the tasks they own,
    the reviews (tasks handed in to them), their approval steps and other requests waiting on them."""
    tasks = s.scalars(select(Task.id).where(Task.owner_id == user.id, Task.status.in_(OPEN)).order_by(Task.id)).all()
    coordinated = select(Project.id).where(Project.coordinator_id == user.id)
    reviews = s.scalars(select(Task.id).where(Task.status == "review", (Task.initiator_id == user.id)
                                              | Task.project_id.in_(coordinated)).order_by(Task.id)).all()
    waits = s.execute(select(Wait.entity_type, Wait.entity_id).where(
        Wait.person_id == user.id, Wait.answered_at.is_(None), Wait.entity_type != "task")
        .order_by(Wait.entity_type, Wait.entity_id)).all()
    approvals = [entity_ref(kind, i) for kind, i in dict.fromkeys(waits) if kind == "approval"]
    others = [entity_ref(kind, i) for kind, i in dict.fromkeys(waits) if kind != "approval"]
    parts = [(label, ids) for label, ids in (
        ("task(s)", [f"#{i}" for i in tasks]), ("review(s)", [f"#{i}" for i in reviews]),
        ("approval step(s)", approvals), ("other request(s)", others)) if ids]
    if not parts:
        return "nothing open"
    return "open: " + "; ".join(f"{len(ids)} {label} {' '.join(ids)}" for label, ids in parts)
