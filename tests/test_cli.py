"""The admin's command line: outbox list/retry, the start-up calendar warning, db upgrade, org load, the
console's database; and every mistake an admin can make is one clear line with exit status 2."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path

import pytest
from sqlalchemy import func, select, text

from collabbot.storage import outbox
from collabbot.storage.db import Database
from collabbot.storage.migrate import upgrade
from collabbot.storage.models import OutboxMessage, User

from .serve_process import ServeProcess, free_port, write_config


def cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "collabbot.adapters.server", *args], capture_output=True, text=True,
                          timeout=60)


def test_outbox_list_and_retry(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'o.db'}"
    db = Database(url)
    upgrade(db.engine)
    now = datetime(2026, 12, 1, tzinfo=UTC)
    with db.transaction() as s:
        for i in range(3):
            outbox.enqueue(s, dedupe_key=f"k:{i}", platform="feishu", target_kind="chat", target_id="oc_1",
                           target_name="g", payload={"parts": ["x"], "card": None}, now=now)
        rows = list(s.scalars(select(OutboxMessage).order_by(OutboxMessage.id)))
        for row in rows[:2]:
            outbox.mark_failed(s, row.id, "HTTP 400 bad receive_id", None)
    listed = cli("outbox", "list", "--db", url)
    assert listed.returncode == 0
    assert listed.stdout.count("dead") == 2 and "k:0" in listed.stdout and "bad receive_id" in listed.stdout
    retried = cli("outbox", "retry", "1", "--db", url)
    assert retried.returncode == 0 and "1 message(s) queued again" in retried.stdout
    with db.transaction() as s:
        statuses = [r.status for r in s.scalars(select(OutboxMessage).order_by(OutboxMessage.id))]
    assert statuses == ["pending", "dead", "pending"]
    assert "1 message(s)" in cli("outbox", "retry", "--db", url).stdout
    # an id that is not there, or not dead, is named (not a silent "0 queued"), and the status says so
    missed = cli("outbox", "retry", "1", "999999", "--db", url)
    assert missed.returncode == 2 and "0 message(s) queued again" in missed.stdout
    assert "message 1 is pending, not dead" in missed.stderr and "there is no message 999999" in missed.stderr
    db.dispose()


def test_db_upgrade_is_idempotent(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'u.db'}"
    for _ in range(2):
        result = cli("db", "upgrade", "--db", url)
        assert result.returncode == 0 and "up to date" in result.stdout


def test_serve_warns_when_a_year_has_no_holiday_data_and_answers_health(tmp_path: Path) -> None:
    import urllib.request

    port = free_port()
    config = write_config(tmp_path / "c.toml", f"sqlite:///{tmp_path / 's.db'}", port=port)
    clock = tmp_path / "clock"
    clock.write_text("2030-06-01T10:00:00+08:00")  # years the holiday package cannot know yet
    proc = ServeProcess(config, clock_file=clock)
    try:
        proc.wait_for(lambda: any("serving on" in line for line in proc.log), what="the server to start")
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=5) as response:
            assert response.status == 200
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as response:
            assert b"collabbot_uptime_seconds" in response.read()
    finally:
        proc.stop()
    warnings = [line for line in proc.log if "No holiday data for" in line and "extra_holidays" in line]
    assert any("2030" in line for line in warnings) and any("2031" in line for line in warnings)


# --- whatever the admin got wrong: one line, exit status 2 ------------------------------------------

def one_line_refusal(result: subprocess.CompletedProcess[str]) -> str:
    """The single line a refused command prints; no traceback, nothing on stdout."""
    assert result.returncode == 2, (result.returncode, result.stderr)
    lines = [line for line in result.stderr.splitlines() if line.strip() and " WARNING " not in line]
    assert len(lines) == 1 and "Traceback" not in result.stderr, result.stderr
    return lines[0]


@pytest.mark.parametrize("url, says", [
    ("notaurl", "--db: is not a database URL"),
    ("mysql://root@localhost/collabbot", "--db: mysql:// is not supported"),
    ("sqlite://", "--db: a SQLite URL needs a file"),
    ("sqlite:///:memory:", "--db: a SQLite URL needs a file"),
    ("postgresql+psycopg://bot@127.0.0.1/", "--db: a PostgreSQL URL needs a database name"),
    ("postgresql+psycopg://bot:s3cret@127.0.0.1:{port}/collabbot", "database error: cannot open postgresql+psycopg://bot:***@127.0.0.1:{port}/collabbot"),
    ("postgresql://bot@127.0.0.1:{port}/collabbot", "Connection refused"),
    ("postgresql+psycopg://bot@127.0.0.1:{port}/collabbot?password=s3cret", "database error: cannot open"),
    ("sqlite:///{tmp}/no/such/dir/x.db", "database error: cannot open sqlite:///"),
])
@pytest.mark.parametrize("command", [("db", "upgrade"), ("outbox", "list"), ("console", "--script", "/dev/null")])
def test_a_bad_db_url_is_one_clear_line(tmp_path: Path, url: str, says: str, command: tuple[str, ...]) -> None:
    port = free_port()  # nothing listens there: an unreachable PostgreSQL
    url, says = url.format(port=port, tmp=tmp_path), says.format(port=port)
    line = one_line_refusal(cli(*command, "--db", url))
    assert says in line
    assert "s3cret" not in line


def test_a_file_that_is_no_database_or_a_newer_one_or_nowhere_to_lock_is_one_clear_line(tmp_path: Path) -> None:
    garbage = tmp_path / "backup.db"
    garbage.write_bytes(b"not a database at all " * 100)
    line = one_line_refusal(cli("db", "upgrade", "--db", f"sqlite:///{garbage}"))
    assert line.startswith("database error: cannot open sqlite:///") and "not a database" in line, line
    newer = f"sqlite:///{tmp_path / 'newer.db'}"
    db = Database(newer)
    upgrade(db.engine)
    with db.transaction() as s:
        s.execute(text("UPDATE alembic_version SET version_num = '0999'"))
    db.dispose()
    line = one_line_refusal(cli("db", "upgrade", "--db", newer))
    assert "was migrated by a newer CollabBot" in line, line
    line = one_line_refusal(cli("serve", "--db", f"sqlite:///{tmp_path}/no/such/dir/x.db"))
    assert line.startswith("config error: database.url: cannot create "), line


def test_a_bad_url_in_the_config_file_is_named_by_its_key(tmp_path: Path) -> None:
    config = tmp_path / "c.toml"
    config.write_text('[database]\nurl = "sqlite://"\n', encoding="utf-8")
    line = one_line_refusal(cli("--config", str(config), "db", "upgrade"))
    assert line.startswith("config error: database.url: a SQLite URL needs a file")


def test_config_may_follow_the_command(tmp_path: Path) -> None:
    """`collabbot serve --config FILE` (as admins type it) reads the file like `collabbot --config FILE serve`;
    given after the command it wins over one given before."""
    bad = write_config(tmp_path / "bad.toml", f"sqlite:///{tmp_path / 's.db'}", port=99999)
    good = tmp_path / "good.toml"
    good.write_text(f'[database]\nurl = "sqlite:///{tmp_path / "g.db"}"\n', encoding="utf-8")
    refusal = "config error: server.port: must be at most 65535 (a TCP port)"
    assert one_line_refusal(cli("serve", "--config", str(bad))) == refusal
    assert one_line_refusal(cli("--config", str(good), "serve", "--config", str(bad))) == refusal
    migrated = cli("--config", str(bad), "db", "upgrade", "--config", str(good))
    assert migrated.returncode == 0, migrated.stderr
    assert (tmp_path / "g.db").exists() and not (tmp_path / "s.db").exists()


def test_a_port_out_of_range_or_in_use_is_one_clear_line(tmp_path: Path) -> None:
    config = write_config(tmp_path / "c.toml", f"sqlite:///{tmp_path / 's.db'}", port=99999)
    assert one_line_refusal(cli("--config", str(config), "serve")) == \
        "config error: server.port: must be at most 65535 (a TCP port)"
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        config = write_config(tmp_path / "c.toml", f"sqlite:///{tmp_path / 's.db'}", port=port)
        result = cli("--config", str(config), "serve")
    lines = [line for line in result.stderr.splitlines() if line.startswith(("cannot listen", "Traceback"))]
    assert result.returncode == 2 and len(lines) == 1, result.stderr
    assert "address already in use" in lines[0] and str(port) in lines[0] and "server.port" in lines[0]
    assert "reuse_port" in lines[0]


@pytest.mark.parametrize("bad", ["abc", "-1", "1.5", "０", "0", "99999999999999999999999"])
def test_outbox_retry_refuses_what_is_not_a_message_id(tmp_path: Path, bad: str) -> None:
    line = one_line_refusal(cli("outbox", "retry", "1", bad, "--db", f"sqlite:///{tmp_path / 'o.db'}"))
    assert line.startswith("outbox retry:") and "is not a message id" in line
    assert not (tmp_path / "o.db").exists()  # refused before anything was opened


ORG_WITH_A_TYPO = """\
# a typo in the second person's department
[[departments]]
name = "技术部"
head = "李四"

[[people]]
name = "李四"
department = "技术部"

[[people]]
name = "王五"
departmnet = "技术部"
supervisor = "李四"
"""


def test_org_load_refuses_an_unknown_key_with_its_line(tmp_path: Path) -> None:
    org = tmp_path / "org.toml"
    org.write_text(ORG_WITH_A_TYPO, encoding="utf-8")
    url = f"sqlite:///{tmp_path / 'org.db'}"
    line = one_line_refusal(cli("org", "load", str(org), "--db", url))
    assert "line 12: people[1] (王五): unknown key 'departmnet'" in line
    org.write_text(ORG_WITH_A_TYPO.replace("[[people]]\nname = \"李四\"", "[[peopel]]\nname = \"李四\""), encoding="utf-8")
    assert "line 6: unknown key 'peopel'" in one_line_refusal(cli("org", "load", str(org), "--db", url))


def test_org_load_dry_run_shows_the_changes_and_writes_nothing(tmp_path: Path) -> None:
    org = tmp_path / "org.toml"
    org.write_text(ORG_WITH_A_TYPO.replace("departmnet", "department"), encoding="utf-8")
    url = f"sqlite:///{tmp_path / 'org.db'}"
    dry = cli("org", "load", str(org), "--dry-run", "--db", url)
    assert dry.returncode == 0, dry.stderr
    assert "would change: person added: 王五" in dry.stdout and "would change: department of 王五: 技术部" in dry.stdout
    assert "(dry run: nothing written)" in dry.stdout
    db = Database(url)
    with db.transaction() as s:
        assert s.scalar(select(func.count()).select_from(User)) == 0
    real = cli("org", "load", str(org), "--db", url)
    assert real.returncode == 0 and "person added: 王五" in real.stdout and "would" not in real.stdout
    with db.transaction() as s:
        wang = s.scalar(select(User).where(User.name == "王五"))
        assert wang is not None and wang.department is not None and wang.department.name == "技术部"
    again = cli("org", "load", str(org), "--dry-run", "--db", url)
    assert again.stdout.strip() == "0 change(s) (dry run: nothing written)"
    db.dispose()


def console(tmp_path: Path, script: str, *args: str) -> subprocess.CompletedProcess[str]:
    path = tmp_path / "script.txt"
    path.write_text(script, encoding="utf-8")
    temp = tmp_path / "tmp"
    temp.mkdir(exist_ok=True)
    return subprocess.run([sys.executable, "-m", "collabbot.adapters.server", *args, "console", "--script", str(path)],
                          capture_output=True, text=True, timeout=60, cwd=tmp_path,
                          env={**os.environ, "TMPDIR": str(temp), "COLLABBOT_CONFIG": ""})


def test_the_console_warns_like_serve_about_years_without_holiday_data(tmp_path: Path) -> None:
    """Once per year the clock is in; a script's clock line comes first (the real date is not checked)."""
    script = "clock 2026-12-01 09:00\nwait 1h\nclock 2030-06-01 09:00\nwait 1h\nclock 2030-12-31 17:00\nwait 1d\n"
    result = console(tmp_path, script)
    assert result.returncode == 0, result.stderr
    warned = [line for line in result.stderr.splitlines() if "No holiday data for" in line]
    assert [line.split("No holiday data for ")[1][:4] for line in warned] == ["2030", "2031"]
    assert all("extra_holidays" in line for line in warned)
    assert console(tmp_path, "clock 2026-12-01 09:00\nwait 1d\n").stderr == ""


def test_the_console_runs_on_a_fresh_temporary_database_removed_at_exit(tmp_path: Path) -> None:
    """Even with a config naming a database: only --db makes the console use (and keep) one."""
    config = tmp_path / "c.toml"
    config.write_text('[database]\nurl = "sqlite:///kept.db"\n', encoding="utf-8")
    script = "in 新品上市群 as 张三: @bot 新建任务 活动页 负责人 @李四\n"
    for args in ((), ("--config", str(config))):
        result = console(tmp_path, script, *args)
        assert result.returncode == 0 and "已创建任务 #1" in result.stdout, result.stderr
        assert list((tmp_path / "tmp").iterdir()) == []  # the temporary database went with the run
    assert not (tmp_path / "kept.db").exists() and not (tmp_path / "collabbot.db").exists()
    # with --db the database is the one named, and it stays: a second run sees the first task
    url = f"sqlite:///{tmp_path / 'named.db'}"
    path = tmp_path / "script.txt"
    first = cli("console", "--db", url, "--script", str(path))
    second = cli("console", "--db", url, "--script", str(path))
    assert "已创建任务 #1" in first.stdout and "已创建任务 #2" in second.stdout


def test_a_console_script_writes_a_message_of_several_lines_as_indented_lines(tmp_path: Path) -> None:
    """会议纪要 with its 行动项 is one message of several lines: in a script, indented lines continue it."""
    script = ("clock 2026-12-01 09:00\n"
              "in 新品上市群 as 张三: @bot 会议纪要 主题 方案评审 时间 12-01 14:00 摘要 比较两版 决议 方案B\n"
              "  行动项 内容 完成H5改版 负责人 @李四 截止 12-10\n"
              "\t行动项 内容 准备物料 负责人 @王五 截止 12-08\n"
              "dm as 李四: 我的任务\n")
    result = console(tmp_path, script)
    assert result.returncode == 0, result.stderr
    assert "2 个行动项已转为任务" in result.stdout and "完成H5改版" in result.stdout, result.stdout
    lonely = console(tmp_path, "clock 2026-12-01 09:00\n  行动项 内容 完成H5改版\n")  # continues no message
    assert lonely.returncode == 3 and "line 2:" in lonely.stderr, lonely.stderr


@pytest.mark.parametrize("extra, env, says", [
    ("", {}, "config error: server.host: cannot be resolved"),  # the host: see below
    ('[reports]\nfolder = "/proc/nope"', {}, "config error: reports.folder: /proc/nope cannot be used"),
    ("[server] spool_dir", {}, "config error: server.spool_dir: /proc/nope/collabbot-inbound-"),
    ('[reports]\nchart_font = "/nope/font.ttc"', {}, "config error: reports.chart_font: /nope/font.ttc is not a file"),
    ("", {"COLLABBOT_LOG_LEVEL": "verbose"}, "config error: COLLABBOT_LOG_LEVEL: 'VERBOSE' is not a level"),
    ('[reports]\npublic_url = "https://bot.example.com"\n'
     '[feishu]\napp_id = "cli_x"\napp_secret = "s"\nverification_token = "t"\nbot_open_id = "ou_b"\npath = "/cb"\nbase_url = "http://127.0.0.1:9"\n'
     '[dingtalk]\nclient_id = "d"\nclient_secret = "s"\ncard_template_id = "t"\nmode = "http"\npath = "/cb"\n'
     'base_url = "http://127.0.0.1:9"', {}, "config error: dingtalk: a callback path is already served"),
    ('[wecom]\ncorp_id = "ww1"\napp_secret = "s"\nagent_id = 1000002\napp_token = "t"\n'
     'app_encoding_aes_key = "abcdefghijklmnopqrstuvwxyz0123456789ABCDEFG"\napp_path = "/healthz"\nbot_id = "b"\n'
     'bot_secret = "x"\nbase_url = "http://127.0.0.1:9"', {},
     "config error: wecom: the path /healthz is already served by collabbot itself"),
])
def test_serve_refuses_what_it_cannot_serve_with_one_line(tmp_path: Path, extra: str, env: dict[str, str],
                                                           says: str) -> None:
    host = "nonexistent.invalid" if "server.host" in says else "127.0.0.1"
    spool = extra == "[server] spool_dir"  # a key of [server], which write_config writes itself
    config = write_config(tmp_path / "c.toml", f"sqlite:///{tmp_path / 's.db'}", port=free_port(),
                          extra="" if spool else extra, host=host)
    if spool:
        config.write_text(config.read_text().replace("[server]\n", '[server]\nspool_dir = "/proc/nope"\n'))
    result = subprocess.run([sys.executable, "-m", "collabbot.adapters.server", "--config", str(config), "serve"],
                            capture_output=True, text=True, timeout=60, env={**os.environ, **env})
    assert one_line_refusal(result).startswith(says)


@pytest.mark.parametrize("people, departments, says", [
    ('[[people]]\nname = "甲"\nsupervisor = "乙"\n[[people]]\nname = "乙"\nsupervisor = "甲"', "",
     "people (甲): supervisors go round: 甲 → 乙 → 甲"),
    ('[[people]]\nname = "甲"\nsupervisor = "甲"', "", "people (甲): is their own supervisor"),
    ('[[people]]\nname = "甲"\n[[people]]\nname = "甲"', "", "people (甲): listed twice"),
    ('[[people]]\nname = "甲"', '[[departments]]\nname = "法务部"\n[[departments]]\nname = "法务部"\nhead = "甲"',
     "departments[1] (法务部): listed twice"),
])
def test_an_org_file_with_a_cycle_or_a_repeat_is_refused_naming_it(tmp_path: Path, people: str, departments: str,
                                                                   says: str) -> None:
    """Accepted before, these were typos that quietly changed who hears an escalation (or which head won)."""
    org = tmp_path / "org.toml"
    org.write_text(f"{departments}\n{people}\n", encoding="utf-8")
    line = one_line_refusal(cli("org", "load", str(org), "--dry-run", "--db", f"sqlite:///{tmp_path / 'o.db'}"))
    assert says in line, line
