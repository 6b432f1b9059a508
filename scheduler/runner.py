"""The only APScheduler import: a few ticks, never one job per task.

* the sweep, every `scheduler.tick_seconds` (what is due is derived from rows, so a restart or a
  missed tick loses nothing: the next sweep catches up, once);
* two cron ticks at the daily prompt's and the weekly summary's times, so they go out on the minute
  even with a long sweep interval (they run the same sweep; the `job_runs` table makes them fire
  once across all instances);
* the delivery worker, as a long-running task woken whenever a message is queued;
* retention (scheduler/retention.py): after each sweep, old receipts and sent rows in batches.

APScheduler keeps no job store here: its jobs are the same in every process and carry no state
(its FAQ: a job store shared between processes is not supported).
"""

from __future__ import annotations

import asyncio
import logging

from apscheduler.schedulers.asyncio import AsyncIOScheduler
from apscheduler.triggers.cron import CronTrigger
from apscheduler.triggers.interval import IntervalTrigger

from collabbot.bot.app import Bot
from collabbot.scheduler import outage
from collabbot.scheduler.delivery import DeliveryWorker
from collabbot.scheduler.retention import prune

log = logging.getLogger(__name__)


class Runner:
    def __init__(self, bot: Bot, worker: DeliveryWorker) -> None:
        self.bot = bot
        self.worker = worker
        self.scheduler = AsyncIOScheduler(timezone=bot.calendar.tz)
        self._stop = asyncio.Event()
        self._delivery: asyncio.Task[None] | None = None
        self._lock = asyncio.Lock()

    async def tick(self) -> None:
        """One sweep in a worker thread; wakes the delivery worker when it queued anything."""
        if self._lock.locked():
            return  # the previous sweep is still running: the next tick catches up
        async with self._lock:
            now = self.bot.clock.now()
            try:
                count = await asyncio.to_thread(self.bot.sweep, now)
            except Exception as exc:
                outage.report(log, "sweep failed", exc)
                return
            log.info("swept %s: %d", now.isoformat(), count)
            try:
                await asyncio.to_thread(prune, self.bot.db, now, self.bot.config.delivery)
            except Exception as exc:
                outage.report(log, "retention pruning failed", exc)
        if count:
            self.worker.wake.set()

    def start(self) -> None:
        rules = self.bot.config.rules
        options = dict(max_instances=1, coalesce=True, misfire_grace_time=None)
        self.scheduler.add_job(self.tick, IntervalTrigger(seconds=self.bot.config.scheduler.tick_seconds),
                               id="sweep", **options)
        for job_id, at in (("daily_prompt", rules.daily_prompt_time), ("weekly_summary", rules.weekly_summary_time)):
            self.scheduler.add_job(self.tick, CronTrigger(hour=at.hour, minute=at.minute, second=5), id=job_id, **options)
        self.scheduler.start()
        self._delivery = asyncio.create_task(
            self.worker.run_forever(self._stop, self.bot.config.scheduler.idle_seconds), name="delivery")
        asyncio.get_running_loop().call_soon(lambda: asyncio.ensure_future(self.tick()))

    async def stop(self) -> None:
        self.scheduler.shutdown(wait=False)
        self._stop.set()
        self.worker.wake.set()
        if self._delivery is not None:
            await self._delivery
