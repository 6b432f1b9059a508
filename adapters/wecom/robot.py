"""The intelligent robot's long connection (长连接), on aiohttp's websocket.

WeCom's SDK for it is Node-only, so this is our client. The protocol: JSON frames
`{cmd, headers: {req_id}, body}` both ways, and an answer `{headers: {req_id}, errcode, errmsg}` to
every request.

* `aibot_subscribe` {bot_id, secret} first; errcode 0 means subscribed.
* `ping` every `heartbeat_seconds`; a watchdog closes the socket when nothing has answered for
  `watchdog_seconds` (a half-open TCP connection would otherwise leave the bot deaf), and the loop
  reconnects with exponential backoff and jitter (1 s doubling to 30 s, each wait 50–100 %).
* in: `aibot_msg_callback` (messages) and `aibot_event_callback` (`template_card_event` taps,
  `enter_chat`, `disconnected_event`). A tap is answered with `aibot_respond_update_msg` on the
  event's req_id within 5 s: the card with the same task_id, for everyone (no `userids`).
* out: `aibot_send_msg` {chatid, msgtype, markdown | template_card}: pushes, which WeCom accepts only
  in a conversation where someone has written to the robot.
* `disconnected_event`: another connection subscribed with our bot id. We do not fight it: the
  socket is closed, the lock released, and we try again only after `KICKED_PAUSE`, doubled after each
  kick in a row up to `KICKED_PAUSE_MAX` (the official SDKs do not reconnect at all; a second deployment
  of the same robot would otherwise take the connection from us, and we from it, every minute).

Exactly one instance holds the connection (the kit's `Holder`, an advisory lock); the others wait, and take over
within `takeover_seconds` once the holder's lock is gone. Pushes asked of an instance that does not
hold the connection are deferred as throttles (no attempt spent), so the holder's delivery worker
or this one later sends them.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import logging
import random
import time
import uuid
from collections.abc import Awaitable, Callable
from typing import Any

import aiohttp

from collabbot.adapters.kit.holder import Holder
from collabbot.adapters.wecom.client import BUSY, NOT_IN_GROUP, THROTTLE_WAIT, THROTTLES, WecomApiError
from collabbot.adapters.wecom.config import WecomSettings

log = logging.getLogger(__name__)

ANSWER_TIMEOUT = 5.0
BACKOFF_FIRST, BACKOFF_MAX = 1.0, 30.0
KICKED_PAUSE = 60.0
KICKED_PAUSE_MAX = 1800.0
NOT_CONNECTED_WAIT = 2.0
MAX_FRAME = 1_048_576
Handler = Callable[[dict[str, Any]], Awaitable[dict[str, Any] | None]]


class Kicked(Exception):
    """WeCom said another connection took the robot over."""


class RobotConnection:
    def __init__(self, settings: WecomSettings, lock: Holder, handler: Handler, *,
                 monotonic: Callable[[], float] = time.monotonic) -> None:
        self.settings = settings
        self.lock = lock
        self.handler = handler  # a callback frame → the body of the answer to send on its req_id, or None
        self._monotonic = monotonic
        self._ws: aiohttp.ClientWebSocketResponse | None = None
        self._session: aiohttp.ClientSession | None = None
        self._pending: dict[str, asyncio.Future[dict[str, Any]]] = {}
        self._ids = itertools.count(1)
        self._task: asyncio.Task[None] | None = None
        self._work: set[asyncio.Task[Any]] = set()
        self._stopping = False
        self.connected = asyncio.Event()
        self.last_answer = 0.0
        self.subscriptions = 0
        self.reconnects = 0
        self.watchdog_kicks = 0
        self.kicked = 0
        self.frames = 0

    # --- lifecycle ------------------------------------------------------------------------------
    async def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="wecom-robot")

    async def stop(self) -> None:
        self._stopping = True
        if self._ws is not None:
            await self._ws.close()
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        if self._work:
            await asyncio.gather(*list(self._work), return_exceptions=True)
        await self.lock.release()
        if self._session is not None:
            await self._session.close()

    async def _run(self) -> None:
        failures = kicks = 0
        while not self._stopping:
            if not await self.lock.acquire():
                await asyncio.sleep(self.settings.takeover_seconds * random.uniform(0.8, 1.0))
                continue
            pause = 0.0
            try:
                await self._connection()
                failures = kicks = 0
            except Kicked:
                self.kicked += 1
                pause = min(KICKED_PAUSE_MAX, KICKED_PAUSE * 2 ** min(kicks, 10))
                kicks += 1
                log.error("wecom: another connection subscribed with bot_id %s (disconnected_event, %d in a row); "
                          "not reconnecting for %.1f s — is a second deployment running with the same robot?",
                          self.settings.bot_id, kicks, pause)
                await self.lock.release()
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                failures += 1
                log.warning("wecom: the robot's long connection failed: %r", exc)
            finally:
                self.connected.clear()
                self._fail_pending()
            if self._stopping:
                return
            if not pause:
                self.reconnects += 1
                pause = min(BACKOFF_MAX, BACKOFF_FIRST * 2 ** min(failures, 6)) * random.uniform(0.5, 1.0)
                if failures == 0:
                    pause = BACKOFF_FIRST * random.uniform(0.5, 1.0)
            await asyncio.sleep(pause)

    def _fail_pending(self) -> None:
        for future in self._pending.values():
            if not future.done():
                future.set_exception(WecomApiError("the robot connection closed before the answer", transient=True))
        self._pending.clear()

    async def _connection(self) -> None:
        if self._session is None or self._session.closed:
            self._session = aiohttp.ClientSession()
        timeout = aiohttp.ClientWSTimeout(ws_close=5.0)
        async with self._session.ws_connect(self.settings.ws_url, timeout=timeout, max_msg_size=MAX_FRAME,
                                            autoping=True) as ws:
            self._ws = ws
            self.last_answer = self._monotonic()
            reader = asyncio.create_task(self._read(ws), name="wecom-robot-read")
            try:
                answer = await self.request("aibot_subscribe", {"bot_id": self.settings.bot_id,
                                                                "secret": self.settings.bot_secret}, ws=ws)
                if answer.get("errcode", 0) != 0:
                    raise WecomApiError(f"aibot_subscribe refused: {answer.get('errcode')} {answer.get('errmsg')}")
                self.subscriptions += 1
                self.connected.set()
                log.info("wecom: the robot's long connection is subscribed")
                keeper = asyncio.create_task(self._keep(ws), name="wecom-robot-heartbeat")
                try:
                    done, _ = await asyncio.wait({reader, keeper}, return_when=asyncio.FIRST_COMPLETED)
                finally:
                    keeper.cancel()
                    with contextlib.suppress(asyncio.CancelledError, Exception):
                        await keeper
                for task in done:
                    if task is reader:
                        task.result()  # Kicked, or a failure
            finally:
                self.connected.clear()
                self._ws = None
                if not reader.done():
                    reader.cancel()
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await reader
                if reader.done() and not reader.cancelled() and isinstance(reader.exception(), Kicked):
                    raise Kicked()

    async def _keep(self, ws: aiohttp.ClientWebSocketResponse) -> None:
        """Heartbeats, the watchdog, and the lock's health, until one of them ends the connection."""
        step = min(self.settings.heartbeat_seconds, self.settings.takeover_seconds)
        next_ping = next_lock = self._monotonic()
        while not ws.closed:
            now = self._monotonic()
            if now - self.last_answer > self.settings.watchdog_seconds:
                self.watchdog_kicks += 1
                log.warning("wecom: no answer on the robot's long connection for %.0f s; reconnecting",
                            self.settings.watchdog_seconds)
                await ws.close()
                return
            if now >= next_ping:
                next_ping = now + self.settings.heartbeat_seconds
                self._spawn(self._ping(ws))
            if now >= next_lock:
                next_lock = now + self.settings.takeover_seconds
                if not await self.lock.alive():
                    await ws.close()
                    return
            await asyncio.sleep(max(0.01, min(step, next_ping - self._monotonic(), next_lock - self._monotonic())))

    async def _ping(self, ws: aiohttp.ClientWebSocketResponse) -> None:
        with contextlib.suppress(WecomApiError, TimeoutError, ConnectionError, RuntimeError):
            await self.request("ping", None, ws=ws)

    async def _read(self, ws: aiohttp.ClientWebSocketResponse) -> None:
        async for msg in ws:
            if msg.type != aiohttp.WSMsgType.TEXT:
                continue
            self.frames += 1
            try:
                frame = json.loads(msg.data)
            except ValueError:
                log.warning("wecom: a frame that is not JSON ignored")
                continue
            if not isinstance(frame, dict):
                continue
            headers = frame.get("headers") if isinstance(frame.get("headers"), dict) else {}
            req_id = str(headers.get("req_id", ""))
            cmd = frame.get("cmd")
            if cmd in ("aibot_msg_callback", "aibot_event_callback"):
                self.last_answer = self._monotonic()
                body = frame.get("body")
                if isinstance(body, dict) and _is_kick(body):
                    raise Kicked()
                self._spawn(self._callback(ws, req_id, frame))
                continue
            future = self._pending.pop(req_id, None)
            if future is not None:
                self.last_answer = self._monotonic()
                if not future.done():
                    future.set_result(frame)

    async def _callback(self, ws: aiohttp.ClientWebSocketResponse, req_id: str, frame: dict[str, Any]) -> None:
        try:
            answer = await self.handler(frame)
        except Exception:
            log.exception("wecom: a robot callback failed")
            return
        if answer is not None and not ws.closed:
            cmd, body = answer["cmd"], answer["body"]
            try:
                reply = await self.request(cmd, body, ws=ws, req_id=req_id)
                if reply.get("errcode", 0) != 0:
                    log.warning("wecom: %s refused: %s %s", cmd, reply.get("errcode"), reply.get("errmsg"))
            except (WecomApiError, ConnectionError, RuntimeError) as exc:
                log.warning("wecom: %s failed: %r", cmd, exc)

    def _spawn(self, coro: Awaitable[Any]) -> None:
        task = asyncio.ensure_future(coro)
        self._work.add(task)
        task.add_done_callback(self._work.discard)

    async def drain(self) -> None:
        while self._work:
            await asyncio.gather(*list(self._work), return_exceptions=True)

    # --- requests -------------------------------------------------------------------------------
    async def request(self, cmd: str, body: dict[str, Any] | None, *, ws: aiohttp.ClientWebSocketResponse | None = None,
                      req_id: str = "") -> dict[str, Any]:
        """Send one frame and wait for its answer (matched by req_id)."""
        ws = ws or self._ws
        if ws is None or ws.closed:
            raise WecomApiError("the robot's long connection is not open here", throttle=True,
                                retry_after=NOT_CONNECTED_WAIT)
        req_id = req_id or f"{cmd}_{next(self._ids)}_{uuid.uuid4().hex[:8]}"
        future: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()
        self._pending[req_id] = future
        frame: dict[str, Any] = {"cmd": cmd, "headers": {"req_id": req_id}}
        if body is not None:
            frame["body"] = body
        try:
            await ws.send_str(json.dumps(frame, ensure_ascii=False))
            return await asyncio.wait_for(future, ANSWER_TIMEOUT)
        except TimeoutError:
            raise WecomApiError(f"{cmd}: no answer within {ANSWER_TIMEOUT:g} s", transient=True) from None
        except (ConnectionError, RuntimeError) as exc:
            raise WecomApiError(f"{cmd}: {exc!r}", transient=True) from exc
        finally:
            self._pending.pop(req_id, None)

    async def push(self, chat_id: str, msgtype: str, content: dict[str, Any], req_id: str = "") -> dict[str, Any]:
        """`aibot_send_msg`; the answer, or WecomApiError (a throttle when this instance is not connected).
        `req_id` is the row's own (derived from its idempotency key): a resend repeats it."""
        if not self.connected.is_set():
            raise WecomApiError("the robot's long connection is not open on this instance", throttle=True,
                                retry_after=NOT_CONNECTED_WAIT)
        answer = await self.request("aibot_send_msg", {"chatid": chat_id, "msgtype": msgtype, msgtype: content},
                                    req_id=req_id)
        code = answer.get("errcode", 0)
        if code not in (0, None):
            code = int(code) if isinstance(code, int) else -2
            raise WecomApiError(f"aibot_send_msg to {chat_id}: errcode {code} {str(answer.get('errmsg', ''))[:200]}",
                                code=code, throttle=code in THROTTLES, transient=code in BUSY,
                                retry_after=THROTTLE_WAIT if code in THROTTLES else None,
                                unreachable=code in NOT_IN_GROUP)
        return answer


def _is_kick(body: dict[str, Any]) -> bool:
    event = body.get("event")
    return body.get("msgtype") == "event" and isinstance(event, dict) and event.get("eventtype") == "disconnected_event"
