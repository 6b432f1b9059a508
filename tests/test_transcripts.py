"""The example transcripts end to end: through the real `collabbot console` command line (a fresh SQLite
file each run) and through the console harness on SQLite and PostgreSQL, compared with the golden
files in tests/golden/. `UPDATE_GOLDEN=1 pytest tests/test_transcripts.py` rewrites them; read the
diff before committing it, the golden files are what a newcomer sees.

Also the transcript runner's failure modes: a malformed line (bad syntax, an unknown person or chat)
stops the run with exit status 3 and "line N" on stderr.
"""

from __future__ import annotations

import difflib
import os
import subprocess
import sys
from pathlib import Path

import pytest

from .conftest import EXAMPLES, Harness

GOLDEN = Path(__file__).parent / "golden"
TRANSCRIPTS = ("quickstart", "demo", "escalation")
EXIT_TRANSCRIPT = 3


def updating() -> bool:
    return os.environ.get("UPDATE_GOLDEN") == "1" or bool(os.environ.get("COLLABBOT_UPDATE_GOLDEN"))


def check_golden(name: str, got: list[str]) -> None:
    path = GOLDEN / f"{name}.out"
    if updating():
        path.write_text("\n".join(got) + "\n", encoding="utf-8")
    want = path.read_text(encoding="utf-8").splitlines()
    assert got == want, "\n".join(difflib.unified_diff(want, got, f"golden/{name}.out", "now", lineterm="", n=2))


def clean_env(tmp_path: Path) -> dict[str, str]:
    """The environment for a CLI run: no COLLABBOT_* settings leaking in, temp files under tmp_path."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("COLLABBOT_")}
    env["TMPDIR"] = str(tmp_path)
    return env


def console(tmp_path: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "collabbot.adapters.server", "console", *args],
                          capture_output=True, text=True, timeout=120, cwd=tmp_path, env=clean_env(tmp_path),
                          check=False)


# --- golden output --------------------------------------------------------------------------------

@pytest.mark.parametrize("name", TRANSCRIPTS)
def test_the_cli_prints_the_golden_output(tmp_path: Path, name: str) -> None:
    result = console(tmp_path, "--echo", "--script", str(EXAMPLES / f"{name}.txt"),
                     "--db", f"sqlite:///{tmp_path / 'console.db'}")
    assert result.returncode == 0, result.stderr
    assert result.stderr == ""
    check_golden(name, result.stdout.splitlines())


@pytest.mark.parametrize("name", TRANSCRIPTS)
def test_the_harness_prints_the_golden_output_on_both_databases(harness: Harness, name: str) -> None:
    check_golden(name, harness.script(EXAMPLES / f"{name}.txt"))


def test_the_golden_escalation_follows_the_working_clock() -> None:
    """Read as a person would: assigned 09:00, nagged 11:00 and 14:30 (lunch is not working time), the
    supervisor told the next morning at 09:00; the one who acknowledged is never nagged."""
    lines = (GOLDEN / "escalation.out").read_text(encoding="utf-8").splitlines()
    sent = [line for line in lines if line.startswith("[")]
    nags = [line for line in sent if "请确认收到任务 #1" in line]
    assert [line[:13] for line in nags] == ["[12-01 11:00]", "[12-01 11:00]", "[12-01 14:30]", "[12-01 14:30]"]
    assert {line.split(": ", 1)[0][14:] for line in nags} == {"→ 新品上市群", "→ 孙九（私聊）"}
    assert all("@孙九" in line for line in nags if "新品上市群" in line)
    escalation = [line for line in sent if "赵总" in line]
    assert escalation == [
        "[12-02 09:00] → 赵总（私聊）: 孙九 的这件事已超过 24 小时未回应，请跟进：",
        "[12-02 09:00] → 新品上市群: @孙九 任务 #1「物料采购」待确认收到，已超过 24 小时未回应，已告知 赵总。",
    ]
    assert not any("请确认收到任务 #2" in line or "#2「渠道报名」待确认收到" in line for line in sent)
    assert "  │ 已提醒：2" in lines


def test_the_golden_demo_ends_with_every_task_accepted() -> None:
    text = (GOLDEN / "demo.out").read_text(encoding="utf-8")
    for n, title in ((1, "活动H5开发"), (2, "视觉设计稿"), (3, "前端开发")):
        assert f"→ 新品上市群: 任务 #{n}「{title}」已验收通过。" in text
    assert "  │ 子任务：#2 视觉设计稿（王五 · 已完成）；#3 前端开发（赵六 · 已完成）" in text
    # refusals are answered in the group, to the person who was refused, and change nothing
    assert "@李四 不能设置这个依赖，会形成循环：#2 → #3 → #2" in text
    assert "@赵六 任务 #3 还在等待前置任务完成：#2「视觉设计稿」" in text
    assert "@吴十 你不能验收这个任务" in text
    assert "请确认收到任务" not in text  # everybody acknowledged at once: nobody is nagged


# --- malformed transcripts ------------------------------------------------------------------------

GOOD = "dm as 张三: 我的任务"


@pytest.mark.parametrize(("bad", "why"), [
    ("hello there", "expected"),
    ("clock tomorrow", "clock needs a date"),
    ("clock 2026-13-40 09:00", "not a valid date"),
    ("wait a while", "wait needs a duration"),
    ("in 新品上市群 as 张三:", "empty"),
    ("in 新品上市群 as 无名氏: @bot 帮助", "无名氏"),
    ("dm as 无名氏: 帮助", "无名氏"),
    ("in 不存在的群 as 张三: @bot 帮助", "不存在的群"),
    ("in 双十二大促群 as 王五: @bot 帮助", "not a member"),
    ("in 新品上市群 as 张三: tap 不存在的按钮", "不存在的按钮"),
])
def test_a_malformed_line_stops_with_status_3_and_its_line_number(tmp_path: Path, bad: str, why: str) -> None:
    script = tmp_path / "bad.txt"
    script.write_text(f"# a comment\nclock 2026-12-01 09:00\n{GOOD}\n{bad}\n{GOOD}\n", encoding="utf-8")
    result = console(tmp_path, "--script", str(script), "--db", f"sqlite:///{tmp_path / 'c.db'}")
    assert result.returncode == EXIT_TRANSCRIPT, (result.stdout, result.stderr)
    assert "line 4" in result.stderr and why in result.stderr
    assert result.stdout.count("→ 张三（私聊）") == 1  # the line before ran, the line after did not


def test_a_missing_script_file_exits_with_status_3(tmp_path: Path) -> None:
    result = console(tmp_path, "--script", str(tmp_path / "nope.txt"), "--db", f"sqlite:///{tmp_path / 'c.db'}")
    assert result.returncode == EXIT_TRANSCRIPT
    assert "nope.txt" in result.stderr


def test_without_db_the_console_starts_on_a_fresh_database_each_time(tmp_path: Path) -> None:
    """No --db and no config: each run gets its own new SQLite file, so the same transcript prints the
    same thing twice (the second run would otherwise see task #1 and number its tasks #2, #3...)."""
    runs = [console(tmp_path, "--echo", "--script", str(EXAMPLES / "escalation.txt")) for _ in range(2)]
    for result in runs:
        assert result.returncode == 0, result.stderr
    assert runs[0].stdout == runs[1].stdout
    assert runs[0].stdout.splitlines() == (GOLDEN / "escalation.out").read_text(encoding="utf-8").splitlines()
    assert not (tmp_path / "collabbot.db").exists()  # the default file in the working directory is not used
