"""How the bot writes an entity's number for people (`#12`, `#A3`, `#R1`): one table for the audit
log, the org sync's list of what a leaver holds, and any other place that names entities."""

from __future__ import annotations

# an entity type, singular (a wait's, a card's) or plural (an audit entry's table), -> its number's prefix
PREFIXES = {
    "task": "#", "tasks": "#",
    "approval": "#A", "approval_requests": "#A",
    "help": "#H", "help_requests": "#H",
    "risk": "#R", "risks": "#R",
    "meeting": "#M", "meetings": "#M",
    "collection": "#C", "collections": "#C",
    "milestone": "#MS", "milestones": "#MS",
    "project": "#P", "projects": "#P", "retro": "#P",  # a retrospective is its project's
}


def entity_ref(entity_type: str, entity_id: int) -> str:
    """`#A3` for approval 3; `type:id` for a kind people never type a number of."""
    prefix = PREFIXES.get(entity_type)
    return f"{entity_type}:{entity_id}" if prefix is None else f"{prefix}{entity_id}"
