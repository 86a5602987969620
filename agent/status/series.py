"""The series `dsagent status` fetched, and the small readers its sections share."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

Series = dict[str, Any]  # name, labels, stale, values (one per step, None where no sample)


def latest(series: Series | None) -> float | None:
    """Return the newest value of a series, or None."""
    if series is None:
        return None
    return next((v for v in reversed(series["values"]) if v is not None), None)


def find(series: Iterable[Series], name: str, /, **labels: str) -> list[Series]:
    """Return the series of a name whose labels include all of `labels`."""
    return [s for s in series if s["name"] == name
            and all(s["labels"].get(k) == v for k, v in labels.items())]  # fmt: skip


def one(series: Iterable[Series], name: str, /, **labels: str) -> Series | None:
    """Return the first series of a name with these labels, or None."""
    found = find(series, name, **labels)
    return found[0] if found else None


FORMATS: dict[str, Callable[[float], str]] = {
    "%": lambda v: f"{100 * v:.0f}%",
    "%%": lambda v: f"{100 * v:.2f}%",  # small shares: packet loss
    "s": lambda v: f"{1000 * v:.0f}ms" if v < 10 else f"{v:.0f}s",
    "GiB": lambda v: f"{v / 2**30:.1f}",
    "n": lambda v: f"{v:.0f}",
    "g": lambda v: f"{v:.3g}",
    "": lambda v: f"{v:.1f}" if abs(v) < 100 else f"{v:.0f}",
}


def fmt(value: float | None, kind: str) -> str:
    """Format a value for a column (see FORMATS); '-' when there is none."""
    return "-" if value is None else FORMATS[kind](value)


def grown(series: Series | None) -> float:
    """How much a counter grew over the window (its newest value less its oldest)."""
    seen = [v for v in (series or {}).get("values", []) if v is not None]
    return seen[-1] - seen[0] if seen else 0.0
