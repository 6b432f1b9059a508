"""A real `collabbot serve` process serves signed workbook links: `[reports]` read from its config, the
route on its port, the secret from the config (or generated once in the export folder), an access log line."""

from __future__ import annotations

import os
import time
import urllib.error
import urllib.request
from datetime import datetime
from pathlib import Path

from collabbot.adapters.kit.files import SECRET_FILE, FileLinks
from collabbot.bot.clock import ManualClock

from .conftest import TZ
from .media_checks import xlsx_sheets
from .serve_process import ServeProcess, free_port, write_config

SECRET = "a-test-secret-of-some-length-0123456789"


def get(url: str) -> tuple[int, bytes, dict[str, str]]:
    try:
        with urllib.request.urlopen(url, timeout=5) as response:
            return response.status, response.read(), dict(response.headers)
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read(), dict(exc.headers)


def workbook(folder: Path) -> Path:
    from openpyxl import Workbook

    folder.mkdir(mode=0o700, parents=True, exist_ok=True)
    path = folder / "report-department-2-2026-12-01~2026-12-31-0a1b2c3d.xlsx"
    wb = Workbook()
    wb.active.title = "任务"
    wb.save(path)
    return path


def test_serve_answers_a_signed_link_with_the_file_and_refuses_a_forged_one(tmp_path: Path) -> None:
    port = free_port()
    folder = tmp_path / "exports"
    path = workbook(folder)
    config = write_config(tmp_path / "config.toml", f"sqlite:///{tmp_path / 'bot.db'}", port=port, extra=f"""
[reports]
link_hours = 2
public_url = "http://127.0.0.1:{port}"
link_secret = "{SECRET}"
folder = "{folder}"
""")
    serve = ServeProcess(config)
    try:
        serve.wait_for(lambda: any("serving on" in line for line in serve.log), what="serve to start")
        links = FileLinks(folder, SECRET.encode(), f"http://127.0.0.1:{port}", 2, ManualClock(datetime.now(TZ)))
        status, body, headers = get(links.url(path.name, "报表-技术部-本月.xlsx"))
        assert status == 200 and body == path.read_bytes() and xlsx_sheets(body) == ["任务"]
        assert headers["Content-Type"].startswith("application/vnd.openxmlformats-officedocument.spreadsheetml")
        forged = FileLinks(folder, b"not-the-secret-0123456789", f"http://127.0.0.1:{port}", 2,
                           ManualClock(datetime.now(TZ))).url(path.name, "x.xlsx")
        assert get(forged)[0] == 403
        serve.wait_for(lambda: any("files:" in line and "downloaded" in line for line in serve.log),
                       what="the download's access log line")
        serve.wait_for(lambda: any("files:" in line and "refused (bad signature)" in line for line in serve.log),
                       what="the refusal's access log line")  # the log is read from a pipe: lines come in their time
    finally:
        serve.stop()
    assert not (folder / SECRET_FILE).exists()  # the configured secret: nothing generated


def test_without_a_configured_secret_serve_makes_one_and_prunes_old_workbooks(tmp_path: Path) -> None:
    port = free_port()
    folder = tmp_path / "exports"
    config = write_config(tmp_path / "config.toml", f"sqlite:///{tmp_path / 'bot.db'}", port=port, extra=f"""
[reports]
folder = "{folder}"
""")
    stale = workbook(folder).rename(folder / "report-all-0-old-00000000.xlsx")
    three_days_ago = time.time() - 72 * 3600
    os.utime(stale, (three_days_ago, three_days_ago))
    serve = ServeProcess(config)
    try:
        serve.wait_for(lambda: any("serving on" in line for line in serve.log), what="serve to start")
        serve.wait_for(lambda: not stale.exists(), what="the stale workbook to be pruned")
        secret = (folder / SECRET_FILE).read_text().strip()
        path = workbook(folder)
        links = FileLinks(folder, secret.encode(), f"http://127.0.0.1:{port}", 24, ManualClock(datetime.now(TZ)))
        assert get(links.url(path.name, "a.xlsx"))[0] == 200
    finally:
        serve.stop()
    assert (folder / SECRET_FILE).stat().st_mode & 0o777 == 0o600


def test_a_bad_reports_section_stops_serve_with_the_key_named(tmp_path: Path) -> None:
    config = write_config(tmp_path / "config.toml", f"sqlite:///{tmp_path / 'bot.db'}", port=free_port(),
                          extra="[reports]\nlink_hours = 0\n")
    serve = ServeProcess(config)
    assert serve.proc.wait(60) == 2
    serve.stop()
    assert any("reports.link_hours" in line for line in serve.log)
