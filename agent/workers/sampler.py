"""Worker sampler: tiered health checks of one inference worker, and its engine's metrics."""

from __future__ import annotations

import functools
import logging
from collections import Counter, deque
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from agent.config import Config, WorkerConfig
from agent.config.settings import CostConfig
from agent.store import MetricInfo, Sample, sample
from agent.windows import ranked
from agent.workers import checks as probes
from agent.workers.canary import CANARY_METRICS, Board, Canary
from agent.workers.energy import METRICS as ENERGY_METRICS
from agent.workers.energy import EnergyBook, per_token
from agent.workers.engine_metrics import (
    ENGINES,
    INFERENCE,
    QUANTILES,
    Snapshot,
    by_worker,
    engine_samples,
    grown,
    parse,
    wanted,
)
from agent.workers.generation import Generation
from agent.workers.hung import REASONS, HangWatch

if TYPE_CHECKING:  # requests, which the pod finder needs, loads only for pod workers
    from agent.k8s.pods import Found, PodFinder

log = logging.getLogger(__name__)
MODELS_EVERY = 10.0  # seconds between /v1/models asks while a worker stays ready
FROM_LOGS_ONLY = {"inference_error_ratio", "inference_cuda_oom_total"}  # the request log's

METRICS = {
    "worker_up": MetricInfo("gauge", "1 while /health answers (503 while loading counts as up)."),
    "worker_ready": MetricInfo("gauge", "1 while /health is 200 and /v1/models lists the model."),
    "worker_loading": MetricInfo("gauge", "1 while the worker answers 503: model loading."),
    **CANARY_METRICS,
    **ENERGY_METRICS,
    "worker_engine_hung": MetricInfo(
        "gauge", "1 while /health is fine but the engine is hung, by reason."
    ),
    "worker_probe_success": MetricInfo("gauge", "1 if the probe passed."),
    "worker_probe_duration_seconds": MetricInfo(
        "gauge", "Probe time by phase; connect is the kept connection's latest opening."
    ),
    **{name: info for name, info in INFERENCE.items() if name not in FROM_LOGS_ONLY},
    "dsagent_worker_metrics_errors_total": MetricInfo(
        "counter", "Worker /metrics that did not parse."
    ),
    "dsagent_worker_probe_failures_total": MetricInfo(
        "counter", "Failed probes by probe (liveness, readiness, metrics, generation) and reason."
    ),
}


@dataclass
class Shared:
    """What the workers' samplers share: the canary board, GPU energy, prices."""

    board: Board = field(default_factory=Board)
    book: EnergyBook | None = None  # set when GPUs are sampled
    prices: CostConfig = field(default_factory=CostConfig)


class WorkerSampler:
    """Liveness and readiness every run, engine metrics, and the latest generation probe."""

    metrics = METRICS
    blocking = True  # waits on the network: the round starts it first, on a thread of its own

    def __init__(self, worker: WorkerConfig, locate: Callable[[], Found | None] | None = None,
                 shared: Shared | None = None) -> None:  # fmt: skip
        self.worker, self.locate = worker, locate  # locate: the pod, for a pod_selector
        self.pod: dict[str, str] = {}  # its namespace and pod, once found
        self.url = worker.url or ""
        self.name = f"worker:{worker.name}"
        self.engine = ENGINES[worker.engine]
        self.names = wanted(self.engine)
        self.history: deque[Snapshot] = deque()
        self.errors = 0
        self.failures: Counter[tuple[str, str]] = Counter()  # (probe, reason)
        self.ready, self.reason = False, "not probed yet"
        self.hang, self._frozen = HangWatch(self.engine, worker.hung_after), False
        self.session = probes.Session(self.url, worker.timeout)
        self.models: tuple[float, probes.Result] | None = None  # the latest /v1/models answer
        self.generation = (
            Generation(worker, lambda: self.url) if worker.generation_interval else None
        )
        if self.generation:
            self.generation.start()
        self.shared = shared or Shared()
        self.canary = None
        if worker.canary_interval:
            self.canary = Canary(worker, lambda: self.url, self.shared.board)
            self.canary.start()

    def sample(self, now: float) -> Iterator[Sample]:
        """Liveness, readiness, the engine's metrics and the generation probe: one verdict."""
        w = self.worker
        if not self._follow():
            yield from self._no_pod()
            return
        state, health = self._health(now)
        yield from health
        engine = list(self._engine(now)) if state != "down" and w.metrics_path else []
        gen = self.generation.latest if self.generation else None
        hung = self.hang.reasons(gen, self._frozen) if state == "ok" else set()
        if hung and self.ready:
            self.ready = False
            self.reason = "engine hung: " + ", ".join(sorted(hung))
        own = by_worker(w.name)
        yield Sample("worker_up", float(state != "down"), own)
        yield Sample("worker_ready", float(self.ready), own)
        yield Sample("worker_loading", float(state == "loading"), own)
        for reason in REASONS:
            yield Sample("worker_engine_hung", float(reason in hung),
                         by_worker(w.name, "reason", reason))  # fmt: skip
        yield from engine
        yield from self._generation()
        if self.canary:
            yield from self.canary.samples(now)
        yield Sample("dsagent_worker_metrics_errors_total", float(self.errors), own)
        generated = self.generation.failures if self.generation else Counter()
        failures = [*self.failures.items(), *((("generation", r), n) for r, n in generated.items())]
        for (probe, reason), n in sorted(failures):
            yield sample("dsagent_worker_probe_failures_total", n, worker=w.name, probe=probe,
                         reason=reason)  # fmt: skip

    def _health(self, now: float) -> tuple[str, list[Sample]]:
        """Ask /health, then /v1/models if it is up; set ready and its reason."""
        w = self.worker
        state, live = probes.liveness(self.url, w.timeout, self.session)
        self._count("liveness", live)
        if state != "ok" or "connect" in live.phases:
            self.models = None  # loading, down, or a new connection (a restart?): ask again
        if state != "down" and self.session.connect_seconds is not None:
            live.phases.setdefault("connect", self.session.connect_seconds)
        out = list(self._probe("liveness", live))
        ready = self._readiness(now) if state == "ok" else None
        if ready is not None:
            out.extend(self._probe("readiness", ready))
        self.ready = state == "ok" and ready is not None and ready.ok
        self.reason = (
            "ready"
            if self.ready
            else (state if ready is None else f"not ready: {ready.detail or ready.status}")
        )
        return state, out

    def _follow(self) -> bool:
        """Point the probes at the worker's pod as it is now; False while none is found."""
        if self.locate is None:
            return True
        found = self.locate()
        url = found.url if found else ""
        self.pod = {"namespace": found.namespace, "pod": found.pod} if found else {}
        if url != self.url:  # rescheduled: a new address, a new connection, ask /v1/models anew
            self.session.close()
            self.url, self.models = url, None
            self.session = probes.Session(url, self.worker.timeout)
        return bool(url)

    def _no_pod(self) -> Iterator[Sample]:
        w = self.worker.name
        self.ready, self.reason = False, "no pod matches pod_selector on this node"
        self.failures["liveness", "no_pod"] += 1
        for name in ("worker_up", "worker_ready", "worker_loading"):
            yield sample(name, 0, worker=w)
        for (probe, reason), n in sorted(self.failures.items()):
            yield sample("dsagent_worker_probe_failures_total", n, worker=w, probe=probe,
                         reason=reason)  # fmt: skip

    def _readiness(self, now: float) -> probes.Result:
        """Ask /v1/models, or reuse the answer of a ready worker asked within MODELS_EVERY.

        The model list changes when the worker restarts or swaps models, and then /health
        answers 503 or fails, or the kept connection drops: any of them asks again at once.
        """
        kept = self.models
        if kept is not None and kept[1].ok and now - kept[0] < MODELS_EVERY:
            return kept[1]
        w = self.worker
        self.models = now, probes.readiness(self.url, w.model, w.timeout, self.session)
        self._count("readiness", self.models[1])
        return self.models[1]

    def _count(self, probe: str, res: probes.Result) -> None:
        if not res.ok and res.status != 503:  # 503: loading, as liveness means it
            self.failures[probe, res.reason or "unknown"] += 1

    def _probe(self, probe: str, res: probes.Result) -> Iterator[Sample]:
        w = self.worker.name
        yield Sample("worker_probe_success", float(res.ok), by_worker(w, "probe", probe))
        for phase, seconds in res.phases.items():
            yield Sample("worker_probe_duration_seconds", seconds,
                         by_worker(w, "phase", phase, "probe", probe))  # fmt: skip

    def _engine(self, now: float) -> Iterator[Sample]:
        """Scrape the engine's /metrics; malformed text is counted, never a crash."""
        res = probes.request(self.url.rstrip("/") + str(self.worker.metrics_path),
                             self.worker.timeout, session=self.session)  # fmt: skip
        self._count("metrics", res)
        if not res.ok:
            return
        try:
            snap = parse(res.body.decode("utf-8", errors="replace"), now, self.names)
        except (ValueError, KeyError, IndexError) as exc:
            self.errors += 1
            self.failures["metrics", "bad_answer"] += 1
            log.debug("worker %s: /metrics did not parse: %s", self.worker.name, exc)
            return
        self._frozen = self.hang.frozen(snap, now)
        self.history.append(snap)
        while len(self.history) > 2 and self.history[1].ts <= now - self.worker.window:
            self.history.popleft()
        yield from engine_samples(self.worker.name, self.engine, snap, self.history[0])
        yield from self._energy(snap, self.history[0])

    def _energy(self, snap: Snapshot, old: Snapshot) -> Iterator[Sample]:
        """Joules (and cost) per token over the window: its GPUs' energy over its tokens."""
        book = self.shared.book
        spent = book.spent(self.worker.name, old.ts, snap.ts) if book else None
        if spent is None and book and self.pod:  # no pids known: the GPUs its pod holds
            spent = book.spent(f"pod:{self.pod['namespace']}/{self.pod['pod']}", old.ts, snap.ts)
        out, prompt = (
            grown(snap, old, self.engine.tokens_out),
            grown(snap, old, self.engine.tokens_in),
        )
        if spent is None or out is None:
            return
        tokens = {"output": out} if prompt is None else {"output": out, "all": out + prompt}
        yield from per_token(
            self.worker.name,
            joules=spent[0],
            gpus=spent[1],
            seconds=snap.ts - old.ts,
            tokens=tokens,
            prices=self.shared.prices,
            pod=self.pod,
        )

    def _generation(self) -> Iterator[Sample]:
        gen = self.generation
        if gen is None or gen.latest is None:
            return
        yield from self._probe("generation", gen.latest)
        if not self.engine.ttft and gen.ttfts:  # the engine has no TTFT histogram: fill it
            values = sorted(s for _, s in gen.ttfts)  # once, for the three quantiles
            for q in QUANTILES:
                value = ranked(q, values)
                if value is not None:
                    yield sample("inference_ttft_seconds", value, worker=self.worker.name,
                                 quantile=str(q))  # fmt: skip

    def close(self) -> None:
        """Close the connection; stop the generation thread."""
        self.session.close()
        for thread in (self.generation, self.canary):
            if thread:
                thread.stopping.set()


def build_all(cfg: Config, book: EnergyBook | None = None) -> list[WorkerSampler | PodFinder]:
    """One sampler per configured worker, and the pod finder when a worker is a pod."""
    by_pod, shared = [w for w in cfg.workers if w.pod_selector], Shared(Board(), book, cfg.cost)
    if not by_pod:
        return [WorkerSampler(w, shared=shared) for w in cfg.workers]
    from agent.k8s.pods import PodFinder

    finder = PodFinder(cfg.kubernetes, by_pod)
    finder.start()
    out: list[WorkerSampler | PodFinder] = [finder]
    for w in cfg.workers:
        locate = functools.partial(finder.locate, w.name) if w.pod_selector else None
        out.append(WorkerSampler(w, locate, shared))
    return out
