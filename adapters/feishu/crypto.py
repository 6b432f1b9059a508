"""Feishu callback security: the signature, the replay window, the token and the AES envelope.

Everything here works on raw bytes and runs BEFORE the body is parsed as JSON (the rule for every platform: verify
on the raw bytes first, compare in constant time, reject stale timestamps). lark-oapi's own
dispatcher compares the signature with `!=` and never looks at the timestamp's age
(`lark_oapi/event/dispatcher_handler.py`, `_verify_sign`), so we do not use it for this; the tests
cross-check our results against its `AESCipher` and `_verify_sign` on the same inputs.

Feishu's rules (开放平台 → 事件订阅 → "加密推送" / "安全校验"):
* X-Lark-Signature = hex(sha256(timestamp + nonce + encrypt_key + raw body)): plain SHA-256, not HMAC;
  only sent when an Encrypt Key is configured.
* an encrypted body is {"encrypt": base64(IV ‖ AES-256-CBC(plaintext))}, key = sha256(encrypt_key),
  PKCS#7 padding.
* the URL-verification challenge arrives encrypted but UNSIGNED (larksuite/oapi-sdk-python#79,
  larksuite/node-sdk#67): it is authenticated by decrypting with our key and by its token.

pycryptodome is the AES implementation because lark-oapi itself depends on it (one crypto library
in the environment, not two).
"""

from __future__ import annotations

import base64
import binascii
import functools
import hashlib
import hmac
from collections.abc import Mapping
from datetime import datetime
from typing import Any

from Crypto.Cipher import AES
from Crypto.Util.strxor import strxor

from collabbot.adapters.kit.webhook import Refused

TIMESTAMP_HEADER = "X-Lark-Request-Timestamp"
NONCE_HEADER = "X-Lark-Request-Nonce"
SIGNATURE_HEADER = "X-Lark-Signature"
MAX_HEADER_CHARS = 128


CallbackRejected = Refused  # a refusal (the kit answers every one alike; the reason is logged)


def signature(timestamp: str, nonce: str, encrypt_key: str, body: bytes) -> str:
    return hashlib.sha256((timestamp + nonce + encrypt_key).encode() + body).hexdigest()


def check_signature(headers: Mapping[str, str], body: bytes, encrypt_key: str, now: datetime,
                    window_seconds: float) -> None:
    """Raise CallbackRejected unless the headers sign `body` with `encrypt_key` within the time window."""
    timestamp = headers.get(TIMESTAMP_HEADER, "")
    nonce = headers.get(NONCE_HEADER, "")
    given = headers.get(SIGNATURE_HEADER, "")
    if not (timestamp and nonce and given) or max(len(timestamp), len(nonce), len(given)) > MAX_HEADER_CHARS:
        raise CallbackRejected(401, "missing or oversized signature headers")
    expected = signature(timestamp, nonce, encrypt_key, body)
    if not hmac.compare_digest(expected.encode(), given.strip().lower().encode()):
        raise CallbackRejected(401, "bad signature")
    # Checked after the signature so that the timestamp is one Feishu really sent.
    if not timestamp.isdigit():
        raise CallbackRejected(401, "malformed timestamp")
    skew = abs(now.timestamp() - int(timestamp))
    if skew > window_seconds:
        raise CallbackRejected(401, f"timestamp {skew:.0f} s away from now (replay window {window_seconds:g} s)")


def token_matches(expected: str, given: object) -> bool:
    """Constant-time comparison of the Verification Token carried in the body."""
    return isinstance(given, str) and bool(given) and hmac.compare_digest(expected.encode(), given.encode())


def _key(encrypt_key: str) -> bytes:
    return hashlib.sha256(encrypt_key.encode()).digest()


@functools.lru_cache(maxsize=8)
def _blocks(encrypt_key: str) -> Any:
    """The key's block cipher, made once: making a cipher object cost more than decrypting a callback.
    An ECB object keeps no state between calls, so threads may share it."""
    return AES.new(_key(encrypt_key), AES.MODE_ECB)


def decrypt(encrypted: str, encrypt_key: str) -> bytes:
    """The plaintext of an {"encrypt": …} body; CallbackRejected(400) for anything malformed.

    CBC decryption is each block decrypted, XORed with the ciphertext block before it (the IV for the
    first): done here on the key's cached block cipher (`_blocks`). The tests check it against
    lark-oapi's own `AESCipher`."""
    try:
        raw = base64.b64decode(encrypted, validate=True)
    except (binascii.Error, ValueError):
        raise CallbackRejected(400, "encrypt is not base64") from None
    if len(raw) < 2 * AES.block_size or len(raw) % AES.block_size:
        raise CallbackRejected(400, "ciphertext has a wrong length")
    plain = strxor(_blocks(encrypt_key).decrypt(raw[AES.block_size:]), raw[:-AES.block_size])
    pad = plain[-1]
    if not 1 <= pad <= AES.block_size or plain[-pad:] != bytes([pad]) * pad:
        raise CallbackRejected(400, "bad padding (wrong Encrypt Key?)")
    return plain[:-pad]


def encrypt(plaintext: bytes, encrypt_key: str, iv: bytes) -> str:
    """What Feishu does to a body (the tests build callbacks with it, as Feishu builds them)."""
    if len(iv) != AES.block_size:
        raise ValueError("the IV must be 16 bytes")
    pad = AES.block_size - len(plaintext) % AES.block_size
    cipher = AES.new(_key(encrypt_key), AES.MODE_CBC, iv).encrypt(plaintext + bytes([pad]) * pad)
    return base64.b64encode(iv + cipher).decode()
