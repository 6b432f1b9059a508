"""Stream mode (no public URL): our own small client on aiohttp's websocket.

Why not dingtalk-stream 0.24 (the official SDK): its `open_connection` is a blocking
`requests.post` without a timeout, called on the event loop, so a slow gateway stalls every
callback and a hung one leaves the bot deaf (tests/test_dingtalk_sdk.py shows the loop stalling); its
gateway address is a class constant (no way to point it elsewhere); and it waits a fixed 10 s after
a broken connection. The protocol is small, so we speak it here, and the SDK is kept only as a check
that our fake speaks DingTalk.

The protocol: `POST /v1.0/gateway/connections/open` {clientId, clientSecret, subscriptions} →
{endpoint, ticket}; a websocket to `endpoint?ticket=…`; frames {specVersion, type: SYSTEM | EVENT |
CALLBACK, headers: {topic, messageId, contentType, time}, data: <JSON string>}; each answered by an
ack {code, headers: {messageId, contentType}, message, data: <JSON string>}.

* `ping` (SYSTEM): answered at once with its data (the `opaque`) echoed.
* `disconnect` (SYSTEM): DingTalk stops delivering and closes the socket ~10 s later. A new
  connection is opened at once; acks of work already under way still go out on the old socket,
  which is closed once that work is done (`RETIRE_SECONDS` at most).
* robot messages: acked as soon as they are durable (a row in the inbound queue, milliseconds; the
  engine works them afterwards), never before. DingTalk does not deliver a robot message again, acked
  or not (protocol FAQ: 机器人消息 fire-forget), so the durable write is the only copy: it waits for
  the database, or goes to the local spool when the database stalls. If the database refuses it
  outright, or the spool cannot be written, the message is lost, and logged as such. A frame id seen lately is not worked again, and the engine's receipt
  on `msgId` catches a message that arrives twice (another instance's connection).
* card callbacks: the ack carries the answer (`data: {"response": {cardData…}}`), sent as soon as the
  engine has it and within the pipeline's deadline (under DingTalk's 2 s).
* keepalive: nothing says how often DingTalk sends frames on a quiet connection, so silence is not a
  fault. The client sends websocket pings (aiohttp's heartbeat) after `watchdog_seconds / 2` without
  data; no pong within a quarter of `watchdog_seconds` more closes the socket, and a new connection is
  opened. A dead connection is thus replaced within `watchdog_seconds`; a quiet, healthy one is kept.

Several `serve` instances each hold a stream; DingTalk hands each frame to one of an app's
connections. The receipts in the shared database make a message that reaches two of them harmless
(tests/test_dingtalk_stream.py runs two).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from typing import Any
from urllib.parse import quote_plus

import aiohttp

from collabbot.adapters.dingtalk.client import DingTalkApiError, DingTalkClient
from collabbot.adapters.dingtalk.config import DingTalkSettings
from collabbot.adapters.dingtalk.inbound import CARD_TOPIC, ROBOT_TOPIC, DingTalkInbound
from collabbot.adapters.kit.webhook import loads

log = logging.getLogger(__name__)

MAX_BACKOFF = 30.0
MAX_FRAME_BYTES = 1_048_576
RETIRE_SECONDS = 5.0  # after `disconnect`, work under way may ack on the old socket this long (DingTalk: ~10 s)


def ack(frame: dict[str, Any], data: Any, code: int = 200, message: str = "OK") -> str:
    headers = frame.get("headers") if isinstance(frame.get("headers"), dict) else {}
    return json.dumps({"code": code, "headers": {"messageId": str(headers.get("messageId", "")),
                                                 "contentType": "application/json"},
                       "message": message, "data": data if isinstance(data, str) else json.dumps(data)},
                      ensure_ascii=False)


class StreamConnection:
    def __init__(self, settings: DingTalkSettings, client: DingTalkClient, inbound: DingTalkInbound) -> None:
        self.settings = settings
        self.client = client
        self.inbound = inbound
        self.topics = [("CALLBACK", ROBOT_TOPIC), ("CALLBACK", CARD_TOPIC)]
        self.connections = 0
        self.kicks = 0  # reconnects because our pings went unanswered
        self.disconnects = 0  # reconnects asked for by DingTalk
        self.frames = 0
        self.lost = 0  # robot messages that could not be kept
        self.connected = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._session: aiohttp.ClientSession | None = None
        self._ws: aiohttp.ClientWebSocketResponse | None = None
        self._send_lock = asyncio.Lock()
        self._work: set[asyncio.Task[Any]] = set()
        self._stopping = False

    async def start(self) -> None:
        self._session = aiohttp.ClientSession(headers={"User-Agent": "collabbot"})
        self._task = asyncio.create_task(self._run(), name="dingtalk-stream")

    async def stop(self) -> None:
        self._stopping = True
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        for task in list(self._work):
            task.cancel()
        await asyncio.gather(*self._work, return_exceptions=True)
        if self._session is not None:
            await self._session.close()

    async def _run(self) -> None:
        failures = 0
        while not self._stopping:
            try:
                endpoint, ticket = await self.client.open_connection(self.topics)
                assert self._session is not None
                url = f"{endpoint}{'&' if '?' in endpoint else '?'}ticket={quote_plus(ticket)}"
                connect = self._session.ws_connect(url, heartbeat=self.settings.watchdog_seconds / 2, autoping=True,
                                                   max_msg_size=MAX_FRAME_BYTES,
                                                   timeout=aiohttp.ClientWSTimeout(ws_receive=None, ws_close=5.0))
                # the handshake is bounded too: a gateway that accepts and then hangs must not leave us deaf
                ws = await asyncio.wait_for(connect, self.settings.request_timeout_seconds)
                reason = "closed"
                try:
                    self._ws = ws
                    self.connections += 1
                    failures = 0
                    self.connected.set()
                    log.info("dingtalk: stream connected (connection %s)", self.connections)
                    opened = asyncio.get_running_loop().time()
                    reason = await self._receive(ws)
                finally:
                    if reason == "disconnect":
                        self._retire(ws)
                    else:
                        await ws.close()
                if reason == "closed" and asyncio.get_running_loop().time() - opened < 2.0:
                    # a socket closed as soon as it opened: back off rather than hammer the gateway
                    failures += 1
                    await asyncio.sleep(min(MAX_BACKOFF, 0.5 * 2 ** min(failures, 8)))
            except asyncio.CancelledError:
                raise
            except (DingTalkApiError, aiohttp.ClientError, TimeoutError, OSError) as exc:
                failures += 1
                delay = min(MAX_BACKOFF, 0.5 * 2 ** min(failures, 8))
                log.warning("dingtalk: stream connection failed (%r); again in %.1f s", exc, delay)
                await asyncio.sleep(delay)
            except Exception:
                failures += 1
                log.exception("dingtalk: stream failed")
                await asyncio.sleep(min(MAX_BACKOFF, 0.5 * 2 ** min(failures, 8)))
            finally:
                self._ws = None
                self.connected.clear()

    def _retire(self, ws: aiohttp.ClientWebSocketResponse) -> None:
        """After `disconnect`: the work under way (all of it from this socket) acks here, then it is closed."""
        work = list(self._work)

        async def retire() -> None:
            try:
                if work:
                    await asyncio.wait(work, timeout=RETIRE_SECONDS)
            finally:
                await ws.close()

        self._spawn(retire())

    async def _receive(self, ws: aiohttp.ClientWebSocketResponse) -> str:
        """Frames until the socket closes, a ping goes unanswered, or DingTalk says disconnect (which)."""
        while True:
            msg = await ws.receive()
            if msg.type == aiohttp.WSMsgType.ERROR and isinstance(ws.exception(), aiohttp.ServerTimeoutError):
                self.kicks += 1
                log.warning("dingtalk: no answer to our ping (%s); reconnecting", ws.exception())
                return "dead"
            if msg.type in (aiohttp.WSMsgType.CLOSE, aiohttp.WSMsgType.CLOSING, aiohttp.WSMsgType.CLOSED,
                            aiohttp.WSMsgType.ERROR):
                log.info("dingtalk: stream closed (%s); reconnecting", msg.type.name)
                return "closed"
            if msg.type != aiohttp.WSMsgType.TEXT:
                continue
            self.frames += 1
            try:
                frame = loads(msg.data)
                if not isinstance(frame, dict):
                    raise ValueError("a frame must be an object")
            except ValueError as exc:
                log.warning("dingtalk: unreadable frame dropped: %s", exc)
                continue
            if await self._frame(ws, frame) == "disconnect":
                self.disconnects += 1
                log.info("dingtalk: disconnect asked; reconnecting at once")
                return "disconnect"

    async def _send(self, ws: aiohttp.ClientWebSocketResponse, text: str) -> None:
        async with self._send_lock:
            if not ws.closed:
                await ws.send_str(text)

    def _spawn(self, coro: Any) -> None:
        task = asyncio.ensure_future(coro)
        self._work.add(task)
        task.add_done_callback(self._work.discard)

    async def _frame(self, ws: aiohttp.ClientWebSocketResponse, frame: dict[str, Any]) -> str:
        kind = frame.get("type")
        headers = frame.get("headers") if isinstance(frame.get("headers"), dict) else {}
        topic = str(headers.get("topic", ""))
        raw = frame.get("data")
        if kind == "SYSTEM":
            if topic == "ping":
                await self._send(ws, ack(frame, raw if isinstance(raw, str) else "{}"))
            elif topic == "disconnect":
                return "disconnect"
            return ""
        try:
            data = loads(raw) if isinstance(raw, str) and raw else {}
        except ValueError:
            data = None
        if kind == "CALLBACK" and topic == CARD_TOPIC:
            self._spawn(self._card(ws, frame, str(headers.get("messageId", "")), data))
            return ""
        frame_id = str(headers.get("messageId", ""))
        if kind == "CALLBACK" and topic == ROBOT_TOPIC and self.inbound.first_time(frame_id):
            self._spawn(self._robot(ws, frame, frame_id, data))
            return ""
        await self._send(ws, ack(frame, {"response": None}))  # a repeat, or nothing for us: acked at once
        return ""

    async def _robot(self, ws: aiohttp.ClientWebSocketResponse, frame: dict[str, Any], frame_id: str,
                     data: Any) -> None:
        """A robot message is acked once it is durable (the engine works it afterwards). One that could
        not be kept (the database refused it, or neither it nor the spool took it) is acked as a failure
        and forgotten, so that a redelivery would be worked; DingTalk is not known to send it again, so it
        is logged as lost."""
        try:
            await self.inbound.robot_message(data)
        except Exception:
            self.lost += 1
            self.inbound.forget(frame_id)
            log.exception("dingtalk: robot message %s LOST: it could not be kept (worked if DingTalk delivers it "
                          "again)", frame_id)
            await self._send(ws, ack(frame, {"response": None}, code=500, message="not kept"))
            return
        await self._send(ws, ack(frame, {"response": None}))

    async def _card(self, ws: aiohttp.ClientWebSocketResponse, frame: dict[str, Any], frame_id: str, data: Any) -> None:
        try:
            answer = await self.inbound.card_callback(frame_id, data)
        except Exception:
            log.exception("dingtalk: card callback failed")
            answer = {}
        await self._send(ws, ack(frame, {"response": answer or None}))

    async def drain(self) -> None:
        """Wait for the frames' work under way, and the engine's (tests, shutdown)."""
        while self._work:
            await asyncio.gather(*list(self._work), return_exceptions=True)
        await self.inbound.drain()

    async def drop(self) -> None:
        """Close the current socket (tests; the loop reconnects)."""
        if self._ws is not None:
            await self._ws.close()
