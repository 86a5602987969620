"""The admin API: silences, reload, rule and alert state, outbox, config; roles and an audit log."""

from __future__ import annotations

import ipaddress
import json
import logging
import re
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from agent.web.audit import AuditLog
from agent.web.auth import ROLES, Token, bearer

log = logging.getLogger(__name__)

Answer = tuple[int, Any]
Call = Callable[[dict[str, Any], dict[str, str], Token], Answer]  # (body, params, who) -> answer


@dataclass(frozen=True)
class Endpoint:
    """One admin route: method, path pattern, the least role, and what it does."""

    method: str
    pattern: re.Pattern[str]
    role: str
    call: Call
    loopback: bool = False  # open to local clients while no [[api_tokens]] exist


LOCAL = Token("local", "viewer", "")  # who a loopback caller is while the API has no tokens


def endpoint(method: str, path: str, role: str, call: Call, loopback: bool = False) -> Endpoint:
    """Declare a route; `{name}` in the path captures a parameter (the query is params["?"])."""
    regex = re.sub(r"\{(\w+)\}", r"(?P<\1>[A-Za-z0-9_.-]{1,64})", path)
    return Endpoint(method, re.compile(f"^{regex}$"), role, call, loopback)


class AdminApi:
    """Authenticates, authorises, runs and audits every /api/v1 call."""

    def __init__(self, tokens: Sequence[Token], endpoints: Sequence[Endpoint],
                 audit: AuditLog) -> None:  # fmt: skip
        self.tokens, self.endpoints, self.audit = list(tokens), list(endpoints), audit

    def handle(self, method: str, path: str, headers: Mapping[str, str], body: bytes,
               remote: str, *, query: str = "") -> Answer:  # fmt: skip
        """Answer one request; every call is audited, refused ones too."""
        token, reason = bearer(headers, self.tokens)
        if token is None and not self.tokens and ipaddress_is_loopback(remote):
            token, reason = LOCAL, ""  # only endpoints marked loopback take it (see _answer)
        try:
            code, answer = self._answer(method, path, body, token, reason=reason, query=query)
        except Exception:  # the boundary of one request: answered, logged, audited
            log.exception("admin API: %s %s failed", method, path)
            code, answer = 500, {"error": "internal error; see the agent's log"}
        who = {"who": token.name, "role": token.role} if token else {"who": None, "role": None}
        entry = {**who, "method": method, "path": path, "status": code, "remote": remote}
        self.audit.record({**entry, "reason": reason or None}, time.time())
        return code, answer

    def _answer(self, method: str, path: str, body: bytes, token: Token | None, *,
                reason: str, query: str) -> Answer:  # fmt: skip
        route = self._route(method, path)
        open_here = token is LOCAL and not isinstance(route[0], int) and route[0].loopback
        if not self.tokens and not open_here:
            return 404, {"error": "the admin API is off: configure [[api_tokens]]"}
        if token is None:
            return 401, {"error": reason}
        if isinstance(route[0], int):
            return route
        ep, params = route
        params = {**params, "?": query}
        if ROLES[token.role] < ROLES[ep.role]:
            return 403, {"error": f"role {token.role} may not {method} {path} (needs {ep.role})"}
        data = _json_object(body)
        if data is None:
            return 400, {"error": "the body must be a JSON object"}
        return ep.call(data, params, token)

    def _route(self, method: str, path: str) -> tuple[Endpoint, dict[str, str]] | Answer:
        """Find the endpoint; 404 for an unknown path, 405 for a known path's other methods."""
        matches = [(e, m.groupdict()) for e in self.endpoints if (m := e.pattern.match(path))]
        if not matches:
            return 404, {"error": f"no such endpoint: {path}"}
        found = next(((e, p) for e, p in matches if e.method == method), None)
        return found if found is not None else (405, {"error": f"{method} not allowed on {path}"})


def ipaddress_is_loopback(remote: str) -> bool:
    """Return True for 127.0.0.0/8, ::1 and their IPv4-mapped forms."""
    try:
        address = ipaddress.ip_address(remote)
    except ValueError:
        return False
    mapped = getattr(address, "ipv4_mapped", None)
    return bool((mapped or address).is_loopback)


def _json_object(body: bytes) -> dict[str, Any] | None:
    """Parse a request body: empty is {}, anything but a JSON object is None."""
    try:
        data = json.loads(body) if body else {}
    except (ValueError, UnicodeDecodeError, RecursionError):  # RecursionError: 100,000 "["
        return None
    return data if isinstance(data, dict) else None


SECRET_KEYS = re.compile(r"(secret|password|token|api_key)(?!_file|_env)", re.I)


def redact(value: Any, key: str = "") -> Any:
    """Return a config dump fit to show: URLs cut to scheme://host, secret-looking keys masked."""
    if isinstance(value, dict):
        return {k: redact(v, k) for k, v in value.items()}
    if isinstance(value, list):
        return [redact(v, key) for v in value]
    if isinstance(value, str) and SECRET_KEYS.search(key):
        return "<redacted>"
    if isinstance(value, str) and "://" in value:
        parts = urlsplit(value)
        host = parts.hostname or ""
        port = f":{parts.port}" if parts.port else ""
        rest = "/<redacted>" if (parts.path.strip("/") or parts.query or parts.username) else ""
        return f"{parts.scheme}://{host}{port}{rest}"
    return value
