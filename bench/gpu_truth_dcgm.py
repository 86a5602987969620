"""The GPM side of the truth check: the agent's SM activity and kin against `dcgmi dmon`.

DCGM's profiling fields and NVML's GPM metrics count the same hardware events; where dcgmi is
installed (and nv-hostengine runs), both are read at the same moments, field by field.
"""

from __future__ import annotations

import subprocess

Table = dict[str, tuple[str, dict[str, str], float]]  # field -> metric, labels, factor

# DCGM field id -> (our metric, extra labels, factor from ours to dcgmi's unit)
DCGM_FIELDS: Table = {
    "1001": ("gpu_graphics_engine_active_ratio", {}, 1),  # DCGM_FI_PROF_GR_ENGINE_ACTIVE
    "1002": ("gpu_sm_active_ratio", {}, 1),  # DCGM_FI_PROF_SM_ACTIVE
    "1003": ("gpu_sm_occupancy_ratio", {}, 1),  # DCGM_FI_PROF_SM_OCCUPANCY
    "1004": ("gpu_tensor_active_ratio", {}, 1),  # DCGM_FI_PROF_PIPE_TENSOR_ACTIVE
    "1005": ("gpu_dram_active_ratio", {}, 1),  # DCGM_FI_PROF_DRAM_ACTIVE
    "1006": ("gpu_fp64_active_ratio", {}, 1),  # DCGM_FI_PROF_PIPE_FP64_ACTIVE
    "1007": ("gpu_fp32_active_ratio", {}, 1),  # DCGM_FI_PROF_PIPE_FP32_ACTIVE
    "1008": ("gpu_fp16_active_ratio", {}, 1),  # DCGM_FI_PROF_PIPE_FP16_ACTIVE
    "1009": ("gpu_pcie_transmit_bytes_per_second", {}, 1),  # DCGM_FI_PROF_PCIE_TX_BYTES
    "1010": ("gpu_pcie_receive_bytes_per_second", {}, 1),  # DCGM_FI_PROF_PCIE_RX_BYTES
    "1011": ("gpu_nvlink_transmit_bytes_per_second", {}, 1),  # DCGM_FI_PROF_NVLINK_TX_BYTES
    "1012": ("gpu_nvlink_receive_bytes_per_second", {}, 1),  # DCGM_FI_PROF_NVLINK_RX_BYTES
}


def parse_dmon(text: str, fields: list[str]) -> dict[str, dict[str, float | None]]:
    """Parse `dcgmi dmon -e <fields> -c 1`: one "GPU <index> v1 v2 ..." row per GPU."""
    out: dict[str, dict[str, float | None]] = {}
    for line in text.splitlines():
        cells = line.split()
        if len(cells) != len(fields) + 2 or cells[0] != "GPU":
            continue
        row: dict[str, float | None] = {}
        for field, cell in zip(fields, cells[2:], strict=True):
            try:
                row[field] = float(cell)
            except ValueError:
                row[field] = None  # N/A: not supported on this GPU
        out[cells[1]] = row
    return out


def dmon(dcgmi: str, fields: list[str]) -> str:
    """One `dcgmi dmon` reading of the fields."""
    cmd = [dcgmi, "dmon", "-e", ",".join(fields), "-c", "1"]
    return subprocess.run(cmd, capture_output=True, text=True, check=True, timeout=30).stdout
