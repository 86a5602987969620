"""Window functions over one series' samples in a trailing window (pure, clock-free)."""

from __future__ import annotations

import math
import operator
from collections.abc import Sequence
from itertools import compress


def last(vals: Sequence[float]) -> float | None:
    """Return the newest value."""
    return vals[-1] if vals else None


def avg(vals: Sequence[float]) -> float | None:
    """Return the mean."""
    return sum(vals) / len(vals) if vals else None


def minimum(vals: Sequence[float]) -> float | None:
    """Return the smallest value."""
    return min(vals) if vals else None


def maximum(vals: Sequence[float]) -> float | None:
    """Return the largest value."""
    return max(vals) if vals else None


def increase(vals: Sequence[float]) -> float | None:
    """Return how much a counter grew; a drop is a reset and counts from zero."""
    if len(vals) < 2:
        return None
    # The sum of (cur - prev) telescopes to last - first; each reset adds back the value
    # lost at it. map/compress keep the loop in C: this runs for every rate() every cycle.
    before = vals[:-1]
    resets = compress(before, map(operator.lt, vals[1:], before))
    return vals[-1] - vals[0] + sum(resets)


def rate(ts: Sequence[float], vals: Sequence[float]) -> float | None:
    """Return a counter's per-second growth between the first and last sample."""
    grown = increase(vals)
    if grown is None or ts[-1] <= ts[0]:
        return None
    return grown / (ts[-1] - ts[0])


def quantile(q: float, vals: Sequence[float]) -> float | None:
    """Return the q-quantile with linear interpolation, as PromQL's quantile_over_time."""
    return ranked(q, sorted(vals))


def ranked(q: float, ordered: Sequence[float]) -> float | None:
    """Return the q-quantile of values already in ascending order (one sort, many quantiles)."""
    if not ordered or math.isnan(q):
        return None
    if q < 0:
        return -math.inf
    if q > 1:
        return math.inf
    rank = q * (len(ordered) - 1)
    lo = math.floor(rank)
    hi = min(lo + 1, len(ordered) - 1)
    weight = rank - lo
    return ordered[lo] * (1 - weight) + ordered[hi] * weight


def steady(func: str, q: float | None, count: int, value: float) -> float | None:
    """Return a window function over samples that all equal `value`: `count` of them, or 2+."""
    if func in ("increase", "rate"):
        return 0.0 if count >= 2 else None
    if func == "quantile_over_time":
        assert q is not None
        return quantile(q, [value])
    return value
