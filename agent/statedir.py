"""The state dir: checked before use, and held by one agent at a time (flock on dsagent.lock)."""

from __future__ import annotations

import fcntl
import os
import tempfile
from pathlib import Path

LOCK = "dsagent.lock"


class StateDirError(Exception):
    """The state dir cannot be used; the message says why, in one line."""


def check(path: Path, create: bool = True) -> None:
    """Raise StateDirError unless `path` is a directory this process can write.

    With `create` it is made if missing; without (check-config), its nearest existing parent
    must be writable instead.
    """
    where = f"agent.state_dir {path}"
    if path.exists() and not path.is_dir():
        raise StateDirError(f"{where} is not a directory")
    if not create and not path.exists():
        parent = next(p for p in path.parents if p.exists())
        if not os.access(parent, os.W_OK | os.X_OK):
            raise StateDirError(f"{where} does not exist and {parent} is not writable")
        return
    try:
        path.mkdir(parents=True, exist_ok=True, mode=0o750)
        fd, probe = tempfile.mkstemp(dir=path, prefix=".writable-")
        os.close(fd)
        os.unlink(probe)
    except OSError as exc:
        raise StateDirError(f"{where} is not writable by uid {os.geteuid()} "
                            f"({exc.strerror or exc})") from None  # fmt: skip


def lock(path: Path) -> int:
    """Hold the state dir for this process until it exits; return the lock's descriptor."""
    fd = os.open(path / LOCK, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o640)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        holder = os.pread(fd, 32, 0).decode(errors="replace").strip() or "unknown"
        os.close(fd)
        why = f"is in use by another dsagent (pid {holder}); give this one a state_dir of its own"
        raise StateDirError(f"agent.state_dir {path} {why}") from None
    os.ftruncate(fd, 0)
    os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
    return fd
