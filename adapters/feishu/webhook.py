"""`POST /feishu/events`: Feishu's event and card callbacks over HTTP, checked before anything is read.

One route serves both the event subscription (事件订阅) and the card callback (卡片回调): Feishu posts
both as schema 2.0 bodies, signed and encrypted alike. The kit's `Webhook` reads the body (no
Content-Encoding, size capped) and answers refusals; this module is Feishu's `verify`, whose order is
the whole point:

1. with an Encrypt Key, a signed body: check X-Lark-Signature over the RAW bytes and the timestamp's
   age first; only then decrypt and parse (a malformed body that Feishu signed is answered 400);
2. an unsigned body is accepted only when it is the URL-verification challenge, which Feishu sends
   without signature headers (oapi-sdk-python#79): decrypting it with our key and its token prove
   it. Every failure on an unsigned body — bad base64, bad padding, not JSON, not a challenge — is
   the same 401, so the answer is no padding oracle;
3. check the Verification Token in constant time (401);
4. hand it to `FeishuInbound`, which answers within Feishu's 3 s.

A refused request changes nothing and is logged with its reason.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

from aiohttp import web

from collabbot.adapters.feishu import crypto, parse
from collabbot.adapters.feishu.config import FeishuSettings
from collabbot.adapters.feishu.inbound import FeishuInbound
from collabbot.adapters.kit.webhook import MALFORMED, UNAUTHENTICATED, Refused, Webhook, loads
from collabbot.bot.clock import Clock

log = logging.getLogger(__name__)


class FeishuWebhook:
    def __init__(self, settings: FeishuSettings, inbound: FeishuInbound, clock: Clock) -> None:
        self.settings = settings
        self.inbound = inbound
        self.clock = clock
        self.webhook = Webhook("feishu", settings.max_body_bytes, self.verify, inbound.dispatch)

    @property
    def refused(self) -> int:
        return self.webhook.refused

    async def handle(self, request: web.Request) -> web.Response:
        return await self.webhook.handle(request)

    def verify(self, headers: Mapping[str, str], body: bytes) -> parse.Callback:
        """The callback inside a request, or Refused; pure apart from reading the clock."""
        key = self.settings.encrypt_key
        signed = crypto.SIGNATURE_HEADER in headers
        if key and signed:
            crypto.check_signature(headers, body, key, self.clock.now(), self.settings.replay_window_seconds)
        # what a failure from here on answers: unauthenticated input learns nothing (one uniform 401)
        bad = MALFORMED if (signed or not key) else UNAUTHENTICATED
        try:
            outer = loads(body)
            encrypted = outer.get("encrypt") if isinstance(outer, dict) else None
            if key:
                if not isinstance(encrypted, str):
                    raise Refused(bad, "an Encrypt Key is configured but the body is not encrypted")
                data: Any = loads(crypto.decrypt(encrypted, key))
            else:
                if encrypted is not None:
                    raise Refused(bad, "the body is encrypted but no encrypt_key is configured")
                data = outer
            callback = self.inbound.parse(data)
        except Refused as exc:
            raise Refused(bad, exc.reason) from None
        except (ValueError, UnicodeDecodeError) as exc:  # parse.Malformed is a ValueError
            raise Refused(bad, f"malformed callback: {exc}") from None
        if key and not signed and not isinstance(callback.what, parse.Challenge):
            raise Refused(UNAUTHENTICATED, "unsigned callback")
        if self.settings.verification_token and not crypto.token_matches(self.settings.verification_token,
                                                                          callback.token):
            raise Refused(UNAUTHENTICATED, "wrong verification token")
        return callback
