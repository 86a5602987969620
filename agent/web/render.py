"""Exposition of the store in Prometheus text 0.0.4 or OpenMetrics 1.0, label strings cached.

prometheus_client validates and escapes every label of every sample on every scrape; with
hundreds of GPU series that was most of the agent's CPU. Series repeat from scrape to scrape
and many values do not move (limits, totals, throttle flags), so each series' line is kept
with the value it was rendered for, and a family the store shows as it did last scrape (most of
them, most scrapes) is given back whole without reading its series: reading them, cold in the
CPU's caches a second after the round wrote them, was most of a scrape. tests/test_render.py
checks the output against prometheus_client's own parsers and against a renderer that keeps
nothing.
"""

from __future__ import annotations

import math
import operator
from collections.abc import Iterable
from dataclasses import dataclass, field
from itertools import compress
from typing import NamedTuple

from agent.store import Labels, Series, SeriesStore

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
    if value - value == 0:  # finite (inf - inf and NaN - NaN are NaN): the common case first
        return repr(float(value))
    if math.isnan(value):
        return "NaN"
    if math.isinf(value):
        return "+Inf" if value > 0 else "-Inf"
    return repr(float(value))


SUFFIX = {"gauge": "", "counter": "_total", "info": "_info"}  # the one sample name of each type


class Family(NamedTuple):
    """One of the agent's own families, read at each scrape (the store's render themselves)."""

    name: str  # as OpenMetrics names it: a counter's without _total, an info's without _info
    kind: str  # gauge, counter or info
    help: str
    samples: list[tuple[Labels, float]]


def family(name: str, kind: str, text: str, value: float | None = None) -> Family:
    """Return a family of one kind; `value` adds its one unlabelled sample."""
    return Family(name, kind, text, [] if value is None else [((), float(value))])


@dataclass
class Page:
    """A scrape's text in one format, by family, with the store's counts it was rendered at."""

    names: list[str] = field(default_factory=list)  # the store's list, kept while it is the same
    described: int = -1
    counts: list[int] = field(default_factory=list)
    texts: list[str] = field(default_factory=list)


class Renderer:
    """Renders the store's current values; remembers label strings, lines and whole families."""

    def __init__(self, store: SeriesStore) -> None:
        self.store = store
        self._labels: dict[Labels, str] = {}
        # series -> (value, its line, the line's name and labels)
        self._lines: dict[Series, tuple[float, str, str]] = {}
        self._pages = (Page(), Page())  # text 0.0.4, OpenMetrics

    def label_text(self, labels: Labels) -> str:
        text = self._labels.get(labels)
        if text is None:
            if len(self._labels) > _CACHE_LIMIT:  # churned label sets: start over, stay bounded
                self._labels.clear()
            pairs = ",".join(f'{k}="{escape_label_value(v)}"' for k, v in labels)
            text = self._labels[labels] = f"{{{pairs}}}" if labels else ""
        return text

    def _lines_of(self, name: str, rows: Rows) -> list[str]:
        """Return each row's line, sorted; a series whose value did not move keeps its line."""
        known, lines = self._lines, []
        for series, value in rows:  # inlined: this runs for every series on every scrape
            hit = known.get(series)
            if hit is not None and hit[0] == value:  # NaN never equals: re-rendered, fine
                lines.append(hit[1])
                continue
            prefix = hit[2] if hit is not None else f"{name}{self.label_text(series.labels)} "
            line = f"{prefix}{repr(value) if value - value == 0 else format_value(value)}\n"
            known[series] = (value, line, prefix)
            lines.append(line)
        lines.sort()  # sorting the lines sorts the family by its label text: stable, C speed
        return lines

    def _family(self, name: str, openmetrics: bool) -> str:
        """Return a family's text as the store holds it now."""
        info = self.store.info(name)
        rows = self.store.rows(name)
        if not rows:
            return ""
        family = name.removesuffix("_total") if openmetrics and info.kind == "counter" else name
        return "".join([
            f"# HELP {family} {escape_help(info.help, openmetrics)}\n# TYPE {family} {info.kind}\n",
            *self._lines_of(name, rows),
        ])  # fmt: skip

    def render(self, openmetrics: bool) -> str:
        """Return every live series as exposition text (without OpenMetrics' # EOF).

        Only the families whose count in the store moved since the last scrape are rendered;
        the rest (most of them, most scrapes) are given back as they were.
        """
        names, counts, described = self.store.shown()  # read before the rows: never newer
        if len(self._lines) > 2 * self.store.series_count() + 1000:
            self._lines.clear()  # evicted series: start over, stay bounded
        page, family = self._pages[openmetrics], self._family
        if page.names is names and page.described == described:
            texts = page.texts
            for i in compress(range(len(names)), map(operator.ne, page.counts, counts)):
                texts[i] = family(names[i], openmetrics)
        else:  # a family came or went, or a type or help changed: every family anew
            page.texts = [family(name, openmetrics) for name in names]
            page.names, page.described = names, described
        page.counts = counts
        return "".join(page.texts)

    def render_own(self, families: Iterable[Family], openmetrics: bool) -> str:
        """Write the agent's own families as prometheus_client would write them.

        Built as text here: prometheus_client's metric objects, registry and encoders, run
        once a second for a dozen families, cost a quarter of a scrape.
        """
        out = []
        for f in families:
            sample = f.name + SUFFIX[f.kind]
            name, kind = f.name, f.kind
            if not openmetrics:  # 0.0.4 names the family as its samples; it has no info type
                name, kind = sample, "gauge" if kind == "info" else kind
            out.append(f"# HELP {name} {escape_help(f.help, openmetrics)}\n# TYPE {name} {kind}\n")
            for labels, value in f.samples:
                out.append(f"{sample}{self.label_text(labels)} {format_value(value)}\n")
        return "".join(out)
