"""Known vulnerabilities in the installed packages, from PyPI's own advisory data; exit 1 if any.

    python3 .ci/advisories.py          # in the environment to check (CI runs it after installing)

PyPI lists the advisories (from the Python advisory database and OSV) that affect a release in the
`vulnerabilities` field of its JSON API. This is what pip-audit asks, one release at a time. Where the
per-release page cannot be had (some registry mirrors serve only the project page, which describes
the project's latest release), a package is still checked when the installed version is that latest
release, and otherwise reported as unchecked, by name: the check never passes silently.
"""

from __future__ import annotations

import importlib.metadata
import json
import sys
import urllib.error
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from typing import Any

INDEX = "https://pypi.org/pypi"
SKIP = {"collabbot"}  # this project, installed from the working tree


def fetch(url: str) -> dict[str, Any] | None:
    """The JSON at `url`, or None when the registry has no such page (404)."""
    try:
        with urllib.request.urlopen(url, timeout=20) as response:
            return json.load(response)
    except urllib.error.HTTPError as exc:
        if exc.code == 404:
            return None
        raise


def check(name: str, version: str, index: str = INDEX) -> tuple[str, str, list[dict[str, Any]] | None, str]:
    """(name, version, advisories that apply or None when unchecked, how it was checked)."""
    try:
        release = fetch(f"{index}/{name}/{version}/json")
        if release is not None:
            return name, version, release.get("vulnerabilities") or [], "release page"
        project = fetch(f"{index}/{name}/json")
    except (OSError, ValueError) as exc:
        return name, version, None, f"registry unreachable ({exc.__class__.__name__})"
    if project is None:
        return name, version, None, "not on PyPI"
    latest = str(project.get("info", {}).get("version", ""))
    if latest != version:
        return name, version, None, f"not the latest release ({latest}) and no release page"
    return name, version, project.get("vulnerabilities") or [], "latest release"


def sort_out(results: list[tuple[str, str, list[dict[str, Any]] | None, str]]) -> tuple[list[Any], list[Any]]:
    """The advisories in force (withdrawn ones are not), and the packages that could not be checked."""
    found = [(n, v, a) for n, v, advisories, _ in results for a in advisories or [] if not a.get("withdrawn")]
    unchecked = [(n, v, how) for n, v, advisories, how in results if advisories is None]
    return found, unchecked


def main() -> int:
    installed = {}
    for dist in importlib.metadata.distributions():
        name = (dist.metadata["Name"] or "").lower()
        if name and name not in SKIP:
            installed[name] = dist.version
    with ThreadPoolExecutor(8) as pool:
        results = sorted(pool.map(lambda item: check(*item), installed.items()))
    found, unchecked = sort_out(results)
    for name, version, advisory in found:
        fixed = ", ".join(advisory.get("fixed_in") or []) or "no fixed release yet"
        print(f"VULNERABLE {name} {version}: {advisory.get('id')} {advisory.get('aliases') or ''} (fixed in {fixed}) "
              f"{advisory.get('link', '')}")
    for name, version, how in unchecked:
        print(f"unchecked  {name} {version}: {how}")
    print(f"advisories: {len(results) - len(unchecked)} of {len(results)} installed packages checked against "
          f"PyPI's advisory data, {len(found)} known vulnerabilities")
    return 1 if found else 0


if __name__ == "__main__":
    sys.exit(main())
