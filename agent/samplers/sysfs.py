"""Small sysfs readers: one value a file, absent (None) when the file or its value is not there."""

from __future__ import annotations

import os
import re
from pathlib import Path

_NUMBERED = re.compile(r"(\d+)$")


def read_text(path: Path) -> str | None:
    """Return a sysfs file's text stripped, or None if it cannot be read (a driver lacks it)."""
    try:
        with open(path, "rb") as f:
            data = f.read(65536)
    except OSError:  # missing, EINVAL/EOPNOTSUPP from a driver, permission
        return None
    return data.decode("utf-8", errors="replace").strip()


def read_int(path: Path) -> int | None:
    """Return a file holding one integer, or None (missing, "N/A (no PMA)", garbage)."""
    text = read_text(path)
    if text is None:
        return None
    try:
        return int(text, 0) if text.startswith("0x") else int(text)
    except ValueError:
        return None


def entries(directory: Path, prefix: str = "") -> list[str]:
    """Return the names in a directory that start with `prefix`, in numeric order (mc2 < mc10)."""
    try:
        names = [n for n in os.listdir(directory) if n.startswith(prefix)]
    except OSError:
        return []

    def key(name: str) -> tuple[str, int, str]:
        match = _NUMBERED.search(name)
        return (name[: match.start()], int(match.group(1)), name) if match else (name, -1, name)

    return sorted(names, key=key)


def numbered(directory: Path, prefix: str) -> list[tuple[str, str]]:
    """Return (name, number) for entries named prefix<N>, such as mc0 or csrow3, in order."""
    out = []
    for name in entries(directory, prefix):
        rest = name[len(prefix) :]
        if rest.isdigit() and rest.isascii():
            out.append((name, rest))
    return out
