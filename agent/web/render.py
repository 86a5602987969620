"""Exposition of the store in Prometheus text 0.0.4 or OpenMetrics 1.0, label strings cached.

prometheus_client validates and escapes every label of every sample on every scrape; with
hundreds of GPU series that was most of the agent's CPU. Series repeat from scrape to scrape
and many values do not move (limits, totals, throttle flags), so each series' line is kept
with the value it was rendered for. tests/test_render.py checks the output against
prometheus_client's own parsers.
"""

from __future__ import annotations

import math
from collections.abc import Iterable

from prometheus_client.core import Metric
from prometheus_client.exposition import generate_latest
from prometheus_client.openmetrics.exposition import generate_latest as generate_openmetrics

from agent.store import Labels, MetricInfo, Series, SeriesStore

Rows = list[tuple[Series, float]]

_CACHE_LIMIT = 50_000


def escape_label_value(value: str) -> str:
    """Escape a label value for either format."""
    return value.replace("\\", r"\\").replace("\n", r"\n").replace('"', r"\"")


def escape_help(text: str, openmetrics: bool) -> str:
    """Escape HELP text (OpenMetrics also escapes double quotes)."""
    text = text.replace("\\", r"\\").replace("\n", r"\n")
    return text.replace('"', r"\"") if openmetrics else text


def format_value(value: float) -> str:
    """Format a sample value the way both formats accept."""
    if math.isnan(value):
        return "NaN"
    if math.isinf(value):
        return "+Inf" if value > 0 else "-Inf"
    return repr(float(value))


class Renderer:
    """Renders the store's current values; remembers label strings, lines and whole families."""

    def __init__(self, store: SeriesStore) -> None:
        self.store = store
        self._labels: dict[Labels, str] = {}
        self._lines: dict[Series, tuple[float, str]] = {}  # series -> (value, its line)
        self._families: dict[tuple[str, bool], tuple[MetricInfo, Rows, str]] = {}

    def label_text(self, labels: Labels) -> str:
        text = self._labels.get(labels)
        if text is None:
            if len(self._labels) > _CACHE_LIMIT:  # churned label sets: start over, stay bounded
                self._labels.clear()
            pairs = ",".join(f'{k}="{escape_label_value(v)}"' for k, v in labels)
            text = self._labels[labels] = f"{{{pairs}}}" if labels else ""
        return text

    def _line(self, name: str, series: Series, value: float) -> str:
        cached = self._lines.get(series)
        if cached is not None and cached[0] == value:  # NaN never equals: re-rendered, fine
            return cached[1]
        line = f"{name}{self.label_text(series.labels)} {format_value(value)}\n"
        self._lines[series] = (value, line)
        return line

    def _family(self, name: str, rows: Rows, openmetrics: bool) -> str:
        """Return a family's text; the same help and rows as last scrape give it back as is."""
        info = self.store.info(name)
        cached = self._families.get((name, openmetrics))
        if cached is not None and cached[0] == info and cached[1] == rows:
            return cached[2]
        family = name.removesuffix("_total") if openmetrics and info.kind == "counter" else name
        # Sorting the lines sorts the family by its label text: stable output, C speed.
        lines = sorted([self._line(name, series, value) for series, value in rows])
        text = "".join([
            f"# HELP {family} {escape_help(info.help, openmetrics)}\n# TYPE {family} {info.kind}\n",
            *lines,
        ])  # fmt: skip
        self._families[(name, openmetrics)] = (info, rows, text)
        return text

    def render(self, openmetrics: bool) -> str:
        """Return every live series as exposition text (without OpenMetrics' # EOF)."""
        families = self.store.live()
        if len(self._lines) > 2 * sum(len(rows) for _, rows in families) + 1000:
            self._lines.clear()  # evicted series: start over, stay bounded
        if len(self._families) > 4 * len(families) + 1000:
            self._families.clear()
        return "".join([self._family(name, rows, openmetrics) for name, rows in families])


SUFFIX = {"gauge": "", "counter": "_total", "info": "_info"}  # the one sample name of each type


def _simple(m: Metric) -> bool:
    """Return True for a family of one sample name, with no unit, timestamp or exemplar."""
    suffix = SUFFIX.get(m.type)
    return (
        suffix is not None
        and not m.unit
        and all(
            s.name == m.name + suffix and s.timestamp is None and s.exemplar is None
            for s in m.samples
        )
    )


class _One:
    """A registry of one collected family, for prometheus_client's own encoders."""

    def __init__(self, metric: Metric) -> None:
        self.metric = metric

    def collect(self) -> Iterable[Metric]:
        """Yield the one family."""
        yield self.metric


def render_collected(metrics: Iterable[Metric], labels: Renderer, openmetrics: bool) -> str:
    """Write collected families as prometheus_client would; the plain ones ourselves.

    Its OpenMetrics encoder checks every character of every name and label against the UTF-8
    naming rules: for the agent's few dozen own samples, a third of a scrape's CPU.
    """
    out = []
    for m in metrics:
        if not _simple(m):
            encode = generate_openmetrics if openmetrics else generate_latest
            out.append(encode(_One(m)).decode().removesuffix("# EOF\n"))
            continue
        name, kind = m.name, m.type
        if not openmetrics:  # 0.0.4 names the family as its samples; it has no info type
            name, kind = name + SUFFIX[kind], "gauge" if kind == "info" else kind
        out.append(f"# HELP {name} {escape_help(m.documentation, openmetrics)}\n"
                   f"# TYPE {name} {kind}\n")  # fmt: skip
        for s in m.samples:  # labels sorted by name, as prometheus_client writes them
            text = labels.label_text(tuple(sorted(s.labels.items())))
            out.append(f"{s.name}{text} {format_value(s.value)}\n")
    return "".join(out)
