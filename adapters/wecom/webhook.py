"""WeCom's HTTP callbacks: the app's (encrypted XML) and the robot's URL mode (encrypted JSON).

The order is the point; every step before decryption works on raw bytes:

1. the kit reads the body: no Content-Encoding, at most `max_body_bytes` (a 10 MB body is refused
   from its Content-Length, or as soon as the stream passes the cap);
2. app (XML): any `<!DOCTYPE` / `<!ENTITY` (any `<!` but CDATA) or non-UTF-8 body is refused before
   a parser sees it; the `Encrypt` element is found with a strict pattern, not a parser;
   robot (JSON): the body is read as JSON (nesting bounded) and must hold an `encrypt` string of
   base64 characters: parsed rather than matched, since WeCom's JSON may escape "/" as "\\/";
3. `msg_signature` over token, timestamp, nonce and that ciphertext, in constant time, and the
   timestamp's age;
4. AES with the receive-id check (the CorpID for the app, empty for the robot);
5. only now the plaintext is parsed (the app's XML guarded again first), and handed on.

URL verification (GET with `echostr`): the same signature over `echostr`, answered with its plaintext.
Every refusal is the kit's one uniform answer; the reason is only logged.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import re
import time
import uuid
from collections.abc import Callable, Mapping
from typing import Any

from aiohttp import web

from collabbot.adapters.kit.webhook import UNAUTHENTICATED, Refused, loads, read_body, refusal
from collabbot.adapters.wecom import crypto
from collabbot.adapters.wecom.config import WecomSettings
from collabbot.adapters.wecom.inbound import WecomInbound
from collabbot.bot.clock import Clock

log = logging.getLogger(__name__)

_XML_ENCRYPT = re.compile(rb"<Encrypt>\s*(?:<!\[CDATA\[([A-Za-z0-9+/=]{24,})\]\]>|([A-Za-z0-9+/=]{24,}))\s*</Encrypt>")
_BASE64 = re.compile(r"[A-Za-z0-9+/=]{24,}")


def xml_encrypt(body: bytes) -> str:
    """The app's XML body's <Encrypt> value (the XML guarded first: no DTD, no entities)."""
    crypto.guard_xml(body)
    m = _XML_ENCRYPT.search(body)
    if m is None:
        raise Refused(UNAUTHENTICATED, "no Encrypt in the body")
    return next(g for g in m.groups() if g).decode()


def json_encrypt(body: bytes) -> str:
    """The robot's JSON body's "encrypt" value, read as JSON (a serializer may write "/" as "\\/")."""
    try:
        data = loads(body)
    except (ValueError, UnicodeDecodeError):
        raise Refused(UNAUTHENTICATED, "the body is not JSON") from None
    encrypted = data.get("encrypt") if isinstance(data, dict) else None
    if not isinstance(encrypted, str) or not _BASE64.fullmatch(encrypted):
        raise Refused(UNAUTHENTICATED, "no encrypt in the body")
    return encrypted


class WecomWebhooks:
    def __init__(self, settings: WecomSettings, inbound: WecomInbound, clock: Clock) -> None:
        self.settings = settings
        self.inbound = inbound
        self.clock = clock
        self.refused = 0

    def add_routes(self, app: web.Application) -> None:
        if self.settings.app_token:
            app.router.add_get(self.settings.app_path, self.app_verify)
            app.router.add_post(self.settings.app_path, self.app_callback)
        if self.settings.robot_mode == "callback":
            app.router.add_get(self.settings.robot_path, self.robot_verify)
            app.router.add_post(self.settings.robot_path, self.robot_callback)

    # --- shared ---------------------------------------------------------------------------------
    def _refuse(self, request: web.Request, exc: Refused) -> web.Response:
        self.refused += 1
        log.warning("wecom: callback from %s refused (%s): %s", request.remote, exc.status, exc.reason)
        return refusal(exc.status)

    def _check(self, query: Mapping[str, str], token: str, encrypted: str) -> None:
        crypto.check_signature(token, query.get("msg_signature", ""), query.get("timestamp", ""),
                               query.get("nonce", ""), encrypted, self.clock.now(), self.settings.replay_window_seconds)

    def _echo(self, request: web.Request, token: str, key: str, receive_id: str) -> web.Response:
        try:
            echostr = request.query.get("echostr", "")
            if not echostr or len(echostr) > 4096:
                raise Refused(UNAUTHENTICATED, "no echostr")
            self._check(request.query, token, echostr)
            plain = crypto.decrypt(echostr, key, receive_id)
        except Refused as exc:
            return self._refuse(request, exc)
        return web.Response(text=plain)

    async def _verified(self, request: web.Request, extract: Callable[[bytes], str], token: str, key: str,
                        receive_id: str) -> str:
        body = await read_body(request, self.settings.max_body_bytes)
        verify: Callable[[], str] = lambda: self._verify(body, request.query, extract, token, key, receive_id)  # noqa: E731
        if len(body) > 16_384:
            return await asyncio.to_thread(verify)
        return verify()

    def _verify(self, body: bytes, query: Mapping[str, str], extract: Callable[[bytes], str], token: str, key: str,
                receive_id: str) -> str:
        encrypted = extract(body)
        self._check(query, token, encrypted)
        return crypto.decrypt(encrypted, key, receive_id)

    # --- the app --------------------------------------------------------------------------------
    async def app_verify(self, request: web.Request) -> web.Response:
        s = self.settings
        return self._echo(request, s.app_token, s.app_encoding_aes_key, s.corp_id)

    async def app_callback(self, request: web.Request) -> web.Response:
        s = self.settings
        try:
            plain = await self._verified(request, xml_encrypt, s.app_token, s.app_encoding_aes_key, s.corp_id)
        except Refused as exc:
            return self._refuse(request, exc)
        try:
            doc = crypto.read_xml(crypto.guard_xml(plain.encode()))
        except (Refused, ValueError) as exc:  # signed by WeCom but unreadable: nothing a retry would fix
            log.warning("wecom: an authenticated app callback is not readable: %s", exc)
            return web.Response(text="")
        await self.inbound.app_document(doc)
        return web.Response(text="")

    # --- the robot in URL-callback mode ---------------------------------------------------------
    async def robot_verify(self, request: web.Request) -> web.Response:
        s = self.settings
        return self._echo(request, s.robot_token, s.robot_encoding_aes_key, "")

    async def robot_callback(self, request: web.Request) -> web.Response:
        s = self.settings
        try:
            plain = await self._verified(request, json_encrypt, s.robot_token, s.robot_encoding_aes_key, "")
            body = loads(plain)
        except Refused as exc:
            return self._refuse(request, exc)
        except ValueError as exc:
            log.warning("wecom: an authenticated robot callback is not readable: %s", exc)
            return web.Response(text="")
        card = await self.inbound.robot_body(body)
        if card is None:
            return web.Response(text="")
        return web.json_response(self.encrypted_answer({"response_type": "update_template_card",
                                                        "template_card": card}))

    def encrypted_answer(self, answer: dict[str, Any]) -> dict[str, Any]:
        """A passive answer as the robot's URL mode takes it: encrypted and signed with our token."""
        s = self.settings
        encrypted = crypto.encrypt(json.dumps(answer, ensure_ascii=False).encode(), s.robot_encoding_aes_key, "",
                                   os.urandom(16))
        timestamp, nonce = str(int(time.time())), uuid.uuid4().hex[:16]
        return {"encrypt": encrypted, "msgsignature": crypto.signature(s.robot_token, timestamp, nonce, encrypted),
                "timestamp": timestamp, "nonce": nonce}

