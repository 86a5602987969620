"""Who is asking: bearer tokens with roles for the admin API, basic auth for /metrics."""

from __future__ import annotations

import base64
import hashlib
import hmac
import os
import threading
import time
from collections import deque
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime

from agent.config import TokenConfig

ROLES = {"viewer": 0, "operator": 1, "admin": 2}


@dataclass(frozen=True)
class Token:
    """An API token; its secret never appears in a repr, a log or an answer."""

    name: str
    role: str
    secret: str = field(repr=False)
    expires: datetime | None = None


def load_tokens(configs: Sequence[TokenConfig]) -> list[Token]:
    """Read each token from its file or environment variable; an empty one is a ValueError."""
    out = []
    for c in configs:
        secret = c.token_file.read_text().strip() if c.token_file else os.environ[str(c.token_env)]
        if not secret.strip():
            raise ValueError(f"api token {c.name!r}: {c.token_file or c.token_env} is empty")
        expires = c.expires.replace(tzinfo=c.expires.tzinfo or UTC) if c.expires else None
        out.append(Token(c.name, c.role, secret, expires))
    return out


def bearer(headers: Mapping[str, str], tokens: Sequence[Token]) -> tuple[Token | None, str]:
    """Return the token presented, or None and why (no credentials, unknown, expired)."""
    auth = headers.get("authorization", "")  # names are lower-case: handler.header_map
    if not auth.lower().startswith("bearer "):
        return None, "no credentials"
    given = auth[7:].strip().encode()
    if not given:
        return None, "no credentials"
    for token in tokens:
        if hmac.compare_digest(given, token.secret.encode()):
            if token.expires is not None and token.expires <= datetime.now(UTC):
                return None, "token expired"
            return token, ""
    return None, "unknown token"


class BasicAuth:
    """exporter-toolkit basic_auth_users (bcrypt), with its cache, and a cost no one can probe.

    A verified user and password is cached (as exporter-toolkit does), so a scrape pays bcrypt
    once. An unknown user costs the same bcrypt as a known one, so names cannot be found by
    timing. One bcrypt check runs at a time, so wrong passwords cost at most one core. Every
    credential is checked: the right password is never refused, whoever failed before from
    the same address. A client past FAILURES_PER_MINUTE is slowed instead: its next failure
    is answered only after `penalty()` seconds, doubling with each one, during which its
    connection counts as waiting (evictable), so it holds no place a scraper needs.
    """

    FAILURES_PER_MINUTE = 10
    MAX_PENALTY = 8.0  # seconds

    def __init__(self, users: Mapping[str, bytes]) -> None:
        import bcrypt  # only when web.yml has users

        self.users = dict(users)
        self._good: set[bytes] = set()
        self._failures: dict[str, deque[float]] = {}
        self._bcrypt = threading.Semaphore(1)
        self._lock = threading.Lock()
        # A hash of the same cost as the users' for unknown names to be checked against.
        cost = max((_cost(h) for h in self.users.values()), default=10)
        self._decoy = bcrypt.hashpw(os.urandom(16), bcrypt.gensalt(rounds=cost))
        self._checkpw = bcrypt.checkpw

    def cached(self, headers: Mapping[str, str]) -> bool:
        """Return True if the request carries a user and password verified before (no bcrypt)."""
        given = _credentials(headers)
        return given is not None and _key(*given) in self._good

    def check(self, headers: Mapping[str, str], client: str = "") -> bool:
        """Return True if the request carries a valid user and password."""
        given = _credentials(headers)
        if given is None:
            return False
        user, password = given
        key = _key(user, password)
        if key in self._good:
            return True
        ok = self._verify(user, password)
        if ok and len(self._good) < 1000:
            self._good.add(key)
        elif not ok:
            self._failed(client)
        return ok

    def _verify(self, user: str, password: str) -> bool:
        hashed = self.users.get(user)
        with self._bcrypt:
            try:
                ok = self._checkpw(password.encode(), hashed or self._decoy)
            except ValueError:  # not a bcrypt hash (load_web_config refuses those)
                ok = False
        return ok and hashed is not None

    def penalty(self, client: str) -> float:
        """Return how long to hold a failed answer: 0 until the minute's allowance is spent."""
        now = time.monotonic()
        with self._lock:
            recent = self._failures.get(client)
            if recent is None:
                return 0.0
            while recent and now - recent[0] > 60:
                recent.popleft()
            over = len(recent) - self.FAILURES_PER_MINUTE
        return 0.0 if over <= 0 else min(0.25 * 2 ** min(over, 10), self.MAX_PENALTY)

    def _failed(self, client: str) -> None:
        with self._lock:
            if len(self._failures) > 10_000:  # many clients: forget the oldest
                self._failures.pop(next(iter(self._failures)))
            self._failures.setdefault(client, deque()).append(time.monotonic())


def _credentials(headers: Mapping[str, str]) -> tuple[str, str] | None:
    """Return the basic-auth user and password a request carries, if it carries any."""
    auth = headers.get("authorization", "")
    if not auth.lower().startswith("basic "):
        return None
    try:
        raw = base64.b64decode(auth[6:].strip(), validate=True).decode()
    except (ValueError, UnicodeDecodeError):  # binascii.Error is a ValueError; \xff too
        return None
    user, _, password = raw.partition(":")
    return user, password


def _key(user: str, password: str) -> bytes:
    return hashlib.sha256(f"{user}\0{password}".encode()).digest()


def _cost(hashed: bytes) -> int:
    """Return the cost of a bcrypt hash ($2b$12$...), or 10 when it is not one."""
    parts = hashed.split(b"$")
    return (
        int(parts[2]) if len(parts) > 3 and parts[2].isdigit() and 4 <= int(parts[2]) <= 31 else 10
    )
