"""Slack incoming webhook."""

from __future__ import annotations

from typing import Any

from agent.notify.channels.base import Request, json_request, ok_2xx
from agent.notify.payload import render_text


class Slack:
    """Posts {"text": ...} to an incoming-webhook URL."""

    def __init__(self, url: str, secret: bytes | None, text: str | None) -> None:
        self.url, self.template = url, text

    def request(self, payload: dict[str, Any], key: str) -> Request:
        """One text message per notification."""
        return json_request(self.url, {"text": render_text(payload, self.template)}, key)

    def accepted(self, status: int, text: str) -> bool:
        """Slack answers 200 'ok'."""
        return ok_2xx(status, text)
