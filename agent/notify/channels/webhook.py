"""Generic webhook: Alertmanager's payload version 4, optionally HMAC-signed."""

from __future__ import annotations

import hashlib
import hmac
from typing import Any

from agent.notify.channels.base import Request, json_request, ok_2xx


class Webhook:
    """POSTs the webhook v4 JSON; with a secret, X-Dsagent-Signature: sha256=<hex HMAC>."""

    def __init__(self, url: str, secret: bytes | None, text: str | None) -> None:
        self.url, self.secret = url, secret

    def request(self, payload: dict[str, Any], key: str) -> Request:
        """Sign the exact body that is sent."""
        url, body, headers = json_request(self.url, payload, key)
        if self.secret:
            digest = hmac.new(self.secret, body, hashlib.sha256).hexdigest()
            headers["X-Dsagent-Signature"] = f"sha256={digest}"
        return url, body, headers

    def accepted(self, status: int, text: str) -> bool:
        """Any 2xx."""
        return ok_2xx(status, text)
