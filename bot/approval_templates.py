"""Approval templates: which form an approval asks for and which stages decide it, read from the config.

A deployment lists its own `[[approval_templates]]` (and maps roles such as 运营总监 to people under
`[approval_roles]`); with none listed, the built-in templates below are used, so the console demo
works out of the box. `config.example.toml` carries the same text, and a test keeps the two equal.

Stage kinds, each deciding who approves when the stage starts:

* `dept_head` — the initiator's department head (部门负责人初审);
* `countersign` — 会签: the heads of every department involved, all of whom must approve. "Involved"
  is the departments named in the request's `departments_field` when it was filled in, otherwise the
  participating departments (参与部门) of the project the request was filed in;
* `any_of` — 或签: any one of `people` (names, or roles from `[approval_roles]`);
* `person` / `role` — one named person, or the person a role is mapped to (最终审批人, e.g. 运营总监);
* `task_initiator` — the initiator of the task an extension is asked for (延期申请 only).

`on_self` says what happens to an approver who is the initiator or already approved earlier in this
round: `skip` (the default: their approval is taken as given, a stage left with nobody is skipped) or
`keep` (they decide again). `on_reject`: `end` (the default) or `return_to_initiator`, who may amend
the form and resubmit (the flow then starts again from the first stage).

Template kinds: `general`; `resource` (an approved request offers 一键转任务, a task for the head of
the department named in `receiving_department_field`); `extension` (raised on a task by its owner;
when approved, the task's deadline becomes the `deadline_field` date).

This module validates the config (raising `ConfigError` naming the key) and reads typed field values
from text; it touches no database.
"""

from __future__ import annotations

import re
import tomllib
from dataclasses import dataclass, replace
from datetime import datetime
from decimal import Decimal, InvalidOperation
from functools import cache
from typing import Any, Protocol

from collabbot.bot.commands import PAIR_NAME
from collabbot.bot.dates import parse_when
from collabbot.bot.errors import ConfigError
from collabbot.bot.identities import OrgIdentities

FIELD_TYPES = ("text", "number", "money", "date", "choice", "link")
STAGE_KINDS = ("dept_head", "countersign", "any_of", "person", "role", "task_initiator")
TEMPLATE_KINDS = ("general", "resource", "extension")
MAX_TEXT_VALUE = 2000
MAX_NAME = 50

_FIELD_NAME = re.compile(f"^{PAIR_NAME}$")
_URL = re.compile(r"^https?://[^\s<>\"']{1,1000}$")
_MONEY = re.compile(r"^(\d+(?:\.\d+)?)(万|w|千|k)?$", re.IGNORECASE)


@dataclass(frozen=True)
class FieldSpec:
    name: str
    type: str = "text"
    required: bool = True
    choices: tuple[str, ...] = ()


@dataclass(frozen=True)
class StageSpec:
    name: str
    kind: str
    on_self: str = "skip"
    departments_field: str = ""  # countersign: the field that names the departments involved
    people: tuple[str, ...] = ()  # any_of / person / role: each person as configured (a name or platform:id)
    role: str = ""  # role: the role's name, for the card
    # each person's platform identities (parallel to `people`), resolved at load: approvers are matched by
    # these, never by a display name; () for a built-in's name the org file does not list
    identities: tuple[tuple[str, ...], ...] = ()

    @property
    def mode(self) -> str:
        """"any": one approval completes the stage (或签); "all": every approver must approve."""
        return "any" if self.kind == "any_of" else "all"


@dataclass(frozen=True)
class ApprovalTemplate:
    name: str
    fields: tuple[FieldSpec, ...]
    stages: tuple[StageSpec, ...]
    kind: str = "general"
    on_reject: str = "end"
    receiving_department_field: str = ""
    deadline_field: str = ""

    def field(self, name: str) -> FieldSpec | None:
        return next((f for f in self.fields if f.name == name), None)


BUILTIN_TOML = """
[approval_roles]
"运营总监" = "赵总"
"技术总监" = "钱总"

[[approval_templates]]
name = "市场活动预算审批"
on_reject = "return_to_initiator"
fields = [
  { name = "活动方案", type = "text" },
  { name = "预算金额", type = "money" },
  { name = "预算明细", type = "text" },
  { name = "预期效果", type = "text" },
  { name = "方案链接", type = "link", required = false },
  { name = "协作部门", type = "text", required = false },
]
stages = [
  { name = "初审", kind = "dept_head" },
  { name = "会签", kind = "countersign", departments_field = "协作部门" },
  { name = "最终审批", kind = "role", role = "运营总监" },
]

[[approval_templates]]
name = "人力支持申请"
kind = "resource"
receiving_department_field = "支持部门"
fields = [
  { name = "支持部门", type = "text" },
  { name = "人数", type = "number" },
  { name = "技能要求", type = "text" },
  { name = "支持时间", type = "text" },
  { name = "用途", type = "text" },
]
stages = [
  { name = "初审", kind = "dept_head" },
  { name = "支持部门审批", kind = "countersign", departments_field = "支持部门" },
]

[[approval_templates]]
name = "设备/数据资源申请"
kind = "resource"
receiving_department_field = "提供部门"
fields = [
  { name = "资源类型", type = "choice", choices = ["设备", "数据", "账号", "其他"] },
  { name = "数量", type = "number" },
  { name = "用途", type = "text" },
  { name = "时限", type = "date" },
  { name = "提供部门", type = "text" },
]
stages = [
  { name = "初审", kind = "dept_head" },
  { name = "提供部门审批", kind = "countersign", departments_field = "提供部门" },
  { name = "分管领导审批", kind = "any_of", people = ["技术总监", "运营总监"] },
]

[[approval_templates]]
name = "延期申请"
kind = "extension"
deadline_field = "新截止日期"
fields = [
  { name = "新截止日期", type = "date" },
  { name = "原因", type = "text" },
  { name = "补救措施", type = "text" },
]
stages = [
  { name = "任务发起人审批", kind = "task_initiator" },
]
"""


# --- reading the config -------------------------------------------------------------------------

def _table(value: Any, key: str) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise ConfigError(key, "must be a table")
    return value


def _str(data: dict[str, Any], name: str, key: str, default: str | None = None,
         choices: tuple[str, ...] = ()) -> str:
    if name not in data:
        if default is None:
            raise ConfigError(f"{key}.{name}", "is required")
        return default
    value = data[name]
    if not isinstance(value, str) or not value.strip():
        raise ConfigError(f"{key}.{name}", f"must be a non-empty string, not {value!r}")
    if choices and value not in choices:
        raise ConfigError(f"{key}.{name}", f"must be one of {', '.join(choices)}, not {value!r}")
    return value.strip()


def _no_unknown(data: dict[str, Any], known: set[str], key: str) -> None:
    unknown = sorted(set(data) - known)
    if unknown:
        raise ConfigError(f"{key}.{unknown[0]}", "unknown key (see config.example.toml)")


def _field(data: Any, key: str) -> FieldSpec:
    data = _table(data, key)
    _no_unknown(data, {"name", "type", "required", "choices"}, key)
    name = _str(data, "name", key)
    if not _FIELD_NAME.match(name):
        raise ConfigError(f"{key}.name", "must be one word (letters, digits, - · /; at most 30) so it can be typed as 名称=值")
    kind = _str(data, "type", key, "text", FIELD_TYPES)
    required = data.get("required", True)
    if not isinstance(required, bool):
        raise ConfigError(f"{key}.required", "must be true or false")
    choices = data.get("choices", [])
    if not isinstance(choices, list) or not all(isinstance(c, str) and c.strip() for c in choices):
        raise ConfigError(f"{key}.choices", "must be a list of strings")
    if kind == "choice" and not choices:
        raise ConfigError(f"{key}.choices", "is required for a choice field")
    if kind != "choice" and choices:
        raise ConfigError(f"{key}.choices", "is only for a choice field")
    return FieldSpec(name, kind, required, tuple(c.strip() for c in choices))


def _stage(data: Any, key: str, roles: dict[str, str], fields: dict[str, FieldSpec], template_kind: str) -> StageSpec:
    data = _table(data, key)
    _no_unknown(data, {"name", "kind", "on_self", "departments_field", "people", "person", "role"}, key)
    name = _str(data, "name", key)
    if len(name) > MAX_NAME:
        raise ConfigError(f"{key}.name", f"must be at most {MAX_NAME} characters")
    kind = _str(data, "kind", key, None, STAGE_KINDS)
    on_self = _str(data, "on_self", key, "skip", ("skip", "keep"))
    allowed = {"dept_head": set(), "countersign": {"departments_field"}, "any_of": {"people"},
               "person": {"person"}, "role": {"role"}, "task_initiator": set()}[kind]
    extra = sorted({"departments_field", "people", "person", "role"} & set(data) - allowed)
    if extra:
        raise ConfigError(f"{key}.{extra[0]}", f"does not apply to a {kind} stage")
    if kind == "task_initiator" and template_kind != "extension":
        raise ConfigError(f"{key}.kind", "task_initiator is only for an extension template")
    departments_field = ""
    if kind == "countersign" and "departments_field" in data:
        departments_field = _str(data, "departments_field", key)
        if departments_field not in fields:
            raise ConfigError(f"{key}.departments_field", f"names no field of this template: {departments_field!r}")
    people: tuple[str, ...] = ()
    role = ""
    if kind == "any_of":
        names = data.get("people")
        if not isinstance(names, list) or not names or not all(isinstance(n, str) and n.strip() for n in names):
            raise ConfigError(f"{key}.people", "must be a non-empty list of names or roles")
        people = tuple(dict.fromkeys(roles.get(n.strip(), n.strip()) for n in names))
    elif kind == "person":
        people = (_str(data, "person", key),)
    elif kind == "role":
        role = _str(data, "role", key)
        if role not in roles:
            raise ConfigError(f"{key}.role", f"unknown role {role!r}: map it to a person under [approval_roles]")
        people = (roles[role],)
    return StageSpec(name, kind, on_self, departments_field, people, role)


def _template(data: Any, key: str, roles: dict[str, str]) -> ApprovalTemplate:
    data = _table(data, key)
    _no_unknown(data, {"name", "kind", "on_reject", "fields", "stages", "receiving_department_field",
                       "deadline_field"}, key)
    name = _str(data, "name", key)
    if len(name) > MAX_NAME or any(ch.isspace() for ch in name):
        raise ConfigError(f"{key}.name", f"must be one word of at most {MAX_NAME} characters (it is typed after 申请)")
    kind = _str(data, "kind", key, "general", TEMPLATE_KINDS)
    on_reject = _str(data, "on_reject", key, "end", ("end", "return_to_initiator"))
    raw_fields = data.get("fields", [])
    if not isinstance(raw_fields, list):
        raise ConfigError(f"{key}.fields", "must be an array of tables")
    fields = [_field(f, f"{key}.fields[{i}]") for i, f in enumerate(raw_fields)]
    by_name: dict[str, FieldSpec] = {}
    for i, f in enumerate(fields):
        if f.name in by_name:
            raise ConfigError(f"{key}.fields[{i}].name", f"two fields are named {f.name!r}")
        by_name[f.name] = f
    raw_stages = data.get("stages")
    if not isinstance(raw_stages, list) or not raw_stages:
        raise ConfigError(f"{key}.stages", "must list at least one stage")
    stages = tuple(_stage(st, f"{key}.stages[{i}]", roles, by_name, kind) for i, st in enumerate(raw_stages))
    receiving = deadline = ""
    if kind == "resource":
        receiving = _str(data, "receiving_department_field", key)
        if receiving not in by_name:
            raise ConfigError(f"{key}.receiving_department_field", f"names no field of this template: {receiving!r}")
    elif "receiving_department_field" in data:
        raise ConfigError(f"{key}.receiving_department_field", "is only for a resource template")
    if kind == "extension":
        deadline = _str(data, "deadline_field", key)
        if deadline not in by_name or by_name[deadline].type != "date" or not by_name[deadline].required:
            raise ConfigError(f"{key}.deadline_field", "must name a required date field of this template")
    elif "deadline_field" in data:
        raise ConfigError(f"{key}.deadline_field", "is only for an extension template")
    return ApprovalTemplate(name, tuple(fields), stages, kind, on_reject, receiving, deadline)


def _roles(value: Any) -> dict[str, str]:
    roles = _table(value, "approval_roles")
    for role, person in roles.items():
        if not isinstance(person, str) or not person.strip():
            raise ConfigError(f"approval_roles.{role}", "must be a person's name or platform:id")
    return {role: person.strip() for role, person in roles.items()}


def _with_identities(template: ApprovalTemplate, index: int, people: OrgIdentities, strict: set[str] | None,
                     role_keys: dict[str, str]) -> ApprovalTemplate:
    """Each stage's people resolved to identities. `strict`: the entries that must resolve (None: all);
    the others (a built-in's names) may match nobody and are refused when a request needs them."""
    stages = []
    for j, stage in enumerate(template.stages):
        if not stage.people:
            stages.append(stage)
            continue
        field = {"any_of": "people", "person": "person", "role": "role"}[stage.kind]
        ids = tuple(people.ids(p, role_keys.get(p) or f"approval_templates[{index}].stages[{j}].{field}",
                               unknown_ok=strict is not None and p not in strict) for p in stage.people)
        stages.append(replace(stage, identities=ids))
    return replace(template, stages=tuple(stages))


def parse_approval_templates(items: Any, roles: Any = None,
                             people: OrgIdentities | None = None) -> tuple[ApprovalTemplate, ...]:
    """The configured templates; with none listed, the built-ins (their roles overridable by `roles`).

    Approvers are resolved to platform identities through `people` (the demo org when None): a name
    the org file does not list, or lists twice, is refused here, one line naming the key — except the
    built-ins' own names, which a deployment with its own org may simply not use.
    """
    mapping = _roles({} if roles is None else roles)
    configured = dict(mapping)
    if not isinstance(items, list):
        raise ConfigError("approval_templates", "must be an array of tables ([[approval_templates]])")
    builtin = not items
    if builtin:
        defaults = tomllib.loads(BUILTIN_TOML)
        items, mapping = defaults["approval_templates"], {**defaults["approval_roles"], **mapping}
    templates = tuple(_template(item, f"approval_templates[{i}]", mapping) for i, item in enumerate(items))
    names = [t.name for t in templates]
    for i, name in enumerate(names):
        if name in names[:i]:
            raise ConfigError(f"approval_templates[{i}].name", f"two templates are named {name!r}")
    people = people or OrgIdentities("")
    strict = set(configured.values()) if builtin else None
    role_keys = {person: f"approval_roles.{role}" for role, person in configured.items()}
    return tuple(_with_identities(t, i, people, strict, role_keys) for i, t in enumerate(templates))


@cache
def builtin_templates() -> tuple[ApprovalTemplate, ...]:
    return parse_approval_templates([])


class HasTemplates(Protocol):
    """What `templates_of` reads of the config (so this module need not import the config's)."""

    @property
    def approval_templates(self) -> tuple[ApprovalTemplate, ...]: ...


def templates_of(config: HasTemplates) -> tuple[ApprovalTemplate, ...]:
    """What `申请` offers: the config's templates, or the built-ins when it lists none."""
    return tuple(config.approval_templates) or builtin_templates()


def extension_form(config: HasTemplates, task_id: int) -> dict[str, str] | None:
    """What an owner types after 申请 to ask for task `task_id`'s extension, as the configured extension
    template reads, for a text's {form} {fields} ("延期申请 #12", "新截止日期=… 原因=… 补救措施=…"); None
    when no template is for extensions."""
    template = next((t for t in templates_of(config) if t.kind == "extension"), None)
    if template is None:
        return None
    return {"form": f"{template.name} #{task_id}", "fields": " ".join(f"{f.name}=…" for f in template.fields)}


def find_template(templates: tuple[ApprovalTemplate, ...], text: str) -> ApprovalTemplate | None:
    """The template named `text`, or the only one whose name contains it (申请 延期 → 延期申请)."""
    text = text.strip()
    exact = next((t for t in templates if t.name == text), None)
    if exact is not None or not text:
        return exact
    partial = [t for t in templates if text in t.name]
    return partial[0] if len(partial) == 1 else None


# --- typed values -------------------------------------------------------------------------------

def parse_value(spec: FieldSpec, raw: str, now: datetime) -> str | None:
    """The value to store for what was typed, or None when it is not a valid value of the field's type.

    Stored forms: text and links as typed, numbers and money as plain decimals ("50000"), dates as
    ISO datetimes in the zone of `now`, choices as the choice.
    """
    raw = raw.strip()
    if not raw:
        return None
    if spec.type == "text":
        return raw if len(raw) <= MAX_TEXT_VALUE else None
    if spec.type == "link":
        return raw if _URL.match(raw) else None
    if spec.type == "choice":
        return raw if raw in spec.choices else None
    if spec.type == "date":
        when = parse_when(raw, now)
        return when.isoformat() if when is not None else None
    if spec.type == "number":
        return _decimal(raw.replace(",", "").replace("，", ""))
    cleaned = raw.replace(",", "").replace("，", "").lstrip("¥￥").removesuffix("元").strip()
    m = _MONEY.match(cleaned)
    if m is None:
        return None
    unit = (m.group(2) or "").lower()
    factor = {"万": 10000, "w": 10000, "千": 1000, "k": 1000}.get(unit, 1)
    return _decimal(str(Decimal(m.group(1)) * factor))


def _decimal(text: str) -> str | None:
    try:
        value = Decimal(text)
    except InvalidOperation:
        return None
    if not value.is_finite() or value < 0 or value > Decimal(10) ** 15:
        return None
    normal = value.normalize()
    return f"{normal:f}"


def display_value(spec: FieldSpec | None, stored: str, fmt: Any) -> str:
    """A stored value as people read it: money as ¥50,000, dates through `fmt` (the reader's zone)."""
    if spec is None:
        return stored
    if spec.type == "money":
        try:
            amount = Decimal(stored)
        except InvalidOperation:
            return stored
        return f"¥{amount:,.2f}".removesuffix(".00")
    if spec.type == "date":
        try:
            return fmt(datetime.fromisoformat(stored))
        except ValueError:
            return stored
    return stored


def example_value(spec: FieldSpec) -> str:
    return {"text": "…", "number": "2", "money": "5万", "date": "12-15", "link": "https://…"}.get(
        spec.type, spec.choices[0] if spec.choices else "…")


# --- templates the engine files itself -----------------------------------------------------------

SIGNOFF_TEMPLATE = "协同目标确认函"
SIGNOFF_TOML = """
[[approval_templates]]
name = "协同目标确认函"
fields = [
  { name = "目标", type = "text", required = false },
  { name = "KPI", type = "text", required = false },
  { name = "范围", type = "text", required = false },
  { name = "参与部门", type = "text" },
]
stages = [
  { name = "部门确认", kind = "countersign", departments_field = "参与部门" },
]
"""


@cache
def system_templates() -> tuple[ApprovalTemplate, ...]:
    """Flows the engine starts itself, never offered by 申请: the project sign-off (协同目标确认函), a 会签 of the
    participating departments' heads on the project's goal, KPIs and scope."""
    return parse_approval_templates(tomllib.loads(SIGNOFF_TOML)["approval_templates"])
