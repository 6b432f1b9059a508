"""The `[dingtalk]` section of the config, validated into frozen settings.

Only this module knows the section's keys. A wrong or unknown key stops start-up with
`ConfigError("dingtalk.<key>", problem)`, so a typo never silently turns a check off.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from collabbot.adapters.kit.settings import Section
from collabbot.bot.config import Config, ConfigError

MODES = ("stream", "http")
GROUP_TEXT = ("card", "robot")
DEFAULT_BASE_URL = "https://api.dingtalk.com"  # the v1.0 API and the Stream gateway
DEFAULT_OAPI_URL = "https://oapi.dingtalk.com"  # the older topapi (contacts) and session webhooks
SESSION_WEBHOOK_HOSTS = ("oapi.dingtalk.com", "api.dingtalk.com")
SIGN_WINDOW_SECONDS = 300.0  # HTTP callbacks: a timestamp at most 5 minutes off (DingTalk allows an hour, but
# its signatures do not cover the body: the window is how long a captured header pair vouches for any body)


@dataclass(frozen=True)
class DingTalkSettings:
    client_id: str  # AppKey / Client ID of the internal app
    client_secret: str
    card_template_id: str  # the one generic card template (cards/dingtalk/TEMPLATE.md)
    robot_code: str = ""  # defaults to client_id (an internal app's robot)
    mode: str = "stream"
    path: str = "/dingtalk/callback"  # http mode: robot messages and card callbacks
    public_url: str = ""  # http mode: `[reports] public_url`, where DingTalk reaches us (not a [dingtalk] key)
    card_route_key: str = "collabbot"  # http mode: the card callback route registered for our cards
    base_url: str = DEFAULT_BASE_URL
    oapi_url: str = DEFAULT_OAPI_URL
    session_webhook_hosts: tuple[str, ...] = SESSION_WEBHOOK_HOSTS
    max_body_bytes: int = 262_144
    sign_window_seconds: float = SIGN_WINDOW_SECONDS
    stale_message_seconds: float = 900.0  # 0: execute however late a message arrives
    answer_within_seconds: float = 1.5  # a card tap's answer must come within DingTalk's 2 s
    request_timeout_seconds: float = 10.0
    watchdog_seconds: float = 60.0  # stream: a connection that stops answering our pings is replaced within this
    ding: bool = False  # urgent messages to a person also go as DING (robot/ding/send)
    group_text: str = "card"  # text to a group: "card" (idempotent, real mentions) or "robot" (groupMessages/send)
    group_limit_seconds: float = 60.0  # the robot's per-group window (20 messages in it); tests shorten it
    org_root_department: int = 1

    @property
    def robot(self) -> str:
        return self.robot_code or self.client_id

    @property
    def callback_url(self) -> str:
        """http mode: where DingTalk posts robot messages and (once registered) card callbacks."""
        return self.public_url + self.path


_KNOWN = {
    "client_id", "client_secret", "card_template_id", "robot_code", "mode", "path", "card_route_key", "base_url",
    "oapi_url", "session_webhook_hosts", "max_body_bytes", "sign_window_seconds", "stale_message_seconds",
    "answer_within_seconds", "request_timeout_seconds", "watchdog_seconds", "ding", "group_text", "group_limit_seconds",
    "org_root_department",
}


def parse_settings(raw: dict[str, Any], config: Config | None = None) -> DingTalkSettings:
    """Validate the raw `[dingtalk]` table."""
    section = Section("dingtalk", raw, _KNOWN)
    client_id, secret = section.str("client_id"), section.str("client_secret")
    if not client_id:
        raise ConfigError("dingtalk.client_id", "is required (the app's Client ID / AppKey, ding…)")
    if not secret:
        raise ConfigError("dingtalk.client_secret",
                          'is required; write it as "${DINGTALK_CLIENT_SECRET}" to read it from the environment')
    template = section.str("card_template_id")
    if not template:
        raise ConfigError("dingtalk.card_template_id", "is required: build the card template from "
                          "cards/dingtalk/TEMPLATE.md in DingTalk's card platform and put its id here")
    mode = section.str("mode", "stream")
    if mode not in MODES:
        raise ConfigError("dingtalk.mode", f'must be "stream" or "http", not {mode!r}')
    path = section.str("path", "/dingtalk/callback")
    if not path.startswith("/"):
        raise ConfigError("dingtalk.path", "must start with /")
    public_url = config.reports.public_url if config is not None else ""
    if mode == "http" and not public_url:
        raise ConfigError("reports.public_url", 'is required with [dingtalk] mode = "http": card taps are posted to '
                          f'public_url + path (e.g. "https://bot.example.com" → https://bot.example.com{path}), '
                          "which the bot registers with DingTalk at start")
    max_body = raw.get("max_body_bytes", 262_144)
    if isinstance(max_body, bool) or not isinstance(max_body, int) or max_body < 1024:
        raise ConfigError("dingtalk.max_body_bytes", "must be a whole number of at least 1024")
    hosts = raw.get("session_webhook_hosts", list(SESSION_WEBHOOK_HOSTS))
    if not isinstance(hosts, list) or not all(isinstance(h, str) and h.strip() for h in hosts):
        raise ConfigError("dingtalk.session_webhook_hosts", "must be a list of host names")
    ding = raw.get("ding", False)
    if not isinstance(ding, bool):
        raise ConfigError("dingtalk.ding", "must be true or false")
    group_text = section.str("group_text", "card")
    if group_text not in GROUP_TEXT:
        raise ConfigError("dingtalk.group_text", f'must be "card" or "robot", not {group_text!r}')
    root = raw.get("org_root_department", 1)
    if isinstance(root, bool) or not isinstance(root, int) or root < 1:
        raise ConfigError("dingtalk.org_root_department", "must be a department id (1 = the whole organisation)")
    return DingTalkSettings(
        client_id=client_id,
        client_secret=secret,
        card_template_id=template,
        robot_code=section.str("robot_code"),
        mode=mode,
        path=path,
        public_url=public_url,
        card_route_key=section.str("card_route_key", "collabbot") or "collabbot",
        base_url=section.url("base_url", DEFAULT_BASE_URL),
        oapi_url=section.url("oapi_url", DEFAULT_OAPI_URL),
        session_webhook_hosts=tuple(h.strip().lower() for h in hosts),
        max_body_bytes=max_body,
        sign_window_seconds=section.number("sign_window_seconds", SIGN_WINDOW_SECONDS, minimum=10,
                                    maximum=SIGN_WINDOW_SECONDS),
        stale_message_seconds=section.number("stale_message_seconds", 900.0, minimum=60, allow_zero=True),
        answer_within_seconds=section.number("answer_within_seconds", 1.5, minimum=0.01, maximum=1.9),
        request_timeout_seconds=section.number("request_timeout_seconds", 10.0, minimum=1),
        watchdog_seconds=section.number("watchdog_seconds", 60.0, minimum=0.2, maximum=600),
        ding=ding,
        group_text=group_text,
        group_limit_seconds=section.number("group_limit_seconds", 60.0, minimum=1, maximum=600),
        org_root_department=root,
    )
