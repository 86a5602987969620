"""Inference engines' /metrics mapped onto one set: running, waiting, KV cache, TTFT, latency."""

from __future__ import annotations

import functools
import math
import re
from collections import defaultdict
from collections.abc import Iterator
from dataclasses import dataclass, field

from agent.store import Labels, MetricInfo, Sample

# The one set every engine (and the request log) is mapped onto: each name's help lives here.
INFERENCE = {
    "inference_requests_running": MetricInfo("gauge", "Requests being served."),
    "inference_requests_waiting": MetricInfo("gauge", "Requests queued."),
    "inference_kv_cache_usage_ratio": MetricInfo("gauge", "KV cache in use."),
    "inference_ttft_seconds": MetricInfo("gauge", "Time to first token, by quantile."),
    "inference_request_latency_seconds": MetricInfo("gauge", "Request latency, by quantile."),
    "inference_requests_per_second": MetricInfo("gauge", "Requests finished per second."),
    "inference_tokens_per_second": MetricInfo("gauge", "Tokens per second, by direction."),
    "inference_error_ratio": MetricInfo("gauge", "Requests that failed, as a share."),
    "inference_cuda_oom_total": MetricInfo("counter", "CUDA out-of-memory errors seen in logs."),
    "inference_preemptions_per_second": MetricInfo(
        "gauge", "Requests preempted (vLLM) or retracted (SGLang) per second: KV cache pressure."
    ),
    "inference_prefix_cache_hit_ratio": MetricInfo(
        "gauge", "Prompt tokens served from the prefix cache, as a share, over the window."
    ),
    "inference_queue_time_seconds": MetricInfo(
        "gauge", "Time requests waited before they ran, by quantile."
    ),
}
QUANTILES = (0.5, 0.95, 0.99)  # the `quantile` labels of the latency families, from any source


@dataclass(frozen=True)
class EngineMap:
    """Which of an engine's metric names feed each of ours (the first one present wins)."""

    running: tuple[str, ...] = ()
    waiting: tuple[str, ...] = ()
    kv_cache: tuple[str, ...] = ()
    ttft: tuple[str, ...] = ()  # histograms
    latency: tuple[str, ...] = ()  # histograms; their _count also counts finished requests
    tokens_in: tuple[str, ...] = ()  # counters, or histogram _sum
    tokens_out: tuple[str, ...] = ()
    preemptions: tuple[str, ...] = ()  # counters: requests preempted (vLLM) or retracted (SGLang)
    cache_hits: tuple[str, ...] = ()  # counters, in tokens: prefix-cache hit ratio = hits/queries
    cache_queries: tuple[str, ...] = ()
    queue_time: tuple[str, ...] = ()  # histograms, seconds a request waited before it ran


ENGINES = {
    # vLLM V1 names first, then V0's (gpu_cache_usage_perc, gpu_prefix_cache_*): whichever it has
    "vllm": EngineMap(
        running=("vllm:num_requests_running",), waiting=("vllm:num_requests_waiting",),
        kv_cache=("vllm:kv_cache_usage_perc", "vllm:gpu_cache_usage_perc"),
        ttft=("vllm:time_to_first_token_seconds",), latency=("vllm:e2e_request_latency_seconds",),
        tokens_in=("vllm:prompt_tokens_total",), tokens_out=("vllm:generation_tokens_total",),
        preemptions=("vllm:num_preemptions_total",),
        cache_hits=("vllm:prefix_cache_hits_total", "vllm:gpu_prefix_cache_hits_total"),
        cache_queries=("vllm:prefix_cache_queries_total", "vllm:gpu_prefix_cache_queries_total"),
        queue_time=("vllm:request_queue_time_seconds",)),
    # SGLang (--enable-metrics): cache_hit_rate is a gauge that resets; the counters do not
    "sglang": EngineMap(
        running=("sglang:num_running_reqs",), waiting=("sglang:num_queue_reqs",),
        kv_cache=("sglang:token_usage",), ttft=("sglang:time_to_first_token_seconds",),
        latency=("sglang:e2e_request_latency_seconds",),
        tokens_in=("sglang:prompt_tokens_total",), tokens_out=("sglang:generation_tokens_total",),
        preemptions=("sglang:num_retracted_requests_total",),
        cache_hits=("sglang:cached_tokens_total",), cache_queries=("sglang:prompt_tokens_total",),
        queue_time=("sglang:queue_time_seconds",)),
    "tgi": EngineMap(  # TGI has no time-to-first-token histogram: the generation probe fills it
        running=("tgi_batch_current_size",), waiting=("tgi_queue_size",),
        latency=("tgi_request_duration",), tokens_in=("tgi_request_input_length_sum",),
        tokens_out=("tgi_request_generated_tokens_sum",),
        queue_time=("tgi_request_queue_duration",)),
    "llamacpp": EngineMap(  # llama.cpp has no latency histograms at all
        running=("llamacpp:requests_processing",), waiting=("llamacpp:requests_deferred",),
        kv_cache=("llamacpp:kv_cache_usage_ratio",), tokens_in=("llamacpp:prompt_tokens_total",),
        tokens_out=("llamacpp:tokens_predicted_total",)),
    "openai": EngineMap(),
}  # fmt: skip


@dataclass
class Snapshot:
    """One scrape, over the engine's own labels (model, data-parallel rank `engine`, ...).

    Counts and counters add up across ranks (`values`); a ratio such as KV cache usage does
    not, so each name's highest value across ranks is kept too (`peaks`): what an alert needs.
    """

    ts: float
    values: dict[str, float] = field(default_factory=dict)  # sample name -> sum
    buckets: dict[str, dict[float, float]] = field(default_factory=dict)  # histogram -> le -> n
    peaks: dict[str, float] = field(default_factory=dict)  # sample name -> highest rank


@functools.lru_cache(maxsize=4096)  # bounded: a few label values per worker
def by_worker(worker: str, *pairs: str) -> Labels:
    """Return a worker's label set with more (name, value) pairs, sorted; built once."""
    return tuple(sorted([("worker", worker), *zip(pairs[::2], pairs[1::2], strict=True)]))


def wanted(engine: EngineMap) -> frozenset[str]:
    """Return every sample and family name the engine map reads (histograms' series too)."""
    names = {n for group in vars(engine).values() for n in group}
    return frozenset(n + suffix for n in names for suffix in ("", "_bucket", "_count", "_sum"))


# The engines serve the text format; prometheus_client's parser cost several times this, for
# lines we mostly do not read. One C pass matches every line as a sample, a comment or blank:
# fewer matches than lines means a bad line, which fails the scrape (as in Prometheus). A line
# loop matching each line in Python was most of a worker's round.
_NAME = r"[a-zA-Z_:][a-zA-Z0-9_:]*"
_SAMPLE = rf"({_NAME})(\{{[^\n]*\}})?[ \t]+(\S+)(?:[ \t]+-?\d+)?[ \t]*"  # name {labels} value [ts]
_LINE = rf"(?:#[^\n]*|[ \t]*|{_SAMPLE})"
LINE = re.compile(_LINE)
LINES = re.compile(rf"^{_LINE}$", re.MULTILINE)  # one match per good line; a comment's is empty
LE = re.compile(r'[{,]\s*le\s*=\s*"([^"]*)"')


def _le(labels: str) -> float | None:
    """Return a bucket's upper bound from its label text (the same few texts every scrape)."""
    return _le_cached(labels) if len(labels) <= 256 else _le_read(labels)


def _le_read(labels: str) -> float | None:
    found = LE.search(labels)
    return float(found.group(1)) if found is not None else None


_le_cached = functools.lru_cache(maxsize=1024)(_le_read)  # bounded: 1,024 short strings


def parse(text: str, ts: float, names: frozenset[str] | None = None) -> Snapshot:
    """Parse exposition text (the `names` samples, if given); ValueError if it is not."""
    if "\r" in text:
        text = text.replace("\r\n", "\n")
    rows = LINES.findall(text)
    if len(rows) != text.count("\n") + 1:
        raise ValueError(f"not exposition text: {_bad_line(text)[:80]!r}")
    values: dict[str, float] = defaultdict(float)
    buckets: dict[str, dict[float, float]] = defaultdict(lambda: defaultdict(float))
    peaks: dict[str, float] = {}
    for name, labels, raw in rows:
        if not name or (names is not None and name not in names):
            continue  # a comment or a blank line; or a sample not read
        value = float(raw)
        if name.endswith("_bucket") and (le := _le(labels)) is not None:
            buckets[name.removesuffix("_bucket")][le] += value
            continue
        values[name] += value
        if not math.isnan(value) and value > peaks.get(name, -math.inf):
            peaks[name] = value
    return Snapshot(ts, dict(values), {k: dict(v) for k, v in buckets.items()}, peaks)


def _bad_line(text: str) -> str:
    """Return the first line that is not a sample, a comment or blank."""
    return next((row for row in text.split("\n") if LINE.fullmatch(row) is None), "")


def first(snap: Snapshot, names: tuple[str, ...], peak: bool = False) -> float | None:
    """Return the first name's value the snapshot has: summed over ranks, or the highest."""
    table = snap.peaks if peak else snap.values
    return next((table[n] for n in names if n in table), None)


def histogram_quantile(q: float, buckets: dict[float, float]) -> float | None:
    """PromQL's histogram_quantile over cumulative bucket counts; None without observations."""
    bounds = sorted(buckets)
    if not bounds or bounds[-1] != math.inf:
        return None
    total = buckets[math.inf]
    if total <= 0:
        return None
    rank = q * total
    prev_bound, prev_count = 0.0, 0.0
    for bound in bounds:
        count = buckets[bound]
        if count >= rank:
            if bound == math.inf:
                return prev_bound
            width = count - prev_count
            return prev_bound + (bound - prev_bound) * ((rank - prev_count) / width if width else 1)
        prev_bound, prev_count = bound, count
    return prev_bound


def bucket_increase(new: dict[float, float], old: dict[float, float]) -> dict[float, float] | None:
    """Observations between two scrapes, per bucket; None after a counter reset."""
    out = {le: n - old.get(le, 0.0) for le, n in new.items()}
    return None if any(v < 0 for v in out.values()) else out


def engine_samples(worker: str, e: EngineMap, snap: Snapshot, old: Snapshot) -> Iterator[Sample]:
    """Map one engine's scrape (and the one a window earlier) onto our metric names."""
    for name, names, peak in (("inference_requests_running", e.running, False),
                              ("inference_requests_waiting", e.waiting, False),
                              # a ratio: the fullest rank's, not the sum (0.3 + 0.6 is not 0.9)
                              ("inference_kv_cache_usage_ratio", e.kv_cache, True)):  # fmt: skip
        value = first(snap, names, peak)
        if value is not None:
            yield Sample(name, float(value), by_worker(worker))
    dt = snap.ts - old.ts
    if dt <= 0:
        return
    yield from _quantiles(worker, "inference_ttft_seconds", e.ttft, snap, old)
    yield from _quantiles(worker, "inference_request_latency_seconds", e.latency, snap, old)
    yield from _quantiles(worker, "inference_queue_time_seconds", e.queue_time, snap, old)
    yield from _counters(worker, e, snap, old, dt)
    for direction, names in (("input", e.tokens_in), ("output", e.tokens_out)):
        tokens = grown(snap, old, names)
        if tokens is not None:
            yield Sample("inference_tokens_per_second", tokens / dt,
                         by_worker(worker, "direction", direction))  # fmt: skip
    for h in e.latency:  # finished requests: the latency histogram's count
        finished = grown(snap, old, (f"{h}_count",))
        if finished is not None:
            yield Sample("inference_requests_per_second", finished / dt, by_worker(worker))
            break


def _quantiles(worker: str, metric: str, hists: tuple[str, ...], snap: Snapshot,
               old: Snapshot) -> Iterator[Sample]:  # fmt: skip
    hist = next((h for h in hists if h in snap.buckets), None)
    if hist is None:
        return
    grown = bucket_increase(snap.buckets[hist], old.buckets.get(hist, {}))
    for q in QUANTILES if grown else ():
        value = histogram_quantile(q, grown)  # type: ignore[arg-type]
        if value is not None:
            yield Sample(metric, value, by_worker(worker, "quantile", str(q)))


def grown(snap: Snapshot, old: Snapshot, names: tuple[str, ...]) -> float | None:
    """Return how much the first counter present grew; None if absent or it restarted."""
    new = first(snap, names)
    prev = first(old, names) or 0.0  # a counter born after the older scrape started from 0
    return None if new is None or new < prev else new - prev


def _counters(worker: str, e: EngineMap, snap: Snapshot, old: Snapshot,
              dt: float) -> Iterator[Sample]:  # fmt: skip
    """Preemptions per second and the prefix-cache hit ratio, from counters over the window."""
    preempted = grown(snap, old, e.preemptions)
    if preempted is not None:
        yield Sample("inference_preemptions_per_second", preempted / dt, by_worker(worker))
    hits, queries = grown(snap, old, e.cache_hits), grown(snap, old, e.cache_queries)
    if hits is not None and queries:
        yield Sample("inference_prefix_cache_hit_ratio", min(hits / queries, 1.0),
                     by_worker(worker))  # fmt: skip
