"""A hung engine behind a healthy /health: the generation probe times out, or the queue stands.

vLLM's /health answers 200 while its engine core is hung or dead, and SGLang's can too; only
a real completion, or counters that stop while requests wait, tell the truth.
"""

from __future__ import annotations

from agent.workers.checks import Result
from agent.workers.engine_metrics import EngineMap, Snapshot, first

REASONS = ("generation_timeout", "engine_frozen")


class HangWatch:
    """Decides, each round, whether a worker whose /health is fine is hung, and why."""

    def __init__(self, engine: EngineMap, hung_after: float) -> None:
        self.engine, self.hung_after = engine, hung_after
        self._done: float | None = None  # tokens generated, as of the last change
        self._since = 0.0  # when they last changed, or the queue was empty

    def frozen(self, snap: Snapshot, now: float) -> bool:
        """Return True once requests have waited hung_after with no token generated."""
        waiting = first(snap, self.engine.waiting)
        done = first(snap, self.engine.tokens_out)
        if waiting is None or done is None:  # an engine that does not say: never frozen
            self._done = None
            return False
        if waiting <= 0 or done != self._done:
            self._done, self._since = done, now
            return False
        return now - self._since >= self.hung_after

    @staticmethod
    def reasons(generation: Result | None, frozen: bool) -> set[str]:
        """Return why the engine counts as hung: none of REASONS when it is not."""
        out = {"engine_frozen"} if frozen else set()
        if generation is not None and not generation.ok and generation.reason == "timeout":
            out.add("generation_timeout")
        return out
