"""Groups the bot has lost (removed from them, the group disbanded, the platform refusing the bot there)
and groups it is back in.

A lost group gets nothing more: every rule and reply skips a chat that is not `active`. That alone would
be silent, and the project's daily prompt and weekly summary would stop without anyone knowing why, so
the coordinator hears it once when the project's last group is gone, in working time, with what to type:
add the bot back, or bind the project in another group (`bind_project` lets its coordinator move it).
"""

from __future__ import annotations

import logging
from datetime import datetime

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from collabbot.bot import people, texts
from collabbot.bot.context import Engine
from collabbot.bot.replies import Message
from collabbot.storage import outbox
from collabbot.storage.models import Chat, Project, ProjectArchive, User

log = logging.getLogger(__name__)

REMOVED, DISBANDED, REFUSED = "removed", "disbanded", "refused"  # why a group was lost


def lost(s: Session, bot: Engine, chat: Chat, now: datetime, why: str, key: str) -> None:
    """Mark `chat` lost for `why`; tell its project's coordinator when it was the project's last group.
    `key` tells this loss from an earlier one of the same group (one already lost is told nothing again)."""
    if not chat.active:
        return
    chat.active = False
    log.warning("%s group %s (%s) is lost: %s", chat.platform, chat.platform_chat_id, chat.name or "-", why)
    project = s.get(Project, chat.project_id) if chat.project_id is not None else None
    if project is None or _closed(s, project):
        return  # no project, or a closed one: nothing is chased there any more
    if s.scalar(select(func.count()).select_from(Chat).where(Chat.project_id == project.id, Chat.active.is_(True),
                                                             Chat.id != chat.id)):
        return  # the project still has a group to speak in
    told = _who_hears(s, project)
    if told is None:
        log.warning("project %s lost its last group and has nobody active to tell", project.id)
        return
    lang = bot.config.language
    text = texts.t(lang, f"group_lost_{why}", chat=chat.name or chat.platform_chat_id, project=project.name)
    when = now if bot.calendar.is_working_time(now) else bot.calendar.next_working_moment(now)
    people.post_to_user(s, told, Message((text,)), f"group-lost:{chat.id}:{key}", now, platform=chat.platform,
                        not_before=when)


def joined(s: Session, bot: Engine, chat: Chat, now: datetime, key: str) -> None:
    """The bot was added to `chat`: a new group is asked to bind a project; a group whose open project it
    had lost hears that the project's messages come here again."""
    back(chat)
    project = s.get(Project, chat.project_id) if chat.project_id is not None else None
    if project is not None and _closed(s, project):
        project = None  # its project is closed: the group starts afresh
    lang = bot.config.language
    text = texts.t(lang, "group_back", project=project.name) if project is not None else texts.t(lang, "welcome")
    outbox.enqueue(s, dedupe_key=f"welcome:{chat.id}:{key}", platform=chat.platform, target_kind="chat",
                   target_id=chat.platform_chat_id, target_name=chat.name, payload=Message((text,)).to_json(), now=now)


def back(chat: Chat) -> None:
    """Someone wrote to the bot in `chat`, so it is in the group again (platforms without a "bot added"
    event say so only this way)."""
    if not chat.active:
        log.warning("%s group %s (%s) reaches the bot again", chat.platform, chat.platform_chat_id, chat.name or "-")
        chat.active = True


def _who_hears(s: Session, project: Project) -> User | None:
    """The coordinator, or while there is none (or they have left) whoever bound the project."""
    creator = s.get(User, project.created_by_id) if project.created_by_id is not None else None
    for user in (project.coordinator, creator):
        if user is not None and user.left_at is None:
            return user
    return None


def _closed(s: Session, project: Project) -> bool:
    return s.scalar(select(ProjectArchive.id).where(ProjectArchive.project_id == project.id)) is not None
