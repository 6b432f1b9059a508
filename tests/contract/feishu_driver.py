"""The contract suite's Feishu driver: the Feishu adapter behind a real aiohttp server, the fake Open API."""

from __future__ import annotations

import json
import re
import uuid
from datetime import datetime, timedelta
from typing import Any

from collabbot.adapters.feishu import crypto, parse
from collabbot.adapters.feishu.inbound import ANSWER_WITHIN
from collabbot.adapters.feishu.sender import LIMITS
from collabbot.bot.events import CardActionEvent, MemberEvent, MessageEvent
from collabbot.storage.db import Database

from .. import feishu_callbacks as cb
from ..feishu_env import ORG, FeishuEnv, make_env
from .driver import Answer, Sample, Sent

AT_ALL = re.compile(r'<at\s+(user_)?id\s*=\s*\\?["\']?all\b|"user_id"\s*:\s*"all"', re.I)
NAMES = {p.name: p.ids["feishu"] for p in ORG.people}


class FeishuDriver:
    platform = "feishu"
    deadline = 3.0
    limits = LIMITS
    group = "oc_group"
    people = NAMES

    async def start(self, db: Database, start: datetime) -> None:
        self.env: FeishuEnv = await make_env(db, start)
        self.db, self.bot, self.clock = db, self.env.bot, self.env.clock
        assert self.deadline > ANSWER_WITHIN

    async def close(self) -> None:
        await self.env.close()

    async def _post(self, body: dict[str, Any], **kw: Any) -> Answer:
        status, answer = await self.env.post(body, **kw)
        return Answer(status, answer)

    def _message(self, text: str, sender: str, mentions: tuple[str, ...], event_id: str, message_id: str,
                 private: bool) -> dict[str, Any]:
        people = [(NAMES[m], m) for m in mentions]
        if private:
            return cb.message(text, sender=NAMES[sender], chat_id=f"oc_p2p_{NAMES[sender]}", chat_type="p2p",
                              mentions=people, at=self.clock.now(), event_id=event_id or None,
                              message_id=message_id or None)
        placeholders = " ".join(f"@_user_{i}" for i in range(2, len(people) + 2))
        return cb.message(f"@_user_1 {text.replace('{mentions}', placeholders)}", sender=NAMES[sender],
                          chat_id=self.group, mentions=[("ou_bot", "协作机器人"), *people], at=self.clock.now(),
                          event_id=event_id or None, message_id=message_id or None)

    async def message(self, text: str, *, sender: str, mentions: tuple[str, ...] = (), event_id: str = "",
                      message_id: str = "", private: bool = False) -> Answer:
        return await self._post(self._message(text, sender, mentions, event_id, message_id, private))

    async def forgeries(self, text: str, *, sender: str) -> list[tuple[str, Answer]]:
        now = self.clock.now()
        body = self._message(text, sender, (), "", "", False)
        headers, raw = cb.envelope(body, at=now)
        forged = dict(headers, **{crypto.SIGNATURE_HEADER: crypto.signature(
            headers[crypto.TIMESTAMP_HEADER], headers[crypto.NONCE_HEADER], "guessed-key", raw)})
        swapped = json.dumps({"encrypt": crypto.encrypt(b'{"schema": "2.0"}', cb.ENCRYPT_KEY, b"1" * 16)}).encode()
        bad_padding = json.dumps({"encrypt": crypto.encrypt(b"x", "another-key", b"2" * 16)}).encode()
        wrong_token = dict(body, header=dict(body["header"], token="nope"))
        out = [("forged signature", await self.env.post_raw(forged, raw)),
               ("body swapped under a valid signature", await self.env.post_raw(headers, swapped)),
               ("stale timestamp", await self.env.post(body, at=now - timedelta(minutes=6))),
               ("timestamp from the future", await self.env.post(body, at=now + timedelta(minutes=6))),
               ("unsigned", await self.env.post(body, signed=False)),
               ("unsigned, bad padding", await self.env.post_raw({"Content-Type": "application/json"}, bad_padding)),
               ("unsigned, not JSON inside", await self.env.post_raw({"Content-Type": "application/json"}, json.dumps(
                   {"encrypt": crypto.encrypt(b"not json", cb.ENCRYPT_KEY, b"3" * 16)}).encode())),
               ("wrong verification token", await self.env.post(wrong_token)),
               ("another encrypt key", await self.env.post(body, key="another-key"))]
        return [(label, Answer(status, answer)) for label, (status, answer) in out]

    async def tap(self, sent: Sent, value: str, *, operator: str, event_id: str = "") -> Answer:
        chat = self.group if sent.target == self.group else f"oc_p2p_{sent.target}"
        return await self._post(cb.card_action({"action": value}, operator=NAMES[operator],
                                               message_id=sent.message_id, chat_id=chat, at=self.clock.now(),
                                               event_id=event_id or None))

    def answered_card(self, answer: Answer) -> str | None:
        card = answer.body.get("card") if isinstance(answer.body, dict) else None
        return json.dumps(card["data"], ensure_ascii=False) if card else None

    def samples(self) -> list[Sample]:
        now = self.clock.now()
        return [
            Sample("im.message.receive_v1 text in a group", cb.message(
                "@_user_1 我的任务", sender="ou_li", mentions=[("ou_bot", "bot")], at=now), "event"),
            Sample("im.message.receive_v1 text in a p2p chat", cb.message(
                "我的任务", sender="ou_li", chat_id="oc_p2p", chat_type="p2p", at=now), "event"),
            Sample("im.message.receive_v1 rich text (post)", cb.message(
                "", sender="ou_li", chat_type="p2p", at=now, message_type="post",
                content={"title": "", "content": [[{"tag": "text", "text": "我的任务"}]]}), "event"),
            Sample("im.message.receive_v1 image", cb.message(
                "", sender="ou_li", at=now, message_type="image", content={"image_key": "img_1"}), "ignored"),
            Sample("card.action.trigger", cb.card_action({"action": "v1|ack|task|1|0"}, operator="ou_li",
                                                         message_id="om_1", chat_id="oc_group", at=now), "tap"),
            Sample("im.chat.member.bot.added_v1", cb.bot_member("oc_new", "新群", added=True, operator="ou_li",
                                                                at=now), "member"),
            Sample("im.chat.member.bot.deleted_v1", cb.bot_member("oc_new", "新群", added=False, operator="ou_li",
                                                                  at=now), "member"),
            Sample("approval_instance (schema 1.0), not linked", cb.approval_instance("CODE", "INST", "APPROVED"),
                   "ignored"),
            Sample("url_verification", cb.challenge(), "challenge"),
            Sample("im.message.message_read_v1", {"schema": "2.0", "header": cb.header(
                "im.message.message_read_v1", at=now), "event": {"reader": {}, "message_id_list": []}}, "ignored"),
        ]

    def parse(self, payload: Any) -> str:
        what = self.env.adapter.inbound.parse(payload).what
        kinds: list[tuple[type, str]] = [(parse.Challenge, "challenge"), (parse.Ignored, "ignored"),
                                         (parse.CardTap, "tap"), (MessageEvent, "event"), (MemberEvent, "member"),
                                         (parse.ApprovalInstance, "approval"), (CardActionEvent, "tap")]
        return next(name for cls, name in kinds if isinstance(what, cls))

    async def deliver(self) -> int:
        return await self.env.deliver()

    def sent(self, target: str | None = None) -> list[Sent]:
        out = []
        for m in self.env.fake.sent(target):
            content = m["content"]
            buttons = tuple(cb.button_values(content)) if m["msg_type"] == "interactive" else ()
            out.append(Sent(m["message_id"], m["receive_id"], json.dumps(content, ensure_ascii=False), m["uuid"],
                            m["msg_type"] == "interactive", buttons))
        return out

    def updates(self, message_id: str) -> list[str]:
        return [json.dumps(u, ensure_ascii=False) for u in self.env.fake.messages[message_id]["updates"]]

    def send_times(self) -> list[tuple[str, float]]:
        return [(c.query.get("receive_id_type", "") + ":" + (c.body or {}).get("receive_id", ""), c.at)
                for c in self.env.fake.api_calls("POST", "/open-apis/im/v1/messages") if c.code == 0]

    def expire_tokens(self) -> None:
        self.env.fake.expire_tokens()

    def token_fetches(self) -> int:
        return self.env.adapter.client.token_fetches

    def mentions_everyone(self, rendered: str) -> bool:
        """Feishu mentions everyone through `<at user_id="all">` in text, `<at id=all>` in card markdown,
        and an `at` element with user_id all in post content (发送消息 → 消息内容介绍)."""
        return bool(AT_ALL.search(rendered))

    def hostile_ids(self) -> list[str]:
        return ["all", "@all", "ou_" + uuid.uuid4().hex[:4] + '"><at user_id="all">']
