"""Feishu callback bodies → neutral events: mentions decoded once, the bot's removed, ids for dedupe."""

from __future__ import annotations

import contextlib
import json
from datetime import UTC, datetime

import pytest

from collabbot.adapters.feishu import parse
from collabbot.adapters.feishu.config import parse_settings
from collabbot.bot.config import ConfigError
from collabbot.bot.events import MENTION_CLOSE, MENTION_OPEN, MemberEvent, MessageEvent, UserRef, mention_marker
from collabbot.bot.replies import CardAction

from . import feishu_callbacks as cb
from . import odd_json

NOW = datetime(2026, 12, 1, 1, 0, tzinfo=UTC)
BOT = "ou_bot"


def message_of(body: dict) -> MessageEvent:
    what = parse.parse_callback(body, BOT).what
    assert isinstance(what, MessageEvent), what
    return what


def test_group_message_mentioning_the_bot_and_two_people() -> None:
    body = cb.message("@_user_1 新建任务 活动H5 负责人 @_user_2 协作@_user_3 截止 12-10", sender="ou_zhang",
                      mentions=[(BOT, "协作机器人"), ("ou_li", "李四"), ("ou_wang", "王五")], at=NOW, message_id="om_1")
    event = message_of(body)
    assert event.to_bot and event.chat.is_group and event.chat.platform_chat_id == "oc_group"
    assert event.event_id == "om_1"  # the message id, not header.event_id: Feishu resends under new event ids
    assert event.sender == UserRef("feishu", "ou_zhang")
    assert event.mentions == (UserRef("feishu", "ou_li", "李四"), UserRef("feishu", "ou_wang", "王五"))
    assert event.text == f"新建任务 活动H5 负责人  {mention_marker(0)}  协作 {mention_marker(1)}  截止 12-10"


def test_a_group_message_without_the_bot_is_not_to_the_bot() -> None:
    event = message_of(cb.message("@_user_1 你好", sender="ou_a", mentions=[("ou_li", "李四")], at=NOW))
    assert not event.to_bot and event.mentions == (UserRef("feishu", "ou_li", "李四"),)


def test_private_chat_is_always_to_the_bot() -> None:
    event = message_of(cb.message("我的任务", sender="ou_a", chat_type="p2p", chat_id="oc_p2p_a", at=NOW))
    assert event.to_bot and not event.chat.is_group and event.text == "我的任务"


def test_the_same_person_mentioned_twice_is_one_mention_and_placeholders_do_not_collide() -> None:
    people = [(BOT, "bot")] + [(f"ou_{i}", f"P{i}") for i in range(2, 12)]
    text = "@_user_1 " + " ".join(f"@_user_{i}" for i in range(2, 12)) + " @_user_11"
    event = message_of(cb.message(text, sender="ou_a", mentions=people, at=NOW))
    assert [m.platform_user_id for m in event.mentions] == [f"ou_{i}" for i in range(2, 12)]
    assert event.text.count(mention_marker(9)) == 2  # @_user_11, not "@_user_1" + "1"


def test_typed_marker_characters_cannot_forge_a_mention() -> None:
    event = message_of(cb.message(f"@_user_1 转交 #3 {MENTION_OPEN}0{MENTION_CLOSE}", sender="ou_a",
                                  mentions=[(BOT, "bot")], at=NOW))
    assert MENTION_OPEN not in event.text and event.mentions == ()


def test_unknown_placeholders_and_at_all_stay_text() -> None:
    event = message_of(cb.message("@_user_1 帮助 @_user_7 @_all", sender="ou_a", mentions=[(BOT, "bot")], at=NOW))
    assert event.text == "帮助 @_user_7 @_all"


def test_rich_text_post_message() -> None:
    content = {"title": "", "content": [[{"tag": "at", "user_id": "@_user_1", "user_name": "bot"},
                                         {"tag": "text", "text": " 评论 #4 看 "},
                                         {"tag": "a", "text": "方案", "href": "https://example.com"}],
                                        [{"tag": "text", "text": "第二行"}, {"tag": "img", "image_key": "x"}]]}
    event = message_of(cb.message("", sender="ou_a", mentions=[(BOT, "bot")], at=NOW, message_type="post",
                                  content=content))
    assert event.to_bot and event.text == "评论 #4 看 方案\n第二行"


def test_images_stickers_and_bot_senders_are_ignored() -> None:
    image = cb.message("", sender="ou_a", at=NOW, message_type="image", content={"image_key": "img_1"})
    assert isinstance(parse.parse_callback(image, BOT).what, parse.Ignored)
    from_bot = cb.message("hi", sender="ou_a", at=NOW)
    from_bot["event"]["sender"]["sender_type"] = "app"
    assert isinstance(parse.parse_callback(from_bot, BOT).what, parse.Ignored)


def test_bot_mention_found_by_its_type_when_the_bot_id_is_not_known_yet() -> None:
    body = cb.message("@_user_1 帮助", sender="ou_a", mentions=[("ou_x", "bot")], at=NOW)
    body["event"]["message"]["mentions"][0]["mentioned_type"] = "bot"
    assert parse.parse_callback(body, "").what.to_bot


def test_card_action_value_as_object_or_string() -> None:
    packed = CardAction("ack", "task", 12, 3).pack()
    for value in ({"action": packed}, packed, {"other": 1, "v": packed}):
        tap = parse.parse_callback(cb.card_action(value, operator="ou_li", message_id="om_9", chat_id="oc_g",
                                                  at=NOW, event_id="ev-9"), BOT).what
        assert isinstance(tap, parse.CardTap)
        assert (tap.value, tap.message_id, tap.chat_id, tap.event_id) == (packed, "om_9", "oc_g", "ev-9")
        assert tap.event(is_group=True).chat.is_group
    foreign = parse.parse_callback(cb.card_action({"x": "not ours"}, operator="ou_li", message_id="om_9",
                                                  chat_id="oc_g", at=NOW), BOT).what
    assert foreign.value == ""


def test_bot_added_and_removed() -> None:
    added = parse.parse_callback(cb.bot_member("oc_new", "新品上市群", added=True, operator="ou_a", at=NOW), BOT).what
    assert isinstance(added, MemberEvent) and added.added and added.chat.name == "新品上市群"
    removed = parse.parse_callback(cb.bot_member("oc_new", "新品上市群", added=False, operator="ou_a", at=NOW), BOT).what
    assert isinstance(removed, MemberEvent) and not removed.added


def test_approval_instances_are_mapped_only_when_linked() -> None:
    linked = parse.parse_callback(cb.approval_instance("CODE-1", "INST-1", "APPROVED"), BOT, {"CODE-1": "人力支持申请"})
    assert linked.what == parse.ApprovalInstance(linked.event_id, "CODE-1", "INST-1", "APPROVED", "人力支持申请")
    assert isinstance(parse.parse_callback(cb.approval_instance("CODE-2", "I", "APPROVED"), BOT, {}).what, parse.Ignored)


@pytest.mark.parametrize("body", [[], {}, {"schema": "2.0"}, {"schema": "2.0", "header": {"event_type": "x"}},
                                  {"type": "url_verification"}])
def test_malformed_bodies(body: object) -> None:
    with pytest.raises(parse.Malformed):
        parse.parse_callback(body, BOT)


def test_message_content_that_is_not_json_is_malformed() -> None:
    body = cb.message("x", sender="ou_a", at=NOW)
    body["event"]["message"]["content"] = "{oops"
    with pytest.raises(parse.Malformed):
        parse.parse_callback(body, BOT)


def test_settings_validation() -> None:
    base = {"app_id": "cli_1", "app_secret": "s", "verification_token": "t"}
    settings = parse_settings(base)
    assert settings.mode == "webhook" and settings.base_url == "https://open.feishu.cn"
    for bad, key in [({"app_secret": "s", "verification_token": "t"}, "feishu.app_id"),
                     ({**base, "mode": "stream"}, "feishu.mode"),
                     ({**base, "encrypt_kye": "x"}, "feishu.encrypt_kye"),
                     ({**base, "base_url": "open.feishu.cn"}, "feishu.base_url"),
                     ({**base, "urgent": "yes"}, "feishu.urgent"),
                     ({**base, "replay_window_seconds": 0}, "feishu.replay_window_seconds"),
                     ({"app_id": "cli_1", "app_secret": "s"}, "feishu.verification_token")]:
        with pytest.raises(ConfigError) as err:
            parse_settings(bad)
        assert err.value.key == key
    assert parse_settings({"app_id": "cli_1", "app_secret": "s", "mode": "websocket"}).verification_token == ""


def test_the_commented_feishu_section_of_the_example_config_is_complete_and_valid(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """Uncommented, config.example.toml's [feishu] lines parse, and they show every key there is."""
    import tomllib

    from collabbot.adapters.feishu import config as feishu_config
    from collabbot.bot.config import parse_config

    from .conftest import ROOT

    lines = (ROOT / "config.example.toml").read_text(encoding="utf-8").splitlines()
    start = lines.index("# [feishu]")
    section = []
    for line in lines[start:]:
        if not line.startswith("# "):
            break
        text = line[2:]
        if not text.startswith("#") and not text.startswith(" "):
            section.append(text)
    data = tomllib.loads("\n".join(section))
    assert set(data["feishu"]) == feishu_config._KNOWN
    for name in ("FEISHU_APP_SECRET", "FEISHU_VERIFICATION_TOKEN", "FEISHU_ENCRYPT_KEY"):
        monkeypatch.setenv(name, f"value-of-{name}")
    config = parse_config(data)
    settings = parse_settings(config.platforms["feishu"], config)
    assert settings.app_secret == "value-of-FEISHU_APP_SECRET" and settings.mode == "webhook"
    defaults = parse_settings({"app_id": "x", "app_secret": "y", "verification_token": "z"})
    for key in feishu_config._KNOWN - {"app_id", "app_secret", "verification_token", "encrypt_key", "approvals"}:
        assert getattr(settings, key) == getattr(defaults, key), key
    assert settings.approvals == {"7C468A54-8745-2245-9675-08B7C63E7A85": "人力支持申请"}


@pytest.mark.parametrize(("form", "expected"), [
    ('[{"name": "人数", "value": 2}, {"name": "用途", "value": "H5"}]', {"人数": "2", "用途": "H5"}),
    ('[{"name": "附件", "value": ["a"]}, {"name": "开关", "value": true}, {"value": "x"}, 3]', {}),
    ("not json", {}),
    ('{"name": "人数"}', {}),
    (None, {}),
])
def test_an_approval_form_keeps_plain_values_only(form: object, expected: dict[str, str]) -> None:
    assert parse.approval_form(form) == expected


def test_a_bot_menu_tap_is_the_command_its_event_key_names() -> None:
    """机器人自定义菜单事件: the documented body, with event_key "/待我处理"."""
    body = {"schema": "2.0", "header": {"event_id": "5e3702a84e847582be8db7fb73283c02", "event_type":
                                        "application.bot.menu_v6", "create_time": "1608725989000",
                                        "token": "rvaYgkND1GOiu5MM0E1rncYC6PLtF7JV", "app_id": "cli_9e28cb7ba56a100e",
                                        "tenant_key": "736588c9260f175e"},
            "event": {"operator": {"operator_name": "张三", "operator_id": {
                "union_id": "on_8ed6aa67826108097d9ee143816345", "user_id": "e33ggbyz",
                "open_id": "ou_84aad35d084aa403a838cf73ee18467"}},
                "event_key": "/待我处理", "timestamp": "1608725989"}}
    callback = parse.parse_callback(body, BOT)
    event = callback.what
    assert isinstance(event, MessageEvent) and event.text == "/待我处理" and event.to_bot
    assert not event.chat.is_group and event.sender.platform_user_id == "ou_84aad35d084aa403a838cf73ee18467"
    body["event"]["event_key"] = ""
    assert isinstance(parse.parse_callback(body, BOT).what, parse.Ignored)
    body["event"]["operator"]["operator_id"]["open_id"] = "all"
    with pytest.raises(parse.Malformed):
        parse.parse_callback(body, BOT)


def _bodies() -> list[dict]:
    post = {"title": "周报", "content": [[{"tag": "at", "user_id": "@_user_1"}, {"tag": "text", "text": " 我的任务"}]]}
    parsed = cb.message("", sender="ou_a", mentions=[(BOT, "bot")], at=NOW, message_type="post", content=post)
    message = cb.message("@_user_1 我的任务", sender="ou_a", mentions=[(BOT, "bot")], at=NOW)
    for body in (parsed, message):  # the content string as the JSON it holds, so that it too is varied
        body["event"]["message"]["content"] = json.loads(body["event"]["message"]["content"])
    tap = cb.card_action({"a": "accept", "t": "task", "id": 1}, operator="ou_a", message_id="om_1", chat_id="oc_1",
                         at=NOW)
    return [parsed, message, tap, cb.challenge()]


def test_any_odd_value_anywhere_in_a_signed_body_is_parsed_or_refused_as_malformed() -> None:
    tried = 0
    for original in _bodies():
        for body in odd_json.variants(original):
            message = body.get("event") if isinstance(body, dict) else None
            message = message.get("message") if isinstance(message, dict) else None
            if isinstance(message, dict) and isinstance(message.get("content"), (dict, list)):
                message["content"] = json.dumps(message["content"])  # a string of JSON, as Feishu sends it
            with contextlib.suppress(parse.Malformed):
                parse.parse_callback(body, BOT)
            tried += 1
    assert tried > 500
