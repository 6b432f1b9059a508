"""A local spool file: where an inbound event is made durable when the database cannot take it in time.

The inbound queue lives in the database, but a database can stall (a failover, a long lock, a full
disk on the server) while the platforms still expect an answer within seconds — and nothing may be
answered before it is durable. So when the queue's commit has not landed within `spool_after`
seconds, the rows are appended to this file and fsync'd instead, and the callback is answered.
The commit still lands when the database is back; each spooled row is then marked *landed*. At
start, rows never marked landed (the process died first) are moved into the database queue, and
the file starts afresh.

Format: one JSON object per line, `{"id": …, "row": [platform, kind, payload]}` for a spooled row
and `{"landed": id}` once it is in the database. A torn last line (a crash mid-write) is skipped.
"""

from __future__ import annotations

import json
import logging
import os
import threading
import uuid
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)

Row = tuple[str, str, dict[str, Any]]


class Spool:
    def __init__(self, path: Path) -> None:
        self.path = path
        self._lock = threading.Lock()
        self.spooled = 0

    def append(self, rows: list[Row]) -> list[str]:
        """Write rows durably (fsync); their spool ids."""
        ids = [uuid.uuid4().hex for _ in rows]
        lines = "".join(json.dumps({"id": i, "row": list(r)}, ensure_ascii=False) + "\n" for i, r in zip(ids, rows, strict=True))
        self._write(lines)
        self.spooled += len(rows)
        return ids

    def check(self) -> None:
        """Refuse at start a spool that could not be written: it is needed exactly when the database
        stalls, which is too late to find out (OSError). A file made only for the probe is removed."""
        existed = self.path.exists()
        self._write("")
        if not existed:
            self.path.unlink(missing_ok=True)

    def landed(self, ids: list[str]) -> None:
        """These spooled rows reached the database (no fsync needed: losing this line only repeats work
        that the engine's receipts make harmless)."""
        if ids:
            with self._lock, self.path.open("a", encoding="utf-8") as f:
                f.write("".join(json.dumps({"landed": i}) + "\n" for i in ids))

    def _write(self, text: str) -> None:
        with self._lock:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            fd = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
            try:
                os.write(fd, text.encode())
                os.fsync(fd)
            finally:
                os.close(fd)

    def pending(self) -> list[Row]:
        """Spooled rows never marked landed, in the order they were written."""
        if not self.path.exists():
            return []
        rows: dict[str, Row] = {}
        for line in self.path.read_text(encoding="utf-8").splitlines():
            try:
                entry = json.loads(line)
            except ValueError:
                log.warning("inbound spool %s: a torn line skipped", self.path)
                continue
            if "landed" in entry:
                rows.pop(entry["landed"], None)
            elif "id" in entry and isinstance(entry.get("row"), list) and len(entry["row"]) == 3:
                platform, kind, payload = entry["row"]
                rows[entry["id"]] = (platform, kind, payload)
        return list(rows.values())

    def reset(self) -> None:
        """Start afresh (after the pending rows were moved into the database)."""
        with self._lock:
            self.path.unlink(missing_ok=True)
