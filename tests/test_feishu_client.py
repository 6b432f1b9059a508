"""The Feishu API client against the local fake: token life, refresh on "invalid", limits and errors."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest

from collabbot.adapters.feishu.client import FeishuApiError, FeishuClient, message_uuid
from collabbot.adapters.feishu.config import parse_settings

from .fake_feishu import FakeFeishu
from .media_checks import tiny_png


class Ticker:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
async def fake() -> AsyncIterator[FakeFeishu]:
    server = FakeFeishu()
    await server.start()
    yield server
    await server.close()


def make_client(fake: FakeFeishu, ticker: Ticker | None = None, **extra: object) -> FeishuClient:
    settings = parse_settings({"app_id": "cli_test", "app_secret": "test-secret", "verification_token": "t",
                               "base_url": fake.url, **extra})
    return FeishuClient(settings, monotonic=ticker or Ticker())


async def send(client: FeishuClient, key: str = "k:1", chat: str = "oc_1") -> str:
    return await client.send_message("chat_id", chat, "text", {"text": "hi"}, message_uuid(key))


async def test_token_is_fetched_once_for_concurrent_calls_and_sent_as_bearer(fake: FakeFeishu) -> None:
    client = make_client(fake)
    try:
        ids = await asyncio.gather(*(send(client, f"k:{i}") for i in range(10)))
    finally:
        await client.close()
    assert len(set(ids)) == 10
    assert len(fake.api_calls("POST", "/open-apis/auth/v3/")) == 1
    token_call = fake.api_calls("POST", "/open-apis/auth/v3/")[0]
    assert token_call.body == {"app_id": "cli_test", "app_secret": "test-secret"} and token_call.auth == ""
    sends = fake.api_calls("POST", "/open-apis/im/v1/messages")
    assert {c.auth for c in sends} == {"Bearer t-fake-1"}
    assert all(c.query == {"receive_id_type": "chat_id"} for c in sends)


async def test_token_is_refreshed_ten_minutes_before_it_expires(fake: FakeFeishu) -> None:
    ticker = Ticker()
    client = make_client(fake, ticker)
    try:
        await send(client, "a")
        ticker.now += 7200 - 601
        await send(client, "b")
        assert client.token_fetches == 1
        ticker.now += 2
        await send(client, "c")
        assert client.token_fetches == 2
    finally:
        await client.close()


@pytest.mark.parametrize("how", ["http_200", "http_400", "99991668"])
async def test_an_invalid_token_is_refreshed_once_and_the_call_repeated(fake: FakeFeishu, how: str) -> None:
    client = make_client(fake)
    try:
        await send(client, "a")
        if how == "http_200":
            fake.fail("token_expired")  # code 99991663 with HTTP 200
        elif how == "http_400":
            fake.expire_tokens()  # the fake answers HTTP 400, code 99991663
        else:
            fake.fail("tenant_token_invalid")  # another token-invalid code the official SDK refreshes on
        await send(client, "b")
    finally:
        await client.close()
    assert client.token_fetches == 2
    codes = [c.code for c in fake.api_calls("POST", "/open-apis/im/v1/messages")]
    assert codes == [0, 99991668 if how == "99991668" else 99991663, 0]


async def test_a_token_refused_twice_is_not_fetched_in_a_loop(fake: FakeFeishu) -> None:
    client = make_client(fake)
    try:
        await send(client, "a")
        fake.fail("token_expired", times=5)
        with pytest.raises(FeishuApiError) as err:
            await send(client, "b")
    finally:
        await client.close()
    assert err.value.transient and err.value.code == 99991663
    assert client.token_fetches == 2


async def test_rate_limits_server_errors_and_permanent_errors(fake: FakeFeishu) -> None:
    client = make_client(fake)
    try:
        fake.fail("rate_limit")
        with pytest.raises(FeishuApiError) as err:
            await send(client)
        assert (err.value.transient, err.value.retry_after, err.value.status, err.value.code) == (True, 2.0, 429, 99991400)
        fake.fail("chat_rate_limit")
        with pytest.raises(FeishuApiError) as err:
            await send(client)
        assert err.value.transient and err.value.code == 230020 and err.value.retry_after == 1.0
        fake.fail("busy")
        with pytest.raises(FeishuApiError) as err:
            await send(client)
        assert err.value.transient and err.value.throttle and err.value.code == 11232 and err.value.retry_after == 1.0
        fake.fail("server_error")
        with pytest.raises(FeishuApiError) as err:
            await send(client)
        assert err.value.transient and err.value.status == 502
        fake.fail("bot_not_in_chat")
        with pytest.raises(FeishuApiError) as err:
            await send(client)
        assert not err.value.transient and err.value.code == 230002
    finally:
        await client.close()


async def test_timeouts_and_refused_connections_are_transient(fake: FakeFeishu) -> None:
    client = make_client(fake)
    client.base_url = "http://127.0.0.1:1"  # nothing listens there
    try:
        with pytest.raises(FeishuApiError) as err:
            await send(client)
    finally:
        await client.close()
    assert err.value.transient


async def test_uuid_is_the_dedupe_key_or_its_hash_when_too_long(fake: FakeFeishu) -> None:
    short = "nag:task:12:assign:3:1:chat"
    long = "escalate:approval:123456:approval_step:987654:boss:" + "x" * 40
    assert message_uuid(short) == short
    assert len(message_uuid(long)) == 50 and message_uuid(long) == message_uuid(long) != message_uuid(long + "y")
    assert len(message_uuid("提醒:1")) <= 50 and message_uuid("提醒:1").isascii()
    client = make_client(fake)
    try:
        first = await client.send_message("open_id", "ou_a", "text", {"text": "x"}, message_uuid(long))
        again = await client.send_message("open_id", "ou_a", "text", {"text": "x"}, message_uuid(long))
    finally:
        await client.close()
    assert first == again and len(fake.sent()) == 1  # Feishu sends one message per uuid


async def test_card_update_urgent_image_and_bot_info(fake: FakeFeishu) -> None:
    client = make_client(fake)
    try:
        message_id = await client.send_message("open_id", "ou_a", "interactive", {"schema": "2.0"}, "k")
        await client.update_card(message_id, {"schema": "2.0", "header": {"title": {"content": "done"}}})
        assert await client.urgent_app(message_id, ["ou_a"]) == []
        key = await client.upload_image(tiny_png(), "weekly.png")
        assert await client.bot_open_id() == "ou_bot"
        with pytest.raises(FeishuApiError):
            await client.update_card("om_missing", {})
    finally:
        await client.close()
    message = fake.messages[message_id]
    assert message["updates"] == [{"schema": "2.0", "header": {"title": {"content": "done"}}}]
    assert message["urgent"] == ["ou_a"]
    assert fake.images[key] == len(tiny_png()) and fake.image_sizes[key] == (4, 3)


async def test_bodies_go_as_utf8_so_a_chinese_card_is_measured_as_feishu_measures_it(fake: FakeFeishu) -> None:
    """Feishu limits a card's request body to 30 KB. 8,000 Chinese characters are 24 KB in UTF-8 (as the
    SDK sends them) but 48 KB escaped as \\uXXXX: only the UTF-8 body gets through."""
    client = make_client(fake)
    try:
        card = {"schema": "2.0", "body": {"elements": [{"tag": "markdown", "content": "进度" * 4000}]}}
        assert await client.send_message("chat_id", "oc_1", "interactive", card, message_uuid("k:big"))
        [call] = fake.api_calls("POST", "/open-apis/im/v1/messages")
        assert 24_000 < call.size < 30 * 1024 and "进度".encode() in call.body["content"].encode()
        with pytest.raises(FeishuApiError) as refused:  # the limit itself holds
            await client.send_message("chat_id", "oc_1", "interactive", {"c": "进度" * 6000}, message_uuid("k:bigger"))
        assert refused.value.code == 230025
    finally:
        await client.close()
