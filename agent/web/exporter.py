"""A prometheus_client collector that reads the series store."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable, Iterator

from prometheus_client.core import Metric
from prometheus_client.registry import Collector

from agent import __version__
from agent.store import Labels, SeriesStore


class StoreCollector(Collector):
    """Exports the newest value of every live series, typed as its sampler described it."""

    def __init__(self, store: SeriesStore, extra: Callable[[], Iterator[Metric]] | None = None):
        self.store = store
        self.extra = extra

    def collect(self) -> Iterator[Metric]:
        """Build one metric family per name from the store's current values."""
        families: dict[str, list[tuple[Labels, float]]] = defaultdict(list)
        for name, labels, value in self.store.current():
            families[name].append((labels, value))
        for name in sorted(families):
            info = self.store.info(name)
            family = Metric(name.removesuffix("_total"), info.help, info.kind)
            for labels, value in families[name]:
                family.add_sample(name, dict(labels), value)
            yield family
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
