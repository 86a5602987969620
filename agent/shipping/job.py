"""Log shipping on the round loop: owns the shipper threads and reports what they did."""

from __future__ import annotations

import time
from collections.abc import Iterator

from agent.config import Config
from agent.config.shipping import LogInputConfig
from agent.shipping.events import patterns_for
from agent.shipping.shipper import Shipper, Sink
from agent.shipping.sinks import ElasticsearchSink, FileSink
from agent.shipping.stats import METRICS as STATS_METRICS
from agent.store import MetricInfo, Sample, sample

METRICS = {
    **STATS_METRICS,
    "dsagent_log_lines_read_total": MetricInfo("counter", "Lines read."),
    "dsagent_log_docs_shipped_total": MetricInfo("counter", "Documents delivered (201 or 409)."),
    "dsagent_log_docs_failed_total": MetricInfo(
        "counter", "Document sends to retry (429, 5xx, down)."
    ),
    "dsagent_log_docs_dead_lettered_total": MetricInfo("counter", "Documents refused for content."),
    "dsagent_log_malformed_lines_total": MetricInfo(
        "counter", "JSON inputs' lines that were not JSON."
    ),
    "dsagent_log_lines_without_time_total": MetricInfo(
        "counter", "Text lines with no time the agent could read (shipped at the read time)."
    ),
    "dsagent_log_files_skipped_total": MetricInfo(
        "counter", "Paths the globs matched that are not read: symlinks, FIFOs, devices."
    ),
    "dsagent_log_bytes_skipped_total": MetricInfo(
        "counter", "Bytes of NUL runs (sparse or preallocated regions) stepped over."
    ),
    "dsagent_log_lag_bytes": MetricInfo("gauge", "Bytes written but not yet read."),
    "dsagent_log_lag_seconds": MetricInfo("gauge", "Seconds since the last commit while behind."),
    "dsagent_log_events_total": MetricInfo(
        "counter", "Lines that matched an event pattern (cuda_oom, nccl_timeout...), by event."
    ),
    "inference_cuda_oom_tried_bytes": MetricInfo(
        "gauge", "What the latest CUDA OOM in the log tried to allocate."
    ),
    "inference_cuda_oom_capacity_bytes": MetricInfo(
        "gauge", "The GPU's total capacity, as the latest CUDA OOM gave it."
    ),
    "inference_cuda_oom_allocated_bytes": MetricInfo(
        "gauge", "What was already allocated, as the latest CUDA OOM gave it."
    ),
}
COUNTERS = {"lines": "dsagent_log_lines_read_total", "shipped": "dsagent_log_docs_shipped_total",
            "retries": "dsagent_log_docs_failed_total",
            "dead_lettered": "dsagent_log_docs_dead_lettered_total",
            "malformed": "dsagent_log_malformed_lines_total",
            "no_time": "dsagent_log_lines_without_time_total"}  # fmt: skip


def _events(s: Shipper, name: str) -> Iterator[Sample]:
    """Each pattern's count (from 0), the OOM count by its old name, the latest OOM's sizes."""
    counts = s.events.counts
    for event, n in sorted(counts.items()):
        yield sample("dsagent_log_events_total", n, input=name, event=event)
    if "cuda_oom" in counts:
        yield sample("inference_cuda_oom_total", counts["cuda_oom"], input=name)
    oom = dict(s.events.oom)
    gpu = {"gpu": str(int(oom.pop("gpu")))} if "gpu" in oom else {}
    for what, size in oom.items():
        yield sample(f"inference_cuda_oom_{what}_bytes", size, input=name, **gpu)


class LogShipping:
    """One shipper per [[logs]] input, plus the alert log when Elasticsearch is configured."""

    name = "logs"
    metrics = METRICS

    def __init__(self, cfg: Config) -> None:
        es, state = cfg.elasticsearch, cfg.agent.state_dir
        sink: Sink = ElasticsearchSink(es) if es.hosts else FileSink(state / "shipped")
        inputs = list(cfg.logs)
        if es.hosts and es.ship_alerts:
            for name in ("alerts", "audit"):  # the agent's own records, each to its own index
                path = str(state / f"{name}.log")
                inputs.append(
                    LogInputConfig(
                        name=f"dsagent-{name}",
                        paths=[path],
                        dataset=f"dsagent.{name}",
                        request_stats=False,
                    )
                )
        ev = cfg.events
        own = {f"dsagent-{n}" for n in ("alerts", "audit")}  # the agent's records hold no events
        self.shippers = [Shipper(i, sink, state, node=cfg.agent.node_name,
                                 batch_size=es.batch_size, batch_bytes=es.batch_bytes,
                                 patterns=[] if i.name in own else
                                 patterns_for(i.name, ev.defaults, ev.patterns))
                         for i in inputs]  # fmt: skip

    def start(self) -> None:
        """Start the shipper threads."""
        for shipper in self.shippers:
            shipper.start()

    def sample(self, now: float) -> Iterator[Sample]:
        """Counters, lag and request statistics per input."""
        for s in self.shippers:
            name = s.cfg.name
            for key, metric in COUNTERS.items():
                yield sample(metric, s.counts[key], input=name)
            for reason in ("symlink", "symlink_target", "not_regular"):
                yield sample("dsagent_log_files_skipped_total", s.tailer.skipped[reason],
                             input=name, reason=reason)  # fmt: skip
            yield sample("dsagent_log_bytes_skipped_total", s.tailer.nul_bytes, input=name)
            lag = s.tailer.lag_bytes()
            yield sample("dsagent_log_lag_bytes", lag, input=name)
            behind = now - s.last_event_at if lag and s.last_event_at else 0.0
            yield sample("dsagent_log_lag_seconds", behind, input=name)
            if s.cfg.format == "json" and s.cfg.request_stats:
                yield from s.stats.samples(now, name)
            yield from _events(s, name)

    def close(self) -> None:
        """Stop the shippers; what they had not committed is read again next time."""
        for s in self.shippers:
            s.stop()
        deadline = time.monotonic() + 5
        for s in self.shippers:
            s.join(timeout=max(0.1, deadline - time.monotonic()))
            s.tailer.close()


def build(cfg: Config) -> LogShipping | None:
    """Build shipping when there is something to ship."""
    if not cfg.logs and not cfg.elasticsearch.hosts:
        return None
    return LogShipping(cfg)
