"""An id shaped like "everyone" never becomes a mention: not from a callback, not in any rendering."""

from __future__ import annotations

import json
from datetime import datetime

import pytest

from collabbot.adapters.feishu import parse
from collabbot.bot.events import MENTION_OPEN
from collabbot.bot.replies import At, Card, Message
from collabbot.cards import render

from . import feishu_callbacks as cb
from .conftest import TZ

AT = datetime(2026, 12, 1, 9, 0, tzinfo=TZ)
EVERYONE_MARKS = ('<at user_id="all"', "<at id=all", '"isAtAll": true', "<@all>", "@all", '"user_id": "all"')


@pytest.mark.parametrize("hostile", ["all", "ALL", "@all", "ou_x\"><at user_id=\"all\">"])
def test_a_feishu_mention_or_sender_not_shaped_like_an_open_id_is_no_person(hostile: str) -> None:
    body = cb.message("@_user_1 评论 #1 @_user_2 看看", sender="ou_zhang",
                      mentions=[("ou_bot", "bot"), ("ou_li", "李四")], at=AT)
    body["event"]["message"]["mentions"][1]["id"]["open_id"] = hostile
    event = parse.parse_callback(body, "ou_bot").what
    assert event.mentions == () and MENTION_OPEN not in event.text  # left as the placeholder's text
    body["event"]["sender"]["sender_id"]["open_id"] = hostile
    with pytest.raises(parse.Malformed):
        parse.parse_callback(body, "ou_bot")


@pytest.mark.parametrize("platform", ["feishu", "dingtalk", "wecom"])
@pytest.mark.parametrize("hostile", ["all", "ALL", "@all", "everyone", "所有人"])
def test_no_rendering_turns_an_everyone_id_into_a_mention(platform: str, hostile: str) -> None:
    card = Card(kind="notice", key="task:1", title="t")
    for message in (Message(("提醒 ", At(1, hostile, "所有人"))), Message((At(1, hostile, "x"), " 看看"), card)):
        rendered = json.dumps(render.render_message(platform, message), ensure_ascii=False).replace('\\"', '"')
        assert not any(mark in rendered for mark in EVERYONE_MARKS), rendered
