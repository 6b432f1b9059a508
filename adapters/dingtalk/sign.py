"""DingTalk's two HTTP-mode signatures. Neither covers the body: each only proves, within its
timestamp's window, that the sender knows a secret. Compared in constant time; every failure is the
same `Refused`.

* Robot messages: headers `timestamp` (ms) and `sign` = base64(HMAC-SHA256(key = appSecret,
  msg = timestamp + "\\n" + appSecret)).
* Card callbacks (互动卡片 回调签名验证): headers `x-ddpaas-signature-timestamp` (ms) and
  `x-ddpaas-signature` = base64(HMAC-SHA256(key = apiSecret, msg = timestamp)), where apiSecret is
  what we registered with the route (`api_secret`: derived from the app secret, so an admin has no
  extra secret to keep and every instance derives the same one).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
from collections.abc import Mapping
from datetime import datetime

from collabbot.adapters.kit.webhook import UNAUTHENTICATED, Refused

TIMESTAMP_HEADER = "timestamp"
SIGN_HEADER = "sign"
CARD_TIMESTAMP_HEADER = "x-ddpaas-signature-timestamp"
CARD_SIGN_HEADER = "x-ddpaas-signature"
API_SECRET_LABEL = b"collabbot dingtalk card callback apiSecret v1"


def sign(timestamp: str, secret: str) -> str:
    digest = hmac.new(secret.encode(), f"{timestamp}\n{secret}".encode(), hashlib.sha256).digest()
    return base64.b64encode(digest).decode()


def card_sign(timestamp: str, api_secret: str) -> str:
    digest = hmac.new(api_secret.encode(), timestamp.encode(), hashlib.sha256).digest()
    return base64.b64encode(digest).decode()


def api_secret(client_secret: str) -> str:
    """The apiSecret registered for our card callback route: a fixed label keyed by the app secret."""
    return hmac.new(client_secret.encode(), API_SECRET_LABEL, hashlib.sha256).hexdigest()


def _check(timestamp: str, given: str, expected: str, now: datetime, window_seconds: float) -> None:
    age = now.timestamp() - int(timestamp) / 1000
    if abs(age) > window_seconds:
        raise Refused(UNAUTHENTICATED, f"timestamp {age:.0f} s off")
    if not hmac.compare_digest(expected.encode(), given.encode("utf-8", "replace")):
        raise Refused(UNAUTHENTICATED, "wrong sign")


def _timestamp(headers: Mapping[str, str], name: str) -> str:
    timestamp = headers.get(name, "")
    return timestamp if timestamp.isascii() and timestamp.isdigit() and 10 <= len(timestamp) <= 16 else ""


def check(headers: Mapping[str, str], secret: str, now: datetime, window_seconds: float) -> None:
    """Refused unless the headers carry a fresh timestamp and its robot sign by `secret`."""
    timestamp, given = _timestamp(headers, TIMESTAMP_HEADER), headers.get(SIGN_HEADER, "")
    if not timestamp or not given:
        raise Refused(UNAUTHENTICATED, "no timestamp or sign header")
    _check(timestamp, given, sign(timestamp, secret), now, window_seconds)


def check_card(headers: Mapping[str, str], api_secret: str, now: datetime, window_seconds: float) -> None:
    """Refused unless the headers carry a fresh x-ddpaas timestamp and its signature by `api_secret`."""
    timestamp, given = _timestamp(headers, CARD_TIMESTAMP_HEADER), headers.get(CARD_SIGN_HEADER, "")
    if not timestamp or not given:
        raise Refused(UNAUTHENTICATED, "no x-ddpaas signature or timestamp header")
    _check(timestamp, given, card_sign(timestamp, api_secret), now, window_seconds)


def is_card_signed(headers: Mapping[str, str]) -> bool:
    """The request claims DingTalk's card callback signature (so it must pass that check, and only that)."""
    return CARD_SIGN_HEADER in headers or CARD_TIMESTAMP_HEADER in headers
