"""Our Feishu signature check and decryption, cross-checked with lark-oapi's own code on the same inputs."""

from __future__ import annotations

import json
import os
from datetime import UTC, datetime, timedelta

import pytest
from lark_oapi.core.model import RawRequest
from lark_oapi.core.utils import AESCipher
from lark_oapi.event.dispatcher_handler import EventDispatcherHandler

from collabbot.adapters.feishu import crypto

from . import feishu_callbacks as cb

NOW = datetime(2026, 12, 1, 1, 0, tzinfo=UTC)


def lark_verifies(headers: dict[str, str], raw: bytes, key: str) -> bool:
    request = RawRequest()
    request.headers, request.body = headers, raw
    try:
        EventDispatcherHandler()._verify_sign(request, key)
    except Exception:
        return False
    return True


@pytest.mark.parametrize("size", [0, 1, 15, 16, 17, 31, 32, 1000])
def test_our_encryption_decrypts_with_lark_oapi_and_theirs_with_ours(size: int) -> None:
    plain = os.urandom(size // 2).hex()[:size].encode()
    ours = crypto.encrypt(plain, cb.ENCRYPT_KEY, os.urandom(16))
    assert AESCipher(cb.ENCRYPT_KEY).decrypt_str(ours) == plain.decode()
    assert crypto.decrypt(ours, cb.ENCRYPT_KEY) == plain


def test_a_real_body_decrypts_alike() -> None:
    body = cb.message("@_user_1 帮助 <at user_id=\"all\"></at>", sender="ou_a", mentions=[("ou_bot", "bot")], at=NOW)
    _, raw = cb.envelope(body, at=NOW)
    encrypted = json.loads(raw)["encrypt"]
    assert json.loads(crypto.decrypt(encrypted, cb.ENCRYPT_KEY)) == json.loads(AESCipher(cb.ENCRYPT_KEY).decrypt_str(encrypted)) == body


def test_signature_agrees_with_lark_oapi() -> None:
    headers, raw = cb.envelope(cb.challenge(), at=NOW)
    assert lark_verifies(headers, raw, cb.ENCRYPT_KEY)
    crypto.check_signature(headers, raw, cb.ENCRYPT_KEY, NOW, 300)  # no exception
    tampered = raw.replace(b"=", b"A", 1) if b"=" in raw else raw + b" "
    assert not lark_verifies(headers, tampered, cb.ENCRYPT_KEY)
    with pytest.raises(crypto.CallbackRejected) as refused:
        crypto.check_signature(headers, tampered, cb.ENCRYPT_KEY, NOW, 300)
    assert refused.value.status == 401
    assert not lark_verifies(headers, raw, "another-key")
    with pytest.raises(crypto.CallbackRejected):
        crypto.check_signature(headers, raw, "another-key", NOW, 300)


def test_the_whole_envelope_passes_lark_oapis_dispatcher() -> None:
    """lark-oapi's full webhook path (token, decrypt, signature) accepts what the tests send."""
    seen: list[str] = []
    handler = (EventDispatcherHandler.builder(cb.ENCRYPT_KEY, cb.TOKEN)
               .register_p2_customized_event("im.message.receive_v1", lambda e: seen.append(e.header.event_id))
               .build())
    body = cb.message("帮助", sender="ou_a", chat_type="p2p", chat_id="oc_p2p", at=NOW, event_id="ev-1")
    headers, raw = cb.envelope(body, at=NOW)
    request = RawRequest()
    request.uri, request.headers, request.body = "/feishu/events", headers, raw
    response = handler.do(request)
    assert response.status_code == 200, response.content
    assert seen == ["ev-1"]


def test_stale_and_future_timestamps_are_refused_even_when_correctly_signed() -> None:
    for skew in (timedelta(minutes=-6), timedelta(minutes=6)):
        headers, raw = cb.envelope(cb.challenge(), at=NOW + skew)
        assert lark_verifies(headers, raw, cb.ENCRYPT_KEY)  # lark-oapi never looks at the age
        with pytest.raises(crypto.CallbackRejected, match="replay window"):
            crypto.check_signature(headers, raw, cb.ENCRYPT_KEY, NOW, 300)
    headers, raw = cb.envelope(cb.challenge(), at=NOW - timedelta(minutes=4))
    crypto.check_signature(headers, raw, cb.ENCRYPT_KEY, NOW, 300)


@pytest.mark.parametrize("missing", [crypto.TIMESTAMP_HEADER, crypto.NONCE_HEADER, crypto.SIGNATURE_HEADER])
def test_missing_headers_are_refused(missing: str) -> None:
    headers, raw = cb.envelope(cb.challenge(), at=NOW)
    del headers[missing]
    with pytest.raises(crypto.CallbackRejected):
        crypto.check_signature(headers, raw, cb.ENCRYPT_KEY, NOW, 300)


@pytest.mark.parametrize("encrypted", ["not base64!", "", "QUJD", crypto.encrypt(b"x", "other-key", b"0" * 16)[:-4] + "AAA="])
def test_malformed_ciphertext_is_a_400(encrypted: str) -> None:
    with pytest.raises(crypto.CallbackRejected) as refused:
        crypto.decrypt(encrypted, cb.ENCRYPT_KEY)
    assert refused.value.status == 400


def test_a_wrong_key_fails_the_padding_check_almost_always() -> None:
    failures = 0
    for _ in range(50):
        encrypted = crypto.encrypt(b'{"a": 1}', "other-key", os.urandom(16))
        try:
            crypto.decrypt(encrypted, cb.ENCRYPT_KEY)
        except crypto.CallbackRejected:
            failures += 1
    assert failures >= 40  # a random last byte is valid padding 1 time in ~16


def test_token_comparison() -> None:
    assert crypto.token_matches("abc", "abc")
    assert not crypto.token_matches("abc", "abd")
    assert not crypto.token_matches("abc", "")
    assert not crypto.token_matches("abc", None)
    assert not crypto.token_matches("abc", 123)
