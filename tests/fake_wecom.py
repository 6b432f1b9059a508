"""A local fake of WeCom for the adapter's tests: no test reaches the internet.

* The intelligent robot's long connection (`/ws`): JSON frames `{cmd, headers: {req_id}, body}`;
  `aibot_subscribe` checks bot id and secret, `ping` is answered, a second subscriber kicks the first
  with a `disconnected_event` and closes it, `aibot_msg_callback` / `aibot_event_callback` are pushed
  by the tests, `aibot_respond_update_msg` must answer a template_card_event's req_id within 5 s and
  repeat its task_id (it replaces the card for everyone), `aibot_send_msg` is refused in a chat nobody
  wrote in (`NOT_BOUND`) and beyond 30 a minute / 1,000 an hour per chat (45009; windows scaled by
  `time_scale`), and refuses a task_id twice. `silent = True` stops answering heartbeats; `hold_pushes = True`
  leaves pushes unanswered (and not posted).
* The robot's URL callback and the app's callback: `robot_envelope` / `app_envelope` build the
  encrypted, signed requests WeCom makes.
* The app API under `/cgi-bin`: `gettoken`, `message/send` (per-member limit: the excess is answered
  ok and silently dropped, as WeCom does; with `enable_duplicate_check`, the same content to the same
  member within `duplicate_check_interval` is answered ok and not delivered again), `message/update_template_card` (response_code once),
  `media/upload`, `department/list`, `user/list`; `expire_tokens()` turns every issued token into
  42001, `fail_next(path, errcode)` answers one call with an error, `fail_next_push(errcode)` one robot push.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import itertools
import json
import os
import threading
import time
import uuid
from collections import defaultdict, deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlencode

from aiohttp import WSMsgType, web

from collabbot.adapters.wecom import crypto

from .media_checks import png_size, xlsx_sheets

CORP_ID = "ww_test_corp"
AGENT_ID = 1000002
APP_SECRET = "app-secret-1"
APP_TOKEN = "apptoken1"
APP_AES_KEY = "jWmYm7qr5nMoAUwZRjGtBxmz3KA1tkAj3ykkR6q2B2C"
BOT_ID = "aib_test"
BOT_SECRET = "bot-secret-1"
ROBOT_TOKEN = "robottoken1"
ROBOT_AES_KEY = "abcdefghijklmnopqrstuvwxyz0123456789ABCDEFG"
NOT_BOUND = 93017  # our fake's answer to a push into a conversation nobody wrote in
DUPLICATE_TASK_ID = 42014  # WeCom's errmsg names the other causes too


@dataclass
class Call:
    method: str
    path: str
    query: dict[str, str]
    body: Any
    code: int = 0
    at: float = field(default_factory=time.monotonic)


@dataclass
class Card:
    """A template card as the fake shows it: where it is, and every version it had."""

    target: str
    task_id: str
    versions: list[tuple[str, dict[str, Any]]]  # (how: sent | tap | click | code, the card)
    via: str  # robot | app

    def changed(self, how: str) -> list[dict[str, Any]]:
        return [card for h, card in self.versions if h == how]


class FakeWecom:
    def __init__(self, *, time_scale: float = 1.0, users: list[dict[str, Any]] | None = None,
                 departments: list[dict[str, Any]] | None = None) -> None:
        self.time_scale = time_scale
        self.users = users or []
        self.departments = departments or [{"id": 1, "name": "公司", "parentid": 0, "department_leader": []}]
        self.app = web.Application(client_max_size=16 * 1024 * 1024)
        self.app.router.add_get("/ws", self.ws)
        self.app.router.add_route("*", "/cgi-bin/{path:.*}", self.api)
        self.runner: web.AppRunner | None = None
        self.url = ""
        self.calls: list[Call] = []
        self.tokens: dict[str, bool] = {}
        self.token_fetches = 0
        self._failures: dict[str, deque[int]] = defaultdict(deque)
        # robot
        self.subscribers: list[web.WebSocketResponse] = []
        self.subscribes = 0
        self.kicks = 0
        self.silent = False
        self.hold_pushes = False
        self.held: list[dict[str, Any]] = []
        self.bound: set[str] = set()
        self.pushes: list[dict[str, Any]] = []  # accepted aibot_send_msg bodies, with "at"
        self.left_groups: set[str] = set()  # groups the robot was removed from (or that were dissolved)
        self.refused_pushes: list[tuple[str, int]] = []
        self._push_failures: deque[int] = deque()  # errcodes to answer the next pushes with (fail_next_push)
        self.frames_in: list[dict[str, Any]] = []
        self._event_req: dict[str, tuple[str, float]] = {}  # req_id -> (task_id, sent at)
        self._answers: dict[str, asyncio.Future[dict[str, Any]]] = {}
        self._ids = itertools.count(1)
        # app
        self.sent: list[dict[str, Any]] = []  # accepted message/send bodies (dropped ones excluded), with "at"
        self.dropped: list[dict[str, Any]] = []
        self.repeats: list[dict[str, Any]] = []  # not delivered: the same content within the duplicate check
        self._last_content: dict[tuple[str, str], float] = {}
        self.response_codes: dict[str, tuple[str, str, str]] = {}  # code -> (userid, task_id, click | code)
        self.used_codes: set[str] = set()
        self.cards: dict[str, Card] = {}  # task_id -> card
        self.media: dict[str, bytes] = {}
        self.media_info: dict[str, dict[str, Any]] = {}  # media_id -> type, name, size (an image's)
        self.uploads: dict[str, dict[str, Any]] = {}  # the robot's uploads in progress
        self.robot_media: dict[str, dict[str, Any]] = {}
        self._window: dict[str, deque[float]] = defaultdict(deque)

    # --- lifecycle ------------------------------------------------------------------------------
    async def start(self) -> None:
        self.runner = web.AppRunner(self.app)
        await self.runner.setup()
        site = web.TCPSite(self.runner, "127.0.0.1", 0)
        await site.start()
        port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        self.url = f"http://127.0.0.1:{port}"

    @property
    def ws_url(self) -> str:
        return self.url.replace("http://", "ws://") + "/ws"

    async def close(self) -> None:
        for ws in list(self.subscribers):
            await ws.close()
        if self.runner is not None:
            await self.runner.cleanup()

    # --- limits ---------------------------------------------------------------------------------
    def _within(self, key: str, limits: tuple[tuple[int, float], ...]) -> bool:
        now = time.monotonic()
        window = self._window[key]
        longest = max(p for _, p in limits) * self.time_scale
        while window and now - window[0] > longest:
            window.popleft()
        for count, per in limits:
            if sum(1 for t in window if now - t <= per * self.time_scale) >= count:
                return False
        window.append(now)
        return True

    # --- the robot's long connection ------------------------------------------------------------
    async def ws(self, request: web.Request) -> web.WebSocketResponse:
        ws = web.WebSocketResponse()
        await ws.prepare(request)
        async for msg in ws:
            if msg.type != WSMsgType.TEXT:
                continue
            frame = json.loads(msg.data)
            self.frames_in.append(frame)
            await self._frame(ws, frame)
        if ws in self.subscribers:
            self.subscribers.remove(ws)
        return ws

    async def _answer(self, ws: web.WebSocketResponse, req_id: str, errcode: int = 0, errmsg: str = "ok",
                      **extra: Any) -> None:
        if not ws.closed:
            await ws.send_json({"headers": {"req_id": req_id}, "errcode": errcode, "errmsg": errmsg, **extra})

    async def _frame(self, ws: web.WebSocketResponse, frame: dict[str, Any]) -> None:
        cmd, req_id = frame.get("cmd"), str((frame.get("headers") or {}).get("req_id", ""))
        body = frame.get("body") or {}
        if cmd == "aibot_subscribe":
            if body.get("bot_id") != BOT_ID or body.get("secret") != BOT_SECRET:
                await self._answer(ws, req_id, 40001, "invalid secret")
                return
            for old in list(self.subscribers):  # one live connection per robot: the newcomer wins
                self.kicks += 1
                await old.send_json({"cmd": "aibot_event_callback", "headers": {"req_id": self._req()},
                                     "body": {"msgid": uuid.uuid4().hex, "create_time": int(time.time()),
                                              "aibotid": BOT_ID, "msgtype": "event",
                                              "event": {"eventtype": "disconnected_event"}}})
                self.subscribers.remove(old)
                await old.close()
            self.subscribers.append(ws)
            self.subscribes += 1
            await self._answer(ws, req_id)
        elif ws not in self.subscribers:
            await self._answer(ws, req_id, 40001, "not subscribed")
        elif cmd == "ping":
            if not self.silent:
                await self._answer(ws, req_id)
        elif cmd in ("aibot_upload_media_init", "aibot_upload_media_chunk", "aibot_upload_media_finish"):
            await self._robot_upload(ws, req_id, cmd, body)
        elif cmd == "aibot_send_msg":
            chat = str(body.get("chatid", ""))
            msgtype = body.get("msgtype")
            if msgtype in ("image", "file") and (
                    self.robot_media.get(str((body.get(msgtype) or {}).get("media_id")), {}).get("type") != msgtype):
                await self._answer(ws, req_id, 40007, "invalid media_id")
                return
            if self.hold_pushes:  # a platform that went quiet: the push is neither accepted nor answered
                self.held.append(body)
                return
            if chat in self.left_groups:  # 全局错误码 93008 不在群里
                self.refused_pushes.append((chat, 93008))
                await self._answer(ws, req_id, 93008, "not in the chat")
                return
            if chat not in self.bound:
                self.refused_pushes.append((chat, NOT_BOUND))
                await self._answer(ws, req_id, NOT_BOUND, "no conversation with the robot in this chat")
                return
            code = self._push_failures.popleft() if self._push_failures else None
            if code:  # 0: this push passes (a later one fails)
                self.refused_pushes.append((chat, code))
                await self._answer(ws, req_id, code, "injected failure")
                return
            task_id = (body.get("template_card") or {}).get("task_id") if body.get("msgtype") == "template_card" else None
            if task_id and task_id in self.cards:
                await self._answer(ws, req_id, DUPLICATE_TASK_ID, "taskid has existed or empty or exceed max len")
                return
            if not self._within(f"chat:{chat}", ((30, 60.0), (1000, 3600.0))):
                self.refused_pushes.append((chat, 45009))
                await self._answer(ws, req_id, 45009, "api freq out of limit")
                return
            self.pushes.append(dict(body, at=time.monotonic(), req_id=req_id))
            if task_id:
                self.cards[task_id] = Card(chat, task_id, [("sent", body["template_card"])], "robot")
            await self._answer(ws, req_id)
        elif cmd == "aibot_respond_update_msg":
            task = self._event_req.get(req_id)
            card = body.get("template_card") or {}
            if task is None or time.monotonic() - task[1] > 5.0 or card.get("task_id") != task[0]:
                await self._answer(ws, req_id, 40058, "invalid req_id or task_id")
            else:
                if task[0] in self.cards:
                    self.cards[task[0]].versions.append(("tap", card))
                await self._answer(ws, req_id)
            future = self._answers.pop(req_id, None)
            if future is not None and not future.done():
                future.set_result(body)
        else:
            await self._answer(ws, req_id, 40058, f"unknown cmd {cmd}")

    async def _robot_upload(self, ws: web.WebSocketResponse, req_id: str, cmd: str, body: dict[str, Any]) -> None:
        """The robot's temporary media upload: init (type, filename, total_size, total_chunks, md5), chunks of at
        most 512 KB in base64, finish: the md5 and size must match, an image be a real PNG, an xlsx a workbook."""
        if cmd == "aibot_upload_media_init":
            if body.get("type") not in ("image", "file", "voice", "video") or not body.get("filename") or \
                    not isinstance(body.get("total_chunks"), int) or not isinstance(body.get("md5"), str):
                await self._answer(ws, req_id, 40058, "invalid upload init")
                return
            upload_id = f"up-{next(self._ids)}"
            self.uploads[upload_id] = dict(body, chunks={})
            await self._answer(ws, req_id, body={"upload_id": upload_id})
            return
        upload = self.uploads.get(str(body.get("upload_id")))
        if upload is None:
            await self._answer(ws, req_id, 40058, "invalid upload_id")
            return
        if cmd == "aibot_upload_media_chunk":
            index = body.get("chunk_index")
            data = base64.b64decode(str(body.get("base64_data", "")), validate=True)
            if not isinstance(index, int) or not 0 <= index < upload["total_chunks"] or len(data) > 512 * 1024:
                await self._answer(ws, req_id, 40058, "invalid chunk")
                return
            upload["chunks"][index] = data
            await self._answer(ws, req_id)
            return
        data = b"".join(upload["chunks"].get(i, b"") for i in range(upload["total_chunks"]))
        if len(upload["chunks"]) != upload["total_chunks"] or len(data) != upload["total_size"] or \
                hashlib.md5(data, usedforsecurity=False).hexdigest() != upload["md5"]:
            await self._answer(ws, req_id, 40058, "chunks missing or md5 mismatch")
            return
        size = png_size(data) if upload["type"] == "image" else None
        if (upload["type"] == "image" and size is None) or \
                (str(upload["filename"]).endswith(".xlsx") and xlsx_sheets(data) is None):
            await self._answer(ws, req_id, 40005, "invalid file type")
            return
        media_id = f"robot-media-{next(self._ids)}"
        self.robot_media[media_id] = {"type": upload["type"], "name": upload["filename"], "data": data, "size": size}
        await self._answer(ws, req_id, body={"media_id": media_id, "type": upload["type"],
                                             "created_at": str(int(time.time()))})

    def _req(self) -> str:
        return f"srv_{next(self._ids)}_{uuid.uuid4().hex[:6]}"

    async def push(self, cmd: str, body: dict[str, Any], *, wait: float = 0.0) -> dict[str, Any] | None:
        """Send a callback frame to the subscriber; with `wait`, the answer on its req_id (or None)."""
        if not self.subscribers:
            raise RuntimeError("no subscriber")
        req_id = self._req()
        future: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()
        self._answers[req_id] = future
        if cmd == "aibot_event_callback" and (body.get("event") or {}).get("eventtype") == "template_card_event":
            tapped = body["event"].get("template_card_event", body["event"])
            self._event_req[req_id] = (tapped["task_id"], time.monotonic())
        await self.subscribers[-1].send_json({"cmd": cmd, "headers": {"req_id": req_id}, "body": body})
        if not wait:
            return None
        try:
            return await asyncio.wait_for(future, wait)
        except TimeoutError:
            return None
        finally:
            self._answers.pop(req_id, None)

    async def say(self, text: str, *, userid: str, chatid: str = "", msgid: str = "", create_time: int | None = None,
                  wait: float = 0.0) -> None:
        """Someone writes to the robot (in a group when `chatid` is given); the chat is bound from now."""
        body = robot_message(text, userid=userid, chatid=chatid, msgid=msgid, create_time=create_time)
        if chatid:
            self.bound.add(chatid)
        await self.push("aibot_msg_callback", body, wait=wait)

    async def tap(self, task_id: str, key: str, *, userid: str, chatid: str = "", msgid: str = "",
                  wait: float = 5.0, flat: bool = False) -> dict[str, Any] | None:
        return await self.push("aibot_event_callback", robot_tap(task_id, key, userid=userid, chatid=chatid,
                                                                 msgid=msgid, flat=flat), wait=wait)

    # --- the app API ----------------------------------------------------------------------------
    def expire_tokens(self) -> None:
        for token in self.tokens:
            self.tokens[token] = False

    def fail_next(self, path: str, errcode: int, times: int = 1) -> None:
        self._failures[path].extend([errcode] * times)

    def fail_next_push(self, errcode: int, times: int = 1) -> None:
        """Answer the robot's next `aibot_send_msg`(s) with `errcode` (45009 frequency, 45033 concurrency;
        0 lets that push through, so that a later one fails)."""
        self._push_failures.extend([errcode] * times)

    def api_calls(self, path: str) -> list[Call]:
        return [c for c in self.calls if c.path == path]

    calls_to = api_calls

    async def api(self, request: web.Request) -> web.Response:
        path = "/cgi-bin/" + request.match_info["path"]
        query = dict(request.query)
        body: Any = None
        if request.content_type.startswith("multipart/"):
            form = await request.post()
            media = form.get("media")
            body = {"media": getattr(media, "file", None) and media.file.read(),  # type: ignore[union-attr]
                    "filename": getattr(media, "filename", "")}
        elif request.can_read_body:  # JSON, whatever the Content-Type says (wechatpy sends none)
            raw = await request.read()
            body = json.loads(raw) if raw.strip() else None
        call = Call(request.method, path, query, body)
        self.calls.append(call)

        def answer(code: int = 0, msg: str = "ok", **data: Any) -> web.Response:
            call.code = code
            return web.json_response({"errcode": code, "errmsg": msg, **data})

        if path == "/cgi-bin/gettoken":
            if query.get("corpid") != CORP_ID or query.get("corpsecret") != APP_SECRET:
                return answer(40001, "invalid credential")
            token = "tok-" + uuid.uuid4().hex
            self.tokens[token] = True
            self.token_fetches += 1
            return answer(access_token=token, expires_in=7200)
        if path == "/cgi-bin/aibot/response":  # a robot's response_url: once per code
            code = query.get("code", "")
            if code in self.used_codes:
                return answer(40058, "response_url already used")
            self.used_codes.add(code)
            return answer()
        token = query.get("access_token", "")
        if token not in self.tokens:
            return answer(40014, "invalid access_token")
        if not self.tokens[token]:
            return answer(42001, "access_token expired")
        if self._failures[path]:
            return answer(self._failures[path].popleft(), "injected failure")
        if path == "/cgi-bin/message/send":
            return self._send(body, answer)
        if path == "/cgi-bin/message/update_template_card":
            code = body.get("response_code", "")
            if code not in self.response_codes or code in self.used_codes:
                return answer(40156, "invalid response_code")
            self.used_codes.add(code)
            userid, task_id, how = self.response_codes[code]
            if body.get("userids") not in (None, [userid]):
                return answer(40058, "userids do not match the card's member")
            self.cards[task_id].versions.append((how, body["template_card"]))
            return answer(invaliduser="")
        if path == "/cgi-bin/media/upload":
            kind, data, name = query.get("type"), (body or {}).get("media") or b"", (body or {}).get("filename") or ""
            if kind not in ("image", "voice", "video", "file") or not data or not name:
                return answer(40004, "invalid media type")
            size = png_size(data) if kind == "image" else None
            if (kind == "image" and size is None) or (name.endswith(".xlsx") and xlsx_sheets(data) is None):
                return answer(40005, "invalid file type")
            if len(data) > (10 if kind == "image" else 20) * 1024 * 1024:
                return answer(40006, "invalid file size")
            media_id = "media-" + uuid.uuid4().hex[:12]
            self.media[media_id] = data
            self.media_info[media_id] = {"type": kind, "name": name, "size": size}
            return answer(type=kind, media_id=media_id, created_at=str(int(time.time())))
        if path == "/cgi-bin/department/list":
            return answer(department=self.departments)
        if path == "/cgi-bin/user/list":  # the department's own members (the current docs have no fetch_child)
            department = query.get("department_id", "")
            if not department.isdigit() or all(d.get("id") != int(department) for d in self.departments):
                return answer(60003, "department not found")
            return answer(userlist=[u for u in self.users if int(department) in u.get("department", [])])
        return answer(40058, f"unknown path {path}")

    def _send(self, body: dict[str, Any], answer: Callable[..., web.Response]) -> web.Response:
        if body.get("agentid") != AGENT_ID:
            return answer(40056, "invalid agentid")
        if body.get("enable_id_trans") not in (0, None):
            return answer(40058, "enable_id_trans must be off in these tests")
        msgtype = body.get("msgtype")
        touser = str(body.get("touser", ""))
        if msgtype in ("image", "file") and (
                self.media_info.get(str((body.get(msgtype) or {}).get("media_id")), {}).get("type") != msgtype):
            return answer(40007, "invalid media_id")
        if "@all" in touser.split("|"):
            return answer(40058, "tests never send to @all")
        task_id = (body.get("template_card") or {}).get("task_id") if msgtype == "template_card" else None
        if task_id and task_id in self.cards:
            return answer(DUPLICATE_TASK_ID, "taskid has existed or empty or exceed max len")
        msgid = "msg-" + uuid.uuid4().hex[:16]
        if body.get("enable_duplicate_check") == 1:
            content = (touser, json.dumps(body.get(msgtype), ensure_ascii=False, sort_keys=True))
            last, now = self._last_content.get(content), time.monotonic()
            if last is not None and now - last < float(body.get("duplicate_check_interval", 1800)):
                self.repeats.append(body)
                return answer(invaliduser="", msgid=msgid)
            self._last_content[content] = now
        if not self._within(f"user:{touser}", ((30, 60.0), (1000, 3600.0))):
            self.dropped.append(body)  # WeCom answers ok and drops the excess
            return answer(msgid=msgid)
        self.sent.append(dict(body, at=time.monotonic(), msgid=msgid))
        extra: dict[str, Any] = {}
        if task_id:
            self.cards[task_id] = Card(touser, task_id, [("sent", body["template_card"])], "app")
            code = "rc-" + uuid.uuid4().hex[:16]
            self.response_codes[code] = (touser, task_id, "code")
            extra["response_code"] = code
        return answer(invaliduser="", msgid=msgid, **extra)

    def app_tap_code(self, task_id: str, userid: str) -> str:
        """The ResponseCode WeCom would put in a click's callback on this app card."""
        code = "rc-" + uuid.uuid4().hex[:16]
        self.response_codes[code] = (userid, task_id, "click")
        return code


# --- bodies and envelopes, as WeCom builds them --------------------------------------------------
def robot_message(text: str, *, userid: str, chatid: str = "", msgid: str = "", create_time: int | None = None,
                  msgtype: str = "text") -> dict[str, Any]:
    """A robot message callback as documented (接收消息): it carries no create_time (only events do); give one
    to try a body that has it."""
    body: dict[str, Any] = {"msgid": msgid or uuid.uuid4().hex, "aibotid": BOT_ID,
                            "chattype": "group" if chatid else "single", "from": {"userid": userid},
                            "msgtype": msgtype}
    if create_time is not None:
        body["create_time"] = create_time
    if chatid:
        body["chatid"] = chatid
    if msgtype == "text":
        body["text"] = {"content": text}
    return body


def robot_tap(task_id: str, key: str, *, userid: str, chatid: str = "", msgid: str = "",
              flat: bool = False) -> dict[str, Any]:
    """A tap on a robot card: its fields under `template_card_event`, or (`flat`) on the event itself, as the
    official long-connection SDKs read them."""
    card = {"card_type": "button_interaction", "event_key": key, "task_id": task_id}
    event = {"eventtype": "template_card_event", **card} if flat else \
        {"eventtype": "template_card_event", "template_card_event": card}
    body: dict[str, Any] = {"msgid": msgid or uuid.uuid4().hex, "create_time": int(time.time()), "aibotid": BOT_ID,
                            "chattype": "group" if chatid else "single", "from": {"userid": userid},
                            "msgtype": "event", "event": event}
    if chatid:
        body["chatid"] = chatid
    return body


def app_xml(fields: dict[str, Any]) -> str:
    inner = "".join(f"<{k}>{v}</{k}>" if isinstance(v, int) else f"<{k}><![CDATA[{v}]]></{k}>"
                    for k, v in fields.items())
    return f"<xml>{inner}</xml>"


def app_text(text: str, *, userid: str, msgid: str = "", create_time: int | None = None) -> str:
    return app_xml({"ToUserName": CORP_ID, "FromUserName": userid,
                    "CreateTime": create_time if create_time is not None else int(time.time()),
                    "MsgType": "text", "Content": text, "MsgId": msgid or str(int(time.time() * 1e6)),
                    "AgentID": AGENT_ID})


def app_tap(task_id: str, key: str, *, userid: str, response_code: str, create_time: int | None = None) -> str:
    return app_xml({"ToUserName": CORP_ID, "FromUserName": userid,
                    "CreateTime": create_time if create_time is not None else int(time.time()),
                    "MsgType": "event", "Event": "template_card_event", "EventKey": key, "TaskId": task_id,
                    "CardType": "button_interaction", "ResponseCode": response_code, "AgentID": AGENT_ID})


def app_event(event: str, *, userid: str, create_time: int | None = None) -> str:
    return app_xml({"ToUserName": CORP_ID, "FromUserName": userid,
                    "CreateTime": create_time if create_time is not None else int(time.time()),
                    "MsgType": "event", "Event": event, "AgentID": AGENT_ID})


def app_envelope(xml: str, *, at: float | None = None, token: str = APP_TOKEN, key: str = APP_AES_KEY,
                 receive_id: str = CORP_ID) -> tuple[str, bytes]:
    """(query string, body) of the POST WeCom makes to an app's callback URL."""
    encrypted = crypto.encrypt(xml.encode(), key, receive_id, os.urandom(16))
    timestamp, nonce = str(int(at if at is not None else time.time())), uuid.uuid4().hex[:10]
    signature = crypto.signature(token, timestamp, nonce, encrypted)
    body = (f"<xml><ToUserName><![CDATA[{CORP_ID}]]></ToUserName><AgentID><![CDATA[{AGENT_ID}]]></AgentID>"
            f"<Encrypt><![CDATA[{encrypted}]]></Encrypt></xml>")
    return urlencode({"msg_signature": signature, "timestamp": timestamp, "nonce": nonce}), body.encode()


def robot_envelope(body: dict[str, Any], *, at: float | None = None, token: str = ROBOT_TOKEN,
                   key: str = ROBOT_AES_KEY, escape_slashes: bool = True) -> tuple[str, bytes]:
    """(query string, body) of the POST WeCom makes to a robot's callback URL: `{"encrypt": …}`, with "/"
    written as "\\/" the way WeCom's own JSON examples show it (both are the same JSON string)."""
    encrypted = crypto.encrypt(json.dumps(body, ensure_ascii=False).encode(), key, "", os.urandom(16))
    timestamp, nonce = str(int(at if at is not None else time.time())), uuid.uuid4().hex[:10]
    signature = crypto.signature(token, timestamp, nonce, encrypted)
    text = json.dumps({"encrypt": encrypted})
    return (urlencode({"msg_signature": signature, "timestamp": timestamp, "nonce": nonce}),
            (text.replace("/", "\\/") if escape_slashes else text).encode())


def echo_query(echo: str, *, token: str, key: str, receive_id: str, at: float | None = None) -> str:
    """The URL-verification GET's query: an encrypted echostr, signed."""
    echostr = crypto.encrypt(echo.encode(), key, receive_id, os.urandom(16))
    timestamp, nonce = str(int(at if at is not None else time.time())), uuid.uuid4().hex[:10]
    return urlencode({"msg_signature": crypto.signature(token, timestamp, nonce, echostr), "timestamp": timestamp,
                      "nonce": nonce, "echostr": echostr})


class ThreadedFake:
    """A FakeWecom served from its own thread and loop (for blocking tests of real serve processes)."""

    def __init__(self, **kwargs: Any) -> None:
        self.fake = FakeWecom(**kwargs)
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)

    def __enter__(self) -> ThreadedFake:
        self._thread.start()
        asyncio.run_coroutine_threadsafe(self.fake.start(), self._loop).result(10)
        return self

    def __exit__(self, *exc: object) -> None:
        asyncio.run_coroutine_threadsafe(self.fake.close(), self._loop).result(10)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(10)

    def run(self, coro: Any, timeout: float = 15) -> Any:
        """Run a coroutine on the fake's loop and wait for its result."""
        return asyncio.run_coroutine_threadsafe(coro, self._loop).result(timeout)

    def call(self, fn: Callable[[], Any]) -> Any:
        async def run() -> Any:
            return fn()
        return self.run(run())
