"""The self-built app's REST API (qyapi.weixin.qq.com/cgi-bin) on the kit's `ApiClient`.

wechatpy's `WeChatClient` is not used here: it hard-codes the API host (tests and private
deployments need a configurable base URL), is synchronous (requests), and knows neither
`template_card` nor `update_template_card`. The calls are few; this is all of them.

Every answer is `{errcode, errmsg, …}`, mostly with HTTP 200:
* 42001 (token expired) and 40014 (token invalid): fetch a new token once and retry (the kit's
  single-flight refresh);
* 45009 (API frequency) and 45033 (concurrency): throttles, waited out without spending an attempt;
* -1 (system busy) and HTTP 5xx: transient; everything else is permanent.
"""

from __future__ import annotations

import asyncio
import json
import logging
from typing import Any

import aiohttp

from collabbot.adapters.kit.client import ApiClient, ApiError
from collabbot.adapters.wecom.config import WecomSettings

log = logging.getLogger(__name__)

TOKEN_INVALID = (42001, 40014)
THROTTLES = (45009, 45033)
BUSY = (-1,)
NOT_IN_GROUP = (93008,)  # 全局错误码: "不在群里": the robot was removed from the group (or it was dissolved)
THROTTLE_WAIT = 60.0  # WeCom gives no reset time; its windows are a minute
# A template card's task_id is unique per app / robot, and WeCom refuses one used before. Ours are made from
# the row's installation-unique idempotency key, so this answer to a send means an earlier attempt of the
# same row got through (its answer was lost, or its process died before recording it). WeCom answers 42014
# ("taskid has existed or empty or exceed max len"); ours are never empty or too long (`task_id_of`), so
# 42014 can only mean "used before". Matched by code, as WeCom asks of its callers (全局错误码).
TASK_ID_EXISTS = 42014
DUPLICATE_WINDOW = 300  # seconds: a crash's resend comes within a claim lease (60 s) and a restart
MEMBER_READS_AT_ONCE = 4  # user/list calls in flight while the directory is read


def task_id_taken(exc: WecomApiError) -> bool:
    """Did WeCom refuse a card because its task_id was used before?"""
    return str(exc.code) == str(TASK_ID_EXISTS)


class WecomApiError(ApiError):
    pass


class WecomClient(ApiClient):
    platform = "wecom"
    error = WecomApiError

    def __init__(self, settings: WecomSettings) -> None:
        super().__init__(settings.base_url, settings.request_timeout_seconds)
        self.settings = settings

    # --- answers --------------------------------------------------------------------------------
    def answer(self, method: str, path: str, status: int, text: str) -> dict[str, Any]:
        """A WeCom answer read and classified: the body, or WecomApiError."""
        return self._read(method, path, status, text)

    def _read(self, method: str, path: str, status: int, text: str) -> dict[str, Any]:
        if status >= 500 or status == 429:
            raise WecomApiError(f"{method} {path}: HTTP {status}", status=status, transient=True,
                                throttle=status == 429, retry_after=THROTTLE_WAIT if status == 429 else None)
        try:
            body = json.loads(text)
        except ValueError:
            raise WecomApiError(f"{method} {path}: HTTP {status}, not JSON", status=status,
                                transient=status >= 500) from None
        if not isinstance(body, dict):
            raise WecomApiError(f"{method} {path}: not an object", status=status)
        code = body.get("errcode", 0)
        if code not in (0, None):
            code = int(code) if isinstance(code, int | str) and str(code).lstrip("-").isdigit() else -2
            message = f"{method} {path}: errcode {code} {str(body.get('errmsg', ''))[:200]}"
            throttle = code in THROTTLES
            raise WecomApiError(message, code=code, status=status, throttle=throttle, transient=code in BUSY,
                                retry_after=THROTTLE_WAIT if throttle else None)
        if status >= 400:
            raise WecomApiError(f"{method} {path}: HTTP {status}", status=status)
        return body

    async def fetch_token(self) -> tuple[str, float]:
        status, _, text = await self.exchange("GET", "/cgi-bin/gettoken", params={
            "corpid": self.settings.corp_id, "corpsecret": self.settings.app_secret})
        try:
            body = self._read("GET", "/cgi-bin/gettoken", status, text)
        except WecomApiError as exc:
            if exc.code in TOKEN_INVALID:  # never loop on the token endpoint itself
                raise WecomApiError(str(exc), code=exc.code, status=exc.status) from None
            raise
        token = body.get("access_token")
        if not isinstance(token, str) or not token:
            raise WecomApiError("gettoken answer has no access_token", transient=True)
        expires = body.get("expires_in", 7200)
        return token, float(expires) if isinstance(expires, int | float) else 7200.0

    def token_invalid(self, exc: ApiError) -> bool:
        return exc.code in TOKEN_INVALID

    async def request(self, method: str, path: str, token: str, **kwargs: Any) -> dict[str, Any]:
        params = dict(kwargs.pop("params", None) or {}, access_token=token)
        status, _, text = await self.exchange(method, path, params=params, **kwargs)
        return self._read(method, path, status, text)

    # --- messages -------------------------------------------------------------------------------
    async def send(self, touser: str, msgtype: str, content: dict[str, Any]) -> dict[str, Any]:
        """POST /cgi-bin/message/send to one member. `enable_id_trans` stays off (user text could
        otherwise turn into ids), `enable_duplicate_check` on: WeCom drops a repeat of the same
        content within the interval (a resend after a crash). The interval is kept short (DUPLICATE_WINDOW):
        two different rows with the same words to one person later than that are both delivered."""
        body = {"touser": touser, "msgtype": msgtype, "agentid": self.settings.agent_id, msgtype: content,
                "enable_id_trans": 0, "enable_duplicate_check": 1, "duplicate_check_interval": DUPLICATE_WINDOW}
        answer = await self.call("POST", "/cgi-bin/message/send", json=body)
        if answer.get("invaliduser"):  # the member is not (or no longer) in the app's reach
            raise WecomApiError(f"message/send: {touser} not reached ({answer.get('invaliduser')})")
        return answer

    async def update_template_card(self, response_code: str, userid: str, card: dict[str, Any]) -> None:
        """POST /cgi-bin/message/update_template_card: the clicked card replaced (its response_code:
        72 h, usable once)."""
        await self.call("POST", "/cgi-bin/message/update_template_card", json={
            "userids": [userid], "agentid": self.settings.agent_id, "response_code": response_code,
            "template_card": card})

    async def upload_image(self, image: bytes, filename: str = "chart.png") -> str:
        """POST /cgi-bin/media/upload?type=image (multipart `media`): a media_id valid three days."""
        def form() -> aiohttp.FormData:
            f = aiohttp.FormData()
            f.add_field("media", image, filename=filename, content_type="application/octet-stream")
            return f

        answer = await self.call("POST", "/cgi-bin/media/upload", params={"type": "image"}, data=form)
        media_id = answer.get("media_id")
        if not isinstance(media_id, str) or not media_id:
            raise WecomApiError("upload answer has no media_id")
        return media_id

    # --- contacts -------------------------------------------------------------------------------
    async def departments(self, root: int) -> list[dict[str, Any]]:
        """GET /cgi-bin/department/list?id=: the root and everything below it, with department_leader."""
        answer = await self.call("GET", "/cgi-bin/department/list", params={"id": str(root)})
        return [d for d in answer.get("department") or [] if isinstance(d, dict)]

    async def users(self, departments: list[dict[str, Any]]) -> list[dict[str, Any]]:
        """The members of these departments (as `departments` lists them), each once, with their department
        and direct_leader. GET /cgi-bin/user/list?department_id= answers a department's own members: WeCom's
        current documentation has no fetch_child and says to read a subtree department by department."""
        ids = [d["id"] for d in departments if isinstance(d.get("id"), int)]
        seen: dict[str, dict[str, Any]] = {}
        for start in range(0, len(ids), MEMBER_READS_AT_ONCE):
            answers = await asyncio.gather(*(self.call("GET", "/cgi-bin/user/list", params={"department_id": str(i)})
                                             for i in ids[start:start + MEMBER_READS_AT_ONCE]))
            for answer in answers:
                for user in answer.get("userlist") or []:
                    if isinstance(user, dict) and isinstance(user.get("userid"), str):
                        seen.setdefault(user["userid"], user)
        return list(seen.values())
