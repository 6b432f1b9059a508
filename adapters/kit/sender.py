"""The base sender: one outbox row → one platform call, with every failure classified once.

A platform sender says how to post a message to a chat or a person and how to update a sent card
(`post`, `update`), and declares its rate limits. This base turns the row into a neutral `Message`,
picks the call, passes the installation-unique idempotency key, and maps whatever goes wrong:

* an `ApiError` the platform calls a throttle → `Throttled` (the row waits for the reset and
  spends no attempt);
* other `ApiError`s → a transient or permanent `DeliveryError`, as the client classified them;
* a network failure or timeout → transient;
* a rendering error, or a row we cannot read → permanent (retrying would only repeat it);
* anything else unexpected → transient, so a passing fault is retried and a lasting one ends dead
  after `max_attempts`, visible to an admin.
"""

from __future__ import annotations

import logging
from typing import Any

import aiohttp

from collabbot.adapters.kit.client import ApiError
from collabbot.bot.copies import UPDATE
from collabbot.bot.replies import Message
from collabbot.scheduler.delivery import DeliveryError, Throttled
from collabbot.scheduler.limits import Limit
from collabbot.storage.outbox import OutboxItem

log = logging.getLogger(__name__)


class RenderError(Exception):
    """A message that cannot be drawn for the platform: permanent."""


class PlatformSender:
    platform = ""
    limits: tuple[Limit, ...] = ()

    async def post(self, target_kind: str, target_id: str, message: Message, idempotency_key: str) -> str | None:
        """Post `message` to a chat or a user; the platform's message id."""
        raise NotImplementedError

    async def update(self, message_id: str, message: Message) -> None:
        """Show `message` in place of the sent message `message_id` (a card that changed)."""
        raise NotImplementedError

    async def send(self, item: OutboxItem) -> str | None:
        try:
            message = Message.from_json(item.payload)
        except (KeyError, TypeError, ValueError) as exc:
            raise DeliveryError(f"unreadable payload: {exc!r}", transient=False) from exc
        try:
            if item.target_kind == UPDATE:
                if message.card is None:
                    raise DeliveryError("an update row without a card", transient=False)
                await self.update(item.target_id, message)
                return item.target_id
            if item.target_kind not in ("chat", "user"):
                raise DeliveryError(f"unknown target kind {item.target_kind!r}", transient=False)
            return await self.post(item.target_kind, item.target_id, message, idempotency_key(item))
        except DeliveryError:
            raise
        except ApiError as exc:
            if exc.throttle:
                raise Throttled(str(exc), retry_after=exc.retry_after) from exc
            raise DeliveryError(str(exc), transient=exc.transient, retry_after=exc.retry_after) from exc
        except RenderError as exc:
            raise DeliveryError(f"cannot render {item.dedupe_key}: {exc}", transient=False) from exc
        except (TimeoutError, aiohttp.ClientError, OSError) as exc:
            raise DeliveryError(f"{exc!r}", transient=True) from exc
        except Exception as exc:
            log.exception("%s: unexpected error sending %s", self.platform, item.dedupe_key)
            raise DeliveryError(f"unexpected {exc!r}", transient=True) from exc


def idempotency_key(item: OutboxItem) -> str:
    """The installation-unique key of a row (its dedupe key alone would repeat across databases)."""
    key: Any = getattr(item, "idempotency_key", "")
    return key or item.dedupe_key


def render(fn: Any, *args: Any) -> Any:
    """Call a renderer; any error it raises is a `RenderError`."""
    try:
        return fn(*args)
    except Exception as exc:
        raise RenderError(repr(exc)) from exc
