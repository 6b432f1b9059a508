"""The admin's command line: outbox list/retry, the start-up calendar warning, db upgrade."""

from __future__ import annotations

import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path

from sqlalchemy import select

from collabbot.storage import outbox
from collabbot.storage.db import Database
from collabbot.storage.migrate import upgrade
from collabbot.storage.models import OutboxMessage

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
