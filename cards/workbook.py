"""The 导出 workbook: the engine's sheets (`bot/reports/export.py`, plain typed rows) written with openpyxl.

It lives in cards/ because it is a renderer, like the card templates: it turns the engine's neutral data
into one output format and looks nothing up; the adapters and the console call it, the engine never
imports a file-format library. Write-only mode streams rows, so 100,000 tasks stay in bounded memory.
Cells are typed (dates as dates, shares as percentages), the header row is frozen and filtered, and
column widths count a CJK character as two.
"""

from __future__ import annotations

import unicodedata
from pathlib import Path
from typing import Any

from openpyxl import Workbook
from openpyxl.cell import WriteOnlyCell
from openpyxl.styles import Font, PatternFill
from openpyxl.utils import get_column_letter

from collabbot.bot.reports.export import Sheet, install_writer

FORMATS = {"datetime": "yyyy-mm-dd hh:mm", "percent": "0.0%", "hours": "0.0", "number": "0.0", "int": "0"}
MAX_WIDTH = 60
SAMPLE_ROWS = 500  # widths are measured on the first rows; a long tail does not need a wider column


def display_width(value: Any) -> int:
    """Columns a value takes in a spreadsheet: wide (CJK) characters count two."""
    if value is None:
        return 0
    text = value.strftime("%Y-%m-%d %H:%M") if hasattr(value, "strftime") else str(value)
    return sum(2 if unicodedata.east_asian_width(c) in "WF" else 1 for c in text)


def write_workbook(sheets: list[Sheet], path: Path) -> None:
    wb = Workbook(write_only=True)
    bold, fill = Font(bold=True), PatternFill("solid", fgColor="DDEBF7")
    for sheet in sheets:
        ws = wb.create_sheet(sheet.name[:31])
        types = [kind for _, kind in sheet.columns]
        for i, (header, kind) in enumerate(sheet.columns, start=1):
            widest = max([display_width(header), *(display_width(r[i - 1]) for r in sheet.rows[:SAMPLE_ROWS])])
            if kind == "datetime":
                widest = max(widest, 16)
            ws.column_dimensions[get_column_letter(i)].width = min(MAX_WIDTH, widest + 2)
        ws.freeze_panes = "A2"
        last = get_column_letter(len(sheet.columns))
        ws.auto_filter.ref = f"A1:{last}{len(sheet.rows) + 1}"
        header_cells = []
        for header, _ in sheet.columns:
            cell = WriteOnlyCell(ws, value=header)
            cell.font, cell.fill = bold, fill
            header_cells.append(cell)
        ws.append(header_cells)
        formatted = [(i, FORMATS[k]) for i, k in enumerate(types) if k in FORMATS and k != "int"]
        for row in sheet.rows:
            values: list[Any] = list(row)
            for i, fmt in formatted:
                if values[i] is not None:
                    cell = WriteOnlyCell(ws, value=values[i])
                    cell.number_format = fmt
                    values[i] = cell
            ws.append(values)
    path.parent.mkdir(parents=True, exist_ok=True)
    wb.save(path)


def install() -> None:
    """Make 导出 write workbooks with this writer (called by the composition root, and by tests)."""
    install_writer(write_workbook)
