"""The inbound pipeline every platform shares, for webhooks and long connections alike.

A platform adapter verifies and parses a callback into a neutral event (every event with the
platform's `sent_at`) and hands it here. The pipeline then does, once for all platforms:

1. the stale rule: a message typed long ago (a platform flushing queued events after a reconnect,
   or retrying for hours) is not executed blindly;
2. durability: the event is written to the inbound queue BEFORE anything is answered, because a
   platform never retries a callback we answered (concurrent callbacks share one commit);
3. the engine, on the hub's backlog thread, working from that row, which is deleted when the
   engine's transaction (with its receipt) has committed;
4. the answer: a message is answered as soon as it is durable (`accept`: its replies go out through
   the outbox, so nothing in the answer waits on the engine); a card tap, whose answer carries the
   updated card, gets the engine's `Reply` (`handle`), or None when it did not come within
   `answer_within` seconds: the platform is answered empty and the engine finishes on its own.
   A tap is made durable by the engine's own commit (its receipt) when the engine answers quickly;
   only a tap the engine has not finished within part of the deadline is written to the queue first.
   Past the engine's capacity (`TAPS_IN_HAND` taps already waiting for it) a tap on a platform that
   updates sent cards in place is answered as soon as it is durable, like a message: the tapper sees
   "received" at once, and the engine updates the tapped card with every other copy through the outbox.

Work an adapter must do after answering (fetching a platform's approval instance, say) is a
*follow-up*: a durable row too, worked with retries and backoff by a handler the adapter registers.
A restart, or another instance once the lease has run out, resumes whatever a dead process left.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Coroutine
from dataclasses import replace
from datetime import datetime, timedelta
from typing import Any

from collabbot.adapters.hub import Hub, QueuedItem, Ticket
from collabbot.bot.events import CardActionEvent, InboundEvent, MessageEvent, event_from_json, event_to_json
from collabbot.bot.replies import Message, Reply

log = logging.getLogger(__name__)

EVENT = "event"
RESUME_EVERY = 5.0  # seconds between looks for rows a dead process left
MAX_FOLLOW_UP_ATTEMPTS = 12
MAX_EVENT_ATTEMPTS = 10  # times a queued event is taken up again (each after its lease ran out) before it is dropped
# Taps waiting for the engine (running or queued for its threads) past which the next one is answered once
# durable instead of waiting: a few taps' wait is a few milliseconds each, a burst's would be seconds
# (bench/inbound.py, closed loop of taps: every answer waited for the engine, 3-4 % of a bare handler's rate;
# with this, 34-38 %, as messages). A burst of messages alone does not count: a tap still goes before them.
TAPS_IN_HAND = 8
FollowUp = Callable[[dict[str, Any]], Awaitable[InboundEvent | None]]
LateUpdate = Callable[[str, Message], Awaitable[None]]  # (the tapped message's id, the card as it now looks)


class FollowUpFailed(Exception):
    """A follow-up that may work later (the platform's API was down, say)."""


class InboundPipeline:
    def __init__(self, hub: Hub, platform: str, *, answer_within: float, stale_seconds: float = 0.0,
                 late_update: LateUpdate | None = None) -> None:
        self.hub = hub
        self.late_update = late_update
        self.platform = platform
        self.answer_within = answer_within
        self.stale_seconds = stale_seconds
        self.follow_ups: dict[str, FollowUp] = {}
        self.stale_refused = 0
        self.late_answers = 0
        self.taken_for_later = 0  # taps answered once durable because the engine was busy
        self.taps_behind = 0  # of those, still queued for the engine: while any is, the next tap queues too
        self._tasks: set[asyncio.Task[Any]] = set()
        self._resumer: asyncio.Task[None] | None = None

    # --- background work ------------------------------------------------------------------------
    def spawn(self, coro: Coroutine[Any, Any, Any]) -> asyncio.Task[Any]:
        task = asyncio.ensure_future(coro)
        self._tasks.add(task)
        task.add_done_callback(self._done)
        return task

    def _done(self, task: asyncio.Task[Any]) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            log.error("%s: inbound work failed", self.platform, exc_info=task.exception())

    async def drain(self) -> None:
        """Wait for the work under way (tests, shutdown)."""
        while self._tasks or self.hub.backlog.pending:
            await asyncio.gather(*list(self._tasks), return_exceptions=True)
            await self.hub.backlog.settled()
        await self.hub.journal.settled()

    async def start(self) -> None:
        """Resume what a previous process left in the spool and the queue, then keep looking now and then."""
        await self.hub.journal.recover()
        self._resumer = asyncio.create_task(self._resume_forever(), name=f"{self.platform}-inbound-resume")

    async def stop(self) -> None:
        if self._resumer is not None:
            self._resumer.cancel()
            await asyncio.gather(self._resumer, return_exceptions=True)
        await self.drain()

    # --- the pipeline ---------------------------------------------------------------------------
    def stale(self, event: InboundEvent, sent_at: datetime | None) -> bool:
        if not isinstance(event, MessageEvent) or not self.stale_seconds or sent_at is None:
            return False
        return (self.hub.bot.clock.now() - sent_at).total_seconds() > self.stale_seconds

    async def accept(self, event: InboundEvent, sent_at: datetime | None = None) -> None:
        """A message (or any event whose answer carries nothing): returns once the event is durable; the
        engine works it in the background and its replies go out through the outbox. So a burst is
        answered at the speed of the queue's commits, not of the engine."""
        with self.hub.answer():
            await self._admit(event, sent_at)

    async def handle(self, event: InboundEvent, sent_at: datetime | None = None) -> Reply | None:
        """The engine's reply to a verified event (a card tap, whose answer carries the new card), or None
        (answer empty) when it is not ready in time."""
        if not self._admissible(event, sent_at):
            return None
        with self.hub.answer():
            if self.late_update is not None and isinstance(event, CardActionEvent) \
                    and (self.hub.urgent >= TAPS_IN_HAND or self.taps_behind):
                return await self._take_for_later(event)
            return await self._handle(event)

    async def _take_for_later(self, event: CardActionEvent) -> None:
        """The engine is busy: make the tap durable and answer it now (None: "received, the card follows").
        Without the tapped message's id the engine updates that copy too, through the outbox, paced and
        retried like every other copy."""
        event = replace(event, message_id="")
        [ticket] = await self.hub.journal.put([(self.platform, EVENT, event_to_json(event))])
        self.taken_for_later += 1
        self.taps_behind += 1

        def done(_: Reply | BaseException) -> None:
            self.taps_behind -= 1
        self._work_event(ticket, event, then=done)
        return None

    async def _handle(self, event: InboundEvent) -> Reply | None:
        # The engine starts at once. Its transaction, with the event's receipt, commits before its reply
        # comes back, so a reply in time is durable by itself; only when the engine may miss the deadline
        # is the event written to the queue, still before anything is answered.
        started = asyncio.get_running_loop().time()
        task = self.spawn(self.hub.handle(event, urgent=True))
        try:
            return await asyncio.wait_for(asyncio.shield(task), self._journal_after())
        except TimeoutError:
            pass
        [ticket] = await self.hub.journal.put([(self.platform, EVENT, event_to_json(event))])
        task.add_done_callback(lambda _: self.hub.journal.forget(ticket))
        left = self.answer_within - (asyncio.get_running_loop().time() - started)
        try:
            if left <= 0:  # the platform no longer listens: the card is updated through its API instead
                raise TimeoutError
            return await asyncio.wait_for(asyncio.shield(task), left)
        except TimeoutError:
            self.late_answers += 1
            log.warning("%s: %s took longer than %.1f s; answered without a reply (it completes from the queue)",
                        self.platform, event.event_id, self.answer_within)
            if isinstance(event, CardActionEvent) and self.late_update is not None:
                self.spawn(self._update_late(task, event))
            return None

    async def _update_late(self, task: asyncio.Task[Reply], event: CardActionEvent) -> None:
        """The engine missed the deadline, so the answer did not carry the tapped card: once the engine
        has finished, the tapped copy is updated through the platform's API instead (every other copy
        follows through the outbox anyway)."""
        try:
            message = (await task).message
        except Exception:
            return  # the engine's failure is logged where it happened
        if message is None or message.card is None or not event.message_id or self.late_update is None:
            return
        try:
            await self.late_update(event.message_id, message)
        except Exception as exc:  # the tap is done; the card shows the old state until the next change
            log.warning("%s: late update of the tapped card %s failed: %r", self.platform, event.message_id, exc)

    def _journal_after(self) -> float:
        """How long a tap's engine may work before its event is written down: early enough that the
        write, even when it must go to the spool (`spool_after`), still leaves time to answer."""
        return max(0.0, min(self.answer_within / 2, self.answer_within - self.hub.journal.spool_after - 0.25))

    def _admissible(self, event: InboundEvent, sent_at: datetime | None) -> bool:
        """False for what needs nothing done: group chatter not addressed to the bot, stale messages."""
        if isinstance(event, MessageEvent) and event.chat.is_group and not event.to_bot:
            return False
        if self.stale(event, sent_at):
            self.stale_refused += 1
            log.warning("%s: message %s sent at %s arrived too late; not executed", self.platform,
                        event.event_id, sent_at)
            return False
        return True

    async def _admit(self, event: InboundEvent, sent_at: datetime | None) -> None:
        """Filter, make durable, queue for the engine."""
        if not self._admissible(event, sent_at):
            return
        [ticket] = await self.hub.journal.put([(self.platform, EVENT, event_to_json(event))])
        self._work_event(ticket, event)

    async def follow_up(self, kind: str, payload: dict[str, Any]) -> None:
        """Make `kind` work durable now, and start it; the handler must be registered in `follow_ups`."""
        if kind not in self.follow_ups:
            raise KeyError(f"no follow-up handler {kind!r}")
        [ticket] = await self.hub.journal.put([(self.platform, kind, payload)])
        if ticket.id is not None:  # else it sits in the spool: the database takes it up, and resume() works it
            self.spawn(self._work_follow_up(QueuedItem(ticket.id, self.platform, kind, payload, 0)))

    def _work_event(self, ticket: Ticket | int, event: InboundEvent,
                    then: Callable[[Reply | BaseException], None] | None = None) -> None:
        """Queue `event` for the engine; its row goes once the engine's transaction (with the receipt) has
        committed. A failure leaves the row, taken up again once its lease runs out."""
        def done(result: Reply | BaseException) -> None:
            if then is not None:
                then(result)
            if isinstance(result, BaseException):
                log.error("%s: inbound work failed", self.platform, exc_info=result)
            else:
                self.hub.journal.forget(ticket)
        self.hub.queue(event, done)

    async def _work_follow_up(self, item: QueuedItem) -> None:
        try:
            event = await self.follow_ups[item.kind](item.payload)
        except FollowUpFailed as exc:
            await self._retry_follow_up(item, str(exc))
            return
        if event is not None and (await self.hub.handle(event)).toast_kind == "error":
            # the engine stored nothing for a machine event that failed: try it again later
            await self._retry_follow_up(item, "the engine could not apply it")
            return
        self.hub.journal.forget(item.id)

    async def _retry_follow_up(self, item: QueuedItem, error: str) -> None:
        attempt = item.attempts + 1
        if attempt >= MAX_FOLLOW_UP_ATTEMPTS:
            log.error("%s: follow-up %s #%s given up after %s attempts: %s", self.platform, item.kind, item.id,
                      attempt, error)
            self.hub.journal.forget(item.id)
            return
        delay = timedelta(seconds=min(3600.0, 5.0 * 2 ** item.attempts))
        log.info("%s: follow-up %s #%s failed (%s); again in %s", self.platform, item.kind, item.id, error, delay)
        await self.hub.journal.retry(item.id, error, delay)

    async def resume(self, *, after_start: bool = False) -> int:
        """Work the rows nobody holds (a dead process's, or follow-ups due again); how many were taken.
        Right after start on SQLite (one process per file) held rows are taken too: their holder is gone."""
        sole = after_start and not self.hub.bot.db.is_postgres
        items = await self.hub.journal.claim(self.platform, 5000 if sole else 100, ignore_leases=sole)
        for item in items:
            if item.kind == EVENT and item.attempts > MAX_EVENT_ATTEMPTS:
                log.error("%s: queued event #%s failed in the engine %s times; given up", self.platform, item.id,
                          item.attempts)
                self.hub.journal.forget(item.id)
            elif item.kind == EVENT:
                try:
                    event = event_from_json(item.payload)
                except (ValueError, TypeError, KeyError) as exc:
                    log.error("%s: queued row #%s is not an event (%s); dropped", self.platform, item.id, exc)
                    self.hub.journal.forget(item.id)
                    continue
                self._work_event(item.id, event)
            elif item.kind in self.follow_ups:
                self.spawn(self._work_follow_up(item))
            else:
                log.error("%s: queued row #%s has no handler for %r; left for later", self.platform, item.id, item.kind)
        return len(items)

    async def _resume_forever(self) -> None:
        after_start = True
        while True:
            try:
                await self.resume(after_start=after_start)
                after_start = False
            except Exception:
                log.exception("%s: resuming the inbound queue failed", self.platform)
            await asyncio.sleep(RESUME_EVERY)
