"""The command language: text (bot mention already removed) -> a frozen `Command` or a `ParseError`.

Chinese first, with an English alias for every command. A command is its name, then free text and
fields: a field starts at one of its keywords (`负责人 @李四`, `截止=12-10`, `priority: high`) and
runs to the next keyword. People are mentions; tasks are `#12`, approvals `#A12`, help requests `#H3`.
Commands in `PAIR_COMMANDS` (an approval's form) also take generic `名称=值` pairs, whose names come
from a template in the config rather than from `FIELD_WORDS`; every other command keeps such tokens
as plain text, so nothing that parsed before parses differently.

    新建任务 活动H5开发 负责人 @李四 协作 @王五 截止 12-10 优先级 高
      -> CreateTask(title="活动H5开发", owner=0, collaborators=(1,), deadline="12-10", priority="high")
    进度 #12 60% 完成 首页 下一步 联调 问题 接口未就绪
      -> ReportProgress(task=12, percent=60, done="首页", next_step="联调", problems="接口未就绪")
    申请 市场活动预算审批 活动方案=双十二 快闪店 预算金额=5万
      -> Command(name="apply", text="市场活动预算审批", pairs=(("活动方案", "双十二 快闪店"), ("预算金额", "5万")))

Mentions arrive as markers (see `events.mention_marker`) and come out as indexes into the event's
mention list. Parsing never raises: anything unparseable becomes a `ParseError` with a hint and an
example; dates are kept as text here and parsed by the handler, which knows the time zone.
"""

from __future__ import annotations

import difflib
import re
from dataclasses import dataclass, field

from collabbot.bot.events import MENTION_CLOSE, MENTION_OPEN

MAX_COMMAND_CHARS = 4000

# name -> aliases (the first is the one shown in help)
ALIASES: dict[str, tuple[str, ...]] = {
    "bind_project": ("绑定项目", "project bind", "bind"),
    "show_project": ("项目信息", "project info", "project"),
    "create_task": ("新建任务", "创建任务", "task new", "new task"),
    "add_subtask": ("子任务", "拆分", "subtask", "split"),
    "add_dependency": ("依赖", "depend"),
    "remove_dependency": ("取消依赖", "undepend"),
    "acknowledge": ("确认收到", "收到", "ack"),
    "start_task": ("开始", "start"),
    "report_progress": ("进度", "汇报进度", "progress"),
    "finish_task": ("完成", "提交", "done", "finish"),
    "accept_task": ("通过", "验收", "accept"),
    "return_task": ("退回", "return", "send back"),
    "reassign_task": ("转交", "reassign", "transfer"),
    "comment": ("评论", "comment"),
    "ask_help": ("求助", "ask help", "ask"),
    "answer_help": ("答复", "已处理", "answer", "resolve"),
    "cancel_task": ("取消任务", "task cancel", "cancel"),
    "weekly_note": ("本周总结", "协作总结", "weekly note"),
    "my_tasks": ("我的任务", "my tasks", "tasks"),
    "show_task": ("任务", "task", "查看"),
    "waiting_on_me": ("待我处理", "待办", "todo", "inbox"),
    "help": ("帮助", "help", "?", "？"),
    "apply": ("申请", "apply"),
    "my_approvals": ("待我审批", "approvals", "my approvals"),
    "approve": ("同意", "approve"),
    "reject": ("驳回", "reject"),
    "withdraw": ("撤回", "withdraw"),
    "show_approval": ("审批", "approval"),
    "cancel_approval": ("取消审批", "approval cancel", "cancel approval"),
    "resubmit": ("重新提交", "resubmit"),
}

FIELD_WORDS: dict[str, tuple[str, ...]] = {
    "owner": ("负责人", "主负责人", "owner"),
    "collaborators": ("协作", "协作人", "协作者", "collab", "with"),
    "deadline": ("截止", "截止时间", "截止日期", "due", "deadline"),
    "priority": ("优先级", "priority"),
    "deliverable": ("交付物", "交付", "deliverable"),
    "attachments": ("附件", "链接", "attach", "link"),
    "remarks": ("备注", "note", "remarks"),
    "department": ("部门", "dept", "department"),
    "template": ("模板", "template"),
    "project": ("项目", "project"),
    "initiating_dept": ("发起部门", "initiating-dept", "from-dept"),
    "coordinator": ("协同负责人", "协调人", "coordinator"),
    "departments": ("参与部门", "departments"),
    "goal": ("目标", "goal"),
    "kpis": ("KPI", "kpi", "指标", "kpis"),
    "start": ("开始", "开始日期", "start"),
    "end": ("结束", "结束日期", "end"),
    "percent": ("完成比例", "比例", "percent"),
    "done": ("完成", "已完成", "done"),
    "next_step": ("下一步", "下一步计划", "next"),
    "problems": ("问题", "存在问题", "problems", "issues"),
    "reason": ("原因", "理由", "reason"),
}

PRIORITY_WORDS = {"高": "high", "中": "mid", "低": "low", "high": "high", "mid": "mid", "medium": "mid",
                  "low": "low", "h": "high", "m": "mid", "l": "low"}

_REF = re.compile(r"^#([AH]?)(\d{1,9})$", re.IGNORECASE)
_MARKER = re.compile(f"{MENTION_OPEN}(\\d+){MENTION_CLOSE}")
_PERCENT = re.compile(r"^(\d{1,3})[%％]$")
_URL = re.compile(r"^https?://[^\s<>\"']{1,1000}$")
# a generic pair's name: a word (CJK included) that cannot be a URL's scheme or path
PAIR_NAME = r"\w[\w\-·/]{0,29}"
_PAIR = re.compile(f"^({PAIR_NAME})[=＝](.*)$", re.DOTALL)


@dataclass(frozen=True)
class ParseError:
    """Why a text is not a command, with what to type instead."""

    reason: str  # a texts key: unknown_command, missing_field, bad_field, too_long, empty
    field: str = ""
    command: str = ""
    value: str = ""
    suggestions: tuple[str, ...] = ()


@dataclass(frozen=True)
class Command:
    """A parsed command: its name, entity refs, mentions, free text and fields (all still text)."""

    name: str
    tasks: tuple[int, ...] = ()
    approvals: tuple[int, ...] = ()
    helps: tuple[int, ...] = ()
    mentions: tuple[int, ...] = ()
    text: str = ""
    fields: dict[str, str] = field(default_factory=dict)
    field_mentions: dict[str, tuple[int, ...]] = field(default_factory=dict)
    percent: int | None = None
    links: tuple[str, ...] = ()
    raw: str = ""
    pairs: tuple[tuple[str, str], ...] = ()  # generic `名称=值` pairs, in order (PAIR_COMMANDS only)

    def get(self, name: str, default: str = "") -> str:
        return self.fields.get(name, default)


# which fields each command understands (everything else stays in its free text)
COMMAND_FIELDS: dict[str, tuple[str, ...]] = {
    "bind_project": ("initiating_dept", "coordinator", "departments", "goal", "kpis", "start", "end", "remarks"),
    "create_task": ("owner", "collaborators", "deadline", "priority", "deliverable", "attachments", "remarks",
                    "department", "template", "project", "initiating_dept"),
    "add_subtask": ("owner", "collaborators", "deadline", "priority", "deliverable", "remarks", "department"),
    "report_progress": ("percent", "done", "next_step", "problems"),
    "finish_task": ("deliverable",),
    "return_task": ("reason",),
    "reassign_task": ("reason",),
    "ask_help": ("department",),
    "reject": ("reason",),
    "cancel_approval": ("reason",),
}

# commands whose `名称=值` tokens are generic pairs (an approval template's fields)
PAIR_COMMANDS: frozenset[str] = frozenset({"apply", "resubmit"})


def _alias_table() -> list[tuple[str, str]]:
    pairs = [(alias, name) for name, aliases in ALIASES.items() for alias in aliases]
    return sorted(pairs, key=lambda p: -len(p[0]))


_ALIASES_BY_LENGTH = _alias_table()


def _match_command(text: str) -> tuple[str, str] | None:
    lowered = text.lower()
    for alias, name in _ALIASES_BY_LENGTH:
        if lowered.startswith(alias.lower()):
            rest = text[len(alias):]
            if alias.isascii() and alias[-1].isalnum() and rest and not (rest[0].isspace() or rest[0] == "#"):
                continue  # "tasks" must not match "task", "done" must not match "doneness"
            return name, rest
    return None


def suggest(text: str, limit: int = 3) -> tuple[str, ...]:
    """The commands closest to what was typed (first word, then the whole text as a fallback)."""
    first = text.split()[0] if text.split() else text
    names = [a for a, _ in _ALIASES_BY_LENGTH]
    close = difflib.get_close_matches(first, names, n=limit, cutoff=0.34)
    if not close:
        close = difflib.get_close_matches(text[:12], names, n=limit, cutoff=0.34)
    primary = []
    for alias in close:
        for _name, aliases in ALIASES.items():
            if alias in aliases and aliases[0] not in primary:
                primary.append(aliases[0])
    return tuple(primary[:limit])


def _tokens(text: str) -> list[str]:
    spaced = _MARKER.sub(lambda m: f" {m.group(0)} ", text)
    return spaced.split()


def _field_word(token: str, allowed: tuple[str, ...]) -> tuple[str, str] | None:
    """(field, inline value) when `token` starts a field: `截止`, `截止=12-10`, `截止:12-10`."""
    for name in allowed:
        for word in FIELD_WORDS[name]:
            low, wl = token.lower(), word.lower()
            if low == wl:
                return name, ""
            if low.startswith(wl) and len(token) > len(word) and token[len(word)] in "=:：":
                return name, token[len(word) + 1:]
    return None


def parse(text: str) -> Command | ParseError:
    """Parse one command; never raises."""
    text = text.strip()
    if not text:
        return ParseError("empty")
    if len(text) > MAX_COMMAND_CHARS:
        return ParseError("too_long", value=str(MAX_COMMAND_CHARS))
    matched = _match_command(text)
    if matched is None:
        return ParseError("unknown_command", value=text[:30], suggestions=suggest(text))
    name, rest = matched
    allowed = COMMAND_FIELDS.get(name, ())
    free: list[str] = []
    fields: dict[str, list[str]] = {}
    current: str | None = None
    tasks, approvals, helps, mentions, links = [], [], [], [], []
    field_mentions: dict[str, list[int]] = {}
    percent: int | None = None
    pairs: list[tuple[str, list[str]]] = []
    in_pair = False  # the tokens now being read belong to the last pair's value
    for token in _tokens(rest):
        fw = _field_word(token, allowed)
        if fw is not None and (fw[0] not in fields or fw[0] == current):
            current, in_pair = fw[0], False
            fields.setdefault(current, [])
            if fw[1]:
                fields[current].append(fw[1])
            continue
        pair = _PAIR.match(token) if name in PAIR_COMMANDS else None
        if pair is not None:
            current, in_pair = None, True
            pairs.append((pair.group(1), [pair.group(2)] if pair.group(2) else []))
            continue
        if in_pair:
            marker = _MARKER.fullmatch(token)
            if marker:
                mentions.append(int(marker.group(1)))
                continue
            if _URL.match(token):
                links.append(token)
            pairs[-1][1].append(token)
            continue
        marker = _MARKER.fullmatch(token)
        if marker:
            index = int(marker.group(1))
            if current is not None:
                field_mentions.setdefault(current, []).append(index)
            else:
                mentions.append(index)
            continue
        ref = _REF.match(token)
        if ref and current is None:
            kind, number = ref.group(1).upper(), int(ref.group(2))
            {"": tasks, "A": approvals, "H": helps}[kind].append(number)
            continue
        pct = _PERCENT.match(token)
        if pct and percent is None and current in (None, "percent"):
            percent = int(pct.group(1))
            continue
        if _URL.match(token):
            links.append(token)
        (fields[current] if current is not None else free).append(token)
    if "percent" in fields and percent is None:
        value = " ".join(fields.pop("percent")).rstrip("%％")
        if not value.isdigit():
            return ParseError("bad_field", field="percent", command=name, value=value)
        percent = int(value)
    return Command(
        name=name,
        tasks=tuple(tasks),
        approvals=tuple(approvals),
        helps=tuple(helps),
        mentions=tuple(mentions),
        text=" ".join(free).strip(),
        fields={k: " ".join(v).strip() for k, v in fields.items()},
        field_mentions={k: tuple(v) for k, v in field_mentions.items()},
        percent=percent,
        links=tuple(links),
        raw=text,
        pairs=tuple((k, " ".join(v).strip()) for k, v in pairs),
    )


def priority_of(value: str) -> str | None:
    return PRIORITY_WORDS.get(value.strip().lower())
