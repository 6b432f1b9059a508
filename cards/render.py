"""Renders a neutral message or card through the Jinja2 template of one platform and card kind.

Templates live in `cards/<platform>/<kind>.j2`, falling back to `cards/<platform>/card.j2`. They get
data that is already safe for their format (see each platform's escaping in its adapter); the
renderer only picks the template and passes the card.
"""

from __future__ import annotations

from functools import cache
from typing import Any

from jinja2 import Environment, PackageLoader, StrictUndefined, TemplateNotFound, select_autoescape


@cache
def environment() -> Environment:
    env = Environment(
        loader=PackageLoader("collabbot.cards", ""),
        autoescape=select_autoescape(enabled_extensions=(), default=False),
        undefined=StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=False,
    )
    return env


def render(platform: str, kind: str, **data: Any) -> str:
    env = environment()
    try:
        template = env.get_template(f"{platform}/{kind}.j2")
    except TemplateNotFound:
        template = env.get_template(f"{platform}/card.j2")
    return template.render(kind=kind, **data)
