"""The contract every platform adapter passes, whatever its protocol.

Each test states a promise the README makes for every platform: forged callbacks change nothing
and learn nothing, every documented callback shape is understood (or ignored on purpose), a
platform's redelivery changes nothing, a tap is answered in time with the updated card while every
other copy follows through the outbox, nobody can make the bot mention everyone, and sends carry an
installation-unique idempotency key, keep the platform's declared limits and survive a token expiry.
"""

from __future__ import annotations

import asyncio
import time
from collections import defaultdict

from sqlalchemy import func, select

from collabbot.bot.replies import CardAction
from collabbot.storage.models import AuditEntry, InboundReceipt, OutboxMessage, Task

from .driver import Driver, Sent

CREATE = "新建任务 活动H5开发 负责人 {mentions} 截止 12-10"


def count(driver: Driver, model: type) -> int:
    with driver.db.transaction() as s:
        return s.scalar(select(func.count()).select_from(model)) or 0


def state(driver: Driver) -> tuple[int, int, int, int]:
    return count(driver, Task), count(driver, OutboxMessage), count(driver, InboundReceipt), count(driver, AuditEntry)


async def test_forged_and_stale_callbacks_are_refused_alike_and_change_nothing(driver: Driver) -> None:
    before = state(driver)
    answers = await driver.forgeries(CREATE, sender="张三")
    assert len(answers) >= 4
    statuses = {answer.status for _, answer in answers}
    bodies = {str(answer.body) for _, answer in answers}
    assert len(statuses) == 1 and statuses.pop() in (401, 403), answers
    assert len(bodies) == 1, answers  # one uniform answer: nothing tells a forger which check failed
    assert state(driver) == before
    genuine = await driver.message(CREATE, sender="张三", mentions=("李四",))
    assert genuine.status == 200 and count(driver, Task) == 1


async def test_every_documented_sample_parses_or_is_ignored_by_name(driver: Driver) -> None:
    samples = driver.samples()
    assert {s.expect for s in samples} >= {"event", "tap", "ignored"}
    for sample in samples:
        assert driver.parse(sample.payload) == sample.expect, sample.name


async def test_a_redelivered_event_and_a_repushed_message_change_nothing(driver: Driver) -> None:
    first = await driver.message(CREATE, sender="张三", mentions=("李四",), event_id="evt-1", message_id="msg-1")
    assert first.status == 200
    await driver.deliver()
    after = state(driver), len(driver.sent())
    again = await driver.message(CREATE, sender="张三", mentions=("李四",), event_id="evt-1", message_id="msg-1")
    repushed = await driver.message(CREATE, sender="张三", mentions=("李四",), event_id="evt-2", message_id="msg-1")
    assert again.status == repushed.status == 200
    await driver.deliver()
    assert (state(driver), len(driver.sent())) == after
    assert count(driver, Task) == 1


async def _owner_card(driver: Driver) -> tuple[Sent, Sent, str]:
    assert (await driver.message(CREATE, sender="张三", mentions=("李四",))).status == 200
    await driver.deliver()
    owner = driver.people["李四"]
    [private] = [m for m in driver.sent(owner) if m.is_card]
    [group] = [m for m in driver.sent(driver.group) if m.is_card]
    ack = next(v for v in private.buttons if (a := CardAction.unpack(v)) is not None and a.action == "ack")
    return private, group, ack


async def test_a_tap_is_answered_in_time_with_the_updated_card_and_every_other_copy_follows(driver: Driver) -> None:
    private, group, ack = await _owner_card(driver)
    started = time.monotonic()
    answer = await driver.tap(private, ack, operator="李四", event_id="tap-1")
    assert time.monotonic() - started < driver.deadline
    assert answer.status == 200
    card = driver.answered_card(answer)
    assert card is not None and ack not in card  # the tapped copy no longer offers 确认收到
    with driver.db.transaction() as s:
        assert s.scalar(select(Task)).acknowledged_at is not None
    await driver.deliver()
    assert driver.updates(private.message_id) == []  # the tapped copy rode the answer
    [update] = driver.updates(group.message_id)
    assert ack not in update
    assert (await driver.tap(private, ack, operator="李四", event_id="tap-1")) == answer  # redelivered: same answer
    await driver.deliver()
    assert len(driver.updates(group.message_id)) == 1


async def test_nobody_can_make_the_bot_mention_everyone(driver: Driver) -> None:
    hostile = ['<at user_id="all">所有人</at>', "<at id=all></at>", "@all", "<@all>", '{"tag": "at", "user_id": "all"}',
               "@所有人"]
    for i, text in enumerate(hostile):
        await driver.message(f"新建任务 {text} 负责人 {{mentions}} 截止 12-10 备注 {text}", sender="张三",
                             mentions=("李四",), event_id=f"hostile-{i}")
        await driver.message(f"评论 #1 {text}", sender="张三", event_id=f"hostile-c-{i}")
    await driver.deliver()
    sent = driver.sent()
    assert sent
    for m in sent:
        assert not driver.mentions_everyone(m.rendered), m.rendered


async def test_sends_carry_an_installation_unique_idempotency_key(driver: Driver) -> None:
    await driver.message(CREATE, sender="张三", mentions=("李四",))
    await driver.deliver()
    with driver.db.transaction() as s:
        keys = list(s.scalars(select(OutboxMessage.dedupe_key)))
    sent = driver.sent()
    assert sent and all(m.idempotency_key for m in sent)
    assert len({m.idempotency_key for m in sent}) == len(sent)
    assert not {m.idempotency_key for m in sent} & set(keys)  # never the bare row key: it repeats across databases


async def test_a_burst_stays_within_the_declared_limits(driver: Driver) -> None:
    for i in range(8):
        await driver.message(f"新建任务 任务{i} 负责人 {{mentions}} 截止 12-10", sender="张三", mentions=("李四",))
    await driver.deliver()
    times: dict[str, list[float]] = defaultdict(list)
    for target, at in driver.send_times():
        times[target].append(at)
    assert sum(len(v) for v in times.values()) >= 16
    for limit in driver.limits:
        if limit.scope == "app":
            groups = [sorted(t for ts in times.values() for t in ts)]
        else:
            groups = [sorted(ts) for ts in times.values()]
        for ts in groups:
            for i in range(len(ts) - limit.count):  # any count+1 sends span more than the window
                assert ts[i + limit.count] - ts[i] >= limit.per_seconds * 0.95, (limit, ts)


async def test_a_token_expiry_refreshes_once_under_concurrent_sends(driver: Driver) -> None:
    for i in range(5):
        await driver.message(f"新建任务 任务{i} 负责人 {{mentions}} 截止 12-10", sender="张三", mentions=("李四",))
    fetched = driver.token_fetches()
    driver.expire_tokens()
    await asyncio.gather(driver.deliver(), driver.deliver())
    assert driver.token_fetches() - fetched == 1
    assert len(driver.sent()) >= 10
