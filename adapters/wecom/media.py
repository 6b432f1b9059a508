"""WeCom images and files: the app's `media/upload` for people, the robot's own upload for groups.

* The app (private chats): `POST /cgi-bin/media/upload?type=image|file` (multipart `media`) → a
  `media_id` valid three days, then `message/send` with msgtype `image` / `file` {media_id}. Images up
  to 10 MB (PNG or JPG), files up to 20 MB.
* The intelligent robot (groups), on its long connection: a temporary media upload in three steps —
  `aibot_upload_media_init` {type, filename, total_size, total_chunks, md5} → {upload_id};
  `aibot_upload_media_chunk` {upload_id, chunk_index, base64_data} per 512 KB; `aibot_upload_media_finish`
  {upload_id} → {media_id} — then `aibot_send_msg` with msgtype `image` / `file` {media_id}. Every frame is
  answered on its req_id like any other request. In URL-callback mode the robot can only answer once and
  cannot push, so no image follows its card and a workbook goes as a signed link instead.
"""

from __future__ import annotations

import base64
import hashlib
from typing import Any

import aiohttp

from collabbot.adapters.wecom.client import BUSY, THROTTLE_WAIT, THROTTLES, WecomApiError, WecomClient
from collabbot.adapters.wecom.robot import NOT_CONNECTED_WAIT, RobotConnection

MAX_FILE_BYTES = 20 * 1024 * 1024
CHUNK_BYTES = 512 * 1024
KINDS = ("image", "file")


async def app_upload(client: WecomClient, data: bytes, kind: str, filename: str) -> str:
    """The app's media_id for `data` (`kind`: image | file)."""
    if kind not in KINDS:
        raise ValueError(kind)

    def form() -> aiohttp.FormData:
        f = aiohttp.FormData(quote_fields=False)  # the name as UTF-8: WeCom shows it on the file message
        f.add_field("media", data, filename=filename, content_type="application/octet-stream")
        return f

    answer = await client.call("POST", "/cgi-bin/media/upload", params={"type": kind}, data=form)
    media_id = answer.get("media_id")
    if not isinstance(media_id, str) or not media_id:
        raise WecomApiError("upload answer has no media_id")
    return media_id


def _checked(cmd: str, answer: dict[str, Any]) -> dict[str, Any]:
    code = answer.get("errcode", 0)
    if code not in (0, None):
        code = int(code) if isinstance(code, int) else -2
        raise WecomApiError(f"{cmd}: errcode {code} {str(answer.get('errmsg', ''))[:200]}", code=code,
                            throttle=code in THROTTLES, transient=code in BUSY,
                            retry_after=THROTTLE_WAIT if code in THROTTLES else None)
    body = answer.get("body")
    return body if isinstance(body, dict) else {}


async def robot_upload(robot: RobotConnection, data: bytes, kind: str, filename: str) -> str:
    """The robot's media_id for `data`, uploaded in chunks on the long connection (a throttle, waited out,
    when this instance does not hold the connection)."""
    if kind not in KINDS:
        raise ValueError(kind)
    if not robot.connected.is_set():
        raise WecomApiError("the robot's long connection is not open on this instance", throttle=True,
                            retry_after=NOT_CONNECTED_WAIT)
    chunks = [data[i:i + CHUNK_BYTES] for i in range(0, len(data), CHUNK_BYTES)] or [b""]
    init = _checked("aibot_upload_media_init", await robot.request("aibot_upload_media_init", {
        "type": kind, "filename": filename, "total_size": len(data), "total_chunks": len(chunks),
        "md5": hashlib.md5(data, usedforsecurity=False).hexdigest()}))  # an integrity check WeCom asks for
    upload_id = init.get("upload_id")
    if not isinstance(upload_id, str) or not upload_id:
        raise WecomApiError("aibot_upload_media_init answer has no upload_id")
    for index, chunk in enumerate(chunks):
        _checked("aibot_upload_media_chunk", await robot.request("aibot_upload_media_chunk", {
            "upload_id": upload_id, "chunk_index": index, "base64_data": base64.b64encode(chunk).decode()}))
    done = _checked("aibot_upload_media_finish", await robot.request("aibot_upload_media_finish",
                                                                      {"upload_id": upload_id}))
    media_id = done.get("media_id")
    if not isinstance(media_id, str) or not media_id:
        raise WecomApiError("aibot_upload_media_finish answer has no media_id")
    return media_id
