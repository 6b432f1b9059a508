"""A database outage is reported by the background loops once a minute in one line, not a traceback a
second; any other failure keeps its traceback."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest
from sqlalchemy import text
from sqlalchemy.exc import OperationalError

from collabbot.scheduler import outage
from collabbot.storage.db import Database


def _unreachable(tmp_path: Path) -> OperationalError:
    db = Database(f"sqlite:///{tmp_path}/no/such/dir/x.db")
    try:
        with db.transaction() as s:
            s.execute(text("SELECT 1"))
    except OperationalError as exc:
        return exc
    finally:
        db.dispose()
    raise AssertionError("a database in a directory that does not exist opened")


def test_an_outage_is_one_line_a_minute_and_anything_else_keeps_its_traceback(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    log = logging.getLogger("collabbot.test_outage")
    down = _unreachable(tmp_path)
    with caplog.at_level(logging.INFO, logger="collabbot.test_outage"):
        for _ in range(5):
            try:
                raise down
            except OperationalError as exc:
                outage.report(log, "delivery batch failed (test)", exc)
    [record] = caplog.records
    assert record.exc_info is None and "does not answer: unable to open database file" in record.getMessage()
    caplog.clear()
    with caplog.at_level(logging.INFO, logger="collabbot.test_outage"):
        try:
            raise KeyError("a bug")
        except KeyError as exc:
            outage.report(log, "sweep failed (test)", exc)
    [record] = caplog.records
    assert record.exc_info is not None and record.getMessage() == "sweep failed (test)"
