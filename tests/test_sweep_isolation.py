"""One bad row must not stop every nag: the sweep isolates each item, logs and audits the one that
fails, sets it aside for a while, and goes on with the others (SQLite and PostgreSQL).

The failure comes from a wait describer (the engine's extension point for other modules' waits) that
either raises in Python or issues SQL that fails, which on PostgreSQL aborts the transaction unless
the item ran in its own savepoint.
"""

from __future__ import annotations

from datetime import datetime, timedelta

import pytest
from sqlalchemy import select, text

from collabbot.bot.sweep import SKIPPED_WAIT_RETRY
from collabbot.storage.models import AuditEntry, OutboxMessage, User, Wait

from .conftest import TZ, Harness


def python_error(n, wait: Wait) -> str:
    raise ValueError(f"cannot describe wait {wait.id}")


def sql_error(n, wait: Wait) -> str:
    n.s.execute(text("SELECT no_such_column FROM no_such_table"))
    return "never"


@pytest.mark.parametrize("describer", [python_error, sql_error], ids=["python", "sql"])
def test_a_failing_item_is_skipped_audited_and_the_others_are_nagged(harness: Harness, describer) -> None:
    harness.run("in 新品上市群 as 张三: @bot 绑定项目 新品上市 协同负责人 @张三",
                "in 新品上市群 as 张三: @bot 新建任务 页面 负责人 @李四",
                "in 新品上市群 as 张三: @bot 新建任务 接口 负责人 @王五")
    harness.bot.wait_describers["plugin:nag"] = describer
    start = harness.clock.now()
    with harness.db.transaction() as s:
        person = s.scalar(select(User.id).where(User.name == "赵六"))
        bad = Wait(kind="assign", entity_type="plugin", entity_id=1, person_id=person, raised_at=start, nags_sent=0,
                   next_due_at=start)
        s.add(bad)
        s.flush()
        bad_id = bad.id
    now = datetime(2026, 12, 1, 11, 30, tzinfo=TZ)  # two working hours after the tasks were assigned
    acted = harness.bot.sweep(now)
    assert acted >= 2
    with harness.db.transaction() as s:
        nagged = set(s.scalars(select(OutboxMessage.target_id).where(OutboxMessage.dedupe_key.like("nag:task:%"))))
        assert {"李四", "王五"} <= nagged
        # the batch ran again item by item: each good wait still counts one nag, not two
        assert set(s.scalars(select(Wait.nags_sent).where(Wait.entity_type == "task"))) == {1}
        [skip] = s.scalars(select(AuditEntry).where(AuditEntry.action == "rule.wait.skip"))
        assert (skip.entity_type, skip.entity_id, skip.outcome) == ("wait", bad_id, "error")
        assert "Error" in skip.reason
        wait = s.get(Wait, bad_id)
        assert wait is not None and wait.nags_sent == 0
        assert wait.next_due_at == now + SKIPPED_WAIT_RETRY  # not retried every minute
    harness.bot.sweep(now + timedelta(minutes=1))
    with harness.db.transaction() as s:
        assert len(list(s.scalars(select(AuditEntry).where(AuditEntry.action == "rule.wait.skip")))) == 1
