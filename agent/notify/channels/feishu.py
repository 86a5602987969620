"""Feishu (Lark) custom bot: text, with its timestamp + sign fields."""

from __future__ import annotations

import base64
import hashlib
import hmac
import time
from typing import Any

from agent.notify.channels.base import Request, json_request, ok_errcode
from agent.notify.payload import render_text


def sign(secret: bytes, timestamp: int) -> str:
    """Return Feishu's sign: base64 HMAC-SHA256 keyed by timestamp + newline + secret."""
    key = f"{timestamp}\n{secret.decode()}".encode()
    return base64.b64encode(hmac.new(key, b"", hashlib.sha256).digest()).decode()


class Feishu:
    """Posts a text message to a bot webhook; signed when the bot has a secret."""

    def __init__(self, url: str, secret: bytes | None, text: str | None) -> None:
        self.url, self.secret, self.template = url, secret, text

    def request(self, payload: dict[str, Any], key: str) -> Request:
        """Sign with the current time (Feishu allows an hour of skew)."""
        text = render_text(payload, self.template)
        body: dict[str, Any] = {"msg_type": "text", "content": {"text": text}}
        if self.secret:
            ts = int(time.time())
            body = {"timestamp": str(ts), "sign": sign(self.secret, ts), **body}
        return json_request(self.url, body, key)

    def accepted(self, status: int, text: str) -> bool:
        """200 with code 0."""
        return ok_errcode(status, text, field="code")
