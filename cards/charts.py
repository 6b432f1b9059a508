"""Report charts as PNG, drawn with matplotlib's Agg backend from the engine's `ChartSpec`s.

Chinese labels need a CJK font: one is looked for once (a configured file, else Noto Sans CJK /
Source Han Sans / WenQuanYi among the system's fonts). Without one, `render` logs a warning once and
returns None, and the caller sends the text form: a chart of tofu boxes is worse than none.
"""

from __future__ import annotations

import io
import logging
import threading
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # no display, no GUI toolkit: safe in a server thread
from matplotlib import font_manager
from matplotlib.figure import Figure

from collabbot.bot.reports.charts import ChartSpec

log = logging.getLogger(__name__)

CJK_FAMILIES = ("Noto Sans CJK SC", "Noto Sans CJK JP", "Noto Sans SC", "Source Han Sans SC", "Source Han Sans CN",
                "WenQuanYi Zen Hei", "WenQuanYi Micro Hei", "Noto Serif CJK SC")
PROBE = "按时完成率部门技"  # characters a font must have to draw our labels
SIZE = (8.0, 4.5)  # inches
DPI = 100  # 800 x 450 pixels: readable on a phone, small to upload
COLORS = ("#3370ff", "#34c724", "#ff8800", "#f54a45")

_lock = threading.Lock()
_found: dict[str, Path | None] = {}
_warned: list[bool] = []


def _has_glyphs(path: Path) -> bool:
    try:
        font = font_manager.get_font(str(path))
    except Exception:
        return False
    return all(font.get_char_index(ord(c)) for c in PROBE)


def find_cjk_font(configured: str | None = None) -> Path | None:
    """The font file to draw Chinese with, looked up once per configured value (None: none found)."""
    key = configured or ""
    with _lock:
        if key in _found:
            return _found[key]
        found: Path | None = None
        if configured:
            path = Path(configured)
            found = path if path.is_file() and _has_glyphs(path) else None
            if found is None:
                log.warning("chart font %s is missing or has no Chinese glyphs; looking among the system's", configured)
        if found is None:
            by_name = {f.name: Path(f.fname) for f in font_manager.fontManager.ttflist}
            candidates = [by_name[n] for n in CJK_FAMILIES if n in by_name]
            # fonts installed after matplotlib built its cache are not in it: look at the usual places too
            for pattern in ("NotoSansCJK*", "SourceHanSans*", "wqy-*", "NotoSerifCJK*"):
                for root in (Path("/usr/share/fonts"), Path("/usr/local/share/fonts")):
                    if root.is_dir():
                        candidates += sorted(root.rglob(pattern))
            found = next((c for c in candidates if c.suffix.lower() in (".ttc", ".otf", ".ttf") and _has_glyphs(c)),
                         None)
        _found[key] = found
        return found


def render(spec: ChartSpec, font: str | None = None) -> bytes | None:
    """The chart as PNG bytes (800 x 450), or None when no CJK font is there (warned once)."""
    path = find_cjk_font(font)
    if path is None:
        if not _warned:
            _warned.append(True)
            log.warning("no CJK font found: charts are sent as text. Install one (Debian: apt install fonts-noto-cjk) "
                        "or name a font file in the config")
        return None
    prop = font_manager.FontProperties(fname=str(path))
    fig = Figure(figsize=SIZE, dpi=DPI)
    ax = fig.add_subplot()
    ax.set_title(spec.title, fontproperties=prop, fontsize=14)
    positions = range(len(spec.labels))
    if spec.kind == "line":
        for i, (name, values) in enumerate(spec.series):
            ax.plot(list(positions), list(values), label=name, color=COLORS[i % len(COLORS)], linewidth=2)
    else:
        width = 0.8 / max(1, len(spec.series))
        for i, (name, values) in enumerate(spec.series):
            offset = (i - (len(spec.series) - 1) / 2) * width
            ax.bar([p + offset for p in positions], list(values), width=width, label=name,
                   color=COLORS[i % len(COLORS)])
    step = max(1, len(spec.labels) // 12)  # at most about 12 labels under a line chart
    shown = list(positions)[::step]
    ax.set_xticks(shown, [spec.labels[i] for i in shown], fontproperties=prop)
    if spec.unit == "%":
        ax.set_ylim(0, 100)
        ax.set_ylabel("%")
    if len(spec.series) > 1:
        ax.legend(prop=prop)
    ax.grid(axis="y", alpha=0.3)
    fig.tight_layout()
    out = io.BytesIO()
    fig.savefig(out, format="png")
    return out.getvalue()


def glyph_pixels(char: str, font: Path, px: int = 48) -> list[int]:
    """A character drawn alone, as grey levels: a test compares it with a character the font lacks (tofu)."""
    fig = Figure(figsize=(px / DPI, px / DPI), dpi=DPI)
    fig.text(0.5, 0.5, char, fontproperties=font_manager.FontProperties(fname=str(font)), fontsize=px * 0.6,
             ha="center", va="center")
    out = io.BytesIO()
    fig.savefig(out, format="rgba")
    data = out.getvalue()
    return list(data[0::4])  # the red channel is enough for black on white
