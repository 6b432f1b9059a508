"""Report charts: real PNGs of the expected size whose Chinese labels are glyphs, not tofu; without a CJK
font, a warning once and no PNG (the text form is sent)."""

from __future__ import annotations

import io
import logging
from pathlib import Path

import pytest
from matplotlib import font_manager
from PIL import Image

from collabbot.bot.calendar import WorkCalendar
from collabbot.bot.reports import charts as specs
from collabbot.bot.reports import figures
from collabbot.bot.reports.period import parse_period
from collabbot.bot.reports.scope import Scope
from collabbot.cards import charts
from collabbot.storage.db import Database

from .report_history import NOW, TZ, generate

MISSING = "\ue000"  # a private-use code point: no CJK font draws it


@pytest.fixture
def cjk_font() -> Path:
    font = charts.find_cjk_font()
    if font is None:
        pytest.skip("no CJK font installed (.ci/run installs fonts-noto-cjk)")
    return font


def _differing(a: list[int], b: list[int]) -> int:
    """Pixels that clearly differ (anti-aliasing at a box's edge is not a difference)."""
    return sum(1 for x, y in zip(a, b, strict=True) if abs(x - y) > 96)


def test_a_chinese_glyph_is_not_tofu(cjk_font: Path) -> None:
    assert font_manager.get_font(str(cjk_font)).get_char_index(ord(MISSING)) == 0  # known to be missing
    drawn = charts.glyph_pixels("技", cjk_font)
    assert _differing(drawn, charts.glyph_pixels(MISSING, cjk_font)) > 200
    assert _differing(drawn, charts.glyph_pixels("按", cjk_font)) > 100  # two characters, two shapes
    assert sum(1 for v in drawn if v < 128) > 20  # ink, not a blank
    # the check does catch tofu: a Latin-only font draws two different Chinese characters as the same box
    latin = Path(font_manager.findfont("DejaVu Sans"))
    assert charts.glyph_pixels("技", latin) == charts.glyph_pixels("按", latin)


def test_every_chart_is_a_png_of_the_expected_size(db: Database, cjk_font: Path) -> None:
    h = generate(db, tasks=120)
    with db.transaction() as s:
        f = figures.Frame(s, Scope("all"), parse_period("本季度", NOW, TZ), NOW, WorkCalendar())
        made = [specs.on_time_by_department(f, "zh"), specs.overdue_by_department(f, "zh"),
                specs.response_distribution(f, "zh"), specs.burn_up(f, "zh")]
    assert made[0].labels and set(made[0].labels) <= set(h.depts.values())
    assert made[3].series[0][1][-1] >= made[3].series[1][1][-1] > 0  # scope above done, both growing
    for spec in made:
        png = charts.render(spec)
        assert png is not None and png.startswith(b"\x89PNG\r\n\x1a\n")
        image = Image.open(io.BytesIO(png))
        image.verify()
        assert image.size == (800, 450)


def test_without_a_cjk_font_the_chart_is_not_drawn_and_a_warning_is_logged_once(
        monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture) -> None:
    monkeypatch.setattr(charts, "_found", {"": None})
    monkeypatch.setattr(charts, "_warned", [])
    spec = specs.ChartSpec("bar", "各部门按时完成率", ("技术部",), (("按时完成率", (80.0,)),), "%")
    with caplog.at_level(logging.WARNING, logger=charts.__name__):
        assert charts.render(spec) is None and charts.render(spec) is None
    assert [r.message for r in caplog.records].count(caplog.records[0].message) == 1
    assert "fonts-noto-cjk" in caplog.records[0].message
