"""Start a throwaway PostgreSQL server for the test suite.

Why this exists: storage tests must run against a *real* PostgreSQL server (row locks,
``SKIP LOCKED``, transactional DDL, type coercion ...); a mock or SQLite alone would hide exactly
the bugs those tests are there to catch. So the test run starts its own server from the machine's
PostgreSQL binaries (Debian: the ``postgresql`` package), in a fresh cluster under a temp dir, on a
free port of 127.0.0.1, and throws it away afterwards.

PostgreSQL refuses to run as root (``initdb``, ``pg_ctl`` and ``postgres`` all exit with "cannot be
run as root"), yet CI and containers often run the tests as root. When we are root the cluster
directory is therefore handed to the ``postgres`` system user (``nobody`` if there is none) and
every server command runs through ``runuser -u USER --`` (or ``su USER -s /bin/sh -c`` where
``runuser`` is missing). That user must be able to reach the directory: pytest's ``tmp_path``
lives under ``/tmp/pytest-of-root`` with mode 0700, which ``postgres`` cannot enter, so in that
case the cluster goes to a fresh directory in the system temp dir instead (``stop()`` removes it).

Set ``COLLABBOT_TEST_PG_URL`` (an SQLAlchemy URL such as
``postgresql+psycopg://me@localhost:5432/collabbot_test``) to make the test fixtures use a server
of your own instead of calling :func:`start_postgres`; that choice is made by the callers
(``tests/conftest.py``), not here. :func:`make_database` accepts such a URL as well.

Usage::

    server = start_postgres(tmp_dir)
    try:
        engine = create_engine(server.url)
        other_url = make_database(server, "isolated")
    finally:
        server.stop()
"""

from __future__ import annotations

import atexit
import glob
import os
import pwd
import re
import shlex
import shutil
import socket
import subprocess
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import psycopg
from psycopg import sql

USER = "collabbot"
DATABASE = "collabbot_test"
HOST = "127.0.0.1"
START_TIMEOUT = 30.0  # seconds, for pg_ctl -w and for the first successful connection
# A unix socket path must fit in sun_path (108 bytes with the NUL); PostgreSQL adds "/.s.PGSQL.NNNNN".
_MAX_SOCKET_DIR_LEN = 107 - len("/.s.PGSQL.65535") - 1
_SETTINGS = {
    "listen_addresses": HOST,
    "fsync": "off",
    "synchronous_commit": "off",
    "full_page_writes": "off",
    "max_connections": "200",
}


class PgServerError(RuntimeError):
    """The throwaway PostgreSQL server could not be found, started or used."""


@dataclass
class PgServer:
    """A running throwaway PostgreSQL server; call :meth:`stop` when done."""

    url: str  # SQLAlchemy URL of the ``collabbot_test`` database
    host: str
    port: int
    user: str
    dbname: str
    base: Path  # the temp dir holding data/, the log and the socket dir
    _pg_ctl: str = field(repr=False)
    _run_as: str | None = field(repr=False)  # system user the server runs as when we are root
    _extra_dirs: list[Path] = field(default_factory=list, repr=False)
    _stopped: bool = field(default=False, repr=False)

    @property
    def data_dir(self) -> Path:
        return self.base / "data"

    @property
    def log_file(self) -> Path:
        return self.base / "server.log"

    def dsn(self, dbname: str | None = None) -> str:
        """libpq/psycopg connection string (psycopg does not understand the ``+psycopg`` URL)."""
        return f"postgresql://{self.user}@{self.host}:{self.port}/{dbname or self.dbname}"

    def stop(self) -> None:
        """Stop the server at once (``-m immediate``) and delete its files. Safe to call twice."""
        if self._stopped:
            return
        self._stopped = True
        atexit.unregister(self.stop)
        try:
            _run(
                [self._pg_ctl, "stop", "-D", str(self.data_dir), "-m", "immediate", "-w", "-t", "30"],
                self._run_as,
                cwd=self.base,
                check=False,
            )
        finally:
            for path in [self.base, *self._extra_dirs]:
                shutil.rmtree(path, ignore_errors=True)


def start_postgres(base_dir: Path) -> PgServer:
    """Create a fresh cluster in a temp dir under ``base_dir``, start it and create ``collabbot_test``.

    The server listens on a free port of 127.0.0.1 (socket dir inside the temp dir), with durability
    switched off for speed; superuser ``collabbot``, trust authentication.
    """
    initdb, pg_ctl = find_pg_binaries()
    run_as = _server_user() if os.geteuid() == 0 else None
    base = _make_owned_dir(Path(base_dir), "pg-", run_as)
    extra_dirs: list[Path] = []
    try:
        sock_dir = base / "s"
        if len(str(sock_dir)) > _MAX_SOCKET_DIR_LEN:  # deep pytest tmp dirs: keep the socket path short
            sock_dir = _make_owned_dir(Path(tempfile.gettempdir()), "pgs-", run_as)
            extra_dirs.append(sock_dir)
        else:
            sock_dir.mkdir()
            _chown(sock_dir, run_as)

        data = base / "data"
        _run(
            [initdb, "-D", str(data), "-A", "trust", "-U", USER, "--no-sync", "-E", "UTF8", "--locale=C"],
            run_as,
            cwd=base,
        )
        settings = {**_SETTINGS, "unix_socket_directories": str(sock_dir)}
        with (data / "postgresql.conf").open("a", encoding="utf-8") as conf:
            conf.write("\n# added by tests/pgserver.py\n")
            for key, value in settings.items():
                conf.write(f"{key} = '{value.replace(chr(39), chr(39) * 2)}'\n")

        port = _start(pg_ctl, data, base / "server.log", run_as)
        server = PgServer(
            url=f"postgresql+psycopg://{USER}@{HOST}:{port}/{DATABASE}",
            host=HOST,
            port=port,
            user=USER,
            dbname=DATABASE,
            base=base,
            _pg_ctl=pg_ctl,
            _run_as=run_as,
            _extra_dirs=extra_dirs,
        )
    except BaseException:
        for path in [base, *extra_dirs]:
            shutil.rmtree(path, ignore_errors=True)
        raise
    atexit.register(server.stop)  # a crashed test run must not leave a postmaster behind
    try:
        _wait_for_connection(server)
        _create_database(server.dsn("postgres"), DATABASE)
    except BaseException:
        server.stop()
        raise
    return server


def make_database(server: PgServer | str, name: str, *, replace: bool = False) -> str:
    """Create database ``name`` on ``server`` (a :class:`PgServer` or an SQLAlchemy URL) and return its URL.

    For tests that need a database of their own. With ``replace=True`` an existing database of that
    name is dropped first (useful against a long-lived ``COLLABBOT_TEST_PG_URL`` server).
    """
    from sqlalchemy.engine import make_url

    if isinstance(server, PgServer):
        parsed, admin_dsn = make_url(server.url), server.dsn("postgres")
    else:
        parsed = make_url(server)
        admin_dsn = parsed.set(drivername="postgresql").render_as_string(hide_password=False)
    _create_database(admin_dsn, name, replace=replace)
    return parsed.set(database=name).render_as_string(hide_password=False)


def find_pg_binaries() -> tuple[str, str]:
    """Paths of ``initdb`` and ``pg_ctl``: from PATH, else the newest ``/usr/lib/postgresql/*/bin``."""
    initdb, pg_ctl = shutil.which("initdb"), shutil.which("pg_ctl")
    if initdb and pg_ctl:
        return initdb, pg_ctl

    def version(bin_dir: str) -> tuple[int, ...]:
        match = re.search(r"/postgresql/([0-9.]+)/bin$", bin_dir)
        return tuple(int(p) for p in match.group(1).split(".") if p) if match else (0,)

    for bin_dir in sorted(glob.glob("/usr/lib/postgresql/*/bin"), key=version, reverse=True):
        initdb, pg_ctl = os.path.join(bin_dir, "initdb"), os.path.join(bin_dir, "pg_ctl")
        if os.access(initdb, os.X_OK) and os.access(pg_ctl, os.X_OK):
            return initdb, pg_ctl
    raise PgServerError(
        "No PostgreSQL server binaries (initdb, pg_ctl) on PATH or in /usr/lib/postgresql/*/bin. "
        "The tests need a real PostgreSQL 15+: install the `postgresql` Debian package "
        "(apt-get install postgresql), or set COLLABBOT_TEST_PG_URL to a server of your own."
    )


# --- internals ---------------------------------------------------------------------------------------


def _server_user() -> str:
    """The unprivileged system user that runs the server when we are root."""
    for name in ("postgres", "nobody"):
        try:
            pwd.getpwnam(name)
            return name
        except KeyError:
            continue
    raise PgServerError("Running as root, but there is neither a `postgres` nor a `nobody` user to run PostgreSQL.")


def _chown(path: Path, user: str | None) -> None:
    if user is not None:
        entry = pwd.getpwnam(user)
        os.chown(path, entry.pw_uid, entry.pw_gid)


def _make_owned_dir(parent: Path, prefix: str, user: str | None) -> Path:
    """A fresh temp dir under ``parent`` that ``user`` owns and can reach (fallback: the system temp dir)."""
    parent.mkdir(parents=True, exist_ok=True)
    candidates = [parent] if user is None else [parent, Path(tempfile.gettempdir())]
    for candidate in candidates:
        path = Path(tempfile.mkdtemp(prefix=prefix, dir=candidate))
        _chown(path, user)
        if user is None or _run(["test", "-w", str(path), "-a", "-x", str(path)], user, check=False).returncode == 0:
            return path
        shutil.rmtree(path, ignore_errors=True)
    raise PgServerError(
        f"User {user!r} cannot reach a directory under {parent} nor under {tempfile.gettempdir()}; "
        "PostgreSQL needs a directory it can write to."
    )


def _as_user(cmd: list[str], user: str | None) -> list[str]:
    if user is None:
        return cmd
    if shutil.which("runuser"):
        return ["runuser", "-u", user, "--", *cmd]
    if shutil.which("su"):
        return ["su", user, "-s", "/bin/sh", "-c", shlex.join(cmd)]
    raise PgServerError("Running as root, but neither `runuser` nor `su` is available to drop privileges.")


def _run(
    cmd: list[str], user: str | None, *, cwd: Path | None = None, check: bool = True
) -> subprocess.CompletedProcess[str]:
    # PG* variables (PGDATA, PGPORT, PGOPTIONS, ...) of the caller must not leak into our cluster.
    env = {k: v for k, v in os.environ.items() if not k.startswith("PG")}
    result = subprocess.run(
        _as_user(cmd, user),
        cwd=cwd,
        env=env,
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        check=False,
    )
    if check and result.returncode != 0:
        raise PgServerError(
            f"{shlex.join(cmd)} failed (exit {result.returncode})"
            + (f" as user {user}" if user else "")
            + f":\n{result.stdout}{result.stderr}"
        )
    return result


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((HOST, 0))
        return int(sock.getsockname()[1])


def _start(pg_ctl: str, data: Path, log: Path, user: str | None) -> int:
    """Start the server on a free port (retrying if another process grabs the port first)."""
    error: PgServerError | None = None
    for _ in range(3):
        port = _free_port()
        cmd = [pg_ctl, "start", "-D", str(data), "-l", str(log), "-w", "-t", str(int(START_TIMEOUT))]
        try:
            _run([*cmd, "-o", f"-p {port}"], user, cwd=data.parent)
            return port
        except PgServerError as exc:
            _run([pg_ctl, "stop", "-D", str(data), "-m", "immediate", "-w"], user, check=False)
            tail = log.read_text(errors="replace")[-3000:] if log.exists() else "(no log)"
            error = PgServerError(f"{exc}\n--- {log} ---\n{tail}")
    assert error is not None
    raise error


def _wait_for_connection(server: PgServer) -> None:
    deadline = time.monotonic() + START_TIMEOUT
    while True:
        try:
            with psycopg.connect(server.dsn("postgres"), connect_timeout=5) as conn:
                conn.execute("SELECT 1")
            return
        except psycopg.OperationalError as exc:
            if time.monotonic() > deadline:
                raise PgServerError(f"PostgreSQL on port {server.port} does not accept connections: {exc}") from exc
            time.sleep(0.1)


def _create_database(admin_dsn: str, name: str, *, replace: bool = False) -> None:
    with psycopg.connect(admin_dsn, autocommit=True, connect_timeout=10) as conn:
        if replace:
            conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
