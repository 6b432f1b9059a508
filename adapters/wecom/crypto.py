"""WeCom callback security: the hostile-XML guard, msg_signature, the AES envelope, and a safe XML read.

WeCom's scheme (加解密方案说明), the same for the app's XML callbacks and the robot's JSON callbacks:

* msg_signature = hex SHA-1 of the sorted concatenation of token, timestamp, nonce and the
  ciphertext (`Encrypt` / `encrypt`);
* AES-256-CBC, key = base64decode(EncodingAESKey + "="), IV = the key's first 16 bytes, PKCS#7 padded
  to 32 bytes; plaintext = 16 random bytes ‖ 4-byte big-endian length ‖ message ‖ receive id (the
  CorpID for an app, empty for the robot).

What wechatpy (1.8) gets wrong, and so what we do ourselves, in this order, before anything is parsed:
its `decrypt_message` parses the outer XML with xmltodict BEFORE it checks the signature (an XXE or a
billion-laughs body is parsed unauthenticated; wechatpy issue 374) and compares the signature with
`!=`. So `guard_xml` refuses `<!DOCTYPE` / `<!ENTITY` (any `<!` outside a CDATA section) and anything that is not
UTF-8, the signature is checked in constant time over the raw ciphertext, and only then is the
ciphertext decrypted — with wechatpy's `PrpCrypto`, which does the AES and the receive-id (CorpID)
check and is sound once its input is authenticated. The XML that remains is read with the standard
library's expat parser, which, with no DOCTYPE, can expand no entity.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import re
import struct
from datetime import datetime
from xml.etree import ElementTree

from Crypto.Cipher import AES
from wechatpy.enterprise.crypto import PrpCrypto  # imported with the adapter: a missing wechatpy stops start-up

from collabbot.adapters.kit.webhook import UNAUTHENTICATED, Refused

BLOCK = 32  # WeCom pads to 32 bytes, not AES's 16
MAX_PARAM_CHARS = 128
_DECLARATION = re.compile(rb"<!")
_CDATA = re.compile(rb"<!\[CDATA\[.*?\]\]>", re.S)  # ends at the first ]]>, as in XML: its text is no markup
_ENCODING = re.compile(rb"<\?xml[^>]*encoding\s*=\s*[\"']([^\"']+)", re.I)


def aes_key(encoding_aes_key: str) -> bytes:
    return base64.b64decode(encoding_aes_key + "=")


def signature(token: str, timestamp: str, nonce: str, encrypted: str) -> str:
    return hashlib.sha1("".join(sorted([token, timestamp, nonce, encrypted])).encode()).hexdigest()


def check_signature(token: str, given: str, timestamp: str, nonce: str, encrypted: str, now: datetime,
                    window_seconds: float) -> None:
    """Refused unless `given` signs the ciphertext with our token and the timestamp is recent."""
    if not (given and timestamp and nonce) or max(len(given), len(timestamp), len(nonce)) > MAX_PARAM_CHARS:
        raise Refused(UNAUTHENTICATED, "missing or oversized signature parameters")
    expected = signature(token, timestamp, nonce, encrypted)
    if not hmac.compare_digest(expected.encode(), given.strip().lower().encode()):
        raise Refused(UNAUTHENTICATED, "bad msg_signature")
    if not timestamp.isascii() or not timestamp.isdigit():
        raise Refused(UNAUTHENTICATED, "malformed timestamp")
    skew = abs(now.timestamp() - int(timestamp))
    if skew > window_seconds:
        raise Refused(UNAUTHENTICATED, f"timestamp {skew:.0f} s away from now (replay window {window_seconds:g} s)")


def decrypt(encrypted: str, encoding_aes_key: str, receive_id: str) -> str:
    """The plaintext message of an authenticated ciphertext; Refused for anything malformed or for another
    receive id. Call only after `check_signature`."""
    try:
        raw = base64.b64decode(encrypted, validate=True)
    except (binascii.Error, ValueError):
        raise Refused(UNAUTHENTICATED, "Encrypt is not base64") from None
    if len(raw) < BLOCK or len(raw) % AES.block_size:
        raise Refused(UNAUTHENTICATED, "ciphertext has a wrong length")
    try:
        return str(PrpCrypto(aes_key(encoding_aes_key)).decrypt(encrypted, receive_id))
    except Exception as exc:  # InvalidCorpIdException, bad padding, bad length, not UTF-8
        raise Refused(UNAUTHENTICATED, f"cannot decrypt ({type(exc).__name__}): wrong key or receive id") from None


def encrypt(message: bytes, encoding_aes_key: str, receive_id: str, random16: bytes) -> str:
    """What WeCom does to a message (the tests' fake builds its callbacks with it)."""
    if len(random16) != 16:
        raise ValueError("16 random bytes")
    plain = random16 + struct.pack(">I", len(message)) + message + receive_id.encode()
    pad = BLOCK - len(plain) % BLOCK
    plain += bytes([pad]) * pad
    key = aes_key(encoding_aes_key)
    return base64.b64encode(AES.new(key, AES.MODE_CBC, key[:16]).encrypt(plain)).decode()


def _declares(body: bytes) -> bool:
    """Any `<!` outside CDATA sections: a DOCTYPE, an ENTITY, a comment. A user's text (in CDATA) may hold
    `<!--` or `<!DOCTYPE` as words: that is no markup, and refusing it lost the message."""
    return _DECLARATION.search(_CDATA.sub(b"", body)) is not None


def guard_xml(body: bytes) -> str:
    """The body as text if it may be parsed at all: no DTD, no entity declaration, UTF-8 only.

    Runs before any parser sees the bytes, so XXE and billion-laughs bodies are refused unread."""
    if _declares(body):
        raise Refused(UNAUTHENTICATED, "XML with a <!DOCTYPE> or <!ENTITY> declaration refused unparsed")
    declared = _ENCODING.search(body[:200])
    if declared and declared.group(1).lower().replace(b"-", b"") != b"utf8":
        raise Refused(UNAUTHENTICATED, "XML not declared UTF-8 refused unparsed")
    try:
        return body.decode("utf-8")
    except UnicodeDecodeError:
        raise Refused(UNAUTHENTICATED, "XML that is not UTF-8 refused unparsed") from None


def read_xml(text: str) -> dict[str, object]:
    """A flat WeCom XML document → {tag: text}; a child with children of its own becomes a dict too.
    ValueError for anything else. Only for text that passed `guard_xml`."""
    if _declares(text.encode()):
        raise ValueError("declarations are not read")
    try:
        root = ElementTree.fromstring(text)
    except ElementTree.ParseError as exc:
        raise ValueError(f"not XML: {exc}") from None

    def value(node: ElementTree.Element, depth: int) -> object:
        children = list(node)
        if not children or depth > 3:
            return (node.text or "").strip()
        return {child.tag: value(child, depth + 1) for child in children}

    out = value(root, 0)
    if not isinstance(out, dict):
        raise ValueError("an empty XML document")
    return out
