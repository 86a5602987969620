"""Generic webhook: Alertmanager's payload version 4, optionally HMAC-signed with a timestamp."""

from __future__ import annotations

import hashlib
import hmac
import time
from typing import Any

from agent.notify.channels.base import Request, json_request, ok_2xx


class Webhook:
    """POSTs the webhook v4 JSON; with a secret, signed so a receiver can refuse replays.

    X-Dsagent-Timestamp is the Unix time of this try; X-Dsagent-Signature is
    sha256=<hex HMAC-SHA256(secret, timestamp + "." + body)>. A receiver checks the HMAC and
    that the timestamp is recent.
    """

    def __init__(self, url: str, secret: bytes | None, text: str | None) -> None:
        self.url, self.secret = url, secret

    def request(self, payload: dict[str, Any], key: str) -> Request:
        """Sign the exact body that is sent, with the time of this try."""
        url, body, headers = json_request(self.url, payload, key)
        if self.secret:
            stamp = str(int(time.time()))
            digest = hmac.new(self.secret, stamp.encode() + b"." + body, hashlib.sha256)
            headers["X-Dsagent-Timestamp"] = stamp
            headers["X-Dsagent-Signature"] = f"sha256={digest.hexdigest()}"
        return url, body, headers

    def accepted(self, status: int, text: str) -> bool:
        """Any 2xx."""
        return ok_2xx(status, text)
