"""Charts and workbooks through the platforms: the engine's attachment (chart data, a workbook's file name)
drawn and uploaded by each real adapter against its fake, which refuses anything but a real PNG or a real
xlsx. The rows come from the real engine (导出, 报表) or are written to the outbox as the engine writes them."""

from __future__ import annotations

import base64
import json
import os
import re
from collections.abc import AsyncIterator
from dataclasses import replace
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer
from sqlalchemy import select

from collabbot.adapters.kit.files import FileLinks, load_secret, prune
from collabbot.adapters.kit.media import Media
from collabbot.bot.clock import ManualClock
from collabbot.bot.config import ConfigError, ReportSettings, parse_config
from collabbot.bot.replies import Attachment, Card, Chart, Message
from collabbot.bot.reports import export
from collabbot.bot.sweep import weekly_summary
from collabbot.cards import workbook
from collabbot.storage import outbox
from collabbot.storage.db import Database
from collabbot.storage.models import OutboxMessage

from . import dingtalk_payloads as dp
from . import fake_wecom as fw
from .conftest import TZ
from .dingtalk_env import GROUP, DingTalkEnv
from .dingtalk_env import make_env as make_dingtalk
from .feishu_env import FeishuEnv
from .feishu_env import make_env as make_feishu
from .media_checks import tiny_png, xlsx_sheets
from .wecom_env import WecomEnv
from .wecom_env import make_env as make_wecom

START = datetime(2026, 12, 1, 9, 0, tzinfo=TZ)  # Tuesday
BARS = (("市场部", 80), ("技术部", 55), ("设计部", 100))
CHART = Chart("bar", "各部门按时完成率", ("市场部", "技术部"), (("按时完成率", (80.0, 55.0)),), "%")


@pytest.fixture(autouse=True)
def exports(tmp_path: Path) -> AsyncIterator[Path]:
    folder = tmp_path / "exports"
    export.install_dir(folder)
    workbook.install()
    yield folder
    export.install_dir(None)


def enqueue(db: Database, platform: str, target_kind: str, target_id: str, message: Message, key: str) -> None:
    with db.transaction() as s:
        assert outbox.enqueue(s, dedupe_key=key, platform=platform, target_kind=target_kind, target_id=target_id,
                              target_name=target_id, payload=message.to_json(), now=START)


def rows(db: Database) -> list[OutboxMessage]:
    with db.transaction() as s:
        found = list(s.scalars(select(OutboxMessage).order_by(OutboxMessage.id)))
        s.expunge_all()
        return found


def summary_card(title: str = "周报 · 新品上市") -> Card:
    return Card(kind="summary", key="summary:1:2026-W49", title=title, fields=(("本周完成", "#1 海报"),), chart=BARS)


def test_an_attachment_survives_the_outbox_json_and_old_rows_read_the_same() -> None:
    chart = Message(("本周",), summary_card(), attachment=Attachment("chart", "c.png", chart=CHART))
    assert Message.from_json(json.loads(json.dumps(chart.to_json()))) == chart
    file = Message(("报表已导出",), attachment=Attachment("file", "报表-技术部-本月.xlsx", ref="report-x.xlsx"))
    assert Message.from_json(json.loads(json.dumps(file.to_json()))) == file
    old = {"parts": ["hello"], "card": None}  # a row written before attachments
    assert Message.from_json(old) == Message(("hello",)) and "attachment" not in Message(("hello",)).to_json()
    with pytest.raises(ValueError):
        Message.from_json({"parts": [], "card": None, "attachment": {"kind": "exe", "name": "x"}})


def test_the_card_bars_become_a_chart_only_where_the_platform_cannot_draw_them() -> None:
    media = Media()
    card_only = Message(card=summary_card())
    assert media.chart_of(card_only, native=True) is None
    derived = media.chart_of(card_only, native=False)
    assert derived is not None and derived.labels == ("市场部", "技术部", "设计部") and derived.unit == "%"
    assert derived.series[0][1] == (80.0, 55.0, 100.0) and "按时完成率" in derived.title
    explicit = Message(card=summary_card(), attachment=Attachment("chart", "c.png", chart=CHART))
    assert media.chart_of(explicit, native=False) == CHART
    assert media.chart_of(explicit, native=True) is None  # the card's own chart serves
    burn_up = Chart("line", "燃尽", ("11-30", "12-01"), (("范围", (1.0, 2.0)), ("完成", (0.0, 1.0))))
    with_lines = Message(card=summary_card(), attachment=Attachment("chart", "b.png", chart=burn_up))
    assert media.chart_of(with_lines, native=True) == burn_up  # a chart the card does not draw: sent as well
    assert media.chart_of(Message(attachment=Attachment("chart", "c.png", chart=CHART)), native=True) == CHART
    assert Media(lang="en").chart_of(card_only, native=False).title.endswith("On-time rate by department")


# --- Feishu -------------------------------------------------------------------------------------

@pytest.fixture
async def feishu(sqlite_db: Database) -> AsyncIterator[FeishuEnv]:
    e = await make_feishu(sqlite_db, START)
    yield e
    await e.close()


async def test_feishu_exports_the_workbook_as_a_file_message(feishu: FeishuEnv, exports: Path) -> None:
    status, _ = await feishu.say("导出 本月", sender="ou_li", chat_id="oc_p2p_li", chat_type="p2p", bot=False)
    assert status == 200
    assert await feishu.deliver() == 1
    [row] = rows(feishu.db)
    assert row.status == "sent", row.last_error
    [upload] = feishu.fake.api_calls("POST", "/open-apis/im/v1/files")
    assert upload.body["file_type"] == "xls" and upload.body["file_name"].endswith(".xlsx")
    [(key, stored)] = feishu.fake.files.items()
    assert xlsx_sheets(stored["data"])[:4] == ["任务", "进度", "审批", "部门统计"]
    assert stored["name"].startswith("报表-李四-") and "/" not in stored["name"]
    [sent] = feishu.fake.sent("ou_li")
    assert sent["msg_type"] == "file" and sent["content"] == {"file_key": key}
    assert str(exports) not in json.dumps(feishu.fake.sent(), ensure_ascii=False)  # no server path in the chat


async def test_feishu_keeps_the_native_chart_and_sends_an_explicit_chart_as_an_image(feishu: FeishuEnv) -> None:
    enqueue(feishu.db, "feishu", "chat", "oc_group", Message(("本周",), summary_card()), "summary:a")
    enqueue(feishu.db, "feishu", "chat", "oc_group", Message(attachment=Attachment("chart", "c.png", chart=CHART)),
            "chart:b")
    assert await feishu.deliver() == 2
    assert all(r.status == "sent" for r in rows(feishu.db)), [r.last_error for r in rows(feishu.db)]
    [card, image] = feishu.fake.sent("oc_group")
    assert card["msg_type"] == "interactive" and '"chart"' in json.dumps(card["content"])  # the native chart
    assert image["msg_type"] == "image"
    [(key, size)] = feishu.fake.image_sizes.items()
    assert image["content"] == {"image_key": key} and size == (800, 450)


async def test_a_chart_image_refused_by_the_chats_rate_limit_follows_its_card_a_moment_later(feishu: FeishuEnv) -> None:
    """The row is paced as one message, but a card with a chart is two: the picture may meet Feishu's
    per-chat limit (230020). The card is out, so the row is not retried; the picture waits for the next
    slot instead of being lost."""
    burn_up = Chart("line", "燃尽", ("周一", "周二"), (("完成", (1.0, 2.0)),))
    enqueue(feishu.db, "feishu", "chat", "oc_group",
            Message(("本周",), summary_card(), attachment=Attachment("chart", "b.png", chart=burn_up)), "summary:c")
    feishu.fake.enforce_chat_limit(1, 0.5)  # the card takes the chat's only slot for half a second
    assert await feishu.deliver() == 1
    [row] = rows(feishu.db)
    assert row.status == "sent" and row.attempts == 1
    assert [m["msg_type"] for m in feishu.fake.sent("oc_group")] == ["interactive", "image"]
    assert len(feishu.fake.limit_refusals) == 1


async def test_feishu_refuses_a_fake_png_and_the_row_fails_for_good(feishu: FeishuEnv) -> None:
    from collabbot.adapters.feishu.client import FeishuApiError

    with pytest.raises(FeishuApiError) as caught:
        await feishu.adapter.sender.upload_image(b"\x89PNG\r\n\x1a\nnot really", "x.png", "chat")
    assert caught.value.code == 234011 and not caught.value.transient


# --- DingTalk -----------------------------------------------------------------------------------

@pytest.fixture
async def dingtalk(sqlite_db: Database) -> AsyncIterator[DingTalkEnv]:
    e = await make_dingtalk(sqlite_db, START)
    yield e
    await e.close()


async def test_dingtalk_uploads_the_workbook_as_media_and_sends_a_sample_file(dingtalk: DingTalkEnv) -> None:
    status, _ = await dingtalk.post(dp.robot_message("导出 本月", sender="li01", at=dingtalk.clock.now(),
                                                     conversation="cidPrivateLi", group=False))
    assert status == 200
    assert await dingtalk.deliver() == 1
    [row] = rows(dingtalk.db)
    assert row.status == "sent", row.last_error
    [upload] = dingtalk.fake.api_calls("POST", "/media/upload")
    assert upload.query["type"] == "file" and upload.query["access_token"] in dingtalk.fake.tokens
    [(media_id, media)] = dingtalk.fake.media.items()
    assert xlsx_sheets(media["data"])[:4] == ["任务", "进度", "审批", "部门统计"]
    [sent] = dingtalk.fake.sent("li01")
    assert sent["content"] == {"mediaId": media_id, "fileName": media["name"], "fileType": "xlsx"}
    assert media["name"].startswith("报表-李四-") and media["name"].endswith(".xlsx")
    [send] = dingtalk.fake.api_calls("POST", "/v1.0/robot/oToMessages/batchSend")
    assert send.body["msgKey"] == "sampleFile"


async def test_dingtalk_sends_the_summary_card_then_its_chart_as_a_sample_image(dingtalk: DingTalkEnv) -> None:
    enqueue(dingtalk.db, "dingtalk", "chat", GROUP, Message(("本周",), summary_card()), "summary:w49")
    assert await dingtalk.deliver() == 1
    [row] = rows(dingtalk.db)
    assert row.status == "sent", row.last_error
    card, image = dingtalk.fake.sent(GROUP)
    assert card["kind"] == "card" and "周报" in json.dumps(card["content"], ensure_ascii=False)
    [(media_id, media)] = dingtalk.fake.media.items()
    assert media["type"] == "image" and media["size"] == (800, 450)
    assert image["content"] == {"photoURL": media_id}
    [send] = dingtalk.fake.api_calls("POST", "/v1.0/robot/groupMessages/send")
    assert send.body["msgKey"] == "sampleImageMsg" and send.body["openConversationId"] == GROUP
    assert row.platform_message_id == card["id"]  # the card's id: a tap updates the card, not the picture


async def test_a_chart_that_fails_after_its_card_is_logged_and_the_card_is_not_sent_twice(
        dingtalk: DingTalkEnv, caplog: pytest.LogCaptureFixture) -> None:
    dingtalk.fake.fail("server_error", path="/v1.0/robot/groupMessages/send", times=5)
    enqueue(dingtalk.db, "dingtalk", "chat", GROUP, Message(("本周",), summary_card()), "summary:w49")
    assert await dingtalk.deliver() == 1
    [row] = rows(dingtalk.db)
    assert row.status == "sent" and row.attempts == 1
    [card] = dingtalk.fake.sent(GROUP)
    assert card["kind"] == "card"
    assert any("chart image after" in r.getMessage() and "(the card was)" in r.getMessage() for r in caplog.records)


async def test_an_upload_that_fails_shows_nothing_and_the_row_is_retried(dingtalk: DingTalkEnv) -> None:
    dingtalk.fake.expire_tokens()  # and a refused token on the upload: refreshed once, single-flight
    dingtalk.fake.fail("server_error", path="/media/upload", times=1)
    enqueue(dingtalk.db, "dingtalk", "chat", GROUP, Message(("本周",), summary_card()), "summary:w49")
    await dingtalk.deliver()
    [row] = rows(dingtalk.db)
    assert row.status == "pending" and row.attempts == 1 and not dingtalk.fake.sent(GROUP)
    dingtalk.clock.advance(timedelta(minutes=15))
    await dingtalk.deliver()
    [row] = rows(dingtalk.db)
    assert row.status == "sent"
    assert [m["kind"] for m in dingtalk.fake.sent(GROUP)] == ["card", "text"]  # the card once, then the picture
    assert len(dingtalk.fake.media) == 1


async def test_dingtalk_refuses_a_file_that_is_not_a_workbook(dingtalk: DingTalkEnv) -> None:
    from collabbot.adapters.dingtalk.client import DingTalkApiError

    with pytest.raises(DingTalkApiError) as caught:
        await dingtalk.adapter.sender.upload_file(b"PK\x03\x04 not a zip", "报表.xlsx", "user")
    assert caught.value.code == "40005" and not caught.value.transient
    assert await dingtalk.adapter.sender.upload_image(tiny_png(), "c.png", "chat") in dingtalk.fake.media


# --- WeCom --------------------------------------------------------------------------------------

@pytest.fixture
async def wecom(sqlite_db: Database) -> AsyncIterator[WecomEnv]:
    e = await make_wecom(sqlite_db, START)
    yield e
    await e.close()


async def test_wecom_robot_uploads_on_its_long_connection_and_pushes_the_chart_and_the_workbook(
        wecom: WecomEnv) -> None:
    await wecom.robot_says("@协作机器人 绑定项目 官网 协同负责人 @张三", userid="zhangsan", chatid="wr1")
    await wecom.deliver()
    enqueue(wecom.db, "wecom", "chat", "wr1", Message(("本周",), summary_card()), "summary:w49")
    await wecom.robot_says("@协作机器人 导出 本月", userid="zhangsan", chatid="wr1")
    await wecom.deliver()
    assert all(r.status == "sent" for r in rows(wecom.db)), [(r.dedupe_key, r.last_error) for r in rows(wecom.db)]
    commands = [f["cmd"] for f in wecom.fake.frames_in]
    assert commands.count("aibot_upload_media_finish") == 2
    images = [m for m in wecom.fake.robot_media.values() if m["type"] == "image"]
    files = [m for m in wecom.fake.robot_media.values() if m["type"] == "file"]
    assert [m["size"] for m in images] == [(800, 450)]
    assert len(files) == 1 and xlsx_sheets(files[0]["data"])[:4] == ["任务", "进度", "审批", "部门统计"]
    assert files[0]["name"].startswith("报表-官网-")
    pushed = [(p["msgtype"], p.get(p["msgtype"], {}).get("media_id")) for p in wecom.fake.pushes if p["chatid"] == "wr1"]
    kinds = [kind for kind, _ in pushed]
    assert kinds.index("image") > 0 and kinds[kinds.index("image") - 1] == "markdown"  # right after its card
    by_type = {m["type"]: media_id for media_id, m in wecom.fake.robot_media.items()}
    assert ("image", by_type["image"]) in pushed and ("file", by_type["file"]) in pushed


async def test_wecom_app_sends_the_workbook_privately_as_a_file(wecom: WecomEnv) -> None:
    status, _ = await wecom.app_says(fw.app_text("导出 本月", userid="lisi"))
    assert status == 200
    await wecom.deliver()
    [row] = rows(wecom.db)
    assert row.status == "sent", row.last_error
    [(media_id, info)] = wecom.fake.media_info.items()
    assert info["type"] == "file" and info["name"].startswith("报表-李四-")  # the UTF-8 name WeCom shows
    assert xlsx_sheets(wecom.fake.media[media_id])[:4] == ["任务", "进度", "审批", "部门统计"]
    [sent] = [m for m in wecom.fake.sent if m["touser"] == "lisi"]
    assert sent["msgtype"] == "file" and sent["file"] == {"media_id": media_id}
    [upload] = wecom.fake.api_calls("/cgi-bin/media/upload")
    assert upload.query["type"] == "file"


async def test_wecom_refuses_a_chart_that_is_not_a_png(wecom: WecomEnv) -> None:
    from collabbot.adapters.wecom.client import WecomApiError

    with pytest.raises(WecomApiError) as caught:
        await wecom.adapter.sender.upload_image(b"\x89PNG\r\n\x1a\nno", "c.png", "user")
    assert caught.value.code == 40005
    with pytest.raises(WecomApiError) as caught:
        await wecom.adapter.sender.upload_image(b"GIF89a", "c.png", "chat")
    assert caught.value.code == 40005


# --- signed download links --------------------------------------------------------------------------

SECRET = b"s" * 64


@pytest.fixture
async def links_server(exports: Path) -> AsyncIterator[tuple[FileLinks, TestClient, ManualClock]]:
    clock = ManualClock(START)
    links = FileLinks(exports, SECRET, "", 24, clock)
    app = web.Application()
    links.add_routes(app)
    http = TestClient(TestServer(app))
    await http.start_server()
    links.public_url = str(http.make_url("")).rstrip("/")
    yield links, http, clock
    await http.close()


def write_file(folder: Path, name: str = "report-all-0-x-0a1b2c3d.xlsx", data: bytes = b"PK\x03\x04 data") -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / name).write_bytes(data)
    return folder / name


async def test_a_signed_link_downloads_the_file_until_it_expires(
        links_server: tuple[FileLinks, TestClient, ManualClock], exports: Path,
        caplog: pytest.LogCaptureFixture) -> None:
    links, http, clock = links_server
    path = write_file(exports)
    url = links.url(path.name, "报表-技术部-本月.xlsx")
    caplog.set_level("INFO", logger="collabbot.access")
    response = await http.get(url.removeprefix(links.public_url))
    assert response.status == 200 and await response.read() == path.read_bytes()
    assert "filename*=UTF-8''%E6%8A%A5%E8%A1%A8" in response.headers["Content-Disposition"]
    assert response.headers["Cache-Control"] == "private, no-store"
    assert any("downloaded report-all-0-x-0a1b2c3d.xlsx" in r.getMessage() for r in caplog.records)
    clock.advance(timedelta(hours=24, minutes=1))
    response = await http.get(url.removeprefix(links.public_url))
    assert response.status == 403 and await response.text() == "forbidden\n"
    assert any("refused (expired)" in r.getMessage() for r in caplog.records)


async def test_forged_altered_and_escaping_tokens_are_refused_alike(
        links_server: tuple[FileLinks, TestClient, ManualClock], exports: Path, tmp_path: Path) -> None:
    links, http, clock = links_server
    path = write_file(exports)
    (tmp_path / "secret.txt").write_text("do not serve")
    token = links.token(path.name, "a.xlsx")
    payload, mac = token.split(".")
    other = FileLinks(exports, b"x" * 64, "", 24, clock).token(path.name, "a.xlsx")
    escaping = _signed({"r": "../secret.txt", "n": "a", "e": 2_000_000_000}, links)
    dotfile = _signed({"r": ".link-secret", "n": "a", "e": 2_000_000_000}, links)
    for bad in (other, payload + "." + mac[:-2] + "AA", _b64json({"r": path.name, "n": "a", "e": 2_000_000_000}) + "." + mac,
                escaping, dotfile, "x" * 2000, "no-dot-at-all", "a.b.c", "%2e%2e%2fsecret.txt"):
        response = await http.get(f"/files/{bad}")
        assert response.status == 403, bad
        assert await response.text() == "forbidden\n"
    response = await http.get("/files/../secret.txt")
    assert response.status in (403, 404) and "do not serve" not in await response.text()
    assert (await http.get(f"/files/{token}")).status == 200
    path.unlink()
    assert (await http.get(f"/files/{token}")).status == 404  # removed since: gone, not forbidden
    with pytest.raises(ValueError):
        links.token("../secret.txt", "a")


def _b64json(data: dict[str, Any]) -> str:
    return base64.urlsafe_b64encode(json.dumps(data).encode()).rstrip(b"=").decode()


def _signed(data: dict[str, Any], links: FileLinks) -> str:
    """A token signed with the right key around a payload the bot would never make (defence in depth)."""
    payload = _b64json(data)
    return f"{payload}.{links._mac(payload)}"


def test_old_workbooks_are_pruned_and_nothing_else(tmp_path: Path) -> None:
    folder = tmp_path / "exports"
    old = write_file(folder, "report-all-0-x-00000001.xlsx")
    fresh = write_file(folder, "report-all-0-x-00000002.xlsx")
    other = write_file(folder, "notes-old.xlsx")
    secret = load_secret(folder)
    now = START.timestamp()
    for path in (old, other, folder / ".link-secret"):
        os.utime(path, (now - 49 * 3600, now - 49 * 3600))
    os.utime(fresh, (now - 47 * 3600, now - 47 * 3600))
    assert prune(folder, timedelta(hours=48), now) == 1
    assert not old.exists() and fresh.exists() and other.exists() and load_secret(folder) == secret
    assert prune(tmp_path / "missing", timedelta(hours=48), now) == 0


def test_the_generated_secret_is_made_once_and_kept_private(tmp_path: Path) -> None:
    folder = tmp_path / "exports"
    first = load_secret(folder)
    assert load_secret(folder) == first and len(first) >= 64
    assert (folder / ".link-secret").stat().st_mode & 0o777 == 0o600
    assert [p.name for p in folder.iterdir()] == [".link-secret"]  # no temporary file left behind


def test_the_reports_section_is_checked(tmp_path: Path) -> None:
    assert parse_config({}).reports == ReportSettings()
    settings = parse_config({"reports": {"link_hours": 48, "public_url": "https://bot.example.com/",
                                         "link_secret": "k" * 20, "folder": "exports"}}, tmp_path).reports
    assert settings.link_hours == 48 and settings.public_url == "https://bot.example.com"
    assert settings.folder == str(tmp_path / "exports")  # relative to the config file
    for bad, key in (({"link_hours": 0}, "reports.link_hours"), ({"link_hours": "24"}, "reports.link_hours"),
                     ({"link_hours": 721}, "reports.link_hours"), ({"public_url": "ftp://x"}, "reports.public_url"),
                     ({"public_url": "https://x/?a=1"}, "reports.public_url"),
                     ({"link_secret": "short"}, "reports.link_secret"), ({"linkhours": 3}, "reports.linkhours")):
        with pytest.raises(ConfigError) as caught:
            parse_config({"reports": bad})
        assert caught.value.key == key
    with pytest.raises(ConfigError):
        parse_config({"reports": "yes"})


async def test_dingtalk_sends_a_link_for_a_workbook_too_big_to_upload(
        dingtalk: DingTalkEnv, exports: Path) -> None:
    app = web.Application()
    links = FileLinks(exports, SECRET, "", 24, dingtalk.clock)
    links.add_routes(app)
    http = TestClient(TestServer(app))
    await http.start_server()
    try:
        links.public_url = str(http.make_url("")).rstrip("/")
        dingtalk.adapter.sender.media = Media(links=links)
        dingtalk.adapter.sender.file_limit = 100  # a workbook over the platform's limit
        await dingtalk.post(dp.robot_message("导出 本月", sender="li01", at=dingtalk.clock.now(),
                                             conversation="cidPrivateLi", group=False))
        assert await dingtalk.deliver() == 1
        assert not dingtalk.fake.api_calls("POST", "/media/upload")
        [sent] = dingtalk.fake.sent("li01")
        text = sent["content"]["content"]
        assert "报表工作簿「报表-李四-" in text and "24 小时内有效" in text
        url = re.search(r"https?://\S+", text).group(0)
        response = await http.get(url.removeprefix(links.public_url))
        assert response.status == 200 and xlsx_sheets(await response.read())[:4] == ["任务", "进度", "审批", "部门统计"]
    finally:
        await http.close()


async def test_without_a_public_url_the_person_is_told_instead_of_a_link(dingtalk: DingTalkEnv) -> None:
    dingtalk.adapter.sender.file_limit = 0
    await dingtalk.post(dp.robot_message("导出 本月", sender="li01", at=dingtalk.clock.now(),
                                         conversation="cidPrivateLi", group=False))
    assert await dingtalk.deliver() == 1
    [sent] = dingtalk.fake.sent("li01")
    assert "没有配置下载链接" in sent["content"]["content"] and "http" not in sent["content"]["content"]


async def test_wecom_in_url_callback_mode_sends_groups_links_not_files(wecom: WecomEnv) -> None:
    sender = wecom.adapter.sender
    assert sender.takes_files("chat") and sender.takes_images("chat")  # the long connection
    sender.settings = replace(sender.settings, robot_mode="callback")
    assert not sender.takes_files("chat") and not sender.takes_images("chat")
    assert sender.takes_files("user") and sender.takes_images("user")


# --- 报表 end to end, on both databases ---------------------------------------------------------------

async def test_the_report_card_carries_its_chart_through_dingtalk(db: Database) -> None:
    env = await make_dingtalk(db, START)
    try:
        async def say(text: str, sender: str, at_users: list[str] | None = None) -> None:
            status, _ = await env.post(dp.robot_message(text, sender=sender, at=env.clock.now(), at_users=at_users))
            assert status == 200

        await say("绑定项目 官网 协同负责人 @zhang01", "zhang01", ["zhang01"])
        await say("新建任务 活动H5开发 负责人 @li01 截止 12-10", "zhang01", ["li01"])
        await say("完成 #1 交付物 https://h5.example.com/x", "li01")
        await say("通过 #1", "zhang01")
        await env.deliver()
        before = len(env.fake.sent(GROUP))
        await say("报表", "zhang01")
        await env.deliver()
        assert all(r.status == "sent" for r in rows(env.db)), [(r.dedupe_key, r.last_error) for r in rows(env.db)]
        report = [r for r in rows(env.db) if r.payload.get("attachment")]
        # a project's report: its burn-up, which the card's text cannot show (the on-time bars are in the card)
        assert len(report) == 1 and report[0].payload["attachment"]["chart"]["kind"] == "line"
        assert report[0].payload["attachment"]["chart"]["labels"] == ["11-30", "12-01"]
        card, image = env.fake.sent(GROUP)[before:]
        assert "报表" in json.dumps(card["content"], ensure_ascii=False)
        [(media_id, media)] = env.fake.media.items()
        assert image["content"] == {"photoURL": media_id} and media["size"] == (800, 450)
        # the weekly summary, as the sweep writes it: its card's bars become the picture after the card
        with env.bot.db.transaction() as s:
            assert weekly_summary(env.bot, s, env.clock.now(), force=True) == 1
        env.clock.advance(timedelta(minutes=10))
        await env.deliver()
        card, image = env.fake.sent(GROUP)[before + 2:]
        assert "周报" in json.dumps(card["content"], ensure_ascii=False) and len(env.fake.media) == 2
        assert image["content"]["photoURL"] in env.fake.media
    finally:
        await env.close()
