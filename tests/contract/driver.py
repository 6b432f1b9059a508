"""What the contract suite needs from each platform: one `Driver` per platform, around its own fake.

A driver starts the platform's adapter behind a real aiohttp server (or its long connection) with
the engine on a real database, and speaks the platform's protocol exactly as the platform does:
callbacks built, signed and encrypted as the platform builds them, sends recorded by the
platform's fake API. The contract tests only ever talk to a driver, so a new platform passes the
same tests by writing its driver (and its fake), nothing else.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any, Protocol

from collabbot.bot.app import Bot
from collabbot.bot.clock import ManualClock
from collabbot.scheduler.limits import Limit
from collabbot.storage.db import Database


@dataclass(frozen=True)
class Answer:
    status: int
    body: Any


@dataclass(frozen=True)
class Sample:
    """A documented callback shape: what the parser must make of it ("event", "tap", "member",
    "approval", "challenge", or "ignored" with the reason it is ignored on purpose)."""

    name: str
    payload: Any
    expect: str


@dataclass(frozen=True)
class Sent:
    """One message as the fake platform recorded it."""

    message_id: str
    target: str  # the platform's chat or user id
    rendered: str  # the content as sent (JSON text or markdown), for "no @all" checks
    idempotency_key: str
    is_card: bool
    buttons: tuple[str, ...]  # the button values (packed card actions) it carries


class Driver(Protocol):
    platform: str
    deadline: float  # seconds the platform allows for a callback's answer
    limits: tuple[Limit, ...]
    db: Database
    bot: Bot
    clock: ManualClock
    group: str  # the platform id of the test's group chat
    people: dict[str, str]  # a person's name in the test org -> their platform id

    async def start(self, db: Database, start: datetime) -> None: ...

    async def close(self) -> None: ...

    async def message(self, text: str, *, sender: str, mentions: tuple[str, ...] = (), event_id: str = "",
                      message_id: str = "", private: bool = False) -> Answer:
        """A genuine message to the bot (@mentioning it in the group unless `private`); names are people."""
        ...

    async def forgeries(self, text: str, *, sender: str) -> list[tuple[str, Answer]]:
        """The same message forged every way the platform's security rules refuse (bad signature,
        stale or future timestamp, unsigned, another key, wrong token...), each posted once: (label, answer)."""
        ...

    async def tap(self, sent: Sent, value: str, *, operator: str, event_id: str = "") -> Answer:
        """Tap a button of a sent card; the same `event_id` again is the platform's redelivery."""
        ...

    def answered_card(self, answer: Answer) -> str | None:
        """The updated card carried by a tap's answer, rendered as text, or None."""
        ...

    def samples(self) -> list[Sample]: ...

    def parse(self, payload: Any) -> str:
        """What the adapter's parser makes of a sample: one of Sample.expect's words."""
        ...

    async def deliver(self) -> int: ...

    def sent(self, target: str | None = None) -> list[Sent]: ...

    def updates(self, message_id: str) -> list[str]:
        """The rendered updates the fake recorded for a sent message, oldest first."""
        ...

    def send_times(self) -> list[tuple[str, float]]:
        """(target, monotonic time) of every accepted send, to check the declared limits."""
        ...

    def expire_tokens(self) -> None: ...

    def token_fetches(self) -> int: ...

    def mentions_everyone(self, rendered: str) -> bool:
        """Would the platform read this sent content as a mention of everyone?"""
        ...

    def hostile_ids(self) -> list[str]:
        """Platform ids a hostile payload could use to mention everyone."""
        ...
