"""The `[wecom]` section, validated into frozen settings.

One section holds WeCom's two products, because the bot needs both (a WeCom robot cannot read the
contact directory; an app cannot be @mentioned in an existing group):

* the intelligent robot (智能机器人, API mode): `bot_id` and `bot_secret` for the long connection
  (the default), or `robot_token` and `robot_encoding_aes_key` for its URL callback;
* the self-built app (自建应用): `corp_id`, `agent_id`, `app_secret` for the REST API (private
  messages, contacts), and `app_token` / `app_encoding_aes_key` for its callback (taps on app cards,
  private messages, enter_agent).

It is read through the kit's `Section`, like every platform's: a wrong value or an unknown key stops
start-up with `ConfigError("wecom.<key>", problem)` (one line, exit status 2), so a typo never silently
switches a check off.
"""

from __future__ import annotations

import base64
import binascii
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlparse

from collabbot.adapters.kit.settings import Section
from collabbot.bot.config import Config

ROBOT_MODES = ("websocket", "callback")
DEFAULT_BASE_URL = "https://qyapi.weixin.qq.com"
DEFAULT_WS_URL = "wss://openws.work.weixin.qq.com"


@dataclass(frozen=True)
class WecomSettings:
    corp_id: str
    agent_id: int
    app_secret: str
    app_token: str = ""
    app_encoding_aes_key: str = ""
    app_path: str = "/wecom/app"
    robot_mode: str = "websocket"
    bot_id: str = ""
    bot_secret: str = ""
    bot_name: str = ""  # the robot's display name, removed from "@机器人名 …" in group messages
    robot_token: str = ""
    robot_encoding_aes_key: str = ""
    robot_path: str = "/wecom/robot"
    base_url: str = DEFAULT_BASE_URL
    ws_url: str = DEFAULT_WS_URL
    max_body_bytes: int = 65_536
    replay_window_seconds: float = 300.0
    stale_message_seconds: float = 900.0
    request_timeout_seconds: float = 10.0
    heartbeat_seconds: float = 30.0
    watchdog_seconds: float = 75.0  # no answer to heartbeats for this long: reconnect
    takeover_seconds: float = 5.0  # a standby instance tries to take the robot's connection this often
    directory_refresh_seconds: float = 600.0  # how often the contact names (for "@名字") are re-read
    org_root_department: int = 1


_KNOWN = {
    "corp_id", "agent_id", "app_secret", "app_token", "app_encoding_aes_key", "app_path", "robot_mode", "bot_id",
    "bot_secret", "bot_name", "robot_token", "robot_encoding_aes_key", "robot_path", "base_url", "ws_url",
    "max_body_bytes", "replay_window_seconds", "stale_message_seconds", "request_timeout_seconds",
    "heartbeat_seconds", "watchdog_seconds", "takeover_seconds", "directory_refresh_seconds", "org_root_department",
}


def _id_number(section: Section, key: str, default: int, what: str) -> int:
    """A WeCom numeric id (AgentId, a department id): a whole number, or its digits as a string, because
    "${WECOM_AGENT_ID}" read from the environment is one."""
    value = section.raw.get(key, default)
    if isinstance(value, str) and value.strip().isdigit():
        value = int(value.strip())
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise section.error(key, f"must be {what}, a whole number of at least 1, not {value!r}")
    return value


def _aes_key(section: Section, key: str) -> str:
    value = section.str(key)
    if value:
        try:
            ok = len(value) == 43 and len(base64.b64decode(value + "=", validate=True)) == 32
        except (binascii.Error, ValueError):
            ok = False
        if not ok:
            raise section.error(key, "must be the 43-character EncodingAESKey shown in the WeCom admin")
    return value


def _ws_url(section: Section, key: str, default: str) -> str:
    """The long connection's address: ws(s), a host, and a path if it has one."""
    value = section.str(key, default).rstrip("/")
    parsed = urlparse(value)
    if parsed.scheme not in ("ws", "wss") or not parsed.netloc or parsed.query or parsed.fragment:
        raise section.error(key, f"must be a URL like {default}, not {value!r}")
    return value


def parse_settings(raw: dict[str, Any], config: Config | None = None) -> WecomSettings:
    """Validate the raw `[wecom]` table."""
    section = Section("wecom", raw, _KNOWN)
    corp_id, app_secret = section.str("corp_id"), section.str("app_secret")
    if not corp_id:
        raise section.error("corp_id", "is required (我的企业 → 企业信息 → 企业ID, ww…)")
    if not app_secret:
        raise section.error("app_secret", 'is required; write it as "${WECOM_APP_SECRET}" to read it from the '
                            "environment")
    if "agent_id" not in raw:
        raise section.error("agent_id", "is required (the self-built app's AgentId)")
    mode = section.str("robot_mode", "websocket")
    if mode not in ROBOT_MODES:
        raise section.error("robot_mode", f'must be "websocket" or "callback", not {mode!r}')
    bot_id, bot_secret = section.str("bot_id"), section.str("bot_secret")
    if mode == "websocket" and not (bot_id and bot_secret):
        raise section.error("bot_id" if not bot_id else "bot_secret",
                            "is required for the robot's long connection (智能机器人 → API 模式 → 长连接)")
    robot_token, robot_key = section.str("robot_token"), _aes_key(section, "robot_encoding_aes_key")
    if mode == "callback" and not (robot_token and robot_key):
        raise section.error("robot_token" if not robot_token else "robot_encoding_aes_key",
                            'is required when robot_mode is "callback" (智能机器人 → API 模式 → URL 回调)')
    app_token, app_key = section.str("app_token"), _aes_key(section, "app_encoding_aes_key")
    if bool(app_token) != bool(app_key):
        raise section.error("app_token" if not app_token else "app_encoding_aes_key",
                            "app_token and app_encoding_aes_key come together (应用 → 接收消息 → 设置API接收)")
    robot_path, app_path = section.path("robot_path", "/wecom/robot"), section.path("app_path", "/wecom/app")
    if robot_path == app_path and mode == "callback":
        raise section.error("robot_path", f"must differ from app_path ({app_path}): both callbacks would share it")
    heartbeat = section.number("heartbeat_seconds", 30.0, minimum=0.05, maximum=600)
    watchdog = section.number("watchdog_seconds", max(75.0, 2.5 * heartbeat), minimum=0.1, maximum=3600)
    if watchdog <= heartbeat:
        raise section.error("watchdog_seconds", "must be longer than heartbeat_seconds")
    return WecomSettings(
        corp_id=corp_id,
        agent_id=_id_number(section, "agent_id", 0, "the app's AgentId"),
        app_secret=app_secret,
        app_token=app_token,
        app_encoding_aes_key=app_key,
        app_path=app_path,
        robot_mode=mode,
        bot_id=bot_id,
        bot_secret=bot_secret,
        bot_name=section.str("bot_name").lstrip("@"),
        robot_token=robot_token,
        robot_encoding_aes_key=robot_key,
        robot_path=robot_path,
        base_url=section.url("base_url", DEFAULT_BASE_URL),
        ws_url=_ws_url(section, "ws_url", DEFAULT_WS_URL),
        max_body_bytes=section.int("max_body_bytes", 65_536, minimum=1024, maximum=1_048_576),
        replay_window_seconds=section.number("replay_window_seconds", 300.0, minimum=10, maximum=3600),
        stale_message_seconds=section.number("stale_message_seconds", 900.0, minimum=60, allow_zero=True),
        request_timeout_seconds=section.number("request_timeout_seconds", 10.0, minimum=0.5, maximum=120),
        heartbeat_seconds=heartbeat,
        watchdog_seconds=watchdog,
        takeover_seconds=section.number("takeover_seconds", 5.0, minimum=0.05, maximum=30),
        directory_refresh_seconds=section.number("directory_refresh_seconds", 600.0, minimum=1),
        org_root_department=_id_number(section, "org_root_department", 1, "a department id (1: the whole company)"),
    )
