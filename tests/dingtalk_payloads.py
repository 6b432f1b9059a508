"""DingTalk payloads as DingTalk sends them (机器人接收消息, 卡片回调), and the HTTP-mode sign, for tests."""

from __future__ import annotations

import base64
import hashlib
import hmac
import itertools
import json
from datetime import datetime, timedelta
from typing import Any

from collabbot.adapters.dingtalk import sign

ROBOT_ID = "$:LWCP_v1:$robot"
_ids = itertools.count(1)


def _ms(at: datetime) -> int:
    return int(at.timestamp() * 1000)


def robot_message(text: str, *, sender: str, at: datetime, conversation: str = "cidGroup", group: bool = True,
                  at_users: list[str] | None = None, to_robot: bool = True, msg_id: str = "", webhook_base: str = "",
                  msgtype: str = "text", content: Any = None, title: str = "项目群") -> dict[str, Any]:
    """A robot message; `at_users` are staffIds the text @mentions (as "@<staffId>" tokens or by nick)."""
    users = [{"dingtalkId": f"$:LWCP_v1:${u}", "staffId": u} for u in at_users or []]
    if group and to_robot:
        users = [{"dingtalkId": ROBOT_ID}, *users]
    data: dict[str, Any] = {
        "conversationId": conversation, "atUsers": users, "chatbotCorpId": "dingcorp", "chatbotUserId": ROBOT_ID,
        "msgId": msg_id or f"msg{next(_ids):06d}", "senderNick": sender, "isAdmin": False, "senderStaffId": sender,
        "sessionWebhookExpiredTime": _ms(at + timedelta(minutes=90)), "createAt": _ms(at), "senderCorpId": "dingcorp",
        "conversationType": "2" if group else "1", "senderId": f"$:LWCP_v1:${sender}",
        "sessionWebhook": f"{webhook_base or 'https://oapi.dingtalk.com'}/robot/sendBySession?session=s{next(_ids)}",
        "robotCode": "dingtestapp", "msgtype": msgtype,
    }
    if group:
        data["conversationTitle"] = title
        data["isInAtList"] = to_robot
    if msgtype == "text":
        data["text"] = {"content": text}
    elif content is not None:
        data["content"] = content
    return data


def card_callback(value: str, *, user: str, out_track_id: str, space_id: str = "cidGroup",
                  group: bool = True, http: bool = False) -> dict[str, Any]:
    """A card tap as the stream delivers it; `http`: as 事件回调 documents the HTTP POST body, which says
    nothing of where the card is (no spaceType or spaceId)."""
    body = {"extension": json.dumps({}), "corpId": "dingcorp", "type": "actionCallback", "userId": user,
            "userIdType": 1, "spaceType": "IM_GROUP" if group else "IM_ROBOT", "spaceId": space_id,
            "content": json.dumps({"cardPrivateData": {"actionIds": ["btn1"], "params": {"action": value}}}),
            "outTrackId": out_track_id}
    if http:
        del body["spaceType"], body["spaceId"], body["userIdType"]
    return body


def signed_headers(secret: str, at: datetime) -> dict[str, str]:
    timestamp = str(_ms(at))
    return {"timestamp": timestamp, "sign": sign.sign(timestamp, secret), "Content-Type": "application/json"}


def card_signed_headers(api_secret: str, at: datetime) -> dict[str, str]:
    """互动卡片 回调签名: base64(HMAC-SHA256(key = apiSecret, msg = the millisecond timestamp))."""
    timestamp = str(_ms(at))
    digest = hmac.new(api_secret.encode(), timestamp.encode(), hashlib.sha256).digest()
    return {"x-ddpaas-signature-timestamp": timestamp, "x-ddpaas-signature": base64.b64encode(digest).decode(),
            "Content-Type": "application/json"}
