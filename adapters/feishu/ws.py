"""Long-connection mode (长连接): lark-oapi's `ws.Client` in its own thread, watched from the event loop.

For companies that cannot expose a public URL. Events arrive as plaintext frames on a socket the
app's credentials opened, and go through the same `FeishuInbound.dispatch` as webhook bodies; a card
tap's answer (toast, updated card) rides back on the frame's response.

What the SDK (1.7.5) gets wrong, and what we do about it:
* `ws.Client.start()` blocks forever and drives a MODULE-LEVEL event loop captured at import time,
  which is our running loop if the module is first imported from async code (oapi-sdk-python#133,
  #119). So the client runs in a dedicated thread with a fresh loop patched into that module global,
  and is imported there (the import also takes ~2 s, which must not stall callbacks).
* its endpoint request (`requests.post` in `_get_conn_url`) has no timeout, so a reconnect can hang
  and leave the bot deaf (oapi-sdk-python#169, fix #170 unmerged). We give that module's `requests`
  a timeout.
* a dead receive loop or a silent TCP black hole is not noticed (oapi-sdk-python#144). A watchdog on
  our loop tracks the time of the last frame of any kind (events and the server's pongs, which answer
  the client's pings every `PingInterval`) and, after `watchdog_seconds` of silence, closes the
  socket so the SDK reconnects, or reconnects itself when the SDK's receive loop is gone.
* frames of type `card` are dropped without an ack (oapi-sdk-python#126); `card.action.trigger`
  arrives as an event frame, which works, so that is the callback to subscribe to.

* its handler hook (`EventDispatcherHandler._do_without_validation`) is synchronous and runs on the
  client's loop, so a handler that waits for the answer holds every other frame behind it: two taps
  arriving together with a slow engine, and the second misses Feishu's 3 s (and is pushed again). So
  a single-part event frame's answer is awaited first, without blocking that loop (our loop works it),
  and the hook only returns it; a frame the SDK must first reassemble from parts takes the blocking way.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import threading
import time
from concurrent.futures import TimeoutError as FutureTimeout
from contextvars import ContextVar
from typing import Any

from collabbot.adapters.feishu.config import FeishuSettings
from collabbot.adapters.feishu.inbound import FeishuInbound

log = logging.getLogger(__name__)

RESTART_AFTER = 30.0  # seconds before a client thread that ended (bad credentials, say) is started again
SDK_INTERNALS = ("_handle_message", "_handle_data_frame", "_receive_message_loop", "_reconnect", "_disconnect",
                 "_connect")
_NOT_YET = object()
_ANSWERED: ContextVar[Any] = ContextVar("feishu_ws_answered", default=_NOT_YET)  # a frame's answer, awaited ahead


class _Requests:
    """Stands in for the `requests` module inside lark_oapi.ws.client: every call gets a timeout (#169)."""

    def __init__(self, timeout: float) -> None:
        import requests

        self._requests = requests
        self.post = functools.partial(requests.post, timeout=timeout)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._requests, name)


class LongConnection:
    def __init__(self, settings: FeishuSettings, inbound: FeishuInbound, *, check_every: float | None = None) -> None:
        self.settings = settings
        self.inbound = inbound
        self.check_every = check_every or min(5.0, max(0.2, settings.watchdog_seconds / 4))
        self.last_frame = time.monotonic()  # the watchdog's clock (reset when it kicks)
        self.last_seen = 0.0  # the last frame really seen, or a new socket: what `up` reads
        self._socket: Any = None
        self.frames = 0
        self.kicks = 0
        self.client: Any = None
        self.ws_loop: asyncio.AbstractEventLoop | None = None
        self._main_loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._watchdog: asyncio.Task[None] | None = None
        self._stopping = False

    # --- lifecycle (event loop side) ------------------------------------------------------------
    async def start(self) -> None:
        self._main_loop = asyncio.get_running_loop()
        self._start_thread()
        self._watchdog = asyncio.create_task(self._watch(), name="feishu-ws-watchdog")

    def _start_thread(self) -> None:
        self.last_frame = time.monotonic()
        self._thread = threading.Thread(target=self._run, name="feishu-ws", daemon=True)
        self._thread.start()

    async def stop(self) -> None:
        self._stopping = True
        if self._watchdog is not None:
            self._watchdog.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._watchdog
        client, ws_loop = self.client, self.ws_loop
        if client is not None and ws_loop is not None and ws_loop.is_running():
            client._auto_reconnect = False
            with contextlib.suppress(Exception):
                await asyncio.wrap_future(asyncio.run_coroutine_threadsafe(client._disconnect(), ws_loop))
            ws_loop.call_soon_threadsafe(ws_loop.stop)
        if self._thread is not None:
            await asyncio.to_thread(self._thread.join, 5)

    def up(self) -> bool:
        """Connected, as far as this side can tell (`/metrics`): the client's thread runs, it holds a socket,
        and a frame came within the watchdog's limit (a silent socket that looks open is not up)."""
        client = self.client
        if self._stopping or self._thread is None or not self._thread.is_alive() or client is None:
            return False
        conn = getattr(client, "_conn", None)
        if conn is None:
            return False
        now = time.monotonic()
        if conn is not self._socket:  # a new socket is a sign of life of its own
            self._socket, self.last_seen = conn, now
        # the frames seen, not the watchdog's reset after a kick: a socket kicked for silence is not up
        return now - self.last_seen <= self._limit(client)

    def _limit(self, client: Any) -> float:
        return max(self.settings.watchdog_seconds, 2.5 * float(getattr(client, "_ping_interval", 0) or 0))

    async def _watch(self) -> None:
        restart_at = 0.0
        while not self._stopping:
            await asyncio.sleep(self.check_every)
            now = time.monotonic()
            if self._thread is None or not self._thread.is_alive():
                if not restart_at:
                    log.error("feishu: the long connection thread ended; starting it again in %.0f s", RESTART_AFTER)
                    restart_at = now + RESTART_AFTER
                elif now >= restart_at:
                    restart_at = 0.0
                    self._start_thread()
                continue
            client, ws_loop = self.client, self.ws_loop
            if client is None or ws_loop is None:
                continue  # still importing / connecting
            limit = self._limit(client)
            if now - self.last_frame > limit:
                self.kicks += 1
                self.last_frame = now
                log.warning("feishu: no frame on the long connection for %.0f s; reconnecting", limit)
                kick = asyncio.run_coroutine_threadsafe(_kick(client), ws_loop)
                kick.add_done_callback(_log_failure)

    # --- the client's thread --------------------------------------------------------------------
    def _run(self) -> None:
        ws_loop = asyncio.new_event_loop()
        asyncio.set_event_loop(ws_loop)
        try:
            from lark_oapi.core.enum import LogLevel
            from lark_oapi.ws import client as sdk

            missing = [name for name in SDK_INTERNALS if not hasattr(sdk.Client, name)]
            if missing or not hasattr(sdk, "loop"):
                log.error("feishu: this lark-oapi lacks %s; the long connection's workarounds and watchdog need "
                          "the 1.7 series", missing or ["ws.client.loop"])
            if self._stopping:
                return
            sdk.loop = ws_loop  # the SDK drives its module-level loop (#133, #119)
            sdk.requests = _Requests(self.settings.request_timeout_seconds)  # type: ignore[assignment]  # (#169)
            client = _client_class(sdk)(
                self.settings.app_id, self.settings.app_secret, log_level=LogLevel.WARNING,
                event_handler=_handler(self), domain=self.settings.base_url, auto_reconnect=True)
            client.watcher = self
            self.client, self.ws_loop = client, ws_loop
            client.start()
        except Exception as exc:
            if not self._stopping:
                log.error("feishu: the long connection stopped: %r", exc)
        finally:
            self.client = None
            self.ws_loop = None
            _close_loop(ws_loop)

    def frame_seen(self) -> None:
        self.last_frame = self.last_seen = time.monotonic()
        self.frames += 1

    def deliver(self, payload: bytes) -> Any:
        """Called in the client's thread for an event frame: the answer to put on the frame, or None. It
        blocks the client's loop: only for a frame whose answer was not awaited ahead (`answer`)."""
        answered = _ANSWERED.get()
        if answered is not _NOT_YET:
            return answered
        if self._main_loop is None:
            return None
        future = asyncio.run_coroutine_threadsafe(self.inbound.handle_payload(payload), self._main_loop)
        try:
            answer = future.result(timeout=self._wait())
        except FutureTimeout:
            return None
        except Exception:
            log.exception("feishu: event frame failed")
            return None
        return answer or None

    async def answer(self, payload: bytes) -> Any:
        """On the client's loop: an event frame's answer (or None), worked on our loop, awaited without
        holding the client's loop, so other frames are answered meanwhile."""
        if self._main_loop is None:
            return None
        future = asyncio.run_coroutine_threadsafe(self.inbound.handle_payload(payload), self._main_loop)
        try:
            answer = await asyncio.wait_for(asyncio.wrap_future(future), self._wait())
        except TimeoutError:
            return None
        except Exception:
            log.exception("feishu: event frame failed")
            return None
        return answer or None

    def _wait(self) -> float:
        # the pipeline answers by `answer_within_seconds` itself (None when the engine is late, and then
        # updates the card through the API); the margin only covers the hop between loops
        return self.settings.answer_within_seconds + 0.3


def _log_failure(future: Any) -> None:
    if not future.cancelled() and future.exception() is not None:
        log.error("feishu: reconnecting the long connection failed: %r", future.exception())


def _close_loop(loop: asyncio.AbstractEventLoop) -> None:
    """Cancel what the SDK left on its loop (its ping loop, its cache's cron), then close it."""
    with contextlib.suppress(Exception):
        pending = [t for t in asyncio.all_tasks(loop) if not t.done()]
        for task in pending:
            task.cancel()
        loop.run_until_complete(asyncio.gather(*pending, return_exceptions=True))
        loop.close()


async def _kick(client: Any) -> None:
    """On the client's loop: drop the (silent) socket; reconnect unless the SDK's own loop will."""
    await client._disconnect()
    await asyncio.sleep(0)
    if not client.receiving and not client.reconnecting:
        await client._reconnect()


@functools.cache
def _client_class(sdk: Any) -> type:
    class WatchedClient(sdk.Client):  # type: ignore[misc, name-defined]
        """ws.Client with its frames, receive loop and reconnects visible to the watchdog."""

        watcher: LongConnection
        receiving = False
        reconnecting = False

        async def _handle_message(self, msg: bytes) -> None:
            self.watcher.frame_seen()
            await super()._handle_message(msg)

        async def _handle_data_frame(self, frame: Any) -> None:
            headers = {h.key: h.value for h in frame.headers}
            if headers.get("type") != "event" or headers.get("sum", "1") != "1":
                await super()._handle_data_frame(frame)
                return
            token = _ANSWERED.set(await self.watcher.answer(frame.payload))
            try:
                await super()._handle_data_frame(frame)
            finally:
                _ANSWERED.reset(token)

        async def _receive_message_loop(self) -> None:
            self.receiving = True
            try:
                await super()._receive_message_loop()
            except Exception as exc:  # the SDK re-raises when it will not reconnect: the watchdog takes over
                if not self.watcher._stopping:
                    log.warning("feishu: the long connection's receive loop ended: %r", exc)
            finally:
                self.receiving = False

        async def _reconnect(self) -> None:
            self.reconnecting = True
            try:
                await super()._reconnect()
            finally:
                self.reconnecting = False

    return WatchedClient


def _handler(connection: LongConnection) -> Any:
    from lark_oapi.event.dispatcher_handler import EventDispatcherHandler

    class Handler(EventDispatcherHandler):
        """Every event frame goes to our parser, raw; the SDK's typed processors are not used."""

        def _do_without_validation(self, payload: bytes) -> Any:
            return connection.deliver(payload)

    return Handler()
