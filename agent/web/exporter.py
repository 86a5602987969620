"""A prometheus_client collector for the agent's own metrics (the store renders itself)."""

from __future__ import annotations

from collections.abc import Callable, Iterator

from prometheus_client.core import Metric
from prometheus_client.registry import Collector

from agent import __version__
from agent.store import SeriesStore


class SelfCollector(Collector):
    """Exports the agent's build, store and HTTP metrics."""

    def __init__(self, store: SeriesStore, extra: Callable[[], Iterator[Metric]] | None = None):
        self.store = store
        self.extra = extra

    def collect(self) -> Iterator[Metric]:
        """Yield the self metrics."""
        yield from self._self_metrics()
        if self.extra:
            yield from self.extra()

    def _self_metrics(self) -> Iterator[Metric]:
        build = Metric("dsagent_build", "Version of the running agent.", "info")
        build.add_sample("dsagent_build_info", {"version": __version__}, 1.0)
        yield build
        series = Metric("dsagent_store_series", "Series held in the store.", "gauge")
        series.add_sample("dsagent_store_series", {}, self.store.series_count())
        yield series
        stats = self.store.stats
        for key, value, text in (
            (
                "out_of_order",
                stats.out_of_order,
                "Samples refused for being older than the newest.",
            ),
            ("evicted", stats.evicted, "Series dropped after a retention without samples."),
        ):
            family = Metric(f"dsagent_store_{key}", text, "counter")
            family.add_sample(f"dsagent_store_{key}_total", {}, value)
            yield family
