"""This installation's random id, stored in the database and created once.

Platform idempotency keys (Feishu `uuid`, DingTalk `outTrackId`, WeCom `task_id`) are built from
outbox dedupe keys, which come from row ids: a reset database, or a staging deployment on the same
app, makes the same keys again and the platform would swallow the new messages as repeats. Prefixing
every key with an id drawn once per database keeps them apart. Two instances starting together on
PostgreSQL both try to insert it; `ON CONFLICT DO NOTHING` makes the loser wait for the winner's
commit and then read the winner's id, so every instance uses the same one.
"""

from __future__ import annotations

import secrets

from sqlalchemy import select
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session

from collabbot.storage.models import InstallationSetting

INSTALLATION_ID = "installation_id"


def installation_id(session: Session) -> str:
    """The installation id, created (race-safe) when the database has none yet."""
    found = session.scalar(select(InstallationSetting.value).where(InstallationSetting.key == INSTALLATION_ID))
    if found:
        return found
    insert = postgresql.insert if session.get_bind().dialect.name == "postgresql" else sqlite.insert
    session.execute(insert(InstallationSetting).values(key=INSTALLATION_ID, value=secrets.token_hex(6))
                    .on_conflict_do_nothing(index_elements=["key"]))
    value = session.scalar(select(InstallationSetting.value).where(InstallationSetting.key == INSTALLATION_ID))
    assert value, "the installation id row vanished"
    return value
