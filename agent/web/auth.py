"""Who is asking: bearer tokens with roles for the admin API, basic auth for /metrics."""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import os
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
    auth = headers.get("Authorization", "")
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
    """Check exporter-toolkit basic_auth_users (bcrypt); good checks are cached: bcrypt is slow."""

    def __init__(self, users: Mapping[str, bytes]) -> None:
        self.users = dict(users)
        self._good: set[bytes] = set()

    def check(self, headers: Mapping[str, str]) -> bool:
        """Return True if the request carries a valid user and password."""
        auth = headers.get("Authorization", "")
        if not auth.lower().startswith("basic "):
            return False
        try:
            user, _, password = (
                base64.b64decode(auth[6:].strip(), validate=True).decode().partition(":")
            )
        except (binascii.Error, UnicodeDecodeError):
            return False
        key = hashlib.sha256(f"{user}\0{password}".encode()).digest()
        if key in self._good:
            return True
        import bcrypt  # only when web.yml has users

        hashed = self.users.get(user)
        try:
            ok = hashed is not None and bcrypt.checkpw(password.encode(), hashed)
        except ValueError:  # not a bcrypt hash
            ok = False
        if ok and len(self._good) < 1000:
            self._good.add(key)
        return ok
