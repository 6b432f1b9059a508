"""When the next reminder for an unanswered item falls due: a nag, an escalation, or nothing.

Pure arithmetic over one wait's facts (raised when, nags sent, last nag) with the working calendar.

* Nags count working time: nag n+1 falls due `nag_after_working_hours` of working time after the
  last nag (or after the item was raised), until `nag_max` nags were sent.
* The escalation counts wall-clock hours ("24 hours" as people read it) from when the item was
  raised, but never before the last nag has had `nag_after_working_hours` of working time to work,
  and what falls due outside working time waits for the next working period.

Worked example (README, "How it chases"), 09:00–12:00 and 13:30–18:00, National Day week off: raised Wed
2026-09-30 17:30 → nag 1 on 10-08 10:30, nag 2 at 14:00, escalation at 16:00 (not at 09:00 just
because 24 wall-clock hours passed during the holiday).
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from collabbot.bot.calendar import WorkCalendar
    from collabbot.bot.config import RuleSettings


def next_step(
    raised_at: datetime,
    nags_sent: int,
    last_nag_at: datetime | None,
    escalated: bool,
    rules: RuleSettings,
    calendar: WorkCalendar,
) -> tuple[str, datetime] | None:
    """("nag" | "escalate", due) for the next reminder, or None when nothing more will be sent."""
    if escalated:
        return None
    nag_after = timedelta(hours=rules.nag_after_working_hours)
    if rules.nag_enabled and nags_sent < rules.nag_max:
        base = last_nag_at or raised_at
        if rules.nag_outside_working_hours:
            return "nag", base + nag_after
        return "nag", calendar.add_working(base, nag_after)
    if not rules.escalation_enabled:
        return None
    due = raised_at + timedelta(hours=rules.escalation_after_hours)
    if last_nag_at is not None and rules.nag_enabled:
        after_nag = (last_nag_at + nag_after if rules.nag_outside_working_hours
                     else calendar.add_working(last_nag_at, nag_after))
        due = max(due, after_nag)
    if not rules.escalation_outside_working_hours:
        due = calendar.next_working_moment(due)
    return "escalate", due
