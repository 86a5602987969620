"""Rule expressions: a bare selector or one range function, evaluated against the store."""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from agent import windows
from agent.durations import format_duration, parse_duration
from agent.matchers import Selector, parse_selector
from agent.store import Labels, SeriesStore

FUNCTIONS = ("avg_over_time", "min_over_time", "max_over_time", "rate", "increase",
             "quantile_over_time")  # fmt: skip
LOOKBACK = 300.0  # a bare selector sees a series' newest sample up to 5 min old, as PromQL
_CALL = re.compile(r"^\s*([A-Za-z_]+)\s*\((.*)\)\s*$", re.S)
_RANGE = re.compile(r"^(.*)\[\s*([^\]]+)\]\s*$", re.S)

Vector = list[tuple[Labels, float]]


@dataclass(frozen=True)
class Expr:
    """A parsed expression."""

    selector: Selector
    func: str | None = None
    range: float = 0.0
    q: float | None = None

    def __str__(self) -> str:
        if self.func is None:
            return str(self.selector)
        arg = f"{self.selector}[{format_duration(self.range)}]"
        return f"{self.func}({self.q:g}, {arg})" if self.q is not None else f"{self.func}({arg})"


def parse_expr(text: str) -> Expr:
    """Parse an expression; raise ValueError naming what is wrong."""
    call = _CALL.match(text)
    if not call:
        return Expr(parse_selector(text))
    func, args = call.group(1), call.group(2)
    if func not in FUNCTIONS:
        raise ValueError(f"unknown function {func!r}: use one of {', '.join(FUNCTIONS)}")
    q = None
    if func == "quantile_over_time":
        head, sep, args = args.partition(",")
        try:
            q = float(head)
        except ValueError:
            raise ValueError(f"quantile_over_time needs a number first, not {head!r}") from None
        if not sep or not 0 <= q <= 1:
            raise ValueError("quantile_over_time(q, selector[range]) needs 0 <= q <= 1")
    ranged = _RANGE.match(args.strip())
    if not ranged:
        raise ValueError(f"{func} needs a range selector such as x[5m]")
    window = parse_duration(ranged.group(2).strip())
    if window <= 0:
        raise ValueError(f"{func} needs a positive range")
    return Expr(parse_selector(ranged.group(1)), func, window, q)


def _apply(expr: Expr, vals: Sequence[float]) -> float | None:
    """Apply a window function other than rate to a window's values."""
    func = expr.func
    if func == "avg_over_time":
        return windows.avg(vals)
    if func == "min_over_time":
        return windows.minimum(vals)
    if func == "max_over_time":
        return windows.maximum(vals)
    if func == "increase":
        return windows.increase(vals)
    assert expr.q is not None
    return windows.quantile(expr.q, vals)


def evaluate(expr: Expr, store: SeriesStore, at: float,
             match: Callable[[Labels], bool] | None = None) -> Vector:  # fmt: skip
    """Return (labels, value) for every series the expression yields at time `at`."""
    out: Vector = []
    selector = expr.selector
    cache_key = None if match else selector
    for series in store.select(selector.name, match or selector.matches, cache_key):
        if expr.func is None:
            newest = None if series.stale else store.newest(series, at - LOOKBACK, at)
            value: float | None = newest[1] if newest else None
        elif (steady := store.steady(series, at - expr.range, at)) is not None:
            value = windows.steady(expr.func, expr.q, *steady)
        elif expr.func == "rate":  # the one function that needs timestamps: the first, last
            ends, vals = store.edges(series, at - expr.range, at)
            value = windows.rate(ends, vals)
        else:
            value = _apply(expr, store.values(series, at - expr.range, at))
        if value is not None:  # NaN stays: it compares as in PromQL (false, but for !=)
            out.append((series.labels, value))
    return out
