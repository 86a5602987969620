"""Tuning sampler: kernel settings against the expected table, so a reverted tuning shows.

node_exporter's sysctl collector names each setting as a metric (node_sysctl_vm_swappiness);
here the name is a label, so one rule covers the whole table.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator, Mapping
from pathlib import Path

from agent.config import Config
from agent.samplers.sysfs import read_text
from agent.store import MetricInfo, Sample, sample

log = logging.getLogger(__name__)

METRICS = {
    "node_sysctl_value": MetricInfo("gauge", "A watched kernel setting's value (numeric ones)."),
    "node_tuning_drift": MetricInfo(
        "gauge", "1 while a kernel setting differs from hardware.sysctl (label expected)."
    ),
}


def sysctl_path(proc_root: Path, name: str) -> Path:
    """Return where /proc/sys keeps a setting: vm.swappiness -> <proc>/sys/vm/swappiness."""
    return proc_root.joinpath("sys", *name.split("."))


def normalise(value: object) -> str:
    """Return a setting as sysctl prints it: fields separated by one space."""
    return " ".join(str(value).split())


def number(text: str) -> float | None:
    """Return a setting that is one number, else None."""
    try:
        return float(text)
    except ValueError:
        return None


class SysctlSampler:
    """The settings of hardware.sysctl, read from /proc/sys."""

    name = "sysctl"
    metrics = METRICS

    def __init__(self, proc_root: Path, expected: Mapping[str, int | str],
                 interval: float) -> None:  # fmt: skip
        self.proc = proc_root
        self.expected = {name: normalise(value) for name, value in expected.items()}
        self.interval = interval
        self._missing: set[str] = set()  # settings whose absence was logged

    def sample(self, now: float) -> Iterator[Sample]:
        """Read each watched setting and compare it with the expected value."""
        for name, want in self.expected.items():
            text = read_text(sysctl_path(self.proc, name))
            if text is None:
                if name not in self._missing:
                    self._missing.add(name)
                    log.warning("sysctl %s: not found under %s/sys (misspelt, or its module "
                                "is not loaded); reported as drift", name, self.proc)  # fmt: skip
            else:
                self._missing.discard(name)
                value = number(text)
                if value is not None:  # several fields, or text: compared, not exported
                    yield sample("node_sysctl_value", value, name=name)
            drift = text is None or normalise(text) != want
            yield sample("node_tuning_drift", drift, name=name, expected=want)


def build(cfg: Config) -> SysctlSampler | None:
    """Build the tuning sampler, unless hardware.sysctl is empty."""
    if not cfg.hardware.sysctl:
        return None
    return SysctlSampler(cfg.host.proc_root, cfg.hardware.sysctl, cfg.hardware.interval)
