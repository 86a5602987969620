"""The worker simulator's /metrics in each engine's own names, built with prometheus_client.

vLLM (V1, and V0 as `vllm-v0`), SGLang (`--enable-metrics`), TGI and llama.cpp (`--metrics`)
each name the same few things differently; the simulator speaks the one it is started as.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

BUCKETS = (0.01, 0.025, 0.05, 0.1, 0.2, 0.3, 0.4, 0.5, 0.75, 1.0, 2.5, 5.0, 10.0)
TOKEN_BUCKETS = (1, 8, 32, 128, 512, 2048, 8192)


@dataclass(frozen=True)
class Names:
    """One engine's names; None where the engine has no such metric."""

    running: str
    waiting: str
    kv: str | None
    ttft: str | None  # histogram, seconds
    e2e: str | None  # histogram, seconds
    prompt: str  # a counter, or a histogram of lengths (TGI)
    gen: str
    tokens_histogram: bool = False
    label: str = "model_name"
    preempt: str | None = None  # a counter of preempted (vLLM) or retracted (SGLang) requests
    cache: tuple[str, str] | None = None  # prefix-cache (hits, queries) counters, in tokens
    queue: str | None = None  # a histogram of seconds waited before running


SIM_ENGINES = {
    "vllm": Names("vllm:num_requests_running", "vllm:num_requests_waiting",
                  "vllm:kv_cache_usage_perc", "vllm:time_to_first_token_seconds",
                  "vllm:e2e_request_latency_seconds", "vllm:prompt_tokens",
                  "vllm:generation_tokens", preempt="vllm:num_preemptions",
                  cache=("vllm:prefix_cache_hits", "vllm:prefix_cache_queries"),
                  queue="vllm:request_queue_time_seconds"),
    # the names before V1's renames: gpu_cache_usage_perc, gpu_prefix_cache_*
    "vllm-v0": Names("vllm:num_requests_running", "vllm:num_requests_waiting",
                     "vllm:gpu_cache_usage_perc", "vllm:time_to_first_token_seconds",
                     "vllm:e2e_request_latency_seconds", "vllm:prompt_tokens",
                     "vllm:generation_tokens", preempt="vllm:num_preemptions",
                     cache=("vllm:gpu_prefix_cache_hits", "vllm:gpu_prefix_cache_queries")),
    "sglang": Names("sglang:num_running_reqs", "sglang:num_queue_reqs", "sglang:token_usage",
                    "sglang:time_to_first_token_seconds", "sglang:e2e_request_latency_seconds",
                    "sglang:prompt_tokens", "sglang:generation_tokens",
                    preempt="sglang:num_retracted_requests",
                    cache=("sglang:cached_tokens", ""), queue="sglang:queue_time_seconds"),
    "tgi": Names("tgi_batch_current_size", "tgi_queue_size", None, None, "tgi_request_duration",
                 "tgi_request_input_length", "tgi_request_generated_tokens",
                 tokens_histogram=True, label="", queue="tgi_request_queue_duration"),
    "llamacpp": Names("llamacpp:requests_processing", "llamacpp:requests_deferred",
                      "llamacpp:kv_cache_usage_ratio", None, None, "llamacpp:prompt_tokens",
                      "llamacpp:tokens_predicted", label=""),
}  # fmt: skip


class SimMetrics:
    """One engine's metrics in a registry of their own, updated as requests are served."""

    def __init__(self, model: str, engine: str = "vllm") -> None:
        n = SIM_ENGINES[engine]
        self.registry = r = CollectorRegistry()
        lab = [n.label] if n.label else []
        self._values = [model] if n.label else []
        self.running = Gauge(n.running, "Requests running.", lab, registry=r)
        self.waiting = Gauge(n.waiting, "Requests waiting.", lab, registry=r)
        self.cache = Gauge(n.kv, "KV cache usage.", lab, registry=r) if n.kv else None
        self.ttft = (Histogram(n.ttft, "TTFT.", lab, buckets=BUCKETS, registry=r)
                     if n.ttft else None)  # fmt: skip
        self.e2e = Histogram(n.e2e, "Latency.", lab, buckets=BUCKETS, registry=r) if n.e2e else None
        self.hist = n.tokens_histogram
        self.prompt, self.gen = (
            (Histogram(name, "Tokens.", lab, buckets=TOKEN_BUCKETS, registry=r) if self.hist
             else Counter(name, "Tokens.", lab, registry=r)) for name in (n.prompt, n.gen)
        )  # fmt: skip
        self.preempt = Counter(n.preempt, "Preempted.", lab, registry=r) if n.preempt else None
        self.queue = (Histogram(n.queue, "Queue time.", lab, buckets=BUCKETS, registry=r)
                      if n.queue else None)  # fmt: skip
        hits, queries = n.cache or ("", "")
        self.hits = Counter(hits, "Prefix-cache hits.", lab, registry=r) if hits else None
        self.queries = (
            Counter(queries, "Prefix-cache queries.", lab, registry=r) if queries else None
        )
        for metric in (
            self.running,
            self.waiting,
            self.prompt,
            self.gen,
            self.ttft,
            self.e2e,
            self.preempt,
            self.queue,
            self.hits,
            self.queries,
        ):
            if metric is not None:
                self._of(metric)  # series exist from the start, as the engines' do
        if self.cache is not None:
            self._of(self.cache).set(0.2)

    def _of(self, metric: Any) -> Any:
        return metric.labels(*self._values) if self._values else metric

    def started(self) -> None:
        """Count a request that began."""
        self._of(self.running).inc()

    def finished(self, prompt: int, out: int, ttft: float, total: float, ok: bool) -> None:
        """Count a request that ended, its tokens, and its times if it succeeded.

        Half of every prompt comes from the prefix cache, and each request waited a tenth of
        its time first: a test can compute what the agent must report.
        """
        self._of(self.running).dec()
        for counter, n in ((self.hits, prompt // 2), (self.queries, prompt)):
            if counter is not None:
                self._of(counter).inc(n)
        if self.queue is not None:
            self._of(self.queue).observe(total / 10)
        for metric, n in ((self.prompt, prompt), (self.gen, out)):
            if self.hist:
                self._of(metric).observe(n)
            else:
                self._of(metric).inc(n)
        if ok:
            for hist, seconds in ((self.ttft, ttft), (self.e2e, total)):
                if hist is not None:
                    self._of(hist).observe(seconds)

    def preempted(self) -> None:
        """Count a preempted (or retracted) request."""
        if self.preempt is not None:
            self._of(self.preempt).inc()

    def set_waiting(self, n: int) -> None:
        """Set the queue length."""
        self._of(self.waiting).set(n)
