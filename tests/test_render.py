"""Our store rendering against prometheus_client: same families, samples and values."""

from __future__ import annotations

import math

from hypothesis import example, given, settings
from hypothesis import strategies as st
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import Metric
from prometheus_client.openmetrics.exposition import generate_latest as generate_om
from prometheus_client.openmetrics.parser import text_string_to_metric_families as parse_om
from prometheus_client.parser import text_string_to_metric_families as parse_text

from agent.store import MetricInfo, SeriesStore, sample
from agent.web.render import SUFFIX, Family, Renderer

label_values = st.text(
    alphabet=st.characters(codec="utf-8", exclude_categories=["Cs"]), max_size=12
)
values = st.floats(allow_nan=False, allow_infinity=True) | st.just(math.nan)


class Reference:
    """The same store contents rendered by prometheus_client itself."""

    def __init__(self, store: SeriesStore) -> None:
        self.store = store

    def collect(self):  # type: ignore[no-untyped-def]
        rows: dict[str, list] = {}
        for name, labels, value in self.store.current():
            rows.setdefault(name, []).append((labels, value))
        for name, items in rows.items():
            info = self.store.info(name)
            family = Metric(name.removesuffix("_total"), info.help, info.kind)
            for labels, value in items:
                family.add_sample(name, dict(labels), value)
            yield family


def families(text: str, openmetrics: bool) -> dict:
    parse = parse_om if openmetrics else parse_text
    out = {}
    for fam in parse(text):
        out[fam.name] = (
            fam.type,
            fam.documentation,
            sorted(
                (s.name, tuple(sorted(s.labels.items())), "nan" if math.isnan(s.value) else s.value)
                for s in fam.samples
            ),
        )
    return out


def build(gauge_labels: list[str], value: float, helptext: str) -> SeriesStore:
    store = SeriesStore()
    store.describe(
        {"g_ratio": MetricInfo("gauge", helptext), "c_total": MetricInfo("counter", "A counter.")}
    )
    samples = [sample("g_ratio", value, gpu=str(i), model=v) for i, v in enumerate(gauge_labels)]
    samples.append(sample("c_total", 5.0, kind='a"b\\c\nd'))
    store.ingest("s", samples, 1.0)
    return store


@settings(max_examples=60, deadline=None)
@given(st.lists(label_values, min_size=1, max_size=4), values, label_values)
def test_same_as_prometheus_client_in_both_formats(
    labels: list[str], value: float, helptext: str
) -> None:
    store = build(labels, value, helptext or "help")
    registry = CollectorRegistry(auto_describe=False)
    registry.register(Reference(store))  # type: ignore[arg-type]
    ours = Renderer(store)
    assert families(ours.render(False), False) == families(
        generate_latest(registry).decode(), False
    )
    om = ours.render(True) + "# EOF\n"
    assert families(om, True) == families(generate_om(registry).decode(), True)


def test_cached_label_text_is_reused_and_bounded() -> None:
    store = build(["a", "b"], 1.0, "h")
    renderer = Renderer(store)
    first = renderer.render(False)
    assert renderer.render(False) == first
    assert len(renderer._labels) == 3


@settings(max_examples=40, deadline=None)
@given(st.lists(st.lists(values, min_size=3, max_size=3), min_size=1, max_size=6))
def test_each_scrape_shows_the_newest_values_however_few_moved(rounds: list[list[float]]) -> None:
    store = SeriesStore()
    renderer = Renderer(store)
    for ts, round_values in enumerate(rounds, start=1):
        store.ingest("s", [sample("v", x, gpu=str(i)) for i, x in enumerate(round_values)], ts)
        got = {
            s.labels["gpu"]: s.value
            for fam in parse_text(renderer.render(False))
            for s in fam.samples
        }
        want = dict(enumerate(round_values))
        assert {k: str(v) for k, v in got.items()} == {str(k): str(v) for k, v in want.items()}


RUNS = st.lists(  # runs of two sources: which of four series each gives, in what order, valued
    st.tuples(st.sampled_from(["a", "b"]), st.permutations(range(4)), st.integers(0, 4),
              st.lists(st.sampled_from([0.0, 1.0, 2.0, float("nan")]), min_size=4, max_size=4)),
    min_size=1, max_size=12,
)  # fmt: skip


@settings(max_examples=200, deadline=None)
@given(RUNS)
@example([("a", [0, 1, 2, 3], 1, [1.0] * 4), *[("b", [0, 1, 2, 3], 1, [1.0] * 4)] * 3])  # evicted
def test_a_scrape_shows_what_a_fresh_renderer_shows_after_any_runs(
    runs: list[tuple[str, list[int], int, list[float]]],
) -> None:
    """Families kept from the last scrape are only those the store shows just as before."""
    store = SeriesStore(retention=45.0, interval=15.0)  # evicts every 60 s, what 45 s missed
    kept = Renderer(store)
    for step, (source, order, count, vals) in enumerate(runs, start=1):
        ts = 30.0 * step
        given = [sample(f"v{i % 2}", vals[i], i=str(i), src=source) for i in order[:count]]
        store.ingest(source, given, ts)  # series come, go, move, turn stale, get evicted
        assert kept.render(False) == Renderer(store).render(False)
        assert kept.render(True) == Renderer(store).render(True)


def test_lines_of_evicted_series_do_not_pile_up() -> None:
    store = SeriesStore(retention=10.0)
    renderer = Renderer(store)
    for ts in range(0, 3000, 20):  # each series lives one round, then is evicted
        store.ingest(f"s{ts}", [sample("v", 1.0, run=str(ts + i)) for i in range(20)], float(ts))
        renderer.render(False)
    assert len(renderer._lines) <= 2 * store.series_count() + 1000


def test_a_family_whose_help_changes_is_rendered_anew() -> None:
    store = build(["a"], 1.0, "old help")
    renderer = Renderer(store)
    assert "# HELP g_ratio old help\n" in renderer.render(False)
    store.describe({"g_ratio": MetricInfo("gauge", "new help")})  # a reload can do this
    assert "# HELP g_ratio new help\n" in renderer.render(False)


def own_families(labels: list[str], value: float, helptext: str) -> list[Family]:
    """The agent's own kinds of family: labelled gauge and counter, an info, an empty one."""
    return [
        Family("own_gauge", "gauge", helptext,
               [((("code", v), ("i", str(i))), value) for i, v in enumerate(labels)]),
        Family("own_requests", "counter", "Requests.",
               [((("handler", v),), float(i)) for i, v in enumerate(labels)]),
        Family("own_build", "info", "Build.", [((("version", labels[0]),), 1.0)]),
        Family("own_closed", "counter", "None closed yet.", []),
    ]  # fmt: skip


class Collected:
    """The same families as prometheus_client's own objects, for its encoders."""

    def __init__(self, families: list[Family]) -> None:
        self.own = families

    def collect(self):  # type: ignore[no-untyped-def]
        for f in self.own:
            metric = Metric(f.name, f.help, f.kind)
            for labels, value in f.samples:
                metric.add_sample(f.name + SUFFIX[f.kind], dict(labels), value)
            yield metric


@settings(max_examples=60, deadline=None)
@given(st.lists(label_values, min_size=1, max_size=4, unique=True), values, label_values)
def test_own_families_as_prometheus_client_writes_them(
    labels: list[str], value: float, helptext: str
) -> None:
    own = own_families(labels, value, helptext or "help")
    registry = CollectorRegistry(auto_describe=False)
    registry.register(Collected(own))  # type: ignore[arg-type]
    renderer = Renderer(SeriesStore())
    text = renderer.render_own(own, False)
    assert families(text, False) == families(generate_latest(registry).decode(), False)
    om = renderer.render_own(own, True) + "# EOF\n"
    assert families(om, True) == families(generate_om(registry).decode(), True)
    assert heads(text) == heads(generate_latest(registry).decode()), "HELP and TYPE to the byte"
    assert heads(om) == heads(generate_om(registry).decode())


def heads(text: str) -> list[str]:
    """The HELP and TYPE lines (values may be written either way: 1e+06 or 1000000.0)."""
    return [line for line in text.splitlines() if line.startswith("#")]
