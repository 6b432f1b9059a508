"""WeCom as the platform registry sees it: how to validate its config, build it, and read its org."""

from __future__ import annotations

from typing import Any

from collabbot.adapters.hub import Hub
from collabbot.adapters.wecom.adapter import WecomAdapter, WecomOrgSource
from collabbot.adapters.wecom.config import parse_settings
from collabbot.bot.config import Config

NAME = "wecom"


def check_config(raw: dict[str, Any], config: Config) -> None:
    parse_settings(raw, config)


def make_adapter(raw: dict[str, Any], hub: Hub, config: Config) -> WecomAdapter:
    return WecomAdapter.from_config(raw, hub, config)


def make_org_source(raw: dict[str, Any], config: Config) -> WecomOrgSource:
    return WecomOrgSource(raw, config)
