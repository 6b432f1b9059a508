"""`collabbot serve`: one aiohttp application with each configured platform's routes (or long
connection), the scheduler, the delivery worker, `/healthz` and `/metrics`.

With no platform configured it runs the console platform (messages printed) on the configured
database, so a newcomer sees the machinery work at once. Several instances may share one
PostgreSQL; a SQLite file belongs to one process, and a second one is refused.
"""

from __future__ import annotations

import asyncio
import fcntl
import logging
import os
import re
import signal
import sys
import time
from datetime import timedelta
from pathlib import Path
from typing import IO

from aiohttp import web
from sqlalchemy import func, select
from sqlalchemy.exc import SQLAlchemyError

from collabbot.adapters import registry
from collabbot.adapters.hub import Hub, PlatformAdapter, favour_the_loop, settle_the_heap
from collabbot.adapters.kit import files
from collabbot.adapters.kit.client import ApiError
from collabbot.adapters.kit.files import FileLinks
from collabbot.adapters.kit.media import Media
from collabbot.adapters.kit.orgsync import EXIT_API, fetch_org
from collabbot.adapters.kit.sender import PlatformSender
from collabbot.adapters.kit.spool import Spool
from collabbot.bot.app import Bot
from collabbot.bot.clock import Clock, FileClock, SystemClock
from collabbot.bot.config import Config, ConfigError, ReportSettings
from collabbot.bot.org import Org, apply_org
from collabbot.bot.reports import export
from collabbot.scheduler.delivery import DeliveryWorker, process_counters
from collabbot.scheduler.runner import Runner
from collabbot.storage import inbound
from collabbot.storage.db import Database, error_line
from collabbot.storage.migrate import shown_url, upgrade_or_explain
from collabbot.storage.models import OutboxMessage

log = logging.getLogger(__name__)


def make_clock() -> Clock:
    path = os.environ.get("COLLABBOT_CLOCK_FILE")
    return FileClock(path) if path else SystemClock()


def check_c_parser() -> bool:
    """aiohttp's C HTTP parser (llhttp) is faster and stricter than the pure-Python fallback."""
    from aiohttp import http_parser

    c_parser = getattr(http_parser, "HttpRequestParserC", None)
    ok = c_parser is not None and http_parser.HttpRequestParser is c_parser
    if not ok:
        log.warning("aiohttp runs without its C HTTP parser; install a wheel built for this platform")
    return ok


AIOHTTP_FLOOR = (3, 14, 3)  # earlier releases carry request-smuggling and decompression advisories


def check_aiohttp() -> None:
    """Refuse to serve on an aiohttp with known advisories (pip may have kept an old one)."""
    import aiohttp

    version = tuple(int(p) for p in re.findall(r"\d+", aiohttp.__version__)[:3])
    if version < AIOHTTP_FLOOR:
        raise ConfigError("aiohttp", f"version {aiohttp.__version__} has known security advisories; "
                          "pip install 'aiohttp>=3.14.3'")


def install_report_writer() -> None:
    """导出 writes workbooks when openpyxl is installed (the `reports` extra); without it, it says so."""
    try:
        from collabbot.cards import workbook
    except ImportError:
        log.info("reports: openpyxl is not installed; 导出 answers: pip install 'collabbot[reports]'")
        return
    workbook.install()


def report_settings(config: Config) -> ReportSettings:
    """`[reports]`, checked, with its export folder installed for 导出 (the console uses it too)."""
    settings = config.reports
    if settings.folder:
        export.install_dir(Path(settings.folder))
    return settings


def build_media(config: Config, settings: ReportSettings, clock: Clock) -> Media:
    """What every sender shares for attachments: chart titles' language, the chart font, the signed links."""
    folder = export.export_dir()
    secret = settings.link_secret.encode() if settings.link_secret else files.load_secret(folder)
    links = FileLinks(folder, secret, settings.public_url, settings.link_hours, clock)
    if not settings.public_url:
        log.info("reports: no [reports] public_url: a workbook a platform cannot take is not linked")
    return Media(lang=config.language, font=settings.chart_font, links=links)


PRUNE_EVERY_SECONDS = 3600.0


async def prune_exports(settings: ReportSettings) -> None:
    """Hourly: workbooks older than their links' life and a day more are removed from the export folder."""
    keep = timedelta(hours=settings.link_hours + 24)
    while True:
        try:
            await asyncio.to_thread(files.prune, export.export_dir(), keep, time.time())
        except OSError as exc:
            log.warning("reports: cannot prune the export folder: %s", exc)
        await asyncio.sleep(PRUNE_EVERY_SECONDS)


def lock_sqlite(url: str) -> IO[str] | None:
    """Refuse a second process on the same SQLite file (SQLite is for one process)."""
    if not url.startswith("sqlite:///") or url == "sqlite:///:memory:":
        return None
    path = Path(url.removeprefix("sqlite:///").partition("?")[0]).resolve()
    try:
        handle = open(f"{path}.lock", "w")  # noqa: SIM115 - held for the life of the process
    except OSError as exc:  # a missing or unwritable directory: about the database, not the port
        raise ConfigError("database.url", f"cannot create {path}.lock beside the database: "
                                          f"{exc.strerror or exc}") from None
    try:
        fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        raise ConfigError("database.url", f"{path} is in use by another collabbot process; "
                          "use PostgreSQL to run several instances") from None
    return handle


def build_adapters(config: Config, hub: Hub, clock: Clock) -> list[PlatformAdapter]:
    """Each configured platform's adapter (see `registry`), or the console platform when there is none."""
    adapters = registry.build_adapters(config, hub)
    if not adapters:
        from collabbot.adapters.console.stdout import ConsoleAdapter

        adapters.append(ConsoleAdapter(clock))
    return adapters


def spool_path(config: Config) -> Path:
    """The local spool file for inbound events the database could not take in time (one per port)."""
    if config.spool_dir:
        base = Path(config.spool_dir)
    elif config.database_url.startswith("sqlite:///") and config.database_url != "sqlite:///:memory:":
        base = Path(config.database_url.removeprefix("sqlite:///")).resolve().parent
    else:
        base = Path.cwd()
    return base / f"collabbot-inbound-{config.port}.spool"


def build_app(config: Config, bot: Bot, adapters: list[PlatformAdapter], hub: Hub | None = None,
              links: FileLinks | None = None) -> web.Application:
    app = web.Application(client_max_size=config.max_body_bytes)
    started = time.monotonic()

    async def healthz(_: web.Request) -> web.Response:
        ok = await asyncio.to_thread(_db_ok, bot)
        return web.json_response({"ok": ok}, status=200 if ok else 503)

    async def metrics(_: web.Request) -> web.Response:
        # process counters, plus one indexed count of the pending rows: no count(*) over big tables per scrape.
        # With the database down, the process's own figures are still answered (an outage is when they matter)
        lines = [f"collabbot_uptime_seconds {time.monotonic() - started:.0f}"]
        try:
            pending = await asyncio.to_thread(_pending, bot)
            depth, lag = await asyncio.to_thread(_inbound_depth, bot) if hub is not None else (0, 0.0)
        except (SQLAlchemyError, OSError) as exc:
            log.warning("metrics: the database does not answer: %s", error_line(exc))
            lines.append("collabbot_database_up 0")
        else:
            lines += ["collabbot_database_up 1", f"collabbot_outbox_pending {pending}"]
            if hub is not None:  # the inbound path: what waits for the engine, and how long the oldest has waited
                lines += [f"collabbot_inbound_queue_depth {depth}", f"collabbot_inbound_queue_lag_seconds {lag:.1f}"]
        for outcome, n in process_counters().items():
            lines.append(f'collabbot_delivery_total{{outcome="{outcome}"}} {n}')
        if hub is not None:
            lines.append(f"collabbot_engine_backlog {hub.waiting}")
            for adapter in adapters:
                connected = getattr(adapter, "connected", None)  # a long connection's state, where there is one
                if callable(connected) and (up := connected()) is not None:
                    lines.append(f'collabbot_platform_connected{{platform="{adapter.platform}"}} {int(up)}')
                pipeline = getattr(getattr(adapter, "inbound", None), "pipeline", None)
                if pipeline is not None:
                    lines += [f'collabbot_inbound_late_answers_total{{platform="{adapter.platform}"}} '
                              f"{pipeline.late_answers}",
                              f'collabbot_inbound_stale_total{{platform="{adapter.platform}"}} {pipeline.stale_refused}']
        return web.Response(text="\n".join(lines) + "\n", content_type="text/plain")

    app.router.add_get("/healthz", healthz)
    app.router.add_get("/metrics", metrics)
    if links is not None:
        links.add_routes(app)  # GET /files/<token>: signed workbook downloads
    served = {(route.method, route.resource.canonical): "collabbot itself" for route in app.router.routes()
              if route.resource is not None}
    for adapter in adapters:
        add_routes_alone(app, adapter, served)
    return app


def add_routes_alone(app: web.Application, adapter: PlatformAdapter, served: dict[tuple[str, str], str]) -> None:
    """The adapter's routes, refused as a config error when a path is already served: aiohttp either raises
    or, for a path added earlier, lets the first route win silently (a [wecom] app_path of /healthz would
    never reach WeCom's adapter)."""
    before = len(app.router.routes())
    try:
        adapter.add_routes(app)
    except RuntimeError as exc:
        raise ConfigError(adapter.platform, f"a callback path is already served ({exc}); give each its own path") \
            from None
    for route in list(app.router.routes())[before:]:
        if route.resource is None:
            continue
        key = (route.method, route.resource.canonical)
        if key in served:
            raise ConfigError(adapter.platform, f"the path {key[1]} is already served by {served[key]}; "
                              "give it a path of its own")
        served[key] = f"[{adapter.platform}]"


def _db_ok(bot: Bot) -> bool:
    try:
        with bot.db.transaction() as s:
            s.execute(select(1))
        return True
    except Exception as exc:  # one line a probe: an outage probed every second is not a page of tracebacks
        log.warning("health check failed: %s", error_line(exc))
        return False


def _inbound_depth(bot: Bot) -> tuple[int, float]:
    with bot.db.transaction() as s:
        return inbound.depth(s)


def _pending(bot: Bot) -> int:
    with bot.db.transaction() as s:  # the partial index ix_outbox_pending: only the backlog is counted
        return s.scalar(select(func.count()).select_from(OutboxMessage).where(OutboxMessage.status == "pending")) or 0


async def run(config: Config, org: Org | None, *, ready: asyncio.Event | None = None) -> None:
    check_c_parser()
    check_aiohttp()
    registry.check_config(config)
    reports = report_settings(config)
    install_report_writer()
    clock = make_clock()
    media = build_media(config, reports, clock)
    db = Database(config.database_url)
    await asyncio.to_thread(upgrade_or_explain, db.engine)
    if org is not None:
        def load() -> None:
            with db.transaction() as s:
                for change in apply_org(s, org, clock.now()):
                    log.info("org: %s", change)
        await asyncio.to_thread(load)
    bot = Bot(db, config, clock)
    favour_the_loop()
    spool = Spool(spool_path(config))
    try:
        await asyncio.to_thread(spool.check)
    except OSError as exc:
        raise ConfigError("server.spool_dir", f"{spool.path} cannot be written: {exc.strerror or exc}") from None
    hub = Hub(bot, spool=spool)
    adapters = build_adapters(config, hub, clock)
    for adapter in adapters:
        if isinstance(adapter.sender, PlatformSender):
            adapter.sender.media = media
    worker = DeliveryWorker(db, {a.platform: a.sender for a in adapters}, config.delivery, clock,
                            calendar=config.calendar, chat_unreachable=bot.chat_unreachable)
    hub.worker = worker
    app = build_app(config, bot, adapters, hub, links=media.links)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    settle_the_heap()  # before anything is served or sent: the collection pauses every thread
    site = web.TCPSite(runner, config.host, config.port, reuse_port=config.reuse_port or None)
    await site.start()
    log.warning("collabbot serving on http://%s:%s (%s), database %s", config.host, config.port,
                ", ".join(a.platform for a in adapters), shown_url(config.database_url))
    scheduler = Runner(bot, worker)
    scheduler.start()
    pruner = asyncio.create_task(prune_exports(reports), name="prune-exports")
    for adapter in adapters:
        await adapter.start()
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    if ready is not None:
        ready.set()
    await stop.wait()
    pruner.cancel()
    for adapter in adapters:
        await adapter.stop()
    await scheduler.stop()
    await runner.cleanup()
    hub.close()
    db.dispose()


def serve(config: Config, org: Org | None) -> int:
    lock = lock_sqlite(config.database_url)
    try:
        asyncio.run(run(config, org))
    finally:
        if lock is not None:
            lock.close()
    return 0


def org_sync(config: Config, platform: str) -> int:
    """Fetch `platform`'s org and apply it; 0 when applied (changed or not), EXIT_API when the platform failed."""
    source = registry.org_source(config, platform)
    try:
        org = asyncio.run(fetch_org(source))
    except ApiError as exc:
        print(f"{source.platform} org sync failed: {exc}", file=sys.stderr)  # one line, nothing changed
        return EXIT_API
    db = Database(config.database_url)
    try:
        upgrade_or_explain(db.engine)
        with db.transaction() as s:
            changes = apply_org(s, org, SystemClock().now(), platform=source.platform)
    finally:
        db.dispose()
    for change in changes:
        log.info("org: %s", change)
        print(change)
    print(f"{len(org.departments)} department(s), {len(org.people)} people from {source.display_name}; "
          f"{len(changes)} change(s)")
    return 0
