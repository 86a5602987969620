"""Probe targets written as "host", "icmp://host", "udp://host:port" or "tcp://host:port"."""

from __future__ import annotations

from typing import Literal, NamedTuple
from urllib.parse import urlsplit

Method = Literal["auto", "icmp", "udp", "tcp"]
TRACEROUTE_PORT = 33434  # a UDP port nobody listens on: the reply is ICMP port-unreachable


class Target(NamedTuple):
    """One parsed probe target."""

    text: str
    method: Method
    host: str
    port: int


def parse_target(text: str) -> Target:
    """Parse a probe target; raise ValueError naming what is wrong."""
    raw = text.strip()
    if "://" not in raw:
        if not raw or any(c in raw for c in " /?#@"):
            raise ValueError(f"invalid probe target {text!r}")
        return Target(raw, "auto", raw.strip("[]"), TRACEROUTE_PORT)
    parts = urlsplit(raw)
    scheme = parts.scheme
    if scheme not in ("icmp", "udp", "tcp"):
        raise ValueError(f"invalid probe target {text!r}: scheme must be icmp, udp or tcp")
    try:
        port = parts.port
    except ValueError as exc:
        raise ValueError(f"invalid probe target {text!r}: {exc}") from None
    if not parts.hostname or parts.path not in ("", "/"):
        raise ValueError(f"invalid probe target {text!r}: expected {scheme}://host[:port]")
    if scheme != "icmp" and port is None:
        raise ValueError(f"invalid probe target {text!r}: {scheme} needs a port")
    method: Method = scheme  # type: ignore[assignment]
    return Target(raw, method, parts.hostname, port or TRACEROUTE_PORT)
