"""The command language: text (bot mention already removed) -> a frozen `Command` or a `ParseError`.

Chinese first, with an English alias for every command, optionally after a `/`. A command is its
name, then free text and fields: a field starts at one of its keywords where that cannot cut free
text (`负责人 @李四`, `截止=12-10`, `priority: high`; the rules are `parse`'s), quotes keep text whole.
People are mentions; tasks are `#12`, approvals `#A12`, help requests `#H3`.
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
from datetime import UTC, datetime

from collabbot.bot.dates import parse_held_at, parse_when
from collabbot.bot.events import MENTION_CLOSE, MENTION_OPEN, show_markers

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
    "set_deadline": ("截止", "设截止", "due", "set due"),
    "comment": ("评论", "comment"),
    "ask_help": ("求助", "ask help", "ask"),
    "answer_help": ("答复", "已处理", "answer", "resolve"),
    "cancel_task": ("取消任务", "task cancel", "cancel"),
    "weekly_note": ("本周总结", "协作总结", "weekly note"),
    "my_tasks": ("我的任务", "my tasks", "tasks"),
    "show_task": ("任务", "task", "查看"),
    "audit_log": ("操作记录", "log"),
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
    "report": ("报表", "report"),
    "export_report": ("导出", "export"),
    "list_tasks": ("任务列表", "任务清单", "tasks all", "task list"),
    "urgent": ("紧急", "紧急事务", "urgent"),
    "risk": ("风险", "risk"),
    "minutes": ("会议纪要", "minutes"),
    "show_meeting": ("会议", "meeting"),
    "milestone": ("里程碑", "milestone"),
    "close_project": ("结项", "项目结项", "close project", "project close"),
    "retrospective": ("复盘", "retrospective", "retro"),
    "search_archive": ("查找", "搜索", "search", "find"),
    "collect": ("收集", "信息收集", "collect"),
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
    "status": ("状态", "status"),
    "page": ("页", "页码", "page"),
    "collab_depts": ("协作部门", "with-depts", "collab-depts"),
    "likelihood": ("可能性", "概率", "likelihood"),
    "impact": ("影响", "影响程度", "impact"),
    "response": ("应对", "应对措施", "response"),
    "topic": ("主题", "topic"),
    "held_at": ("时间", "会议时间", "held"),
    "summary": ("摘要", "summary"),
    "decisions": ("决议", "决定", "decisions"),
    "attendees": ("参会", "参会人", "参会人员", "与会", "与会人员", "出席", "attendees"),
    "scope": ("范围", "项目范围", "scope"),
}

# Chinese punctuation between fields, as people type them: `新建任务 海报，负责人：@李四，截止：周五` (a
# comma before a field word, then a colon or a space, is a break between words)
_CJK_FIELD_WORDS = sorted({w for words in FIELD_WORDS.values() for w in words if not w.isascii()}, key=len, reverse=True)
_FIELD_COMMA = re.compile("[，、；;](?=\\s*(?:" + "|".join(map(re.escape, _CJK_FIELD_WORDS)) + ")[:：\\s])")


PRIORITY_WORDS = {"高": "high", "中": "mid", "低": "low", "high": "high", "mid": "mid", "medium": "mid",
                  "low": "low", "h": "high", "m": "mid", "l": "low"}

_REF = re.compile(r"^#([AH]?)(\d{1,9})$", re.IGNORECASE)
# a project record's number (risk, meeting, collection, milestone, project): its handler reads it from the
# text, but like any reference it ends free text, so a field may follow it (`风险 更新 #R1 应对 …`)
_RECORD_REF = re.compile(r"^#(?:MS|[RMCP])\d{1,9}$", re.IGNORECASE)
_MARKER = re.compile(f"{MENTION_OPEN}(\\d+){MENTION_CLOSE}")
_PERCENT = re.compile(r"^(\d{1,3})[%％]$")
_LEADING_MENTIONS = re.compile(f"(?:\\s*{MENTION_OPEN}\\d+{MENTION_CLOSE})+\\s*")
_SPACED_PERCENT = re.compile(r"(?<![\w.])(\d{1,3})\s+[%％](?!\S)")  # 40 % -> 40%
_URL = re.compile(r"^https?://[^\s<>\"']{1,1000}$")
# a generic pair's name: a word (CJK included) that cannot be a URL's scheme or path
PAIR_NAME = r"\w[\w\-·/]{0,29}"
_PAIR = re.compile(f"^({PAIR_NAME})[=＝：](.*)$", re.DOTALL)  # 预算金额=5万, 预算金额：5万 (not ":": https://…)


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
    # the free text with its mentions where they were typed (markers): a comment or an answer keeps
    # "找 @王五 要" whole (`Ctx.with_names`), where `text` has them taken out as people
    spoken: str = ""

    def get(self, name: str, default: str = "") -> str:
        return self.fields.get(name, default)


# which fields each command understands (everything else stays in its free text)
COMMAND_FIELDS: dict[str, tuple[str, ...]] = {
    "bind_project": ("initiating_dept", "coordinator", "departments", "goal", "kpis", "start", "end", "remarks",
                     "scope"),
    "create_task": ("owner", "collaborators", "deadline", "priority", "deliverable", "attachments", "remarks",
                    "department", "template", "project", "initiating_dept"),
    "add_subtask": ("owner", "collaborators", "deadline", "priority", "deliverable", "remarks", "department"),
    "report_progress": ("percent", "done", "next_step", "problems"),
    "finish_task": ("deliverable",),
    "return_task": ("reason",),
    "reassign_task": ("reason",),
    "cancel_task": ("reason",),
    "ask_help": ("department",),
    "reject": ("reason",),
    "cancel_approval": ("reason",),
    "list_tasks": ("status", "department", "page", "project"),
    "urgent": ("owner", "collaborators", "deadline", "collab_depts", "project"),
    "risk": ("likelihood", "impact", "response", "owner", "project"),
    "minutes": ("topic", "held_at", "attendees", "departments", "summary", "decisions", "project"),
    "milestone": ("deadline", "project"),
    "collect": ("deadline", "project"),
    "close_project": ("project",),
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
            if alias.isascii() and alias[-1].isalnum() and rest and not (rest[0].isspace() or rest[0] in "#:："):
                continue  # "tasks" must not match "task", "done" must not match "doneness"
            return name, rest[1:] if rest[:1] in (":", "：") else rest
    return None


def typed_alias(raw: str) -> str:
    """The command word as the person typed it (`确认收到`, `ack`), for an example in their words."""
    text = _strip_slash(raw.strip())
    matched = _match_command(text)
    return text[:len(text) - len(matched[1])].strip().rstrip(":：") if matched else ""


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


# --- words, quotes and mentions -----------------------------------------------------------------

# opening quote -> closing quote: what is quoted is one piece of text, whatever words it holds
QUOTES = {"「": "」", "『": "』", '"': '"', "'": "'", "“": "”", "‘": "’", "＂": "＂", "＇": "＇"}
_ASSIGN = "=:：＝"  # `截止=12-10`, `负责人：@李四`: the unambiguous way to start any field
SLASHES = "/／"


@dataclass(frozen=True)
class _Token:
    text: str
    quoted: bool = False  # quoted text: never a field word, a reference, a percent or a link
    marker: int | None = None  # a mention's index


def _quoted_end(s: str, i: int) -> int | None:
    """Where the quote opening at `s[i]` closes (its index), if the close ends a word; else None."""
    close = s.find(QUOTES[s[i]], i + 1)
    if close == -1 or (close + 1 < len(s) and not s[close + 1].isspace()):
        return None
    return close


def _scan(s: str, out: list[_Token]) -> None:
    """Words of `s` (no markers in it): split at whitespace, except inside quotes. A quote counts only
    where it opens a word (or follows a field's `=`/`：`) and closes one; `评审「双十二」方案` keeps its
    brackets, `「设计 交付 流程」` is one piece of text."""
    i, n = 0, len(s)
    while i < n:
        if s[i].isspace():
            i += 1
            continue
        if s[i] in QUOTES and (close := _quoted_end(s, i)) is not None:
            out.append(_Token(s[i + 1:close], quoted=True))
            i = close + 1
            continue
        j = i
        while j < n and not s[j].isspace():
            j += 1
        word = s[i:j]
        for k, ch in enumerate(word[:-1]):
            if ch in _ASSIGN and word[k + 1] in QUOTES and (close := _quoted_end(s, i + k + 1)) is not None:
                out.append(_Token(word[:k + 1]))
                out.append(_Token(s[i + k + 2:close], quoted=True))
                j = close + 1
                break
        else:
            out.append(_Token(word))
        i = j


def _tokens(text: str) -> list[_Token]:
    out: list[_Token] = []
    pos = 0
    for m in _MARKER.finditer(text):
        _scan(text[pos:m.start()], out)
        out.append(_Token(m.group(0), marker=int(m.group(1))))
        pos = m.end()
    _scan(text[pos:], out)
    return out


# --- fields ---------------------------------------------------------------------------------------

# What a field's value looks like. A field word followed by such a value starts the field; the text
# fields (TEXT below) take any words, so their word alone is ambiguous in the middle of free text.
PERSON, DATE, PRIORITY, NUMBER, LINK, TEXT = "person", "date", "priority", "number", "link", "text"
FIELD_TYPES: dict[str, str] = {
    "owner": PERSON, "collaborators": PERSON, "coordinator": PERSON,
    "deadline": DATE, "start": DATE, "end": DATE,
    "priority": PRIORITY, "percent": NUMBER, "attachments": LINK,
    "page": NUMBER, "likelihood": PRIORITY, "impact": PRIORITY, "held_at": DATE,
}
# fields whose value names a thing (a department, a status, a project, a template): an @mention after one
# is the command's own, never part of the name
NAME_FIELDS = frozenset({"department", "status", "project", "template", "initiating_dept"})
_NUMBER = re.compile(r"^\d{1,3}[%％]?$")
# what people type when they mean a date, parseable or not (`13-45`, `下周八`): the handler then refuses
# it clearly instead of it vanishing into the title
_DATE_ATTEMPT = re.compile(r"^(?:[0-9０-９]|今天|今日|明天|明日|后天|大后天|昨天|昨日|前天|月底|月末|年底|下个?月"
                           r"|凌晨|早上|早晨|上午|中午|下午|傍晚|晚上"
                           r"|(?:下个?|本|这|上)?(?:周|星期|礼拜)[一二三四五六七八九十日天末0-9])")
_ANY_DAY = datetime(2026, 6, 15, 12, 0, tzinfo=UTC)  # dates are only recognised here, read by the handler


# a priority as people type it, known or not (`超高`, `P0`, `urgent`): refused clearly by the handler
_PRIORITY_ATTEMPT = re.compile(r"^(?:\S{0,2}[高中低急]\S{0,2}|[pP]\d|urgent|highest|lowest|normal|critical)$", re.IGNORECASE)


def _looks_like_date(words: list[str]) -> bool:
    """A date (and time) at the start of `words`, or a typed attempt at one."""
    if not words:
        return False
    if _DATE_ATTEMPT.match(words[0]):
        return True
    return any(parse_when(" ".join(words[:n]), _ANY_DAY) is not None for n in (1, 2, 3) if n <= len(words))


def _is_value(kind: str, tokens: list[_Token], i: int) -> bool:
    """Whether `tokens[i:]` begins with a value of a typed field of `kind`."""
    if i >= len(tokens):
        return False
    tok = tokens[i]
    if kind == PERSON:
        return tok.marker is not None
    if tok.marker is not None or tok.quoted:
        return False
    if kind == DATE:
        words: list[str] = []
        for t in tokens[i:i + 3]:
            if t.marker is not None or t.quoted:
                break
            words.append(t.text)
        return _looks_like_date(words)
    if kind == PRIORITY:
        return tok.text.lower() in PRIORITY_WORDS or bool(_PRIORITY_ATTEMPT.search(tok.text))
    if kind == NUMBER:
        return bool(_NUMBER.match(tok.text))
    if kind == LINK:
        return bool(_URL.match(tok.text))
    return False


def _field_word(token: _Token, allowed: tuple[str, ...]) -> tuple[str, str, bool] | None:
    """(field, inline value, assigned) when `token` is a field word: `截止` or `截止=12-10`, `截止：`."""
    if token.quoted or token.marker is not None:
        return None
    low = token.text.lower()
    for name in allowed:
        for word in FIELD_WORDS[name]:
            wl = word.lower()
            if low == wl:
                return name, "", False
            if low.startswith(wl) and len(low) > len(wl) and low[len(wl)] in _ASSIGN:
                return name, token.text[len(word) + 1:], True
    return None


def _typed_starts(tokens: list[_Token], allowed: tuple[str, ...]) -> list[bool]:
    """Which tokens start a field whatever comes before them: a field word with `=`/`：`, or the word of
    a typed field followed by a value of its type (`截止 12-10`, `负责人 @李四`, `优先级 高`)."""
    out = []
    for i, tok in enumerate(tokens):
        fw = _field_word(tok, allowed)
        out.append(fw is not None and (fw[2] or (FIELD_TYPES.get(fw[0], TEXT) != TEXT
                                                 and _is_value(FIELD_TYPES[fw[0]], tokens, i + 1))))
    return out


def _strip_slash(text: str) -> str:
    """`/帮助`, `／新建任务 …`, `/task new …`: a leading slash is how some people (and platforms'
    command menus) type a command; it means nothing more."""
    if text[:1] in SLASHES:
        return text[1:].lstrip()
    return text


def parse(text: str) -> Command | ParseError:
    """Parse one command; never raises.

    A field word starts its field only where that is unambiguous, so that free text (a title, a
    remark) is never cut by a word that happens to name a field:

    * with `=` or `：`/`:` (`负责人：李四`, `备注:先对齐`): always;
    * a typed field's word (people, dates, priority, percent, links) in free text or in a text field's
      value: when a value of its type follows (`截止 12-10`, `负责人 @李四`, `截止 下周八` as an attempt
      the handler refuses by name); `with animations`, `开始 前先对齐` stay text. Right after a value,
      a reference or a mention (among the fields) any value: `… @李四 优先级 超高` is refused, not kept;
    * a text field's word (备注, 交付物, 原因, 问题 …): when a value follows and it stands neither inside
      free text nor right after another field word: `进度 #2 60% 完成 首页 下一步 联调` and
      `… 负责人 @李四 备注 开始 前先对齐` split, `新建任务 设计 交付 流程` is one title;
    * in a field begun with `=`/`：` only another such field or a typed one ends it; a field begun by its
      word alone ends at the next field, people and links at the first word that is not one, a date
      where the words stop being one (`截止 周五 18:00 评审`: 评审 is text again);
    * each field once (a person field may be named again to add people); anything else is text.

    Quotes (「」『』“”‘’ "" '') keep any text whole, where they open a word (or follow `=`/`：`) and close
    one: `新建任务 「交付 流程 截止 周五」 负责人 @李四`. A leading `/` or `／` is accepted on every command.
    """
    raw = text.strip()
    # as people type on phones: a full-width ＃ (＃１２), a colon after the command (进度：#1 50%), a
    # sentence's final 。 (确认收到 #1。, 截止 周五。)
    text = _SPACED_PERCENT.sub(r"\1%", _strip_slash(raw).replace("＃", "#").rstrip("。").rstrip())
    text = _FIELD_COMMA.sub(" ", text)
    if not text:
        return ParseError("empty")
    if len(raw) > MAX_COMMAND_CHARS:
        return ParseError("too_long", value=str(MAX_COMMAND_CHARS))
    matched = _match_command(text)
    lead = _LEADING_MENTIONS.match(text) if matched is None else None
    if lead is not None and (after := _match_command(text[lead.end():])) is not None:
        # `@李四 @bot 新建任务 …`: people named before the command are the command's, as if typed after it
        matched = (after[0], f"{after[1]} {lead.group(0).strip()}")
    if matched is None:
        return ParseError("unknown_command", value=show_markers(raw, [])[:30].strip(), suggestions=suggest(text))
    name, rest = matched
    allowed = COMMAND_FIELDS.get(name, ())
    tokens = _tokens(rest)
    typed_start = _typed_starts(tokens, allowed)
    free: list[str] = []
    fields: dict[str, list[str]] = {}
    current: str | None = None
    assigned = False  # the current field was begun with `=`/`：`
    # what the previous token was: start | free (free text) | word (a field word) | text (a text field's
    # value) | value (a typed field's value, a reference, a percent, a mention)
    last = "start"
    tasks, approvals, helps, mentions, links = [], [], [], [], []
    spoken: list[str] = []
    field_mentions: dict[str, list[int]] = {}
    percent: int | None = None
    pairs: list[tuple[str, list[str]]] = []
    in_pair = False  # the tokens now being read belong to the last pair's value
    for i, token in enumerate(tokens):
        fw = _field_word(token, allowed)
        if fw is not None:
            field_name, inline, by_assign = fw
            kind = FIELD_TYPES.get(field_name, TEXT)
            has_next = i + 1 < len(tokens) and _field_word(tokens[i + 1], allowed) is None
            if by_assign:
                starts = True
            elif kind != TEXT:
                # among fields (after a value, a reference, a mention) any value is meant for the
                # field, and a wrong one is refused by name; in free text only a value of its type
                starts = (typed_start[i] or (last == "value" and has_next)) and (
                    field_name not in fields or (kind == PERSON and field_name == current))
            else:
                starts = (not assigned and last not in ("free", "word") and field_name not in fields
                          and i + 1 < len(tokens) and not typed_start[i + 1])
            if starts:
                current, assigned, in_pair = field_name, by_assign, False
                fields.setdefault(current, [])
                if inline:
                    fields[current].append(inline)
                last = "word" if not inline else ("text" if kind == TEXT else "value")
                continue
        if current is not None and not assigned:
            # a field begun by its word alone ends where its type says
            kind = FIELD_TYPES.get(current, TEXT)
            began = bool(fields[current] or field_mentions.get(current))
            if began and ((kind in (PERSON, LINK) and not _is_value(kind, tokens, i))
                          or kind in (PRIORITY, NUMBER)
                          or (kind == DATE and _date_complete(fields[current], token))):
                current = None
        pair = _PAIR.match(token.text) if name in PAIR_COMMANDS and not token.quoted else None
        if pair is not None and token.marker is None:
            current, in_pair, last = None, True, "text"
            pairs.append((pair.group(1), [pair.group(2)] if pair.group(2) else []))
            continue
        if token.marker is not None:
            if current in NAME_FIELDS:  # a name is never a person: `部门 技术部 @李四` filters by both
                current = None
            if in_pair:
                mentions.append(token.marker)
            elif current is not None:
                field_mentions.setdefault(current, []).append(token.marker)
            else:
                mentions.append(token.marker)
                spoken.append(token.text)
            last = "value"
            continue
        if in_pair:
            if not token.quoted and _URL.match(token.text):
                links.append(token.text)
            pairs[-1][1].append(token.text)
            last = "text"
            continue
        if not token.quoted:
            ref = _REF.match(token.text)
            if ref and current is None:
                kind_letter, number = ref.group(1).upper(), int(ref.group(2))
                {"": tasks, "A": approvals, "H": helps}[kind_letter].append(number)
                last = "value"
                continue
            if current is None and _RECORD_REF.match(token.text):
                free.append(token.text)
                last = "value"
                continue
            pct = _PERCENT.match(token.text)
            if pct and percent is None and current in (None, "percent"):
                percent = int(pct.group(1))
                last = "value"
                continue
            if (name == "report_progress" and percent is None and current is None and last == "value" and tasks
                    and token.text.isascii() and token.text.isdigit() and int(token.text) <= 100):
                percent = int(token.text)  # 进度 #1 30: the number right after the task is its percent
                last = "value"
                continue
            if _URL.match(token.text):
                links.append(token.text)
        if current is not None:
            fields[current].append(token.text)
            last = "text" if FIELD_TYPES.get(current, TEXT) == TEXT else "value"
        else:
            free.append(token.text)
            spoken.append(token.text)
            last = "free"
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
        raw=raw,
        pairs=tuple((k, " ".join(v).strip()) for k, v in pairs),
        spoken=" ".join(spoken).strip(),
    )


def _date_complete(value: list[str], token: _Token) -> bool:
    """Whether a date field begun by its word alone ends before `token`: its value is a date (or three
    words long) and `token` adds nothing a date could take (`截止 周五 18:00 评审` -> 周五 18:00)."""
    if not value:
        return False
    if token.marker is not None or token.quoted or len(value) >= 3:
        return True
    joined = " ".join(value)
    if parse_when(joined, _ANY_DAY) is None:
        return False  # `next` of `next fri`, or an attempt the handler will refuse whole
    return parse_held_at(f"{joined} {token.text}", _ANY_DAY) is None  # (a meeting's range and time too)


def priority_of(value: str) -> str | None:
    return PRIORITY_WORDS.get(value.strip().lower())
