"""Makes user text safe for one platform before it reaches a card template or a text message.

Everything a person typed — titles, field names and values, history lines, notes, display names,
the text parts of a message — goes through exactly one of `feishu`, `dingtalk` or `wecom` here. What
comes out can never become a mention (of anyone, least of all @all / 所有人), never a link the
person did not type as a link, never break the JSON it is put into, and never outgrow the platform's
size limits. The mentions we generate ourselves (`At` parts) are *not* passed through here: they are
built by the renderer from a checked platform id.

How, in the same order for every platform:

1. invisible characters go: zero-width and bidi overrides (Unicode category Cf), C0/C1 controls,
   lone surrogates (they cannot even be encoded as UTF-8) and the Hangul fillers used for blank
   names;
2. newlines are normalised (CR LF, CR, U+2028/2029, NEL → LF), no more than one blank line in a
   row and at most `max_lines` lines; a one-line slot (a title, a button label) gets none;
3. the text is shortened to `limit` characters (and `max_bytes` UTF-8 bytes where the platform counts
   bytes), ending in "…";
4. the characters that start a platform's markup are swapped for their full-width twins, which look
   the same to a reader and mean nothing to the platform. Full-width rather than HTML entities:
   Feishu text messages and WeCom markdown do not decode entities, so `&lt;` would show as is.

JSON is not escaped here: the templates put every string through Jinja's `tojson`.
"""

from __future__ import annotations

import re
import unicodedata

ELLIPSIS = "…"

# Blank-looking letters (not category Cf) that are used to fake empty or look-alike names.
_FILLERS = frozenset("\u034f\u115f\u1160\u3164\uffa0")
_NEWLINES = re.compile(r"\r\n|[\r\u2028\u2029\x85\x0b\x0c]")
_BLANK_LINES = re.compile(r"\n{3,}")
_SPACES = re.compile(r"[ \t]{2,}")
_TRAILING = re.compile(r"[ \t]+\n")

# One table serves all three platforms, whose markup starts with the same few characters:
# * Feishu: `<at user_id="all">` in text, `<at id=all>` / `<at email=…>` / `<a>` / `<font>` in card
#   markdown (die with < and >); `[x](y)` links, `![x](img)` images, `[x]: url` references ([ and ]);
# * DingTalk: `@all` / `@13800000000` mentions (they need isAtAll / atMobiles, never set from user
#   text, but the text alone must not read as one), markdown links, `<font>` and other HTML;
# * WeCom: `<@userid>` mentions in markdown, `@all`, markdown links, `<font>`, and the id
#   translation `$userName=…$` (only active with enable_id_trans, which we keep off);
# and everywhere: & so that no entity can turn into a < after us, @ so that nothing even looks like
# a mention, $ so that nothing reads as a card-template variable `${…}` (DingTalk's, Feishu's), and
# * ` ~ so that typed text cannot dress itself as the card's own labels (**负责人**：…), code or
# strike-through in the platforms' markdown, and | so that it cannot draw a table (Feishu refuses a card
# with more than five).
_MARKUP = str.maketrans({"<": "＜", ">": "＞", "[": "［", "]": "］", "&": "＆", "@": "＠", "$": "＄",
                         "*": "＊", "`": "｀", "~": "～", "|": "｜"})
_FEISHU = _DINGTALK = _WECOM = _MARKUP
# :EMOJI: codes anywhere (Feishu draws them)
_EMOJI_CODE = re.compile(r":(?=[A-Za-z][A-Za-z_]{0,30}:)")
# Block markup counts only at the start of a line: a heading (#), a rule or a setext heading (---, ===,
# ___), a list (- + 1. 1)). A multi-line value (a retrospective, a native approval's textarea) must not
# draw "## ✅ 已通过" under a rejected request's fields.
_BLOCK = re.compile(r"(?m)^([ \t]*)(?:(#(?=#{0,5}(?:[ \t]|$))|[-+](?=[ \t])|[-=_](?=[-=_]{1,}[ \t]*$))"
                    r"|(\d{1,9})([.)])(?=[ \t]))")  # `#12 海报` is a task, `# 海报` a heading
_BLOCK_TWIN = {"#": "＃", "-": "－", "+": "＋", "=": "＝", "_": "＿", ".": "．", ")": "）"}


def _visible(text: str) -> str:
    """The text without invisible and control characters (tabs become spaces, newlines stay)."""
    if text.isascii():
        if text.isprintable():
            return text
        return "".join(" " if ch == "\t" else ch for ch in text if ch == "\n" or ch == "\t" or ch.isprintable())
    out = []
    for ch in text:
        if ch == "\n":
            out.append(ch)
        elif ch == "\t":
            out.append(" ")
        elif ch in _FILLERS or unicodedata.category(ch) in ("Cc", "Cf", "Cs"):
            continue
        else:
            out.append(ch)
    return "".join(out)


def _lines(text: str, *, oneline: bool, max_lines: int) -> str:
    if oneline:
        return _SPACES.sub(" ", text.replace("\n", " "))
    text = _TRAILING.sub("\n", text)
    text = _BLANK_LINES.sub("\n\n", text)
    lines = text.split("\n")
    if len(lines) > max_lines:
        text = "\n".join(lines[:max_lines]).rstrip() + ELLIPSIS
    return text


def shorten(text: str, limit: int, max_bytes: int | None = None) -> str:
    """`text` cut to `limit` characters (and `max_bytes` UTF-8 bytes), ending in "…" when cut."""
    limit = max(limit, 1)
    if len(text) > limit:
        text = text[: limit - 1].rstrip() + ELLIPSIS
    if max_bytes is not None and len(text.encode()) > max_bytes:
        budget = max(max_bytes - len(ELLIPSIS.encode()), 0)
        text = text.encode()[:budget].decode(errors="ignore").rstrip() + ELLIPSIS
    return text


def clean(text: object, *, oneline: bool = False, strip: bool = True, max_lines: int = 40) -> str:
    """Steps 1 and 2 (no platform markup touched, nothing shortened): visible text, sane lines."""
    # newlines first: a bare CR is a control character and would be dropped as one
    s = _lines(_visible(_NEWLINES.sub("\n", str(text))), oneline=oneline, max_lines=max_lines)
    return s.strip() if strip else s


def _blocks(text: str) -> str:
    """Each line's block markup (and every :EMOJI: code's colon) as its full-width twin."""
    text = _EMOJI_CODE.sub("：", text)
    return _BLOCK.sub(lambda m: m.group(1) + (_BLOCK_TWIN[m.group(2)] if m.group(2)
                                              else m.group(3) + _BLOCK_TWIN[m.group(4)]), text)


def _escape(table: dict[int, str], text: object, limit: int, oneline: bool, strip: bool, max_lines: int,
            max_bytes: int | None) -> str:
    # shortened after the swap: a full-width twin is one character but three UTF-8 bytes
    return shorten(_blocks(clean(text, oneline=oneline, strip=strip, max_lines=max_lines).translate(table)),
                   limit, max_bytes)


def feishu(text: object, limit: int, *, oneline: bool = False, strip: bool = True, max_lines: int = 40,
           max_bytes: int | None = None) -> str:
    """User text for a Feishu text message, a card's plain_text or its markdown."""
    return _escape(_FEISHU, text, limit, oneline, strip, max_lines, max_bytes)


def dingtalk(text: object, limit: int, *, oneline: bool = False, strip: bool = True, max_lines: int = 40,
             max_bytes: int | None = None) -> str:
    """User text for a DingTalk robot message or a card parameter (markdown)."""
    return _escape(_DINGTALK, text, limit, oneline, strip, max_lines, max_bytes)


def wecom(text: object, limit: int, *, oneline: bool = False, strip: bool = True, max_lines: int = 40,
          max_bytes: int | None = None) -> str:
    """User text for a WeCom markdown message or a template card field."""
    return _escape(_WECOM, text, limit, oneline, strip, max_lines, max_bytes)


def text(value: object, limit: int, *, oneline: bool = False, strip: bool = True, max_lines: int = 40,
         max_bytes: int | None = None) -> str:
    """User text for the console's text form. A terminal has no markup to neutralise, but no control
    character may pass (an escape sequence repaints the screen) and no slot may break its line: a
    title ending in "\n└ [同意]" would draw a button that is not there."""
    return shorten(clean(value, oneline=True, strip=strip, max_lines=max_lines), limit, max_bytes)
