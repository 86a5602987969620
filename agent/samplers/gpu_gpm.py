"""GPM (Hopper and newer): SM activity, occupancy, tensor and DRAM activity, PCIe/NVLink rates.

NVML's GPM API gives what DCGM's profiling fields give, without DCGM: two samples of the GPU
(or of one MIG GPU instance) at least 100 ms apart, and the rates between them. Each round
takes one sample and reads the metrics against the round before's.
"""

from __future__ import annotations

import contextlib
import ctypes
import functools
import time
from typing import Any

from pynvml import NVMLError

from agent.nvml import Device, classify
from agent.store import Labels, MetricInfo, Sample

MIB = 1 << 20
MIN_GAP = 0.1  # seconds NVML needs between the two samples of a reading

# NVML_GPM_METRIC_* id, metric name (base units), scale from NVML's unit, the DCGM field
GPM_METRICS: list[tuple[int, str, float, str]] = [
    (1, "gpu_graphics_engine_active_ratio", 0.01, "DCGM_FI_PROF_GR_ENGINE_ACTIVE"),
    (2, "gpu_sm_active_ratio", 0.01, "DCGM_FI_PROF_SM_ACTIVE"),
    (3, "gpu_sm_occupancy_ratio", 0.01, "DCGM_FI_PROF_SM_OCCUPANCY"),
    (5, "gpu_tensor_active_ratio", 0.01, "DCGM_FI_PROF_PIPE_TENSOR_ACTIVE"),
    (10, "gpu_dram_active_ratio", 0.01, "DCGM_FI_PROF_DRAM_ACTIVE"),
    (11, "gpu_fp64_active_ratio", 0.01, "DCGM_FI_PROF_PIPE_FP64_ACTIVE"),
    (12, "gpu_fp32_active_ratio", 0.01, "DCGM_FI_PROF_PIPE_FP32_ACTIVE"),
    (13, "gpu_fp16_active_ratio", 0.01, "DCGM_FI_PROF_PIPE_FP16_ACTIVE"),
    (20, "gpu_pcie_transmit_bytes_per_second", MIB, "DCGM_FI_PROF_PCIE_TX_BYTES"),
    (21, "gpu_pcie_receive_bytes_per_second", MIB, "DCGM_FI_PROF_PCIE_RX_BYTES"),
    (61, "gpu_nvlink_transmit_bytes_per_second", MIB, "DCGM_FI_PROF_NVLINK_TX_BYTES"),
    (60, "gpu_nvlink_receive_bytes_per_second", MIB, "DCGM_FI_PROF_NVLINK_RX_BYTES"),
]
MIG_NAMES = {name: name.replace("gpu_", "gpu_mig_", 1) for _id, name, _scale, _dcgm in GPM_METRICS}
_HELP = {
    "graphics_engine_active_ratio": "Share of time the graphics or compute engine was active.",
    "sm_active_ratio": "Share of SMs busy: the saturation signal GPU utilization is not.",
    "sm_occupancy_ratio": "Resident warps as a share of the SMs' maximum.",
    "tensor_active_ratio": "Share of time the tensor cores were busy.",
    "dram_active_ratio": "Device memory bandwidth used as a share of its peak.",
    "fp64_active_ratio": "Share of time the FP64 pipes were busy.",
    "fp32_active_ratio": "Share of time the FP32 pipes were busy.",
    "fp16_active_ratio": "Share of time the FP16 pipes were busy.",
    "pcie_transmit_bytes_per_second": "PCIe traffic from the GPU.",
    "pcie_receive_bytes_per_second": "PCIe traffic to the GPU.",
    "nvlink_transmit_bytes_per_second": "NVLink traffic sent, all links.",
    "nvlink_receive_bytes_per_second": "NVLink traffic received, all links.",
}
METRICS = {
    "gpu_gpm_supported": MetricInfo("gauge", "1 if the GPU answers GPM (Hopper and newer)."),
    "gpu_saturation_ratio": MetricInfo(
        "gauge", "SM activity where GPM gives it, else utilization; `source` says which."
    ),
    **{f"gpu_{k}": MetricInfo("gauge", v) for k, v in _HELP.items()},
    **{f"gpu_mig_{k}": MetricInfo("gauge", f"Per MIG instance: {v}") for k, v in _HELP.items()},
}


@functools.cache
def _plain(struct: Any) -> Any:
    """Return pynvml's metric struct as a plain ctypes one, over the same fields.

    pynvml's structs turn every attribute read through a Python __getattribute__ (for bytes
    fields); the results are read for every GPU every round, and hold no bytes.
    """
    return type("GpmMetric", (ctypes.Structure,), {"_fields_": struct._fields_})


class GpmPair:
    """Two sample buffers of one GPU or GPU instance, taken in turn, and the metrics request."""

    def __init__(self, nvml: Any) -> None:
        self.nvml = nvml
        self.samples = [nvml.nvmlGpmSampleAlloc(), nvml.nvmlGpmSampleAlloc()]
        self.taken_at: list[float | None] = [None, None]
        self.turn = 0
        self.request = nvml.c_nvmlGpmMetricsGet_t()  # built once: it holds 477 metric slots
        self.request.version = nvml.NVML_GPM_METRICS_GET_VERSION
        self.request.numMetrics = len(GPM_METRICS)
        for i, (metric_id, *_rest) in enumerate(GPM_METRICS):
            self.request.metrics[i].metricId = metric_id
        metrics = self.request.metrics
        self.results = (_plain(nvml.c_nvmlGpmMetric_t) * len(GPM_METRICS)).from_address(
            ctypes.addressof(metrics))  # fmt: skip

    def read(self, handle: Any, instance: int | None) -> list[tuple[str, float]]:
        """Take a sample; return each supported metric against the previous one, if far enough."""
        now, mine, other = time.monotonic(), self.turn, 1 - self.turn
        if instance is None:
            self.nvml.nvmlGpmSampleGet(handle, self.samples[mine])
        else:
            self.nvml.nvmlGpmMigSampleGet(handle, instance, self.samples[mine])
        self.taken_at[mine], self.turn = now, other
        before = self.taken_at[other]
        if before is None or now - before < MIN_GAP:
            return []
        self.request.sample1, self.request.sample2 = self.samples[other], self.samples[mine]
        self.nvml.nvmlGpmMetricsGet(self.request)
        out = []
        for metric, (_id, name, scale, _dcgm) in zip(self.results, GPM_METRICS, strict=True):
            if metric.nvmlReturn == 0:
                out.append((name, metric.value * scale))
        return out

    def free(self) -> None:
        """Give the sample buffers back to NVML."""
        for sample in self.samples:
            with contextlib.suppress(NVMLError):
                self.nvml.nvmlGpmSampleFree(sample)


class Gpm:
    """GPM readings for the GPUs of one NVML session, and their MIG instances."""

    def __init__(self, nvml: Any) -> None:
        self.nvml = nvml
        self.supported: dict[int, bool] = {}
        self.pairs: dict[tuple[int, int | None], GpmPair] = {}

    def gpu(self, dev: Device, split: bool = False) -> list[Sample]:
        """Return gpu_gpm_supported and, where supported, this GPU's GPM metrics.

        A GPU split into MIG instances (`split`) is read per instance instead.
        """
        if not self._supported(dev):
            return [Sample("gpu_gpm_supported", 0.0, dev.labels)]
        out = [Sample("gpu_gpm_supported", 1.0, dev.labels)]
        for name, value in [] if split else self._read(dev, None):
            out.append(Sample(name, value, dev.labels))
        return out

    def instance(self, dev: Device, gi: int, labels: Labels) -> list[Sample]:
        """Return one MIG GPU instance's GPM metrics (gpu_mig_*), where supported."""
        if not self._supported(dev):
            return []
        return [Sample(MIG_NAMES[name], value, labels) for name, value in self._read(dev, gi)]

    def _supported(self, dev: Device) -> bool:
        known = self.supported.get(dev.index)
        if known is None:
            try:
                known = bool(self.nvml.nvmlGpmQueryDeviceSupport(dev.handle).isSupportedDevice)
            except NVMLError as exc:
                mapped = classify(exc)
                if not isinstance(mapped, LookupError):
                    raise mapped from exc  # the GPU or NVML itself is gone
                known = False  # an older driver or binding: FunctionNotFound, NotSupported
            self.supported[dev.index] = known
        return known

    def _read(self, dev: Device, instance: int | None) -> list[tuple[str, float]]:
        key = (dev.index, instance)
        try:
            pair = self.pairs.get(key)
            if pair is None:
                pair = self.pairs[key] = GpmPair(self.nvml)
            return pair.read(dev.handle, instance)
        except NVMLError as exc:
            mapped = classify(exc)
            if not isinstance(mapped, LookupError):
                raise mapped from exc
            dropped = self.pairs.pop(key, None)  # an instance gone, or a refused read: anew
            if dropped is not None:
                dropped.free()
            return []

    def close(self) -> None:
        """Free every sample buffer."""
        for pair in self.pairs.values():
            pair.free()
        self.pairs.clear()
