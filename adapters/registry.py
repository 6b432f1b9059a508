"""The platforms CollabBot can connect to, by config section name.

`serve`, `org sync` and config validation find a platform here and nowhere else, so adding one is a
new folder under `adapters/` with a `platform.py` (check_config, make_adapter, make_org_source),
one line below and its extra in pyproject.toml — no other platform's file changes. A platform's
module is imported only when its section is configured, so a missing extra is one clear line
naming the `pip install` to run, not a traceback.
"""

from __future__ import annotations

import importlib
from types import ModuleType
from typing import Any

from collabbot.adapters.hub import Hub, PlatformAdapter
from collabbot.adapters.kit.orgsync import OrgSource
from collabbot.bot.config import Config, ConfigError

# section name -> (module with check_config / make_adapter / make_org_source, the pip extra it needs)
PLATFORMS: dict[str, tuple[str, str]] = {
    "feishu": ("collabbot.adapters.feishu.platform", "feishu"),
    "wecom": ("collabbot.adapters.wecom.platform", "wecom"),
    "dingtalk": ("collabbot.adapters.dingtalk.platform", "dingtalk"),
}


def load(name: str) -> ModuleType:
    if name not in PLATFORMS:
        known = ", ".join(f"[{n}]" for n in PLATFORMS)
        raise ConfigError(name, f"this version of CollabBot cannot connect to {name!r} yet (available: {known}); "
                          "remove the section")
    module, extra = PLATFORMS[name]
    try:
        return importlib.import_module(module)
    except ImportError as exc:
        raise ConfigError(name, f"the {name} adapter needs its extra packages ({exc.name or exc}): "
                          f"pip install 'collabbot[{extra}]'") from None


def check_config(config: Config) -> None:
    """Every configured platform exists, is installed, and its section is valid (ConfigError if not)."""
    for name, raw in config.platforms.items():
        load(name).check_config(raw, config)


def build_adapters(config: Config, hub: Hub) -> list[PlatformAdapter]:
    return [load(name).make_adapter(raw, hub, config) for name, raw in config.platforms.items()]


def org_source(config: Config, name: str) -> OrgSource:
    if name not in config.platforms:
        raise ConfigError(name, f"no [{name}] section in the config")
    module: Any = load(name)
    return module.make_org_source(config.platforms[name], config)
