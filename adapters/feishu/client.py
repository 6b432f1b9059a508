"""The Feishu Open API over aiohttp: tenant token, messages, card updates, images, 加急, bot info, contacts.

Why aiohttp and not lark-oapi's async API: lark-oapi's `a…` methods fetch and refresh the tenant
access token with a blocking `requests` call inside (`lark_oapi/core/token/auth.py`), which would
stall the event loop that must answer callbacks within 3 s. The handful of calls
we need are small, and owning them lets tests point `base_url` at a local fake.

Rules, each from Feishu's documents:
* token: `POST /open-apis/auth/v3/tenant_access_token/internal` answers {code, msg,
  tenant_access_token, expire} NOT wrapped in `data` (自建应用获取 tenant_access_token); valid 2 h,
  and a call in its last 30 minutes returns a new one, so we refresh 10 minutes before expiry.
  Fetched single-flight (one refresh shared by every sender), refreshed once on a token-invalid code
  (99991663, and the 99991664-99991668 that the official SDK treats alike; often with HTTP 200 or
  400 rather than 401), never in a loop.
* rate limits: HTTP 429 / code 99991400 with `x-ogw-ratelimit-reset` seconds (频控策略), and 230020
  (5 messages per second per chat or user: 发送消息 → 使用限制) → transient with retry-after; so is
  11232, the limit Feishu applies under system load (频控策略).
* 5xx and timeouts are transient; any other non-zero code is permanent (a wrong chat, a missing
  permission, content over 30 KB: 230025): retrying would only repeat it.
* 230002 (发送消息: the bot is not in the group; it was removed, or the group disbanded) is permanent
  and says the group itself is lost (`unreachable`).
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
import time
from collections.abc import AsyncIterator, Callable
from typing import Any
from urllib.parse import quote

import aiohttp

from collabbot.adapters.feishu.config import FeishuSettings
from collabbot.adapters.kit.client import ApiClient, ApiError

log = logging.getLogger(__name__)

TOKEN_PATH = "/open-apis/auth/v3/tenant_access_token/internal"
TOKEN_INVALID = frozenset({99991663, 99991664, 99991665, 99991666, 99991668})
RATE_LIMITED = 99991400
CHAT_RATE_LIMITED = 230020
LOAD_RATE_LIMITED = 11232
NOT_IN_CHAT = 230002
REFRESH_MARGIN_SECONDS = 600.0
MAX_UUID = 50  # 发送消息: uuid 最大长度 50 字符


ALREADY_SUBSCRIBED = 1390007  # 订阅审批事件: "subscription existed" (one call per app and definition is enough)


class FeishuApiError(ApiError):
    """A failed Feishu call: `transient` ones may succeed later (after `retry_after` seconds, if known)."""


def _retry_after(headers: Any) -> float | None:
    value = headers.get("x-ogw-ratelimit-reset") if headers is not None else None
    try:
        return max(0.0, float(value)) if value is not None else None
    except ValueError:
        return None


class FeishuClient(ApiClient):
    platform = "feishu"
    error = FeishuApiError
    refresh_margin = REFRESH_MARGIN_SECONDS

    def __init__(self, settings: FeishuSettings, *, monotonic: Callable[[], float] = time.monotonic) -> None:
        super().__init__(settings.base_url, settings.request_timeout_seconds, monotonic=monotonic)
        self.settings = settings

    async def _raw(self, method: str, path: str, *, token: str | None, **kwargs: Any) -> dict[str, Any]:
        """One HTTP exchange; the parsed body, or FeishuApiError with the right class."""
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        status, resp_headers, text = await self.exchange(method, path, headers=headers, **kwargs)
        try:
            body = json.loads(text) if text else {}
        except ValueError:
            body = None
        if not isinstance(body, dict):
            raise FeishuApiError(f"{method} {path}: HTTP {status}, not JSON", status=status,
                                 transient=status >= 500, throttle=status == 429,
                                 retry_after=_retry_after(resp_headers) if status == 429 else None)
        code = body.get("code", 0 if status < 400 else -1)
        if not isinstance(code, int):
            code = -1
        if code == 0 and status < 400:
            return body
        message = f"{method} {path}: HTTP {status}, code {code}: {str(body.get('msg', ''))[:200]}"
        if status == 429 or code in (RATE_LIMITED, CHAT_RATE_LIMITED, LOAD_RATE_LIMITED):
            fallback = 1.0 if code in (CHAT_RATE_LIMITED, LOAD_RATE_LIMITED) else None
            raise FeishuApiError(message, code=code, status=status, throttle=True,
                                 retry_after=_retry_after(resp_headers) or fallback)
        raise FeishuApiError(message, code=code, status=status, transient=status >= 500,
                             unreachable=code == NOT_IN_CHAT)

    # --- the tenant access token (the kit caches it, single-flight) ---------------------------
    async def fetch_token(self) -> tuple[str, float]:
        body = await self._raw("POST", TOKEN_PATH, token=None,
                               json={"app_id": self.settings.app_id, "app_secret": self.settings.app_secret})
        token = body.get("tenant_access_token")
        if not isinstance(token, str) or not token:
            raise FeishuApiError("token answer has no tenant_access_token", transient=True)
        expire = body.get("expire", 7200)
        return token, float(expire) if isinstance(expire, int | float) else 7200.0

    def token_invalid(self, exc: ApiError) -> bool:
        return exc.code in TOKEN_INVALID

    async def request(self, method: str, path: str, token: str, **kwargs: Any) -> dict[str, Any]:
        return await self._raw(method, path, token=token, **kwargs)

    # --- messages -------------------------------------------------------------------------------
    async def send_message(self, receive_id_type: str, receive_id: str, msg_type: str, content: dict[str, Any] | str,
                           uuid: str) -> str:
        """POST /open-apis/im/v1/messages; the new message's id. `uuid` makes a repeat send a no-op for 1 h."""
        body = {"receive_id": receive_id, "msg_type": msg_type,
                "content": content if isinstance(content, str) else json.dumps(content, ensure_ascii=False),
                "uuid": uuid}
        answer = await self.call("POST", "/open-apis/im/v1/messages", params={"receive_id_type": receive_id_type},
                                 json=body)
        message_id = (answer.get("data") or {}).get("message_id")
        if not isinstance(message_id, str) or not message_id:
            raise FeishuApiError("send answer has no message_id", transient=False)
        return message_id

    async def update_card(self, message_id: str, card: dict[str, Any]) -> None:
        """PATCH /open-apis/im/v1/messages/{id}: a sent card updated in place (shared cards, 14 days)."""
        await self.call("PATCH", f"/open-apis/im/v1/messages/{message_id}",
                        json={"content": json.dumps(card, ensure_ascii=False)})

    async def urgent_app(self, message_id: str, open_ids: list[str]) -> list[str]:
        """加急 (in-app) for a sent message; returns the ids Feishu refused (invalid_user_id_list)."""
        answer = await self.call("PATCH", f"/open-apis/im/v1/messages/{message_id}/urgent_app",
                                 params={"user_id_type": "open_id"}, json={"user_id_list": open_ids})
        return list((answer.get("data") or {}).get("invalid_user_id_list") or [])

    async def upload_image(self, image: bytes, filename: str = "chart.png") -> str:
        """POST /open-apis/im/v1/images (multipart, image_type=message); the image_key for messages and cards."""
        def form() -> aiohttp.FormData:
            f = aiohttp.FormData()
            f.add_field("image_type", "message")
            f.add_field("image", image, filename=filename, content_type="application/octet-stream")
            return f

        answer = await self.call("POST", "/open-apis/im/v1/images", data=form)
        key = (answer.get("data") or {}).get("image_key")
        if not isinstance(key, str) or not key:
            raise FeishuApiError("upload answer has no image_key")
        return key

    async def approval_instance(self, instance_code: str) -> dict[str, Any]:
        """GET /open-apis/approval/v4/instances/{code} (获取单个审批实例详情): its `data` — status,
        the initiator's `open_id`, and `form`, a JSON string of the filled-in widgets."""
        answer = await self.call("GET", f"/open-apis/approval/v4/instances/{quote(instance_code, safe='')}",
                                 params={"user_id_type": "open_id"})
        data = answer.get("data")
        if not isinstance(data, dict):
            raise FeishuApiError("approval instance answer has no data", transient=False)
        return data

    async def subscribe_approval(self, approval_code: str) -> bool:
        """POST /open-apis/approval/v4/approvals/{code}/subscribe (订阅审批事件): without it Feishu sends no
        event about that definition's instances. True when subscribed now, False when it already was."""
        try:
            await self.call("POST", f"/open-apis/approval/v4/approvals/{quote(approval_code, safe='')}/subscribe")
        except FeishuApiError as exc:
            if exc.code == ALREADY_SUBSCRIBED:
                return False
            raise
        return True

    async def bot_open_id(self) -> str:
        """GET /open-apis/bot/v3/info: the bot's own open_id (its answer is {code, msg, bot: {…}}, no `data`)."""
        answer = await self.call("GET", "/open-apis/bot/v3/info")
        bot = answer.get("bot")
        open_id = bot.get("open_id") if isinstance(bot, dict) else None
        if not isinstance(open_id, str) or not open_id:
            raise FeishuApiError("bot info has no open_id")
        return open_id

    async def pages(self, path: str, params: dict[str, str], *, page_size: int = 50,
                    retries: int = 5) -> AsyncIterator[dict[str, Any]]:
        """Every item of a paged list ({data: {items, has_more, page_token}}), waiting out rate limits."""
        token = ""
        while True:
            query = dict(params, page_size=str(page_size))
            if token:
                query["page_token"] = token
            for attempt in range(retries + 1):
                try:
                    answer = await self.call("GET", path, params=query)
                    break
                except FeishuApiError as exc:
                    if not exc.transient or attempt == retries:
                        raise
                    await asyncio.sleep(exc.retry_after if exc.retry_after is not None else min(30.0, 2.0 ** attempt))
            data = answer.get("data") or {}
            for item in data.get("items") or []:
                if isinstance(item, dict):
                    yield item
            token = data.get("page_token") or ""
            if not data.get("has_more") or not token:
                return


def message_uuid(dedupe_key: str) -> str:
    """The dedupe key as Feishu's `uuid` (≤ 50 characters), hashed when it is longer or not ASCII."""
    if len(dedupe_key) <= MAX_UUID and dedupe_key.isascii():
        return dedupe_key
    return "h-" + hashlib.sha256(dedupe_key.encode()).hexdigest()[:MAX_UUID - 2]
