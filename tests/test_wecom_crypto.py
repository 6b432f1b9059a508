"""WeCom callback security: our crypto against wechatpy's and WeCom's documented vector; the app callback's
order (hostile XML refused unparsed, signature before decryption); the robot's URL callback."""

from __future__ import annotations

import json
import os
import time
from collections.abc import AsyncIterator
from datetime import datetime
from xml.etree import ElementTree

import pytest
from wechatpy.enterprise.crypto import WeChatCrypto

from collabbot.adapters.kit.webhook import Refused
from collabbot.adapters.wecom import crypto
from collabbot.storage.db import Database
from collabbot.storage.models import InboundReceipt, Task

from . import fake_wecom as fw
from .conftest import TZ
from .wecom_env import WecomEnv, count, make_env

START = datetime(2026, 12, 1, 9, 0, tzinfo=TZ)

# WeCom's documented sample (加解密库 Sample: 验证回调URL): these parameters, this echostr, this plaintext
DOC_TOKEN = "hJqcu3uJ9Tn2gXPmxx2w9kkCkCE2EPYo"
DOC_KEY = "6qkdMrq68nTKduznJYO1A37W2oEgpkMUvkttRToqhUt"
DOC_CORP = "ww1436e0e65a779aee"
DOC_ECHO = "fsi1xnbH4yQh0+PJxcOdhhK6TDXkjMyhEPA7xB2TGz6b+g7xyAbEkRxN/3cNXW9qdqjnoVzEtpbhnFyq6SVHyA=="


def test_wecoms_documented_vector_verifies_and_decrypts() -> None:
    assert crypto.signature(DOC_TOKEN, "1476416373", "47744683", DOC_ECHO) == "012bc692d0a58dd4b10f8dfe5c4ac00ae211ebeb"
    assert crypto.decrypt(DOC_ECHO, DOC_KEY, DOC_CORP) == "1288432023552776189"
    with pytest.raises(Refused):
        crypto.decrypt(DOC_ECHO, DOC_KEY, "ww_someone_else")  # the CorpID check


def test_wechatpy_and_ours_agree_both_ways() -> None:
    message = "<xml><ToUserName><![CDATA[ww1436e0e65a779aee]]></ToUserName><Content><![CDATA[新建任务 设计]]></Content></xml>"
    theirs = WeChatCrypto(DOC_TOKEN, DOC_KEY, DOC_CORP)
    envelope = ElementTree.fromstring(theirs.encrypt_message(message, "nonce1", "1476416373"))
    encrypted = envelope.findtext("Encrypt") or ""
    # their envelope: our signature equals theirs, and ours decrypts it
    assert crypto.signature(DOC_TOKEN, "1476416373", "nonce1", encrypted) == envelope.findtext("MsgSignature")
    assert crypto.decrypt(encrypted, DOC_KEY, DOC_CORP) == message
    # our envelope: theirs verifies and decrypts it
    ours = crypto.encrypt(message.encode(), DOC_KEY, DOC_CORP, os.urandom(16))
    xml = f"<xml><Encrypt><![CDATA[{ours}]]></Encrypt></xml>"
    assert theirs.decrypt_message(xml, crypto.signature(DOC_TOKEN, "1", "n", ours), "1", "n") == message
    # the robot's receive id is empty, the same scheme
    robot = crypto.encrypt(b'{"msgtype": "text"}', DOC_KEY, "", os.urandom(16))
    assert crypto.decrypt(robot, DOC_KEY, "") == '{"msgtype": "text"}'


def test_signature_is_checked_in_time_and_window() -> None:
    now = datetime.fromtimestamp(1476416373 + 100, TZ)
    crypto.check_signature(DOC_TOKEN, "012bc692d0a58dd4b10f8dfe5c4ac00ae211ebeb", "1476416373", "47744683", DOC_ECHO,
                           now, 300)
    for given, ts, window in (("0" * 40, "1476416373", 300), ("012bc692d0a58dd4b10f8dfe5c4ac00ae211ebeb", "1476416373", 60)):
        with pytest.raises(Refused):
            crypto.check_signature(DOC_TOKEN, given, ts, "47744683", DOC_ECHO, now, window)


@pytest.mark.parametrize("body", [
    b'<?xml version="1.0"?><!DOCTYPE xml [<!ENTITY xxe SYSTEM "file:///etc/passwd">]><xml><Encrypt>&xxe;</Encrypt></xml>',
    b'<?xml version="1.0"?><!DOCTYPE lolz [<!ENTITY lol "lol"><!ENTITY lol2 "&lol;&lol;&lol;&lol;&lol;&lol;">'
    b'<!ENTITY lol3 "&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;">]><xml><Content>&lol3;</Content></xml>',
    b'<xml><!ENTITY x "y"><Content>1</Content></xml>',
    '<?xml version="1.0" encoding="UTF-16"?><xml/>'.encode("utf-16"),
    b'<?xml version="1.0" encoding="ISO-8859-1"?><xml/>',
])
def test_hostile_xml_is_refused_before_any_parser(body: bytes) -> None:
    with pytest.raises(Refused):
        crypto.guard_xml(body)
    assert crypto.read_xml(crypto.guard_xml(b"<xml><A><![CDATA[x]]></A></xml>")) == {"A": "x"}


@pytest.fixture
async def env(sqlite_db: Database) -> AsyncIterator[WecomEnv]:
    e = await make_env(sqlite_db, START)
    yield e
    await e.close()


async def test_hostile_bodies_are_refused_fast_with_nothing_parsed_and_the_process_stays_up(env: WecomEnv) -> None:
    query, genuine = fw.app_envelope(fw.app_text("我的任务", userid="zhangsan"),
                                     at=env.clock.now().timestamp())
    laughs = (b'<?xml version="1.0"?><!DOCTYPE lolz [<!ENTITY lol "lol">' +
              b"".join(b'<!ENTITY lol%d "%s">' % (i, (b"&lol%d;" % (i - 1) if i > 1 else b"&lol;") * 10)
                       for i in range(1, 10)) + b"]><xml><Encrypt>&lol9;</Encrypt></xml>")
    xxe = b'<!DOCTYPE xml [<!ENTITY e SYSTEM "file:///etc/passwd">]>' + genuine
    big = b"<xml><Encrypt><![CDATA[" + b"A" * (10 * 1024 * 1024) + b"]]></Encrypt></xml>"
    sent = 0
    for name, body in (("billion laughs", laughs), ("XXE around a valid envelope", xxe), ("10 MB", big)):
        times = []
        for _ in range(3):  # the best of three: one measurement on a loaded machine is the machine's
            started = time.monotonic()
            status, _ = await env.post_app(query, body)
            times.append(time.monotonic() - started)
            sent += 1
            assert status in (401, 413), name
            if times[-1] < 0.1:
                break
        assert min(times) < 0.1, (name, times)
        print(f"\n{name}: refused ({status}) in {min(times) * 1000:.1f} ms")
    assert env.adapter.webhooks.refused == sent
    assert count(env.db, InboundReceipt) == 0
    status, _ = await env.post_app(query, genuine)  # still up, and the genuine one works
    assert status == 200 and count(env.db, InboundReceipt) == 1


def test_markup_words_inside_cdata_are_text_but_outside_it_are_refused() -> None:
    for words in ("看这个 <!-- 注释", "提醒<!重要>明天交", "<!DOCTYPE 只是文字", "<![CDATA[ 套娃"):
        body = f"<xml><Content><![CDATA[{words}]]></Content></xml>".encode()
        assert crypto.read_xml(crypto.guard_xml(body)) == {"Content": words}
    for body in (b"<xml><!-- c --><A>1</A></xml>", b"<xml><A><![CDATA[x]]></A><!DOCTYPE y></xml>",
                 b"<xml><A><![CDATA[never closed</A></xml>"):
        with pytest.raises(Refused):
            crypto.guard_xml(body)


async def test_a_message_whose_words_look_like_markup_is_taken_and_one_with_markup_is_not_retried(
        env: WecomEnv) -> None:
    """Users paste HTML and write <!重要>: signed by WeCom, it is their text, not an attack. An authenticated
    document that is really unreadable is answered 200, since a retry would be refused the same way."""
    at = env.clock.now().timestamp()
    for i, words in enumerate(("我的任务 <!-- 注释", "我的任务 <!DOCTYPE html>")):
        status, _ = await env.post_app(*fw.app_envelope(fw.app_text(words, userid="zhangsan", msgid=f"m{i}"), at=at))
        assert status == 200
    await env.adapter.inbound.drain()
    assert count(env.db, InboundReceipt) == 2
    refused = env.adapter.webhooks.refused
    status, _ = await env.post_app(*fw.app_envelope("<!DOCTYPE x><xml><A>1</A></xml>", at=at))
    assert status == 200 and env.adapter.webhooks.refused == refused and count(env.db, InboundReceipt) == 2


async def test_url_verification_answers_the_plaintext_and_refuses_a_forgery(env: WecomEnv) -> None:
    at = env.clock.now().timestamp()
    query = fw.echo_query("echo-4711", token=fw.APP_TOKEN, key=fw.APP_AES_KEY, receive_id=fw.CORP_ID, at=at)
    started = time.monotonic()
    response = await env.http.get(f"{env.adapter.settings.app_path}?{query}")
    assert response.status == 200 and await response.text() == "echo-4711"
    assert time.monotonic() - started < 1.0
    forged = fw.echo_query("echo-4711", token="guess", key=fw.APP_AES_KEY, receive_id=fw.CORP_ID, at=at)
    response = await env.http.get(f"{env.adapter.settings.app_path}?{forged}")
    assert response.status == 401


async def test_the_robot_url_callback_checks_before_parsing_and_answers_a_tap_encrypted(sqlite_db: Database) -> None:
    env = await make_env(sqlite_db, START, robot_mode="callback", robot_token=fw.ROBOT_TOKEN,
                         robot_encoding_aes_key=fw.ROBOT_AES_KEY)
    try:
        path = env.adapter.settings.robot_path
        at = env.clock.now().timestamp()
        body = fw.robot_message("@协作机器人 新建任务 设计 负责人 @李四 截止 12-10", userid="zhangsan", chatid="wrcb",
                                create_time=int(at))
        body["response_url"] = env.fake.url + "/cgi-bin/aibot/response?code=1"
        query, raw = fw.robot_envelope(body, at=at)
        while b"\\/" not in raw:  # WeCom's JSON may escape the base64's "/": read as JSON, not matched as bytes
            query, raw = fw.robot_envelope(body, at=at)
        response = await env.http.post(f"{path}?{query}", data=raw)
        await env.adapter.inbound.drain()
        assert response.status == 200 and count(env.db, Task) == 1
        plain = fw.robot_message("@协作机器人 新建任务 评审 负责人 @李四 截止 12-11", userid="zhangsan", chatid="wrcb",
                                 create_time=int(at))
        query2, raw2 = fw.robot_envelope(plain, at=at, escape_slashes=False)
        response = await env.http.post(f"{path}?{query2}", data=raw2)
        await env.adapter.inbound.drain()
        assert response.status == 200 and count(env.db, Task) == 2
        # not {"encrypt": …} exactly, or signed with another token: refused, nothing parsed or done
        for q, b in ((query, b'{"encrypt": "x", "other": 1}'),
                     (fw.robot_envelope(body, at=at, token="guess")[0], raw)):
            response = await env.http.post(f"{path}?{q}", data=b)
            assert response.status == 401
        assert count(env.db, Task) == 2
        # the tap's answer rides on the response, encrypted and signed with our token
        await env.deliver()
        card = next(m["template_card"] for m in env.fake.sent if m["touser"] == "lisi" and m["msgtype"] == "template_card")
        ack = next(b["key"] for b in card["button_list"] if "|ack|" in b["key"])
        tap = fw.robot_tap("cb-group-copy", ack, userid="lisi", chatid="wrcb")
        query, raw = fw.robot_envelope(tap, at=at)
        response = await env.http.post(f"{path}?{query}", data=raw)
        answer = await response.json()
        assert isinstance(answer["timestamp"], str)  # as WeCom's sample reply writes it
        assert crypto.signature(fw.ROBOT_TOKEN, answer["timestamp"], answer["nonce"], answer["encrypt"]) == \
            answer["msgsignature"]
        inner = json.loads(crypto.decrypt(answer["encrypt"], fw.ROBOT_AES_KEY, ""))
        assert inner["response_type"] == "update_template_card" and inner["template_card"]["task_id"] == "cb-group-copy"
        assert ack not in json.dumps(inner, ensure_ascii=False)  # acknowledged: the card no longer offers it
        # callback mode cannot push: the one response_url answered one row, the rest are refused and logged
        assert len(env.fake.calls_to("/cgi-bin/aibot/response")) == 1
    finally:
        await env.close()
