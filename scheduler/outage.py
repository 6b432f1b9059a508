"""How the background loops report a database that does not answer: one line a minute, not a traceback a
second. An outage is one event to an admin; a page of identical tracebacks buries the line that says
what is wrong. Anything else still logs its traceback."""

from __future__ import annotations

import logging
import time

from sqlalchemy.exc import InterfaceError, OperationalError

from collabbot.storage.db import error_line

EVERY_SECONDS = 60.0
_last: dict[str, float] = {}


def report(log: logging.Logger, what: str, exc: BaseException) -> None:
    """Log `what` failed because of `exc` (called from an `except` block)."""
    if not isinstance(exc, OperationalError | InterfaceError | ConnectionError):
        log.exception("%s", what)
        return
    now = time.monotonic()
    if now - _last.get(what, -EVERY_SECONDS) < EVERY_SECONDS:
        return
    _last[what] = now
    log.error("%s: the database does not answer: %s (said once a minute while it lasts)", what, error_line(exc))
