"""HTTP mode: DingTalk's robot message and card callbacks posted to `[dingtalk] path`.

The kit's `Webhook` reads the body (no Content-Encoding, size capped) and answers refusals alike;
this is DingTalk's `verify`: the `timestamp` + `sign` headers first (`sign.check`: HMAC-SHA256 by
the app secret, an hour's window, constant time), then the JSON. The sign does not cover the body,
so it is checked before the body is even parsed, and every failure is the same 401.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from aiohttp import web

from collabbot.adapters.dingtalk import sign
from collabbot.adapters.dingtalk.config import DingTalkSettings
from collabbot.adapters.dingtalk.inbound import DingTalkInbound
from collabbot.adapters.kit.webhook import MALFORMED, Refused, Webhook, loads
from collabbot.bot.clock import Clock


class DingTalkWebhook:
    def __init__(self, settings: DingTalkSettings, inbound: DingTalkInbound, clock: Clock) -> None:
        self.settings = settings
        self.inbound = inbound
        self.clock = clock
        self.webhook = Webhook("dingtalk", settings.max_body_bytes, self.verify, self.dispatch)

    @property
    def refused(self) -> int:
        return self.webhook.refused

    async def handle(self, request: web.Request) -> web.Response:
        return await self.webhook.handle(request)

    def verify(self, headers: Mapping[str, str], body: bytes) -> tuple[str, dict[str, Any]]:
        sign.check(headers, self.settings.client_secret, self.clock.now(), self.settings.sign_window_seconds)
        try:
            data = loads(body)
        except (ValueError, UnicodeDecodeError) as exc:
            raise Refused(MALFORMED, f"not JSON: {exc}") from None
        if not isinstance(data, dict):
            raise Refused(MALFORMED, "not a JSON object")
        return headers.get(sign.TIMESTAMP_HEADER, ""), data

    async def dispatch(self, verified: tuple[str, dict[str, Any]]) -> dict[str, Any]:
        _, data = verified
        if "outTrackId" in data:
            # an HTTP card callback has no frame id: its own fields identify it (a retry is the same body)
            return await self.inbound.card_callback("", data)
        await self.inbound.robot_message(data)
        return {}
