"""The contract suite's DingTalk driver: the adapter in HTTP mode behind a real aiohttp server, the fake DingTalk.

HTTP mode because the suite posts forged callbacks, which only HTTP mode can receive (a Stream
socket is opened with the app's credentials); tests/test_dingtalk_stream.py covers Stream mode.
"""

from __future__ import annotations

import json
import re
from datetime import datetime, timedelta
from typing import Any

from collabbot.adapters.dingtalk import parse
from collabbot.adapters.dingtalk.sender import TEXT_KIND, limits_for
from collabbot.storage.db import Database

from .. import dingtalk_payloads as p
from ..dingtalk_env import GROUP, NAMES, DingTalkEnv, make_env
from .driver import Answer, Sample, Sent

AT_ALL = re.compile(r'"isAtAll"\s*:\s*true|"@ALL"', re.I)
SAMPLES = "dingtalk_samples.json"


class DingTalkDriver:
    platform = "dingtalk"
    deadline = 2.0
    group = GROUP
    people = NAMES

    async def start(self, db: Database, start: datetime) -> None:
        # the robot's per-group window shortened tenfold (20 per 6 s): the same pacing, a suite ten times faster
        self.env: DingTalkEnv = await make_env(db, start, group_limit_seconds=6)
        self.db, self.bot, self.clock = db, self.env.bot, self.env.clock
        self.limits = limits_for(self.env.adapter.settings)
        self.tracks: dict[str, str] = {}

    async def close(self) -> None:
        await self.env.close()

    def _message(self, text: str, sender: str, mentions: tuple[str, ...], event_id: str, message_id: str,
                 private: bool) -> dict[str, Any]:
        ids = [NAMES[m] for m in mentions]
        text = text.replace("{mentions}", " ".join(f"@{m}" for m in mentions))
        return p.robot_message(text, sender=NAMES[sender], at=self.clock.now(), group=not private,
                               conversation=f"cidPrivate{NAMES[sender]}" if private else GROUP, at_users=ids,
                               msg_id=message_id or event_id, webhook_base=self.env.fake.url)

    async def message(self, text: str, *, sender: str, mentions: tuple[str, ...] = (), event_id: str = "",
                      message_id: str = "", private: bool = False) -> Answer:
        status, body = await self.env.post(self._message(text, sender, mentions, event_id, message_id, private))
        return Answer(status, body)

    async def forgeries(self, text: str, *, sender: str) -> list[tuple[str, Answer]]:
        now = self.clock.now()
        body = self._message(text, sender, (), "", "", False)
        secret = self.env.fake.client_secret
        good = p.signed_headers(secret, now)
        cases = [
            ("sign by another secret", p.signed_headers("guessed-secret", now)),
            ("sign of another timestamp", dict(good, timestamp=str(int(good["timestamp"]) + 1))),
            ("stale timestamp", p.signed_headers(secret, now - timedelta(minutes=61))),
            ("timestamp from the future", p.signed_headers(secret, now + timedelta(minutes=61))),
            ("unsigned", {"Content-Type": "application/json"}),
            ("no timestamp", {"sign": good["sign"], "Content-Type": "application/json"}),
            ("timestamp not a number", dict(good, timestamp="17e11")),
        ]
        out = []
        for label, headers in cases:
            status, answer = await self.env.post(body, headers=headers)
            out.append((label, Answer(status, answer)))
        return out

    async def tap(self, sent: Sent, value: str, *, operator: str, event_id: str = "") -> Answer:
        group = sent.target == GROUP
        status, body = await self.env.post(p.card_callback(value, user=NAMES[operator], out_track_id=sent.message_id,
                                                           space_id=sent.target, group=group))
        return Answer(status, body)

    def answered_card(self, answer: Answer) -> str | None:
        data = answer.body.get("cardData") if isinstance(answer.body, dict) else None
        return json.dumps(data["cardParamMap"], ensure_ascii=False) if data else None

    def samples(self) -> list[Sample]:
        from pathlib import Path

        documented = json.loads((Path(__file__).parent.parent / SAMPLES).read_text(encoding="utf-8"))
        return [Sample(s["name"], s["payload"], s["expect"]) for s in documented]

    def parse(self, payload: Any) -> str:
        if "outTrackId" in payload:
            parse.parse_card_callback("sample", payload)
            return "tap"
        what = parse.parse_message(payload).what
        return "ignored" if isinstance(what, parse.Ignored) else "event"

    async def deliver(self) -> int:
        return await self.env.deliver()

    def sent(self, target: str | None = None) -> list[Sent]:
        out = []
        for m in self.env.fake.sent(target):
            content = m["content"]
            params = content.get("cardParamMap", {}) if m["kind"] == "card" else {}
            is_card = m["kind"] == "card" and params.get("kind") != TEXT_KIND  # text drawn as a card is text
            buttons = tuple(v for k, v in sorted(params.items()) if k.endswith("_action") and v)
            out.append(Sent(m["id"], m["target"], json.dumps(content, ensure_ascii=False),
                            m["id"] if m["kind"] == "card" else "", is_card, buttons))
        return out

    def updates(self, message_id: str) -> list[str]:
        return [json.dumps(u, ensure_ascii=False) for u in self.env.fake.messages[message_id]["updates"]]

    def send_times(self) -> list[tuple[str, float]]:
        out = []
        for call in self.env.fake.api_calls("POST", "/v1.0/"):
            body = call.body if isinstance(call.body, dict) else {}
            if call.status != 200 or call.path.endswith(("/accessToken", "/connections/open", "/ding/send")):
                continue
            target = body.get("openConversationId") or str(body.get("openSpaceId") or "").rsplit(".", 1)[-1] or \
                ",".join(body.get("userIds") or [])
            out.append((target, call.at))
        return out

    def expire_tokens(self) -> None:
        self.env.fake.expire_tokens()

    def token_fetches(self) -> int:
        return self.env.adapter.client.token_fetches

    def mentions_everyone(self, rendered: str) -> bool:
        """DingTalk mentions everyone with `isAtAll: true`, or "@ALL" among a card's atUserIds."""
        return bool(AT_ALL.search(rendered))

    def hostile_ids(self) -> list[str]:
        return ["@ALL", "@all", "all"]
