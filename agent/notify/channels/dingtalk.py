"""DingTalk group robot: markdown, with its timestamp + sign query parameters."""

from __future__ import annotations

import base64
import hashlib
import hmac
import time
from typing import Any
from urllib.parse import quote_plus

from agent.notify.channels.base import Request, json_request, ok_errcode
from agent.notify.payload import render_text, summary_lines


def sign(secret: bytes, timestamp_ms: int) -> str:
    """Return DingTalk's sign: base64 HMAC-SHA256(secret, timestamp + newline + secret)."""
    to_sign = f"{timestamp_ms}\n{secret.decode()}".encode()
    digest = hmac.new(secret, to_sign, hashlib.sha256).digest()
    return quote_plus(base64.b64encode(digest).decode())


class DingTalk:
    """Posts markdown to a robot webhook; signed when the robot has a secret."""

    def __init__(self, url: str, secret: bytes | None, text: str | None) -> None:
        self.url, self.secret, self.template = url, secret, text

    def request(self, payload: dict[str, Any], key: str) -> Request:
        """Sign with the current time: DingTalk refuses signatures older than an hour."""
        url = self.url
        if self.secret:
            ts = int(time.time() * 1000)
            url += f"{'&' if '?' in url else '?'}timestamp={ts}&sign={sign(self.secret, ts)}"
        title, _ = summary_lines(payload)
        text = render_text(payload, self.template)
        body = {"msgtype": "markdown", "markdown": {"title": title, "text": text}}
        return json_request(url, body, key)

    def accepted(self, status: int, text: str) -> bool:
        """200 with errcode 0."""
        return ok_errcode(status, text)
