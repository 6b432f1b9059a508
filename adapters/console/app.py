"""The console platform: talk to the bot as any member of an org, with a clock you move yourself.

It is a real adapter with no network: lines become neutral events for `Bot.handle`, the delivery
worker drains the outbox through `ConsoleSender`, which prints every message with its time and
target, and cards as text with their buttons. `wait` runs the rule sweeps and deliveries for the
time that passes, stepping from one due moment to the next, so nags and summaries appear at the
minutes they would happen.
"""

from __future__ import annotations

import asyncio
import re
import uuid
from dataclasses import dataclass, field, replace
from datetime import timedelta

from collabbot.adapters.console import transcript as tr
from collabbot.adapters.hub import OutboxItem
from collabbot.bot.app import Bot
from collabbot.bot.clock import ManualClock
from collabbot.bot.copies import UPDATE
from collabbot.bot.events import CardActionEvent, ChatRef, MessageEvent, UserRef, mention_marker, strip_markers
from collabbot.bot.org import CONSOLE, Org
from collabbot.bot.replies import Card, Message, Reply
from collabbot.cards.render import render_text
from collabbot.scheduler.delivery import DeliveryWorker


@dataclass
class ShownCard:
    target: tuple[str, str]  # (chat | user, platform id)
    card: Card
    message_id: str = ""


@dataclass
class ConsoleSender:
    """Prints what the bot sends and remembers the cards, so `tap` can find their buttons."""

    clock: ManualClock
    tz: object
    platform: str = CONSOLE
    out: list[str] = field(default_factory=list)
    cards: list[ShownCard] = field(default_factory=list)

    def stamp(self) -> str:
        return self.clock.now().astimezone(self.tz).strftime("%m-%d %H:%M")  # type: ignore[arg-type]

    async def send(self, item: OutboxItem) -> str | None:
        message = Message.from_json(item.payload)
        if item.target_kind == UPDATE:  # another copy of a tapped card: changed in place, silently
            for shown in self.cards:
                if shown.message_id == item.target_id and message.card is not None:
                    shown.card = message.card
            return item.target_id
        target = item.target_name if item.target_kind == "chat" else f"{item.target_name}（私聊）"
        text = message.plain_text
        self.out.append(f"[{self.stamp()}] → {target}: {text}".rstrip())
        if message.card is not None:
            self.show_card(message.card)
            self.cards.append(ShownCard((item.target_kind, item.target_id), message.card, f"console-{item.id}"))
        return f"console-{item.id}"

    def show_card(self, card: Card, prefix: str = "  ") -> None:
        for line in render_text(card).splitlines():
            self.out.append(prefix + line)


class Console:
    def __init__(self, bot: Bot, clock: ManualClock, org: Org, worker_settings=None) -> None:
        self.bot = bot
        self.clock = clock
        self.org = org
        self.tz = bot.calendar.tz
        self.sender = ConsoleSender(clock, self.tz)
        # The console's clock is manual, so the platforms' real-time rate limits make no sense here.
        settings = worker_settings or replace(bot.config.delivery, per_chat_per_minute=10**9, per_platform_per_second=0)
        self.worker = DeliveryWorker(bot.db, {CONSOLE: self.sender}, settings, clock, calendar=bot.calendar)
        self.bot_name = bot.config.bot_name
        names = sorted((p.name for p in org.people), key=len, reverse=True)
        self._mention = re.compile("@(" + "|".join(re.escape(n) for n in names) + ")") if names else None

    # --- output ---------------------------------------------------------------------------------
    def take_output(self) -> list[str]:
        out, self.sender.out = self.sender.out, []
        return out

    # --- steps ----------------------------------------------------------------------------------
    def run(self, step: tr.Step) -> None:
        if isinstance(step, tr.SetClock):
            self.clock.set(step.when.replace(tzinfo=self.tz))  # type: ignore[arg-type]
            self.settle()
        elif isinstance(step, tr.Wait):
            self.advance(step.delta)
        elif isinstance(step, tr.Say):
            self._check_person(step.person, step.chat)
            self.bot.handle(self._message(step))
            self.settle()
        elif isinstance(step, tr.Tap):
            self._check_person(step.person, step.chat)
            self._tap(step)
            self.settle()

    def _check_person(self, person: str, chat: str | None) -> None:
        if self.org.person(person) is None:
            raise tr.TranscriptError(f"no person named {person!r} in the org file")
        if chat is not None:
            c = self.org.chat(chat)
            if c is None:
                raise tr.TranscriptError(f"no chat named {chat!r} in the org file")
            if c.members and person not in c.members:
                raise tr.TranscriptError(f"{person} is not a member of {chat}")

    def _chat_ref(self, chat: str | None, person: str) -> ChatRef:
        if chat is None:
            return ChatRef(CONSOLE, f"dm:{person}", person, is_group=False)
        return ChatRef(CONSOLE, chat, chat, is_group=True)

    def _message(self, step: tr.Say) -> MessageEvent:
        text = strip_markers(step.text)
        to_bot = step.chat is None
        bot_at = f"@{self.bot_name}"
        if bot_at in text:
            to_bot = True
            text = text.replace(bot_at, " ")
        mentions: list[UserRef] = []
        if self._mention is not None:
            def repl(m: re.Match[str]) -> str:
                mentions.append(UserRef(CONSOLE, m.group(1), m.group(1)))
                return f" {mention_marker(len(mentions) - 1)} "
            text = self._mention.sub(repl, text)
        return MessageEvent(event_id=uuid.uuid4().hex, chat=self._chat_ref(step.chat, step.person),
                            sender=UserRef(CONSOLE, step.person, step.person), text=text.strip(),
                            mentions=tuple(mentions), to_bot=to_bot)

    def _tap(self, step: tr.Tap) -> None:
        target = ("chat", step.chat) if step.chat is not None else ("user", step.person)
        for shown in reversed(self.sender.cards):
            if shown.target != target:
                continue
            if step.entity is not None and not shown.card.key.endswith(f":{step.entity}"):
                continue
            button = next((b for b in shown.card.buttons if b.label == step.label), None)
            if button is None:
                continue
            event = CardActionEvent(event_id=uuid.uuid4().hex, chat=self._chat_ref(step.chat, step.person),
                                    sender=UserRef(CONSOLE, step.person, step.person), value=button.value,
                                    message_id=shown.message_id)
            self._show_reply(step.person, shown, self.bot.handle(event))
            return
        where = step.chat or f"{step.person}（私聊）"
        raise tr.TranscriptError(f"no card in {where} has a button labelled {step.label!r}")

    def _show_reply(self, person: str, shown: ShownCard, reply: Reply) -> None:
        if reply.toast:
            self.sender.out.append(f"[{self.sender.stamp()}] ⤷ 仅 {person} 可见: {reply.toast}")
        if reply.card is not None:
            shown.card = reply.card
            self.sender.out.append(f"[{self.sender.stamp()}] ↻ 卡片已更新:")
            self.sender.show_card(reply.card)

    # --- time -----------------------------------------------------------------------------------
    def settle(self) -> None:
        """Run the rules due now and deliver everything due now."""
        self.bot.sweep(self.clock.now())
        asyncio.run(self.worker.drain())

    def advance(self, delta: timedelta) -> None:
        end = self.clock.now() + delta
        while True:
            due = self.bot.next_due(self.clock.now())
            if due is None or due > end:
                break
            self.clock.set(max(due, self.clock.now()))
            self.settle()
        self.clock.set(end)
        self.settle()
