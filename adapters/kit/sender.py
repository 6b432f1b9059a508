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

A platform that changes a sent message only for so long after sending it (`updates_within`: Feishu,
14 days) is not asked to change an older one: that update is done, with nothing to send, rather than
a refusal that would end as a dead row for the admin to wonder about.
"""

from __future__ import annotations

import asyncio
import logging
from datetime import datetime, timedelta
from typing import Any

import aiohttp

from collabbot.adapters.hub import OutboxItem
from collabbot.adapters.kit.client import ApiError
from collabbot.adapters.kit.media import Media
from collabbot.bot.copies import COPY_SENT_AT, UPDATE
from collabbot.bot.replies import Message
from collabbot.scheduler.delivery import DeliveryError, Throttled
from collabbot.scheduler.limits import Limit

log = logging.getLogger(__name__)
IMAGE_THROTTLE_TRIES = 3  # a chart image refused by the chat's rate limit is tried this often, a second apart


class RenderError(Exception):
    """A message that cannot be drawn for the platform: permanent."""


class PlatformSender:
    platform = ""
    limits: tuple[Limit, ...] = ()
    media: Media = Media()  # `serve` gives each sender the one of its config
    native_charts = False  # the platform draws a card's bars itself (no chart image needed)
    file_limit = 0  # the largest file the platform takes (bytes); 0: files go as download links
    updates_within: timedelta | None = None  # how long after sending a message may still be changed (None: always)

    def paced_as(self, target_kind: str, target_id: str) -> tuple[str, str]:
        """Whose limits a row counts against: its own target; a platform whose card updates are new
        messages to the copy's chat or person says so for `update` rows."""
        return target_kind, target_id

    async def post(self, target_kind: str, target_id: str, message: Message, idempotency_key: str) -> str | None:
        """Post `message` to a chat or a user; the platform's message id."""
        raise NotImplementedError

    async def update(self, message_id: str, message: Message) -> None:
        """Show `message` in place of the sent message `message_id` (a card that changed)."""
        raise NotImplementedError

    # --- attachments: a platform that sends images and files implements these ---------------------
    async def upload_image(self, png: bytes, name: str, target_kind: str) -> str:
        """Upload a PNG for a message to `target_kind` (chat | user); the platform's key (image_key, media_id)."""
        raise NotImplementedError

    async def post_image(self, target_kind: str, target_id: str, key: str, idempotency_key: str) -> str | None:
        raise NotImplementedError

    async def upload_file(self, data: bytes, name: str, target_kind: str) -> str:
        raise NotImplementedError

    async def post_file(self, target_kind: str, target_id: str, key: str, name: str,
                        idempotency_key: str) -> str | None:
        raise NotImplementedError

    def takes_images(self, target_kind: str) -> bool:
        return True

    def takes_files(self, target_kind: str) -> bool:
        return self.file_limit > 0

    async def deliver(self, target_kind: str, target_id: str, message: Message, key: str) -> str | None:
        """A message and its attachment. The chart is drawn and uploaded before anything is posted, so a
        failed upload shows nothing; the image follows the card. A file goes as a file message, or where
        the platform cannot take it (too big, or not in that kind of chat) as a signed link."""
        attachment = message.attachment
        if attachment is not None and attachment.kind == "file":
            path = self.media.file_of(attachment)
            size = path.stat().st_size
            if self.takes_files(target_kind) and size <= self.file_limit:
                data = await asyncio.to_thread(path.read_bytes)
                file_key = await self.upload_file(data, attachment.name, target_kind)
                return await self.post_file(target_kind, target_id, file_key, attachment.name, key)
            log.info("%s: %s (%d bytes) goes to %s %s as a link", self.platform, attachment.ref, size, target_kind,
                     target_id)
            return await self.post(target_kind, target_id, self.media.link_message(attachment), key)
        image = ""
        chart = self.media.chart_of(message, native=self.native_charts) if self.takes_images(target_kind) else None
        if chart is not None:
            png = await self.media.png(chart)
            if png is not None:
                image = await self.upload_image(png, (attachment.name if attachment else "") or "chart.png", target_kind)
        message_id = None
        if message.parts or message.card is not None:
            message_id = await self.post(target_kind, target_id, message, key)
        if image and not (message.parts or message.card is not None):  # the picture is the message
            return await self.post_image(target_kind, target_id, image, f"{key}:chart")
        if image:
            await self._image_after(target_kind, target_id, image, key)
        return message_id

    async def _image_after(self, target_kind: str, target_id: str, image: str, key: str) -> None:
        """The chart after its card. The card is out: retrying the row would post it again (WeCom refuses a
        card's task_id twice, a robot's text has no idempotency key), so a picture that fails now is logged,
        not retried, except for the chat's rate limit: the card took the slot the row was paced for, and
        the picture waits a moment for the next."""
        for attempt in range(IMAGE_THROTTLE_TRIES):
            try:
                await self.post_image(target_kind, target_id, image, f"{key}:chart")
                return
            except ApiError as exc:
                if not exc.throttle or attempt == IMAGE_THROTTLE_TRIES - 1:
                    log.warning("%s: the chart image after %s was not sent (the card was): %s", self.platform, key,
                                exc)
                    return
                await asyncio.sleep(min(exc.retry_after or 1.0, 2.0))
            except (DeliveryError, TimeoutError, aiohttp.ClientError, OSError) as exc:
                log.warning("%s: the chart image after %s was not sent (the card was): %s", self.platform, key, exc)
                return

    async def send(self, item: OutboxItem) -> str | None:
        try:
            message = Message.from_json(item.payload)
        except (KeyError, TypeError, ValueError) as exc:
            raise DeliveryError(f"unreadable payload: {exc!r}", transient=False) from exc
        try:
            if item.target_kind == UPDATE:
                if message.card is None:
                    raise DeliveryError("an update row without a card", transient=False)
                if self._too_old(item):
                    log.info("%s: %s was sent more than %s before %s; not changed", self.platform, item.target_id,
                             self.updates_within, item.dedupe_key)
                    return item.target_id
                await self.update(item.target_id, message)
                return item.target_id
            if item.target_kind not in ("chat", "user"):
                raise DeliveryError(f"unknown target kind {item.target_kind!r}", transient=False)
            return await self.deliver(item.target_kind, item.target_id, message, idempotency_key(item))
        except DeliveryError:
            raise
        except ApiError as exc:
            if exc.throttle:
                raise Throttled(str(exc), retry_after=exc.retry_after) from exc
            raise DeliveryError(str(exc), transient=exc.transient, retry_after=exc.retry_after,
                                unreachable=exc.unreachable) from exc
        except RenderError as exc:
            raise DeliveryError(f"cannot render {item.dedupe_key}: {exc}", transient=False) from exc
        except (TimeoutError, aiohttp.ClientError, OSError) as exc:
            raise DeliveryError(f"{exc!r}", transient=True) from exc
        except Exception as exc:
            log.exception("%s: unexpected error sending %s", self.platform, item.dedupe_key)
            raise DeliveryError(f"unexpected {exc!r}", transient=True) from exc


    def _too_old(self, item: OutboxItem) -> bool:
        """Whether the message an update row changes was sent longer than `updates_within` before the change."""
        sent_at = item.payload.get(COPY_SENT_AT)
        if self.updates_within is None or not isinstance(sent_at, str):
            return False
        try:
            sent = datetime.fromisoformat(sent_at)  # written from an aware time (bot/copies.py), as created_at is
        except ValueError:
            return False
        return item.created_at - sent > self.updates_within


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
