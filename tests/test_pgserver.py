"""tests/pgserver.py starts a real PostgreSQL: row locks work, and stop() really stops it."""

from __future__ import annotations

import socket
from pathlib import Path

import psycopg

from .pgserver import make_database, start_postgres


def _port_is_open(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.settimeout(2)
        return sock.connect_ex(("127.0.0.1", port)) == 0


def test_real_server_skip_locked_and_stop(tmp_path: Path) -> None:
    server = start_postgres(tmp_path)
    try:
        assert server.url == f"postgresql+psycopg://collabbot@127.0.0.1:{server.port}/collabbot_test"
        assert _port_is_open(server.port)

        with psycopg.connect(server.dsn(), autocommit=True) as setup:
            setup.execute("CREATE TABLE jobs (id int PRIMARY KEY, payload text NOT NULL)")
            setup.execute("INSERT INTO jobs VALUES (1, 'first'), (2, 'second')")

        claim = "SELECT id, payload FROM jobs ORDER BY id FOR UPDATE SKIP LOCKED"
        with psycopg.connect(server.dsn()) as first, psycopg.connect(server.dsn()) as second:
            # Both connections are in open transactions: the first one holds the lock on row 1.
            assert first.execute(claim + " LIMIT 1").fetchall() == [(1, "first")]
            assert second.execute(claim + " LIMIT 1").fetchall() == [(2, "second")]
            # Each transaction still sees its own locked row, never the other one's; a third sees none.
            assert second.execute(claim).fetchall() == [(2, "second")]
            assert first.execute(claim).fetchall() == [(1, "first")]
            with psycopg.connect(server.dsn()) as third:
                assert third.execute(claim).fetchall() == []
            first.rollback()
            # Row 1 is free again once the first transaction ends; row 2 is still held.
            with psycopg.connect(server.dsn()) as third:
                assert third.execute(claim).fetchall() == [(1, "first")]

        other_url = make_database(server, "isolated_one")
        assert other_url == f"postgresql+psycopg://collabbot@127.0.0.1:{server.port}/isolated_one"
        with psycopg.connect(server.dsn("isolated_one")) as conn:
            assert conn.execute("SELECT current_database()").fetchone() == ("isolated_one",)
            assert conn.execute("SELECT to_regclass('jobs')").fetchone() == (None,)
    finally:
        server.stop()

    assert not _port_is_open(server.port)
    assert not server.base.exists()
    server.stop()  # a second stop is harmless
