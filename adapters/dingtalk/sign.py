"""DingTalk's robot HTTP callback signature: headers `timestamp` (ms) and `sign`.

`sign` = base64(HMAC-SHA256(key = appSecret, msg = timestamp + "\\n" + appSecret)). The sign does
not cover the body, so it only proves the sender knows the secret, within the timestamp's window
(DingTalk allows an hour of skew). Compared in constant time; every failure is the same `Refused`.
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


def sign(timestamp: str, secret: str) -> str:
    digest = hmac.new(secret.encode(), f"{timestamp}\n{secret}".encode(), hashlib.sha256).digest()
    return base64.b64encode(digest).decode()


def check(headers: Mapping[str, str], secret: str, now: datetime, window_seconds: float) -> None:
    """Refused unless the headers carry a fresh timestamp and its sign by `secret`."""
    timestamp = headers.get(TIMESTAMP_HEADER, "")
    given = headers.get(SIGN_HEADER, "")
    if not (timestamp.isascii() and timestamp.isdigit() and 10 <= len(timestamp) <= 16) or not given:
        raise Refused(UNAUTHENTICATED, "no timestamp or sign header")
    age = now.timestamp() - int(timestamp) / 1000
    if abs(age) > window_seconds:
        raise Refused(UNAUTHENTICATED, f"timestamp {age:.0f} s off")
    if not hmac.compare_digest(sign(timestamp, secret).encode(), given.encode("utf-8", "replace")):
        raise Refused(UNAUTHENTICATED, "wrong sign")
