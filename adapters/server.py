"""The composition root and the command line: the one module that wires every part together.

    collabbot console [--script FILE] [--org FILE] [--db URL] [--config FILE]
    collabbot serve [--config FILE]
    collabbot db upgrade [--db URL] [--config FILE]
    collabbot db copy --to URL [--db URL] [--config FILE]     (SQLite to PostgreSQL: into an empty database)
    collabbot org load FILE [--dry-run] | collabbot org sync [--platform feishu]
    collabbot outbox list [--status dead] | collabbot outbox retry [ID ...]

Whatever the admin got wrong (a config key, a `--db` URL, a database that cannot be reached, a port
in use, an org file's unknown key, an argument) stops with one line naming it and exit status 2, never
a traceback; a malformed transcript line stops with its line number and exit status 3.
"""

from __future__ import annotations

import argparse
import errno
import logging
import os
import socket
import sys
import tempfile
from dataclasses import replace
from datetime import datetime
from importlib import resources
from pathlib import Path
from typing import Any

from sqlalchemy import select
from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError, InterfaceError, OperationalError

from collabbot.bot.app import Bot
from collabbot.bot.clock import ManualClock, SystemClock
from collabbot.bot.config import Config, ConfigError, load_config, parse_config
from collabbot.bot.org import Org, OrgError, apply_org, load_org_file
from collabbot.storage import outbox
from collabbot.storage.copy import TargetNotEmpty, copy_database
from collabbot.storage.db import Database, error_line
from collabbot.storage.migrate import DatabaseUnavailable, shown_url, upgrade_or_explain
from collabbot.storage.models import OutboxMessage

log = logging.getLogger("collabbot")

EXIT_CONFIG = 2
# a module an optional feature needs -> the extra that installs it (pyproject.toml)
EXTRAS = {"psycopg": "postgres", "lark_oapi": "feishu", "Crypto": "feishu", "dingtalk_stream": "dingtalk",
          "websockets": "dingtalk", "wechatpy": "wecom"}
EXIT_TRANSCRIPT = 3
LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")


def demo_org_path() -> Path:
    return Path(str(resources.files("collabbot.examples").joinpath("demo-org.toml")))


SQLITE_DRIVERS = ("sqlite", "sqlite+pysqlite")
POSTGRES_DRIVERS = ("postgresql", "postgresql+psycopg")
PG_CONNECT_TIMEOUT = "10"  # seconds: an unreachable host is reported, not waited on for minutes


def check_database_url(url: str, key: str) -> str:
    """`url` if SQLAlchemy can open it as one of our databases (the driver spelled out, a connect
    timeout for PostgreSQL), else `ConfigError(key, …)`: a bad `--db` is refused like a bad config key."""
    example = "sqlite:///collabbot.db or postgresql+psycopg://USER@HOST:5432/DB"
    try:
        parsed = make_url(url)
    except (ArgumentError, ValueError):
        raise ConfigError(key, f"is not a database URL; use {example}") from None
    if parsed.drivername in SQLITE_DRIVERS:
        if not parsed.database or parsed.database == ":memory:":
            raise ConfigError(key, "a SQLite URL needs a file: sqlite:///collabbot.db (in memory, everything "
                                   "would be lost at exit)")
        return url
    if parsed.drivername in POSTGRES_DRIVERS:
        if not parsed.database:
            raise ConfigError(key, "a PostgreSQL URL needs a database name: postgresql+psycopg://USER@HOST:5432/DB")
        parsed = parsed.set(drivername="postgresql+psycopg")  # psycopg 3 is the driver we install
        if "connect_timeout" not in parsed.query:
            parsed = parsed.update_query_dict({"connect_timeout": PG_CONNECT_TIMEOUT})
        return parsed.render_as_string(hide_password=False)
    raise ConfigError(key, f"{parsed.drivername}:// is not supported; use {example}")


def load_settings(args: argparse.Namespace) -> Config:
    path = getattr(args, "config", None) or os.environ.get("COLLABBOT_CONFIG")
    config = load_config(path) if path else parse_config({})  # parse: COLLABBOT_DATABASE_URL applies
    if getattr(args, "db", None):
        config = replace(config, database_url=check_database_url(args.db, "--db"))
    else:
        key = "COLLABBOT_DATABASE_URL" if os.environ.get("COLLABBOT_DATABASE_URL") else "database.url"
        config = replace(config, database_url=check_database_url(config.database_url, key))
    if getattr(args, "org", None):
        config = replace(config, org_file=args.org)
    return config


def open_database(config: Config) -> Database:
    """The database, migrated; `DatabaseUnavailable` when it cannot be reached or opened."""
    db = Database(config.database_url)
    try:
        upgrade_or_explain(db.engine)
    except DatabaseUnavailable:
        db.dispose()
        raise
    return db


def load_org(config: Config) -> Org:
    return load_org_file(config.org_file or demo_org_path())


def warn_calendar(config: Config, today: datetime) -> None:
    for warning in config.calendar.coverage_warnings(today.date()):
        log.warning("%s", warning)


# --- console ------------------------------------------------------------------------------------

def cmd_console(args: argparse.Namespace) -> int:
    """The console on a fresh temporary database (removed at exit) unless `--db` names one."""
    config = load_settings(args)
    with tempfile.TemporaryDirectory(prefix="collabbot-console-") as tmp:
        if not args.db:
            # a fresh database for each console run (whatever the config names), so a transcript always
            # starts clean; it goes with the temporary directory when the console exits
            config = replace(config, database_url=f"sqlite:///{Path(tmp) / 'console.db'}")
        db = open_database(config)
        try:
            return _console(args, config, db)
        finally:
            db.dispose()


def _console(args: argparse.Namespace, config: Config, db: Database) -> int:
    from collabbot.adapters.console.app import Console
    from collabbot.adapters.console.transcript import TranscriptError, parse_line, script_lines
    from collabbot.adapters.serve import install_report_writer, report_settings

    org = load_org(config)
    clock = ManualClock(SystemClock().now().astimezone(config.calendar.tz).replace(second=0, microsecond=0))
    warned: set[int] = set()

    def warn_new_years() -> None:
        """Like `serve`, a year without holiday data is said, once, when the console's clock is in it
        (a script's first `clock` line comes before the first check)."""
        today = clock.now().astimezone(config.calendar.tz)
        if today.year not in warned:
            warned.add(today.year)
            if not config.calendar.has_holiday_data(today.year):
                log.warning("%s", config.calendar.coverage_warnings(today.date())[0])

    if not args.script:
        warn_new_years()
    report_settings(config)  # [reports] folder: where 导出 writes (the console prints the path)
    install_report_writer()
    bot = Bot(db, config, clock)
    with db.transaction() as s:
        apply_org(s, org, clock.now())
    console = Console(bot, clock, org)

    def run_line(number: int, line: str) -> bool:
        try:
            step = parse_line(line)
            if step is not None:
                console.run(step)
                warn_new_years()
        except TranscriptError as exc:
            print(f"line {number}: {exc}: {line.strip()}", file=sys.stderr)
            return False
        finally:
            for out in console.take_output():
                print(out)
        return True

    if args.script:
        try:
            lines = Path(args.script).read_text(encoding="utf-8").splitlines()
        except OSError as exc:
            print(f"cannot read {args.script}: {exc.strerror}", file=sys.stderr)
            return EXIT_TRANSCRIPT
        for number, line in script_lines(lines):
            if args.echo and line.strip() and not line.lstrip().startswith("#"):
                print(f"» {line}")
            if not run_line(number, line):
                return EXIT_TRANSCRIPT
        return 0
    print("CollabBot console. People:", "、".join(p.name for p in org.people))
    print("Chats:", "、".join(c.name for c in org.chats), "— try: in 新品上市群 as 张三: @bot 帮助   (Ctrl-D quits)")
    for number, line in enumerate(sys.stdin, 1):
        run_line(number, line)
    return 0


# --- database, org, outbox ----------------------------------------------------------------------

def cmd_db_upgrade(args: argparse.Namespace) -> int:
    config = load_settings(args)
    db = open_database(config)
    db.dispose()
    print(f"database at {shown_url(config.database_url)} is up to date")
    return 0


def cmd_db_copy(args: argparse.Namespace) -> int:
    """Stop `serve` first: rows written during the copy would be left behind."""
    config = load_settings(args)
    target_url = check_database_url(args.to, "--to")
    if target_url == config.database_url:
        raise ConfigError("--to", "is the database copied from; give the new, empty database")
    source, target = Database(config.database_url), Database(target_url)
    try:
        counts = copy_database(source, target, lambda name, n: print(f"  {name}: {n}"))
    except TargetNotEmpty as exc:
        raise ConfigError("--to", str(exc)) from None
    finally:
        source.dispose()
        target.dispose()
    print(f"copied {sum(counts.values())} rows of {len(counts)} tables from {shown_url(config.database_url)} "
          f"to {shown_url(target_url)}; point database.url there and start serve")
    return 0


def cmd_org_load(args: argparse.Namespace) -> int:
    config = load_settings(args)
    org = load_org_file(args.file)
    db = open_database(config)
    with db.transaction() as s:
        changes = apply_org(s, org, SystemClock().now())
        if args.dry_run:
            s.rollback()  # shown, not written
    db.dispose()
    for change in changes:
        print(f"would change: {change}" if args.dry_run else change)
    print(f"{len(changes)} change(s)" + (" (dry run: nothing written)" if args.dry_run else ""))
    return 0


def cmd_outbox_list(args: argparse.Namespace) -> int:
    db = open_database(load_settings(args))
    with db.transaction() as s:
        rows = s.scalars(select(OutboxMessage).where(OutboxMessage.status == args.status)
                         .order_by(OutboxMessage.id).limit(args.limit))
        for row in rows:
            print(f"{row.id}\t{row.status}\t{row.attempts}\t{row.platform}:{row.target_kind}:{row.target_id}\t"
                  f"{row.dedupe_key}\t{row.last_error[:120]}")
    return 0


def cmd_outbox_retry(args: argparse.Namespace) -> int:
    bad = [i for i in args.ids if not (i.isascii() and i.isdigit() and 0 < int(i) < 2**63)]
    if bad:
        print(f"outbox retry: {bad[0][:40]!r} is not a message id (the numbers `outbox list` shows)",
              file=sys.stderr)
        return EXIT_CONFIG
    db = open_database(load_settings(args))
    ids = [int(i) for i in args.ids]
    with db.transaction() as s:
        found = dict(s.execute(select(OutboxMessage.id, OutboxMessage.status).where(OutboxMessage.id.in_(ids))).all()) \
            if ids else {}
        count = outbox.retry_dead(s, SystemClock().now(), ids or None)
    print(f"{count} message(s) queued again")
    for i in ids:  # an id that was not retried says why, so a typo is not taken for success
        if i not in found:
            print(f"outbox retry: there is no message {i}", file=sys.stderr)
        elif found[i] != "dead":
            print(f"outbox retry: message {i} is {found[i]}, not dead: left as it is", file=sys.stderr)
    return 0 if all(found.get(i) == "dead" for i in ids) else EXIT_CONFIG


def cmd_serve(args: argparse.Namespace) -> int:
    from collabbot.adapters.serve import serve

    config = load_settings(args)
    from collabbot.adapters.serve import make_clock

    warn_calendar(config, make_clock().now().astimezone(config.calendar.tz))
    org = load_org(config) if config.org_file or not config.platforms else None
    from collabbot.adapters import registry

    registry.check_config(config)  # a wrong platform section: its one line, before anything starts
    return serve(config, org)


def cmd_org_sync(args: argparse.Namespace) -> int:
    from collabbot.adapters.serve import org_sync

    return org_sync(load_settings(args), args.platform)


def parser() -> argparse.ArgumentParser:
    config_help = "config file (default: $COLLABBOT_CONFIG, else the embedded defaults)"
    p = argparse.ArgumentParser(prog="collabbot", description="CollabBot: owns the follow-up of cross-department work.")
    p.add_argument("--config", help=config_help)
    p.add_argument("-v", "--verbose", action="store_true")
    # the same two options after the command (`collabbot serve --config FILE`); SUPPRESS keeps a value
    # given before the command when none is given after it
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--config", default=argparse.SUPPRESS, help=config_help)
    common.add_argument("-v", "--verbose", action="store_true", default=argparse.SUPPRESS)
    sub = p.add_subparsers(dest="command", required=True)

    def add_parser(parent: Any, name: str, **kwargs: Any) -> argparse.ArgumentParser:
        return parent.add_parser(name, parents=[common], **kwargs)

    c = add_parser(sub, "console", help="talk to the bot as any member of the org")
    c.add_argument("--script", help="run a transcript file instead of reading the terminal")
    c.add_argument("--org", help="org file (default: the demo org)")
    c.add_argument("--db", help="database URL (default: a fresh temporary SQLite file, removed at exit)")
    c.add_argument("--echo", action="store_true", help="print each transcript line before its output")
    c.set_defaults(func=cmd_console)

    s = add_parser(sub, "serve", help="run the bot: webhooks, scheduler, delivery")
    s.add_argument("--db", help="database URL")
    s.set_defaults(func=cmd_serve)

    d = sub.add_parser("db", help="database maintenance")
    dsub = d.add_subparsers(dest="db_command", required=True)
    du = add_parser(dsub, "upgrade", help="apply the migrations")
    du.add_argument("--db", help="database URL")
    du.set_defaults(func=cmd_db_upgrade)
    dc = add_parser(dsub, "copy", help="copy every row into another, empty database (SQLite to PostgreSQL)")
    dc.add_argument("--db", help="database URL to copy from (default: the config's)")
    dc.add_argument("--to", required=True, help="database URL to copy into, e.g. postgresql+psycopg://…")
    dc.set_defaults(func=cmd_db_copy)

    o = sub.add_parser("org", help="the org: departments, people, supervisors")
    osub = o.add_subparsers(dest="org_command", required=True)
    ol = add_parser(osub, "load", help="apply an org TOML file")
    ol.add_argument("file")
    ol.add_argument("--dry-run", action="store_true", help="show what would change, write nothing")
    ol.add_argument("--db")
    ol.set_defaults(func=cmd_org_load)
    os_ = add_parser(osub, "sync", help="pull the org from a platform's contact API")
    os_.add_argument("--platform", default="feishu")
    os_.add_argument("--db")
    os_.set_defaults(func=cmd_org_sync)

    ob = sub.add_parser("outbox", help="messages waiting or failed")
    obsub = ob.add_subparsers(dest="outbox_command", required=True)
    obl = add_parser(obsub, "list", help="list messages (dead ones by default)")
    obl.add_argument("--status", default="dead", choices=["pending", "sent", "dead"])
    obl.add_argument("--limit", type=int, default=100)
    obl.add_argument("--db")
    obl.set_defaults(func=cmd_outbox_list)
    obr = add_parser(obsub, "retry", help="queue dead messages again (all, or the given ids)")
    obr.add_argument("ids", nargs="*")
    obr.add_argument("--db")
    obr.set_defaults(func=cmd_outbox_retry)
    return p


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    level = "DEBUG" if args.verbose else os.environ.get("COLLABBOT_LOG_LEVEL", "WARNING").strip().upper()
    if level not in LOG_LEVELS:
        print(f"config error: COLLABBOT_LOG_LEVEL: {level[:20]!r} is not a level; use one of {', '.join(LOG_LEVELS)}",
              file=sys.stderr)
        return EXIT_CONFIG
    logging.basicConfig(level=level,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        return args.func(args)
    except ConfigError as exc:
        print(f"config error: {exc}", file=sys.stderr)
        return EXIT_CONFIG
    except OrgError as exc:
        print(f"org error: {exc}", file=sys.stderr)
        return EXIT_CONFIG
    except DatabaseUnavailable as exc:
        print(f"database error: {exc}", file=sys.stderr)
        return EXIT_CONFIG
    except (OperationalError, InterfaceError) as exc:  # the database went away after start-up checks
        print(f"database error: {error_line(exc)}", file=sys.stderr)
        return EXIT_CONFIG
    except socket.gaierror as exc:  # before OSError, whose subclass it is
        print(f"config error: server.host: cannot be resolved ({exc.strerror})", file=sys.stderr)
        return EXIT_CONFIG
    except OSError as exc:
        if exc.errno not in (errno.EADDRINUSE, errno.EACCES, errno.EADDRNOTAVAIL):
            raise
        hint = (" (another collabbot? several instances share a port with [server] reuse_port, on PostgreSQL)"
                if exc.errno == errno.EADDRINUSE else "")
        print(f"cannot listen (server.host, server.port): {exc}{hint}", file=sys.stderr)
        return EXIT_CONFIG
    except ModuleNotFoundError as exc:
        extra = EXTRAS.get((exc.name or "").partition(".")[0])
        if extra is None:
            raise
        print(f"missing package {exc.name!r}: pip install 'collabbot[{extra}]'", file=sys.stderr)
        return EXIT_CONFIG


if __name__ == "__main__":
    sys.exit(main())


def cli() -> None:
    sys.exit(main())
