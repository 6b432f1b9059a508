"""Feishu as the platform registry sees it: how to validate its config, build it, and read its org."""

from __future__ import annotations

from typing import Any

from collabbot.adapters.feishu.adapter import FeishuAdapter, FeishuOrgSource, require_long_connection_sdk
from collabbot.adapters.feishu.config import parse_settings
from collabbot.adapters.hub import Hub
from collabbot.bot.config import Config

NAME = "feishu"


def check_config(raw: dict[str, Any], config: Config) -> None:
    if parse_settings(raw, config).mode == "websocket":
        require_long_connection_sdk()


def make_adapter(raw: dict[str, Any], hub: Hub, config: Config) -> FeishuAdapter:
    return FeishuAdapter.from_config(raw, hub, config)


def make_org_source(raw: dict[str, Any], config: Config) -> FeishuOrgSource:
    return FeishuOrgSource(raw, config)
