"""The `[wecom]` section, validated into frozen settings.

One section holds WeCom's two products, because the bot needs both (a WeCom robot cannot read the
contact directory; an app cannot be @mentioned in an existing group):

* the intelligent robot (智能机器人, API mode): `bot_id` and `bot_secret` for the long connection
  (the default), or `robot_token` and `robot_encoding_aes_key` for its URL callback;
* the self-built app (自建应用): `corp_id`, `agent_id`, `app_secret` for the REST API (private
  messages, contacts), and `app_token` / `app_encoding_aes_key` for its callback (taps on app cards,
  private messages, enter_agent).

Unknown keys are errors, so a typo cannot silently switch a check off.
"""

from __future__ import annotations

import base64
import binascii
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlparse

from collabbot.bot.config import Config, ConfigError

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


def _str(raw: dict[str, Any], key: str, default: str = "") -> str:
    value = raw.get(key, default)
    if not isinstance(value, str):
        raise ConfigError(f"wecom.{key}", f"must be a string, not {value!r}")
    return value.strip()


def _number(raw: dict[str, Any], key: str, default: float, *, minimum: float, allow_zero: bool = False) -> float:
    value = raw.get(key, default)
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ConfigError(f"wecom.{key}", f"must be a number, not {value!r}")
    if (value == 0 and allow_zero) or value >= minimum:
        return float(value)
    raise ConfigError(f"wecom.{key}", f"must be at least {minimum:g}" + (" (or 0 to turn it off)" if allow_zero else ""))


def _int(raw: dict[str, Any], key: str, default: int, minimum: int) -> int:
    value = raw.get(key, default)
    if isinstance(value, str) and value.strip().isdigit():
        value = int(value.strip())
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise ConfigError(f"wecom.{key}", f"must be a whole number of at least {minimum}")
    return value


def _aes_key(raw: dict[str, Any], key: str) -> str:
    value = _str(raw, key)
    if value:
        try:
            ok = len(value) == 43 and len(base64.b64decode(value + "=", validate=True)) == 32
        except (binascii.Error, ValueError):
            ok = False
        if not ok:
            raise ConfigError(f"wecom.{key}", "must be the 43-character EncodingAESKey shown in the WeCom admin")
    return value


def _url(raw: dict[str, Any], key: str, default: str, schemes: tuple[str, ...]) -> str:
    value = _str(raw, key, default).rstrip("/")
    parsed = urlparse(value)
    if parsed.scheme not in schemes or not parsed.netloc:
        raise ConfigError(f"wecom.{key}", f"must be a URL like {default}, not {value!r}")
    return value


def _path(raw: dict[str, Any], key: str, default: str) -> str:
    value = _str(raw, key, default)
    if not value.startswith("/"):
        raise ConfigError(f"wecom.{key}", "must start with /")
    return value


def parse_settings(raw: dict[str, Any], config: Config | None = None) -> WecomSettings:
    if not isinstance(raw, dict):
        raise ConfigError("wecom", "must be a table")
    unknown = sorted(set(raw) - _KNOWN)
    if unknown:
        raise ConfigError(f"wecom.{unknown[0]}", "unknown key (see config.example.toml)")
    corp_id, app_secret = _str(raw, "corp_id"), _str(raw, "app_secret")
    if not corp_id:
        raise ConfigError("wecom.corp_id", "is required (我的企业 → 企业信息 → 企业ID, ww…)")
    if not app_secret:
        raise ConfigError("wecom.app_secret", 'is required; write it as "${WECOM_APP_SECRET}" to read it from the '
                          "environment")
    if "agent_id" not in raw:
        raise ConfigError("wecom.agent_id", "is required (the self-built app's AgentId)")
    mode = _str(raw, "robot_mode", "websocket")
    if mode not in ROBOT_MODES:
        raise ConfigError("wecom.robot_mode", f'must be "websocket" or "callback", not {mode!r}')
    bot_id, bot_secret = _str(raw, "bot_id"), _str(raw, "bot_secret")
    if mode == "websocket" and not (bot_id and bot_secret):
        raise ConfigError("wecom.bot_id" if not bot_id else "wecom.bot_secret",
                          "is required for the robot's long connection (智能机器人 → API 模式 → 长连接)")
    robot_token, robot_key = _str(raw, "robot_token"), _aes_key(raw, "robot_encoding_aes_key")
    if mode == "callback" and not (robot_token and robot_key):
        raise ConfigError("wecom.robot_token" if not robot_token else "wecom.robot_encoding_aes_key",
                          "is required when robot_mode is \"callback\" (智能机器人 → API 模式 → URL 回调)")
    app_token, app_key = _str(raw, "app_token"), _aes_key(raw, "app_encoding_aes_key")
    if bool(app_token) != bool(app_key):
        raise ConfigError("wecom.app_token" if not app_token else "wecom.app_encoding_aes_key",
                          "app_token and app_encoding_aes_key come together (应用 → 接收消息 → 设置API接收)")
    max_body = raw.get("max_body_bytes", 65_536)
    if isinstance(max_body, bool) or not isinstance(max_body, int) or not 1024 <= max_body <= 1_048_576:
        raise ConfigError("wecom.max_body_bytes", "must be a whole number from 1024 to 1048576")
    heartbeat = _number(raw, "heartbeat_seconds", 30.0, minimum=0.05)
    watchdog = _number(raw, "watchdog_seconds", max(75.0, 2.5 * heartbeat), minimum=0.1)
    if watchdog <= heartbeat:
        raise ConfigError("wecom.watchdog_seconds", "must be longer than heartbeat_seconds")
    return WecomSettings(
        corp_id=corp_id,
        agent_id=_int(raw, "agent_id", 0, 1),
        app_secret=app_secret,
        app_token=app_token,
        app_encoding_aes_key=app_key,
        app_path=_path(raw, "app_path", "/wecom/app"),
        robot_mode=mode,
        bot_id=bot_id,
        bot_secret=bot_secret,
        bot_name=_str(raw, "bot_name").lstrip("@"),
        robot_token=robot_token,
        robot_encoding_aes_key=robot_key,
        robot_path=_path(raw, "robot_path", "/wecom/robot"),
        base_url=_url(raw, "base_url", DEFAULT_BASE_URL, ("http", "https")),
        ws_url=_url(raw, "ws_url", DEFAULT_WS_URL, ("ws", "wss")),
        max_body_bytes=max_body,
        replay_window_seconds=_number(raw, "replay_window_seconds", 300.0, minimum=10),
        stale_message_seconds=_number(raw, "stale_message_seconds", 900.0, minimum=60, allow_zero=True),
        request_timeout_seconds=_number(raw, "request_timeout_seconds", 10.0, minimum=0.5),
        heartbeat_seconds=heartbeat,
        watchdog_seconds=watchdog,
        takeover_seconds=_number(raw, "takeover_seconds", 5.0, minimum=0.05),
        directory_refresh_seconds=_number(raw, "directory_refresh_seconds", 600.0, minimum=1),
        org_root_department=_int(raw, "org_root_department", 1, 1),
    )
