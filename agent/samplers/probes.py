"""One round of loss probes: send every probe at once, then collect replies until a deadline."""

from __future__ import annotations

import errno
import itertools
import os
import selectors
import socket
import struct
import time
from collections.abc import Sequence
from dataclasses import dataclass

from agent.targets import Target

_SEQ = itertools.count(1)
_ICMP: dict[int, tuple[int, int, int]] = {
    socket.AF_INET: (socket.IPPROTO_ICMP, 8, 0),
    socket.AF_INET6: (socket.IPPROTO_ICMPV6, 128, 129),
}
_REACHABLE = (0, errno.ECONNREFUSED)  # a TCP RST or ICMP port-unreachable is a reply


def checksum(data: bytes) -> int:
    """Return the Internet checksum (RFC 1071) of data."""
    if len(data) % 2:
        data += b"\0"
    total = sum(struct.unpack(f"!{len(data) // 2}H", data))
    total = (total >> 16) + (total & 0xFFFF)
    total += total >> 16
    return int(~total & 0xFFFF)


def echo_request(family: int, ident: int, seq: int) -> bytes:
    """Build an ICMP(v6) echo request carrying a token the reply must echo."""
    _, req, _ = _ICMP[family]
    payload = struct.pack("!d", time.time()) + os.urandom(8)
    header = struct.pack("!BBHHH", req, 0, 0, ident, seq)
    if family == socket.AF_INET6:
        return header + payload  # the kernel fills in the ICMPv6 checksum
    return struct.pack("!BBHHH", req, 0, checksum(header + payload), ident, seq) + payload


def icmp_socket(family: int) -> tuple[socket.socket, bool] | None:
    """Open an unprivileged ping socket, else a raw one; None if neither is allowed."""
    proto = _ICMP[family][0]
    for kind, raw in ((socket.SOCK_DGRAM, False), (socket.SOCK_RAW, True)):
        try:
            return socket.socket(family, kind, proto), raw
        except PermissionError:
            continue
    return None


@dataclass
class Attempt:
    """One probe in flight."""

    target: Target
    sock: socket.socket | None  # None: the probe could not even be sent
    method: str
    sent: float
    ident: int = 0
    seq: int = 0
    raw: bool = False
    rtt: float | None = None
    done: bool = False

    def on_event(self, now: float) -> None:
        """Handle the socket becoming ready: a reply, an error, or someone else's packet."""
        assert self.sock is not None
        if self.method == "tcp":
            err = self.sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
            self._finish(now, err in _REACHABLE)
            return
        try:
            data = self.sock.recv(2048)
        except ConnectionRefusedError:
            self._finish(now, True)
            return
        except OSError:
            self._finish(now, False)
            return
        if self.method == "udp" or self._is_my_reply(data):
            self._finish(now, True)

    def _is_my_reply(self, data: bytes) -> bool:
        assert self.sock is not None
        family = self.sock.family
        if self.raw and family == socket.AF_INET:
            data = data[(data[0] & 0x0F) * 4 :] if data else data  # skip the IPv4 header
        if len(data) < 8:
            return False
        kind, _, _, ident, seq = struct.unpack("!BBHHH", data[:8])
        if kind != _ICMP[family][2] or seq != self.seq:
            return False
        return not self.raw or ident == self.ident  # ping sockets filter by ident themselves

    def _finish(self, now: float, ok: bool) -> None:
        self.rtt = now - self.sent if ok else None
        self.done = True


def _addr(target: Target) -> tuple[int, tuple[str, int]]:
    info = socket.getaddrinfo(target.host, target.port, type=socket.SOCK_DGRAM)[0]
    return info[0], info[4][:2]  # type: ignore[return-value]


def start(target: Target, method: str) -> Attempt:
    """Send one probe; raise OSError if it cannot even be sent."""
    family, addr = _addr(target)
    if method == "icmp":
        opened = icmp_socket(family)
        if opened is None:
            raise PermissionError("ICMP not permitted")
        sock, raw = opened
        ident, seq = os.getpid() & 0xFFFF, next(_SEQ) & 0xFFFF
        sock.setblocking(False)
        sock.sendto(echo_request(family, ident, seq), (addr[0], 0))
        return Attempt(target, sock, method, time.monotonic(), ident, seq, raw)
    kind = socket.SOCK_STREAM if method == "tcp" else socket.SOCK_DGRAM
    sock = socket.socket(family, kind)
    sock.setblocking(False)
    sent = time.monotonic()
    err = sock.connect_ex(addr)
    if method == "udp" and err == 0:
        sock.send(b"dsagent-probe")
    elif err not in (0, errno.EINPROGRESS):
        sock.close()
        raise OSError(err, os.strerror(err))
    return Attempt(target, sock, method, sent)


def run_round(plan: Sequence[tuple[Target, str, int]], timeout: float) -> list[Attempt]:
    """Send `count` probes per (target, method, count) and wait up to `timeout` for replies."""
    attempts: list[Attempt] = []
    sel = selectors.DefaultSelector()
    for target, method, count in plan:
        for _ in range(count):
            _send(target, method, attempts, sel)
    deadline = time.monotonic() + timeout
    try:
        while (left := deadline - time.monotonic()) > 0 and sel.get_map():
            for key, _ in sel.select(left):
                attempt = key.data
                attempt.on_event(time.monotonic())
                if attempt.done:
                    sel.unregister(key.fileobj)
    finally:
        sel.close()
        for attempt in attempts:
            if attempt.sock is not None:
                attempt.sock.close()
    return attempts


def _send(
    target: Target, method: str, attempts: list[Attempt], sel: selectors.BaseSelector
) -> None:
    """Start one probe and register it; one that cannot be sent counts as lost."""
    try:
        attempt = start(target, method)
    except OSError:
        attempts.append(Attempt(target, None, method, 0.0, done=True))
        return
    attempts.append(attempt)
    events = selectors.EVENT_WRITE if method == "tcp" else selectors.EVENT_READ
    assert attempt.sock is not None  # start() returns only probes it could send
    sel.register(attempt.sock, events, attempt)
