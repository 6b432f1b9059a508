"""Feishu callbacks built the way Feishu builds them: schema 2.0 bodies, AES-encrypted and signed.

The shapes follow Feishu's event documents (im.message.receive_v1, card.action.trigger,
im.chat.member.bot.added_v1, approval instance events); the envelope is
{"encrypt": base64(IV ‖ AES-256-CBC(sha256(key), body))} and the headers carry
X-Lark-Signature = sha256(timestamp + nonce + encrypt_key + raw body).
"""

from __future__ import annotations

import json
import os
import uuid
from datetime import datetime
from typing import Any

from collabbot.adapters.feishu import crypto

ENCRYPT_KEY = "test-encrypt-key-7f3a"
TOKEN = "test-verification-token"
APP_ID = "cli_test"


def header(event_type: str, event_id: str | None = None, *, token: str = TOKEN, at: datetime | None = None) -> dict[str, Any]:
    millis = int((at.timestamp() if at else 0) * 1000)
    return {"event_id": event_id or uuid.uuid4().hex, "event_type": event_type, "create_time": str(millis),
            "token": token, "app_id": APP_ID, "tenant_key": "tenant-1"}


def user_id(open_id: str) -> dict[str, str]:
    return {"union_id": f"on_{open_id[3:]}", "user_id": open_id[3:], "open_id": open_id}


def message(text: str, *, sender: str, chat_id: str = "oc_group", chat_type: str = "group",
            mentions: list[tuple[str, str]] = (), at: datetime, event_id: str | None = None,
            message_id: str | None = None, token: str = TOKEN, message_type: str = "text",
            content: dict[str, Any] | None = None) -> dict[str, Any]:
    """A message event; `mentions` are (open_id, name) for @_user_1, @_user_2, … in that order."""
    millis = str(int(at.timestamp() * 1000))
    return {
        "schema": "2.0",
        "header": header("im.message.receive_v1", event_id, token=token, at=at),
        "event": {
            "sender": {"sender_id": user_id(sender), "sender_type": "user", "tenant_key": "tenant-1"},
            "message": {
                "message_id": message_id or f"om_{uuid.uuid4().hex[:24]}", "root_id": "", "parent_id": "",
                "create_time": millis, "update_time": millis, "chat_id": chat_id, "chat_type": chat_type,
                "message_type": message_type,
                "content": json.dumps(content if content is not None else {"text": text}, ensure_ascii=False),
                "mentions": [{"key": f"@_user_{i}", "id": user_id(oid), "name": name, "tenant_key": "tenant-1"}
                             for i, (oid, name) in enumerate(mentions, 1)],
                "user_agent": "Mozilla/5.0 Lark/7.20",
            },
        },
    }


def card_action(value: Any, *, operator: str, message_id: str, chat_id: str, at: datetime,
                event_id: str | None = None, form: dict[str, str] | None = None) -> dict[str, Any]:
    action: dict[str, Any] = {"value": value, "tag": "button"}
    if form:
        action["form_value"] = form
    return {
        "schema": "2.0",
        "header": header("card.action.trigger", event_id, at=at),
        "event": {
            "operator": {"tenant_key": "tenant-1", "user_id": operator[3:], "open_id": operator,
                         "union_id": f"on_{operator[3:]}"},
            "token": "c-" + uuid.uuid4().hex, "action": action, "host": "im_message",
            "context": {"open_message_id": message_id, "open_chat_id": chat_id},
        },
    }


def bot_member(chat_id: str, name: str, *, added: bool, operator: str, at: datetime) -> dict[str, Any]:
    kind = "added" if added else "deleted"
    return {"schema": "2.0", "header": header(f"im.chat.member.bot.{kind}_v1", at=at),
            "event": {"chat_id": chat_id, "operator_id": user_id(operator), "external": False,
                      "operator_tenant_key": "tenant-1", "name": name}}


def chat_disbanded(chat_id: str, name: str, *, operator: str, at: datetime) -> dict[str, Any]:
    """群解散 (im.chat.disbanded_v1), sent to every app whose bot was in the group."""
    return {"schema": "2.0", "header": header("im.chat.disbanded_v1", at=at),
            "event": {"chat_id": chat_id, "operator_id": user_id(operator), "external": False,
                      "operator_tenant_key": "tenant-1", "name": name, "i18n_names": {"zh_cn": name}}}


def approval_instance(approval_code: str, instance_code: str, status: str) -> dict[str, Any]:
    """The approval app's schema 1.0 event (审批实例状态变更)."""
    return {"uuid": uuid.uuid4().hex, "token": TOKEN, "ts": "1700000000.1", "type": "event_callback",
            "event": {"app_id": APP_ID, "approval_code": approval_code, "instance_code": instance_code,
                      "status": status, "operate_time": "1700000000000", "tenant_key": "tenant-1",
                      "type": "approval_instance"}}


def challenge(token: str = TOKEN) -> dict[str, Any]:
    return {"challenge": "ajls384kdjx98XX", "token": token, "type": "url_verification"}


def envelope(body: dict[str, Any], *, at: datetime, key: str = ENCRYPT_KEY, signed: bool = True,
             nonce: str | None = None) -> tuple[dict[str, str], bytes]:
    """(headers, raw body) of the POST Feishu makes for `body`."""
    raw = json.dumps({"encrypt": crypto.encrypt(json.dumps(body, ensure_ascii=False).encode(), key, os.urandom(16))}).encode()
    headers = {"Content-Type": "application/json; charset=utf-8"}
    if signed:
        timestamp, nonce = str(int(at.timestamp())), nonce or uuid.uuid4().hex[:16]
        headers.update({crypto.TIMESTAMP_HEADER: timestamp, crypto.NONCE_HEADER: nonce,
                        crypto.SIGNATURE_HEADER: crypto.signature(timestamp, nonce, key, raw)})
    return headers, raw


def button_values(card: Any) -> list[str]:
    """Every callback value found in a rendered card (strings, or the strings inside value objects)."""
    found: list[str] = []

    def walk(node: Any) -> None:
        if isinstance(node, dict):
            for behavior in node.get("behaviors") or []:
                if isinstance(behavior, dict) and behavior.get("type") == "callback":
                    value = behavior.get("value")
                    found.extend([value] if isinstance(value, str) else
                                 [v for v in value.values() if isinstance(v, str)] if isinstance(value, dict) else [])
            if "value" in node and node.get("tag") == "button":
                value = node["value"]
                found.extend([value] if isinstance(value, str) else
                             [v for v in value.values() if isinstance(v, str)] if isinstance(value, dict) else [])
            for child in node.values():
                walk(child)
        elif isinstance(node, list):
            for child in node:
                walk(child)

    walk(card)
    return list(dict.fromkeys(found))
