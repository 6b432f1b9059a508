"""What the fake platforms check of an uploaded attachment, as the real ones would refuse it: a PNG that
is a PNG (its magic, and Pillow opens it), a workbook that is a real xlsx (a zip openpyxl reads)."""

from __future__ import annotations

import io
import zipfile

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def png_size(data: bytes) -> tuple[int, int] | None:
    """(width, height) of a real PNG, else None."""
    from PIL import Image

    if not data.startswith(PNG_MAGIC):
        return None
    try:
        with Image.open(io.BytesIO(data)) as image:
            image.verify()
        with Image.open(io.BytesIO(data)) as image:
            return image.size if image.format == "PNG" else None
    except Exception:
        return None


def xlsx_sheets(data: bytes) -> list[str] | None:
    """The sheet names of a real xlsx workbook, else None."""
    from openpyxl import load_workbook

    if not data.startswith(b"PK\x03\x04"):
        return None
    try:
        with zipfile.ZipFile(io.BytesIO(data)) as z:
            if "xl/workbook.xml" not in z.namelist():
                return None
        wb = load_workbook(io.BytesIO(data), read_only=True)
        try:
            return list(wb.sheetnames)
        finally:
            wb.close()
    except Exception:
        return None


def tiny_png(width: int = 4, height: int = 3) -> bytes:
    """A small real PNG, for tests that upload an image without drawing a chart."""
    from PIL import Image

    out = io.BytesIO()
    Image.new("RGB", (width, height), (51, 112, 255)).save(out, format="PNG")
    return out.getvalue()
