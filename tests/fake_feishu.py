"""A local fake of Feishu's Open API (open.feishu.cn) for the adapter's tests: no test reaches the internet.

It speaks the real paths and answer shapes of the calls CollabBot makes (the token endpoint's
unwrapped {code, msg, tenant_access_token, expire}; {code, msg, data} elsewhere; `bot/v3/info`'s
{code, msg, bot}), checks the `Authorization: Bearer` header on every authorised call, records every
call, and can be told to answer a rate limit (HTTP 429, code 99991400, `x-ogw-ratelimit-reset`), the
per-chat limit (230020), a 5xx, an expired token (99991663 with HTTP 200) or a permission error.
Off by default, two switches make it behave like a busy platform: `enforce_chat_limit` refuses a
send to a chat or user that already had `count` sends in the last `per_seconds` (230020, counted in
`limit_refusals`; every send that reaches the message service counts, a 5xx or a lost answer too), and
`set_chaos` answers a share of the sends at random with a throttle or an expired token (at the gateway,
before the chat's count), a 5xx, or creates the message and then drops the answer (the platform
acted, the caller never hears). The contact API (`departments/:id`, `departments/:id/children`,
`users/find_by_department`) reads ids as `department_id_type` says (default `open_department_id`),
recurses only with `fetch_child=true`, and honours `contact_scope`, the app's 通讯录权限范围: a
department outside it answers 40004 (HTTP 403), and "0" needs 全部成员 (None); an unknown one 40015. The long-connection endpoint (`/callback/ws/endpoint`) and a websocket speaking the SDK's protobuf
frames are here too, so lark-oapi's real `ws.Client` can connect to it.

`ThreadedFake` runs one in a thread of its own, for tests that drive a `collabbot serve` subprocess
with blocking waits.
"""

from __future__ import annotations

import asyncio
import base64
import itertools
import json
import random
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from aiohttp import WSMsgType, web

from .media_checks import png_size, xlsx_sheets

FAULTS = {
    "rate_limit": (429, 99991400, "request trigger frequency limit"),
    "chat_rate_limit": (400, 230020, "This operation triggers the frequency limit."),
    "server_error": (502, None, "Bad Gateway"),
    "token_expired": (200, 99991663, "Invalid access token for authorization. Please make a request with token attached."),
    "tenant_token_invalid": (400, 99991668, "Invalid access token for authorization."),
    "busy": (400, 11232, "frequency limit triggered by system load"),
    "forbidden": (400, 99991672, "Access denied. One of the following scopes is required: [im:message.urgent]."),
    "bot_not_in_chat": (400, 230002, "Bot/User can NOT be out of the chat."),
}


@dataclass
class Call:
    method: str
    path: str
    query: dict[str, str]
    body: Any
    auth: str
    size: int = 0  # the request body's bytes, as sent
    status: int = 200
    code: int = 0
    at: float = field(default_factory=time.monotonic)


@dataclass
class Chaos:
    """Random trouble on message sends (shares of all sends), from a seeded generator."""

    rng: random.Random
    throttle: float = 0.0  # HTTP 429 / 99991400 with x-ogw-ratelimit-reset
    server_error: float = 0.0  # HTTP 502
    lost_answers: float = 0.0  # the message is created, then the connection drops before the answer
    token_expiry_every: int = 0  # every n-th send finds its token expired (99991663)
    reset_seconds: int = 1
    sends: int = 0
    counts: dict[str, int] = field(default_factory=dict)

    def roll(self) -> str | None:
        self.sends += 1
        if self.token_expiry_every and self.sends % self.token_expiry_every == 0:
            return self._count("token_expired")
        r = self.rng.random()
        for kind, share in (("rate_limit", self.throttle), ("server_error", self.server_error),
                            ("lost_answer", self.lost_answers)):
            if r < share:
                return self._count(kind)
            r -= share
        return None

    def _count(self, kind: str) -> str:
        self.counts[kind] = self.counts.get(kind, 0) + 1
        return kind


@dataclass
class Fault:
    kind: str
    method: str
    path: str  # a prefix of the request path
    times: int


class FakeFeishu:
    def __init__(self, *, app_id: str = "cli_test", app_secret: str = "test-secret", bot_open_id: str = "ou_bot",
                 page_cap: int = 2, token_expire: int = 7200) -> None:
        self.app_id, self.app_secret, self.bot_open_id = app_id, app_secret, bot_open_id
        self.page_cap = page_cap
        self.token_expire = token_expire
        self.calls: list[Call] = []
        self.tokens: set[str] = set()
        self.faults: list[Fault] = []
        self.messages: dict[str, dict[str, Any]] = {}
        self.by_uuid: dict[str, str] = {}
        self.images: dict[str, int] = {}
        self.image_sizes: dict[str, tuple[int, int]] = {}
        self.files: dict[str, dict[str, Any]] = {}
        self.departments: list[dict[str, Any]] = []
        self.users: list[dict[str, Any]] = []
        self.contact_scope: set[str] | None = None  # 通讯录权限范围: open_department_ids (with all below); None = 全部成员
        self.approval_instances: dict[str, dict[str, Any]] = {}  # instance code -> 审批实例详情 data
        self.approval_subscriptions: set[str] = set()  # 订阅审批事件: approval codes this app asked for
        self.approval_scope = True  # the app holds approval:approval (needed to subscribe)
        self.chats_left: set[str] = set()  # groups the bot was removed from, or that were disbanded
        self._ids = itertools.count(1)
        self._lock = threading.Lock()
        # off by default: see enforce_chat_limit and set_chaos
        self.chat_limit: tuple[int, float] | None = None
        self.limit_refusals: list[tuple[str, float]] = []
        self._arrivals: dict[str, deque[float]] = {}
        self.chaos: Chaos | None = None
        self.url = ""
        self._runner: web.AppRunner | None = None
        # long connection
        self.ws_connections: list[web.WebSocketResponse] = []
        self.ws_silent_first = 0  # the first N connections get no pong: "dead" sockets for the watchdog
        self.ws_endpoint_calls = 0
        self.ws_ping_interval = 1
        self._ws_waiters: dict[str, asyncio.Future[dict[str, Any]]] = {}
        self.ws_connected = asyncio.Event()

    # --- control ---------------------------------------------------------------------------------
    def fail(self, kind: str, *, path: str = "/open-apis/im/v1/messages", method: str = "POST", times: int = 1) -> None:
        """The next `times` calls matching method and path prefix answer the fault `kind` (see FAULTS)."""
        assert kind in FAULTS, kind
        with self._lock:
            self.faults.append(Fault(kind, method, path, times))

    def recall(self, message_id: str) -> None:
        """Someone recalled the message (撤回): updating it now answers 230011."""
        self.messages[message_id]["recalled"] = True

    def leave_chat(self, chat_id: str) -> None:
        """The bot is no longer in the group (removed, or the group disbanded): sends there answer 230002."""
        self.chats_left.add(chat_id)

    def enforce_chat_limit(self, count: int = 5, per_seconds: float = 1.0) -> None:
        """Refuse (230020) a send to a receive_id that had `count` sends in the last `per_seconds`."""
        self.chat_limit = (count, per_seconds)

    def set_chaos(self, seed: int = 1, **shares: Any) -> Chaos:
        """Random throttles, 5xx, expired tokens and lost answers on message sends (see `Chaos`)."""
        self.chaos = Chaos(random.Random(seed), **shares)
        return self.chaos

    def _over_chat_limit(self, receive_id: str) -> bool:
        if self.chat_limit is None:
            return False
        count, window = self.chat_limit
        now = time.monotonic()
        with self._lock:
            arrivals = self._arrivals.setdefault(receive_id, deque())
            while arrivals and arrivals[0] <= now - window:
                arrivals.popleft()
            if len(arrivals) >= count:  # a refused send does not count as one of the chat's messages
                self.limit_refusals.append((receive_id, now))
                return True
            arrivals.append(now)
        return False

    def expire_tokens(self) -> None:
        """Every token issued so far becomes invalid (as when Feishu rotates it)."""
        with self._lock:
            self.tokens.clear()

    # --- queries ---------------------------------------------------------------------------------
    def api_calls(self, method: str | None = None, path: str = "") -> list[Call]:
        return [c for c in list(self.calls) if (method is None or c.method == method) and c.path.startswith(path)]

    def sent(self, receive_id: str | None = None) -> list[dict[str, Any]]:
        """Messages created (each once, whatever the retries), oldest first."""
        out = [m for m in list(self.messages.values()) if receive_id is None or m["receive_id"] == receive_id]
        return sorted(out, key=lambda m: m["seq"])

    def patches(self, message_id: str | None = None) -> list[Call]:
        return [c for c in self.api_calls("PATCH", "/open-apis/im/v1/messages/")
                if not c.path.endswith("/urgent_app") and c.code == 0
                and (message_id is None or c.path.rsplit("/", 1)[-1] == message_id)]

    # --- server ----------------------------------------------------------------------------------
    def app(self) -> web.Application:
        app = web.Application()
        r = app.router
        r.add_post("/open-apis/auth/v3/tenant_access_token/internal", self._token)
        r.add_get("/open-apis/bot/v3/info", self._bot_info)
        r.add_post("/open-apis/im/v1/messages", self._send)
        r.add_patch("/open-apis/im/v1/messages/{message_id}/urgent_app", self._urgent)
        r.add_patch("/open-apis/im/v1/messages/{message_id}", self._update)
        r.add_post("/open-apis/im/v1/images", self._image)
        r.add_post("/open-apis/im/v1/files", self._file)
        r.add_get("/open-apis/contact/v3/departments/{department_id}/children", self._children)
        r.add_get("/open-apis/contact/v3/departments/{department_id}", self._department)
        r.add_get("/open-apis/contact/v3/users/find_by_department", self._find_by_department)
        r.add_get("/open-apis/approval/v4/instances/{instance_id}", self._approval_instance)
        r.add_post("/open-apis/approval/v4/approvals/{approval_code}/subscribe", self._subscribe_approval)
        r.add_post("/callback/ws/endpoint", self._ws_endpoint)
        r.add_get("/ws", self._ws)
        return app

    async def start(self) -> str:
        self._runner = web.AppRunner(self.app(), access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        self.url = f"http://127.0.0.1:{port}"
        return self.url

    async def close(self) -> None:
        for ws in list(self.ws_connections):
            await ws.close()
        if self._runner is not None:
            await self._runner.cleanup()

    # --- helpers ---------------------------------------------------------------------------------
    async def _record(self, request: web.Request) -> Call:
        body: Any = None
        size = 0
        if request.content_type == "application/json" or "Content-Type" not in request.headers:
            # lark-oapi posts its token request with no Content-Type at all, and Feishu reads it as JSON
            raw = await request.read()
            body = json.loads(raw) if raw else None
            size = len(raw)
        elif request.content_type.startswith("multipart/"):
            body = {}
            reader = await request.multipart()
            while (part := await reader.next()) is not None:
                body[part.name] = await part.read() if part.filename else (await part.text())  # type: ignore[union-attr]
        call = Call(request.method, request.path, dict(request.query), body, request.headers.get("Authorization", ""),
                    size)
        self.calls.append(call)
        return call

    def _answer(self, call: Call, status: int, code: int | None, msg: str, extra: dict[str, Any] | None = None,
                headers: dict[str, str] | None = None) -> web.Response:
        call.status, call.code = status, code if code is not None else -1
        if code is None:
            return web.Response(status=status, text=msg, headers=headers)
        return web.json_response({"code": code, "msg": msg, **(extra or {})}, status=status, headers=headers)

    def _fault(self, call: Call) -> web.Response | None:
        with self._lock:
            for fault in self.faults:
                if fault.times > 0 and fault.method == call.method and call.path.startswith(fault.path):
                    fault.times -= 1
                    break
            else:
                return None
        status, code, msg = FAULTS[fault.kind]
        headers = {"x-ogw-ratelimit-reset": "2"} if fault.kind == "rate_limit" else None
        if fault.kind == "token_expired":
            self.expire_tokens()
        return self._answer(call, status, code, msg, headers=headers)

    def _denied(self, call: Call) -> web.Response | None:
        """Feishu's answers to a missing or invalid tenant token (HTTP 400 here; 200 through `fail`)."""
        if not call.auth.startswith("Bearer "):
            return self._answer(call, 400, 99991661, "Missing access token for authorization.")
        if call.auth.removeprefix("Bearer ") not in self.tokens:
            return self._answer(call, 400, 99991663, "Invalid access token for authorization.")
        return None

    async def _guard(self, request: web.Request) -> tuple[Call, web.Response | None]:
        call = await self._record(request)
        return call, self._denied(call) or self._fault(call)

    # --- endpoints -------------------------------------------------------------------------------
    async def _token(self, request: web.Request) -> web.Response:
        call = await self._record(request)
        if (fault := self._fault(call)) is not None:
            return fault
        body = call.body or {}
        if body.get("app_id") != self.app_id or body.get("app_secret") != self.app_secret:
            return self._answer(call, 400, 10014, "app secret invalid")
        token = f"t-fake-{next(self._ids)}"
        self.tokens.add(token)
        return self._answer(call, 200, 0, "ok", {"tenant_access_token": token, "expire": self.token_expire})

    async def _bot_info(self, request: web.Request) -> web.Response:
        call, denied = await self._guard(request)
        if denied is not None:
            return denied
        return self._answer(call, 200, 0, "ok", {"bot": {"activate_status": 2, "app_name": "CollabBot",
                                                          "avatar_url": "", "ip_white_list": [],
                                                          "open_id": self.bot_open_id}})

    async def _send(self, request: web.Request) -> web.Response:
        call, denied = await self._guard(request)
        if denied is not None:
            return denied
        id_type = call.query.get("receive_id_type")
        body = call.body or {}
        if id_type not in ("chat_id", "open_id", "user_id", "union_id", "email"):
            return self._answer(call, 400, 99992402, "field validation failed: receive_id_type")
        uuid = body.get("uuid", "")
        if not isinstance(body.get("content"), str) or len(uuid) > 50:
            return self._answer(call, 400, 99992402, "field validation failed")
        content = json.loads(body["content"])
        # the gateway's answers (an expired token, the app's frequency limit) come before the message service
        trouble = self.chaos.roll() if self.chaos is not None else None
        if trouble == "rate_limit":
            return self._answer(call, 429, 99991400, FAULTS["rate_limit"][2],
                                headers={"x-ogw-ratelimit-reset": str(self.chaos.reset_seconds)})  # type: ignore[union-attr]
        if trouble == "token_expired":
            self.expire_tokens()
            return self._answer(call, *FAULTS["token_expired"])
        if id_type == "chat_id" and body.get("receive_id") in self.chats_left:
            return self._answer(call, *FAULTS["bot_not_in_chat"])
        if self._over_chat_limit(str(body.get("receive_id"))):
            return self._answer(call, *FAULTS["chat_rate_limit"])
        if trouble == "server_error":
            return self._answer(call, *FAULTS["server_error"])
        if body.get("msg_type") == "image" and content.get("image_key") not in self.images:
            return self._answer(call, 400, 230001, "invalid image_key")
        if body.get("msg_type") == "file" and content.get("file_key") not in self.files:
            return self._answer(call, 400, 230001, "invalid file_key")
        # 发送消息: "文本消息请求体最大不能超过150KB；卡片及富文本消息请求体最大不能超过30KB" (the body as sent)
        if call.size > (30 if body.get("msg_type") in ("interactive", "post") else 150) * 1024:
            return self._answer(call, 400, 230025, "The length of the message content reaches its limit.")
        with self._lock:
            if uuid and uuid in self.by_uuid:  # the same uuid sends at most one message an hour
                message_id = self.by_uuid[uuid]
            else:
                message_id = f"om_fake_{next(self._ids)}"
                self.messages[message_id] = {
                    "message_id": message_id, "seq": len(self.messages), "receive_id_type": id_type,
                    "receive_id": body.get("receive_id"), "msg_type": body.get("msg_type"), "content": content,
                    "uuid": uuid, "updates": [], "urgent": [],
                }
                if uuid:
                    self.by_uuid[uuid] = message_id
        m = self.messages[message_id]
        if trouble == "lost_answer":  # the message exists; its answer never arrives
            call.status, call.code = 0, -2
            if request.transport is not None:
                request.transport.close()
            return web.Response(status=200)  # never reaches the caller: the connection is gone
        chat_id = m["receive_id"] if id_type == "chat_id" else f"oc_p2p_{m['receive_id']}"
        return self._answer(call, 200, 0, "success", {"data": {
            "message_id": message_id, "root_id": "", "parent_id": "", "msg_type": m["msg_type"],
            "create_time": str(int(time.time() * 1000)), "update_time": str(int(time.time() * 1000)),
            "deleted": False, "updated": False, "chat_id": chat_id,
            "sender": {"id": self.app_id, "id_type": "app_id", "sender_type": "app", "tenant_key": "tk"},
            "body": {"content": body["content"]}}})

    async def _update(self, request: web.Request) -> web.Response:
        call, denied = await self._guard(request)
        if denied is not None:
            return denied
        message = self.messages.get(request.match_info["message_id"])
        if message is None:
            return self._answer(call, 400, 230001, "message not found")
        if message["msg_type"] != "interactive":
            return self._answer(call, 400, 230001, "only cards can be updated")
        if message.get("recalled"):
            return self._answer(call, 400, 230011, "The message is recalled.")
        content = (call.body or {}).get("content")
        if not isinstance(content, str):
            return self._answer(call, 400, 99992402, "field validation failed: content")
        message["updates"].append(json.loads(content))
        return self._answer(call, 200, 0, "success", {"data": {}})

    async def _urgent(self, request: web.Request) -> web.Response:
        call, denied = await self._guard(request)
        if denied is not None:
            return denied
        message = self.messages.get(request.match_info["message_id"])
        ids = (call.body or {}).get("user_id_list")
        if message is None or call.query.get("user_id_type") != "open_id" or not isinstance(ids, list):
            return self._answer(call, 400, 99992402, "field validation failed")
        message["urgent"].extend(ids)
        return self._answer(call, 200, 0, "success", {"data": {"invalid_user_id_list": []}})

    async def _image(self, request: web.Request) -> web.Response:
        call, denied = await self._guard(request)
        if denied is not None:
            return denied
        body = call.body or {}
        if body.get("image_type") != "message" or not isinstance(body.get("image"), bytes | bytearray):
            return self._answer(call, 400, 99992402, "field validation failed")
        size = png_size(bytes(body["image"]))
        if size is None:  # Feishu: 234011 "Can't recognize image format"
            return self._answer(call, 400, 234011, "Can't recognize image format.")
        key = f"img_v3_fake_{next(self._ids)}"
        self.images[key] = len(body["image"])
        self.image_sizes[key] = size
        body["image"] = len(body["image"])  # keep the record small
        return self._answer(call, 200, 0, "success", {"data": {"image_key": key}})

    async def _file(self, request: web.Request) -> web.Response:
        """上传文件: file_type, file_name, file; an xlsx must be a real workbook (file_type xls)."""
        call, denied = await self._guard(request)
        if denied is not None:
            return denied
        body = call.body or {}
        data, name = body.get("file"), body.get("file_name")
        if (body.get("file_type") not in ("opus", "mp4", "pdf", "doc", "xls", "ppt", "stream")
                or not isinstance(data, bytes | bytearray) or not data or not isinstance(name, str) or not name):
            return self._answer(call, 400, 99992402, "field validation failed")
        if len(data) > 30 * 1024 * 1024:
            return self._answer(call, 400, 234006, "The file size exceeds the limit.")
        if name.endswith(".xlsx") and (body["file_type"] != "xls" or xlsx_sheets(bytes(data)) is None):
            return self._answer(call, 400, 234010, "File type mismatch.")
        key = f"file_v3_fake_{next(self._ids)}"
        self.files[key] = {"name": name, "type": body["file_type"], "data": bytes(data)}
        body["file"] = len(data)  # keep the record small
        return self._answer(call, 200, 0, "success", {"data": {"file_key": key}})

    def _page(self, call: Call, items: list[dict[str, Any]]) -> web.Response:
        size = min(int(call.query.get("page_size", "50")), 50, self.page_cap)
        start = int(call.query.get("page_token") or 0)
        chunk = items[start:start + size]
        more = start + size < len(items)
        return self._answer(call, 200, 0, "success", {"data": {
            "has_more": more, "page_token": str(start + size) if more else "", "items": chunk}})

    def _readable(self, call: Call, given: str) -> tuple[str, web.Response | None]:
        """A department id as `department_id_type` reads it → its open_department_id, or Feishu's refusal:
        40001 for an unknown id type, 40015 for no such department, 40004 (HTTP 403) outside the app's
        通讯录权限范围 ("0", the root, needs 全部成员)."""
        kind = call.query.get("department_id_type", "open_department_id")
        if kind not in ("open_department_id", "department_id"):
            return "", self._answer(call, 400, 40001, "param error")
        if given == "0":
            found = "0"
        else:
            dept = next((d for d in self.departments if str(d.get(kind)) == given), None)
            if dept is None:
                return "", self._answer(call, 400, 40015, "department not exist")
            found = dept["open_department_id"]
        if not self._in_scope(found):
            return "", self._answer(call, 403, 40004, "no dept authority error")
        return found, None

    def _in_scope(self, open_id: str) -> bool:
        if self.contact_scope is None:
            return True
        parents = {d["open_department_id"]: d["parent_department_id"] for d in self.departments}
        seen: set[str] = set()
        while open_id and open_id != "0" and open_id not in seen:
            if open_id in self.contact_scope:
                return True
            seen.add(open_id)
            open_id = parents.get(open_id, "")
        return False

    async def _department(self, request: web.Request) -> web.Response:
        """获取单个部门信息: {code, msg, data: {department: {…, open_department_id, leader_user_id, …}}}."""
        call, denied = await self._guard(request)
        if denied is not None:
            return denied
        found, refused = self._readable(call, request.match_info["department_id"])
        if refused is not None:
            return refused
        dept = next((d for d in self.departments if d["open_department_id"] == found), None)
        if dept is None:  # the root "0": not modelled as a department here
            return self._answer(call, 400, 40015, "department not exist")
        return self._answer(call, 200, 0, "success", {"data": {"department": dept}})

    async def _children(self, request: web.Request) -> web.Response:
        call, denied = await self._guard(request)
        if denied is not None:
            return denied
        root, refused = self._readable(call, request.match_info["department_id"])
        if refused is not None:
            return refused
        wanted, frontier = [], {root}
        while frontier:  # the children only, and with fetch_child=true the whole subtree, flat; never the root
            found = [d for d in self.departments if d["parent_department_id"] in frontier]
            wanted += found
            frontier = {d["open_department_id"] for d in found} if call.query.get("fetch_child") == "true" else set()
        return self._page(call, wanted)

    async def _find_by_department(self, request: web.Request) -> web.Response:
        call, denied = await self._guard(request)
        if denied is not None:
            return denied
        dept, refused = self._readable(call, call.query.get("department_id", ""))
        if refused is not None:
            return refused
        return self._page(call, [u for u in self.users if dept in u.get("department_ids", [])])

    async def _approval_instance(self, request: web.Request) -> web.Response:
        """获取单个审批实例详情: {code, msg, data: {approval_code, approval_name, status, open_id, form, …}}."""
        call, denied = await self._guard(request)
        if denied is not None:
            return denied
        instance = self.approval_instances.get(request.match_info["instance_id"])
        if instance is None:
            return self._answer(call, 400, 1390001, "param is invalid: instance not found")
        return self._answer(call, 200, 0, "success", {"data": {"instance_code": request.match_info["instance_id"],
                                                               **instance}})

    async def _subscribe_approval(self, request: web.Request) -> web.Response:
        """订阅审批事件: once per app and definition; a second call is answered 1390007 (subscription existed);
        without approval:approval (or approval:definition) the app is refused (99991672)."""
        call, denied = await self._guard(request)
        if denied is not None:
            return denied
        code = request.match_info["approval_code"]
        if not self.approval_scope:
            return self._answer(call, 400, 99991672, "Access denied. One of the following scopes is required: "
                                                      "[approval:approval, approval:definition]")
        if code in self.approval_subscriptions:
            return self._answer(call, 400, 1390007, "subscription existed")
        self.approval_subscriptions.add(code)
        return self._answer(call, 200, 0, "success", {"data": {}})

    def add_approval_instance(self, code: str, approval_code: str, status: str, open_id: str,
                              form: list[dict[str, Any]]) -> None:
        self.approval_instances[code] = {
            "approval_code": approval_code, "approval_name": "人力支持", "status": status, "open_id": open_id,
            "user_id": "u-" + open_id, "department_id": "od-1", "serial_number": "202612010001",
            "start_time": "1764550800000", "end_time": "0", "uuid": "", "reverted": False,
            "form": json.dumps(form, ensure_ascii=False), "task_list": [], "comment_list": [], "timeline": []}

    # --- long connection -------------------------------------------------------------------------
    async def _ws_endpoint(self, request: web.Request) -> web.Response:
        call = await self._record(request)
        body = call.body or {}
        if body.get("AppID") != self.app_id or body.get("AppSecret") != self.app_secret:
            return self._answer(call, 200, 514, "auth failed")
        self.ws_endpoint_calls += 1
        ws_url = self.url.replace("http://", "ws://") + f"/ws?device_id=d{self.ws_endpoint_calls}&service_id=7"
        return self._answer(call, 200, 0, "ok", {"data": {"URL": ws_url, "ClientConfig": {
            "ReconnectCount": -1, "ReconnectInterval": 1, "ReconnectNonce": 0,
            "PingInterval": self.ws_ping_interval}}})

    async def _ws(self, request: web.Request) -> web.WebSocketResponse:
        from lark_oapi.ws.pb.pbbp2_pb2 import Frame

        ws = web.WebSocketResponse()
        await ws.prepare(request)
        self.ws_connections.append(ws)
        silent = self.ws_endpoint_calls <= self.ws_silent_first
        self.ws_connected.set()
        async for msg in ws:
            if msg.type != WSMsgType.BINARY:
                continue
            frame = Frame()
            frame.ParseFromString(msg.data)
            headers = {h.key: h.value for h in frame.headers}
            if frame.method == 0 and headers.get("type") == "ping":
                if not silent:
                    await ws.send_bytes(_frame(0, {"type": "pong"}, b"").SerializeToString())
            elif frame.method == 1:
                waiter = self._ws_waiters.pop(headers.get("message_id", ""), None)
                if waiter is not None and not waiter.done():
                    waiter.set_result(json.loads(frame.payload))
        if ws in self.ws_connections:
            self.ws_connections.remove(ws)
        return ws

    async def push_event(self, body: dict[str, Any], timeout: float = 10) -> dict[str, Any]:
        """Send an event frame on the newest connection; the client's answer frame, its `data` decoded."""
        ws = self.ws_connections[-1]
        message_id = f"frame-{next(self._ids)}"
        waiter: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()
        self._ws_waiters[message_id] = waiter
        frame = _frame(1, {"type": "event", "message_id": message_id, "trace_id": "t", "sum": "1", "seq": "0"},
                       json.dumps(body).encode())
        await ws.send_bytes(frame.SerializeToString())
        answer = await asyncio.wait_for(waiter, timeout)
        if answer.get("data"):
            answer["data"] = json.loads(base64.b64decode(answer["data"]))
        return answer


def _frame(method: int, headers: dict[str, str], payload: bytes) -> Any:
    from lark_oapi.ws.pb.pbbp2_pb2 import Frame

    frame = Frame()
    frame.SeqID, frame.LogID, frame.service, frame.method = 0, 0, 7, method
    for key, value in headers.items():
        h = frame.headers.add()
        h.key, h.value = key, value
    frame.payload = payload
    return frame


class ThreadedFake:
    """A FakeFeishu served from its own thread and loop (for blocking tests of real serve processes)."""

    def __init__(self, **kwargs: Any) -> None:
        self.fake = FakeFeishu(**kwargs)
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)

    def __enter__(self) -> FakeFeishu:
        self._thread.start()
        asyncio.run_coroutine_threadsafe(self.fake.start(), self._loop).result(10)
        return self.fake

    def __exit__(self, *exc: object) -> None:
        asyncio.run_coroutine_threadsafe(self.fake.close(), self._loop).result(10)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(10)

    def call(self, fn: Callable[[], Any]) -> Any:
        """Run `fn` on the fake's loop (to change its state safely)."""
        async def run() -> Any:
            return fn()
        return asyncio.run_coroutine_threadsafe(run(), self._loop).result(10)
