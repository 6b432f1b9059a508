"""Storage on both back-ends (the `db` fixture runs each test on SQLite and PostgreSQL): the migrations
produce exactly the models' schema, upgrading is idempotent, the outbox's claim/lease/dead cycle and
its dedupe keys, the inbound receipts' uniqueness, SQLite's pragmas and UTC datetimes."""

from __future__ import annotations

import subprocess
import sys
import threading
from datetime import UTC, datetime, timedelta, timezone

import pytest
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import delete, func, select, text, update
from sqlalchemy.exc import IntegrityError

from collabbot.storage import outbox
from collabbot.storage.db import Database
from collabbot.storage.installation import installation_id
from collabbot.storage.migrate import alembic_config, current_revision, upgrade
from collabbot.storage.models import Base, InboundReceipt, InstallationSetting, OutboxMessage, Task, User

from .conftest import truncate_all

NOW = datetime(2026, 12, 1, 1, 0, tzinfo=UTC)
LEASE = timedelta(seconds=60)


def _declared_by_models(name: str | None, kind: str, parents: dict) -> bool:
    """The archive's full-text index is made by migration 0011 only, per back-end (an FTS5 virtual table and
    its shadow tables on SQLite, a generated tsvector column and its GIN index on PostgreSQL): no model can
    declare it for both."""
    return not (name or "").startswith(("archive_fts", "ix_archive_records_fts"))


def schema_differences(db: Database) -> list:
    with db.engine.connect() as conn:
        context = MigrationContext.configure(conn, opts={"compare_type": True, "compare_server_default": True,
                                                         "include_name": _declared_by_models})
        return compare_metadata(context, Base.metadata)


def head_revision(db: Database) -> str | None:
    return ScriptDirectory.from_config(alembic_config(db.engine)).get_current_head()


def add_rows(db: Database, n: int, prefix: str = "k", now: datetime = NOW) -> None:
    with db.transaction() as s:
        for i in range(n):
            assert outbox.enqueue(s, dedupe_key=f"{prefix}:{i}", platform="console", target_kind="chat",
                                  target_id="g", target_name="g", payload={"parts": [f"m{i}"], "card": None}, now=now)


def claim(db: Database, now: datetime = NOW, limit: int = 100) -> list[int]:
    with db.transaction() as s:
        return [item.id for item in outbox.claim(s, now, limit, LEASE)]


def rows(db: Database) -> list[OutboxMessage]:
    with db.transaction() as s:
        found = list(s.scalars(select(OutboxMessage).order_by(OutboxMessage.id)))
        s.expunge_all()
        return found


# --- schema ---------------------------------------------------------------------------------------

def test_the_migrations_produce_exactly_the_models_schema(db: Database) -> None:
    assert current_revision(db.engine) == head_revision(db)
    assert schema_differences(db) == []


def test_upgrading_again_is_harmless_and_keeps_the_data(db: Database) -> None:
    add_rows(db, 2)
    upgrade(db.engine)
    upgrade(db.engine)
    assert current_revision(db.engine) == head_revision(db)
    assert len(rows(db)) == 2


def test_collabbot_db_upgrade_is_idempotent(db: Database) -> None:
    add_rows(db, 1)
    for _ in range(2):
        result = subprocess.run([sys.executable, "-m", "collabbot.adapters.server", "db", "upgrade", "--db", db.url],
                                capture_output=True, text=True, timeout=60, check=False)
        assert result.returncode == 0, result.stderr
        assert "up to date" in result.stdout
    assert current_revision(db.engine) == head_revision(db)
    assert len(rows(db)) == 1


def test_a_fresh_database_is_migrated_from_nothing(tmp_path) -> None:
    fresh = Database(f"sqlite:///{tmp_path / 'fresh.db'}")
    try:
        assert current_revision(fresh.engine) is None
        upgrade(fresh.engine)
        assert schema_differences(fresh) == []
    finally:
        fresh.dispose()


def test_foreign_keys_are_enforced(db: Database) -> None:
    with pytest.raises(IntegrityError), db.transaction() as s:
        s.add(Task(title="orphan", initiator_id=9999, owner_id=9999, status="todo", priority="mid", attachments=[],
                   percent=0, created_at=NOW, updated_at=NOW, version=1))
        s.flush()
    with db.transaction() as s:
        assert s.scalar(select(func.count()).select_from(Task)) == 0


# --- the outbox -----------------------------------------------------------------------------------

def test_enqueue_with_a_duplicate_key_inserts_nothing(db: Database) -> None:
    with db.transaction() as s:
        assert outbox.enqueue(s, dedupe_key="nag:task:1:assign:1:1", platform="console", target_kind="chat",
                              target_id="g", target_name="g", payload={"parts": ["first"], "card": None}, now=NOW)
        assert not outbox.enqueue(s, dedupe_key="nag:task:1:assign:1:1", platform="console", target_kind="user",
                                  target_id="u", target_name="u", payload={"parts": ["second"], "card": None}, now=NOW)
    with db.transaction() as s:  # and in a later transaction, as a re-run sweep or a second instance would
        assert not outbox.enqueue(s, dedupe_key="nag:task:1:assign:1:1", platform="console", target_kind="chat",
                                  target_id="g", target_name="g", payload={"parts": ["third"], "card": None}, now=NOW)
    [row] = rows(db)
    assert row.payload == {"parts": ["first"], "card": None} and row.target_kind == "chat"


def test_a_claimed_row_is_not_claimed_again_until_its_lease_runs_out(db: Database) -> None:
    add_rows(db, 3)
    first = claim(db, limit=2)
    assert len(first) == 2
    second = claim(db)
    assert len(second) == 1 and not set(first) & set(second)
    assert claim(db, NOW + LEASE - timedelta(seconds=1)) == []
    again = claim(db, NOW + LEASE)  # the worker died between claim and mark: the rows come back
    assert sorted(again) == sorted(first + second)
    assert all(r.attempts == 0 for r in rows(db))


def test_rows_due_later_wait_and_come_in_order(db: Database) -> None:
    add_rows(db, 1, "later", now=NOW + timedelta(hours=1))
    add_rows(db, 2, "now")
    claimed = claim(db)
    assert [r.dedupe_key for r in rows(db) if r.id in claimed] == ["now:0", "now:1"]
    later = next(r.id for r in rows(db) if r.dedupe_key == "later:0")
    # an hour on, the first claims' leases have run out too: all three, in due order
    assert claim(db, NOW + timedelta(hours=1)) == [*claimed, later]


def test_mark_sent_failed_dead_and_retry(db: Database) -> None:
    add_rows(db, 3)
    a, b, c = claim(db)
    retry_at = NOW + timedelta(seconds=30)
    with db.transaction() as s:
        outbox.mark_sent(s, a, NOW, "msg-1")
        outbox.mark_failed(s, b, "HTTP 500", retry_at)
        outbox.mark_failed(s, c, "HTTP 400 bad receive_id", None)
    by_id = {r.id: r for r in rows(db)}
    assert (by_id[a].status, by_id[a].platform_message_id, by_id[a].attempts) == ("sent", "msg-1", 1)
    assert (by_id[b].status, by_id[b].attempts, by_id[b].last_error) == ("pending", 1, "HTTP 500")
    assert (by_id[c].status, by_id[c].attempts) == ("dead", 1)
    assert claim(db, retry_at - timedelta(seconds=1)) == []
    assert claim(db, retry_at) == [b]  # never the sent row nor the dead one
    with db.transaction() as s:
        outbox.mark_sent(s, b, retry_at, "msg-2")
    later = NOW + timedelta(hours=1)
    assert claim(db, later) == []
    with db.transaction() as s:
        assert outbox.retry_dead(s, later) == 1
        assert outbox.retry_dead(s, later) == 0
    revived = {r.id: r for r in rows(db)}[c]
    assert (revived.status, revived.attempts, revived.claimed_until) == ("pending", 0, None)
    assert claim(db, later) == [c]


def test_retry_dead_with_ids_revives_only_those(db: Database) -> None:
    add_rows(db, 2)
    ids = claim(db)
    with db.transaction() as s:
        for i in ids:
            outbox.mark_failed(s, i, "gone", None)
    with db.transaction() as s:
        assert outbox.retry_dead(s, NOW, [ids[1]]) == 1
    assert [r.status for r in rows(db)] == ["dead", "pending"]


def test_concurrent_claimers_never_get_the_same_row(db: Database) -> None:
    add_rows(db, 200)
    got: list[list[int]] = [[] for _ in range(4)]
    errors: list[BaseException] = []

    def worker(n: int) -> None:
        try:
            while True:
                ids = claim(db, limit=7)
                if not ids:
                    return
                got[n].extend(ids)
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=worker, args=(n,)) for n in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert not errors
    everything = [i for ids in got for i in ids]
    assert len(everything) == len(set(everything)) == 200


def test_postgresql_claimers_skip_rows_locked_by_an_open_claim(pg_database: Database) -> None:
    """Two connections claim at once and hold their transactions open: with FOR UPDATE SKIP LOCKED the
    second takes other rows instead of waiting for (or taking) the first one's. (PostgreSQL only: SQLite
    serialises writers with BEGIN IMMEDIATE, so there a second claim waits for the first to commit.)"""
    db = pg_database
    truncate_all(db)
    add_rows(db, 10)
    with db.transaction() as s:
        installation_id(s)  # made once beforehand, as the worker does (its insert would wait for the other claim)
    both_claimed = threading.Barrier(2, timeout=20)
    got: dict[str, list[int]] = {}
    errors: list[BaseException] = []

    def worker(name: str) -> None:
        try:
            with db.transaction() as s:
                got[name] = [item.id for item in outbox.claim(s, NOW, 5, LEASE)]
                both_claimed.wait()  # the other claims while this transaction still holds its row locks
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=worker, args=(name,)) for name in ("a", "b")]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert not errors
    assert len(got["a"]) == len(got["b"]) == 5
    assert not set(got["a"]) & set(got["b"])


def test_next_due_is_the_earliest_pending_row(db: Database) -> None:
    with db.transaction() as s:
        assert outbox.next_due(s) is None
    add_rows(db, 1, "late", now=NOW + timedelta(hours=2))
    add_rows(db, 1, "soon", now=NOW + timedelta(minutes=5))
    with db.transaction() as s:
        assert outbox.next_due(s) == NOW + timedelta(minutes=5)


# --- inbound receipts -----------------------------------------------------------------------------

def test_inbound_receipts_are_unique_per_platform_and_event(db: Database) -> None:
    with db.transaction() as s:
        s.add(InboundReceipt(platform="feishu", event_id="evt-1", seen_at=NOW, reply={"toast": ""}))
        s.add(InboundReceipt(platform="dingtalk", event_id="evt-1", seen_at=NOW))  # another platform: fine
    with pytest.raises(IntegrityError), db.transaction() as s:
        s.add(InboundReceipt(platform="feishu", event_id="evt-1", seen_at=NOW))
        s.flush()
    with db.transaction() as s:
        assert s.scalar(select(func.count()).select_from(InboundReceipt)) == 2


# --- SQLite settings and time ---------------------------------------------------------------------

def test_sqlite_runs_with_wal_foreign_keys_and_a_busy_timeout(sqlite_db: Database) -> None:
    with sqlite_db.engine.connect() as conn:
        assert conn.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"
        assert conn.exec_driver_sql("PRAGMA foreign_keys").scalar() == 1
        assert conn.exec_driver_sql("PRAGMA busy_timeout").scalar() == 10000


def test_a_priority_writer_goes_before_the_writers_already_waiting() -> None:
    """The inbound journal's commit (priority) must not queue behind a backlog of engine transactions."""
    from collabbot.storage.db import WriterLock

    lock, order = WriterLock(), []
    assert lock.acquire()
    assert lock.acquire()  # re-entrant in its owner
    lock.release()

    def take(name: str, priority: bool) -> None:
        assert lock.acquire(priority)
        order.append(name)
        lock.release()

    waiting = [threading.Thread(target=take, args=(f"engine{i}", False)) for i in range(3)]
    for t in waiting:
        t.start()
    while len([1 for t in waiting if t.is_alive()]) < 3:
        pass
    urgent = threading.Thread(target=take, args=("journal", True))
    urgent.start()
    while not lock._urgent:  # the journal is waiting
        threading.Event().wait(0.001)
    lock.release()
    for t in (*waiting, urgent):
        t.join(5)
    assert order[0] == "journal" and sorted(order[1:]) == ["engine0", "engine1", "engine2"]
    assert lock.acquire(timeout=0)  # free again
    lock.release()


def test_a_failed_transaction_rolls_back_everything(db: Database) -> None:
    with pytest.raises(RuntimeError), db.transaction() as s:
        s.add(User(name="ghost", created_at=NOW))
        s.flush()
        raise RuntimeError("boom")
    with db.transaction() as s:
        assert s.scalar(select(func.count()).select_from(User)) == 0


def test_datetimes_round_trip_as_aware_utc(db: Database) -> None:
    shanghai = timezone(timedelta(hours=8))
    local = datetime(2026, 12, 1, 9, 30, 15, 123456, tzinfo=shanghai)
    with db.transaction() as s:
        user = User(name="张三", created_at=local)
        s.add(user)
        s.flush()
        user_id = user.id
    with db.transaction() as s:
        back = s.get(User, user_id)
        assert back is not None
        assert back.created_at == local
        assert back.created_at.tzinfo is UTC
        assert back.created_at.hour == 1  # 09:30 in Shanghai is 01:30 UTC
        stored = s.execute(text("SELECT created_at FROM users WHERE id = :id"), {"id": user_id}).scalar()
    stored_text = stored if isinstance(stored, str) else stored.isoformat(sep=" ")
    assert stored_text.startswith("2026-12-01 01:30:15")  # naive UTC in the database
    with pytest.raises(Exception, match="naive datetime"), db.transaction() as s:
        s.add(User(name="naive", created_at=datetime(2026, 12, 1, 9, 0)))
        s.flush()


def test_comparisons_in_sql_use_utc_on_both_back_ends(db: Database) -> None:
    """A time given in another zone compares by instant, not by wall-clock digits."""
    add_rows(db, 1, "at-nine-utc", now=datetime(2026, 12, 1, 9, 0, tzinfo=UTC))
    tokyo = timezone(timedelta(hours=9))
    assert claim(db, datetime(2026, 12, 1, 17, 59, tzinfo=tokyo)) == []  # 08:59 UTC
    assert len(claim(db, datetime(2026, 12, 1, 18, 0, tzinfo=tokyo))) == 1


# --- installation id, idempotency keys, claim tokens ----------------------------------------------

def test_idempotency_keys_carry_an_installation_id_that_a_reset_database_changes(db: Database) -> None:
    add_rows(db, 1)
    with db.transaction() as s:
        first = outbox.claim(s, NOW, 10, LEASE)[0]
        iid = installation_id(s)
    assert first.idempotency_key == f"{iid}:k:0" and len(iid) >= 8
    with db.transaction() as s:
        assert installation_id(s) == iid  # stored: the same id every time
    with db.transaction() as s:  # a reset (or a second deployment on an empty database) on the same app
        s.execute(delete(OutboxMessage))
        s.execute(delete(InstallationSetting))
    add_rows(db, 1)
    with db.transaction() as s:
        again = outbox.claim(s, NOW, 10, LEASE)[0]
    assert again.dedupe_key == first.dedupe_key and again.idempotency_key != first.idempotency_key


def test_instances_starting_together_agree_on_one_installation_id(db: Database) -> None:
    start = threading.Barrier(4, timeout=20)
    got: list[str] = []
    errors: list[BaseException] = []

    def boot() -> None:
        try:
            start.wait()
            with db.transaction() as s:
                got.append(installation_id(s))
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=boot) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert not errors and len(got) == 4 and len(set(got)) == 1


def test_a_worker_that_lost_its_lease_changes_nothing(db: Database) -> None:
    add_rows(db, 1)
    with db.transaction() as s:
        (old,) = outbox.claim(s, NOW, 10, LEASE)
    with db.transaction() as s:  # the lease ran out; another worker claims the row
        (new,) = outbox.claim(s, NOW + LEASE, 10, LEASE)
    assert new.id == old.id and new.claim_token != old.claim_token
    with db.transaction() as s:
        assert not outbox.mark_sent(s, old.id, NOW, "late", old.claim_token)
        assert not outbox.mark_failed(s, old.id, "late", None, old.claim_token)
        assert not outbox.defer(s, old.id, NOW + timedelta(hours=1), old.claim_token)
        assert not outbox.renew(s, old.id, old.claim_token, NOW + timedelta(hours=1))
    (row,) = rows(db)
    assert (row.status, row.attempts, row.claim_token) == ("pending", 0, new.claim_token)
    with db.transaction() as s:
        assert outbox.mark_sent(s, new.id, NOW + LEASE, "m-1", new.claim_token)
    assert rows(db)[0].status == "sent"


def test_defer_puts_a_row_back_without_spending_an_attempt(db: Database) -> None:
    add_rows(db, 1)
    with db.transaction() as s:
        (item,) = outbox.claim(s, NOW, 10, LEASE)
        assert outbox.defer(s, item.id, NOW + timedelta(seconds=5), item.claim_token, "throttled")
    (row,) = rows(db)
    assert (row.attempts, row.claimed_until, row.last_error) == (0, None, "throttled")
    assert claim(db, NOW + timedelta(seconds=4)) == []
    assert claim(db, NOW + timedelta(seconds=5)) == [item.id]


def test_prune_sent_deletes_only_old_sent_rows_in_batches(db: Database) -> None:
    add_rows(db, 5)
    ids = claim(db)
    with db.transaction() as s:
        for i in ids[:4]:
            outbox.mark_sent(s, i, NOW, None)
    with db.transaction() as s:
        assert outbox.prune_sent(s, NOW, 10) == 0  # not older than the cut-off
        assert outbox.prune_sent(s, NOW + timedelta(seconds=1), 3) == 3
        assert outbox.prune_sent(s, NOW + timedelta(seconds=1), 3) == 1
    assert [r.id for r in rows(db)] == [ids[4]]  # the pending row stays


def test_mark_sent_many_records_only_the_rows_this_claim_still_holds(db: Database) -> None:
    add_rows(db, 3)
    with db.transaction() as s:
        a, b, c = outbox.claim(s, NOW, 10, LEASE)
    with db.transaction() as s:  # c's lease ran out and another worker took it
        s.execute(update(OutboxMessage).where(OutboxMessage.id == c.id).values(claim_token="someone-else"))
    with db.transaction() as s:
        held = outbox.mark_sent_many(s, a.claim_token, NOW, {a.id: "m-a", b.id: None, c.id: "m-c"})
    assert held == {a.id, b.id}
    by_id = {r.id: r for r in rows(db)}
    assert (by_id[a.id].status, by_id[a.id].platform_message_id, by_id[a.id].attempts) == ("sent", "m-a", 1)
    assert (by_id[b.id].status, by_id[b.id].platform_message_id) == ("sent", None)
    assert (by_id[c.id].status, by_id[c.id].platform_message_id) == ("pending", None)


def test_a_group_commit_of_inbound_rows_returns_each_rows_id_in_order(db: Database) -> None:
    """The journal hands each callback the id of its own row: ids must come back in the rows' order."""
    from collabbot.storage import inbound
    from collabbot.storage.models import InboundQueueItem

    rows = [("feishu", "event", {"n": i, "text": f"新建任务 {i}"}) for i in range(250)]
    with db.transaction() as s:
        ids = inbound.put_many(s, rows, timedelta(seconds=60))
        assert inbound.put_many(s, [], timedelta(seconds=60)) == []
    assert len(set(ids)) == 250
    with db.transaction() as s:
        stored = {r.id: r for r in s.scalars(select(InboundQueueItem))}
        assert [stored[i].payload for i in ids] == [payload for _, _, payload in rows]
        assert all(stored[i].claimed_until > stored[i].created_at for i in ids)  # leased to the writer


def test_the_journals_bare_writer_stores_rows_as_the_orm_does_and_deletes_the_done_ones(db: Database) -> None:
    """The journal writes without the ORM (its commit is on every answer's path): its rows must read back,
    and be claimed, exactly like rows written through the ORM, in the order given; `done` must delete only
    the rows it names; and a batch that fails leaves nothing of itself, deletes included."""
    from collabbot.storage import inbound
    from collabbot.storage.models import InboundQueueItem

    writer = inbound.queue_writer(db)
    rows = [("feishu", "event", {"n": i, "text": f"新建任务 {i} ' \" ; DROP TABLE tasks; -- \\ \\u0000 \u0000 \U0001f600"})
            for i in range(40)]
    ids = writer.write(rows, timedelta(0), [])
    with db.transaction() as s:
        [orm_id] = inbound.put_many(s, [("feishu", "event", {"n": "orm"})], timedelta(0))
    assert len(set(ids)) == 40 and ids == sorted(ids) and orm_id > max(ids)
    with db.transaction() as s:
        stored = {r.id: r for r in s.scalars(select(InboundQueueItem))}
        # PostgreSQL's JSON functions cannot take U+0000 (the engine drops it anyway); typed text like it stays
        expected = [{**p, "text": p["text"].replace("\x00", "")} if db.is_postgres else p for _, _, p in rows]
        assert [stored[i].payload for i in ids] == expected
        assert {(stored[i].platform, stored[i].kind, stored[i].attempts, stored[i].last_error) for i in ids} == {
            ("feishu", "event", 0, "")}
        for column in ("not_before", "claimed_until", "created_at"):  # aware UTC, as the ORM's own rows
            assert getattr(stored[ids[0]], column).tzinfo is not None
            assert abs(getattr(stored[ids[0]], column) - getattr(stored[orm_id], column)) < timedelta(seconds=30)
    with db.transaction() as s:  # unleased (a lease of 0): any instance takes them, in order, the ORM's row last
        assert [item.id for item in inbound.claim(s, 100, timedelta(seconds=60), ("feishu",))] == [*ids, orm_id]

    assert writer.write([], timedelta(0), ids[:39]) == []
    with db.transaction() as s:
        assert set(s.scalars(select(InboundQueueItem.id))) == {ids[39], orm_id}

    broken = [rows[0], ("feishu", None, {"n": "no kind"}), rows[2]]  # the second row breaks a NOT NULL
    with pytest.raises(Exception, match=r"(?i)null"):
        writer.write(broken, timedelta(0), [ids[39]])  # type: ignore[list-item]
    with db.transaction() as s:
        assert set(s.scalars(select(InboundQueueItem.id))) == {ids[39], orm_id}
    writer.close()


def test_the_journal_on_postgresql_outlives_a_dropped_connection(pg_database: Database) -> None:
    """The journal's PostgreSQL writer keeps a connection of its own, outside the pool and its ping: one the
    server drops (a restart, an admin's pg_terminate_backend) is replaced, and the batch still lands."""
    from collabbot.storage import inbound
    from collabbot.storage.models import InboundQueueItem

    truncate_all(pg_database)
    writer = inbound.queue_writer(pg_database)
    [first] = writer.write([("feishu", "event", {"n": 1})], timedelta(0), [])
    with pg_database.transaction() as s:
        pid = s.execute(text("SELECT pid FROM pg_stat_activity WHERE pid <> pg_backend_pid() AND "
                             "datname = current_database() AND query LIKE '%json_array_elements%'")).scalar_one()
        s.execute(text("SELECT pg_terminate_backend(:pid)"), {"pid": pid})
    [second] = writer.write([("feishu", "event", {"n": 2})], timedelta(0), [first])
    with pg_database.transaction() as s:
        assert [(r.id, r.payload) for r in s.scalars(select(InboundQueueItem))] == [(second, {"n": 2})]
    writer.close()
