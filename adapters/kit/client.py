"""The API client base every platform's client stands on: HTTP, timeouts, errors, the access token.

A platform client supplies three things: how to fetch a token (`fetch_token`), how to read one
answer into data or an `ApiError` (`request`), and which error means "that token is no longer
valid" (`token_invalid`). The rest is shared:

* one aiohttp session per client, every call bounded by `timeout_seconds`; a timeout or a broken
  connection is a transient error;
* the token is fetched single-flight (concurrent callers wait on one refresh and share its result),
  refreshed `refresh_margin` seconds before it expires, and once — never in a loop — when the
  platform refuses it; refused twice in a row, the call fails as transient and is retried later;
* errors come in three classes that the delivery worker understands: transient (try again with
  backoff), throttle (wait for the platform's reset, spending no attempt) and permanent.
"""

from __future__ import annotations

import asyncio
import functools
import json
import logging
import time
from collections.abc import Callable
from typing import Any

import aiohttp

log = logging.getLogger(__name__)


class ApiError(Exception):
    """A failed platform call. `throttle`: the platform asked us to slow down (wait `retry_after`);
    `unreachable`: the group named is one the bot is no longer in."""

    def __init__(self, message: str, *, code: int | str = -1, status: int = 0, transient: bool = False,
                 throttle: bool = False, retry_after: float | None = None, unreachable: bool = False) -> None:
        super().__init__(message)
        self.code = code
        self.status = status
        self.transient = transient or throttle
        self.throttle = throttle
        self.retry_after = retry_after
        self.unreachable = unreachable  # the bot is not in the group the call named (removed, disbanded)


class ApiClient:
    """Shared plumbing; subclasses implement `fetch_token`, `request` and `token_invalid`."""

    platform = ""
    error: type[ApiError] = ApiError
    refresh_margin = 600.0  # seconds before expiry when a token counts as stale

    def __init__(self, base_url: str, timeout_seconds: float, *, monotonic: Callable[[], float] = time.monotonic):
        self.base_url = base_url.rstrip("/")
        self.timeout_seconds = timeout_seconds
        self._monotonic = monotonic
        self._session: aiohttp.ClientSession | None = None
        self._token = ""
        self._token_expires = 0.0
        self._token_lock = asyncio.Lock()
        self.token_fetches = 0

    # --- what a platform supplies ---------------------------------------------------------------
    async def fetch_token(self) -> tuple[str, float]:
        """A new access token and its lifetime in seconds."""
        raise NotImplementedError

    async def request(self, method: str, path: str, token: str, **kwargs: Any) -> dict[str, Any]:
        """One authorised exchange, its answer read; raise `self.error` for a failure."""
        raise NotImplementedError

    def token_invalid(self, exc: ApiError) -> bool:
        return False

    # --- HTTP -----------------------------------------------------------------------------------
    def session(self) -> aiohttp.ClientSession:
        if self._session is None or self._session.closed:
            timeout = aiohttp.ClientTimeout(total=self.timeout_seconds)
            # JSON bodies as UTF-8, as the platforms' SDKs send them: escaped (\uXXXX) Chinese takes twice the
            # bytes against a platform's size limit on the request body
            self._session = aiohttp.ClientSession(timeout=timeout, headers={"User-Agent": "collabbot"},
                                                  json_serialize=functools.partial(json.dumps, ensure_ascii=False))
        return self._session

    async def close(self) -> None:
        if self._session is not None and not self._session.closed:
            await self._session.close()

    async def exchange(self, method: str, path: str, **kwargs: Any) -> tuple[int, Any, str]:
        """(status, headers, text) of one HTTP exchange; a network failure or timeout is transient."""
        try:
            async with self.session().request(method, self.base_url + path, **kwargs) as resp:
                return resp.status, resp.headers, await resp.text()
        except (TimeoutError, aiohttp.ClientError) as exc:
            raise self.error(f"{method} {path}: {exc!r}", transient=True) from exc

    # --- the token ------------------------------------------------------------------------------
    async def token(self, *, stale: str = "") -> str:
        """The cached token, or a fresh one; `stale` names a token the platform just refused.

        Single-flight: whoever comes second finds the token the first one fetched (unless it is the
        very token that was refused).
        """
        async with self._token_lock:
            fresh = self._token and self._monotonic() < self._token_expires - self.refresh_margin
            if fresh and self._token != stale:
                return self._token
            token, lifetime = await self.fetch_token()
            self._token = token
            self._token_expires = self._monotonic() + lifetime
            self.token_fetches += 1
            return token

    async def call(self, method: str, path: str, **kwargs: Any) -> dict[str, Any]:
        """An authorised call; the token is refreshed once when the platform says it is invalid.

        A `data` keyword may be a factory (a multipart form can be sent only once, so the retry
        builds a new one).
        """
        data = kwargs.pop("data", None)

        def args() -> dict[str, Any]:
            return dict(kwargs, data=data() if callable(data) else data) if data is not None else kwargs

        token = await self.token()
        try:
            return await self.request(method, path, token, **args())
        except ApiError as exc:
            if not self.token_invalid(exc):
                raise
            log.info("%s: access token refused (%s); fetching a new one", self.platform, exc.code)
        token = await self.token(stale=token)
        try:
            return await self.request(method, path, token, **args())
        except ApiError as exc:
            if self.token_invalid(exc):  # twice in a row: not a stale token; try the row again later
                raise self.error(str(exc), code=exc.code, status=exc.status, transient=True) from exc
            raise
