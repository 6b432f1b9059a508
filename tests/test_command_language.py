"""The command language never drops what was typed: a field word starts a field only where that is
unambiguous, quotes keep any text whole, and a leading slash is accepted on every command."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from collabbot.bot.commands import ALIASES, FIELD_WORDS, PRIORITY_WORDS, QUOTES, Command, ParseError, parse
from collabbot.bot.dates import parse_when
from collabbot.bot.events import MENTION_CLOSE, MENTION_OPEN
from collabbot.bot.events import mention_marker as m

from .conftest import Harness

G = "in 新品上市群 as"
EVERY_FIELD_WORD = sorted({w for words in FIELD_WORDS.values() for w in words})
# words that are no value of any typed field: no date, no number, no priority, no link, no mention
ORDINARY = ["设计", "流程", "评审", "活动页", "前先对齐", "首页", "Write", "release", "animations", "login", "page",
            "与", "和", "the", "of", "接口文档", "稿件"]


def test_the_ordinary_words_are_no_typed_value() -> None:
    """The generators below rely on it: a typed field's word followed by one of these stays text."""
    now = datetime(2026, 12, 1, tzinfo=UTC)
    for word in ORDINARY + EVERY_FIELD_WORD:
        assert parse_when(word, now) is None and word.lower() not in PRIORITY_WORDS, word
        assert not word[0].isdigit() and not word.startswith("http"), word


def cmd(text: str) -> Command:
    parsed = parse(text)
    assert isinstance(parsed, Command), parsed
    return parsed


@st.composite
def phrases(draw: st.DrawFn, first_ordinary: bool) -> str:
    """Words holding every field word once, in any order, among ordinary ones."""
    ordinary = draw(st.lists(st.sampled_from(ORDINARY), min_size=0, max_size=8))
    words = draw(st.permutations(EVERY_FIELD_WORD + ordinary))
    if first_ordinary:
        words = [draw(st.sampled_from(ORDINARY)), *words]
    return " ".join(words)


@settings(max_examples=300, deadline=None)
@given(title=phrases(first_ordinary=True), remark=phrases(first_ordinary=False))
def test_titles_and_remarks_holding_every_field_word_are_kept_exactly(title: str, remark: str) -> None:
    """Typed without quotes: the title runs until a field begins for sure, and a remark begun with `：`
    runs until another unambiguous field; every field word inside either is text."""
    for text in (f"新建任务 {title} 负责人 {m(0)} 截止 12-10 备注：{remark}",
                 f"新建任务 {title} 备注：{remark} 截止 12-10 负责人 {m(0)}",
                 f"task new {title} owner {m(0)} remarks: {remark} due 12-10"):
        parsed = cmd(text)
        assert parsed.name == "create_task"
        assert parsed.text == title
        assert parsed.get("remarks") == remark
        assert parsed.get("deadline") == "12-10"
        assert parsed.field_mentions == {"owner": (0,)} and parsed.mentions == ()


quotable = st.text(alphabet=st.characters(blacklist_categories=("Cs",),
                                          blacklist_characters=MENTION_OPEN + MENTION_CLOSE), max_size=60)


@settings(max_examples=300, deadline=None)
@given(pair=st.sampled_from(sorted(QUOTES.items())), title=quotable, remark=quotable)
def test_quotes_keep_any_text_whole(pair: tuple[str, str], title: str, remark: str) -> None:
    """Whatever is inside quotes — field words, dates, #refs, percents, colons, slashes — is the text."""
    opening, closing = pair
    title, remark = title.replace(closing, "").strip(), remark.replace(closing, "").strip()
    for text in (f"新建任务 {opening}{title}{closing} 负责人 {m(0)} 备注 {opening}{remark}{closing}",
                 f"/新建任务 {opening}{title}{closing} 备注：{opening}{remark}{closing} 负责人 {m(0)}"):
        parsed = cmd(text)
        assert (parsed.text, parsed.get("remarks")) == (title, remark)
        assert parsed.field_mentions == {"owner": (0,)}
        assert (parsed.tasks, parsed.percent, parsed.links) == ((), None, ())


@pytest.mark.parametrize("text, title, fields", [
    # the cases
    ("新建任务 设计 交付 流程 负责人 @0", "设计 交付 流程", {"owner": ""}),
    ("绑定项目 周测 协同负责人 @0 备注 开始 前先对齐", "周测", {"coordinator": "", "remarks": "开始 前先对齐"}),
    ("新建任务 新项目 项目 启动会 负责人 @0", "新项目 项目 启动会", {"owner": ""}),
    ("task new Write release note", "Write release note", {}),
    ("task new Add login page with animations", "Add login page with animations", {}),
    # typed fields begin where a value of their type follows, and end where it does
    ("新建任务 设计 截止 周五 18:00 评审", "设计 评审", {"deadline": "周五 18:00"}),
    ("task new Ship it due next fri owner @0", "Ship it", {"deadline": "next fri", "owner": ""}),
    ("新建任务 设计 截止 13-45", "设计", {"deadline": "13-45"}),  # a typed attempt: the handler refuses it
    ("新建任务 设计 优先级 高 稿件", "设计 稿件", {"priority": "高"}),
    ("新建任务 设计 负责人 @0 评审 交付 流程", "设计 评审 交付 流程", {"owner": ""}),
    ("新建任务 设计 截止 前先对齐", "设计 截止 前先对齐", {}),
    # text fields: after a field, a reference or a percent; not inside free text, nor right after a field word
    ("进度 #2 60% 完成 首页 下一步 联调 问题 接口未就绪", "", {"done": "首页", "next_step": "联调", "problems": "接口未就绪"}),
    ("新建任务 设计 负责人 @0 备注 交付 流程", "设计", {"owner": "", "remarks": "交付 流程"}),
    ("完成 #1 交付物 https://h5.example.com 已加埋点", "", {"deliverable": "https://h5.example.com 已加埋点"}),
    ("绑定项目 目标 双十二上线", "", {"goal": "双十二上线"}),
    ("风险 更新 #R1 应对 启用备选供应商", "更新 #R1", {"response": "启用备选供应商"}),  # a record's number is a reference
    ("新建任务 模板 H5开发支持", "", {"template": "H5开发支持"}),
    # a colon begins any field; in it, only another colon or a typed field ends it
    ("进度 #2 60% 完成：首页 下一步 联调", "", {"done": "首页 下一步 联调"}),
    ("新建任务 设计 备注：交付 流程 截止 12-10", "设计", {"remarks": "交付 流程", "deadline": "12-10"}),
    ("新建任务 设计 负责人：李四 王五 备注=先对齐", "设计", {"owner": "李四 王五", "remarks": "先对齐"}),
    # quotes: whole at the start of a word and after a colon; brackets inside a word are the title's own
    ("新建任务 「设计 交付 流程 截止 周五」 负责人 @0", "设计 交付 流程 截止 周五", {"owner": ""}),
    ("新建任务 评审「双十二」方案", "评审「双十二」方案", {}),
    ("新建任务 “Q4 #3 60%” 备注：‘a  b’", "Q4 #3 60%", {"remarks": "a  b"}),
    ("新建任务 「未闭合 的 引号", "「未闭合 的 引号", {}),
    ("task new don't panic", "don't panic", {}),
    # a field word that no value follows is text, and so is a second one for a field already set
    ("新建任务 设计 备注", "设计 备注", {}),
    ("新建任务 设计 截止 12-10 截止 12-11", "设计 截止 12-11", {"deadline": "12-10"}),
])
def test_where_fields_begin(text: str, title: str, fields: dict[str, str]) -> None:
    parsed = cmd(text.replace("@0", m(0)))
    assert parsed.text == title
    assert parsed.fields == fields


def test_a_person_field_named_again_adds_people() -> None:
    parsed = cmd(f"新建任务 X 协作 {m(1)} 协作 {m(2)} 负责人 {m(0)}")
    assert parsed.field_mentions == {"collaborators": (1, 2), "owner": (0,)} and parsed.text == "X"


def test_a_quoted_value_in_a_generic_pair() -> None:
    parsed = cmd('申请 市场活动预算审批 活动方案="双十二 快闪店 预算金额=5万" 预算金额=5万')
    assert parsed.pairs == (("活动方案", "双十二 快闪店 预算金额=5万"), ("预算金额", "5万"))


@pytest.mark.parametrize("alias", sorted({a for aliases in ALIASES.values() for a in aliases}))
@pytest.mark.parametrize("slash", ["/", "／", "/ "])
def test_a_leading_slash_is_accepted_on_every_alias(alias: str, slash: str) -> None:
    plain, slashed = parse(f"{alias} #3"), parse(f"{slash}{alias} #3")
    assert isinstance(plain, Command) and isinstance(slashed, Command)
    assert (slashed.name, slashed.tasks, slashed.text) == (plain.name, plain.tasks, plain.text)


def test_a_slash_alone_or_before_nonsense_is_still_refused() -> None:
    assert isinstance(parse("/"), ParseError) and parse("/").reason == "empty"  # type: ignore[union-attr]
    err = parse("/帮肋")
    assert isinstance(err, ParseError) and err.reason == "unknown_command" and "帮助" in err.suggestions
    assert isinstance(parse("//帮助"), ParseError)  # one slash is a command's mark; two are not


@pytest.mark.parametrize("line", ["/帮助", "／帮助", "/help", "/my tasks"])
def test_slash_commands_are_answered_in_the_chat(harness: Harness, line: str) -> None:
    out = harness.text(f"dm as 张三: {line}")
    assert "没有「" not in out and "No command" not in out and out.strip()


def test_field_words_in_a_title_reach_the_task_whole(harness: Harness) -> None:
    harness.run(f"{G} 张三: @bot 绑定项目 新品上市 协同负责人 @张三")
    out = harness.text(f"{G} 张三: @bot task new Write release note with animations owner @李四 due 12-10")
    assert "animations" in out and "Write release note with animations" in out
    out = harness.text(f"{G} 张三: @bot 新建任务 设计 交付 流程 负责人 @李四 截止 12-10 备注 开始 前先对齐")
    assert "设计 交付 流程" in out
    shown = harness.text("dm as 张三: 任务 #2")
    assert "设计 交付 流程" in shown and "开始 前先对齐" in shown
    assert "/新建任务" not in harness.text(f"{G} 张三: @bot /新建任务 「备注 截止」 负责人 @李四")
    assert "备注 截止" in harness.text("dm as 张三: 任务 #3")
