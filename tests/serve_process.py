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

ROOT = Path(__file__).resolve().parents[1]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def write_config(path: Path, db_url: str, *, port: int, extra: str = "", host: str = "127.0.0.1") -> Path:
    path.write_text(
        f"""
[database]
url = "{db_url}"
[server]
host = "{host}"
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

    def __init__(self, config: Path, *, clock_file: Path | None = None, env: dict[str, str] | None = None,
                 module: str = "collabbot.adapters.server") -> None:
        full_env = dict(os.environ, COLLABBOT_CONSOLE_JSON="1", COLLABBOT_LOG_LEVEL="INFO", PYTHONUNBUFFERED="1")
        if clock_file is not None:
            full_env["COLLABBOT_CLOCK_FILE"] = str(clock_file)
        full_env.update(env or {})
        self.proc = subprocess.Popen(
            [sys.executable, "-m", module, "--config", str(config), "serve"],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=full_env, cwd=ROOT,
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


def metrics(port: int) -> dict[str, float]:
    """A serve process's /metrics, as {name with labels: value}."""
    import urllib.request

    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as response:
        text = response.read().decode()
    return {name: float(value) for name, value in (line.rsplit(" ", 1) for line in text.splitlines() if line)}


def slow_instances(db_url: str, tmp: Path, *, processes: int, rows: int, delay: float, claim_seconds: float,
                   batch_size: int = 200, timeout: float = 120) -> dict[str, float]:
    """`processes` serve processes drain `rows` outbox rows through a sender slower than the lease.

    The rows must already be queued for the `slowtest` platform (tests/slow_platform.py). Returns the
    figures: rows delivered, duplicates, lost, seconds, the fewest rows one process sent, and the sum
    of the processes' /metrics "sent" counters."""
    procs: list[tuple[ServeProcess, int]] = []
    began = time.monotonic()
    for n in range(processes):
        port = free_port()
        config = write_config(tmp / f"slow{n}.toml", db_url, port=port, extra=f"""
[delivery]
batch_size = {batch_size}
claim_seconds = {claim_seconds}
[slowtest]
delay_seconds = {delay}
""")
        procs.append((ServeProcess(config, module="tests.slow_platform"), port))
    try:
        for p, _ in procs:
            p.wait_for(lambda p=p: any("serving on" in line for line in p.log), what="a server to start")
        first = procs[0][0]
        first.wait_for(lambda: len({m["key"] for p, _ in procs for m in p.sent}) >= rows, timeout=timeout,
                       what=f"{rows} deliveries")
        seconds = time.monotonic() - began
        time.sleep(3 * claim_seconds)  # any late duplicate (an expired lease re-sent) would show up now
        counted = sum(metrics(port).get('collabbot_delivery_total{outcome="sent"}', 0) for _, port in procs)
    finally:
        for p, _ in procs:
            p.stop()
    keys: dict[str, int] = {}
    for p, _ in procs:
        for m in p.sent:
            keys[m["key"]] = keys.get(m["key"], 0) + 1
    return {"rows": rows, "delivered": len(keys), "duplicates": sum(n - 1 for n in keys.values()),
            "lost": rows - len(keys), "seconds": seconds, "fewest_per_process": min(len(p.sent) for p, _ in procs),
            "metrics_sent": counted}
