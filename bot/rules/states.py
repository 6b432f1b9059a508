"""Task states and what moves them: 待启动 → 进行中 → 待审核 → 已完成 (and 已取消).

已延期 (overdue) and 阻塞 (blocked) are not stored states: they are derived from the deadline and
from the predecessors, so they can never disagree with the facts they describe.
"""

from __future__ import annotations

from datetime import datetime

OPEN = ("todo", "in_progress", "review")
CLOSED = ("done", "cancelled")

# action -> states it may start from, and the state it leads to (None: unchanged)
TRANSITIONS: dict[str, tuple[tuple[str, ...], str | None]] = {
    "start": (("todo",), "in_progress"),
    "progress": (("todo", "in_progress"), "in_progress"),
    "finish": (("todo", "in_progress"), "review"),
    "accept": (("review",), "done"),
    "return": (("review",), "in_progress"),
    "reassign": (("todo", "in_progress", "review"), None),
    "cancel": (("todo", "in_progress", "review"), "cancelled"),
    "acknowledge": (("todo", "in_progress", "review"), None),
}


def can(action: str, status: str) -> bool:
    return status in TRANSITIONS[action][0]


def next_status(action: str, status: str) -> str:
    target = TRANSITIONS[action][1]
    return status if target is None else target


def is_overdue(status: str, deadline: datetime | None, now: datetime, submitted_at: datetime | None = None) -> bool:
    """Open past its deadline; a task handed in by its deadline and waiting for its reviewer is not (the
    owner delivered in time: the wait is the reviewer's)."""
    if status == "review" and submitted_at is not None and deadline is not None and submitted_at <= deadline:
        return False
    return deadline is not None and status in OPEN and deadline < now


def flags(status: str, deadline: datetime | None, now: datetime, blocked: bool,
          submitted_at: datetime | None = None) -> list[str]:
    """The stored status plus the derived ones, most urgent first: overdue, blocked, then the state."""
    out = []
    if is_overdue(status, deadline, now, submitted_at):
        out.append("overdue")
    if blocked and status in ("todo", "in_progress"):
        out.append("blocked")
    out.append(status)
    return out
