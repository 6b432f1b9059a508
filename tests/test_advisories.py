"""`.ci/advisories.py` against a local registry that speaks PyPI's JSON API (no test touches the internet)."""

from __future__ import annotations

import importlib.util
import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

SPEC = importlib.util.spec_from_file_location("advisories", Path(__file__).parents[1] / ".ci" / "advisories.py")
assert SPEC is not None and SPEC.loader is not None
advisories = importlib.util.module_from_spec(SPEC)
SPEC.loader.exec_module(advisories)

ADVISORY = {"id": "PYSEC-2099-1", "aliases": ["CVE-2099-1"], "fixed_in": ["2.0.1"], "link": "https://osv.dev/x",
            "withdrawn": None}
PAGES: dict[str, Any] = {
    # a registry that serves per-release pages
    "/pypi/served/1.0/json": {"info": {"version": "1.0"}, "vulnerabilities": [ADVISORY]},
    # one that serves only the project page (the latest release's advisories)
    "/pypi/latest/json": {"info": {"version": "2.0"}, "vulnerabilities": [ADVISORY]},
    "/pypi/withdrawn/json": {"info": {"version": "3.0"}, "vulnerabilities": [{**ADVISORY, "withdrawn": "2099-01-01"}]},
    "/pypi/clean/json": {"info": {"version": "1.5"}, "vulnerabilities": []},
}


@pytest.fixture
def registry() -> Iterator[str]:
    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            page = PAGES.get(self.path)
            body = json.dumps(page).encode() if page is not None else b"not found"
            self.send_response(200 if page is not None else 404)
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}/pypi"
    server.shutdown()
    server.server_close()


def test_an_advisory_is_found_from_the_release_page_or_from_the_latest_releases_project_page(registry: str) -> None:
    results = [advisories.check(name, version, registry) for name, version in
               [("served", "1.0"), ("latest", "2.0"), ("latest", "1.9"), ("withdrawn", "3.0"), ("clean", "1.5"),
                ("missing", "0.1")]]
    found, unchecked = advisories.sort_out(results)
    assert [(name, version, a["id"]) for name, version, a in found] == [("served", "1.0", "PYSEC-2099-1"),
                                                                       ("latest", "2.0", "PYSEC-2099-1")]
    # an older release with no page of its own cannot be judged: named, never passed silently
    assert [(name, version) for name, version, _ in unchecked] == [("latest", "1.9"), ("missing", "0.1")]
    assert "not the latest release (2.0)" in unchecked[0][2]


def test_an_unreachable_registry_leaves_the_package_unchecked_not_clean() -> None:
    _, _, found, how = advisories.check("aiohttp", "3.14.5", "http://127.0.0.1:9/pypi")
    assert found is None and "unreachable" in how
