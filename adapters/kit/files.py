"""Signed download links for files a platform cannot take (`GET /files/<token>` on `collabbot serve`).

Nothing is stored per link: the token is the file's name in the export folder, the name the person
sees and an expiry time, signed with HMAC-SHA256. Any instance that shares the folder and the secret
can check it, and a link cannot be made to point anywhere else. The secret is `[reports] link_secret`,
or one generated once and kept in the export folder (`.link-secret`, 0600), created atomically so that
several instances sharing the folder end up with the same one.

A refused token (forged, altered, expired, or naming anything but a plain file name) gets 403 and the
same short body whatever the reason; the reason goes only to the access log. Every request leaves one
access log line (logger `collabbot.access`).
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
import logging
import os
import re
import secrets
from datetime import timedelta
from pathlib import Path
from urllib.parse import quote

from aiohttp import web

from collabbot.bot.clock import Clock
from collabbot.bot.config import ConfigError

log = logging.getLogger(__name__)
access_log = logging.getLogger("collabbot.access")

ROUTE = "/files/{token}"
SECRET_FILE = ".link-secret"
MAX_TOKEN = 1024
MAC_BYTES = 24
REF = re.compile(r"[A-Za-z0-9][A-Za-z0-9._~-]{0,199}")  # a file name we wrote: no separators, no "..", no dotfile
XLSX_TYPE = "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"


def load_secret(folder: Path) -> bytes:
    """The secret kept in the folder, made once: written to a temporary file, then linked into place, so two
    instances starting together both read the one that won."""
    path = folder / SECRET_FILE
    try:
        folder.mkdir(mode=0o700, parents=True, exist_ok=True)
        if not path.exists():
            tmp = folder / f"{SECRET_FILE}.{secrets.token_hex(6)}"
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            with os.fdopen(fd, "w") as f:
                f.write(secrets.token_hex(32))
            try:
                os.link(tmp, path)
            except FileExistsError:
                pass
            finally:
                tmp.unlink()
        value = path.read_text().strip()
    except OSError as exc:  # the admin's folder: one line naming the key, not a traceback
        raise ConfigError("reports.folder", f"{folder} cannot be used: {exc.strerror or exc}") from None
    if len(value) < 32:
        raise ConfigError("reports.link_secret", f"{path} is too short to be a secret; remove it to make a new one")
    return value.encode()


def prune(folder: Path, keep: timedelta, now: float) -> int:
    """Remove the workbooks written more than `keep` before `now` (their links have expired, and no
    delivery still retries them); the number removed. Only our own file names are touched. `now` is the
    system's time (epoch seconds), like the files' own times, not the bot's clock: a test clock set ahead
    must not age fresh files."""
    if not folder.is_dir():
        return 0
    cutoff = now - keep.total_seconds()
    removed = 0
    for path in folder.glob("report-*.xlsx"):
        try:
            if REF.fullmatch(path.name) and path.is_file() and path.stat().st_mtime < cutoff:
                path.unlink()
                removed += 1
        except FileNotFoundError:  # another instance sharing the folder removed it first
            continue
    if removed:
        log.info("reports: %d old workbook(s) removed from %s", removed, folder)
    return removed


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


class LinkRefused(Exception):
    """A token that does not open a file (the reason is for the log only)."""


class FileLinks:
    """Makes and checks signed links to files in `folder`."""

    def __init__(self, folder: Path, secret: bytes, public_url: str, hours: int, clock: Clock) -> None:
        self.folder = folder
        self.secret = secret
        self.public_url = public_url.rstrip("/")
        self.hours = hours
        self.clock = clock
        if access_log.level == logging.NOTSET:
            access_log.setLevel(logging.INFO)  # an access line is not a warning, but must be seen

    def _mac(self, payload: str) -> str:
        return _b64(hmac.new(self.secret, payload.encode(), hashlib.sha256).digest()[:MAC_BYTES])

    def token(self, ref: str, name: str) -> str:
        if not REF.fullmatch(ref):
            raise ValueError(f"not a file name: {ref!r}")
        expires = int(self.clock.now().timestamp()) + self.hours * 3600
        payload = _b64(json.dumps({"r": ref, "n": name, "e": expires}, ensure_ascii=False,
                                  separators=(",", ":")).encode())
        return f"{payload}.{self._mac(payload)}"

    def url(self, ref: str, name: str) -> str:
        return f"{self.public_url}/files/{self.token(ref, name)}"

    def check(self, token: str) -> tuple[Path, str]:
        """(the file, the name to show) for a valid token; LinkRefused otherwise. Nothing in the token is
        read before its signature is checked."""
        if len(token) > MAX_TOKEN or token.count(".") != 1:
            raise LinkRefused("malformed")
        payload, mac = token.split(".")
        if not hmac.compare_digest(mac.encode(), self._mac(payload).encode()):
            raise LinkRefused("bad signature")
        try:
            data = json.loads(_unb64(payload))
            ref, name, expires = data["r"], data["n"], data["e"]
        except (ValueError, KeyError, TypeError, binascii.Error) as exc:
            raise LinkRefused(f"unreadable ({exc.__class__.__name__})") from None
        if not isinstance(expires, int) or self.clock.now().timestamp() > expires:
            raise LinkRefused("expired")
        if not isinstance(ref, str) or not REF.fullmatch(ref) or not isinstance(name, str):
            raise LinkRefused("not a plain file name")
        path = self.folder / ref
        if path.resolve().parent != self.folder.resolve():
            raise LinkRefused("outside the folder")
        return path, name

    async def handle(self, request: web.Request) -> web.StreamResponse:
        """GET /files/<token>: the file as a download, or 403 (404 when it has been removed since)."""
        peer = request.remote or "-"
        try:
            path, name = self.check(request.match_info.get("token", ""))
        except LinkRefused as exc:
            access_log.warning("files: %s refused (%s)", peer, exc)
            return web.Response(status=403, text="forbidden\n")
        if not path.is_file():
            access_log.warning("files: %s asked for %s: gone", peer, path.name)
            return web.Response(status=404, text="not found\n")
        access_log.info("files: %s downloaded %s (%d bytes)", peer, path.name, path.stat().st_size)
        ascii_name = re.sub(r"[^A-Za-z0-9._-]", "_", name) or "download"
        headers = {
            "Content-Type": XLSX_TYPE if path.suffix == ".xlsx" else "application/octet-stream",
            "Content-Disposition": f"attachment; filename=\"{ascii_name}\"; filename*=UTF-8''{quote(name, safe='')}",
            "Cache-Control": "private, no-store",
            "X-Content-Type-Options": "nosniff",
        }
        return web.FileResponse(path, headers=headers)

    def add_routes(self, app: web.Application) -> None:
        app.router.add_get(ROUTE, self.handle)
