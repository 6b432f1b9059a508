"""The composition root and the command line: the one module that wires every part together.

    collabbot console [--script FILE] [--org FILE] [--db URL] [--config FILE]
    collabbot serve [--config FILE]
    collabbot db upgrade [--db URL] [--config FILE]
    collabbot org load FILE | collabbot org sync [--platform feishu]
    collabbot outbox list [--status dead] | collabbot outbox retry [ID ...]

A bad config stops with the key's name and exit status 2; a malformed transcript line stops with its
line number and exit status 3.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
import tempfile
from dataclasses import replace
from datetime import datetime
from importlib import resources
from pathlib import Path

from sqlalchemy import select

from collabbot.bot.app import Bot
from collabbot.bot.clock import ManualClock, SystemClock
from collabbot.bot.config import Config, ConfigError, load_config, parse_config
from collabbot.bot.org import Org, OrgError, apply_org, load_org_file
from collabbot.storage import outbox
from collabbot.storage.db import Database
from collabbot.storage.migrate import upgrade
from collabbot.storage.models import OutboxMessage

log = logging.getLogger("collabbot")

EXIT_CONFIG = 2
# a module an optional feature needs -> the extra that installs it (pyproject.toml)
EXTRAS = {"psycopg": "postgres", "lark_oapi": "feishu", "Crypto": "feishu", "dingtalk_stream": "dingtalk",
          "websockets": "dingtalk", "wechatpy": "wecom"}
EXIT_TRANSCRIPT = 3


def demo_org_path() -> Path:
    return Path(str(resources.files("collabbot.examples").joinpath("demo-org.toml")))


def load_settings(args: argparse.Namespace) -> Config:
    path = getattr(args, "config", None) or os.environ.get("COLLABBOT_CONFIG")
    config = load_config(path) if path else parse_config({})  # parse: COLLABBOT_DATABASE_URL applies
    if getattr(args, "db", None):
        config = replace(config, database_url=args.db)
    if getattr(args, "org", None):
        config = replace(config, org_file=args.org)
    return config


def open_database(config: Config) -> Database:
    db = Database(config.database_url)
    upgrade(db.engine)
    return db


def load_org(config: Config) -> Org:
    return load_org_file(config.org_file or demo_org_path())


def warn_calendar(config: Config, today: datetime) -> None:
    for warning in config.calendar.coverage_warnings(today.date()):
        log.warning("%s", warning)


# --- console ------------------------------------------------------------------------------------

def cmd_console(args: argparse.Namespace) -> int:
    from collabbot.adapters.console.app import Console
    from collabbot.adapters.console.transcript import TranscriptError, parse_line

    config = load_settings(args)
    if not args.db and not (getattr(args, "config", None) or os.environ.get("COLLABBOT_CONFIG")):
        # a fresh embedded database for each console run, so a transcript always starts clean
        tmp = Path(tempfile.mkdtemp(prefix="collabbot-console-")) / "console.db"
        config = replace(config, database_url=f"sqlite:///{tmp}")
    org = load_org(config)
    db = open_database(config)
    clock = ManualClock(SystemClock().now().astimezone(config.calendar.tz).replace(second=0, microsecond=0))
    bot = Bot(db, config, clock)
    with db.transaction() as s:
        apply_org(s, org, clock.now())
    console = Console(bot, clock, org)

    def run_line(number: int, line: str) -> bool:
        try:
            step = parse_line(line)
            if step is not None:
                console.run(step)
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
        for number, line in enumerate(lines, 1):
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
    db = Database(config.database_url)
    upgrade(db.engine)
    print(f"database at {db.engine.url.render_as_string(hide_password=True)} is up to date")
    return 0


def cmd_org_load(args: argparse.Namespace) -> int:
    config = load_settings(args)
    org = load_org_file(args.file)
    db = open_database(config)
    with db.transaction() as s:
        changes = apply_org(s, org, SystemClock().now())
    for change in changes:
        print(change)
    print(f"{len(changes)} change(s)")
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
    db = open_database(load_settings(args))
    with db.transaction() as s:
        count = outbox.retry_dead(s, SystemClock().now(), [int(i) for i in args.ids] or None)
    print(f"{count} message(s) queued again")
    return 0


def cmd_serve(args: argparse.Namespace) -> int:
    from collabbot.adapters.serve import serve

    config = load_settings(args)
    from collabbot.adapters.serve import make_clock

    warn_calendar(config, make_clock().now().astimezone(config.calendar.tz))
    org = load_org(config) if config.org_file or not config.platforms else None
    print(f"collabbot serve on http://{config.host}:{config.port} — database {config.database_url.split('@')[-1]}",
          file=sys.stderr)
    return serve(config, org)


def cmd_org_sync(args: argparse.Namespace) -> int:
    from collabbot.adapters.serve import org_sync

    return org_sync(load_settings(args), args.platform)


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="collabbot", description="CollabBot: owns the follow-up of cross-department work.")
    p.add_argument("--config", help="config file (default: $COLLABBOT_CONFIG, else the embedded defaults)")
    p.add_argument("-v", "--verbose", action="store_true")
    sub = p.add_subparsers(dest="command", required=True)

    c = sub.add_parser("console", help="talk to the bot as any member of the org")
    c.add_argument("--script", help="run a transcript file instead of reading the terminal")
    c.add_argument("--org", help="org file (default: the demo org)")
    c.add_argument("--db", help="database URL (default: a fresh SQLite file)")
    c.add_argument("--echo", action="store_true", help="print each transcript line before its output")
    c.set_defaults(func=cmd_console)

    s = sub.add_parser("serve", help="run the bot: webhooks, scheduler, delivery")
    s.add_argument("--db", help="database URL")
    s.set_defaults(func=cmd_serve)

    d = sub.add_parser("db", help="database maintenance")
    dsub = d.add_subparsers(dest="db_command", required=True)
    du = dsub.add_parser("upgrade", help="apply the migrations")
    du.add_argument("--db", help="database URL")
    du.set_defaults(func=cmd_db_upgrade)

    o = sub.add_parser("org", help="the org: departments, people, supervisors")
    osub = o.add_subparsers(dest="org_command", required=True)
    ol = osub.add_parser("load", help="apply an org TOML file")
    ol.add_argument("file")
    ol.add_argument("--db")
    ol.set_defaults(func=cmd_org_load)
    os_ = osub.add_parser("sync", help="pull the org from a platform's contact API")
    os_.add_argument("--platform", default="feishu")
    os_.add_argument("--db")
    os_.set_defaults(func=cmd_org_sync)

    ob = sub.add_parser("outbox", help="messages waiting or failed")
    obsub = ob.add_subparsers(dest="outbox_command", required=True)
    obl = obsub.add_parser("list", help="list messages (dead ones by default)")
    obl.add_argument("--status", default="dead", choices=["pending", "sent", "dead"])
    obl.add_argument("--limit", type=int, default=100)
    obl.add_argument("--db")
    obl.set_defaults(func=cmd_outbox_list)
    obr = obsub.add_parser("retry", help="queue dead messages again (all, or the given ids)")
    obr.add_argument("ids", nargs="*")
    obr.add_argument("--db")
    obr.set_defaults(func=cmd_outbox_retry)
    return p


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    level = "DEBUG" if args.verbose else os.environ.get("COLLABBOT_LOG_LEVEL", "WARNING").upper()
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
