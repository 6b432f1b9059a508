"""The configuration: one TOML file, every key documented in `config.example.toml`.

`load_config` returns frozen values or raises `ConfigError` naming the key and what is wrong, so
start-up can stop with a message an admin can act on (exit status 2). Any string value of the form
`${NAME}` is read from the environment variable NAME (for secrets); `COLLABBOT_DATABASE_URL`
overrides `database.url`. Unknown keys are errors: a typo must not silently fall back to a default.
"""

from __future__ import annotations

import os
import re
import tomllib
from dataclasses import dataclass, field, replace
from datetime import time
from pathlib import Path
from typing import Any
from urllib.parse import quote

from collabbot.bot.approval_templates import ApprovalTemplate, parse_approval_templates
from collabbot.bot.calendar import WorkCalendar
from collabbot.bot.errors import ConfigError, kind_of  # ConfigError re-exported: callers import it from here
from collabbot.bot.identities import OrgIdentities

DEFAULT_DB_URL = "sqlite:///collabbot.db"


@dataclass(frozen=True)
class SubtaskTemplate:
    title: str
    department: str = ""
    offset_days: int = 0


@dataclass(frozen=True)
class TaskTemplate:
    name: str
    priority: str = "mid"
    deliverable: str = ""
    remarks: str = ""
    due_in_days: int = 0
    subtasks: tuple[SubtaskTemplate, ...] = ()


@dataclass(frozen=True)
class RuleSettings:
    nag_enabled: bool = True
    nag_after_working_hours: float = 2.0
    nag_max: int = 2
    nag_outside_working_hours: bool = False
    nag_in_group: bool = True  # who hears: an @mention in the group the wait came from
    nag_private: bool = True  # … and a private message
    escalation_enabled: bool = True
    escalation_after_hours: float = 24.0
    escalation_outside_working_hours: bool = False
    escalation_to: str = "supervisor"  # or "department_head": whom to try first (ESCALATION_TARGETS)
    escalation_in_group: bool = True
    escalation_urgent: str = "off"  # the platform's strongest alert (加急, DING) on escalations: URGENT_POLICIES
    daily_prompt_enabled: bool = True
    daily_prompt_time: time = time(10, 0)
    daily_prompt_spread_minutes: int = 5
    daily_prompt_in_group: bool = True
    daily_prompt_private: bool = True
    overdue_enabled: bool = True
    overdue_tell_coordinator: bool = True
    unblocked_enabled: bool = True
    weekly_summary_enabled: bool = True
    weekly_summary_time: time = time(17, 0)
    weekly_summary_spread_minutes: int = 5
    # 紧急事务: answered within respond_hours (wall clock), nagged every nag_after_hours at any hour
    urgent_respond_hours: float = 24.0
    urgent_nag_after_hours: float = 1.0
    urgent_max_nags: int = 3

    def for_urgent(self) -> RuleSettings:
        """The rhythm for an urgent matter: tighter nags at any hour, escalation once the response is late."""
        return replace(self, nag_enabled=True, nag_after_working_hours=self.urgent_nag_after_hours,
                       nag_max=self.urgent_max_nags, nag_outside_working_hours=True, escalation_enabled=True,
                       escalation_after_hours=self.urgent_respond_hours, escalation_outside_working_hours=True)


@dataclass(frozen=True)
class DeliverySettings:
    max_attempts: int = 8
    base_delay_seconds: float = 2.0
    max_delay_seconds: float = 600.0
    batch_size: int = 50
    claim_seconds: float = 60.0
    per_chat_per_minute: int = 20  # the defaults for a sender that declares no limits (0 = none)
    per_platform_per_second: float = 40.0
    limit_margin: float = 0.05  # sends paced this much slower than a limit (clock and network jitter)
    receipt_retention_days: float = 7.0  # inbound receipts (a platform retries within minutes)
    sent_retention_days: float = 30.0  # sent outbox rows (dead ones stay for an admin); audit is kept
    prune_batch: int = 1000  # rows deleted per statement by the retention sweep


@dataclass(frozen=True)
class SchedulerSettings:
    tick_seconds: float = 60.0
    idle_seconds: float = 1.0


@dataclass(frozen=True)
class ReportSettings:
    """`[reports]`: how charts and workbooks reach people (read by the adapters and `serve`)."""

    link_hours: int = 24  # a signed download link's life
    public_url: str = ""  # where people reach `collabbot serve` ("https://bot.example.com"); "": no links
    link_secret: str = ""  # "": generated once and kept in the export folder
    folder: str = ""  # the export folder; "": $COLLABBOT_EXPORT_DIR, else <tmp>/collabbot-exports
    chart_font: str = ""  # a font file with Chinese glyphs; "": looked for among the system's fonts


@dataclass(frozen=True)
class Config:
    language: str = "zh"
    bot_name: str = "bot"
    admins: tuple[str, ...] = ()
    org_file: str = ""
    database_url: str = DEFAULT_DB_URL
    host: str = "127.0.0.1"
    port: int = 8080
    max_body_bytes: int = 1_048_576
    reuse_port: bool = False  # several `serve` processes on one port (SO_REUSEPORT), PostgreSQL only
    spool_dir: str = ""  # where inbound events wait when the database stalls ("": beside the SQLite file, else ./)
    spool_after_seconds: float = 1.0
    calendar: WorkCalendar = field(default_factory=WorkCalendar)
    rules: RuleSettings = field(default_factory=RuleSettings)
    delivery: DeliverySettings = field(default_factory=DeliverySettings)
    scheduler: SchedulerSettings = field(default_factory=SchedulerSettings)
    task_templates: tuple[TaskTemplate, ...] = ()
    approval_templates: tuple[ApprovalTemplate, ...] = ()  # empty: the built-ins (bot/approval_templates.py)
    platforms: dict[str, dict[str, Any]] = field(default_factory=dict)
    reports: ReportSettings = field(default_factory=ReportSettings)

    def task_template(self, name: str) -> TaskTemplate | None:
        return next((t for t in self.task_templates if t.name == name), None)


_ENV = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}")
PLATFORM_SECTIONS = ("feishu", "dingtalk", "wecom")
# escalations sent urgent (加急 / DING): never, for high-priority tasks, or always
URGENT_POLICIES = ("off", "high", "all")
# escalation: the supervisor (分管领导) first, or the department head first; the other one next
ESCALATION_TARGETS = ("supervisor", "department_head")


def _expand_env(value: Any, key: str) -> Any:
    """Replace each "${NAME}" in string values (whole or embedded, as in a URL's password). In a URL's user
    and password (between "://" and "@"), the variable's value is percent-encoded: a password with @ / : #
    in it would otherwise break the URL (and show its tail in the error)."""
    if isinstance(value, str):
        scheme = value.find("://")
        userinfo_end = value.find("@", scheme + 3) if scheme >= 0 else -1

        def variable(m: re.Match[str]) -> str:
            if m.group(1) not in os.environ:
                raise ConfigError(key, f"environment variable {m.group(1)} is not set")
            found = os.environ[m.group(1)]
            return quote(found, safe="") if scheme < m.start() < userinfo_end else found

        return _ENV.sub(variable, value)
    if isinstance(value, dict):
        return {k: _expand_env(v, f"{key}.{k}" if key else k) for k, v in value.items()}
    if isinstance(value, list):
        return [_expand_env(v, f"{key}[{i}]") for i, v in enumerate(value)]
    return value


class _Section:
    """Typed reads from one table of the TOML file; every read key is remembered to find unknown ones."""

    def __init__(self, data: Any, prefix: str) -> None:
        if not isinstance(data, dict):
            raise ConfigError(prefix, "must be a table")
        self.data, self.prefix, self.seen = data, prefix, set[str]()

    def _get(self, key: str, default: Any, kinds: tuple[type, ...], what: str) -> Any:
        self.seen.add(key)
        if key not in self.data:
            return default
        value = self.data[key]
        if (isinstance(value, bool) and bool not in kinds) or not isinstance(value, kinds):
            raise ConfigError(self.key(key), f"must be {what}, not {kind_of(value)}")
        return value

    def key(self, key: str) -> str:
        return f"{self.prefix}.{key}" if self.prefix else key

    def str(self, key: str, default: str = "") -> str:
        return self._get(key, default, (str,), "a string")

    def bool(self, key: str, default: bool) -> bool:
        return self._get(key, default, (bool,), "true or false")

    def int(self, key: str, default: int, minimum: int = 0) -> int:
        value = self._get(key, default, (int,), "a whole number")
        if value < minimum:
            raise ConfigError(self.key(key), f"must be at least {minimum}")
        return value

    def number(self, key: str, default: float, minimum: float = 0.0) -> float:
        value = float(self._get(key, default, (int, float), "a number"))
        if value <= minimum:
            raise ConfigError(self.key(key), f"must be greater than {minimum:g}")
        return value

    def time(self, key: str, default: time) -> time:
        value = self._get(key, None, (str,), 'a time like "10:00"')
        if value is None:
            return default
        try:
            return time.fromisoformat(value)
        except ValueError:
            raise ConfigError(self.key(key), f'must be a time like "10:00", not {value!r}') from None

    def choice(self, key: str, default: str, choices: tuple[str, ...]) -> str:
        value = self.str(key, default)
        if value not in choices:
            raise ConfigError(self.key(key), f"must be one of {', '.join(repr(c) for c in choices)}, not {value!r}")
        return value

    def strings(self, key: str) -> tuple[str, ...]:
        value = self._get(key, [], (list,), "a list of strings")
        if not all(isinstance(v, str) for v in value):
            raise ConfigError(self.key(key), "must be a list of strings")
        return tuple(value)

    def table(self, key: str) -> _Section:
        self.seen.add(key)
        return _Section(self.data.get(key, {}), self.key(key))

    def done(self) -> None:
        unknown = sorted(set(self.data) - self.seen)
        if unknown:
            raise ConfigError(self.key(unknown[0]), "unknown key (see config.example.toml)")


def _rules(s: _Section) -> RuleSettings:
    nag, esc, prompt = s.table("nag"), s.table("escalation"), s.table("daily_prompt")
    overdue, unblocked, weekly = s.table("overdue"), s.table("unblocked"), s.table("weekly_summary")
    urgent = s.table("urgent")
    rules = RuleSettings(
        nag_enabled=nag.bool("enabled", True),
        nag_after_working_hours=nag.number("after_working_hours", 2.0),
        nag_max=nag.int("max_nags", 2),
        nag_outside_working_hours=nag.bool("outside_working_hours", False),
        nag_in_group=nag.bool("in_group", True),
        nag_private=nag.bool("private", True),
        escalation_enabled=esc.bool("enabled", True),
        escalation_after_hours=esc.number("after_hours", 24.0),
        escalation_outside_working_hours=esc.bool("outside_working_hours", False),
        escalation_to=esc.choice("to", "supervisor", ESCALATION_TARGETS),
        escalation_in_group=esc.bool("in_group", True),
        escalation_urgent=esc.choice("urgent", "off", URGENT_POLICIES),
        daily_prompt_enabled=prompt.bool("enabled", True),
        daily_prompt_time=prompt.time("time", time(10, 0)),
        daily_prompt_spread_minutes=prompt.int("spread_minutes", 5),
        daily_prompt_in_group=prompt.bool("in_group", True),
        daily_prompt_private=prompt.bool("private", True),
        overdue_enabled=overdue.bool("enabled", True),
        overdue_tell_coordinator=overdue.bool("tell_coordinator", True),
        unblocked_enabled=unblocked.bool("enabled", True),
        weekly_summary_enabled=weekly.bool("enabled", True),
        weekly_summary_time=weekly.time("time", time(17, 0)),
        weekly_summary_spread_minutes=weekly.int("spread_minutes", 5),
        urgent_respond_hours=urgent.number("respond_hours", 24.0),
        urgent_nag_after_hours=urgent.number("nag_after_hours", 1.0),
        urgent_max_nags=urgent.int("max_nags", 3),
    )
    for sub in (nag, esc, prompt, overdue, unblocked, weekly, urgent):
        sub.done()
    if rules.nag_enabled and not (rules.nag_in_group or rules.nag_private):
        raise ConfigError("rules.nag.private", "in_group and private are both false: nobody would hear a nag "
                          "(set enabled = false to switch nags off)")
    if rules.daily_prompt_enabled and not (rules.daily_prompt_in_group or rules.daily_prompt_private):
        raise ConfigError("rules.daily_prompt.private", "in_group and private are both false: nobody would hear "
                          "the prompt (set enabled = false to switch it off)")
    s.done()
    return rules


def _scheduler(s: _Section) -> SchedulerSettings:
    settings = SchedulerSettings(tick_seconds=s.number("tick_seconds", 60.0), idle_seconds=s.number("idle_seconds", 1.0))
    s.done()
    return settings


def _reports(s: _Section, base_dir: Path | None) -> ReportSettings:
    hours = s.int("link_hours", 24, minimum=1)
    if hours > 24 * 30:
        raise ConfigError(s.key("link_hours"), "must be at most 720 (30 days)")
    url = s.str("public_url", "").rstrip("/")
    if url and not re.fullmatch(r"https?://[^\s/?#@]+(/[^\s?#]*)?", url):
        raise ConfigError(s.key("public_url"), 'must be an http(s) URL without a query, e.g. "https://bot.example.com"')
    secret = s.str("link_secret", "")
    if secret and len(secret) < 16:
        raise ConfigError(s.key("link_secret"), "must be at least 16 characters (or empty: generated)")
    folder, font = s.str("folder", ""), s.str("chart_font", "")
    if base_dir is not None:  # relative to the config file, like org_file
        folder = str(base_dir / folder) if folder and not Path(folder).is_absolute() else folder
        font = str(base_dir / font) if font and not Path(font).is_absolute() else font
    if font and not Path(font).is_file():
        raise ConfigError(s.key("chart_font"), f"{font} is not a file (a font with Chinese glyphs, or empty: looked for)")
    settings = ReportSettings(hours, url, secret, folder, font)
    s.done()
    return settings


def _delivery(s: _Section) -> DeliverySettings:
    d = DeliverySettings(
        max_attempts=s.int("max_attempts", 8, minimum=1),
        base_delay_seconds=s.number("base_delay_seconds", 2.0),
        max_delay_seconds=s.number("max_delay_seconds", 600.0),
        batch_size=s.int("batch_size", 50, minimum=1),
        claim_seconds=s.number("claim_seconds", 60.0),
        per_chat_per_minute=s.int("per_chat_per_minute", 20, minimum=0),
        per_platform_per_second=s.number("per_platform_per_second", 40.0, minimum=-1),  # 0: no limit
        limit_margin=s.number("limit_margin", 0.05, minimum=-1),
        receipt_retention_days=s.number("receipt_retention_days", 7.0),
        sent_retention_days=s.number("sent_retention_days", 30.0),
        prune_batch=s.int("prune_batch", 1000, minimum=1),
    )
    for key in ("per_platform_per_second", "limit_margin"):
        if getattr(d, key) < 0:
            raise ConfigError(s.key(key), "must not be negative")
    s.done()
    return d


PRIORITIES = {"高": "high", "中": "mid", "低": "low", "high": "high", "mid": "mid", "medium": "mid", "low": "low"}


def _task_templates(items: Any) -> tuple[TaskTemplate, ...]:
    if not isinstance(items, list):
        raise ConfigError("task_templates", "must be an array of tables ([[task_templates]])")
    out = []
    for i, item in enumerate(items):
        s = _Section(item, f"task_templates[{i}]")
        name = s.str("name")
        if not name:
            raise ConfigError(s.key("name"), "is required")
        if len(name) > 30 or any(ch.isspace() for ch in name):
            raise ConfigError(s.key("name"), "must be one word of at most 30 characters (it is typed after 模板)")
        if any(t.name == name for t in out):
            raise ConfigError(s.key("name"), f"two templates are named {name!r}")
        priority = s.str("priority", "mid")
        if priority not in PRIORITIES:
            raise ConfigError(s.key("priority"), "must be one of 高/中/低 (or high/mid/low)")
        subs = []
        for j, sub in enumerate(s._get("subtasks", [], (list,), "an array of tables")):
            ss = _Section(sub, f"{s.key('subtasks')}[{j}]")
            title = ss.str("title")
            if not title:
                raise ConfigError(ss.key("title"), "is required")
            subs.append(SubtaskTemplate(title, ss.str("department"), ss.int("offset_days", 0)))
            ss.done()
        out.append(
            TaskTemplate(
                name, PRIORITIES[priority], s.str("deliverable"), s.str("remarks"),
                s.int("due_in_days", 0), tuple(subs),
            )
        )
        s.done()
    return tuple(out)


def _admins(entries: tuple[str, ...], people: OrgIdentities) -> tuple[str, ...]:
    """Admins as platform identities ("feishu:ou_…"): a name is display only, never a credential.

    A bare name is accepted only when the org file (the demo org when none is set) lists exactly one
    person by it; it stands for that person's ids there. A name nobody or several people have is refused.
    """
    out: list[str] = []
    for i, entry in enumerate(entries):
        out += people.ids(entry, f"bot.admins[{i}]")
    return tuple(dict.fromkeys(out))


def _check_rule_times(rules: RuleSettings, calendar: WorkCalendar) -> None:
    """The daily prompt and the weekly summary go out in working time: a time (plus its spread) at or
    past the working day's end would never send the prompt, and would put Friday's summary off to Monday."""
    end = calendar.periods[-1][1]
    for key, at, spread, enabled in (
            ("daily_prompt", rules.daily_prompt_time, rules.daily_prompt_spread_minutes, rules.daily_prompt_enabled),
            ("weekly_summary", rules.weekly_summary_time, rules.weekly_summary_spread_minutes,
             rules.weekly_summary_enabled)):
        latest = at.hour * 60 + at.minute + max(spread, 0)
        if enabled and latest >= end.hour * 60 + end.minute:
            suggest = max(end.hour * 60 + end.minute - max(spread, 0) - 30, 0)
            raise ConfigError(f"rules.{key}.time", f"{at:%H:%M} plus spread_minutes ({spread}) reaches the end of "
                                                   f"working time ({end:%H:%M}), when nothing is sent: choose an "
                                                   f'earlier time, e.g. "{suggest // 60:02d}:{suggest % 60:02d}"')


def parse_config(data: dict[str, Any], base_dir: Path | None = None) -> Config:
    """Validate a parsed TOML document into a `Config` (raises `ConfigError`)."""
    data = _expand_env(data, "")
    root = _Section(data, "")
    bot, db, server = root.table("bot"), root.table("database"), root.table("server")
    language = bot.str("language", "zh")
    if language not in ("zh", "en"):
        raise ConfigError("bot.language", 'must be "zh" or "en"')
    org_file = bot.str("org_file", "")
    if org_file and base_dir is not None and not Path(org_file).is_absolute():
        org_file = str(base_dir / org_file)
    url = db.str("url", DEFAULT_DB_URL)
    if base_dir is not None:  # relative to the config file, like org_file: not to wherever a command runs
        url = _sqlite_beside(url, base_dir)
    url_key = "COLLABBOT_DATABASE_URL" if os.environ.get("COLLABBOT_DATABASE_URL") else "database.url"
    url = os.environ.get("COLLABBOT_DATABASE_URL") or url
    if not url.startswith(("sqlite", "postgresql")):
        raise ConfigError(url_key, "must be a sqlite:/// or postgresql+psycopg:// URL")
    spool_dir = server.str("spool_dir", "")
    if spool_dir and base_dir is not None and not Path(spool_dir).is_absolute():
        spool_dir = str(base_dir / spool_dir)
    if server.bool("reuse_port", False) and url.startswith("sqlite"):
        raise ConfigError("server.reuse_port", "needs a PostgreSQL database.url: processes sharing a port on "
                                               "SQLite would each keep their own database")
    root.seen.add("calendar")
    try:
        calendar = WorkCalendar.from_config(data.get("calendar", {}))
    except ValueError as exc:
        key, _, problem = str(exc).partition(": ")
        raise ConfigError(key if key.startswith("calendar") else "calendar", problem or str(exc)) from None
    root.seen.update(["task_templates", "approval_templates", "approval_roles", *PLATFORM_SECTIONS])
    platforms = {}
    for name in PLATFORM_SECTIONS:
        if name in data:
            if not isinstance(data[name], dict):
                raise ConfigError(name, "must be a table")
            platforms[name] = data[name]
    people = OrgIdentities(org_file)  # admins and approvers: identities, names resolved through the org file
    approval_templates = parse_approval_templates(data.get("approval_templates", []), data.get("approval_roles"),
                                                  people)
    rules = _rules(root.table("rules"))
    _check_rule_times(rules, calendar)
    port = server.int("port", 8080, minimum=1)
    if port > 65535:
        raise ConfigError("server.port", "must be at most 65535 (a TCP port)")
    config = Config(
        language=language,
        bot_name=bot.str("name", "bot"),
        admins=_admins(bot.strings("admins"), people),
        org_file=org_file,
        database_url=url,
        host=server.str("host", "127.0.0.1"),
        port=port,
        max_body_bytes=server.int("max_body_bytes", 1_048_576, minimum=1024),
        reuse_port=server.bool("reuse_port", False),
        spool_dir=spool_dir,
        spool_after_seconds=server.number("spool_after_seconds", 1.0),
        calendar=calendar,
        rules=rules,
        delivery=_delivery(root.table("delivery")),
        scheduler=_scheduler(root.table("scheduler")),
        task_templates=_task_templates(data.get("task_templates", [])),
        approval_templates=tuple(approval_templates),
        platforms=platforms,
        reports=_reports(root.table("reports"), base_dir),
    )
    for s in (bot, db, server):
        s.done()
    root.done()
    return config


def _sqlite_beside(url: str, base_dir: Path) -> str:
    """A relative SQLite path (`sqlite:///collabbot.db`, three slashes) made absolute beside the config
    file; an absolute one (`sqlite:////var/lib/…`, four), :memory: and PostgreSQL stay as they are."""
    if not url.startswith("sqlite:///") or url.startswith("sqlite:////"):
        return url
    path, sep, query = url.removeprefix("sqlite:///").partition("?")
    if not path or path == ":memory:":
        return url
    return f"sqlite:///{(base_dir.resolve() / path)}{sep}{query}"


def load_config(path: str | Path) -> Config:
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError("(file)", f"cannot read {path}: {exc.strerror}") from None
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError("(file)", f"{path} is not valid TOML: {exc}") from None
    return parse_config(data, path.parent)
