"""cards/: every card kind on every platform is valid for the platform (JSON Schemas in cards/schemas/,
written from the platforms' documents), stays within its size limits, keeps its buttons' packed
actions, and stays inert whatever a user typed into it: no mention, no @all, no link, no broken JSON
— while a real `At` still becomes a real mention."""

from __future__ import annotations

import json
import re
import unicodedata
from collections.abc import Iterator
from importlib import resources
from typing import Any

import pytest
from jsonschema import Draft202012Validator

from collabbot.bot.replies import At, Button, Card, CardAction, Message
from collabbot.cards import escape, render
from collabbot.cards.render import PLATFORMS, render_card, render_message

from . import feishu_callbacks as cb

SCHEMAS = {p: json.loads((resources.files("collabbot.cards") / "schemas" / f"{p}.json").read_text("utf-8"))
           for p in PLATFORMS}
CARD_DEF = {"feishu": "card", "dingtalk": "card_param_map", "wecom": "template_card"}
LI = At(2, "ou_li", "李四")


def validator(platform: str, definition: str | None = None) -> Draft202012Validator:
    schema = SCHEMAS[platform]
    if definition is not None:
        schema = {"$schema": schema["$schema"], "$defs": schema["$defs"], "$ref": f"#/$defs/{definition}"}
    return Draft202012Validator(schema)


def b(label: str, action: str, entity: str, entity_id: int, style: str = "default", version: int = 0) -> Button:
    return Button(label, CardAction(action, entity, entity_id, version).pack(), style)


def realistic() -> dict[str, Card]:
    """One card of each kind the engine draws, shaped like bot/views.py, approval_views.py and sweep.py."""
    return {
        "task": Card(kind="task", key="task:12", title="#12 活动H5开发", status="待确认", color="orange",
                     fields=(("负责人", "李四"), ("协调人", "张三"), ("截止", "12-10 18:00（周四）"), ("优先级", "高"),
                             ("备注", "需要设计稿\n和接口文档"), ("依赖", "#9（进行中）")),
                     history=("12-01 09:00 张三 创建", "12-01 09:05 张三 指派给 李四"),
                     buttons=(b("确认收到", "ack", "task", 12, "primary", 3), b("更新进度", "progress", "task", 12, version=3),
                              b("完成", "finish", "task", 12, version=3), b("转交", "reassign", "task", 12, version=3))),
        "approval": Card(kind="approval", key="approval:7", title="审批 #7 采购申请", status="第 1/2 步：部门负责人",
                         color="orange", fields=(("发起人", "王五"), ("内容", "采购 3 台显示器"), ("金额", "4,500 元")),
                         history=("12-01 10:00 王五 发起",),
                         buttons=(b("同意", "approve", "approval", 7, "primary", 11), b("拒绝", "reject", "approval", 7, "danger", 11),
                                  b("转交", "transfer", "approval", 7, version=11))),
        "approval_result": Card(kind="approval_result", key="approval:7", title="审批 #7 已通过", status="已通过",
                                color="green", fields=(("发起人", "王五"), ("结果", "通过")),
                                history=("12-01 10:00 王五 发起", "12-01 11:00 赵六 同意", "12-01 14:00 陈七 同意"),
                                buttons=(b("转为任务", "to_task", "approval", 7, "primary", 4),)),
        "help": Card(kind="help", key="help:3", title="求助 #3", status="待处理", color="orange",
                     fields=(("发起人", "李四"), ("求助", "测试环境数据库连不上"), ("部门", "运维部"), ("#", "#12")),
                     buttons=(b("已解决", "help_done", "help", 3, "primary"),)),
        "prompt": Card(kind="prompt", key="prompt:1:2026-12-01", title="今日进度", color="blue",
                       fields=tuple((f"#{i} 任务{i}", f"成员{i} · {i * 10}%") for i in range(1, 9)),
                       buttons=tuple(b(f"更新进度 #{i}", "progress", "task", i, version=1) for i in range(1, 7))),
        "escalation": Card(kind="escalation", key="wait:5", title="李四 的事项无人回应", status="未回应", color="red",
                           fields=(("等待", "任务 #12 确认收到"), ("人员", "李四"), ("自", "12-01 09:00"), ("已催", "2")),
                           buttons=(b("提醒", "remind", "wait", 5, "primary"), b("转交", "reassign", "wait", 5))),
        "summary": Card(kind="summary", key="summary:1:2026-W49", title="周报：双十二活动", color="blue",
                        fields=(("已完成", "#3 需求评审\n#4 原型"), ("进行中", "#12 活动H5开发 █████░░░░░ 50%\n#13 接口 ██░░░░░░░░ 20%"),
                                ("逾期", "#9 设计稿（王五）"), ("受阻", "—"), ("下周截止", "#12 活动H5开发 12-10"),
                                ("准时率", "研发部 3/4（75%）\n设计部 1/2（50%）")),
                        chart=(("研发部", 75), ("设计部", 50))),
        "notice": Card(kind="notice", key="notice:1", title="系统通知", color="grey", note="本群已绑定项目：双十二活动"),
        "project": Card(kind="project", key="project:1", title="项目：双十二活动", color="blue",
                        fields=(("负责人", "张三"), ("群", "双十二项目群"))),
    }


HOSTILE = [
    '<at user_id="all">所有人</at>',
    "<at id=all></at>",
    "<at email=boss@example.com></at>",
    "@all",
    "@所有人",
    "<@zhangsan>",
    "$userName=zhangsan$",
    "[点我](https://evil.example)",
    "![x](img_v2_evil) [a]: https://evil.example [a][a]",
    '<a href="https://evil.example">x</a> <link url="https://evil.example">y</link>',
    '"quoted" \\ back\\slash \\" "}]} ,"tag":"at"',
    "line1\nline2\r\nline3\r\r\r\r\rline4\u2028line5",
    "zero\u200bwidth\u200d\ufeff bidi\u202etxt\u202c\u2066iso\u2069",
    "&lt;at id=all&gt;&lt;/at&gt; &#60;at id=all&#62;",
    "\ud800lone surrogate\x00\x07\x1b[31m",
    "x" * 10_000,
    "长" * 10_000,
]
ALL_HOSTILE = " ".join(HOSTILE[:-2])


def hostile_card(s: str) -> Card:
    return Card(kind="task", key="task:12", title=s, status=s, color="red",
                fields=((s, s), ("负责人", s), (s, "李四")), history=(s, s), note=s,
                buttons=(Button(s, CardAction("ack", "task", 12, 3).pack(), "primary"),
                         Button(s, CardAction("finish", "task", 12, 3).pack())))


def hostile_message(s: str, with_card: bool) -> Message:
    parts = (s, " ", LI, " ", s, At(4, "", s), At(5, 'all"><at id=all', s))
    return Message(parts, hostile_card(s) if with_card else None)


def strings(node: Any) -> Iterator[str]:
    if isinstance(node, str):
        yield node
        if node[:1] in "{[":  # a JSON string inside (DingTalk's msgParam)
            try:
                inner = json.loads(node)
            except ValueError:
                inner = None
            yield from strings(inner)
    elif isinstance(node, dict):
        for k, v in node.items():
            yield k
            yield from strings(v)
    elif isinstance(node, list):
        for v in node:
            yield from strings(v)


def within_limits(platform: str, out: dict[str, Any]) -> None:
    """The byte and count limits JSON Schema cannot express."""
    if platform == "feishu":
        content = out.get("content", out)
        is_card = "schema" in content
        size = len(json.dumps(content, ensure_ascii=False).encode())
        assert size <= (30_000 if is_card else 150_000)
        if is_card:
            assert sum(1 for _ in render.feishu_elements(content["body"])) <= 200
    elif platform == "dingtalk":
        params = out.get("cardParamMap", out if "msgKey" not in out else None)
        if params is not None:
            for key, value in params.items():
                assert isinstance(value, str) and len(key.encode()) <= 100 and len(value.encode()) <= 1024, key
        else:
            validator("dingtalk", "sample_text").validate(json.loads(out["msgParam"]))
    else:
        if out.get("msgtype") == "markdown":
            assert len(out["markdown"]["content"].encode()) <= 2048
        card = out.get("template_card", out if "card_type" in out else None)
        if card is not None:
            keys = [button["key"] for button in card["button_list"]]
            assert len(keys) == len(set(keys)) and all(len(k.encode()) <= 1024 for k in keys)
            assert len(card["task_id"].encode()) <= 128
        if "prelude" in out:
            assert len(out["prelude"]["markdown"]["content"].encode()) <= 2048


def actions(platform: str, card: dict[str, Any]) -> list[str]:
    """The packed CardActions a rendered card's buttons call back with."""
    if platform == "feishu":
        return cb.button_values(card)
    if platform == "dingtalk":
        return [card[f"btn{i}_action"] for i in range(1, 7) if card[f"btn{i}_visible"] == "true"]
    return [button["key"] for button in card["button_list"]]


def card_of(platform: str, out: dict[str, Any]) -> dict[str, Any]:
    if platform == "wecom" and out.get("msgtype") == "markdown":  # a card with nothing to tap goes as markdown
        return {"button_list": []}
    return {"feishu": lambda: out["content"], "dingtalk": lambda: out["cardParamMap"],
            "wecom": lambda: out["template_card"]}[platform]()


OURS = {  # the markup we add ourselves, removed before looking for anything a user smuggled in
    "feishu": [r'<at user_id="ou_li">李四</at>', r"<at id=ou_li></at>", r"<font color='grey'>", r"</font>"],
    "dingtalk": [r"@李四", r"@ou_li"],
    "wecom": [r"<@ou_li>"],
}


def assert_inert(platform: str, out: dict[str, Any]) -> None:
    text = "\n".join(strings(out))
    for ours in OURS[platform]:
        text = text.replace(ours, "")
    # no tag of any kind survives: no <at …>, <a>, <link>, <font>, <@userid>, no autolink <https://…>
    assert "<" not in text and ">" not in text
    # no markdown link, image or reference link can form without a [
    assert "[" not in text and not re.search(r"\]\s*\(", text)
    # no mention syntax in user text, and nothing reading as @all / @所有人
    assert "@" not in text
    assert "$" not in text
    # nothing invisible, no stray carriage returns or controls, everything encodable
    for s in strings(out):
        s.encode("utf-8")
        assert not any(unicodedata.category(ch) in ("Cf", "Cc", "Cs") for ch in s if ch != "\n"), repr(s[:80])
        assert "\r" not in s and "\u2028" not in s
    if platform == "dingtalk":
        if "at" in out:
            assert out["at"]["isAtAll"] is False and set(out["at"]["atUserIds"]) <= {"ou_li"}
        if "atUserIds" in out:
            assert set(out["atUserIds"]) <= {"ou_li"}


def assert_real_mention(platform: str, out: dict[str, Any]) -> None:
    flat = json.dumps(out, ensure_ascii=False)
    if platform == "feishu":
        if out["msg_type"] == "text":
            assert '<at user_id="ou_li">李四</at>' in out["content"]["text"]
        else:
            assert out["content"]["body"]["elements"][0]["content"].count("<at id=ou_li></at>") == 1
    elif platform == "dingtalk":
        if "cardParamMap" in out:
            assert out["atUserIds"] == {"ou_li": "李四"} and "@李四" in out["cardParamMap"]["text"]
        else:
            assert out["at"]["atUserIds"] == ["ou_li"] and "@ou_li" in json.loads(out["msgParam"])["content"]
    else:
        markdown = out.get("prelude", out)
        assert markdown["markdown"]["content"].count("<@ou_li>") == 1
        assert "ou_li" not in json.dumps(out.get("template_card", {}))  # a card cannot mention: no half-mention in it
    assert flat.count("ou_li") >= 1


# --- realistic cards ------------------------------------------------------------------------------

@pytest.mark.parametrize("kind", list(realistic()))
@pytest.mark.parametrize("platform", PLATFORMS)
def test_every_kind_is_schema_valid_within_limits_and_keeps_its_actions(platform: str, kind: str) -> None:
    card = realistic()[kind]
    expected = [button.value for button in card.buttons]
    alone = render_card(platform, card)
    validator(platform, CARD_DEF[platform]).validate(alone)
    within_limits(platform, alone)
    assert actions(platform, alone) == expected
    for message in (Message(("请 ", LI, " 处理："), card), Message((card.title,), card)):
        out = render_message(platform, message)
        validator(platform).validate(out)
        within_limits(platform, out)
        assert actions(platform, card_of(platform, out)) == expected
        assert all(CardAction.unpack(v) is not None for v in expected)
    flat = json.dumps(alone, ensure_ascii=False)
    assert card.title in flat and all(v in flat for _, v in card.fields if "\n" not in v)


@pytest.mark.parametrize("platform", PLATFORMS)
def test_text_messages_are_schema_valid(platform: str) -> None:
    out = render_message(platform, Message(("任务 #12 已创建，负责人 ", LI, "，截止 12-10。",)))
    validator(platform).validate(out)
    within_limits(platform, out)
    assert_real_mention(platform, out)
    assert "任务 #12 已创建" in json.dumps(out, ensure_ascii=False)


def test_feishu_card_shape() -> None:
    card = realistic()["task"]
    out = render_message("feishu", Message(("请 ", LI, " 确认"), card))
    assert out["msg_type"] == "interactive"
    content = out["content"]
    assert content["schema"] == "2.0" and content["config"]["update_multi"] is True
    assert content["header"] == {"title": {"tag": "plain_text", "content": "#12 活动H5开发"}, "template": "orange",
                                 "text_tag_list": [{"tag": "text_tag", "text": {"tag": "plain_text", "content": "待确认"},
                                                    "color": "orange"}]}
    elements = content["body"]["elements"]
    assert elements[0] == {"tag": "markdown", "content": "请 <at id=ou_li></at> 确认", "text_size": "normal"}
    assert "**负责人**：李四" in elements[1]["content"]
    buttons = [e for e in render.feishu_elements(content["body"]) if e["tag"] == "button"]
    assert buttons[0]["text"]["content"] == "确认收到" and buttons[0]["type"] == "primary"
    assert buttons[0]["behaviors"] == [{"type": "callback", "value": {"action": "v1|ack|task|12|3"}}]
    # the header depends on the card alone: a copy with other text parts is updated to the same header
    assert render_card("feishu", card)["header"] == content["header"]
    assert "<at" not in json.dumps(render_card("feishu", card))


@pytest.mark.parametrize(("color", "template"), [("blue", "blue"), ("green", "green"), ("orange", "orange"),
                                                 ("red", "red"), ("grey", "grey"), ("purple", "blue")])
def test_feishu_header_colours(color: str, template: str) -> None:
    card = Card(kind="notice", key="n:1", title="t", status="s", color=color)
    header = render_card("feishu", card)["header"]
    assert header["template"] == template
    assert header["text_tag_list"][0]["color"] == ("neutral" if color == "grey" else template)


def test_a_kind_with_its_own_template_looks_different_and_others_fall_back() -> None:
    summary = realistic()["summary"]
    elements = render_card("feishu", summary)["body"]["elements"]
    assert [e["content"].split("\n")[0] for e in elements if e["tag"] == "markdown"] == [
        f"**{name}**" for name, _ in summary.fields]
    generic = render_card("feishu", Card(**{**summary.__dict__, "kind": "notice"}))
    assert [e["tag"] for e in generic["body"]["elements"]] == ["markdown", "chart"]  # all fields in one: card.j2
    assert "进行中：" in render_card("wecom", summary)["sub_title_text"]
    assert render_card("wecom", summary)["horizontal_content_list"] == []
    # a kind that is not a plain name never picks a template by path
    odd = render_card("feishu", Card(kind="../text/card", key="x:1", title="t"))
    validator("feishu", "card").validate(odd)
    assert render_card("dingtalk", Card(kind="../x", key="x:1", title="t"))["kind"] == "card"


# --- hostile text ---------------------------------------------------------------------------------

@pytest.mark.parametrize("with_card", [True, False], ids=["card", "text"])
@pytest.mark.parametrize("hostile", [*HOSTILE, ALL_HOSTILE], ids=[f"h{i}" for i in range(len(HOSTILE) + 1)])
@pytest.mark.parametrize("platform", PLATFORMS)
def test_hostile_text_in_every_slot_stays_inert(platform: str, hostile: str, with_card: bool) -> None:
    out = render_message(platform, hostile_message(hostile, with_card))
    assert json.loads(json.dumps(out, ensure_ascii=False)) == out
    validator(platform).validate(out)
    within_limits(platform, out)
    assert_inert(platform, out)
    assert_real_mention(platform, out)
    if with_card:
        alone = render_card(platform, hostile_card(hostile))
        validator(platform, CARD_DEF[platform]).validate(alone)
        within_limits(platform, alone)
        assert_inert(platform, alone)
        assert actions(platform, alone) == ["v1|ack|task|12|3", "v1|finish|task|12|3"]


@pytest.mark.parametrize("platform", PLATFORMS)
def test_one_line_slots_get_no_newlines(platform: str) -> None:
    card = render_card(platform, hostile_card("第一行\n第二行\r\n第三行"))
    titles = {"feishu": lambda: [card["header"]["title"]["content"]],
              "dingtalk": lambda: [card["title"], card["status"], card["btn1_label"]],
              "wecom": lambda: [card["main_title"]["title"], card["main_title"]["desc"], card["button_list"][0]["text"]]}
    for title in titles[platform]():
        assert title == "第一行 第二行 第三行"


def test_quotes_and_backslashes_survive_exactly() -> None:
    s = 'a "b" \\c \\" d'
    assert render_card("feishu", hostile_card(s))["header"]["title"]["content"] == s
    assert render_card("dingtalk", hostile_card(s))["title"] == s
    assert render_card("wecom", hostile_card(s))["main_title"]["title"] == s


@pytest.mark.parametrize("platform", PLATFORMS)
def test_ten_thousand_characters_are_shortened_not_refused(platform: str) -> None:
    long = "长" * 9_999 + "尾"
    card = Card(kind="summary", key="summary:1:w", title=long, status=long,
                fields=tuple((f"字段{i}", long) for i in range(60)), history=(long,) * 30, note=long,
                buttons=(Button(long, CardAction("ack", "task", 1, 0).pack()),))
    for out in (render_message(platform, Message((long, LI, long), card)), render_message(platform, Message((long,)))):
        validator(platform).validate(out)
        within_limits(platform, out)
        flat = json.dumps(out, ensure_ascii=False)
        assert "…" in flat and "尾" not in flat  # shortened with an ellipsis, the tail cut
        assert all(len(s) < 10_000 for s in strings(out))
    for kind in ("task", "summary"):
        alone = render_card(platform, Card(**{**card.__dict__, "kind": kind}))
        validator(platform, CARD_DEF[platform]).validate(alone)
        within_limits(platform, alone)


def test_feishu_stays_under_200_elements_with_very_many_fields() -> None:
    card = Card(kind="summary", key="s:1", title="t", fields=tuple((f"f{i}", "v") for i in range(500)),
                buttons=tuple(b(f"b{i}", "progress", "task", i) for i in range(40)))
    content = render_card("feishu", card)
    validator("feishu", "card").validate(content)
    assert sum(1 for _ in render.feishu_elements(content["body"])) <= 200
    assert content["body"]["elements"][-2]["content"] == "…"  # the fields that did not fit are marked


def test_dingtalk_body_spills_over_its_blocks_at_line_ends() -> None:
    card = Card(kind="task", key="task:1", title="任务 #1 t", fields=tuple((f"字段{i}", "长" * 100) for i in range(12)))
    params = render_card("dingtalk", card)
    blocks = [params[f"body{i}"] for i in range(1, 5)]
    assert all(len(block.encode()) <= 1000 for block in blocks)
    assert all(block for block in blocks)  # 12 × ~315 bytes need all four blocks
    assert "\n".join(blocks).count("长" * 100) == 12  # and nothing was shortened
    assert blocks[0].startswith("**字段0**：") and all(line.startswith("**") or line == "…"
                                                    for block in blocks if block for line in block.split("\n"))


def test_real_mentions_on_each_platform() -> None:
    card = realistic()["task"]
    parts = ("请 ", LI, " 确认")
    assert render_message("feishu", Message(parts))["content"]["text"] == '请 <at user_id="ou_li">李四</at> 确认'
    assert render_message("feishu", Message(parts, card))["content"]["body"]["elements"][0]["content"] == \
        "请 <at id=ou_li></at> 确认"
    text = render_message("dingtalk", Message(parts))
    assert json.loads(text["msgParam"]) == {"content": "请 @ou_li 确认"} and text["at"] == {"atUserIds": ["ou_li"],
                                                                                         "isAtAll": False}
    assert render_message("dingtalk", Message(parts, card))["atUserIds"] == {"ou_li": "李四"}
    assert render_message("wecom", Message(parts)) == {"msgtype": "markdown", "markdown": {"content": "请 <@ou_li> 确认"}}
    with_card = render_message("wecom", Message(parts, card))
    assert with_card["prelude"]["markdown"]["content"] == "请 <@ou_li> 确认" and "quote_area" not in with_card["template_card"]
    quiet = render_message("wecom", Message(("请确认",), card))
    assert "prelude" not in quiet and quiet["template_card"]["quote_area"] == {"quote_text": "请确认"}


@pytest.mark.parametrize("platform", PLATFORMS)
def test_a_mention_without_a_believable_id_is_only_a_name(platform: str) -> None:
    for pid in ("", 'all"></at><at id=all', "all id=all", "<@all>", "x" * 65):
        out = render_message(platform, Message(("hi ", At(9, pid, "所有人"))))
        flat = json.dumps(out, ensure_ascii=False)
        assert "<at" not in flat and "<@" not in flat and "@所有人" not in flat and "＠所有人" in flat
        if platform == "dingtalk":
            assert out["at"] == {"atUserIds": [], "isAtAll": False}


def test_a_hostile_display_name_stays_inside_its_mention() -> None:
    name = '</at><at user_id="all">x'
    text = render_message("feishu", Message((At(2, "ou_li", name),)))["content"]["text"]
    assert text.count("<at ") == 1 and text.count("</at>") == 1 and '<at user_id="all"' not in text
    card = render_message("dingtalk", Message((At(2, "ou_li", name),), realistic()["notice"]))
    assert list(card["atUserIds"]) == ["ou_li"] and "<" not in card["atUserIds"]["ou_li"]


def test_duplicate_buttons_are_dropped_and_bad_values_refused() -> None:
    ack = CardAction("ack", "task", 1, 0).pack()
    card = Card(kind="task", key="task:1", title="t", buttons=(Button("a", ack), Button("b", ack)))
    assert [x["key"] for x in render_card("wecom", card)["button_list"]] == [ack]
    assert render_card("dingtalk", card)["btn_count"] == "1"
    with pytest.raises(ValueError, match="CardAction"):
        render_card("feishu", Card(kind="task", key="task:1", title="t", buttons=(Button("x", "rm -rf"),)))
    with pytest.raises(ValueError, match="platform"):
        render_message("slack", Message(("hi",)))


def test_wecom_task_ids() -> None:
    ids = {render.wecom_task_id(key) for key in ("task:1", "task_1", "task:1 ", "任务:1", "approval:1")}
    assert len(ids) == 5
    for key in ("task:12", "任务：十二" * 40, "", "a|b|c"):
        task_id = render.wecom_task_id(key, "row:12345")
        assert re.fullmatch(r"[A-Za-z0-9_@-]{1,128}", task_id)
        assert task_id == render.wecom_task_id(key, "row:12345")  # an update repeats it
        assert task_id != render.wecom_task_id(key, "row:12346") != render.wecom_task_id(key)
    assert render_card("wecom", realistic()["task"])["task_id"] == render.wecom_task_id("task:12")
    assert render_message("wecom", Message((), realistic()["task"]), copy_id="7")["template_card"]["task_id"] == \
        render.wecom_task_id("task:12", "7")


# --- escape.py ------------------------------------------------------------------------------------

@pytest.mark.parametrize("esc", [escape.feishu, escape.dingtalk, escape.wecom], ids=["feishu", "dingtalk", "wecom"])
def test_escape_functions(esc: Any) -> None:
    for s in HOSTILE:
        out = esc(s, 500)
        assert not set(out) & set("<>[]@&$") and len(out) <= 500
    assert esc("a\u200bb\u202ec\u2066d\ufeffe\u00adf", 50) == "abcdef"
    assert esc("a\r\nb\r\r\r\rc\u2028d", 50) == "a\nb\n\nc\nd"
    assert esc("a\n\tb   c", 50, oneline=True) == "a b c"
    assert esc(" x ", 50, strip=False) == " x "
    assert esc("一二三四五六", 4) == "一二三…"
    assert esc("x\ud800y\x00z", 50) == "xyz"
    squeezed = esc("<" * 1000, 2000, max_bytes=100)  # a full-width twin is 3 bytes: cut after the swap
    assert len(squeezed.encode()) <= 100 and squeezed.endswith("…")
    assert esc("\n".join("abcdefghijklmnopqrstuvwxyz"), 500, max_lines=3) == "a\nb\nc…"
    assert esc("普通文本 plain text 123", 50) == "普通文本 plain text 123"
    # typed markdown cannot pass for the card's own bold labels, code or strike-through
    assert esc("**负责人**：赵总 `x` ~~y~~", 50) == "＊＊负责人＊＊：赵总 ｀x｀ ～～y～～"


def test_wecom_escape_kills_id_translation() -> None:
    assert "$" not in escape.wecom("$userName=zhangsan$ $departmentName=1$", 100)


def test_console_text_rendering_still_works() -> None:
    out = render.render_text(realistic()["task"])
    assert "#12 活动H5开发" in out and "[确认收到]" in out and "负责人：李四" in out


@pytest.mark.parametrize("value", HOSTILE, ids=[f"hostile{i}" for i in range(len(HOSTILE))])
def test_the_console_text_form_keeps_every_slot_on_its_line(value: str) -> None:
    """In a terminal a forged line is the danger: "…\n└ [同意]" would draw a button that is not there,
    and an escape sequence would repaint the screen."""
    card = hostile_card(value)
    out = render.render_text(card)
    lines = out.splitlines()
    assert lines[0].startswith("┌ ") and lines[-1].startswith("└")
    assert all(line.startswith(("┌ ", "│ ", "└")) for line in lines)
    assert len(lines) == 2 + len(card.fields) + (len(card.history) + 1 if card.history else 0) + (1 if card.note else 0)
    assert not any(ch in out for ch in "\x1b\x00\x07\u202e\u200b\r")
    assert len(out) < 12 * 2_100  # each slot shortened


@pytest.mark.parametrize("kind", ["summary", "report"])  # the weekly summary and 报表
def test_the_on_time_rates_are_drawn_as_a_feishu_chart(kind: str) -> None:
    hostile = '<at user_id="all">所有人</at>'
    card = Card(kind=kind, key="summary:1:w", title="周报", fields=(("按时完成率", "研发部 75%"),),
                chart=(("研发部", 75), (hostile, 140), ("设计部", -5)))
    rendered = render_card("feishu", card)
    validator("feishu", "card").validate(rendered)
    [chart] = [e for e in rendered["body"]["elements"] if e["tag"] == "chart"]
    spec = chart["chart_spec"]
    assert (spec["type"], spec["xField"], spec["yField"]) == ("bar", "percent", "label")
    values = spec["data"]["values"]
    assert [v["percent"] for v in values] == [75, 100, 0]  # clamped to 0-100
    assert values[0]["label"] == "研发部" and "<" not in values[1]["label"] and "@" not in values[1]["label"]
    # no chart data, no chart element; the other platforms show the text bars of the fields only
    plain = render_card("feishu", Card(kind="summary", key="summary:1:w", title="周报"))
    assert all(e["tag"] != "chart" for e in plain["body"]["elements"])
    assert "chart" not in json.dumps(render_card("wecom", card)) and "chart" not in json.dumps(render_card("dingtalk", card))


def test_each_platform_renders_from_its_own_folder_through_one_dict() -> None:
    """Adding a platform is one folder (templates + render.py) and one entry in `RENDERERS`: every entry
    is that folder's renderer, has its templates and schema beside it, and an unknown platform is a clear
    refusal, not a silent fall-through to another platform's look."""
    import importlib

    from collabbot.cards.render import RENDERERS

    assert set(RENDERERS) == set(PLATFORMS) == {"feishu", "dingtalk", "wecom"}
    root = resources.files("collabbot.cards")
    for platform, renderer in RENDERERS.items():
        module = importlib.import_module(f"collabbot.cards.{platform}.render")
        assert renderer is module.RENDERER
        assert (root / platform / "card.j2").is_file() and (root / "schemas" / f"{platform}.json").is_file()
        card = realistic()["task"]
        assert render_card(platform, card) == module.render_card(card)
        assert render_message(platform, Message(("hi",), card)) == module.render_message(Message(("hi",), card))
    for bad in ("text", "console", "Feishu", ""):
        with pytest.raises(ValueError, match="no card templates"):
            render_card(bad, realistic()["task"])
        with pytest.raises(ValueError, match="no card templates"):
            render_message(bad, Message(("hi",)))


@pytest.mark.parametrize("platform", PLATFORMS)
def test_a_field_reads_name_colon_value_in_the_cards_own_language(platform: str) -> None:
    """Chinese cards take the full-width colon, English ones ": " (user text in either stays as typed); the
    title, which begins with the bot's own words, tells the card's language."""
    def card(fields: tuple[tuple[str, str], ...]) -> str:
        chinese = fields[0][0] == "负责人"
        extra = tuple((f"备注{i}" if chinese else f"Note {i}", "…") for i in range(7))
        title = "任务 #1 T" if chinese else "Task #1 T"
        return json.dumps(render_card(platform, Card(kind="task", key="task:1", title=title, fields=fields + extra)),
                          ensure_ascii=False)

    # the last field is drawn as "name<colon>value" on every platform (WeCom's first six are rows)
    english = card((("Owner", "李四"), ("KPI", "转化率：3%")))
    assert re.search(r"Note 6(\*\*)?: …", english) and not re.search(r"Note 6(\*\*)?：", english), english
    chinese = card((("负责人", "李四"), ("KPI", "转化率3%")))
    assert re.search(r"备注6(\*\*)?：…", chinese) and not re.search(r"备注6(\*\*)?: ", chinese), chinese


@pytest.mark.parametrize("platform", PLATFORMS)
def test_a_multi_line_value_draws_no_heading_rule_table_or_emoji(platform: str) -> None:
    """A retrospective or a native approval's textarea keeps its lines: each line's block markup must not
    draw "## ✅ 已通过" under a rejected request's fields, nor tables (Feishu refuses more than five)."""
    value = "前端\n## ✅ 已由 赵总 审批通过\n---\n| a | b |\n|---|---|\n1. 第一\n- 第二\n:DONE: 完成"
    card = Card(kind="approval_result", key="approval:1", title="审批结果 #A1", status="已驳回",
                fields=(("技能要求", value),) * 6)
    out = json.dumps(render_card(platform, card), ensure_ascii=False)
    for drawn in ("\\n## ", "\\n---", "|", ":DONE:", "\\n1. ", "\\n- "):
        assert drawn not in out, (drawn, out)
    assert "已由 赵总 审批通过" in out and "#A1" in out  # the words stay, and a task's #ref is no heading
