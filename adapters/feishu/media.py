"""Feishu file upload (上传文件: `POST /open-apis/im/v1/files`), for workbooks sent as `file` messages.

Multipart fields: `file_type` (opus, mp4, pdf, doc, xls, ppt, or stream for anything else), `file_name`,
`file`; the answer's `data.file_key` names the file in a `file` message. Files up to 30 MB; an empty
file is refused by Feishu, so it is never sent.
"""

from __future__ import annotations

import aiohttp

from collabbot.adapters.feishu.client import FeishuApiError, FeishuClient

MAX_FILE_BYTES = 30 * 1024 * 1024
FILE_TYPES = {".xls": "xls", ".xlsx": "xls", ".csv": "xls", ".pdf": "pdf", ".doc": "doc", ".docx": "doc"}


def file_type(name: str) -> str:
    suffix = name[name.rfind("."):].lower() if "." in name else ""
    return FILE_TYPES.get(suffix, "stream")


async def upload_file(client: FeishuClient, data: bytes, name: str) -> str:
    """The file's file_key."""
    if not data:
        raise FeishuApiError("an empty file cannot be sent")

    def form() -> aiohttp.FormData:
        f = aiohttp.FormData(quote_fields=False)
        f.add_field("file_type", file_type(name))
        f.add_field("file_name", name)
        f.add_field("file", data, filename=name, content_type="application/octet-stream")
        return f

    answer = await client.call("POST", "/open-apis/im/v1/files", data=form)
    key = (answer.get("data") or {}).get("file_key")
    if not isinstance(key, str) or not key:
        raise FeishuApiError("upload answer has no file_key")
    return key
