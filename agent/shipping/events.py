"""Failures the worker and node logs tell: declarative patterns counted per input, by event.

Each pattern is a regex and the plain strings a matching line must contain (`contains`): the
strings are looked for in the whole batch first (a memchr-speed `in`), so the regexes run
only on the few lines that can match. A line counts once per event.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass

from agent.config.shipping import EventPatternConfig


@dataclass(frozen=True)
class Pattern:
    """One event: its name, its regex, the strings a matching line must hold (any of)."""

    name: str
    regex: re.Pattern[bytes]
    contains: tuple[bytes, ...]


def _p(name: str, regex: bytes, *contains: bytes) -> Pattern:
    return Pattern(name, re.compile(regex), contains)


DEFAULTS = (
    # PyTorch: "CUDA out of memory. Tried to allocate 20.00 GiB (GPU 0; 79.21 GiB total ...)"
    _p("cuda_oom", rb"CUDA out of memory|OutOfMemoryError|CUBLAS_STATUS_ALLOC_FAILED",
       b"CU", b"OutOfMemory"),
    # torch.distributed's NCCL watchdog (its line names WorkNCCL), and NCCL's own timeouts
    _p("nccl_timeout", rb"Watchdog caught collective operation timeout|NCCL[^\n]*[Tt]imed? ?out",
       b"NCCL"),
    _p("nccl_error", rb"NCCL (?:WARN|ERROR)|nccl(?:Internal|System|UnhandledCuda|Invalid)\w*Error"
       rb"|NCCL error", b"NCCL", b"nccl"),
    # vLLM V1's engine core dying, SGLang's scheduler, TGI's shards
    _p("engine_crash", rb"EngineDeadError|EngineCore encountered a fatal error"
       rb"|Scheduler hit an exception|Shard \d+ failed|Webserver Crashed",
       b"Engine", b"Scheduler hit", b"Shard", b"Webserver"),
    # the kernel driver's Xid lines, as dmesg and kern.log print them
    _p("xid", rb"NVRM: Xid \(", b"Xid"),
)  # fmt: skip


def patterns_for(input_name: str, defaults: bool, extra: Iterable[EventPatternConfig]
                 ) -> list[Pattern]:  # fmt: skip
    """Return the patterns one input is matched against: the defaults, then its own by name."""
    chosen = {p.name: p for p in DEFAULTS} if defaults else {}
    for cfg in extra:
        if not cfg.inputs or input_name in cfg.inputs:
            chosen[cfg.name] = Pattern(cfg.name, re.compile(cfg.regex.encode()),
                                       tuple(s.encode() for s in cfg.contains))  # fmt: skip
    return list(chosen.values())


class EventCounter:
    """Counts each pattern's lines; keeps the sizes of the latest CUDA OOM."""

    def __init__(self, patterns: list[Pattern]) -> None:
        self.patterns = patterns
        self.counts: Counter[str] = Counter({p.name: 0 for p in patterns})
        self.oom: dict[str, float] = {}  # the latest OOM's sizes, bytes, by what they are

    def scan(self, batch: bytes, lines: list[bytes]) -> None:
        """Count the events in a batch of lines (`batch` is the lines joined)."""
        present: dict[bytes, bool] = {}  # each string searched for once per batch

        def holds(s: bytes) -> bool:
            if s not in present:
                present[s] = s in batch
            return present[s]

        for p in self.patterns:
            if p.contains and not any(holds(s) for s in p.contains):
                continue
            maybe = [x for x in lines if any(s in x for s in p.contains)] if p.contains else lines
            hits = [x for x in maybe if p.regex.search(x)]
            self.counts[p.name] += len(hits)
            if hits and p.name == "cuda_oom":
                self.oom = oom_sizes(hits[-1]) or self.oom


UNITS = {"B": 1, "KiB": 1 << 10, "MiB": 1 << 20, "GiB": 1 << 30, "TiB": 1 << 40}
_SIZE = rb"([\d.]+) ([KMGT]iB|B)"
OOM_SIZES = {
    "tried": (re.compile(rb"Tried to allocate " + _SIZE),),
    "capacity": (re.compile(_SIZE + rb" total capacity"),  # PyTorch before 2.1
                 re.compile(rb"total capacity of " + _SIZE)),  # and after
    "allocated": (re.compile(_SIZE + rb" already allocated"),
                  re.compile(rb"Of the allocated memory " + _SIZE)),
}  # fmt: skip
_GPU = re.compile(rb"GPU (\d+)")


def oom_sizes(line: bytes) -> dict[str, float]:
    """Return the sizes a CUDA OOM message gives, in bytes, and its GPU as "gpu"."""
    out: dict[str, float] = {}
    for what, regexes in OOM_SIZES.items():
        for regex in regexes:
            m = regex.search(line)
            if m:
                out[what] = float(m.group(1)) * UNITS[m.group(2).decode()]
                break
    gpu = _GPU.search(line)
    if out and gpu:
        out["gpu"] = float(gpu.group(1))
    return out
