"""Running real `collabbot serve` processes in tests: config files, output readers, clean stops."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def write_config(path: Path, db_url: str, *, port: int, extra: str = "") -> Path:
    path.write_text(
        f"""
[database]
url = "{db_url}"
[server]
port = {port}
[scheduler]
tick_seconds = 0.1
idle_seconds = 0.05
{extra}
""",
        encoding="utf-8",
    )
    return path


class ServeProcess:
    """A `collabbot serve` subprocess whose stdout (JSON lines) and stderr are read by threads."""

    def __init__(self, config: Path, *, clock_file: Path | None = None, env: dict[str, str] | None = None) -> None:
        full_env = dict(os.environ, COLLABBOT_CONSOLE_JSON="1", COLLABBOT_LOG_LEVEL="INFO", PYTHONUNBUFFERED="1")
        if clock_file is not None:
            full_env["COLLABBOT_CLOCK_FILE"] = str(clock_file)
        full_env.update(env or {})
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "collabbot.adapters.server", "--config", str(config), "serve"],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=full_env,
        )
        self.sent: list[dict] = []
        self.log: list[str] = []
        self._threads = [threading.Thread(target=self._read_out, daemon=True),
                         threading.Thread(target=self._read_err, daemon=True)]
        for t in self._threads:
            t.start()

    def _read_out(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            if line.startswith("{"):
                self.sent.append(json.loads(line))

    def _read_err(self) -> None:
        assert self.proc.stderr is not None
        for line in self.proc.stderr:
            self.log.append(line.rstrip())

    def wait_for(self, condition: Callable[[], bool], timeout: float = 60, what: str = "condition") -> None:
        deadline = time.monotonic() + timeout
        while not condition():
            if self.proc.poll() is not None:
                raise AssertionError(f"serve exited with {self.proc.returncode}: {self.log[-20:]}")
            if time.monotonic() > deadline:
                raise AssertionError(f"timed out waiting for {what}; log tail: {self.log[-10:]}")
            time.sleep(0.02)

    def kill(self) -> None:
        self.proc.kill()
        self.proc.wait(10)
        for t in self._threads:
            t.join(5)

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        for t in self._threads:
            t.join(5)
