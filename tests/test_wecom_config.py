"""The `[wecom]` section: every key read through the kit's Section, every mistake one clear line naming its key,
and `collabbot serve` / `org sync` refusing it with exit status 2 before anything starts."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from collabbot.adapters.wecom import config as wecom_config
from collabbot.adapters.wecom.config import parse_settings
from collabbot.bot.config import ConfigError

from . import fake_wecom as fw
from .serve_process import free_port, write_config

GOOD: dict[str, Any] = {"corp_id": fw.CORP_ID, "agent_id": fw.AGENT_ID, "app_secret": fw.APP_SECRET,
                        "bot_id": fw.BOT_ID, "bot_secret": fw.BOT_SECRET}


def refusal(raw: dict[str, Any]) -> str:
    with pytest.raises(ConfigError) as caught:
        parse_settings(raw)
    return str(caught.value)


def test_the_defaults_and_what_the_environment_gives_as_strings() -> None:
    settings = parse_settings(GOOD)
    assert (settings.robot_mode, settings.base_url, settings.ws_url) == \
        ("websocket", "https://qyapi.weixin.qq.com", "wss://openws.work.weixin.qq.com")
    assert (settings.app_path, settings.robot_path, settings.max_body_bytes) == ("/wecom/app", "/wecom/robot", 65_536)
    # "${WECOM_AGENT_ID}" from the environment is a string of digits
    assert parse_settings(dict(GOOD, agent_id=" 1000002 ", org_root_department="3")).agent_id == 1000002
    assert parse_settings(dict(GOOD, ws_url="ws://127.0.0.1:9/ws", bot_name="@协作机器人")).bot_name == "协作机器人"


@pytest.mark.parametrize("change, says", [
    ({"secret_typo": "x"}, "wecom.secret_typo: unknown key (see config.example.toml)"),
    ({"corp_id": ""}, "wecom.corp_id: is required"),
    ({"corp_id": 7}, "wecom.corp_id: must be a string"),
    ({"app_secret": None}, "wecom.app_secret: must be a string"),
    ({"agent_id": "abc"}, "wecom.agent_id: must be the app's AgentId"),
    ({"agent_id": 0}, "wecom.agent_id: must be the app's AgentId"),
    ({"agent_id": True}, "wecom.agent_id: must be the app's AgentId"),
    ({"robot_mode": "webhook"}, 'wecom.robot_mode: must be "websocket" or "callback"'),
    ({"bot_secret": ""}, "wecom.bot_secret: is required for the robot's long connection"),
    ({"robot_mode": "callback"}, "wecom.robot_token: is required when robot_mode is \"callback\""),
    ({"robot_mode": "callback", "robot_token": "t", "robot_encoding_aes_key": fw.ROBOT_AES_KEY,
      "robot_path": "/wecom/app"}, "wecom.robot_path: must differ from app_path"),
    ({"app_encoding_aes_key": "short"}, "wecom.app_encoding_aes_key: must be the 43-character EncodingAESKey"),
    ({"app_token": "t"}, "wecom.app_encoding_aes_key: app_token and app_encoding_aes_key come together"),
    ({"app_path": "wecom"}, "wecom.app_path: must start with /"),
    ({"base_url": "ftp://x"}, "wecom.base_url: must be a URL like https://qyapi.weixin.qq.com"),
    ({"base_url": "https://qyapi.weixin.qq.com/cgi-bin"}, "wecom.base_url: must be a URL like"),
    ({"ws_url": "https://openws.work.weixin.qq.com"}, "wecom.ws_url: must be a URL like wss://"),
    ({"max_body_bytes": 10}, "wecom.max_body_bytes: must be from 1024 to 1048576"),
    ({"max_body_bytes": "65536"}, "wecom.max_body_bytes: must be a whole number"),
    ({"replay_window_seconds": 1}, "wecom.replay_window_seconds: must be at least 10"),
    ({"stale_message_seconds": 5}, "wecom.stale_message_seconds: must be at least 60 (or 0 to turn it off)"),
    ({"request_timeout_seconds": "10"}, "wecom.request_timeout_seconds: must be a number"),
    ({"heartbeat_seconds": 5, "watchdog_seconds": 2}, "wecom.watchdog_seconds: must be longer than heartbeat"),
    ({"takeover_seconds": 60}, "wecom.takeover_seconds: must be at most 30"),
    ({"org_root_department": -1}, "wecom.org_root_department: must be a department id"),
])
def test_every_mistake_is_one_line_naming_its_key(change: dict[str, Any], says: str) -> None:
    line = refusal(dict(GOOD, **change))
    assert says in line and "\n" not in line, line


def test_a_section_that_is_not_a_table_is_refused() -> None:
    assert refusal("corp_id = x") == "wecom: must be a table"  # type: ignore[arg-type]


def test_every_key_read_is_known_and_documented() -> None:
    """The keys the reader accepts are exactly the settings' fields."""
    assert set(wecom_config.WecomSettings.__dataclass_fields__) == wecom_config._KNOWN


@pytest.mark.parametrize("line, says", [
    ("agent_id = 1000002\nsecret_typo = 1", "config error: wecom.secret_typo: unknown key"),
    ('agent_id = "x"', "config error: wecom.agent_id: must be the app's AgentId"),
    ("agent_id = 1000002\nwatchdog_seconds = -1", "config error: wecom.watchdog_seconds: must be at least 0.1"),
])
@pytest.mark.parametrize("command", [("serve",), ("org", "sync", "--platform", "wecom")])
def test_the_cli_refuses_a_bad_section_with_one_line_and_exit_status_2(
        tmp_path: Path, line: str, says: str, command: tuple[str, ...]) -> None:
    section = (f'[wecom]\ncorp_id = "{fw.CORP_ID}"\napp_secret = "s"\nbot_id = "b"\nbot_secret = "x"\n'
               f'base_url = "http://127.0.0.1:9"\n{line}\n')
    config = write_config(tmp_path / "c.toml", f"sqlite:///{tmp_path / 'c.db'}", port=free_port(), extra=section)
    result = subprocess.run([sys.executable, "-m", "collabbot.adapters.server", "--config", str(config), *command],
                            capture_output=True, text=True, timeout=60, check=False)
    lines = [x for x in result.stderr.splitlines() if x.strip() and " WARNING " not in x]
    assert result.returncode == 2 and len(lines) == 1 and "Traceback" not in result.stderr, result.stderr
    assert lines[0].startswith(says), lines[0]


def test_a_missing_wechatpy_stops_start_up_with_the_pip_line() -> None:
    """Its decryption is imported with the adapter, not at the first callback (which answered 500 when
    pycryptodome was there through another extra but wechatpy was not)."""
    code = ("import sys; sys.modules['wechatpy'] = None\n"
            "from collabbot.adapters import registry\n"
            "registry.load('wecom')\n")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=False)
    assert result.returncode != 0 and "pip install 'collabbot[wecom]'" in result.stderr, result.stderr
