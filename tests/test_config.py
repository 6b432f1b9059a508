"""The configuration: `config.example.toml` documents every key `parse_config` reads, with its default;
a bad value stops start-up with a `ConfigError` naming the key (exit status 2 on the command line);
"${NAME}" values come from the environment and `COLLABBOT_DATABASE_URL` overrides the database URL."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import tomllib
from dataclasses import fields, replace
from pathlib import Path
from typing import Any

import pytest

from collabbot.bot import config as config_module
from collabbot.bot.approval_templates import builtin_templates, templates_of
from collabbot.bot.calendar import _CONFIG_KEYS as CALENDAR_KEYS
from collabbot.bot.config import PLATFORM_SECTIONS, Config, ConfigError, load_config, parse_config

from .conftest import ROOT

EXAMPLE = ROOT / "config.example.toml"
EXIT_CONFIG = 2
# Array-of-tables sections whose entries are examples to copy, not defaults (the default is "none"
# for task templates and "the built-ins" for approval templates, compared separately below).
EXAMPLE_ONLY = {"task_templates", "approval_templates", "approval_roles"}


@pytest.fixture(autouse=True)
def _no_database_override(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("COLLABBOT_DATABASE_URL", raising=False)


def example() -> dict[str, Any]:
    return tomllib.loads(EXAMPLE.read_text(encoding="utf-8"))


def keys_read_by_parse_config(data: dict[str, Any], monkeypatch: pytest.MonkeyPatch) -> set[str]:
    """Every dotted key `parse_config` looks up (present or not) while it parses `data`."""
    seen: list[tuple[str, set[str]]] = []
    done = config_module._Section.done

    def recording_done(self: Any) -> None:
        seen.append((self.prefix, set(self.seen)))
        done(self)

    monkeypatch.setattr(config_module._Section, "done", recording_done)
    parse_config(data)
    paths = {f"{prefix}.{key}" if prefix else key for prefix, keys in seen for key in keys}
    tables = {prefix for prefix, _ in seen}
    return paths - tables


def lookup(doc: dict[str, Any], dotted: str) -> Any:
    node: Any = doc
    for part in dotted.split("."):
        assert isinstance(node, dict) and part in node, f"{dotted} is not in config.example.toml"
        node = node[part]
    return node


# --- the example ----------------------------------------------------------------------------------

def test_the_example_parses() -> None:
    config = load_config(EXAMPLE)
    assert config.language == "zh" and config.database_url == f"sqlite:///{EXAMPLE.parent.resolve()}/collabbot.db"
    assert [t.name for t in config.task_templates] == ["H5开发支持"]
    assert [s.title for s in config.task_templates[0].subtasks] == ["视觉设计", "前端开发", "测试验收"]


def test_every_key_parse_config_reads_is_in_the_example(monkeypatch: pytest.MonkeyPatch) -> None:
    doc = example()
    keys = keys_read_by_parse_config({}, monkeypatch)
    scalar = sorted(k for k in keys if k.split(".")[0] not in EXAMPLE_ONLY | {"calendar", *PLATFORM_SECTIONS})
    assert len(scalar) > 30  # bot, database, server, rules.*, delivery, scheduler
    missing = [k for k in scalar if not _has(doc, k)]
    assert missing == []
    assert sorted(doc["calendar"]) == sorted(CALENDAR_KEYS)
    # the template sections: every key read for an entry appears in the example's entry
    template_keys = keys_read_by_parse_config({"task_templates": doc["task_templates"]}, monkeypatch)
    for key in sorted(k for k in template_keys if k.startswith("task_templates[0].") and "subtasks[" not in k):
        assert key.split(".", 1)[1] in doc["task_templates"][0], key
    for key in sorted(k for k in template_keys if k.startswith("task_templates[0].subtasks[0].")):
        assert key.rsplit(".", 1)[1] in doc["task_templates"][0]["subtasks"][0], key


def _has(doc: dict[str, Any], dotted: str) -> bool:
    try:
        lookup(doc, dotted)
    except AssertionError:
        return False
    return True


def comparable(config: Config) -> Config:
    """`Config()` keeps () for "the built-in approval templates", `parse_config` lists them: the same."""
    return replace(config, approval_templates=templates_of(config))


def test_every_value_shown_in_the_example_is_the_default(monkeypatch: pytest.MonkeyPatch) -> None:
    """The example's header says "the value shown is the default": each key's value, parsed on its
    own, must give exactly the config a missing file gives."""
    doc = example()
    defaults = comparable(Config())
    not_default = []
    for key in sorted(keys_read_by_parse_config({}, monkeypatch)):
        top = key.split(".")[0]
        if top in EXAMPLE_ONLY or top in PLATFORM_SECTIONS or top == "calendar":
            continue
        single: dict[str, Any] = {}
        node = single
        parts = key.split(".")
        for part in parts[:-1]:
            node = node.setdefault(part, {})
        node[parts[-1]] = lookup(doc, key)
        if comparable(parse_config(single)) != defaults:
            not_default.append(f"{key} = {lookup(doc, key)!r}")
    assert not_default == []
    parsed = comparable(parse_config({k: v for k, v in doc.items() if k not in EXAMPLE_ONLY - {"approval_templates", "approval_roles"}}))
    assert [f.name for f in fields(Config) if f.name != "admins" and getattr(parsed, f.name) != getattr(defaults, f.name)] == []


def test_the_example_lists_the_built_in_approval_templates() -> None:
    assert load_config(EXAMPLE).approval_templates == builtin_templates()


# --- bad configs ----------------------------------------------------------------------------------

BAD = [
    ({"bot": {"langauge": "en"}}, "bot.langauge"),
    ({"botx": {"language": "en"}}, "botx"),
    ({"rules": {"nag": {"after_hours": 2}}}, "rules.nag.after_hours"),
    ({"delivery": {"max_attempt": 3}}, "delivery.max_attempt"),
    ({"server": {"port": "8080"}}, "server.port"),
    ({"server": {"port": 0}}, "server.port"),
    ({"server": {"port": 99999}}, "server.port"),
    ({"server": {"port": 65536}}, "server.port"),
    ({"rules": {"nag": {"enabled": "yes"}}}, "rules.nag.enabled"),
    ({"rules": {"nag": {"max_nags": True}}}, "rules.nag.max_nags"),
    ({"rules": {"escalation": {"after_hours": -1}}}, "rules.escalation.after_hours"),
    ({"bot": {"admins": "张三"}}, "bot.admins"),
    ({"bot": {"admins": ["张三", 3]}}, "bot.admins"),
    ({"rules": "nag"}, "rules"),
    ({"rules": {"daily_prompt": {"time": "25:00"}}}, "rules.daily_prompt.time"),
    ({"rules": {"weekly_summary": {"time": "17h"}}}, "rules.weekly_summary.time"),
    ({"rules": {"daily_prompt": {"time": 10}}}, "rules.daily_prompt.time"),
    ({"bot": {"language": "fr"}}, "bot.language"),
    ({"database": {"url": "mysql://root@localhost/collabbot"}}, "database.url"),
    ({"database": {"url": "collabbot.db"}}, "database.url"),
    ({"database": {"url": 5432}}, "database.url"),
    ({"calendar": {"timezone": "Mars/Olympus"}}, "calendar.timezone"),
    ({"calendar": {"timezone": "../../etc/passwd"}}, "calendar.timezone"),
    ({"calendar": {"working_hours": ["25:00-26:00"]}}, "calendar.working_hours"),
    ({"calendar": {"extra_holidays": ["2026-02-30"]}}, "calendar.extra_holidays"),
    ({"calendar": {"time_zone": "Asia/Shanghai"}}, "calendar.time_zone"),
    ({"task_templates": [{"name": "x", "priority": "urgent"}]}, "task_templates[0].priority"),
    ({"task_templates": [{"priority": "high"}]}, "task_templates[0].name"),
    ({"task_templates": [{"name": "H5 开发"}]}, "task_templates[0].name"),
    ({"task_templates": [{"name": "x"}, {"name": "x"}]}, "task_templates[1].name"),
    ({"task_templates": [{"name": "x", "due_in_days": -1}]}, "task_templates[0].due_in_days"),
    ({"task_templates": [{"name": "x", "subtasks": [{"title": "y", "offset_days": -2}]}]},
     "task_templates[0].subtasks[0].offset_days"),
    ({"task_templates": [{"name": "x", "subtask": []}]}, "task_templates[0].subtask"),
    ({"feishu": "on"}, "feishu"),
    ({"rules": {"escalation": {"to": "ceo"}}}, "rules.escalation.to"),
    ({"rules": {"nag": {"in_group": False, "private": False}}}, "rules.nag.private"),
    ({"rules": {"daily_prompt": {"in_group": False, "private": False}}}, "rules.daily_prompt.private"),
    # at or past the working day's end (with the spread): a prompt never sent, a summary put off to Monday
    ({"rules": {"daily_prompt": {"time": "18:00"}}}, "rules.daily_prompt.time"),
    ({"rules": {"daily_prompt": {"time": "17:57"}}}, "rules.daily_prompt.time"),
    ({"rules": {"weekly_summary": {"time": "17:30"}}, "calendar": {"working_hours": ["09:00-17:30"]}},
     "rules.weekly_summary.time"),
    ({"database": {"url": "${COLLABBOT_TEST_UNSET_VARIABLE}"}}, "database.url"),
    ({"bot": {"admins": ["${COLLABBOT_TEST_UNSET_VARIABLE}"]}}, "bot.admins[0]"),
]


@pytest.mark.parametrize(("data", "key"), BAD, ids=[f"{i}:{key}" for i, (_, key) in enumerate(BAD)])
def test_a_bad_config_raises_config_error_naming_the_key(data: dict[str, Any], key: str,
                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("COLLABBOT_TEST_UNSET_VARIABLE", raising=False)
    with pytest.raises(ConfigError) as caught:
        parse_config(data)
    assert caught.value.key == key
    assert str(caught.value).startswith(f"{key}: ")


def test_a_missing_environment_variable_is_named(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("COLLABBOT_TEST_UNSET_VARIABLE", raising=False)
    with pytest.raises(ConfigError, match="COLLABBOT_TEST_UNSET_VARIABLE"):
        parse_config({"feishu": {"app_secret": "${COLLABBOT_TEST_UNSET_VARIABLE}"}})


def test_unreadable_and_invalid_files(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="cannot read"):
        load_config(tmp_path / "missing.toml")
    bad = tmp_path / "bad.toml"
    bad.write_text("[bot\nlanguage = 'zh'\n", encoding="utf-8")
    with pytest.raises(ConfigError, match="not valid TOML"):
        load_config(bad)


# --- environment ----------------------------------------------------------------------------------

def test_secrets_are_read_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("COLLABBOT_TEST_DB", "postgresql+psycopg://bot:s3cret@db:5432/collabbot")
    monkeypatch.setenv("COLLABBOT_TEST_SECRET", "app-secret-from-env")
    config = parse_config({"database": {"url": "${COLLABBOT_TEST_DB}"}, "bot": {"admins": ["feishu:${COLLABBOT_TEST_SECRET}"]},
                           "feishu": {"app_id": "cli_1", "app_secret": "${COLLABBOT_TEST_SECRET}"}})
    assert config.database_url == "postgresql+psycopg://bot:s3cret@db:5432/collabbot"
    assert config.admins == ("feishu:app-secret-from-env",)
    assert config.platforms["feishu"] == {"app_id": "cli_1", "app_secret": "app-secret-from-env"}


def test_a_password_variable_inside_a_url_is_percent_encoded(monkeypatch: pytest.MonkeyPatch) -> None:
    """A password with @ / : # in it must not end the user part early (nor show its tail in an error); a
    whole URL from a variable, and a variable elsewhere in a URL, are taken as they are."""
    from sqlalchemy.engine import make_url

    monkeypatch.setenv("COLLABBOT_TEST_PW", "p@ss/w:rd#1")
    monkeypatch.setenv("COLLABBOT_TEST_HOST", "db.example.com:5433")
    config = parse_config({"database": {"url": "postgresql+psycopg://bot:${COLLABBOT_TEST_PW}@${COLLABBOT_TEST_HOST}/x"}})
    url = make_url(config.database_url)
    assert (url.username, url.password, url.host, url.port, url.database) == \
        ("bot", "p@ss/w:rd#1", "db.example.com", 5433, "x")


def test_the_documented_database_url_with_a_password_variable_works(monkeypatch: pytest.MonkeyPatch) -> None:
    """config.example.toml shows how to keep the database password out of the file; that line must work
    as shown: the variable's value ends up in the URL, not the text "${...}"."""
    documented = re.search(r'^#\s*url = "(postgresql[^"]*)"', EXAMPLE.read_text(encoding="utf-8"), re.MULTILINE)
    assert documented is not None
    names = re.findall(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}", documented.group(1))
    assert names  # the example does use a variable
    for name in names:
        monkeypatch.setenv(name, "pw-from-env")
    url = parse_config({"database": {"url": documented.group(1)}}).database_url
    assert "${" not in url and "pw-from-env" in url


def test_collabbot_database_url_sets_the_url_when_the_file_has_none(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("COLLABBOT_DATABASE_URL", "postgresql+psycopg://bot@db:5432/prod")
    assert parse_config({"bot": {"language": "en"}}).database_url == "postgresql+psycopg://bot@db:5432/prod"
    monkeypatch.setenv("COLLABBOT_DATABASE_URL", "mysql://nope")
    with pytest.raises(ConfigError) as caught:
        parse_config({})
    assert caught.value.key == "COLLABBOT_DATABASE_URL"  # where the bad URL came from, not the file's key


def test_collabbot_database_url_overrides_the_files_url(monkeypatch: pytest.MonkeyPatch) -> None:
    """The usual deployment: the file keeps a default URL, the environment points at production."""
    monkeypatch.setenv("COLLABBOT_DATABASE_URL", "postgresql+psycopg://bot@db:5432/prod")
    config = parse_config({"database": {"url": "sqlite:///collabbot.db"}})
    assert config.database_url == "postgresql+psycopg://bot@db:5432/prod"
    assert load_config(EXAMPLE).database_url == "postgresql+psycopg://bot@db:5432/prod"


# --- the command line -----------------------------------------------------------------------------

def cli(tmp_path: Path, *args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    base = {k: v for k, v in os.environ.items() if not k.startswith("COLLABBOT_")}
    return subprocess.run([sys.executable, "-m", "collabbot.adapters.server", *args], capture_output=True, text=True,
                          timeout=60, cwd=tmp_path, env={**base, **(env or {})}, check=False)


@pytest.mark.parametrize(("body", "key"), [
    ('[bot]\nlangauge = "en"\n', "bot.langauge"),
    ('[rules.daily_prompt]\ntime = "25:00"\n', "rules.daily_prompt.time"),
    ('[calendar]\ntimezone = "Mars/Olympus"\n', "calendar.timezone"),
])
def test_the_cli_exits_2_naming_the_key(tmp_path: Path, body: str, key: str) -> None:
    bad = tmp_path / "bad.toml"
    bad.write_text(body, encoding="utf-8")
    target = tmp_path / "never.db"
    result = cli(tmp_path, "--config", str(bad), "db", "upgrade", "--db", f"sqlite:///{target}")
    assert result.returncode == EXIT_CONFIG, result.stderr
    assert key in result.stderr and "Traceback" not in result.stderr
    assert not target.exists()


def test_the_cli_reads_the_config_from_collabbot_config(tmp_path: Path) -> None:
    bad = tmp_path / "bad.toml"
    bad.write_text('[server]\nport = "80"\n', encoding="utf-8")
    result = cli(tmp_path, "db", "upgrade", "--db", f"sqlite:///{tmp_path / 'x.db'}", env={"COLLABBOT_CONFIG": str(bad)})
    assert result.returncode == EXIT_CONFIG and "server.port" in result.stderr


def test_the_cli_honours_collabbot_database_url(tmp_path: Path) -> None:
    """With the URL only in the environment (a container with no config file), `db upgrade` migrates
    that database, not ./collabbot.db."""
    target = tmp_path / "from-env.db"
    result = cli(tmp_path, "db", "upgrade", env={"COLLABBOT_DATABASE_URL": f"sqlite:///{target}"})
    assert result.returncode == 0, result.stderr
    assert target.exists()
    assert not (tmp_path / "collabbot.db").exists()


def test_the_cli_db_option_beats_the_environment(tmp_path: Path) -> None:
    good = tmp_path / "good.toml"
    good.write_text('[bot]\nlanguage = "en"\n', encoding="utf-8")
    target = tmp_path / "option.db"
    result = cli(tmp_path, "--config", str(good), "db", "upgrade", "--db", f"sqlite:///{target}",
                 env={"COLLABBOT_DATABASE_URL": f"sqlite:///{tmp_path / 'env.db'}"})
    assert result.returncode == 0, result.stderr
    assert target.exists() and not (tmp_path / "env.db").exists()


def test_the_highest_tcp_port_is_accepted() -> None:
    assert parse_config({"server": {"port": 65535}}).port == 65535


def test_paths_in_a_config_file_are_relative_to_it_wherever_a_command_runs(tmp_path, monkeypatch) -> None:
    """`outbox list` run from another directory must find the same database, not make an empty one."""
    (tmp_path / "etc").mkdir()
    config_file = tmp_path / "etc" / "c.toml"
    config_file.write_text('[database]\nurl = "sqlite:///data/bot.db?timeout=5"\n[server]\nspool_dir = "spool"\n',
                           encoding="utf-8")
    monkeypatch.chdir(tmp_path)
    config = load_config(config_file)
    assert config.database_url == f"sqlite:///{tmp_path}/etc/data/bot.db?timeout=5"
    assert config.spool_dir == str(tmp_path / "etc" / "spool")
    for url in ("sqlite:////var/lib/collabbot/bot.db", "sqlite:///:memory:", "postgresql+psycopg://u@h/db"):
        config_file.write_text(f'[database]\nurl = "{url}"\n', encoding="utf-8")
        assert load_config(config_file).database_url == url


def test_sharing_a_port_needs_postgresql(tmp_path) -> None:
    config_file = tmp_path / "c.toml"
    config_file.write_text("[server]\nreuse_port = true\n", encoding="utf-8")
    with pytest.raises(ConfigError) as error:
        load_config(config_file)
    assert str(error.value).startswith("server.reuse_port: needs a PostgreSQL database.url")


def test_a_value_of_the_wrong_type_is_named_by_its_kind_never_echoed() -> None:
    """A secret put in a list by mistake must not end up in the log that reports it."""
    from collabbot.adapters.feishu.config import parse_settings

    with pytest.raises(ConfigError) as error:
        parse_config({"bot": {"name": ["SUPERSECRET"]}})
    assert str(error.value) == "bot.name: must be a string, not a list"
    with pytest.raises(ConfigError) as error:
        parse_settings({"app_id": "cli_1", "app_secret": "s", "encrypt_key": ["SUPERSECRET"], "verification_token": "t"})
    assert "SUPERSECRET" not in str(error.value) and str(error.value).endswith("must be a string, not a list")
