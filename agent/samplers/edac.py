"""EDAC sampler: correctable and uncorrectable ECC memory errors per memory controller.

Names, labels and values as node_exporter's edac collector where it has the family; newer
drivers (skx_edac, i10nm_edac, ghes_edac) count per DIMM instead of per csrow, which node_exporter
does not read: those are node_edac_dimm_*.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

from agent.config import Config
from agent.samplers.sysfs import numbered, read_int, read_text
from agent.store import MetricInfo, Sample, sample

EDAC_MC = Path("devices/system/edac/mc")

METRICS = {
    "node_edac_correctable_errors_total": MetricInfo("counter", "Total correctable memory errors."),
    "node_edac_uncorrectable_errors_total": MetricInfo(
        "counter", "Total uncorrectable memory errors."
    ),
    "node_edac_csrow_correctable_errors_total": MetricInfo(
        "counter", "Total correctable memory errors for this csrow."
    ),
    "node_edac_csrow_uncorrectable_errors_total": MetricInfo(
        "counter", "Total uncorrectable memory errors for this csrow."
    ),
    "node_edac_dimm_correctable_errors_total": MetricInfo(
        "counter", "Total correctable memory errors for this DIMM."
    ),
    "node_edac_dimm_uncorrectable_errors_total": MetricInfo(
        "counter", "Total uncorrectable memory errors for this DIMM."
    ),
}

# (file in the controller, file in a csrow or dimm, metric suffix)
_KINDS = (("ce", "correctable"), ("ue", "uncorrectable"))


def controller_samples(mc: Path, controller: str) -> Iterator[Sample]:
    """Yield one controller's totals, its csrows (with "unknown" for noinfo) and its DIMMs."""
    for short, kind in _KINDS:
        total = read_int(mc / f"{short}_count")
        if total is not None:
            yield sample(f"node_edac_{kind}_errors_total", total, controller=controller)
        noinfo = read_int(mc / f"{short}_noinfo_count")
        if noinfo is not None:
            yield sample(f"node_edac_csrow_{kind}_errors_total", noinfo,
                         controller=controller, csrow="unknown")  # fmt: skip
    for name, csrow in numbered(mc, "csrow"):
        for short, kind in _KINDS:
            value = read_int(mc / name / f"{short}_count")
            if value is not None:
                yield sample(f"node_edac_csrow_{kind}_errors_total", value,
                             controller=controller, csrow=csrow)  # fmt: skip
    for name, dimm in numbered(mc, "dimm"):
        label = read_text(mc / name / "dimm_label") or ""
        for short, kind in _KINDS:
            value = read_int(mc / name / f"dimm_{short}_count")
            if value is not None:
                yield sample(f"node_edac_dimm_{kind}_errors_total", value,
                             controller=controller, dimm=dimm, dimm_label=label)  # fmt: skip


class EdacSampler:
    """Memory controllers under /sys/devices/system/edac/mc; none (no EDAC driver) yields none."""

    name = "edac"
    metrics = METRICS

    def __init__(self, sys_root: Path, interval: float) -> None:
        self.root = sys_root / EDAC_MC
        self.interval = interval

    def sample(self, now: float) -> Iterator[Sample]:
        """Read every controller's counters."""
        for name, controller in numbered(self.root, "mc"):
            yield from controller_samples(self.root / name, controller)


def build(cfg: Config) -> EdacSampler:
    """Build the EDAC sampler."""
    return EdacSampler(cfg.host.sys_root, cfg.hardware.interval)
