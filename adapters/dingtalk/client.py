"""DingTalk's server API over aiohttp, on the kit's `ApiClient`: token, robot sends, cards, DING, contacts.

* token: `POST /v1.0/oauth2/accessToken` {appKey, appSecret} → {accessToken, expireIn} (7200 s),
  sent as header `x-acs-dingtalk-access-token` to the v1.0 API (api.dingtalk.com) and as the
  `access_token` query parameter to the older topapi (oapi.dingtalk.com). The kit caches it
  single-flight, refreshes it 10 minutes before expiry and once when refused.
* v1.0 errors: HTTP 4xx/5xx with {code, message, requestid}. `InvalidAuthentication` (400/401) is a
  refused token; `Forbidden.AccessDenied.QpsLimitForApi` (403) and any other `…QpsLimit…` /
  `Throttling` code are throttles; 5xx is transient; the rest is permanent.
* topapi errors: HTTP 200 with {errcode, errmsg}; 88, 40014 and 42001 are a refused token; 90002,
  90006 and 90018 are throttles (frequency limits); -1 (busy) is transient.
* Answers that wait longer (DingTalk's API throttling appendix): an IP over its limit is banned for 5
  minutes with a body of its own (`{"status": 1111, "wait": 5, "punish": "deny", …}`, no error code,
  possibly HTML); the organisation's monthly call quota (90020, `…ApiCountLimitForOrg`) lasts until the
  admin raises it, which takes effect at once, so rows wait an hour at a time instead of dying; a robot
  sending too fast (130101, `…TooFast`) is blocked 10 minutes. An answer that is not JSON is transient.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import Callable
from typing import Any

import aiohttp

from collabbot.adapters.dingtalk.config import DingTalkSettings
from collabbot.adapters.kit.client import ApiClient, ApiError

log = logging.getLogger(__name__)

TOKEN_PATH = "/v1.0/oauth2/accessToken"
TOKEN_HEADER = "x-acs-dingtalk-access-token"
TOKEN_INVALID = {"InvalidAuthentication", "88", "40014", "42001"}
AUTH_FAILED = "88"  # topapi's 鉴权异常; only with a token's sub_code (or words) is it the token
# robot group send: the group is gone or the robot no longer in it (机器人发送群聊消息's error table)
GROUP_GONE = {"group.disbanded", "invalid.openConversationId"}
THROTTLE_CODES = {"90002", "90006", "90018"}
QPS_RETRY_AFTER = 1.0
QUOTA_CODES = {"90020", "Forbidden.AccessDenied.ApiCountLimitForOrg"}
QUOTA_RETRY_AFTER = 3600.0
TOO_FAST_CODES = {"130101"}
TOO_FAST_RETRY_AFTER = 600.0
IP_BAN_RETRY_AFTER = 300.0


class DingTalkApiError(ApiError):
    """A failed DingTalk call."""


def _throttle(code: str) -> bool:
    return (code in THROTTLE_CODES or code in QUOTA_CODES or code in TOO_FAST_CODES or "QpsLimit" in code
            or "Throttling" in code or "FlowControl" in code or "TooFast" in code)


def _retry_after(code: str) -> float:
    """How long a throttle with `code` waits: a QPS limit a second, a robot's block ten minutes, the
    monthly quota an hour (logged: only the admin can lift it)."""
    if code in QUOTA_CODES:
        log.error("dingtalk: the organisation's monthly API call quota is used up (%s); messages wait until it "
                  "is raised (DingTalk's admin console), retried hourly", code)
        return QUOTA_RETRY_AFTER
    if code in TOO_FAST_CODES or "TooFast" in code:
        return TOO_FAST_RETRY_AFTER
    return QPS_RETRY_AFTER


def _banned(body: dict[str, Any]) -> bool:
    """DingTalk's answer to an IP over its limit (no error code; HTTP status undocumented)."""
    return body.get("punish") == "deny" or body.get("status") == 1111


class DingTalkClient(ApiClient):
    platform = "dingtalk"
    error = DingTalkApiError
    refresh_margin = 600.0

    def __init__(self, settings: DingTalkSettings, *, monotonic: Callable[[], float] = time.monotonic) -> None:
        super().__init__(settings.base_url, settings.request_timeout_seconds, monotonic=monotonic)
        self.settings = settings

    # --- one exchange ---------------------------------------------------------------------------
    async def _send(self, method: str, url: str, **kwargs: Any) -> tuple[int, Any]:
        try:
            async with self.session().request(method, url, **kwargs) as resp:
                text = await resp.text()
                status = resp.status
        except (TimeoutError, aiohttp.ClientError) as exc:
            raise DingTalkApiError(f"{method} {url}: {exc!r}", transient=True) from exc
        try:
            body = json.loads(text) if text else {}
        except ValueError:
            body = None
        return status, body

    async def _v1(self, method: str, path: str, token: str | None, **kwargs: Any) -> dict[str, Any]:
        headers = {TOKEN_HEADER: token} if token else {}
        status, body = await self._send(method, self.base_url + path, headers=headers, **kwargs)
        if not isinstance(body, dict):  # a proxy's or the IP ban's page: nothing says the call was made
            raise DingTalkApiError(f"{method} {path}: HTTP {status}, not JSON", status=status, transient=True,
                                   throttle=status == 429)
        if _banned(body):
            log.warning("dingtalk: this address is banned for exceeding DingTalk's per-IP limit: %s", str(body)[:200])
            raise DingTalkApiError(f"{method} {path}: HTTP {status}, IP banned", status=status, throttle=True,
                                   retry_after=IP_BAN_RETRY_AFTER)
        if status < 400:
            return body
        code = str(body.get("code") or status)
        message = f"{method} {path}: HTTP {status}, {code}: {str(body.get('message', ''))[:200]}"
        if status == 429 or _throttle(code):
            raise DingTalkApiError(message, code=code, status=status, throttle=True, retry_after=_retry_after(code))
        raise DingTalkApiError(message, code=code, status=status, transient=status >= 500,
                               unreachable=code in GROUP_GONE)

    async def _topapi(self, path: str, token: str, body: dict[str, Any]) -> dict[str, Any]:
        status, answer = await self._send("POST", self.settings.oapi_url + path, params={"access_token": token},
                                          json=body)
        if not isinstance(answer, dict):
            raise DingTalkApiError(f"POST {path}: HTTP {status}, not JSON", status=status, transient=True)
        if _banned(answer):
            raise DingTalkApiError(f"POST {path}: HTTP {status}, IP banned", status=status, throttle=True,
                                   retry_after=IP_BAN_RETRY_AFTER)
        code = answer.get("errcode", 0)
        if status < 400 and code == 0:
            return answer
        code = str(code)
        message = f"POST {path}: HTTP {status}, errcode {code}: {str(answer.get('errmsg', ''))[:200]}"
        if code == AUTH_FAILED:  # 鉴权异常: what failed is in sub_code, a refused token only one cause of many
            sub, sub_msg = str(answer.get("sub_code") or ""), str(answer.get("sub_msg") or "")
            message += f" (sub_code {sub}: {sub_msg[:200]})"
            if sub not in TOKEN_INVALID and "token" not in f"{sub_msg} {answer.get('errmsg', '')}".lower():
                code = f"{AUTH_FAILED}/{sub}"  # no permission (60011), say: permanent, and the admin is told which
        if _throttle(code):
            raise DingTalkApiError(message, code=code, status=status, throttle=True, retry_after=_retry_after(code))
        raise DingTalkApiError(message, code=code, status=status, transient=status >= 500 or code == "-1")

    # --- the kit's hooks ------------------------------------------------------------------------
    async def fetch_token(self) -> tuple[str, float]:
        body = await self._v1("POST", TOKEN_PATH, None,
                              json={"appKey": self.settings.client_id, "appSecret": self.settings.client_secret})
        token = body.get("accessToken")
        if not isinstance(token, str) or not token:
            raise DingTalkApiError("token answer has no accessToken", transient=True)
        expire = body.get("expireIn", 7200)
        return token, float(expire) if isinstance(expire, int | float) and not isinstance(expire, bool) else 7200.0

    def token_invalid(self, exc: ApiError) -> bool:
        return str(exc.code) in TOKEN_INVALID

    async def request(self, method: str, path: str, token: str, **kwargs: Any) -> dict[str, Any]:
        if path.startswith("/topapi/"):
            return await self._topapi(path, token, kwargs.get("json") or {})
        return await self._v1(method, path, token, **kwargs)

    # --- the Stream gateway ---------------------------------------------------------------------
    async def open_connection(self, topics: list[tuple[str, str]]) -> tuple[str, str]:
        """POST /v1.0/gateway/connections/open: (endpoint, ticket) for one websocket connection."""
        body = await self._v1("POST", "/v1.0/gateway/connections/open", None, json={
            "clientId": self.settings.client_id, "clientSecret": self.settings.client_secret,
            "subscriptions": [{"type": kind, "topic": topic} for kind, topic in topics],
            "ua": "collabbot", "localIp": ""})
        endpoint, ticket = body.get("endpoint"), body.get("ticket")
        if not isinstance(endpoint, str) or not endpoint or not isinstance(ticket, str) or not ticket:
            raise DingTalkApiError("gateway answer has no endpoint or ticket", transient=True)
        return endpoint, ticket

    # --- robot messages -------------------------------------------------------------------------
    async def group_send(self, conversation_id: str, msg_key: str, msg_param: str) -> str:
        """POST /v1.0/robot/groupMessages/send (cannot @mention anyone); its processQueryKey."""
        answer = await self.call("POST", "/v1.0/robot/groupMessages/send", json={
            "robotCode": self.settings.robot, "openConversationId": conversation_id, "msgKey": msg_key,
            "msgParam": msg_param})
        return str(answer.get("processQueryKey") or "")

    async def batch_send(self, user_ids: list[str], msg_key: str, msg_param: str) -> tuple[str, list[str], list[str]]:
        """POST /v1.0/robot/oToMessages/batchSend (≤ 20 users): (processQueryKey, invalid, flow-controlled)."""
        if not 1 <= len(user_ids) <= 20:
            raise DingTalkApiError(f"batchSend takes 1 to 20 users, not {len(user_ids)}")
        answer = await self.call("POST", "/v1.0/robot/oToMessages/batchSend", json={
            "robotCode": self.settings.robot, "userIds": user_ids, "msgKey": msg_key, "msgParam": msg_param})
        # filtered (filteredStaffIdList, in the SDK's answer model) is not reached either: as invalid
        invalid = [str(u) for u in [*(answer.get("invalidStaffIdList") or []), *(answer.get("filteredStaffIdList") or [])]]
        limited = [str(u) for u in answer.get("flowControlledStaffIdList") or []]
        return str(answer.get("processQueryKey") or ""), invalid, limited

    async def ding(self, user_ids: list[str], content: str) -> str:
        """POST /v1.0/robot/ding/send (remindType 1: in the app); its openDingId."""
        answer = await self.call("POST", "/v1.0/robot/ding/send", json={
            "robotCode": self.settings.robot, "remindType": 1, "receiverUserIdList": user_ids, "content": content})
        return str(answer.get("openDingId") or "")

    async def session_send(self, url: str, body: dict[str, Any]) -> None:
        """A reply through a message's sessionWebhook (the caller checked its host and expiry)."""
        status, answer = await self._send("POST", url, json=body)
        code = answer.get("errcode", 0) if isinstance(answer, dict) else -1
        if status >= 400 or code != 0:
            code = str(code)
            raise DingTalkApiError(f"session webhook: HTTP {status}, errcode {code}", code=code, status=status,
                                   transient=status >= 500, throttle=_throttle(code), retry_after=_retry_after(code))

    # --- cards ----------------------------------------------------------------------------------
    async def create_and_deliver(self, body: dict[str, Any]) -> dict[str, Any]:
        """POST /v1.0/card/instances/createAndDeliver: its `result`, or the error."""
        answer = await self.call("POST", "/v1.0/card/instances/createAndDeliver", json=body)
        result = answer.get("result")
        return result if isinstance(result, dict) else {}

    async def update_card(self, out_track_id: str, params: dict[str, str]) -> None:
        """PUT /v1.0/card/instances: the card's variables replaced, for everyone who sees it. A 200 that
        says `success`/`result` false did not change it (transient: an update may simply be sent again)."""
        answer = await self.call("PUT", "/v1.0/card/instances", json={
            "outTrackId": out_track_id, "cardData": {"cardParamMap": params},
            "cardUpdateOptions": {"updateCardDataByKey": True}})
        if answer.get("success") is False or answer.get("result") is False:
            raise DingTalkApiError(f"PUT /v1.0/card/instances {out_track_id}: not updated ({str(answer)[:200]})",
                                   transient=True)

    async def register_card_callback(self, route_key: str, url: str, api_secret: str) -> None:
        """POST /v1.0/card/callbacks/register: taps on cards created with `callbackType: HTTP` and this
        `callbackRouteKey` are posted to `url`, signed with `api_secret`. forceUpdate: the URL may have
        changed since the last start, and an insert-if-absent would keep the old one."""
        await self.call("POST", "/v1.0/card/callbacks/register", json={
            "callbackRouteKey": route_key, "callbackUrl": url, "apiSecret": api_secret, "forceUpdate": True})

    # --- contacts (topapi) ----------------------------------------------------------------------
    async def topapi(self, path: str, body: dict[str, Any], *, retries: int = 5) -> dict[str, Any]:
        """One topapi call, waiting out its frequency limits."""
        for attempt in range(retries + 1):
            try:
                return await self.call("POST", path, json=body)
            except DingTalkApiError as exc:
                if not exc.transient or attempt == retries:
                    raise
                await asyncio.sleep(exc.retry_after if exc.retry_after is not None else min(30.0, 2.0 ** attempt))
        raise AssertionError("unreachable")
