"""People named in the config (admins, approvers) as platform identities, never as display names.

An entry is either a platform identity, `"platform:user id"` (`"feishu:ou_…"`, `"console:张三"`), or a
bare name that the org file (the demo org when none is set) lists for exactly one person: it stands
for that person's ids there (`console:` and each `[people.ids]` entry). A name is display only, so a
second 张三 in the company matches nothing; an org file in which two people share a name is refused
when it is read.
"""

from __future__ import annotations

from importlib import resources

from collabbot.bot.errors import ConfigError

PLATFORMS = ("feishu", "dingtalk", "wecom", "console")


def is_identity(entry: str) -> bool:
    platform, sep, _ = entry.partition(":")
    return bool(sep) and platform in PLATFORMS


class OrgIdentities:
    """Resolves config entries to identities, reading the org file once, and only if a name needs it."""

    def __init__(self, org_file: str) -> None:
        self.org_file = org_file
        self._people: dict[str, list[tuple[str, ...]]] | None = None

    def _load(self, key: str) -> dict[str, list[tuple[str, ...]]]:
        if self._people is None:
            from collabbot.bot.org import OrgError, load_org_file

            path = self.org_file or str(resources.files("collabbot.examples").joinpath("demo-org.toml"))
            try:
                org = load_org_file(path)
            except (OrgError, OSError) as exc:
                raise ConfigError(key, f"names need a readable org file ({exc}); write platform:id") from None
            people: dict[str, list[tuple[str, ...]]] = {}
            for p in org.people:
                ids = (f"console:{p.name}", *(f"{k}:{v}" for k, v in p.ids.items() if k != "console" and v))
                people.setdefault(p.name, []).append(ids)
            self._people = people
        return self._people

    def ids(self, entry: str, key: str, *, unknown_ok: bool = False) -> tuple[str, ...]:
        """The identities `entry` stands for; () for a name nobody has when `unknown_ok`, else refused."""
        entry = entry.strip()
        if is_identity(entry):
            if not entry.partition(":")[2].strip():
                raise ConfigError(key, f"{entry!r} has no user id after {entry.partition(':')[0]}:")
            return (entry,)
        try:
            matches = self._load(key).get(entry, [])
        except ConfigError:
            if unknown_ok:  # a built-in's name: the org file's own problem is reported where it is needed
                return ()
            raise
        if len(matches) == 1:
            return matches[0]
        if not matches and unknown_ok:
            return ()
        problem = "is nobody in the org file" if not matches else f"is ambiguous ({len(matches)} people)"
        raise ConfigError(key, f"{entry!r} {problem}; write the platform identity, "
                               f"e.g. \"feishu:ou_…\" ({', '.join(PLATFORMS)})")
