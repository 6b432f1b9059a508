"""The console's transcript language, one line at a time (also what a person types interactively).

    clock 2026-12-01 09:00
    in 新品上市群 as 张三: @bot 新建任务 活动H5开发 负责人 @李四 截止 12-10
    in 新品上市群 as 李四: tap 确认收到
    dm as 李四: 我的任务
    dm as 张三: tap 通过 #1
    wait 2h          (also 30m, 1d, 1d2h30m)
    # a comment
    in 新品上市群 as 张三: @bot 会议纪要 主题 方案评审 …
      行动项 内容 完成H5改版 负责人 @李四 截止 12-10     (in a script: an indented line continues the
                                                      message above, a message of several lines)

`parse_line` returns a frozen step or raises `TranscriptError` with what is wrong.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime, timedelta


class TranscriptError(ValueError):
    pass


@dataclass(frozen=True)
class SetClock:
    when: datetime  # naive: in the calendar's zone


@dataclass(frozen=True)
class Wait:
    delta: timedelta


@dataclass(frozen=True)
class Say:
    chat: str | None  # None: a private message to the bot
    person: str
    text: str


@dataclass(frozen=True)
class Tap:
    chat: str | None
    person: str
    label: str
    entity: int | None = None


Step = SetClock | Wait | Say | Tap

_CLOCK = re.compile(r"^clock\s+(\d{4}-\d{2}-\d{2})(?:[ T](\d{1,2}:\d{2}))?$")
_WAIT = re.compile(r"^wait\s+((?:\d+\s*[dhm]\s*)+)$")
_PART = re.compile(r"(\d+)\s*([dhm])")
_IN = re.compile(r"^in\s+(.+?)\s+as\s+(.+?)\s*[:：]\s?(.*)$", re.DOTALL)
_DM = re.compile(r"^dm\s+as\s+(.+?)\s*[:：]\s?(.*)$", re.DOTALL)
_TAP = re.compile(r"^tap\s+(.+?)(?:\s+#(\d+))?\s*$")


def parse_line(line: str) -> Step | None:
    """One step, or None for a blank line or a comment."""
    line = line.strip()
    if not line or line.startswith("#"):
        return None
    if line.startswith("clock"):
        m = _CLOCK.match(line)
        if not m:
            raise TranscriptError("clock needs a date and time: clock 2026-12-01 09:00")
        try:
            return SetClock(datetime.fromisoformat(f"{m.group(1)} {m.group(2) or '09:00'}"))
        except ValueError:
            raise TranscriptError(f"not a valid date/time: {line[6:]}") from None
    if line.startswith("wait"):
        m = _WAIT.match(line)
        if not m:
            raise TranscriptError("wait needs a duration: wait 2h, wait 30m, wait 1d2h")
        units = {"d": "days", "h": "hours", "m": "minutes"}
        delta = timedelta()
        for number, unit in _PART.findall(m.group(1)):
            delta += timedelta(**{units[unit]: int(number)})
        return Wait(delta)
    m = _IN.match(line)
    if m:
        chat, person, text = m.group(1).strip(), m.group(2).strip(), m.group(3)
    else:
        m = _DM.match(line)
        if not m:
            raise TranscriptError('expected "in CHAT as NAME: TEXT", "dm as NAME: TEXT", "clock …" or "wait …"')
        chat, person, text = None, m.group(1).strip(), m.group(2)
    tap = _TAP.match(text.strip())
    if tap:
        return Tap(chat, person, tap.group(1).strip(), int(tap.group(2)) if tap.group(2) else None)
    if not text.strip():
        raise TranscriptError("the message is empty")
    return Say(chat, person, text)


def script_lines(lines: list[str]) -> list[tuple[int, str]]:
    """A script's lines as (number of its first line, line), an indented line joined to the message above
    it with a line break; an indented line with no message above it stays as it is (and is refused)."""
    out: list[tuple[int, str]] = []
    for number, line in enumerate(lines, 1):
        continues = line[:1] in (" ", "\t") and line.strip() and not line.lstrip().startswith("#")
        if continues and out and (_IN.match(out[-1][1].strip()) or _DM.match(out[-1][1].strip())):
            out[-1] = (out[-1][0], f"{out[-1][1]}\n{line.strip()}")
        else:
            out.append((number, line))
    return out
