"""A local fake of DingTalk (api.dingtalk.com, oapi.dingtalk.com and the Stream gateway) for the adapter's tests.

It speaks the documented paths and answer shapes of the calls CollabBot makes, checks the access
token on every authorised call (header `x-acs-dingtalk-access-token`, or `access_token` for topapi),
records every call, and can be switched to answer DingTalk's errors: a refused token (400
InvalidAuthentication), the per-app QPS limit (403 Forbidden.AccessDenied.QpsLimitForApi), a 5xx,
a card not delivered (200 with `deliverResults[].success` false), users not reached by batchSend.
`enforce_group_limit` refuses a group's messages past `count` per `window` seconds (and then
blocks the group, as DingTalk's robot does), counting refusals.

The Stream side: `POST /v1.0/gateway/connections/open` hands out a ticket; the websocket at the
endpoint sends frames the way DingTalk does (robot messages, card callbacks, `ping`, `disconnect`),
records the client's acks, and answers the client's websocket pings (counted per connection) as
any websocket server does. A connection can be made dead (`kill`, `dead_first`: no frames and no
pongs while the socket stays open, which only the client's own pings can notice). A robot frame
is never sent again, as DingTalk's protocol FAQ says (机器人消息 fire-forget); `redeliver_after` is an
explicit opt-in for the tests that need a frame to arrive twice.

HTTP mode: `/v1.0/card/callbacks/register` keeps each `callbackRouteKey`'s URL and apiSecret, and
`http_card_callback` posts a tap on an HTTP card only there, signed with that apiSecret.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import hashlib
import hmac
import itertools
import json
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import aiohttp
from aiohttp import WSMsgType, web

from .media_checks import png_size, xlsx_sheets

FAULTS = {
    "token_invalid": (400, "InvalidAuthentication", "不合法的access_token"),
    "qps_limit": (403, "Forbidden.AccessDenied.QpsLimitForApi", "当前接口调用超过QPS上限"),
    "server_error": (500, "ServiceUnavailable", "服务暂不可用"),
    "no_permission": (403, "Forbidden.AccessDenied.AccessTokenPermissionDenied", "没有调用该接口的权限"),
    "monthly_quota": (403, "Forbidden.AccessDenied.ApiCountLimitForOrg", "企业调用量已超过当月上限"),
    # the API throttling appendix: an IP over its limit is banned 5 minutes with this body, no error code
    "ip_ban": (200, "", '{"status":1111,"wait":5,"source":"x5","punish":"deny","uuid":"fake"}'),
    "not_updated": (200, "", '{"success":false,"result":false}'),  # an update answered, not made
    "html": (502, "", "<html><body>Bad Gateway</body></html>"),
}
ROBOT_TOPIC = "/v1.0/im/bot/messages/get"
CARD_TOPIC = "/v1.0/card/instances/callback"


@dataclass
class Call:
    method: str
    path: str
    query: dict[str, str]
    body: Any
    token: str
    status: int = 200
    code: str = ""
    at: float = field(default_factory=time.monotonic)


@dataclass
class Fault:
    kind: str
    path: str
    times: int


ROBOT_MSG_KEYS = ("sampleText", "sampleMarkdown", "sampleImageMsg", "sampleFile")


class FakeDingTalk:
    def __init__(self, *, client_id: str = "dingtestapp", client_secret: str = "test-secret",
                 robot_user_id: str = "$:LWCP_v1:$robot", token_expire: int = 7200,
                 now: Callable[[], float] = time.monotonic) -> None:
        self.client_id, self.client_secret = client_id, client_secret
        self.robot_user_id = robot_user_id
        self.token_expire = token_expire
        self.now = now
        self.calls: list[Call] = []
        self.tokens: set[str] = set()
        self.faults: list[Fault] = []
        self.messages: dict[str, dict[str, Any]] = {}  # message id (outTrackId or processQueryKey) -> record
        self.cards: dict[str, dict[str, Any]] = {}  # outTrackId -> record
        self.dings: list[dict[str, Any]] = []
        self.webhook_posts: list[dict[str, Any]] = []
        self.undelivered: set[str] = set()  # conversation or user ids whose card delivery fails
        self.disbanded: set[str] = set()  # groups dissolved (or the robot removed): sends there are refused
        self.topapi_permitted = True  # False: topapi answers 88 (鉴权异常) with sub_code 60011, no permission
        self.unreached: dict[str, str] = {}  # user id -> "invalid" | "flow" for batchSend
        self.departments: dict[int, dict[str, Any]] = {}
        self.users: dict[str, dict[str, Any]] = {}
        self.media: dict[str, dict[str, Any]] = {}  # media_id -> {type, name, data, size (an image's)}
        self._ids = itertools.count(1)
        self._lock = threading.Lock()
        self.group_limit: tuple[int, float, float] | None = None
        self._arrivals: dict[str, deque[float]] = {}
        self._blocked: dict[str, float] = {}
        self.limit_refusals: list[tuple[str, float]] = []
        self.card_routes: dict[str, dict[str, str]] = {}  # callbackRouteKey -> {callbackUrl, apiSecret}
        self.wall: Callable[[], float] = time.time  # the clock HTTP callbacks are timestamped by
        self.url = ""
        self._runner: web.AppRunner | None = None
        # stream
        self.open_calls = 0
        self.connections: list[web.WebSocketResponse] = []
        self.dead_first = 0  # the first N connections are dead: no frame, no pong (the socket stays open)
        self.open_delay = 0.0  # seconds the gateway takes to answer an open call
        self.ping_every = 0.0  # > 0: a SYSTEM `ping` frame to every live connection this often
        self._pinger: asyncio.Task[None] | None = None
        self.redeliver_after: float | None = None  # opt-in: resend a robot frame not acked within this long
        self.acks: list[dict[str, Any]] = []
        self._ack_waiters: dict[str, asyncio.Future[dict[str, Any]]] = {}
        self.connected = asyncio.Event()

    # --- control ---------------------------------------------------------------------------------
    def fail(self, kind: str, *, path: str = "/v1.0/", times: int = 1) -> None:
        assert kind in FAULTS, kind
        with self._lock:
            self.faults.append(Fault(kind, path, times))

    def enforce_group_limit(self, count: int = 20, window: float = 60.0, block: float = 600.0) -> None:
        """More than `count` messages to one group in `window` s: refused, and the group blocked `block` s."""
        self.group_limit = (count, window, block)

    def expire_tokens(self) -> None:
        with self._lock:
            self.tokens.clear()

    def add_department(self, dept_id: int, name: str, parent: int, managers: list[str] | None = None) -> None:
        self.departments[dept_id] = {"dept_id": dept_id, "name": name, "parent_id": parent,
                                     "dept_manager_userid_list": managers or []}

    def add_user(self, userid: str, name: str, depts: list[int], manager: str = "", active: bool = True) -> None:
        self.users[userid] = {"userid": userid, "unionid": "u" + userid, "name": name, "dept_id_list": depts,
                              "manager_userid": manager, "active": active, "leader_in_dept": []}

    # --- queries ---------------------------------------------------------------------------------
    def api_calls(self, method: str | None = None, path: str = "") -> list[Call]:
        return [c for c in list(self.calls) if (method is None or c.method == method) and c.path.startswith(path)]

    def sent(self, target: str | None = None) -> list[dict[str, Any]]:
        out = [m for m in self.messages.values() if target is None or m["target"] == target]
        return sorted(out, key=lambda m: m["seq"])

    # --- server ----------------------------------------------------------------------------------
    def app(self) -> web.Application:
        app = web.Application()
        r = app.router
        r.add_post("/v1.0/oauth2/accessToken", self._token)
        r.add_post("/v1.0/gateway/connections/open", self._open)
        r.add_get("/stream", self._stream)
        r.add_post("/v1.0/robot/groupMessages/send", self._group_send)
        r.add_post("/v1.0/robot/oToMessages/batchSend", self._batch_send)
        r.add_post("/v1.0/robot/ding/send", self._ding)
        r.add_post("/v1.0/card/instances/createAndDeliver", self._create_and_deliver)
        r.add_put("/v1.0/card/instances", self._update_card)
        r.add_post("/v1.0/card/callbacks/register", self._register_card_callback)
        r.add_post("/robot/sendBySession", self._session_webhook)
        r.add_post("/media/upload", self._media_upload)
        for path in ("v2/department/listsub", "v2/department/get", "user/listid", "v2/user/get"):
            r.add_post(f"/topapi/{path}", self._topapi)
        return app

    async def start(self) -> str:
        self._runner = web.AppRunner(self.app(), access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        self.url = f"http://127.0.0.1:{port}"
        if self.ping_every:
            self._pinger = asyncio.create_task(self._ping_forever())
        return self.url

    async def _ping_forever(self) -> None:
        while True:
            await asyncio.sleep(self.ping_every)
            for ws in self.live():
                frame = {"specVersion": "1.0", "type": "SYSTEM", "headers": {
                    "topic": "ping", "messageId": f"ping-{next(self._ids)}", "contentType": "application/json",
                    "time": str(int(time.time() * 1000))}, "data": json.dumps({"opaque": f"o-{next(self._ids)}"})}
                with contextlib.suppress(ConnectionError, RuntimeError):
                    await ws.send_str(json.dumps(frame))

    def kill(self) -> web.WebSocketResponse:
        """The newest connection dies while its socket stays open (a half-open TCP connection, a stuck
        gateway): no frames, no pongs to the client's pings."""
        ws = self.live()[-1]
        ws.dead = True  # type: ignore[attr-defined]
        return ws

    async def close(self) -> None:
        if self._pinger is not None:
            self._pinger.cancel()
        for ws in list(self.connections):
            await ws.close()
        if self._runner is not None:
            await self._runner.cleanup()

    # --- helpers ---------------------------------------------------------------------------------
    async def _record(self, request: web.Request) -> Call:
        raw = await request.read()
        try:
            body = json.loads(raw) if raw else None
        except ValueError:
            body = raw.decode(errors="replace")
        token = request.headers.get("x-acs-dingtalk-access-token", "") or request.query.get("access_token", "")
        call = Call(request.method, request.path, dict(request.query), body, token, at=self.now())
        self.calls.append(call)
        return call

    def _error(self, call: Call, status: int, code: str, message: str) -> web.Response:
        call.status, call.code = status, code
        return web.json_response({"code": code, "message": message, "requestid": f"req-{next(self._ids)}"},
                                 status=status)

    def _ok(self, call: Call, body: dict[str, Any]) -> web.Response:
        return web.json_response(body)

    def _fault(self, call: Call) -> web.Response | None:
        with self._lock:
            for fault in self.faults:
                if fault.times > 0 and call.path.startswith(fault.path):
                    fault.times -= 1
                    break
            else:
                return None
        status, code, message = FAULTS[fault.kind]
        if fault.kind == "token_invalid":
            self.expire_tokens()
        if not code:  # a body of its own, as the platform sends it
            call.status = status
            return web.Response(status=status, text=message, content_type="text/html" if "<" in message
                                else "application/json")
        return self._error(call, status, code, message)

    async def _guard(self, request: web.Request) -> tuple[Call, web.Response | None]:
        call = await self._record(request)
        if call.token not in self.tokens:
            if call.path.startswith("/topapi/"):
                call.code = "88"
                return call, web.json_response({"errcode": 88, "errmsg": "不合法的access_token"})
            return call, self._error(call, 401 if not call.token else 400, "InvalidAuthentication",
                                     "不合法的access_token")
        return call, self._fault(call)

    def _over_group_limit(self, conversation: str) -> bool:
        if self.group_limit is None:
            return False
        count, window, block = self.group_limit
        now = self.now()
        with self._lock:
            if self._blocked.get(conversation, 0.0) > now:
                self.limit_refusals.append((conversation, now))
                return True
            arrivals = self._arrivals.setdefault(conversation, deque())
            while arrivals and arrivals[0] <= now - window:
                arrivals.popleft()
            arrivals.append(now)
            if len(arrivals) > count:
                self._blocked[conversation] = now + block
                self.limit_refusals.append((conversation, now))
                return True
        return False

    def _new_message(self, kind: str, target: str, content: Any, key: str = "") -> str:
        message_id = key or f"pqk-{next(self._ids)}"
        self.messages[message_id] = {"id": message_id, "seq": len(self.messages), "kind": kind, "target": target,
                                     "content": content, "updates": [], "at": self.now()}
        return message_id

    # --- endpoints -------------------------------------------------------------------------------
    async def _token(self, request: web.Request) -> web.Response:
        call = await self._record(request)
        body = call.body if isinstance(call.body, dict) else {}
        if body.get("appKey") != self.client_id or body.get("appSecret") != self.client_secret:
            return self._error(call, 400, "invalidClientIdOrSecret", "无效的clientId或者clientSecret")
        token = f"fake-token-{next(self._ids)}"
        self.tokens.add(token)
        return self._ok(call, {"accessToken": token, "expireIn": self.token_expire})

    async def _group_send(self, request: web.Request) -> web.Response:
        call, denied = await self._guard(request)
        if denied is not None:
            return denied
        body = call.body if isinstance(call.body, dict) else {}
        if body.get("robotCode") != self.client_id or not body.get("openConversationId") or \
                body.get("msgKey") not in ROBOT_MSG_KEYS or not isinstance(body.get("msgParam"), str):
            return self._error(call, 400, "param.invalid", "参数错误")
        if (refused := self._bad_media(call, body)) is not None:
            return refused
        if body["openConversationId"] in self.disbanded:
            return self._error(call, 400, "group.disbanded", "群已解散")
        if self._over_group_limit(body["openConversationId"]):
            return self._error(call, 403, "Forbidden.AccessDenied.RobotSendTooFast", "机器人发送消息过于频繁")
        key = self._new_message("text", body["openConversationId"], json.loads(body["msgParam"]))
        return self._ok(call, {"processQueryKey": key})

    async def _batch_send(self, request: web.Request) -> web.Response:
        call, denied = await self._guard(request)
        if denied is not None:
            return denied
        body = call.body if isinstance(call.body, dict) else {}
        users = body.get("userIds")
        if body.get("robotCode") != self.client_id or not isinstance(users, list) or not 1 <= len(users) <= 20:
            return self._error(call, 400, "param.invalid", "userIds 最多20个")
        if body.get("msgKey") not in ROBOT_MSG_KEYS or not isinstance(body.get("msgParam"), str):
            return self._error(call, 400, "param.invalid", "参数错误")
        if (refused := self._bad_media(call, body)) is not None:
            return refused
        invalid = [u for u in users if self.unreached.get(u) == "invalid"]
        flow = [u for u in users if self.unreached.get(u) == "flow"]
        filtered = [u for u in users if self.unreached.get(u) == "filtered"]
        key = ""
        for user in users:
            if user not in invalid and user not in flow and user not in filtered:
                key = self._new_message("text", user, json.loads(body["msgParam"]))
        return self._ok(call, {"processQueryKey": key or f"pqk-{next(self._ids)}", "invalidStaffIdList": invalid,
                               "flowControlledStaffIdList": flow, "filteredStaffIdList": filtered})

    def _bad_media(self, call: Call, body: dict[str, Any]) -> web.Response | None:
        """sampleImageMsg needs a photoURL (an uploaded image's media_id, or a URL); sampleFile an uploaded
        file's mediaId with its fileName and fileType."""
        param = json.loads(body["msgParam"])
        if body["msgKey"] == "sampleImageMsg":
            photo = param.get("photoURL", "")
            known = self.media.get(photo, {}).get("type") == "image"
            if not (known or str(photo).startswith(("http://", "https://"))):
                return self._error(call, 400, "param.invalid", "photoURL 不正确")
        if body["msgKey"] == "sampleFile":
            media = self.media.get(param.get("mediaId", ""))
            if media is None or media["type"] != "file" or not param.get("fileName") or not param.get("fileType"):
                return self._error(call, 400, "param.invalid", "mediaId 不正确")
        return None

    async def _media_upload(self, request: web.Request) -> web.Response:
        """上传媒体文件 (oapi): ?access_token=&type=image|file, multipart `media`. An image must be a real PNG
        or JPEG, an xlsx a real workbook."""
        token, kind = request.query.get("access_token", ""), request.query.get("type", "")
        fields: dict[str, Any] = {}
        if request.content_type.startswith("multipart/"):
            reader = await request.multipart()
            while (part := await reader.next()) is not None:
                fields[part.name or ""] = (part.filename, await part.read())  # type: ignore[union-attr]
        call = Call(request.method, request.path, dict(request.query), {k: len(v[1]) for k, v in fields.items()},
                    token, at=self.now())
        self.calls.append(call)
        if token not in self.tokens:
            call.code = "40014"
            return web.json_response({"errcode": 40014, "errmsg": "不合法的access_token"})
        if (fault := self._fault(call)) is not None:
            return fault
        if kind not in ("image", "voice", "video", "file") or "media" not in fields or not fields["media"][0]:
            return web.json_response({"errcode": 40004, "errmsg": "不合法的媒体文件类型"})
        name, data = fields["media"]
        entry: dict[str, Any] = {"type": kind, "name": name, "data": bytes(data)}
        if kind == "image":
            entry["size"] = png_size(bytes(data))
            if entry["size"] is None and not data.startswith(b"\xff\xd8"):
                return web.json_response({"errcode": 40005, "errmsg": "不合法的文件类型"})
        elif name.endswith(".xlsx") and xlsx_sheets(bytes(data)) is None:
            return web.json_response({"errcode": 40005, "errmsg": "不合法的文件类型"})
        if len(data) > 20 * 1024 * 1024:
            return web.json_response({"errcode": 40006, "errmsg": "不合法的文件大小"})
        media_id = f"@lADPfake{next(self._ids)}"
        self.media[media_id] = entry
        return web.json_response({"errcode": 0, "errmsg": "ok", "type": kind, "media_id": media_id,
                                  "created_at": int(time.time() * 1000)})

    async def _ding(self, request: web.Request) -> web.Response:
        call, denied = await self._guard(request)
        if denied is not None:
            return denied
        body = call.body if isinstance(call.body, dict) else {}
        if body.get("remindType") not in (1, 2, 3) or not body.get("receiverUserIdList") or not body.get("content"):
            return self._error(call, 400, "param.invalid", "参数错误")
        self.dings.append(body)
        return self._ok(call, {"openDingId": f"ding-{next(self._ids)}"})

    async def _create_and_deliver(self, request: web.Request) -> web.Response:
        call, denied = await self._guard(request)
        if denied is not None:
            return denied
        body = call.body if isinstance(call.body, dict) else {}
        track, space = body.get("outTrackId"), str(body.get("openSpaceId") or "")
        params = (body.get("cardData") or {}).get("cardParamMap")
        if not track or not body.get("cardTemplateId") or body.get("callbackType") not in ("STREAM", "HTTP") or \
                not isinstance(params, dict) or not all(isinstance(v, str) for v in params.values()):
            return self._error(call, 400, "param.invalid", "参数错误")
        if body.get("callbackType") == "HTTP" and not body.get("callbackRouteKey"):
            return self._error(call, 400, "param.invalid", "callbackRouteKey 不能为空")
        if any(len(k.encode()) > 100 or len(v.encode()) > 1024 for k, v in params.items()):
            return self._error(call, 400, "param.invalid", "cardParamMap 超长")
        if space.startswith("dtv1.card//IM_GROUP."):
            kind, target = "IM_GROUP", space.removeprefix("dtv1.card//IM_GROUP.")
            deliver = body.get("imGroupOpenDeliverModel") or {}
            if deliver.get("robotCode") != self.client_id:
                return self._error(call, 400, "param.invalid", "robotCode 不正确")
        elif space.startswith("dtv1.card//IM_ROBOT."):
            kind, target = "IM_ROBOT", space.removeprefix("dtv1.card//IM_ROBOT.")
            deliver = body.get("imRobotOpenDeliverModel") or {}
            if deliver.get("spaceType") != "IM_ROBOT":
                return self._error(call, 400, "param.invalid", "spaceType 不正确")
        else:
            return self._error(call, 400, "param.invalid", "openSpaceId 不正确")
        if track in self.cards:
            return self._error(call, 400, "param.cardAlreadyExist", "卡片已存在")
        if kind == "IM_GROUP" and self._over_group_limit(target):
            return self._error(call, 403, "Forbidden.AccessDenied.RobotSendTooFast", "机器人发送消息过于频繁")
        delivered = target not in self.undelivered and target not in self.disbanded
        self.cards[track] = {"space": space, "params": dict(params), "at_users": deliver.get("atUserIds") or {},
                             "callback": body.get("callbackType"), "route_key": body.get("callbackRouteKey", ""),
                             "delivered": delivered}
        if delivered:
            self._new_message("card", target, {"cardParamMap": params, "atUserIds": deliver.get("atUserIds") or {}},
                              key=track)
        return self._ok(call, {"success": True, "result": {"outTrackId": track, "deliverResults": [
            {"spaceType": kind, "spaceId": target, "success": delivered,
             "errorMsg": "" if delivered else "机器人不在群内", "carrierId": f"carrier-{next(self._ids)}"}]}})

    async def _update_card(self, request: web.Request) -> web.Response:
        call, denied = await self._guard(request)
        if denied is not None:
            return denied
        body = call.body if isinstance(call.body, dict) else {}
        track = body.get("outTrackId")
        params = (body.get("cardData") or {}).get("cardParamMap")
        if track not in self.cards:
            return self._error(call, 400, "param.cardNotExist", "卡片不存在")
        if not isinstance(params, dict):
            return self._error(call, 400, "param.invalid", "参数错误")
        self.cards[track]["params"].update(params)
        if track in self.messages:
            self.messages[track]["updates"].append(dict(params))
        return self._ok(call, {"success": True, "result": True})

    async def _register_card_callback(self, request: web.Request) -> web.Response:
        """注册卡片回调地址: forceUpdate true overwrites the route's URL and secret, false only inserts."""
        call, denied = await self._guard(request)
        if denied is not None:
            return denied
        body = call.body if isinstance(call.body, dict) else {}
        key, url, secret = body.get("callbackRouteKey"), body.get("callbackUrl"), body.get("apiSecret", "")
        if not (isinstance(key, str) and key and isinstance(url, str) and url.startswith(("http://", "https://"))
                and isinstance(secret, str)):
            return self._error(call, 400, "param.invalid", "参数错误")
        if body.get("forceUpdate") is True or key not in self.card_routes:
            self.card_routes[key] = {"callbackUrl": url, "apiSecret": secret}
        route = self.card_routes[key]
        return self._ok(call, {"success": True, "result": {"callbackUrl": route["callbackUrl"],
                                                           "apiSecret": route["apiSecret"]}})

    async def http_card_callback(self, data: dict[str, Any], *, wait: float = 5.0) -> tuple[int, Any]:
        """A tap on an HTTP-mode card, posted as DingTalk does: to the URL registered for the card's
        `callbackRouteKey` (waiting up to `wait` s for the registration), signed with its apiSecret."""
        card = self.cards[data["outTrackId"]]
        assert card["callback"] == "HTTP", "a STREAM card's taps go through the stream"
        deadline = time.monotonic() + wait
        while (route := self.card_routes.get(card["route_key"])) is None:
            assert time.monotonic() < deadline, f"no callback URL registered for route {card['route_key']!r}"
            await asyncio.sleep(0.02)
        headers = {"Content-Type": "application/json"}
        if route["apiSecret"]:
            timestamp = str(int(self.wall() * 1000))
            digest = hmac.new(route["apiSecret"].encode(), timestamp.encode(), hashlib.sha256).digest()
            headers |= {"x-ddpaas-signature-timestamp": timestamp,
                        "x-ddpaas-signature": base64.b64encode(digest).decode()}
        async with aiohttp.ClientSession() as session, session.post(
                route["callbackUrl"], data=json.dumps(data, ensure_ascii=False).encode(), headers=headers,
                timeout=aiohttp.ClientTimeout(total=10)) as response:
            return response.status, await response.json(content_type=None)

    async def _session_webhook(self, request: web.Request) -> web.Response:
        call = await self._record(request)
        body = call.body if isinstance(call.body, dict) else {}
        session = call.query.get("session", "")
        if not session:
            return web.json_response({"errcode": 300001, "errmsg": "session 不存在"})
        self.webhook_posts.append({"session": session, **body})
        return web.json_response({"errcode": 0, "errmsg": "ok"})

    async def _topapi(self, request: web.Request) -> web.Response:
        call, denied = await self._guard(request)
        if denied is not None:
            return denied
        body = call.body if isinstance(call.body, dict) else {}
        if not self.topapi_permitted:  # 全局错误码: 88 鉴权异常, the reason in sub_code
            return web.json_response({"errcode": 88, "errmsg": "鉴权异常", "sub_code": "60011",
                                      "sub_msg": "没有调用该接口的权限"})
        name = call.path.removeprefix("/topapi/")
        if name == "v2/department/listsub":  # the next level down only, never the department itself; 1 by default
            parent = body.get("dept_id", 1)
            children = [{"dept_id": d["dept_id"], "name": d["name"], "parent_id": d["parent_id"]}
                        for d in self.departments.values() if d["parent_id"] == parent]
            return web.json_response({"errcode": 0, "errmsg": "ok", "result": children, "request_id": "r"})
        if name == "v2/department/get":  # {dept_id (required, a number), language}: result {dept_id, name, parent_id, …}
            if not isinstance(body.get("dept_id"), int):
                return web.json_response({"errcode": 400002, "errmsg": "无效的参数"})
            dept = self.departments.get(body.get("dept_id"))
            if dept is None:
                return web.json_response({"errcode": 60003, "errmsg": "部门不存在"})
            return web.json_response({"errcode": 0, "errmsg": "ok", "result": dept, "request_id": "r"})
        if name == "user/listid":
            ids = [u["userid"] for u in self.users.values() if body.get("dept_id") in u["dept_id_list"]]
            return web.json_response({"errcode": 0, "errmsg": "ok", "result": {"userid_list": ids}, "request_id": "r"})
        user = self.users.get(str(body.get("userid")))
        if user is None:
            return web.json_response({"errcode": 60121, "errmsg": "找不到该用户"})
        return web.json_response({"errcode": 0, "errmsg": "ok", "result": user, "request_id": "r"})

    # --- the Stream gateway ----------------------------------------------------------------------
    async def _open(self, request: web.Request) -> web.Response:
        call = await self._record(request)
        if self.open_delay:
            await asyncio.sleep(self.open_delay)
        body = call.body if isinstance(call.body, dict) else {}
        if body.get("clientId") != self.client_id or body.get("clientSecret") != self.client_secret:
            return self._error(call, 401, "Unauthorized", "clientId 或 clientSecret 不正确")
        topics = {(s.get("type"), s.get("topic")) for s in body.get("subscriptions") or [] if isinstance(s, dict)}
        if not topics:
            return self._error(call, 400, "param.invalid", "subscriptions 为空")
        self.open_calls += 1
        ticket = f"ticket-{self.open_calls}"
        return self._ok(call, {"endpoint": self.url.replace("http://", "ws://") + "/stream", "ticket": ticket})

    async def _stream(self, request: web.Request) -> web.WebSocketResponse:
        ws = web.WebSocketResponse(autoping=False)  # pongs answered below, so that a dead connection gives none
        await ws.prepare(request)
        ticket = request.query.get("ticket", "")
        number = int(ticket.removeprefix("ticket-")) if ticket.startswith("ticket-") else 0
        if not number:
            await ws.close(code=4001, message=b"bad ticket")
            return ws
        ws.dead = number <= self.dead_first  # type: ignore[attr-defined]
        ws.pings = 0  # type: ignore[attr-defined]
        ws.acks = []  # type: ignore[attr-defined]
        self.connections.append(ws)
        self.connected.set()
        async for msg in ws:
            if msg.type == WSMsgType.PING:
                ws.pings += 1  # type: ignore[attr-defined]
                if not ws.dead:  # type: ignore[attr-defined]
                    await ws.pong(msg.data)
                continue
            if msg.type != WSMsgType.TEXT or ws.dead:  # type: ignore[attr-defined]
                continue
            ack = json.loads(msg.data)
            self.acks.append(ack)
            ws.acks.append(ack)  # type: ignore[attr-defined]
            waiter = self._ack_waiters.pop(str((ack.get("headers") or {}).get("messageId", "")), None)
            if waiter is not None and not waiter.done():
                waiter.set_result(ack)
        if ws in self.connections:
            self.connections.remove(ws)
        return ws

    def live(self) -> list[web.WebSocketResponse]:
        return [ws for ws in self.connections if not ws.closed and not getattr(ws, "dead", False)]

    async def wait_connected(self, count: int = 1, timeout: float = 10.0) -> None:
        deadline = time.monotonic() + timeout
        while len(self.live()) < count:
            if time.monotonic() > deadline:
                raise TimeoutError(f"{len(self.live())} live stream connection(s), wanted {count}")
            await asyncio.sleep(0.02)

    async def push(self, frame_type: str, topic: str, data: dict[str, Any] | str, *, message_id: str = "",
                   ws: web.WebSocketResponse | None = None, timeout: float = 5.0) -> dict[str, Any]:
        """Send one frame on a live connection (the newest, or `ws`); the client's ack."""
        ws = ws or self.live()[-1]
        message_id = message_id or f"frame-{next(self._ids)}"
        frame = {"specVersion": "1.0", "type": frame_type,
                 "headers": {"appId": self.client_id, "connectionId": "conn-1", "contentType": "application/json",
                             "messageId": message_id, "time": str(int(time.time() * 1000)), "topic": topic},
                 "data": data if isinstance(data, str) else json.dumps(data, ensure_ascii=False)}
        waiter: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()
        self._ack_waiters[message_id] = waiter
        await ws.send_str(json.dumps(frame, ensure_ascii=False))
        if topic == ROBOT_TOPIC and self.redeliver_after is not None:
            try:
                return await asyncio.wait_for(asyncio.shield(waiter), self.redeliver_after)
            except TimeoutError:  # the opt-in: the un-acked frame sent again
                await ws.send_str(json.dumps(frame, ensure_ascii=False))
        return await asyncio.wait_for(waiter, timeout)

    async def robot_message(self, data: dict[str, Any], **kw: Any) -> dict[str, Any]:
        return await self.push("CALLBACK", ROBOT_TOPIC, data, **kw)

    async def card_callback(self, data: dict[str, Any], **kw: Any) -> dict[str, Any]:
        """A card tap; the ack's `response` (the card's new data), decoded."""
        ack = await self.push("CALLBACK", CARD_TOPIC, data, **kw)
        return json.loads(ack["data"]).get("response") or {}

    async def ping(self, **kw: Any) -> dict[str, Any]:
        return await self.push("SYSTEM", "ping", {"opaque": f"opaque-{next(self._ids)}"}, **kw)

    async def disconnect(self, ws: web.WebSocketResponse | None = None) -> None:
        """DingTalk's `disconnect`: it stops delivering, and closes the socket 10 s later."""
        ws = ws or self.live()[-1]
        frame = {"specVersion": "1.0", "type": "SYSTEM", "headers": {"topic": "disconnect", "messageId":
                 f"frame-{next(self._ids)}", "contentType": "application/json", "time": str(int(time.time() * 1000))},
                 "data": json.dumps({"reason": "server restart"})}
        await ws.send_str(json.dumps(frame))


class ThreadedFake:
    """A FakeDingTalk served from its own thread and loop (for tests that drive `collabbot serve` processes)."""

    def __init__(self, **kwargs: Any) -> None:
        self.fake = FakeDingTalk(**kwargs)
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)

    def __enter__(self) -> ThreadedFake:
        self._thread.start()
        self.run(self.fake.start())
        return self

    def __exit__(self, *exc: object) -> None:
        self.run(self.fake.close())
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(10)

    def run(self, coro: Any, timeout: float = 30.0) -> Any:
        return asyncio.run_coroutine_threadsafe(coro, self._loop).result(timeout)

    def call(self, fn: Callable[[], Any]) -> Any:
        async def run() -> Any:
            return fn()
        return self.run(run())
