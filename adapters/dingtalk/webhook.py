"""HTTP mode: DingTalk's robot messages and card callbacks posted to `[dingtalk] path`.

The kit's `Webhook` reads the body (no Content-Encoding, size capped) and answers refusals alike;
this is DingTalk's `verify`. The two kinds of callback carry different signatures (`sign.py`):

* a card callback carries `x-ddpaas-signature`, by the apiSecret we registered for our route;
* a robot message carries the robot sign (`timestamp` + `sign`, by the app secret).

Each kind is taken only under its own signature. Neither signature covers the body: a captured pair
of headers vouches for any body until its timestamp leaves the window (`sign_window_seconds`, 5
minutes). So each is checked before the body is even parsed, every failure is the same 401, and the
window is short; a repeated pair cannot be refused, since two genuine callbacks in the same
millisecond carry the same one. Stream mode (the default) has no such exposure.

`CardRoute` registers where DingTalk posts taps: cards are created with `callbackType: HTTP` and
`callbackRouteKey`, and only a route registered through the API (`public_url` + `path`) gets their
taps. It runs beside start-up, retrying with backoff, so a DingTalk outage does not stop `serve`.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Mapping
from typing import Any

from aiohttp import web

from collabbot.adapters.dingtalk import sign
from collabbot.adapters.dingtalk.client import DingTalkClient
from collabbot.adapters.dingtalk.config import DingTalkSettings
from collabbot.adapters.dingtalk.inbound import DingTalkInbound
from collabbot.adapters.kit.webhook import MALFORMED, UNAUTHENTICATED, Refused, Webhook, loads
from collabbot.bot.clock import Clock

log = logging.getLogger(__name__)


class DingTalkWebhook:
    def __init__(self, settings: DingTalkSettings, inbound: DingTalkInbound, clock: Clock) -> None:
        self.settings = settings
        self.inbound = inbound
        self.clock = clock
        self.api_secret = sign.api_secret(settings.client_secret)
        self.webhook = Webhook("dingtalk", settings.max_body_bytes, self.verify, self.dispatch)

    @property
    def refused(self) -> int:
        return self.webhook.refused

    async def handle(self, request: web.Request) -> web.Response:
        return await self.webhook.handle(request)

    def verify(self, headers: Mapping[str, str], body: bytes) -> tuple[bool, dict[str, Any]]:
        """(is a card callback, the body), or Refused."""
        now, window = self.clock.now(), self.settings.sign_window_seconds
        card_signed = sign.is_card_signed(headers)
        if card_signed:
            sign.check_card(headers, self.api_secret, now, window)
        else:
            sign.check(headers, self.settings.client_secret, now, window)
        try:
            data = loads(body)
        except (ValueError, UnicodeDecodeError) as exc:
            raise Refused(MALFORMED, f"not JSON: {exc}") from None
        if not isinstance(data, dict):
            raise Refused(MALFORMED, "not a JSON object")
        is_card = "outTrackId" in data
        if card_signed != is_card:  # each kind under its own signature; answered as any forgery is
            raise Refused(UNAUTHENTICATED, "a robot message under the card signature" if card_signed
                          else "a card callback under the robot signature")
        return is_card, data

    async def dispatch(self, verified: tuple[bool, dict[str, Any]]) -> dict[str, Any]:
        is_card, data = verified
        if is_card:
            # an HTTP card callback has no frame id: its own fields identify it (a retry is the same body)
            return await self.inbound.card_callback("", data)
        await self.inbound.robot_message(data)
        return {}


class CardRoute:
    """Registers `card_route_key` → `callback_url` with DingTalk, retrying until it is done."""

    def __init__(self, settings: DingTalkSettings, client: DingTalkClient, *, first_delay: float = 1.0,
                 max_delay: float = 300.0) -> None:
        self.settings = settings
        self.client = client
        self.first_delay = first_delay
        self.max_delay = max_delay
        self.attempts = 0
        self.registered = asyncio.Event()

    async def register(self) -> None:
        delay = self.first_delay
        url, key = self.settings.callback_url, self.settings.card_route_key
        while True:
            self.attempts += 1
            try:
                await self.client.register_card_callback(key, url, sign.api_secret(self.settings.client_secret))
            except Exception as exc:
                log.warning("dingtalk: cannot register the card callback route %r → %s (%s); card taps are not "
                            "heard until it is; again in %.0f s", key, url, exc, delay)
                await asyncio.sleep(delay)
                delay = min(self.max_delay, delay * 2)
                continue
            log.info("dingtalk: card callback route %r registered → %s", key, url)
            self.registered.set()
            return
