"""Collection requests (常规信息同步) end to end through the console, on SQLite and PostgreSQL: asked privately,
submitted, the card's copies following, the missing ones chased after the deadline and escalated, the
requester handed the complete set; every platform's rendering of the card."""

from __future__ import annotations

from collabbot.bot.replies import Message
from collabbot.cards.render import PLATFORMS, render_message
from collabbot.storage.models import AuditEntry, CollectionRequest, OutboxMessage, Wait

G = "in 新品上市群 as"
BIND = f"{G} 张三: @bot 绑定项目 新品上市 协同负责人 @张三 参与部门 市场部,技术部,设计部"
ASK = f"{G} 张三: @bot 收集 月度经营数据 对象 技术部,设计部 截止 12-03 18:00"


def _rows(harness, prefix: str) -> list[OutboxMessage]:
    with harness.db.transaction() as s:
        found = [r for r in s.query(OutboxMessage).order_by(OutboxMessage.id) if r.dedupe_key.startswith(prefix)]
        s.expunge_all()
        return found


def _updates(harness) -> list[OutboxMessage]:
    with harness.db.transaction() as s:
        found = [r for r in s.query(OutboxMessage).filter(OutboxMessage.target_kind == "update").order_by(
            OutboxMessage.id) if (r.payload.get("card") or {}).get("key") == "collection:1"]
        s.expunge_all()
        return found


def test_create_ask_submit_chase_escalate_and_hand_over_the_complete_set(harness) -> None:
    out = harness.text(BIND, ASK)
    assert "📋 已发起收集 #C1「月度经营数据」，12-03 18:00 截止，待提交：@陈七、@周八" in out
    assert "技术部 陈七：未提交" in out and "设计部 周八：未提交" in out and "已提交 0/2" in out
    # each head is asked privately, with the card and how to answer
    assert "→ 陈七（私聊）: 张三 请你（代表技术部）在 12-03 18:00 前提交「月度经营数据」：提交 #C1 链接" in out
    assert "→ 周八（私聊）: 张三 请你（代表设计部）" in out

    done = harness.text("dm as 陈七: 提交 #C1 链接 https://example.com/tech-11.xlsx 11月技术部数据")
    assert "已提交收集 #C1「月度经营数据」（1/2）" in done and "张三（私聊）" not in done
    # every sent copy follows: the group's and the targets' show who and when, never what
    updates = _updates(harness)
    assert len(updates) == 3  # the group's copy and the two private asks
    for row in updates:
        card = Message.from_json(row.payload).card
        assert card is not None and card.status == "已提交 1/2"
        rows = dict(card.fields)
        assert rows["技术部 陈七"].startswith("✓ 已提交 12-01 09:00") and "example.com" not in rows["技术部 陈七"]
    assert "提交收集 #C1「月度经营数据」（12-03 18:00 截止）" in harness.text("dm as 周八: 待我处理")
    assert "没有等你处理的事项" in harness.text("dm as 陈七: 待我处理")

    # nothing before the deadline; 2 working hours after it (Thursday 18:00 -> Friday 11:00) only 周八 is nagged
    assert harness.text("clock 2026-12-03 18:00") == ""
    nag = harness.text("wait 17h")
    assert "→ 周八（私聊）: 收集 #C1「月度经营数据」已过截止时间（12-03 18:00），还差你的提交" in nag
    assert "陈七" not in nag and "新品上市群" not in nag  # chased privately, only who has not submitted
    # 24 hours after the deadline, at the next working moment (Monday 09:00): his supervisor 赵总
    escalation = harness.text("wait 3d")
    assert "→ 赵总（私聊）: " in escalation and "周八" in escalation and "收集 #C1「月度经营数据」的提交" in escalation
    assert [r.dedupe_key for r in _rows(harness, "nag:collection:1:")] and all(
        "collection:1:collection" in r.dedupe_key for r in _rows(harness, "escalate:collection:1:"))

    # the last one arrives: the requester gets the complete set with what each sent; the group hears it
    last = harness.text("dm as 周八: 提交 #C1 https://example.com/design.pdf")
    assert "已提交收集 #C1「月度经营数据」（2/2）" in last
    assert "→ 张三（私聊）: 收集 #C1「月度经营数据」已收齐（2 份）：" in last
    assert "技术部 陈七：✓ 已提交 12-01 09:00：https://example.com/tech-11.xlsx 11月技术部数据" in last
    assert "设计部 周八：✓ 已提交 12-07 11:00：https://example.com/design.pdf" in last
    assert "→ 新品上市群: ✅ 收集 #C1「月度经营数据」已收齐" in last
    with harness.db.transaction() as s:
        c = s.get(CollectionRequest, 1)
        assert c.status == "complete" and c.closed_at is not None
        assert s.query(Wait).filter(Wait.entity_type == "collection", Wait.answered_at.is_(None)).count() == 0
        actions = [a.action for a in s.query(AuditEntry).order_by(AuditEntry.id) if a.action.startswith("collection.")]
    assert actions == ["collection.create", "collection.submit", "collection.submit", "collection.complete"]
    assert "已收齐" in _updates(harness)[-1].payload["card"]["status"]
    chased = len(_rows(harness, "nag:collection:")) + len(_rows(harness, "escalate:collection:"))
    assert "收集" not in harness.text("wait 5d")  # nobody is chased any more
    assert len(_rows(harness, "nag:collection:")) + len(_rows(harness, "escalate:collection:")) == chased


def test_named_people_a_second_submission_and_who_may_submit(harness) -> None:
    harness.run(BIND)
    out = harness.text(f"{G} 张三: @bot 收集 周报素材 对象 @吴十 @王五 截止 12-02 12:00")
    assert "待提交：@吴十、@王五" in out and "→ 吴十（私聊）: 张三 请你在 12-02 12:00 前提交「周报素材」" in out
    assert "这项收集只向 吴十、王五 收集" in harness.text("dm as 陈七: 提交 #C1 https://example.com/x")
    assert "缺少提交内容" in harness.text("dm as 吴十: 提交 #C1")
    assert "（1/2）" in harness.text("dm as 吴十: 提交 #C1 第一版")
    again = harness.text("dm as 吴十: 提交 #C1 内容 第二版")
    assert "已更新你对收集 #C1「周报素材」的提交（1/2）" in again
    final = harness.text(f"{G} 王五: @bot 提交 #C1 https://example.com/w.png")
    assert "吴十：✓ 已提交 12-01 09:00：第二版" in final and "第一版" not in final
    # an amendment after it was complete reaches the requester too
    assert "收集 #C1：吴十 更新了提交" in harness.text("dm as 吴十: 提交 #C1 第三版")
    # a task's 提交 is still a task's
    harness.run(f"{G} 张三: @bot 新建任务 海报 负责人 @王五 截止 12-10")
    assert "找不到收集" not in harness.text(f"{G} 王五: @bot 提交 #1")


def test_closing_early_stops_the_chase_and_hands_over_what_came(harness) -> None:
    harness.run(BIND, ASK, "dm as 陈七: 提交 #C1 https://example.com/t.xlsx")
    assert "只有发起人、项目协同负责人和管理员可以" in harness.text(f"{G} 陈七: @bot 收集 关闭 #C1")
    out = harness.text(f"{G} 张三: @bot 收集 关闭 #C1")
    assert "收集 #C1 已关闭，收到 1/2 份" in out
    assert "→ 张三（私聊）: 收集 #C1 已关闭，收到 1/2 份" in out and "https://example.com/t.xlsx" in out
    assert "收集 #C1 已关闭" in harness.text("dm as 周八: 提交 #C1 https://example.com/late")
    assert "收集" not in harness.text("wait 5d")  # the open waits were closed with it
    assert not _rows(harness, "nag:collection:") and not _rows(harness, "escalate:collection:")
    assert "已关闭（收到 1/2）" in harness.text(f"{G} 张三: @bot 收集 #C1")


def test_refusals_are_plain(harness) -> None:
    harness.run(BIND)
    assert "找不到部门或成员「宣传部」" in harness.text(f"{G} 张三: @bot 收集 数据 对象 宣传部 截止 12-03")
    assert "缺少截止时间" in harness.text(f"{G} 张三: @bot 收集 数据 对象 技术部")
    assert "缺少提交对象" in harness.text(f"{G} 张三: @bot 收集 数据 截止 12-03")
    assert "缺少收集内容" in harness.text(f"{G} 张三: @bot 收集 对象 技术部 截止 12-03")
    assert "已经过去了" in harness.text(f"{G} 张三: @bot 收集 数据 对象 技术部 截止 今天 08:00")
    assert "只有项目协同负责人、部门负责人和管理员可以" in harness.text(f"{G} 王五: @bot 收集 数据 对象 技术部 截止 12-03")
    assert "找不到收集 #C9" in harness.text("dm as 张三: 收集 #C9")
    assert "请写收集编号" in harness.text(f"{G} 张三: @bot 收集 关闭")
    with harness.db.transaction() as s:
        assert s.query(CollectionRequest).count() == 0


def test_visibility_follows_the_task_rules(harness) -> None:
    harness.run(BIND, ASK)
    assert "找不到收集 #C1" in harness.text("dm as 赵六: 收集 #C1")  # neither asked, above, nor a member
    seen = harness.text("dm as 钱总: 收集 #C1")  # 陈七's supervisor
    assert "收集 #C1 月度经营数据" in seen
    assert "收集 #C1 月度经营数据" in harness.text(f"{G} 赵六: @bot 收集 #C1")  # in the project's group
    listed = harness.text(f"{G} 赵六: @bot 收集 列表")
    assert "信息收集 · 新品上市" in listed and "待提交 陈七、周八" in listed


def test_english_and_every_platform_renders_the_cards(harness) -> None:
    harness.run(BIND)
    harness.run(f"{G} 张三: @bot collect monthly figures targets 技术部,设计部,运营部 @吴十 @王五 due 12-03 18:00")
    harness.run("dm as 陈七: done #C1 https://example.com/a-very-long-link/" + "x" * 300)
    with harness.db.transaction() as s:
        c = s.get(CollectionRequest, 1)
        assert c.title == "monthly figures" and len(c.targets) == 5
        rows = [r for r in s.query(OutboxMessage).order_by(OutboxMessage.id)
                if (r.payload.get("card") or {}).get("kind") == "collection"]
        messages = [Message.from_json(r.payload) for r in rows]
    assert messages
    for message in messages:
        for platform in PLATFORMS:
            assert render_message(platform, message)


def test_hostile_input_gets_a_plain_refusal(harness) -> None:
    harness.run(BIND)
    assert "收集内容太长了（最多 200 字）" in harness.text(f"{G} 张三: @bot 收集 {'数' * 201} 对象 技术部 截止 12-03")
    harness.run(ASK)
    assert "提交内容（链接或文字）太长了（最多 2000 字）" in harness.text(f"dm as 陈七: 提交 #C1 {'x' * 2001}")
    assert "请写收集编号" in harness.text("dm as 陈七: 收集 关闭 #C12345678901")
    # markup in a submission is the platforms' renderers' to escape: stored as typed, shown as text
    harness.run("dm as 陈七: 提交 #C1 <at user_id=\"all\">所有人</at> **粗体**")
    with harness.db.transaction() as s:
        c = s.get(CollectionRequest, 1)
        assert c.targets[0].content == '<at user_id="all">所有人</at> **粗体**'
        assert s.query(AuditEntry).filter(AuditEntry.action == "collection.submit").count() == 1


def test_the_last_two_submissions_at_once_complete_it_once(harness) -> None:
    from .test_approvals_concurrency import at_once
    from .test_engine_concurrency import event

    harness.run(BIND, ASK)
    replies = at_once(harness.bot, [event(harness, "dm as 陈七: 提交 #C1 https://example.com/a"),
                                    event(harness, "dm as 周八: 提交 #C1 https://example.com/b")])
    assert all(r.toast_kind != "error" for r in replies)
    with harness.db.transaction() as s:
        c = s.get(CollectionRequest, 1)
        assert c.status == "complete" and all(t.submitted_at is not None for t in c.targets)
        complete = [r for r in s.query(OutboxMessage) if r.dedupe_key.startswith("collection:1:complete")]
        assert len(complete) == 2  # the requester's complete set and the group's line, once each
        assert s.query(AuditEntry).filter(AuditEntry.action == "collection.complete").count() == 1


def test_a_card_of_the_most_targets_keeps_every_row_on_every_platform() -> None:
    from collabbot.bot.handlers.collections import MAX_TARGETS
    from collabbot.bot.replies import Card
    from collabbot.cards.render import render_card

    rows = tuple((f"部门{n} 负责人{n}", "⚠ 未提交（已过截止）") for n in range(MAX_TARGETS))
    card = Card(kind="collection", key="collection:1", title="收集 #C1 月度经营数据", status="已提交 0/18",
                fields=(("发起人", "张三"), ("截止", "12-03 18:00"), *rows), note="提交：提交 #C1 链接 https://…")
    for platform in PLATFORMS:
        rendered = str(render_card(platform, card))
        assert f"负责人{MAX_TARGETS - 1}" in rendered, platform  # the last person asked is still on the card
