"""Named locks for the length of a transaction, so that two instances racing on one decision take turns.

On PostgreSQL a name becomes a transaction-level advisory lock (`pg_advisory_xact_lock`), released at
commit or rollback. SQLite needs none: every transaction there begins with `BEGIN IMMEDIATE`, so
writers already run one at a time.
"""

from __future__ import annotations

import hashlib

from sqlalchemy import func, select
from sqlalchemy.orm import Session


def lock_key(name: str) -> int:
    """A stable signed 64-bit key for `name` (PostgreSQL's advisory locks take a bigint)."""
    return int.from_bytes(hashlib.blake2b(name.encode(), digest_size=8).digest(), "big", signed=True)


def hold(s: Session, name: str) -> None:
    """Wait for, then hold until the transaction ends, the lock called `name`."""
    if s.get_bind().dialect.name == "postgresql":
        s.execute(select(func.pg_advisory_xact_lock(lock_key(name))))
