"""The contract suite's WeCom driver: the robot on its long connection to the fake, the app's callback
behind a real aiohttp server, the fake app API.

Group messages and taps on group cards travel the robot's websocket; private messages and taps on
private cards travel the app's encrypted XML callback (the forgeries are posted there: the long
connection itself is authenticated by the robot's secret).

WeCom edits a card in place only while answering a tap on it (the robot within 5 s, the app with a
response_code), so the "update" of a robot copy changed elsewhere is its replacement: the same card,
current state, posted again in the same chat. `updates()` reports those (and the app's in-place
updates made with a send's response_code); `answered_card()` reports what a tap's own answer showed.
"""

from __future__ import annotations

import json
import re
import uuid
from datetime import datetime
from typing import Any

from collabbot.adapters.wecom import crypto, parse
from collabbot.adapters.wecom.inbound import ANSWER_WITHIN
from collabbot.bot.events import MessageEvent
from collabbot.storage.db import Database

from .. import fake_wecom as fw
from ..wecom_env import ORG, SCALED_LIMITS, WecomEnv, make_env
from .driver import Answer, Sample, Sent

NAMES = {p.name: p.ids["wecom"] for p in ORG.people}
AT_ALL = re.compile(r"<@\s*all\s*>|@all\b|\"@all\"|\$userName=", re.I)


class WecomDriver:
    platform = "wecom"
    deadline = 5.0
    limits = SCALED_LIMITS
    group = "wrgroup01"
    people = NAMES

    async def start(self, db: Database, start: datetime) -> None:
        self.env: WecomEnv = await make_env(db, start)
        self.db, self.bot, self.clock = db, self.env.bot, self.env.clock
        self.fake = self.env.fake
        self._taps: dict[str, str] = {}  # event id -> the app tap XML WeCom would send again
        assert self.deadline > ANSWER_WITHIN

    async def close(self) -> None:
        await self.env.close()

    def _text(self, text: str, mentions: tuple[str, ...]) -> str:
        return text.replace("{mentions}", " ".join(f"@{m}" for m in mentions))

    async def message(self, text: str, *, sender: str, mentions: tuple[str, ...] = (), event_id: str = "",
                      message_id: str = "", private: bool = False) -> Answer:
        body = self._text(text, mentions)
        msgid = message_id or event_id or uuid.uuid4().hex
        if private:
            status, answer = await self.env.app_says(fw.app_text(body, userid=NAMES[sender], msgid=msgid,
                                                                 create_time=int(self.clock.now().timestamp())))
            return Answer(status, answer)
        await self.env.robot_says(f"@协作机器人 {body}", userid=NAMES[sender], chatid=self.group, msgid=msgid)
        return Answer(200, None)

    async def forgeries(self, text: str, *, sender: str) -> list[tuple[str, Answer]]:
        now = self.clock.now().timestamp()
        xml = fw.app_text(self._text(text, ()), userid=NAMES[sender], create_time=int(now))
        query, body = fw.app_envelope(xml, at=now)
        forged = re.sub(r"msg_signature=[0-9a-f]+", "msg_signature=" + "0" * 40, query)
        _, other_body = fw.app_envelope(fw.app_text("新建任务 别的", userid=NAMES[sender]), at=now)
        doctype = b'<?xml version="1.0"?><!DOCTYPE xml [<!ENTITY x SYSTEM "file:///etc/passwd">]>' + body[5:]
        out = [
            ("forged signature", (forged, body)),
            ("body swapped under a valid signature", (query, other_body)),
            ("stale timestamp", fw.app_envelope(xml, at=now - 360)),
            ("timestamp from the future", fw.app_envelope(xml, at=now + 360)),
            ("unsigned", ("", body)),
            ("signed with another token", fw.app_envelope(xml, at=now, token="guessed")),
            ("another EncodingAESKey", fw.app_envelope(xml, at=now, key=fw.ROBOT_AES_KEY)),
            ("another CorpID inside", fw.app_envelope(xml, at=now, receive_id="ww_other")),
            ("a DOCTYPE around a valid envelope", (query, doctype)),
        ]
        answers = []
        for label, (q, b) in out:
            status, answer = await self.env.post_app(q, b)
            answers.append((label, Answer(status, answer)))
        return answers

    async def tap(self, sent: Sent, value: str, *, operator: str, event_id: str = "") -> Answer:
        task_id = parse.split_message_id(sent.message_id)[2]
        if sent.target == self.group:
            body = await self.fake.tap(task_id, value, userid=NAMES[operator], chatid=self.group,
                                       msgid=event_id or uuid.uuid4().hex)
            await self.env.settle()
            return Answer(200, body)
        key = event_id or uuid.uuid4().hex
        if key not in self._taps:  # a redelivery repeats WeCom's own XML, ResponseCode included
            code = self.fake.app_tap_code(task_id, NAMES[operator])
            self._taps[key] = fw.app_tap(task_id, value, userid=NAMES[operator], response_code=code,
                                         create_time=int(self.clock.now().timestamp()))
        status, text = await self.env.app_says(self._taps[key])
        clicks = self.fake.cards[task_id].changed("click")
        return Answer(status, {"answer": text, "card": clicks})

    def answered_card(self, answer: Answer) -> str | None:
        body = answer.body if isinstance(answer.body, dict) else {}
        if "template_card" in body:
            return json.dumps(body["template_card"], ensure_ascii=False)
        if body.get("card"):
            return json.dumps(body["card"][-1], ensure_ascii=False)
        return None

    def samples(self) -> list[Sample]:
        at = int(self.clock.now().timestamp())
        group = fw.robot_message("@协作机器人 我的任务", userid="lisi", chatid=self.group)  # no create_time: as documented
        mixed = dict(fw.robot_message("", userid="lisi", chatid=self.group, msgtype="mixed"),
                     mixed={"msg_item": [{"msgtype": "text", "text": {"content": "@协作机器人 我的任务"}},
                                         {"msgtype": "image", "image": {"url": "https://x/1"}}]})
        image = dict(fw.robot_message("", userid="lisi", chatid=self.group, msgtype="image"),
                     image={"url": "https://example.invalid/1", "aeskey": "k"})
        enter = {"msgid": "m1", "create_time": at, "aibotid": fw.BOT_ID, "chattype": "single",
                 "from": {"userid": "lisi"}, "msgtype": "event", "event": {"eventtype": "enter_chat"}}
        feedback = dict(enter, event={"eventtype": "feedback_event", "feedback_event": {"id": "f1", "type": 1}})
        return [
            Sample("robot text in a group", group, "event"),
            Sample("robot text in a single chat", fw.robot_message("我的任务", userid="lisi"), "event"),
            Sample("robot mixed (text and image)", mixed, "event"),
            Sample("robot image", image, "ignored"),
            Sample("robot template_card_event", fw.robot_tap("cb-1", "v1|ack|task|1|0", userid="lisi",
                                                             chatid=self.group), "tap"),
            Sample("robot enter_chat", enter, "ignored"),
            Sample("robot feedback_event", feedback, "ignored"),
            Sample("app text", fw.app_text("我的任务", userid="lisi", create_time=at), "event"),
            Sample("app template_card_event", fw.app_tap("cb-2", "v1|ack|task|1|0", userid="lisi",
                                                         response_code="rc-1", create_time=at), "tap"),
            Sample("app enter_agent", fw.app_event("enter_agent", userid="lisi", create_time=at), "ignored"),
            Sample("app image", fw.app_xml({"ToUserName": fw.CORP_ID, "FromUserName": "lisi", "CreateTime": at,
                                            "MsgType": "image", "PicUrl": "https://x/1", "MediaId": "m",
                                            "MsgId": "1", "AgentID": fw.AGENT_ID}), "ignored"),
        ]

    def parse(self, payload: Any) -> str:
        inbound = self.env.adapter.inbound
        if isinstance(payload, str):
            doc = crypto.read_xml(crypto.guard_xml(payload.encode()))
            what = parse.parse_app(doc, fw.CORP_ID, fw.AGENT_ID, inbound.directory).what
        else:
            what = parse.parse_robot(payload, inbound.directory, "协作机器人").what
        if isinstance(what, parse.Ignored):
            return "ignored"
        if isinstance(what, parse.Tap):
            return "tap"
        assert isinstance(what, MessageEvent)
        return "event"

    async def deliver(self) -> int:
        return await self.env.deliver()

    def sent(self, target: str | None = None) -> list[Sent]:
        out = []
        for m in sorted([("robot", p) for p in self.fake.pushes] + [("app", s) for s in self.fake.sent],
                        key=lambda x: x[1]["at"]):
            via, body = m
            where = body["chatid"] if via == "robot" else body["touser"]
            if target is not None and where != target:
                continue
            msgtype = body["msgtype"]
            content = body[msgtype]
            card = msgtype == "template_card"
            task_id = content["task_id"] if card else ""
            key = task_id or _key_of(via, body)
            message_id = (parse.robot_message_id(where, task_id) if via == "robot" else
                          parse.app_message_id(where, task_id)) if card else f"{via}|{where}|{body.get('msgid', '')}"
            buttons = tuple(b["key"] for b in content.get("button_list", [])) if card else ()
            out.append(Sent(message_id, where, json.dumps(content, ensure_ascii=False), key, card, buttons))
        return out

    def updates(self, message_id: str) -> list[str]:
        _, target, task_id = parse.split_message_id(message_id)
        card = self.fake.cards[task_id]
        title = card.versions[0][1]["main_title"]["title"]
        replaced = [c for c in self.fake.cards.values() if c.target == target and c.task_id != task_id
                    and c.versions[0][1]["main_title"]["title"] == title
                    and _sent_at(self.fake, c) > _sent_at(self.fake, card)]
        return [json.dumps(v, ensure_ascii=False) for v in card.changed("code")] + \
               [json.dumps(c.versions[0][1], ensure_ascii=False) for c in replaced]

    def send_times(self) -> list[tuple[str, float]]:
        return [("chat:" + p["chatid"], p["at"]) for p in self.fake.pushes] + \
               [("user:" + s["touser"], s["at"]) for s in self.fake.sent]

    def expire_tokens(self) -> None:
        self.fake.expire_tokens()

    def token_fetches(self) -> int:
        return self.env.adapter.client.token_fetches

    def mentions_everyone(self, rendered: str) -> bool:
        """WeCom mentions everyone with `<@all>` in markdown, `@all` in mentioned lists and `touser`, and
        `$userName=…$` is an id translation (off for us, but never let user text carry one)."""
        return bool(AT_ALL.search(rendered))

    def hostile_ids(self) -> list[str]:
        return ["@all", "all", "lisi|@all", "<@all>"]


def _key_of(via: str, body: dict[str, Any]) -> str:
    """A markdown message's key: the robot's request id (the row's own, repeated by a resend), or the app's
    duplicate check over its content (message/send has no request id)."""
    if via == "robot":
        return str(body.get("req_id", ""))
    if body.get("enable_duplicate_check") == 1:
        return "dup:" + json.dumps(body[body["msgtype"]], ensure_ascii=False, sort_keys=True)
    return ""


def _sent_at(fake: fw.FakeWecom, card: fw.Card) -> float:
    for item in fake.pushes + fake.sent:
        content = item.get("template_card") or {}
        if content.get("task_id") == card.task_id:
            return float(item["at"])
    return 0.0

