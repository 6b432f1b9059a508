"""Webhook plumbing every platform shares: the body read safely, refusals answered alike.

* `read_body` refuses any Content-Encoding before reading a byte (no platform compresses its
  callbacks, and a gzip bomb costs seconds of CPU to find out), then caps the size while reading.
* `loads` parses JSON with a bound on nesting (deeply nested JSON would otherwise raise
  RecursionError, which is not a ValueError, out of an unauthenticated request).
* `Refused` carries the reason for the log only: every refusal of unauthenticated input is answered
  with the same status and the same body, so an answer never tells a forger which check failed (a
  decryption error told apart from a signature error is a padding oracle).
* `Webhook` is the aiohttp handler: read → the platform's `verify` (off the event loop when the body
  is large) → the platform's `dispatch` → JSON answer.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Mapping
from typing import Any, Generic, TypeVar

import orjson
from aiohttp import web

log = logging.getLogger(__name__)

V = TypeVar("V")
MAX_DEPTH = 32
UNAUTHENTICATED = 401
MALFORMED = 400
TOO_LARGE = 413
UNSUPPORTED = 415
INLINE_VERIFY_BYTES = 16_384  # larger bodies are verified and parsed in a worker thread


class Refused(Exception):
    """A callback refused before any processing; `reason` is logged, never answered."""

    def __init__(self, status: int, reason: str) -> None:
        super().__init__(reason)
        self.status = status
        self.reason = reason


async def read_body(request: web.Request, cap: int) -> bytes:
    encoding = request.headers.get("Content-Encoding", "identity").strip().lower()
    if encoding not in ("", "identity"):
        raise Refused(UNSUPPORTED, f"Content-Encoding {encoding[:40]!r} refused before reading")
    if (length := request.content_length) is not None:  # the body cannot run past its Content-Length
        if length > cap:
            raise Refused(TOO_LARGE, f"body of {length} bytes is over the cap")
        return await request.read()
    chunks, size = [], 0
    async for chunk in request.content.iter_chunked(16_384):
        size += len(chunk)
        if size > cap:
            raise Refused(TOO_LARGE, "body is over the cap")
        chunks.append(chunk)
    return b"".join(chunks)


def loads(raw: bytes | str, max_depth: int = MAX_DEPTH) -> Any:
    """JSON with at most `max_depth` levels of nesting; ValueError for anything else."""
    try:
        data = orjson.loads(raw)  # orjson: a tenth of the standard library's time on every callback
    except orjson.JSONDecodeError:  # a ValueError; also past orjson's own bound of 1,024 levels
        if _openings(raw) > max_depth:
            raise ValueError("JSON nested too deeply") from None
        raise
    if _openings(raw) <= max_depth:  # nesting cannot be deeper than the brackets opened: no walk needed
        return data
    stack = [(data, 1)]
    while stack:
        value, depth = stack.pop()
        if depth > max_depth:
            raise ValueError(f"JSON nested deeper than {max_depth} levels")
        if isinstance(value, dict):
            stack.extend((v, depth + 1) for v in value.values() if isinstance(v, dict | list))
        elif isinstance(value, list):
            stack.extend((v, depth + 1) for v in value if isinstance(v, dict | list))
    return data


def _openings(raw: bytes | str) -> int:
    """An upper bound on nesting (brackets inside strings count too), counted in C: a typical callback has
    a dozen, so the walk above is left for the bodies that might be deep."""
    if isinstance(raw, str):
        return raw.count("{") + raw.count("[")
    return raw.count(b"{") + raw.count(b"[")


def answer(data: dict[str, Any], status: int = 200) -> web.Response:
    return web.Response(body=orjson.dumps(data), status=status, content_type="application/json")


def refusal(status: int) -> web.Response:
    """The one answer to every refusal of a status: no reason, nothing to learn from."""
    return answer({"msg": "refused"}, status)


class Webhook(Generic[V]):
    """An aiohttp handler around a platform's `verify(headers, body) -> V` and `dispatch(V) -> answer`."""

    def __init__(self, platform: str, cap: int, verify: Callable[[Mapping[str, str], bytes], V],
                 dispatch: Callable[[V], Awaitable[dict[str, Any]]]) -> None:
        self.platform = platform
        self.cap = cap
        self.verify = verify
        self.dispatch = dispatch
        self.refused = 0

    async def handle(self, request: web.Request) -> web.Response:
        try:
            body = await read_body(request, self.cap)
            if len(body) > INLINE_VERIFY_BYTES:
                verified = await asyncio.to_thread(self.verify, request.headers, body)
            else:
                verified = self.verify(request.headers, body)
        except Refused as exc:
            self.refused += 1
            log.warning("%s: callback from %s refused (%s): %s", self.platform, request.remote, exc.status, exc.reason)
            return refusal(exc.status)
        return answer(await self.dispatch(verified))
