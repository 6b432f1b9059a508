"""The workbook writers (cards/workbook.py): the fast one and the openpyxl fallback give the same workbook,
read back with openpyxl: typed cells, formats, a frozen bold header, filters, widths that fit Chinese, an
empty sheet's header, and hostile text kept as text (no formula, no broken XML)."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path
from zoneinfo import ZoneInfo

import openpyxl
import pytest

from collabbot.bot.reports.export import LocalTimes, Sheet
from collabbot.cards import workbook

SHEETS = [
    Sheet("任务", (("任务名称", "text"), ("截止时间", "datetime"), ("完成比例", "percent"), ("完成数", "int"),
                 ("用时", "hours")),
          [("#1 活动H5开发页面", datetime(2026, 12, 2, 18, 0), 0.5, 3, 1.25),
           ("=HYPERLINK(\"http://evil.example\")", None, None, 0, None),
           ("<b>&amp;</b> 第三", datetime(2026, 12, 3, 9, 30), 1.0, 12, 0.0)]),
    Sheet("收集", (("收集", "text"), ("提交时间", "datetime")), []),
]


def _read(path: Path) -> dict[str, object]:
    wb = openpyxl.load_workbook(path)
    out: dict[str, object] = {"names": wb.sheetnames}
    for ws in wb.worksheets:
        out[ws.title] = {
            "rows": [[c.value for c in r] for r in ws.iter_rows() if any(c.value is not None for c in r)],
            "formats": [c.number_format for c in ws[2]] if ws.max_row > 1 else [],
            "types": [c.data_type for c in ws[2]] if ws.max_row > 1 else [],
            "bold": all(c.font.b for c in ws[1]),
            "freeze": ws.freeze_panes,
            "filter": ws.auto_filter.ref.split(":")[0] if ws.auto_filter.ref else None,
            "widths": [int(ws.column_dimensions[col].width or 0) for col in "ABCDE"[:ws.max_column]],
        }
    return out


@pytest.mark.parametrize("writer", [workbook.write_fast, workbook.write_openpyxl], ids=["fast", "openpyxl"])
def test_each_writer_gives_the_typed_workbook(tmp_path: Path, writer) -> None:
    path = tmp_path / "x.xlsx"
    writer(SHEETS, path)
    got = _read(path)
    assert got["names"] == ["任务", "收集"]
    tasks = got["任务"]
    assert tasks["rows"] == [  # type: ignore[index]
        ["任务名称", "截止时间", "完成比例", "完成数", "用时"],
        ["#1 活动H5开发页面", datetime(2026, 12, 2, 18, 0), 0.5, 3, 1.25],
        ["=HYPERLINK(\"http://evil.example\")", None, None, 0, None],
        ["<b>&amp;</b> 第三", datetime(2026, 12, 3, 9, 30), 1, 12, 0]]
    assert tasks["formats"] == ["General", "yyyy-mm-dd hh:mm", "0.0%", "General", "0.0"]  # type: ignore[index]
    assert tasks["types"][0] == "s" and tasks["types"][1] == "d"  # type: ignore[index]
    assert openpyxl.load_workbook(path)["任务"]["A3"].data_type == "s"  # text, not a formula
    assert tasks["bold"] and tasks["freeze"] == "A2" and tasks["filter"] == "A1"  # type: ignore[index]
    assert tasks["widths"][0] >= 19 and tasks["widths"][1] >= 16  # type: ignore[index]  # CJK counts two
    empty = got["收集"]
    assert empty["rows"] == [["收集", "提交时间"]] and empty["freeze"] == "A2"  # type: ignore[index]


def test_both_writers_read_back_alike(tmp_path: Path) -> None:
    workbook.write_fast(SHEETS, tmp_path / "a.xlsx")
    workbook.write_openpyxl(SHEETS, tmp_path / "b.xlsx")
    assert _read(tmp_path / "a.xlsx") == _read(tmp_path / "b.xlsx")


def test_stored_times_become_local_cells() -> None:
    """SQLite's text and PostgreSQL's naive UTC alike, in a fixed zone and in one with summer time."""
    shanghai, berlin = LocalTimes(ZoneInfo("Asia/Shanghai")), LocalTimes(ZoneInfo("Europe/Berlin"))
    assert shanghai("2026-12-02 10:00:00.000000") == datetime(2026, 12, 2, 18, 0)
    assert shanghai(datetime(2026, 12, 2, 10, 0)) == datetime(2026, 12, 2, 18, 0)
    assert shanghai(datetime(1988, 7, 1, 10, 0)) == datetime(1988, 7, 1, 19, 0)  # China's summer time then
    assert berlin("2026-07-01 10:00:00") == datetime(2026, 7, 1, 12, 0)
    assert berlin(datetime(2026, 1, 1, 10, 0)) == datetime(2026, 1, 1, 11, 0)
    assert berlin("2026-03-29 00:59:00") == datetime(2026, 3, 29, 1, 59)  # the minute before the change
    assert berlin("2026-03-29 01:00:00") == datetime(2026, 3, 29, 3, 0)
    assert shanghai(None) is None
