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
from urllib.parse import urlparse

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


def _str(raw: dict[str, Any], key: str, default: str = "") -> str:
    value = raw.get(key, default)
    if not isinstance(value, str):
        raise ConfigError(f"feishu.{key}", f"must be a string, not {value!r}")
    return value.strip()


def _number(raw: dict[str, Any], key: str, default: float, *, minimum: float, allow_zero: bool = False) -> float:
    value = raw.get(key, default)
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ConfigError(f"feishu.{key}", f"must be a number, not {value!r}")
    if (value == 0 and allow_zero) or value >= minimum:
        return float(value)
    raise ConfigError(f"feishu.{key}", f"must be at least {minimum:g}" + (" (or 0 to turn it off)" if allow_zero else ""))


def parse_settings(raw: dict[str, Any], config: Config | None = None) -> FeishuSettings:
    """Validate the raw `[feishu]` table; `config` (when given) checks the approval links' template names."""
    if not isinstance(raw, dict):
        raise ConfigError("feishu", "must be a table")
    if "urgent" in raw:
        raise ConfigError("feishu.urgent", 'has moved to [rules.escalation] urgent ("off", "high" or "all"), '
                          "which applies on every platform")
    unknown = sorted(set(raw) - _KNOWN)
    if unknown:
        raise ConfigError(f"feishu.{unknown[0]}", "unknown key (see config.example.toml)")
    app_id, app_secret = _str(raw, "app_id"), _str(raw, "app_secret")
    if not app_id:
        raise ConfigError("feishu.app_id", "is required (the App ID of the custom app, cli_…)")
    if not app_secret:
        raise ConfigError("feishu.app_secret", 'is required; write it as "${FEISHU_APP_SECRET}" to read it from the environment')
    mode = _str(raw, "mode", "webhook")
    if mode not in MODES:
        raise ConfigError("feishu.mode", f'must be "webhook" or "websocket", not {mode!r}')
    token = _str(raw, "verification_token")
    if mode == "webhook" and not token:
        # Without it anyone who finds the URL could post events (the Encrypt Key alone is not checked
        # on the URL-verification challenge, which Feishu sends unsigned: oapi-sdk-python#79).
        raise ConfigError("feishu.verification_token", "is required in webhook mode (开发者后台 → 事件与回调 → 加密策略)")
    base_url = _str(raw, "base_url", DEFAULT_BASE_URL).rstrip("/")
    parsed = urlparse(base_url)
    if parsed.scheme not in ("http", "https") or not parsed.netloc or parsed.path:
        raise ConfigError("feishu.base_url", f"must be a URL like {DEFAULT_BASE_URL}, not {base_url!r}")
    path = _str(raw, "path", "/feishu/events")
    if not path.startswith("/"):
        raise ConfigError("feishu.path", "must start with /")
    max_body = raw.get("max_body_bytes", 262_144)
    if isinstance(max_body, bool) or not isinstance(max_body, int) or max_body < 1024:
        raise ConfigError("feishu.max_body_bytes", "must be a whole number of at least 1024")
    approvals = raw.get("approvals", {})
    if not isinstance(approvals, dict) or not all(isinstance(k, str) and isinstance(v, str) for k, v in approvals.items()):
        raise ConfigError("feishu.approvals", 'must be a table of "<Feishu approval code>" = "<approval template name>"')
    if approvals and config is not None:
        known = _template_names(config)
        for code, name in approvals.items():
            if known is not None and name not in known:
                raise ConfigError(f"feishu.approvals.{code}", f"unknown approval template {name!r} (known: {'、'.join(sorted(known))})")
    root = _str(raw, "org_root_department", "0") or "0"
    return FeishuSettings(
        app_id=app_id,
        app_secret=app_secret,
        verification_token=token,
        encrypt_key=_str(raw, "encrypt_key"),
        bot_open_id=_str(raw, "bot_open_id"),
        base_url=base_url,
        mode=mode,
        path=path,
        max_body_bytes=max_body,
        replay_window_seconds=_number(raw, "replay_window_seconds", 300.0, minimum=10),
        stale_message_seconds=_number(raw, "stale_message_seconds", 900.0, minimum=60, allow_zero=True),
        answer_within_seconds=_answer_within(raw),
        request_timeout_seconds=_number(raw, "request_timeout_seconds", 10.0, minimum=1),
        watchdog_seconds=_number(raw, "watchdog_seconds", 300.0, minimum=1),
        org_root_department=root,
        approvals={k.strip(): v.strip() for k, v in approvals.items()},
    )


def _answer_within(raw: dict[str, Any]) -> float:
    value = _number(raw, "answer_within_seconds", 2.5, minimum=0.01)
    if value > 2.9:
        raise ConfigError("feishu.answer_within_seconds", "must be under Feishu's 3 s (at most 2.9)")
    return value


def _template_names(config: Config) -> set[str] | None:
    """The approval template names the engine knows, or None when it cannot tell."""
    try:
        from collabbot.bot.approval_templates import templates_of
    except ImportError:  # an engine without approval templates: nothing to check against
        return None
    return {t.name for t in templates_of(config)}
