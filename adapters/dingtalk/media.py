"""DingTalk media upload (上传媒体文件, the older API: `POST https://oapi.dingtalk.com/media/upload
?access_token=…&type=image|file`, multipart field `media`) → `media_id`, for the robot's image and file
messages: `sampleImageMsg` {photoURL: the media_id} and `sampleFile` {mediaId, fileName, fileType},
sent through the robot APIs the sender already uses (groupMessages/send, oToMessages/batchSend).

The answer is HTTP 200 with {errcode, errmsg, media_id}: 40014 / 42001 / 88 is a refused token
(refreshed once, single-flight through the client), 90002 / 90006 / 90018 a frequency limit. Sizes:
an image up to 20 MB (the chart is some 40 KB), a file up to 20 MB (xlsx among the file types).
"""

from __future__ import annotations

import json
from typing import Any

import aiohttp

from collabbot.adapters.dingtalk.client import (
    QPS_RETRY_AFTER,
    THROTTLE_CODES,
    TOKEN_INVALID,
    DingTalkApiError,
    DingTalkClient,
)

MAX_FILE_BYTES = 20 * 1024 * 1024
KINDS = ("image", "file")


async def _once(client: DingTalkClient, token: str, data: bytes, kind: str, filename: str) -> tuple[int, Any]:
    form = aiohttp.FormData(quote_fields=False)  # the name as UTF-8, not percent-encoded: it is what people see
    form.add_field("type", kind)  # 上传媒体文件 lists `type` in the body; the query's older form is kept beside it
    form.add_field("media", data, filename=filename, content_type="application/octet-stream")
    url = client.settings.oapi_url.rstrip("/") + "/media/upload"
    try:
        async with client.session().post(url, params={"access_token": token, "type": kind}, data=form) as resp:
            status, text = resp.status, await resp.text()
    except (TimeoutError, aiohttp.ClientError) as exc:
        raise DingTalkApiError(f"media/upload: {exc!r}", transient=True) from exc
    try:
        return status, json.loads(text)
    except ValueError:
        return status, None


async def upload(client: DingTalkClient, data: bytes, kind: str, filename: str) -> str:
    """The media_id of `data` uploaded as `kind` (image | file)."""
    if kind not in KINDS:
        raise ValueError(kind)
    token = await client.token()
    for attempt in range(2):
        status, answer = await _once(client, token, data, kind, filename)
        if not isinstance(answer, dict):
            raise DingTalkApiError(f"media/upload: HTTP {status}, not JSON", status=status, transient=status >= 500)
        code = str(answer.get("errcode", 0))
        if status < 400 and code == "0":
            media_id = answer.get("media_id")
            if not isinstance(media_id, str) or not media_id:
                raise DingTalkApiError("media/upload answer has no media_id")
            return media_id
        if code in TOKEN_INVALID and attempt == 0:
            token = await client.token(stale=token)
            continue
        message = f"media/upload: HTTP {status}, errcode {code}: {str(answer.get('errmsg', ''))[:200]}"
        if code in THROTTLE_CODES:
            raise DingTalkApiError(message, code=code, status=status, throttle=True, retry_after=QPS_RETRY_AFTER)
        raise DingTalkApiError(message, code=code, status=status,
                               transient=status >= 500 or code == "-1" or code in TOKEN_INVALID)
    raise AssertionError("unreachable")


def image_param(media_id: str) -> str:
    return json.dumps({"photoURL": media_id})


def file_param(media_id: str, name: str) -> str:
    suffix = name.rsplit(".", 1)[-1].lower() if "." in name else "file"
    return json.dumps({"mediaId": media_id, "fileName": name, "fileType": suffix}, ensure_ascii=False)
