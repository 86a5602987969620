"""One thread per input: tail, parse, ship a batch, and only then commit its offsets."""

from __future__ import annotations

import logging
import threading
import time
from collections import Counter
from pathlib import Path
from typing import Any, Protocol

from agent.config.shipping import LogInputConfig
from agent.shipping.documents import NO_TIME, Documents, Poison, dumps, loads
from agent.shipping.events import EventCounter, Pattern
from agent.shipping.parse import Assembler, Event, doc_id
from agent.shipping.registry import Registry
from agent.shipping.sinks import DeadLetters, Doc, Outcome
from agent.shipping.stats import Batch, RequestStats
from agent.shipping.tail import Tailer
from agent.supervise import SUPERVISOR

log = logging.getLogger(__name__)


class Sink(Protocol):
    """Elasticsearch or the local file sink."""

    def index(self, dataset: str) -> str:
        """Where a dataset's documents go."""
        ...

    def ship(self, index: str, docs: list[Doc]) -> list[Outcome]:
        """Send documents; one outcome each."""
        ...


class Shipper(threading.Thread):
    """Reads at most one batch ahead of what the sink acknowledged: memory stays bounded."""

    def __init__(self, cfg: LogInputConfig, sink: Sink, state: Path, *, node: str,
                 batch_size: int, batch_bytes: int, patterns: list[Pattern]) -> None:  # fmt: skip
        super().__init__(name=f"ship-{cfg.name}", daemon=True)
        self.cfg, self.sink, self.node = cfg, sink, node
        self.batch_size, self.batch_bytes = batch_size, batch_bytes
        self.dataset = cfg.dataset or ("llm.inference" if cfg.format == "json" else "dsagent.node")
        self.registry = Registry(state / "registry" / f"{cfg.name}.json")
        self.tailer = Tailer(cfg.paths, self.registry, cfg.follow_symlinks)
        self.assembler = Assembler(cfg.multiline)
        self.documents = Documents(cfg, node, self.dataset)
        self.dead = DeadLetters(state / "dead-letter" / f"{cfg.name}.ndjson")
        self.stats = RequestStats()
        self.events = EventCounter(patterns)
        self.counts: Counter[str] = Counter()
        self.last_event_at = 0.0
        self.stopping = threading.Event()
        self._poison_logged = False

    def run(self) -> None:
        """Ship until stopped, under the supervisor: a failure restarts the loop."""
        SUPERVISOR.run(f"shipper:{self.cfg.name}", self._loop, self.stopping)

    def _loop(self) -> None:
        """Ship until stopped; an unacknowledged batch is simply read again after a restart."""
        while not self.stopping.is_set():
            self.tailer.discover()
            events = self._collect()
            if not events:
                self.registry.forget(self.tailer.close_finished())
                self.stopping.wait(0.25)
                continue
            if self._deliver(events):
                self._commit(events)

    def _collect(self) -> list[Event]:
        events: list[Event] = []
        read: list[bytes] = []
        for line in self.tailer.lines(self.batch_bytes):
            read.append(line.data)
            events.extend(self.assembler.feed(line))
            if len(events) >= self.batch_size:
                break
        self.counts["lines"] += len(read)
        if read:
            self.events.scan(b"\n".join(read), read)
        events.extend(self.assembler.flush(idle=2.0))
        return events

    def _deliver(self, events: list[Event]) -> bool:
        """Ship until every document is delivered or dead-lettered; False if stopped first."""
        index = self.sink.index(self.dataset)
        docs = self._build(index, events)
        delay = 0.5
        while docs and not self.stopping.is_set():
            outcomes = self.sink.ship(index, [d for d, _ in docs])
            retry = self._settle(index, docs, outcomes)
            if retry:
                self.counts["retries"] += len(retry)
                self.stopping.wait(delay)  # backpressure: nothing new is read meanwhile
                delay = min(delay * 2, 10.0)
            docs = retry
        return not docs

    def _build(self, index: str, events: list[Event]) -> list[tuple[Doc, Event]]:
        """Build each event's document, count it, and keep it as JSON bytes.

        Each document is serialised as soon as it is built: its dicts are freed at once, and a
        batch holds 2,000 byte strings instead of 20,000 dicts (a third less CPU per line).
        """
        docs: list[tuple[Doc, Event]] = []
        requests = Batch()
        count_requests = self.documents.json and self.cfg.request_stats
        for event in events:
            try:
                source, malformed = self.documents.build(event)
            except Poison as exc:  # set aside with its reason; its offset is committed below
                self._poisoned(index, event, str(exc))
                continue
            if malformed or "tags" in source:
                self.counts["malformed"] += malformed
                self.counts["no_time"] += NO_TIME in source.get("tags", ())
            if count_requests and not malformed:
                requests.add(source)
            docs.append(((doc_id(event.key, event.start), dumps(source)), event))
        self.stats.add(requests)
        return docs

    def _poisoned(self, index: str, event: Event, reason: str) -> None:
        original = event.data.decode("utf-8", errors="replace")
        doc = {"event": {"original": original}, "log": {"file": {"path": event.path},
                                                          "offset": event.start}}  # fmt: skip
        self.dead.write(index, doc_id(event.key, event.start), doc, reason)
        self.counts["dead_lettered"] += 1
        if not self._poison_logged:  # once per shipper: a flood of bad lines is one line here
            log.warning("input %s: a line cannot be shipped (%s); it is in the dead letters,"
                        " and the lines after it ship", self.cfg.name, reason)  # fmt: skip
            self._poison_logged = True

    def _settle(self, index: str, docs: list[tuple[Doc, Event]],
                outcomes: list[Outcome]) -> list[tuple[Doc, Event]]:  # fmt: skip
        shipped = outcomes.count("ok")
        self.counts["shipped"] += shipped
        if shipped == len(docs):  # the common case: nothing to sort out one by one
            return []
        retry = []
        for (doc, event), outcome in zip(docs, outcomes, strict=True):
            if outcome == "ok":
                continue
            if outcome == "retry":
                retry.append((doc, event))
            else:
                self.dead.write(index, doc[0], loads(doc[1]), outcome[1])
                self.counts["dead_lettered"] += 1
        return retry

    def _commit(self, events: list[Event]) -> None:
        """Advance each file's offset to its last delivered event, never past a held one."""
        last = {event.key: event for event in events}  # events of one file come in order
        updates: dict[str, dict[str, Any]] = {}
        for key, event in last.items():
            dev, ino, gen = (int(x) for x in key.split(":"))
            updates[key] = {"offset": event.end, "path": event.path, "dev": dev, "ino": ino,
                            "gen": gen}  # fmt: skip
        self.registry.commit(updates)
        self.last_event_at = time.time()

    def stop(self) -> None:
        """Stop after the batch in hand (uncommitted work is replayed on the next start)."""
        self.stopping.set()
