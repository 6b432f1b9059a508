"""DingTalk as the platform registry sees it: how to validate its config, build it, and read its org."""

from __future__ import annotations

from typing import Any

from collabbot.adapters.dingtalk.adapter import DingTalkAdapter, DingTalkOrgSource
from collabbot.adapters.dingtalk.config import parse_settings
from collabbot.adapters.hub import Hub
from collabbot.bot.config import Config

NAME = "dingtalk"


def check_config(raw: dict[str, Any], config: Config) -> None:
    parse_settings(raw, config)


def make_adapter(raw: dict[str, Any], hub: Hub, config: Config) -> DingTalkAdapter:
    return DingTalkAdapter.from_config(raw, hub, config)


def make_org_source(raw: dict[str, Any], config: Config) -> DingTalkOrgSource:
    return DingTalkOrgSource(raw, config)
