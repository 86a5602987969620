"""Exposition of the store in Prometheus text 0.0.4 or OpenMetrics 1.0, label strings cached.

prometheus_client validates and escapes every label of every sample on every scrape; with
hundreds of GPU series that was most of the agent's CPU. Label sets repeat from scrape to
scrape, so each is escaped once here. tests/test_render.py checks the output against
prometheus_client's own parsers.
"""

from __future__ import annotations

import math
from collections import defaultdict

from agent.store import Labels, SeriesStore

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
    """Renders the store's current values; remembers each label set's rendered string."""

    def __init__(self, store: SeriesStore) -> None:
        self.store = store
        self._labels: dict[Labels, str] = {}

    def _label_text(self, labels: Labels) -> str:
        text = self._labels.get(labels)
        if text is None:
            if len(self._labels) > _CACHE_LIMIT:  # churned label sets: start over, stay bounded
                self._labels.clear()
            pairs = ",".join(f'{k}="{escape_label_value(v)}"' for k, v in labels)
            text = self._labels[labels] = f"{{{pairs}}}" if labels else ""
        return text

    def render(self, openmetrics: bool) -> str:
        """Return every live series as exposition text (without OpenMetrics' # EOF)."""
        families: dict[str, list[tuple[Labels, float]]] = defaultdict(list)
        for name, labels, value in self.store.current():
            families[name].append((labels, value))
        out: list[str] = []
        for name in sorted(families):
            info = self.store.info(name)
            family = name.removesuffix("_total") if openmetrics and info.kind == "counter" else name
            out.append(f"# HELP {family} {escape_help(info.help, openmetrics)}\n")
            out.append(f"# TYPE {family} {info.kind}\n")
            out.extend(
                f"{name}{self._label_text(labels)} {format_value(value)}\n"
                for labels, value in sorted(families[name])
            )
        return "".join(out)
