"""sd_notify without libsystemd: READY, RELOADING, STOPPING and WATCHDOG to $NOTIFY_SOCKET."""

from __future__ import annotations

import os
import socket
import time


def _address() -> str | None:
    path = os.environ.get("NOTIFY_SOCKET")
    if not path:
        return None
    return "\0" + path[1:] if path.startswith("@") else path  # '@' is the abstract namespace


def notify(*states: str) -> bool:
    """Send `KEY=value` lines to systemd; False when not run by systemd (or it did not take it)."""
    address = _address()
    if address is None:
        return False
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
            sock.sendto("\n".join(states).encode(), address)
    except OSError:
        return False
    return True


def reloading() -> bool:
    """Tell systemd a reload started (it wants the monotonic time in microseconds)."""
    return notify(
        "RELOADING=1", f"MONOTONIC_USEC={time.clock_gettime_ns(time.CLOCK_MONOTONIC) // 1000}"
    )


def watchdog_interval() -> float | None:
    """Half of WatchdogSec, as systemd advises; None when no watchdog is set for us."""
    usec = os.environ.get("WATCHDOG_USEC")
    pid = os.environ.get("WATCHDOG_PID")
    if not usec or (pid and pid != str(os.getpid())):
        return None
    try:
        return max(0.1, int(usec) / 2_000_000)
    except ValueError:
        return None


def keep_alive(now: float) -> None:
    """Send one WATCHDOG=1: the round loop's task, so a stalled loop stops it and systemd acts."""
    notify("WATCHDOG=1")
