"""WeCom (WeChat Work) group robot: markdown."""

from __future__ import annotations

from typing import Any

from agent.notify.channels.base import Request, json_request, ok_errcode
from agent.notify.payload import render_text


class WeCom:
    """Posts markdown to a group robot webhook (its key is in the URL)."""

    def __init__(self, url: str, secret: bytes | None, text: str | None) -> None:
        self.url, self.template = url, text

    def request(self, payload: dict[str, Any], key: str) -> Request:
        """WeCom markdown is limited to 4096 bytes."""
        text = render_text(payload, self.template)[:4000]
        return json_request(self.url, {"msgtype": "markdown", "markdown": {"content": text}}, key)

    def accepted(self, status: int, text: str) -> bool:
        """200 with errcode 0."""
        return ok_errcode(status, text)
