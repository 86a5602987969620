from __future__ import annotations

import tracemalloc

import pytest
from hypothesis import given
from hypothesis import strategies as st

from agent import windows
from agent.alerting.expr import FUNCTIONS as FUNCS
from agent.alerting.expr import _apply, parse_expr
from agent.store import Ring, SeriesStore, sample

times = st.lists(st.floats(min_value=0, max_value=1e6, allow_nan=False), max_size=60)


@given(
    capacity=st.integers(min_value=1, max_value=20),
    stamps=times,
    start=st.floats(0, 1e6),
    width=st.floats(0, 1e6),
)
def test_ring_matches_a_list_model(
    capacity: int, stamps: list[float], start: float, width: float
) -> None:
    ring, model = Ring(capacity), []
    for i, ts in enumerate(stamps):
        accepted = ring.append(ts, float(i))
        assert accepted == (not model or ts > model[-1][0])
        if accepted:
            model = [*model, (ts, float(i))][-capacity:]
    assert len(ring) == len(model)
    assert ring.last() == (model[-1] if model else None)
    expect = [p for p in model if start <= p[0] <= start + width]
    got_ts, got_vals = ring.between(start, start + width)
    assert list(zip(got_ts, got_vals, strict=True)) == expect
    newest = ring.newest_between(start, start + width)
    assert newest == (expect[-1] if expect else None)


VALUES = st.sampled_from([0.0, -0.0, 1.0, 0.1, 1e300, float("nan"), float("inf"), 2.5])


@given(capacity=st.integers(1, 12), steps=st.lists(st.tuples(st.sampled_from([0.5, 1.0, 1e-6, 3.0]),
                                                            VALUES), max_size=60))  # fmt: skip
def test_a_ring_reads_back_every_value_exactly_as_written(
    capacity: int, steps: list[tuple[float, float]]
) -> None:
    """Repeated values take a fast path; NaN, -0.0 and values float32 cannot hold do not."""
    ring, model, ts = Ring(capacity), [], 1.7e9
    for step, value in steps:
        ts += step
        assert ring.append(ts, value)
        model = [*model, (ts, value)][-capacity:]
    got_ts, got_vals = ring.between(0, 2e9)
    assert [(t, repr(v)) for t, v in zip(got_ts, got_vals, strict=True)] == [
        (t, repr(v)) for t, v in model
    ]
    assert repr(ring.latest) == repr(model[-1][1] if model else 0.0)


def test_a_run_in_a_new_order_or_with_new_labels_lands_in_the_right_series() -> None:
    store = SeriesStore(retention=60, interval=1)
    store.ingest("gpu", [sample("t", 1, gpu="0"), sample("t", 2, gpu="1")], 1.0)
    store.ingest("gpu", [sample("t", 20, gpu="1"), sample("u", 5, gpu="0"),
                         sample("t", 10, gpu="0")], 2.0)  # fmt: skip
    store.ingest("gpu", [sample("t", 11, gpu="0"), sample("t", 21, gpu="2")], 3.0)
    got = {(n, dict(labels)["gpu"]): v for n, labels, v in store.current()}
    assert got == {("t", "0"): 11.0, ("t", "2"): 21.0}
    (one,) = store.select("t", lambda labels: labels == (("gpu", "1"),))
    assert list(store.values(one, 0, 10)) == [2.0, 20.0]


def test_a_source_back_after_its_series_were_evicted_writes_to_live_series() -> None:
    store = SeriesStore(retention=60, interval=1)
    store.ingest("nvme", [sample("smart", 1)], 1.0)
    store.ingest("host", [sample("load", 1)], 200.0)  # evicts nvme's series, unseen for 60 s
    assert store.series_count() == 1
    store.ingest("nvme", [sample("smart", 2)], 201.0)
    assert dict(((n, v) for n, _, v in store.current())) == {"load": 1.0, "smart": 2.0}
    assert store.series_count() == 2


def test_series_missing_from_a_run_turn_stale_and_vanish_from_current() -> None:
    store = SeriesStore(retention=60, interval=1)
    store.ingest(
        "disk",
        [sample("disk_util", 0.5, device="sda"), sample("disk_util", 0.1, device="sdb")],
        1.0,
    )
    store.ingest("disk", [sample("disk_util", 0.6, device="sda")], 2.0)
    current = {(n, dict(labels)["device"]): v for n, labels, v in store.current()}
    assert current == {("disk_util", "sda"): 0.6}
    (sdb,) = store.select("disk_util", lambda labels: dict(labels)["device"] == "sdb")
    assert sdb.stale
    ts, vals = store.window(sdb, 0, 10)
    assert (list(ts), list(vals)) == ([1.0], [0.1])  # history stays for the rules


def test_a_failed_run_makes_all_its_series_stale() -> None:
    store = SeriesStore()
    store.ingest("host", [sample("host_load1", 1.0)], 1.0)
    store.ingest("host", [], 2.0)
    assert list(store.current()) == []


def test_sources_do_not_stale_each_other() -> None:
    store = SeriesStore()
    store.ingest("a", [sample("x", 1.0)], 1.0)
    store.ingest("b", [sample("y", 2.0)], 1.0)
    store.ingest("b", [sample("y", 3.0)], 2.0)
    assert sorted(n for n, _, _ in store.current()) == ["x", "y"]


def test_out_of_order_samples_are_refused_and_counted() -> None:
    store = SeriesStore()
    store.ingest("a", [sample("x", 1.0)], 10.0)
    store.ingest("a", [sample("x", 2.0)], 5.0)
    assert store.stats.out_of_order == 1
    assert [v for _, _, v in store.current()] == [1.0]


def _day(store: SeriesStore, hours: int, start_hour: int) -> None:
    """Feed `hours` of 1 s samples: 8 steady series plus 2 pids that churn every minute."""
    for t in range(start_hour * 3600, (start_hour + hours) * 3600):
        pid = t // 60
        samples = [sample("gpu_util", (t % 100) / 100, gpu=g) for g in range(8)]
        samples += [sample("proc_mem", t, pid=pid), sample("proc_mem", t, pid=pid + 100000)]
        store.ingest("s", samples, float(t))


@pytest.mark.integration  # a soak: 24 h of synthetic time through tracemalloc
def test_memory_stays_flat_over_24h_of_synthetic_time() -> None:
    store = SeriesStore(retention=900, interval=1)
    tracemalloc.start()
    _day(store, 2, 0)
    after_2h, _ = tracemalloc.get_traced_memory()
    _day(store, 22, 2)
    after_24h, _ = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    # Churned series are evicted after the retention: only ~15 min of pids remain.
    assert store.series_count() <= 8 + 2 * 17
    assert store.series_count() == sum(len(store.select(n)) for n in store.names())
    assert store.stats.evicted >= 2 * 60 * 23
    assert after_24h - after_2h < 64 * 1024, "store grew over 22 synthetic hours"


@given(
    capacity=st.integers(min_value=1, max_value=30),
    values=st.lists(st.sampled_from([0.0, 1.0, 2.5, float("nan")]), min_size=1, max_size=60),
    back=st.floats(0, 8),  # the window starts this far behind the newest sample
    width=st.floats(0, 10),
    func=st.sampled_from(FUNCS),
)
def test_a_steady_window_gives_what_reading_it_would(
    capacity: int, values: list[float], back: float, width: float, func: str
) -> None:
    ring = Ring(capacity)
    for i, value in enumerate(values):
        ring.append(float(i), value)
    start = len(values) - 1 - back
    steady = ring.steady(start, start + width)
    ts, vals = ring.between(start, start + width)
    if steady is None:  # declining is always correct: the window is then read
        return
    assert steady[0] == min(len(vals), 2) and {str(v) for v in vals} == {str(steady[1])}
    expr = parse_expr(f"{func}(x[1m])" if func != "quantile_over_time" else f"{func}(0.9, x[1m])")
    full = windows.rate(ts, vals) if expr.func == "rate" else _apply(expr, vals)
    short = windows.steady(func, expr.q, *steady)
    assert str(short) == str(full)


def test_a_flag_that_stays_zero_is_steady_and_a_moving_value_is_not() -> None:
    flag, util = Ring(100), Ring(100)
    for i in range(100):
        flag.append(float(i), 0.0)
        util.append(float(i), float(i % 7))
    assert flag.steady(40.0, 99.0) == (2, 0.0)
    assert util.steady(40.0, 99.0) is None
    flag.append(100.0, 1.0)  # the flag goes up: only a window after that is steady
    assert flag.steady(40.0, 100.0) is None
    assert flag.steady(100.0, 100.0) == (1, 1.0)
    young = Ring(100)  # younger than the window: steady over all it holds
    for i in range(10):
        young.append(float(i), 0.0)
    assert young.steady(-50.0, 9.0) == (2, 0.0)
    assert young.steady(9.0, 9.0) == (1, 0.0)  # one sample: no increase yet


grid_values = st.one_of(
    st.integers(-(2**24), 2**24).map(float),  # flags, counts, percentages: exact in float32
    st.floats(allow_nan=True, allow_infinity=True),  # watts, bytes, NaN, 1e300: not always
)


@given(
    capacity=st.integers(min_value=1, max_value=12),
    steps=st.lists(
        st.tuples(st.sampled_from([0.5, 1.0, 1.0, 2.0, 1e-6, 3 * 2**23]), grid_values), max_size=40
    ),
    start=st.floats(-10, 3e7),
    width=st.floats(0, 3e7),
)
def test_float32_storage_gives_back_exactly_what_was_written(
    capacity: int, steps: list[tuple[float, float]], start: float, width: float
) -> None:
    ring, model, ts = Ring(capacity), [], 1_790_000_000.0  # an epoch second, on the grid
    for gap, value in steps:
        ts += gap
        assert ring.append(ts, value)
        model = [*model, (ts, value)][-capacity:]
    lo, hi = (model[0][0] + start, model[0][0] + start + width) if model else (start, start)
    expect = [p for p in model if lo <= p[0] <= hi]
    got_ts, got_vals = ring.between(lo, hi)
    assert list(got_ts) == [t for t, _ in expect]
    assert [repr(v) for v in got_vals] == [repr(v) for _, v in expect]  # NaN, -0.0 included
    assert [repr(v) for v in ring.values(lo, hi)] == [repr(v) for _, v in expect]
    ends, vals = ring.edges(lo, hi)
    assert [repr(v) for v in vals] == [repr(v) for _, v in expect]
    if expect:
        assert ends == (expect[0][0], expect[-1][0]), "what rate() divides by"
    newest = ring.newest_between(lo, hi)
    assert repr(newest) == repr((expect[-1][0], expect[-1][1]) if expect else None)


def test_a_ring_on_the_grid_keeps_half_the_memory_for_half_a_year() -> None:
    ring, ts = Ring(900), 1_790_000_000.0
    for i in range(3000):
        ring.append(ts + i, float(i % 7))
    assert ring._ts.typecode == ring._vals.typecode == "f", "whole seconds, whole values: float32"
    ring.append(ts + 2**24 + 5000, 3.0)  # 194 days on: the offset no longer fits, re-based
    assert ring._ts.typecode == "f" and ring.last() == (ts + 2**24 + 5000, 3.0)
    ring.append(ts + 2**24 + 5000.1, 312.456)  # a tenth of a second off the grid, watts
    assert ring._ts.typecode == ring._vals.typecode == "d", "float64 from then on"
    got_ts, got_vals = ring.between(ts + 2**24, ts + 2**25)
    assert list(zip(got_ts, got_vals, strict=True)) == [(ts + 2**24 + 5000, 3.0),
                                                        (ts + 2**24 + 5000.1, 312.456)]  # fmt: skip
