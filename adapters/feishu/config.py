"""The `[feishu]` section of the config, validated into frozen settings.

The engine's config loader keeps a platform's table raw (`Config.platforms["feishu"]`, with
"${NAME}" values already read from the environment); this module is the only place that knows its
keys. A wrong key stops start-up with `ConfigError("feishu.<key>", problem)`, as every other section
does, so an admin sees which line to fix. Unknown keys are errors: a typo such as `encrypt_kye` must
not silently turn signature checks off.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from collabbot.adapters.kit.settings import Section
from collabbot.bot.config import Config, ConfigError

MODES = ("webhook", "websocket")
DEFAULT_BASE_URL = "https://open.feishu.cn"


@dataclass(frozen=True)
class FeishuSettings:
    app_id: str
    app_secret: str
    verification_token: str = ""
    encrypt_key: str = ""
    bot_open_id: str = ""  # empty: asked from the bot info API at start
    base_url: str = DEFAULT_BASE_URL
    mode: str = "webhook"
    path: str = "/feishu/events"
    max_body_bytes: int = 262_144
    replay_window_seconds: float = 300.0
    stale_message_seconds: float = 900.0  # 0: execute however late a message arrives
    answer_within_seconds: float = 2.5  # Feishu waits 3 s; past this the answer goes out empty (the work is queued)
    request_timeout_seconds: float = 10.0
    watchdog_seconds: float = 300.0  # long connection: reconnect after this long without any frame
    org_root_department: str = "0"
    approvals: dict[str, str] = field(default_factory=dict)  # Feishu approval code -> template name


_KNOWN = {
    "app_id", "app_secret", "verification_token", "encrypt_key", "bot_open_id", "base_url", "mode", "path",
    "max_body_bytes", "replay_window_seconds", "stale_message_seconds", "answer_within_seconds", "request_timeout_seconds",
    "watchdog_seconds", "org_root_department", "approvals",
}


def parse_settings(raw: dict[str, Any], config: Config | None = None) -> FeishuSettings:
    """Validate the raw `[feishu]` table; `config` (when given) checks the approval links' template names."""
    if isinstance(raw, dict) and "urgent" in raw:
        raise ConfigError("feishu.urgent", 'has moved to [rules.escalation] urgent ("off", "high" or "all"), '
                          "which applies on every platform")
    section = Section("feishu", raw, _KNOWN)
    app_id, app_secret = section.str("app_id"), section.str("app_secret")
    if not app_id:
        raise section.error("app_id", "is required (the App ID of the custom app, cli_…)")
    if not app_secret:
        raise section.error("app_secret", 'is required; write it as "${FEISHU_APP_SECRET}" to read it from the environment')
    mode = section.str("mode", "webhook")
    if mode not in MODES:
        raise section.error("mode", f'must be "webhook" or "websocket", not {mode!r}')
    token = section.str("verification_token")
    if mode == "webhook" and not token:
        # Without it anyone who finds the URL could post events (the Encrypt Key alone is not checked
        # on the URL-verification challenge, which Feishu sends unsigned: oapi-sdk-python#79).
        raise section.error("verification_token", "is required in webhook mode (开发者后台 → 事件与回调 → 加密策略)")
    approvals = raw.get("approvals", {})
    if not isinstance(approvals, dict) or not all(isinstance(k, str) and isinstance(v, str) for k, v in approvals.items()):
        raise section.error("approvals", 'must be a table of "<Feishu approval code>" = "<approval template name>"')
    if approvals and config is not None:
        known = _template_names(config)
        for code, name in approvals.items():
            if known is not None and name not in known:
                raise section.error(f"approvals.{code}",
                                    f"unknown approval template {name!r} (known: {'、'.join(sorted(known))})")
    return FeishuSettings(
        app_id=app_id,
        app_secret=app_secret,
        verification_token=token,
        encrypt_key=section.str("encrypt_key"),
        bot_open_id=section.str("bot_open_id"),
        base_url=section.url("base_url", DEFAULT_BASE_URL),
        mode=mode,
        path=section.path("path", "/feishu/events"),
        max_body_bytes=section.int("max_body_bytes", 262_144, minimum=1024),
        replay_window_seconds=section.number("replay_window_seconds", 300.0, minimum=10),
        stale_message_seconds=section.number("stale_message_seconds", 900.0, minimum=60, allow_zero=True),
        # Feishu waits 3 s for an answer
        answer_within_seconds=section.number("answer_within_seconds", 2.5, minimum=0.01, maximum=2.9),
        request_timeout_seconds=section.number("request_timeout_seconds", 10.0, minimum=1),
        watchdog_seconds=section.number("watchdog_seconds", 300.0, minimum=1),
        org_root_department=section.str("org_root_department", "0") or "0",
        approvals={k.strip(): v.strip() for k, v in approvals.items()},
    )


def _template_names(config: Config) -> set[str] | None:
    """The approval template names the engine knows, or None when it cannot tell."""
    try:
        from collabbot.bot.approval_templates import templates_of
    except ImportError:  # an engine without approval templates: nothing to check against
        return None
    return {t.name for t in templates_of(config)}
