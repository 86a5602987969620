"""Per-key deltas between two snapshots of monotonic kernel counters."""

from __future__ import annotations

from collections.abc import Hashable, Mapping, Sequence
from typing import Generic, TypeVar

K = TypeVar("K", bound=Hashable)


class CounterDeltas(Generic[K]):
    """Remembers the previous snapshot and returns what grew since, per key."""

    def __init__(self) -> None:
        self._prev: dict[K, Sequence[float]] = {}
        self._ts: float | None = None

    def update(
        self, now: float, current: Mapping[K, Sequence[float]]
    ) -> tuple[float, dict[K, tuple[float, ...]]]:
        """Store `current`; return seconds elapsed and the deltas of keys seen both times."""
        prev, prev_ts = self._prev, self._ts
        self._prev, self._ts = dict(current), now
        if prev_ts is None or now <= prev_ts:
            return 0.0, {}
        out: dict[K, tuple[float, ...]] = {}
        for key, values in current.items():
            old = prev.get(key)
            if old is None or len(old) != len(values):
                continue
            delta = tuple(v - o for v, o in zip(values, old, strict=True))
            # A counter that went down means the device was replaced or reset:
            # skip one interval rather than report a negative or huge rate.
            if all(d >= 0 for d in delta):
                out[key] = delta
        return now - prev_ts, out


def ratio(part: float, whole: float) -> float:
    """Return part/whole, 0 when nothing happened (nothing waited, nothing dropped)."""
    return part / whole if whole > 0 else 0.0
