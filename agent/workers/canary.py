"""The answer-consistency canary: a fixed prompt at temperature 0 with a fixed seed, hashed.

An unfixed seed, a quantisation change or a different GPU model changes what a model answers
(the ops guide's "inconsistent results"). The canary asks the same question at an interval;
an answer none of the last N gave, or one that differs from another worker serving the same
model, is drift, held for HOLD seconds with both answers' first 200 characters as labels.
Cost: one completion of canary_max_tokens per worker every canary_interval.
"""

from __future__ import annotations

import hashlib
import json
import logging
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import orjson

from agent.config import WorkerConfig
from agent.store import MetricInfo, Sample, sample
from agent.workers import checks as probes

log = logging.getLogger(__name__)
HOLD = 600.0  # seconds a change stays visible, so a 10-minute alert window sees it
SHOWN = 200  # characters of an answer kept in a label
CANARY_METRICS = {
    "inference_canary_answer_changes_total": MetricInfo(
        "counter", "Canary answers none of the last canary_history answers gave."
    ),
    "inference_canary_drift": MetricInfo(
        "gauge", "1 while the canary's answer differs from its earlier one or a peer's."
    ),
    "dsagent_canary_failures_total": MetricInfo("counter", "Canary asks that got no answer."),
}


@dataclass(frozen=True)
class Answer:
    """One canary answer."""

    digest: str
    text: str
    at: float


class Board:
    """The latest answer of every worker, by model: for the comparison across workers."""

    def __init__(self) -> None:
        self.latest: dict[tuple[str, str], Answer] = {}  # (model, worker) -> answer
        self.lock = threading.Lock()

    def put(self, model: str, worker: str, answer: Answer) -> None:
        """Record a worker's latest answer."""
        with self.lock:
            self.latest[model, worker] = answer

    def peers(self, model: str, worker: str) -> list[tuple[str, Answer]]:
        """Return the other workers serving the model, with their latest answers."""
        with self.lock:
            return [
                (w, a) for (m, w), a in sorted(self.latest.items()) if m == model and w != worker
            ]


def ask(url: str, w: WorkerConfig) -> str | None:
    """Send the canary prompt; return the answer's text, or None when there is none."""
    question = {"model": w.model or "", "prompt": w.canary_prompt, "temperature": 0,
           "seed": w.canary_seed, "max_tokens": w.canary_max_tokens}  # fmt: skip
    body = json.dumps(question).encode()
    res = probes.request(url.rstrip("/") + "/v1/completions", w.generation_timeout, "POST", body)
    if not res.ok:
        return None
    try:
        text = orjson.loads(res.body)["choices"][0]["text"]
    except (ValueError, KeyError, IndexError, TypeError):
        return None
    return text if isinstance(text, str) else None


class Canary(threading.Thread):
    """Asks the canary every canary_interval; keeps the last N answers and the latest change."""

    def __init__(self, worker: WorkerConfig, url: Callable[[], str], board: Board) -> None:
        super().__init__(name=f"canary-{worker.name}", daemon=True)
        self.worker, self.url, self.board = worker, url, board
        self.history: deque[Answer] = deque(maxlen=worker.canary_history)
        self.change: tuple[Answer, Answer] | None = None  # (before, after)
        self.changes = 0
        self.failures = 0
        self.stopping = threading.Event()

    def run(self) -> None:
        """Ask until stopped."""
        while not self.stopping.wait(0 if not self.history else self.worker.canary_interval):
            url = self.url()
            text = ask(url, self.worker) if url else None
            if text is None:
                self.failures += 1
                continue
            self.take(Answer(hashlib.sha256(text.encode()).hexdigest(), text, time.time()))

    def take(self, answer: Answer) -> None:
        """Keep an answer; one that none of the last N gave is a change."""
        if self.history and answer.digest not in {a.digest for a in self.history}:
            self.change, self.changes = (self.history[-1], answer), self.changes + 1
            log.warning("worker %s: the canary's answer changed: %r -> %r", self.worker.name,
                        self.history[-1].text[:SHOWN], answer.text[:SHOWN])  # fmt: skip
        self.history.append(answer)
        self.board.put(self.worker.model or "", self.worker.name, answer)

    def samples(self, now: float) -> Iterator[Sample]:
        """Yield the changes so far, and drift against its own past and against each peer."""
        w = self.worker.name
        yield sample("inference_canary_answer_changes_total", self.changes, worker=w)
        yield sample("dsagent_canary_failures_total", self.failures, worker=w)
        if self.change and now - self.change[1].at < HOLD:
            before, after = self.change
            yield sample("inference_canary_drift", 1, worker=w, versus="earlier",
                         answer=after.text[:SHOWN], other=before.text[:SHOWN])  # fmt: skip
        if not self.history:
            return
        mine = self.history[-1]
        for peer, theirs in self.board.peers(self.worker.model or "", w):
            if theirs.digest != mine.digest:
                yield sample("inference_canary_drift", 1, worker=w, versus=peer,
                             answer=mine.text[:SHOWN], other=theirs.text[:SHOWN])  # fmt: skip
