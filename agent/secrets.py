"""Secrets never written to a log, an error string or an answer: chat webhook URLs, keys."""

from __future__ import annotations

import threading
from collections.abc import Iterable
from urllib.parse import urlsplit

REDACTED = "<redacted>"


def url_secrets(url: str) -> list[str]:
    """Return the parts of a receiver URL that may be its key: whole, path and query, query.

    For DingTalk and WeCom the key is in the query, for Slack and Feishu in the path; a path
    too short to hold a token (/hook) is left readable.
    """
    parts = urlsplit(url)
    target = f"{parts.path}?{parts.query}" if parts.query else ""
    found = [url, target, parts.query, parts.path if len(parts.path) >= 8 else ""]
    return sorted({s for s in found if s and s != "/"}, key=len, reverse=True)


def scrub(text: str, url: str) -> str:
    """Remove a receiver URL's secret parts from a text (an error from the HTTP client)."""
    for secret in url_secrets(url):
        text = text.replace(secret, "/" + REDACTED)
    return text


class Secrets:
    """The process's secrets by owner (receivers, elasticsearch); every log line is redacted."""

    def __init__(self) -> None:
        self._owned: dict[str, frozenset[str]] = {}
        self._all: tuple[str, ...] = ()
        self._lock = threading.Lock()

    def set(self, owner: str, secrets: Iterable[str]) -> None:
        """Replace what one owner holds (strings under 6 characters would redact words)."""
        with self._lock:
            self._owned[owner] = frozenset(s for s in secrets if len(s) >= 6)
            every = set().union(*self._owned.values())
            self._all = tuple(sorted(every, key=len, reverse=True))

    def redact(self, text: str) -> str:
        """Return text with every secret replaced."""
        for secret in self._all:  # read once: set() replaces the tuple whole
            if secret in text:
                text = text.replace(secret, REDACTED)
        return text


SECRETS = Secrets()  # one for the process, as logging has one root logger
