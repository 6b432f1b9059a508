"""People and places: who a platform identity is, who is an admin, where a private message goes.

Both the engine (`Bot`) and a handler's `Ctx` need these; they live here so neither imports the other.
"""

from __future__ import annotations

import logging
from collections.abc import Collection
from datetime import datetime

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from collabbot.bot.events import ChatRef, UserRef
from collabbot.bot.known import Known
from collabbot.bot.replies import Message
from collabbot.storage import outbox
from collabbot.storage.models import Chat, Department, Identity, User

log = logging.getLogger(__name__)


def safe_name(name: str) -> str:
    """A display name from the network, stripped of control characters and capped."""
    return "".join(ch for ch in name if ch.isprintable())[:60].strip()


def is_admin(s: Session, user: User, admins: Collection[str]) -> bool:
    """`admins` lists platform identities, "platform:id" (the config's `bot.admins`, names resolved at load):
    matched by identity only, so a second person with an admin's name is not an admin."""
    if not admins:
        return False
    ids = s.execute(select(Identity.platform, Identity.platform_user_id).where(Identity.user_id == user.id))
    return any(f"{platform}:{ident}" in admins for platform, ident in ids)


def platform_id(s: Session, user: User, platform: str) -> str:
    """The user's id on `platform`, or "" when they have none there (found ids are remembered for the
    rest of the transaction: one command asks for the same people several times)."""
    known: dict[tuple[int, str], str] = s.info.setdefault("platform_ids", {})
    if (user.id, platform) in known:
        return known[(user.id, platform)]
    found = s.scalar(select(Identity.platform_user_id).where(Identity.user_id == user.id,
                                                             Identity.platform == platform)) or ""
    if found:
        known[(user.id, platform)] = found
    return found


def _by_identity(s: Session, ref: UserRef) -> User | None:
    """One query: the user with this identity (a joined select, not the identity and then its user)."""
    return s.scalar(select(User).join(Identity, Identity.user_id == User.id)
                    .where(Identity.platform == ref.platform, Identity.platform_user_id == ref.platform_user_id))


def resolve_user(s: Session, ref: UserRef, now: datetime, known: Known | None = None) -> User:
    """The user behind a platform identity; someone never seen before is created on the fly. `known`:
    this process's memory of identities, asked first and taught what is read."""
    user = known.get(s, User, ref.platform, ref.platform_user_id) if known is not None else False
    if not user:
        user = _by_identity(s, ref)
        if user is not None and known is not None:
            known.learn(s, User, ref.platform, ref.platform_user_id, user)
    if user is not None:
        s.info.setdefault("platform_ids", {})[(user.id, ref.platform)] = ref.platform_user_id
        if user.name == ref.platform_user_id[:40] and safe_name(ref.name):
            # known only by their id (no sync lists them: outside its scope): the first name the platform gives
            user.name = safe_name(ref.name)
        return user
    name = safe_name(ref.name) or ref.platform_user_id[:40]
    try:
        with s.begin_nested():
            user = User(name=name, created_at=now)
            s.add(user)
            s.flush()
            s.add(Identity(platform=ref.platform, platform_user_id=ref.platform_user_id, user_id=user.id))
            s.flush()
        return user
    except IntegrityError:
        # their first two messages arrived at once and the other one created them: use that one
        user = _by_identity(s, ref)
        if user is None:
            raise
        return user


def find_chat(s: Session, ref: ChatRef, known: Known | None = None) -> Chat | None:
    """The group we know behind a platform chat, or None (a private chat, or a group never seen)."""
    if not ref.platform_chat_id:
        return None
    chat = known.get(s, Chat, ref.platform, ref.platform_chat_id) if known is not None else False
    if chat is False:
        chat = s.scalar(select(Chat).where(Chat.platform == ref.platform,
                                           Chat.platform_chat_id == ref.platform_chat_id))
        if known is not None:
            known.learn(s, Chat, ref.platform, ref.platform_chat_id, chat)
    return chat


def resolve_chat(s: Session, ref: ChatRef, known: Known | None = None) -> Chat | None:
    """The group behind a platform chat (created on first contact); None for a private chat."""
    if not ref.is_group:
        return None
    chat = find_chat(s, ref, known)
    if chat is None:
        try:
            with s.begin_nested():
                chat = Chat(platform=ref.platform, platform_chat_id=ref.platform_chat_id, name=ref.name[:200],
                            active=True)
                s.add(chat)
                s.flush()
            return chat
        except IntegrityError:  # two first messages in a new group: the other one created it
            chat = find_chat(s, ref)
            if chat is None:
                raise
    if ref.name and chat.name != ref.name[:200]:
        chat.name = ref.name[:200]
    return chat


def post_to_user(s: Session, user: User, message: Message, key: str, now: datetime, *,
                 platform: str | None = None, not_before: datetime | None = None) -> bool:
    """Queue a private message to `user` on `platform` (or wherever they have an identity)."""
    target: tuple[str, str] | None
    if platform:  # read once per transaction (`platform_id`): Ctx.tell_user has just asked for it
        found = platform_id(s, user, platform)
        target = (platform, found) if found else None
    else:
        row = s.execute(select(Identity.platform, Identity.platform_user_id)
                        .where(Identity.user_id == user.id).order_by(Identity.id).limit(1)).first()
        target = (row[0], row[1]) if row else None
    if target is None:
        log.warning("no platform identity for user %s; message %s not queued", user.id, key)
        return False
    return outbox.enqueue(s, dedupe_key=key, platform=target[0], target_kind="user",
                          target_id=target[1], target_name=user.name,
                          payload=message.to_json(), now=now, not_before=not_before,
                          card_key=message.card.key if message.card else None)


def reports_to(user: User, boss: User) -> bool:
    """`user` is under `boss`, directly or further down the supervisor (分管领导) chain."""
    seen: set[int] = set()
    above = user.supervisor
    while above is not None and above.id not in seen:
        if above.id == boss.id:
            return True
        seen.add(above.id)
        above = above.supervisor
    return False


def escalation_target(s: Session, person: User, first: str = "supervisor") -> User | None:
    """Whom an escalation about `person` goes to: their supervisor (分管领导) and the head of their
    department, in the order `first` says (`[rules.escalation] to`), else that head's supervisor. Never
    someone who reports to `person`: the top leader's own department head is below them, so an escalation
    about the top leader goes to nobody (and the group's note says there is nobody above). Nor someone who
    has left: the next one in that order hears it."""
    supervisor = person.supervisor if person.supervisor is not None and person.supervisor.id != person.id else None
    dept = s.get(Department, person.department_id) if person.department_id is not None else None
    head = dept.head if dept is not None and dept.head is not None and dept.head.id != person.id else None
    above = dept.head.supervisor if dept is not None and dept.head is not None else None
    order = (head, supervisor) if first == "department_head" else (supervisor, head)
    return next((u for u in (*order, above) if u is not None and u.id != person.id and u.left_at is None
                 and not reports_to(u, person)), None)
