from __future__ import annotations

import math

import pytest
from hypothesis import given
from hypothesis import strategies as st

from agent import windows

values = st.lists(st.floats(-1e9, 1e9, allow_nan=False), min_size=1, max_size=50)
counters = st.lists(st.floats(0, 1e9, allow_nan=False), min_size=2, max_size=50)


@given(values)
def test_simple_aggregates(vals: list[float]) -> None:
    assert windows.last(vals) == vals[-1]
    assert windows.minimum(vals) == min(vals)
    assert windows.maximum(vals) == max(vals)
    mean = windows.avg(vals)
    assert mean is not None
    assert min(vals) - 1e-6 <= mean <= max(vals) + 1e-6


def test_empty_window_has_no_value() -> None:
    for fn in (windows.last, windows.avg, windows.minimum, windows.maximum):
        assert fn([]) is None
    assert windows.increase([5.0]) is None
    assert windows.rate([1.0], [5.0]) is None
    assert windows.quantile(0.5, []) is None


@given(counters)
def test_increase_of_a_monotonic_counter_is_last_minus_first(vals: list[float]) -> None:
    mono = sorted(vals)
    assert windows.increase(mono) == pytest.approx(mono[-1] - mono[0], rel=1e-9, abs=1e-6)


@given(counters)
def test_increase_is_never_negative_even_with_resets(vals: list[float]) -> None:
    grown = windows.increase(vals)
    assert grown is not None
    assert grown >= 0


def test_counter_reset_counts_from_zero() -> None:
    # 10 -> 15 (+5), reset to 3 (+3), 3 -> 7 (+4)
    assert windows.increase([10.0, 15.0, 3.0, 7.0]) == 12.0
    assert windows.rate([0.0, 1.0, 2.0, 4.0], [10.0, 15.0, 3.0, 7.0]) == 3.0


@given(values, st.floats(0, 1))
def test_quantile_lies_between_min_and_max_and_is_monotonic(vals: list[float], q: float) -> None:
    got = windows.quantile(q, vals)
    assert got is not None
    assert min(vals) - 1e-6 <= got <= max(vals) + 1e-6
    higher = windows.quantile(min(1.0, q + 0.1), vals)
    assert higher is not None
    assert higher >= got - 1e-6 * max(1.0, abs(got))


def test_quantile_matches_promql_interpolation() -> None:
    assert windows.quantile(0.5, [1.0, 2.0, 3.0, 4.0]) == 2.5
    assert windows.quantile(0.95, [float(i) for i in range(1, 101)]) == pytest.approx(95.05)
    assert windows.quantile(1.5, [1.0]) == math.inf
    assert windows.quantile(-1, [1.0]) == -math.inf
