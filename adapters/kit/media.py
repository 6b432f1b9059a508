"""Attachments on their way out: which chart a message carries, its PNG, the workbook's file, or a link.

The engine decides *what* (a `Chart`'s data, a workbook's file name); this module turns it into bytes
for a platform sender, outside the engine: the PNG is drawn by `cards/charts.py` (matplotlib) in a
worker thread, the workbook is read from the export folder. A card's own bars (`Card.chart`: on-time
rate by department, in the weekly summary and the 报表 card) become a chart image on the platforms
that cannot draw a chart inside a card; the platforms that can (Feishu) keep the native chart.

Without a CJK font, or without matplotlib, there is no PNG: the card's text bars are the chart (the
warning is logged once by the renderer), never a picture of tofu boxes.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass
from pathlib import Path

from collabbot.adapters.kit.files import REF, FileLinks
from collabbot.bot import texts
from collabbot.bot.replies import Attachment, Chart, Message
from collabbot.bot.reports.export import export_dir
from collabbot.scheduler.delivery import DeliveryError

log = logging.getLogger(__name__)

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
_no_matplotlib: list[bool] = []


@dataclass
class Media:
    """What every sender of one `serve` shares: the language of chart titles, the chart font, the links."""

    lang: str = "zh"
    font: str = ""
    links: FileLinks | None = None

    def chart_of(self, message: Message, *, native: bool) -> Chart | None:
        """The chart to send as an image with `message`, if any. `native`: the platform draws the card's
        bars itself, so a card with bars needs no image of them (another chart, a burn-up, it does)."""
        card_bars = message.card is not None and bool(message.card.chart)
        attachment = message.attachment
        if attachment is not None and attachment.kind == "chart" and attachment.chart is not None:
            return None if native and card_bars and attachment.chart.kind == "bar" else attachment.chart
        if card_bars and not native:
            assert message.card is not None
            t = lambda key: texts.t(self.lang, key)  # noqa: E731
            return Chart("bar", f"{message.card.title} · {t('chart_on_time')}",
                         tuple(label for label, _ in message.card.chart),
                         ((t("chart_on_time_series"), tuple(float(v) for _, v in message.card.chart)),), "%")
        return None

    async def png(self, chart: Chart) -> bytes | None:
        """The chart drawn, or None: no font, no library. In a thread, the import too: loading matplotlib
        and finding a font take a second or more the first time, and the event loop must keep answering
        callbacks and heartbeats meanwhile."""
        data = await asyncio.to_thread(self._draw, chart)
        if data is not None and not data.startswith(PNG_MAGIC):
            raise DeliveryError("the chart renderer did not make a PNG", transient=False)
        return data

    def _draw(self, chart: Chart) -> bytes | None:
        try:
            from collabbot.cards import charts
        except ImportError:
            if not _no_matplotlib:
                _no_matplotlib.append(True)
                log.warning("charts are sent as text: matplotlib is not installed (pip install 'collabbot[reports]')")
            return None
        return charts.render(chart, self.font or None)  # type: ignore[arg-type]

    def file_of(self, attachment: Attachment) -> Path:
        """The attachment's file in the export folder; a name that is not a plain file name, or a file that is
        gone, fails the row for good."""
        if attachment.kind != "file" or not REF.fullmatch(attachment.ref):
            raise DeliveryError(f"not a file attachment: {attachment.ref[:80]!r}", transient=False)
        path = export_dir() / attachment.ref
        if not path.is_file():
            raise DeliveryError(f"the file {attachment.ref} is gone from {export_dir()}", transient=False)
        return path

    def link_message(self, attachment: Attachment) -> Message:
        """The words that stand for a file a platform cannot take: a signed link, or why there is none."""
        if self.links is None or not self.links.public_url:
            log.error("a workbook (%s) could not be sent as a file and [reports] public_url is not set, so no "
                      "download link can be made", attachment.ref)
            return Message((texts.t(self.lang, "export_no_link", name=attachment.name),))
        url = self.links.url(attachment.ref, attachment.name)
        return Message((texts.t(self.lang, "export_link", name=attachment.name, url=url, hours=self.links.hours),))
