"""The command grammar: aliases, fields, mentions, refs, and refusals as values (never exceptions)."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from collabbot.bot.commands import ALIASES, MAX_COMMAND_CHARS, Command, ParseError, parse, priority_of, typed_alias
from collabbot.bot.events import mention_marker as m


def test_create_task_with_every_field() -> None:
    cmd = parse(f"新建任务 活动H5开发 负责人 {m(0)} 协作 {m(1)} {m(2)} 截止 12-10 18:00 优先级 高 "
                "交付物 H5链接 附件 https://a.example/x https://b.example/y 备注 加急 部门 技术部")
    assert isinstance(cmd, Command)
    assert cmd.name == "create_task"
    assert cmd.text == "活动H5开发"
    assert cmd.field_mentions == {"owner": (0,), "collaborators": (1, 2)}
    assert cmd.get("deadline") == "12-10 18:00"
    assert priority_of(cmd.get("priority")) == "high"
    assert cmd.get("attachments") == "https://a.example/x https://b.example/y"
    assert cmd.links == ("https://a.example/x", "https://b.example/y")
    assert cmd.get("department") == "技术部"


@pytest.mark.parametrize("name", sorted(ALIASES))
def test_every_command_has_an_english_alias_that_parses_to_it(name: str) -> None:
    english = [a for a in ALIASES[name] if a.isascii()]
    assert english, f"{name} has no English alias"
    for alias in (ALIASES[name][0], english[0]):
        cmd = parse(f"{alias} #3")
        assert isinstance(cmd, Command) and cmd.name == name, alias


@pytest.mark.parametrize("text, field, value", [
    ("task new X due=12-10", "deadline", "12-10"),
    ("task new X priority:low", "priority", "low"),
    ("新建任务 X 截止：明天", "deadline", "明天"),
])
def test_inline_field_values(text: str, field: str, value: str) -> None:
    cmd = parse(text)
    assert isinstance(cmd, Command) and cmd.get(field) == value


def test_progress_fields_and_percent() -> None:
    cmd = parse("进度 #12 60% 完成 首页 下一步 联调 问题 接口未就绪")
    assert isinstance(cmd, Command)
    assert (cmd.tasks, cmd.percent) == ((12,), 60)
    assert cmd.fields == {"done": "首页", "next_step": "联调", "problems": "接口未就绪"}
    assert parse("progress #2 percent 45").percent == 45  # type: ignore[union-attr]


def test_refs_of_each_kind() -> None:
    cmd = parse("依赖 #13 #12")
    assert isinstance(cmd, Command) and cmd.tasks == (13, 12)
    cmd = parse("答复 #H3 好的")
    assert isinstance(cmd, Command) and cmd.helps == (3,) and cmd.text == "好的"


def test_longest_alias_wins_and_words_are_not_split() -> None:
    assert parse("task new X").name == "create_task"  # type: ignore[union-attr]
    assert parse("tasks").name == "my_tasks"  # type: ignore[union-attr]
    assert parse("取消依赖 #2 #1").name == "remove_dependency"  # type: ignore[union-attr]
    assert isinstance(parse("taskforce"), ParseError)


def test_unknown_command_suggests_the_closest() -> None:
    err = parse("新建任物 活动页")
    assert isinstance(err, ParseError) and err.reason == "unknown_command"
    assert "新建任务" in err.suggestions


@pytest.mark.parametrize("text, reason", [("", "empty"), ("   ", "empty"), ("x" * (MAX_COMMAND_CHARS + 1), "too_long"),
                                          ("进度 #1 percent:abc", "bad_field")])
def test_refusals_are_values(text: str, reason: str) -> None:
    err = parse(text)
    assert isinstance(err, ParseError) and err.reason == reason


@settings(max_examples=300, deadline=None)
@given(st.text(max_size=300))
def test_parse_never_raises(text: str) -> None:
    assert isinstance(parse(text), Command | ParseError)


@settings(max_examples=200, deadline=None)
@given(st.sampled_from([a for aliases in ALIASES.values() for a in aliases]), st.text(max_size=100))
def test_parse_never_raises_after_a_real_command(alias: str, rest: str) -> None:
    assert isinstance(parse(f"{alias} {rest}"), Command | ParseError)


@pytest.mark.parametrize("text, tasks, percent, fields", [
    ("确认收到 ＃１２", (12,), None, {}),  # a full-width ＃ (and digits)
    ("确认收到 #12。", (12,), None, {}),  # a sentence's final 。
    ("进度：#3 50%", (3,), 50, {}),  # a colon after the command
    ("进度 #3 30", (3,), 30, {}),  # the number right after the task is its percent
    ("进度 #3 40 % 完成 首页 下一步 联调", (3,), 40, {"done": "首页", "next_step": "联调"}),
    ("新建任务：海报 截止 周五。", (), None, {"deadline": "周五"}),
    ("新建任务 海报，负责人：李四，截止：周五，优先级：高", (), None,  # commas between fields, as typed in Chinese
     {"owner": "李四", "deadline": "周五", "priority": "高"}),
])
def test_what_people_type_on_phones_is_read_as_meant(text: str, tasks: tuple[int, ...], percent: int | None,
                                                     fields: dict[str, str]) -> None:
    cmd = parse(text)
    assert isinstance(cmd, Command), cmd
    assert cmd.tasks == tasks and cmd.percent == percent and cmd.fields == fields, cmd


def test_the_command_word_as_typed_is_what_an_example_is_written_in() -> None:
    assert typed_alias("/确认收到 1") == "确认收到" and typed_alias("ack: 1") == "ack" and typed_alias("进度：#1") == "进度"


def test_a_comma_inside_free_text_stays_text() -> None:
    cmd = parse("新建任务 设计，交付流程")
    assert isinstance(cmd, Command) and cmd.text == "设计，交付流程" and cmd.fields == {}


def test_people_named_before_the_command_are_the_commands() -> None:
    """`@李四 @bot 新建任务 …`: people often @ the colleague first."""
    cmd = parse(f"{m(0)}  新建任务 活动H5开发 截止 12-10")
    assert isinstance(cmd, Command) and cmd.name == "create_task" and cmd.mentions == (0,)
    assert cmd.text == "活动H5开发" and cmd.fields == {"deadline": "12-10"}
    refused = parse(f"{m(0)} 你好")
    assert isinstance(refused, ParseError) and refused.value == "你好"  # no marker characters echoed back


def test_an_application_field_may_be_written_with_a_chinese_colon() -> None:
    cmd = parse("申请 延期申请 #1 新截止日期：12-08 原因：接口没好 补救措施=加班 附件 https://x.example/a")
    assert isinstance(cmd, Command)
    assert cmd.pairs == (("新截止日期", "12-08"), ("原因", "接口没好"), ("补救措施", "加班 附件 https://x.example/a"))
