"""The README's report pictures, drawn from the tests' fixed-seed history (tests/report_history.py: three
months, 6 departments, 300 tasks), so anyone can make them again byte for byte on the same fonts:

    python bench/report_charts.py            # writes docs/report-chart.png and docs/report-burnup.png

The on-time rate by department and the burn-up of 双十二活动, for 本季度 as of the history's Friday. It needs
the reports extra and a CJK font (Debian: apt install fonts-noto-cjk).
"""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from collabbot.bot.calendar import WorkCalendar  # noqa: E402
from collabbot.bot.reports import charts, figures  # noqa: E402
from collabbot.bot.reports.period import parse_period  # noqa: E402
from collabbot.bot.reports.scope import Scope  # noqa: E402
from collabbot.cards.charts import render  # noqa: E402
from collabbot.storage.db import Database  # noqa: E402
from collabbot.storage.migrate import upgrade  # noqa: E402
from tests.report_history import NOW, TZ, generate  # noqa: E402


def main() -> None:
    out = ROOT / "docs"
    with tempfile.TemporaryDirectory() as folder:
        db = Database(f"sqlite:///{folder}/history.db")
        upgrade(db.engine)
        h = generate(db)
        cal = WorkCalendar()
        period = parse_period("本季度", NOW, TZ)
        project = next(p for p, name in h.projects.items() if name == "双十二活动")
        with db.transaction() as s:
            everything = figures.Frame(s, Scope("all"), period, NOW, cal)
            one = figures.Frame(s, Scope("project", project, "双十二活动"), period, NOW, cal)
            pictures = {"report-chart.png": charts.on_time_by_department(everything, "zh"),
                        "report-burnup.png": charts.burn_up(one, "zh")}
            for name, spec in pictures.items():
                png = render(spec)
                if png is None:
                    sys.exit("no CJK font: apt install fonts-noto-cjk")
                (out / name).write_bytes(png)
                print(out / name, len(png), "bytes")
        db.dispose()


if __name__ == "__main__":
    main()
