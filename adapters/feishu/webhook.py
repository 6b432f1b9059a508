"""`POST /feishu/events`: Feishu's event and card callbacks over HTTP, checked before anything is read.

One route serves both the event subscription (事件订阅) and the card callback (卡片回调): Feishu posts
both as schema 2.0 bodies, signed and encrypted alike. The order is the whole point:

1. refuse a body over `max_body_bytes` while reading it (413);
2. with an Encrypt Key, check X-Lark-Signature over the RAW bytes and the timestamp's age (401);
3. only then parse and decrypt (400 for anything malformed);
4. an unsigned body is accepted only when it is the URL-verification challenge, which Feishu sends
   without signature headers (oapi-sdk-python#79): decrypting it with our key and its token prove it;
5. check the Verification Token in constant time (401);
6. hand it to `FeishuInbound`, which answers within Feishu's 3 s.

A refused request changes nothing and is logged with its reason.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping
from typing import Any

from aiohttp import web

from collabbot.adapters.feishu import crypto, parse
from collabbot.adapters.feishu.config import FeishuSettings
from collabbot.adapters.feishu.inbound import FeishuInbound
from collabbot.bot.clock import Clock

log = logging.getLogger(__name__)


class FeishuWebhook:
    def __init__(self, settings: FeishuSettings, inbound: FeishuInbound, clock: Clock) -> None:
        self.settings = settings
        self.inbound = inbound
        self.clock = clock
        self.refused = 0

    async def read_body(self, request: web.Request) -> bytes:
        cap = self.settings.max_body_bytes
        if request.content_length is not None and request.content_length > cap:
            raise crypto.CallbackRejected(413, f"body of {request.content_length} bytes is over the cap")
        chunks, size = [], 0
        async for chunk in request.content.iter_chunked(16_384):
            size += len(chunk)
            if size > cap:
                raise crypto.CallbackRejected(413, "body is over the cap")
            chunks.append(chunk)
        return b"".join(chunks)

    def verify(self, headers: Mapping[str, str], body: bytes) -> parse.Callback:
        """The callback inside a request, or CallbackRejected; pure apart from reading the clock."""
        key = self.settings.encrypt_key
        signed = crypto.SIGNATURE_HEADER in headers
        if key and signed:
            crypto.check_signature(headers, body, key, self.clock.now(), self.settings.replay_window_seconds)
        try:
            outer = json.loads(body)
        except ValueError:
            raise crypto.CallbackRejected(400, "body is not JSON") from None
        encrypted = outer.get("encrypt") if isinstance(outer, dict) else None
        if key:
            if not isinstance(encrypted, str):
                raise crypto.CallbackRejected(400, "an Encrypt Key is configured but the body is not encrypted")
            try:
                data: Any = json.loads(crypto.decrypt(encrypted, key))
            except (ValueError, UnicodeDecodeError):
                raise crypto.CallbackRejected(400, "decrypted body is not JSON") from None
        else:
            if encrypted is not None:
                raise crypto.CallbackRejected(400, "the body is encrypted but no encrypt_key is configured")
            data = outer
        try:
            callback = self.inbound.parse(data)
        except parse.Malformed as exc:
            raise crypto.CallbackRejected(400, f"malformed callback: {exc}") from None
        if key and not signed and not isinstance(callback.what, parse.Challenge):
            raise crypto.CallbackRejected(401, "unsigned callback")
        if self.settings.verification_token and not crypto.token_matches(self.settings.verification_token,
                                                                          callback.token):
            raise crypto.CallbackRejected(401, "wrong verification token")
        return callback

    async def handle(self, request: web.Request) -> web.Response:
        try:
            body = await self.read_body(request)
            callback = self.verify(request.headers, body)
        except crypto.CallbackRejected as exc:
            self.refused += 1
            log.warning("feishu: callback from %s refused (%s): %s", request.remote, exc.status, exc.reason)
            return web.json_response({"msg": exc.reason}, status=exc.status)
        answer = await self.inbound.dispatch(callback)
        return web.json_response(answer)
