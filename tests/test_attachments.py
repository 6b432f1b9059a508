"""Charts and workbooks through the platforms: the engine's attachment (chart data, a workbook's file name)
drawn and uploaded by each real adapter against its fake, which refuses anything but a real PNG or a real
xlsx. The rows come from the real engine (导出, 报表) or are written to the outbox as the engine writes them."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from datetime import datetime
from pathlib import Path

import pytest
from sqlalchemy import select

from collabbot.adapters.kit.media import Media
from collabbot.bot.replies import Attachment, Card, Chart, Message
from collabbot.bot.reports import export
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
