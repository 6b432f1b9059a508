"""The sliding-window limiter: every declared window holds exactly, bursts included, across instances."""

from __future__ import annotations

import asyncio
import random
import threading
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import select

from collabbot.bot.clock import ManualClock
from collabbot.bot.config import DeliverySettings
from collabbot.scheduler.delivery import DeliveryWorker
from collabbot.scheduler.limits import (
    DatabaseSlots,
    Limit,
    MemorySlots,
    earliest,
    limit_keys,
    pack,
    unpack,
)
from collabbot.storage import outbox
from collabbot.storage.db import Database
from collabbot.storage.models import OutboxMessage, RateSlot
from collabbot.storage.outbox import OutboxItem

from .conftest import truncate_all

START = datetime(2026, 12, 1, 1, 0, tzinfo=UTC)
WECOM = (Limit("chat", 30, 60.0), Limit("chat", 1000, 3600.0))
HOUR = 3600.0


def most_in_any_window(times: list[float], window: float) -> int:
    """The most sends in any half-open window [t, t + window) (the worst one starts at a send)."""
    times = sorted(times)
    most, j = 0, 0
    for i, t in enumerate(times):
        j = max(j, i)
        while j < len(times) and times[j] < t + window:
            j += 1
        most = max(most, j - i)
    return most


def seconds(at: datetime) -> float:
    return (at - START).total_seconds()


def slots_for(kind: str, db: Database | None) -> MemorySlots | DatabaseSlots:
    return MemorySlots() if kind == "memory" else DatabaseSlots(db)  # type: ignore[arg-type]


@pytest.fixture(params=["memory", "database"])
def slots(request: pytest.FixtureRequest, sqlite_db: Database) -> MemorySlots | DatabaseSlots:
    """The in-process log and the `rate_slots` table (here on SQLite; PostgreSQL below, two instances)."""
    return slots_for(request.param, sqlite_db)


def test_thirty_go_in_one_burst_and_the_31st_waits_for_the_window_to_end(slots) -> None:
    keys = limit_keys("wecom", "chat", "c1", WECOM)
    times = [slots.reserve(keys, START, HOUR) for _ in range(31)]
    assert all(taken for _, taken in times)
    assert [seconds(at) for at, _ in times] == [0.0] * 30 + [60.0]
    # a reservation beyond the horizon is not taken: it leaves the log as it was
    assert slots.reserve(keys, START, 30.0) == (START + timedelta(seconds=60), False)
    assert seconds(slots.reserve(keys, START, HOUR)[0]) == 60.0


def test_the_hour_cap_holds_under_the_minute_bursts(slots) -> None:
    keys = limit_keys("wecom", "chat", "c1", WECOM)
    sent: list[float] = []
    now = START
    while len(sent) < 1030:
        at, taken = slots.reserve(keys, now, 30.0)
        if taken:
            sent.append(seconds(at))
        now = max(now, at)  # the worker's rows wait until their time comes
    assert most_in_any_window(sent, 60.0) == 30 and most_in_any_window(sent, HOUR) == 1000
    # 30 a minute for 33 minutes and 10 more; the 1,001st when the first burst leaves the hour
    assert sent[:31] == [0.0] * 30 + [60.0] and sent[999] == 33 * 60.0
    assert sent[1000:1030] == [HOUR] * 30


def test_windows_are_stretched_by_the_margin() -> None:
    keys = limit_keys("feishu", "chat", "oc_1", (Limit("chat", 5, 1.0),), margin=0.05)
    slots = MemorySlots()
    times = [seconds(slots.reserve(keys, START, 10.0)[0]) for _ in range(11)]
    assert times == [0.0] * 5 + [1.05] * 5 + [2.1]


def test_a_send_reserved_ahead_for_one_chat_does_not_hold_back_another() -> None:
    """The app's log gets a time a second ahead (chat a is full); chat b still goes now."""
    limits = (Limit("app", 50, 1.0), Limit("chat", 5, 1.0))
    slots = MemorySlots()
    a = [seconds(slots.reserve(limit_keys("feishu", "chat", "a", limits), START, 30.0)[0]) for _ in range(6)]
    b = [seconds(slots.reserve(limit_keys("feishu", "chat", "b", limits), START, 30.0)[0]) for _ in range(5)]
    assert a == [0.0] * 5 + [1.0] and b == [0.0] * 5


def test_the_app_window_counts_every_chat_and_sends_ahead_too() -> None:
    limits = (Limit("app", 3, 1.0), Limit("chat", 2, 10.0))
    slots = MemorySlots()
    times = [seconds(slots.reserve(limit_keys("x", "chat", c, limits), START, 60.0)[0]) for c in "aaabcde"]
    # a: 0, 0, then 10 (its own window); b at 0 fills the app's 3; c, d, e wait for the app's window
    assert times == [0.0, 0.0, 10.0, 0.0, 1.0, 1.0, 1.0]


def test_earliest_matches_a_brute_force_search_on_random_logs() -> None:
    rng = random.Random(5)
    for _ in range(300):
        count, span = rng.randint(1, 4), rng.randint(5, 30)
        log = sorted(rng.randint(0, 80) for _ in range(rng.randint(0, 12)))
        log = _valid(log, count, span)
        now = rng.randint(0, 60)
        at = earliest({"k": log}, {"k": ((count, span),)}, now)
        assert _fits(log, at, count, span)
        assert not any(_fits(log, t, count, span) for t in range(now, at)), (log, count, span, now, at)


def _fits(log: list[int], at: int, count: int, span: int) -> bool:
    both = sorted([*log, at])
    return all(sum(1 for u in both if t <= u < t + span) <= count for t in range(at - span, at + 1))


def _valid(log: list[int], count: int, span: int) -> list[int]:
    kept: list[int] = []
    for t in log:
        if _fits(kept, t, count, span):
            kept.append(t)
    return kept


def test_a_log_keeps_only_the_longest_window_and_packs_to_eight_bytes_a_send(sqlite_db: Database) -> None:
    slots = DatabaseSlots(sqlite_db)
    keys = limit_keys("x", "chat", "a", (Limit("chat", 2, 1.0),))
    now = START
    for _ in range(50):
        at, _ = slots.reserve(keys, now, 10.0)
        now = at
    with sqlite_db.transaction() as s:
        row = s.get(RateSlot, "x:chat:a")
        assert row is not None and len(unpack(row.sends)) <= 4 and row.next_at == now
    assert unpack(pack([1, -2, 3 << 40])) == [1, -2, 3 << 40] and unpack(None) == []


def test_memory_slots_forget_keys_whose_sends_left_every_window() -> None:
    slots = MemorySlots(max_keys=100)
    now = START
    for i in range(10_000):
        now += timedelta(milliseconds=10)
        at, taken = slots.reserve({f"x:chat:{i}": ((1, 500_000),)}, now, 1.0)
        assert taken and at == now
    assert len(slots) <= 101
    kept = len(slots)
    assert slots.prune(now + timedelta(seconds=1)) == kept and len(slots) == 0


# --- instances and the worker ---------------------------------------------------------------------

def test_two_instances_reserving_at_once_never_exceed_together_on_postgresql(pg_database: Database) -> None:
    """Two engines (two instances) race for one chat's windows from threads: the times they get together
    are exactly the windows' schedule, 5 every second, never a sixth."""
    truncate_all(pg_database)
    other = Database(pg_database.url)
    keys = limit_keys("x", "chat", "shared", (Limit("chat", 5, 1.0), Limit("chat", 12, 10.0)))
    got: list[datetime] = []
    lock = threading.Lock()

    def reserve_many(db: Database) -> None:
        slots = DatabaseSlots(db)
        for _ in range(15):
            at, taken = slots.reserve(keys, START, HOUR)
            assert taken
            with lock:
                got.append(at)

    try:
        threads = [threading.Thread(target=reserve_many, args=(d,)) for d in (pg_database, other)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    finally:
        other.dispose()
    times = sorted(seconds(at) for at in got)
    assert most_in_any_window(times, 1.0) == 5 and most_in_any_window(times, 10.0) == 12
    assert times == [0.0] * 5 + [1.0] * 5 + [2.0] * 2 + [10.0] * 5 + [11.0] * 5 + [12.0] * 2 + [20.0] * 5 + [21.0]


class Recorder:
    platform = "wecom"
    limits = WECOM

    def __init__(self, clock: ManualClock) -> None:
        self.clock = clock
        self.at: list[float] = []

    async def send(self, item: OutboxItem) -> str | None:
        self.at.append(seconds(self.clock.now()))
        return None


def test_the_worker_sends_thirty_at_once_and_defers_the_31st_to_the_windows_end(db) -> None:
    clock = ManualClock(START)
    with db.transaction() as s:
        for i in range(31):
            outbox.enqueue(s, dedupe_key=f"k:{i}", platform="wecom", target_kind="chat", target_id="c1",
                           target_name="g", payload={"parts": ["x"], "card": None}, now=clock.now())
    sender = Recorder(clock)

    async def sleep_until(at: datetime) -> None:
        assert at == clock.now()  # every send of the burst goes now: no pacing
    worker = DeliveryWorker(db, {"wecom": sender}, DeliverySettings(limit_margin=0), clock, sleep_until=sleep_until)
    asyncio.run(worker.drain())
    assert sender.at == [0.0] * 30 and worker.counters["deferred"] == 1
    with db.transaction() as s:
        row = s.scalars(select(OutboxMessage).where(OutboxMessage.status == "pending")).one()
        assert (row.dedupe_key, row.attempts, row.not_before) == ("k:30", 0, START + timedelta(seconds=60))
    clock.advance(timedelta(seconds=59))
    asyncio.run(worker.drain())
    assert len(sender.at) == 30
    clock.advance(timedelta(seconds=1))
    asyncio.run(worker.drain())
    assert sender.at == [0.0] * 30 + [60.0]


def test_a_send_counts_from_when_it_finished() -> None:
    """A burst's last request may reach the platform well after its turn: the next window counts from its end."""
    keys = limit_keys("x", "chat", "a", (Limit("chat", 2, 1.0),))
    slots = MemorySlots()
    slots.reserve(keys, START, 0.0)
    second, _ = slots.reserve(keys, START, 0.0)
    slots.move(keys, second, START + timedelta(seconds=0.3))  # the second request took 0.3 s to go out
    assert slots.reserve(keys, START + timedelta(seconds=1), 0.0) == (START + timedelta(seconds=1), True)
    at, taken = slots.reserve(keys, START + timedelta(seconds=1), 0.0)
    assert not taken and seconds(at) == 1.3
    slots.move(keys, START, START)  # a time no longer in the log changes nothing
    assert seconds(slots.reserve(keys, START + timedelta(seconds=1), 0.0)[0]) == 1.3


def test_feishus_app_limits_hold_a_minute_of_sends_to_a_thousand() -> None:
    """Feishu throttles an app at 50 sends a second or 1,000 a minute, whichever comes first: sends to many
    chats go at 50 a second for 20 seconds, then wait for the minute's window."""
    from collabbot.adapters.feishu.sender import LIMITS

    slots = MemorySlots()
    times = [seconds(slots.reserve(limit_keys("feishu", "chat", f"oc_{i}", LIMITS), START, 120.0)[0])
             for i in range(1001)]
    assert times[:50] == [0.0] * 50 and times[950:1000] == [19.0] * 50
    assert times[1000] == 60.0
