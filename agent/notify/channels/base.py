"""What every channel shares: the Channel protocol, JSON requests, answers, secrets."""

from __future__ import annotations

import json
import os
from typing import Any, Protocol

from agent.config.notify import ReceiverConfig

Request = tuple[str, bytes, dict[str, str]]  # url, body, headers


class Channel(Protocol):
    """Builds the request for a payload, and says whether the answer means delivered."""

    def request(self, payload: dict[str, Any], key: str) -> Request:
        """Return url, body and headers; signatures are made here, fresh at every try."""
        ...

    def accepted(self, status: int, text: str) -> bool:
        """Return True if the receiver took the notification."""
        ...


def json_request(url: str, body: object, key: str) -> Request:
    """Build a JSON POST carrying the idempotency key."""
    headers = {"Content-Type": "application/json", "Idempotency-Key": key}
    return url, json.dumps(body, ensure_ascii=False).encode(), headers


def ok_2xx(status: int, text: str) -> bool:
    """Delivered on any 2xx."""
    return 200 <= status < 300


def ok_errcode(status: int, text: str, field: str = "errcode") -> bool:
    """Delivered on 2xx with a JSON `errcode` (or `code`) of 0, as the chat robots answer."""
    if not ok_2xx(status, text):
        return False
    try:
        answer = json.loads(text)
    except ValueError:
        return False
    return isinstance(answer, dict) and answer.get(field, answer.get("StatusCode", 1)) == 0


def read_secret(cfg: ReceiverConfig) -> bytes | None:
    """Read a receiver's secret from its file or environment variable (never logged)."""
    if cfg.secret_file is not None:
        return cfg.secret_file.read_bytes().strip()
    if cfg.secret_env is not None:
        return os.environ[cfg.secret_env].encode()
    return None
