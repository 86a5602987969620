"""The agent's real NVML path: the unmodified nvidia-ml-py on the C stand-in (make nvml-shim)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests
from prometheus_client.parser import text_string_to_metric_families

from agent.samplers.gpu_gpm import GPM_METRICS
from tests.conftest import ROOT, AgentProcess, need, wait_for

SHIM = ROOT / "build" / "nvml-shim" / "libnvidia-ml.so.1"
GIB = 1 << 30
H100 = "NVIDIA H100 80GB HBM3"
A100 = "NVIDIA A100-SXM4-80GB"
MIG1, MIG2 = "MIG-1f1f1f1f-0000-0000-0000-000000000001", "MIG-2f2f2f2f-0000-0000-0000-000000000002"


def scenario() -> dict[str, Any]:
    """Two GPUs: an H100 with GPM and an A100 split into two MIG instances; steady values."""
    me = os.getpid()
    h100 = {
        "name": H100, "uuid": "GPU-11111111-2222-3333-4444-555555555555",
        "pci_bus_id": "00000000:1B:00.0", "utilization": 87, "memory_utilization": 41,
        "temperature": 61, "power_mw": 412345, "power_limit_mw": 650000,
        "memory_total": 80 * GIB, "memory_used": 40 * GIB, "memory_reserved": GIB // 2,
        "sm_clock_mhz": 1755, "memory_clock_mhz": 2619, "pcie_replay": 2, "throttle": 4,
        "ecc": {"corrected_volatile": 4, "uncorrected_aggregate": 1},
        "retired_pages": {"double_bit_ecc": 2}, "remapped_rows": {"correctable": 3, "pending": 1},
        "fields": {"82": 70, "38": 3, "59": 1}, "fail": {"nvmlDeviceGetFanSpeed": 3},
        "gpm_supported": True,
        "gpm": {"2": 42.5, "3": 30.0, "5": 12.5, "10": 55.0, "13": 20.0, "20": 1024, "61": 2048},
        "processes": [{"pid": me, "used": 30 * GIB}],
    }  # fmt: skip
    a100 = {
        "name": A100, "uuid": "GPU-aaaaaaaa-bbbb-cccc-dddd-eeeeeeeeeeee", "architecture": 7,
        "utilization": 50, "temperature": 45, "power_mw": 200000, "memory_total": 80 * GIB,
        "memory_used": 12 * GIB, "gpm_supported": True, "fail": {"nvmlDeviceGetFanSpeed": 3},
        "mig": [
            {"profile": "3g.40gb", "gi": 1, "ci": 0, "uuid": MIG1,
             "memory_total": 40 * GIB, "memory_used": 10 * GIB, "gpm": {"2": 10.0}},
            {"profile": "3g.40gb", "gi": 2, "ci": 0, "uuid": MIG2,
             "memory_total": 40 * GIB, "memory_used": 2 * GIB, "gpm": {"2": 75.0}},
        ],
        "processes": [{"pid": me, "used": 2 * GIB, "gi": 2, "ci": 0}],
    }  # fmt: skip
    l40s = {
        "name": "NVIDIA L40S", "uuid": "GPU-0a0a0a0a-0000-0000-0000-000000000003",
        "architecture": 8, "utilization": 64, "temperature": 50, "power_mw": 300000,
        "memory_total": 48 * GIB, "memory_used": 8 * GIB, "fan": 35,
    }  # fmt: skip
    return {"driver_version": "580.95.05", "gpus": [h100, a100, l40s], "xid_events": []}


GPM_NAMES = {name for _id, name, _scale, _dcgm in GPM_METRICS}
Values = dict[tuple[str, frozenset[tuple[str, str]]], float]


def parse(text: str) -> Values:
    """Every sample of an exposition, keyed by name and label set."""
    return {(s.name, frozenset(s.labels.items())): s.value
            for f in text_string_to_metric_families(text) for s in f.samples}  # fmt: skip


def value(values: Values, name: str, **labels: str) -> float | None:
    """The one value of `name` whose labels include `labels` (None if none)."""
    found = [v for (n, ls), v in values.items() if n == name and set(labels.items()) <= ls]
    assert len(found) <= 1, f"{name}{labels}: {len(found)} series"
    return found[0] if found else None


class Shimmed:
    """An agent on the stand-in, and the scenario file it reads (rewritten to change GPUs)."""

    def __init__(self, tmp: Path, config: str = "") -> None:
        need(SHIM.exists(), f"{SHIM} is not built (make nvml-shim; make test builds it)")
        self.file, self.spec = tmp / "gpus.json", scenario()
        self.write()
        env = {"LD_LIBRARY_PATH": str(SHIM.parent), "NVML_SHIM_CONFIG": str(self.file)}
        self.agent = AgentProcess(tmp, "[gpu]\nenabled = true\ntimeout = 0.5\n" + config, env)
        try:
            self.agent.wait_healthy()
        except BaseException:
            self.agent.stop()
            raise

    def write(self) -> None:
        """Write the scenario so the stand-in re-reads it (a new mtime and size)."""
        tmp = self.file.with_suffix(".tmp")
        tmp.write_text(json.dumps(self.spec, indent=int(time.time() * 1000) % 3))
        tmp.replace(self.file)

    def values(self) -> Values:
        """The agent's /metrics now."""
        return parse(self.agent.metrics())

    def until(self, name: str, want: float | None, **labels: str) -> Values:
        """Wait until `name{labels}` reads `want` (None: absent); return the exposition."""
        got: list[Values] = []

        def check() -> bool:
            got.append(self.values())
            return value(got[-1], name, **labels) == want

        wait_for(check, 10, f"{name}{labels} == {want}; log:\n{self.agent.log()}")
        return got[-1]


@pytest.fixture(scope="module")
def shimmed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Shimmed]:
    """One agent on the stand-in for the value tests."""
    running = Shimmed(tmp_path_factory.mktemp("shim"))
    try:
        running.until("gpu_sm_active_ratio", 0.425, gpu="0")  # GPM reads from the second round
        yield running
    finally:
        running.agent.stop()


def test_every_field_family_through_the_real_binding(shimmed: Shimmed) -> None:
    v = shimmed.values()
    h100 = {"gpu": "0", "uuid": "GPU-11111111-2222-3333-4444-555555555555"}
    assert value(v, "gpu_info", **h100, model=H100, architecture="hopper",
                 pci_bus_id="00000000:1b:00.0") == 1  # fmt: skip
    assert value(v, "gpu_info", gpu="1", architecture="ampere") == 1
    assert value(v, "gpu_up", **h100) == 1
    assert value(v, "gpu_utilization_ratio", **h100) == 0.87
    assert value(v, "gpu_memory_copy_utilization_ratio", **h100) == 0.41
    # the v2 struct: used leaves out the 0.5 GiB the driver reserves, as nvidia-smi shows
    assert value(v, "gpu_memory_used_bytes", **h100) == 40 * GIB
    assert value(v, "gpu_memory_total_bytes", **h100) == 80 * GIB
    assert value(v, "gpu_temperature_celsius", **h100) == 61
    assert value(v, "gpu_memory_temperature_celsius", **h100) == 70
    assert value(v, "gpu_power_watts", **h100) == 412.345
    assert value(v, "gpu_power_limit_watts", **h100) == 650
    assert (value(v, "gpu_energy_joules_total", **h100) or 0) > 0
    assert value(v, "gpu_sm_clock_hertz", **h100) == 1755e6
    assert value(v, "gpu_memory_clock_hertz", **h100) == 2619e6
    assert value(v, "gpu_pcie_replay_errors_total", **h100) == 2
    assert value(v, "gpu_fan_speed_ratio", **h100) is None  # NotSupported: absent, not 0
    assert value(v, "gpu_throttle_reason", **h100, reason="sw_power_cap") == 1
    assert value(v, "gpu_throttle_reason", **h100, reason="hw_slowdown") == 0
    assert value(v, "gpu_ecc_errors_total", **h100, type="corrected", scope="volatile") == 4
    assert value(v, "gpu_ecc_errors_total", **h100, type="uncorrected", scope="aggregate") == 1
    assert value(v, "gpu_retired_pages", **h100, cause="double_bit_ecc") == 2
    assert value(v, "gpu_remapped_rows", **h100, kind="correctable") == 3
    assert value(v, "gpu_row_remap_pending", **h100) == 1
    assert value(v, "gpu_nvlink_errors_total", **h100, counter="crc_flit") == 3
    assert value(v, "gpu_nvlink_errors_total", **h100, counter="recovery") == 1
    assert value(v, "gpu_nvlink_errors_total", **h100, counter="replay") is None
    pid = str(os.getpid())
    assert value(v, "gpu_process_memory_bytes", gpu="0", pid=pid) == 30 * GIB


def test_gpm_in_base_units(shimmed: Shimmed) -> None:
    v = shimmed.values()
    assert value(v, "gpu_gpm_supported", gpu="0") == 1
    assert value(v, "gpu_sm_active_ratio", gpu="0") == 0.425
    assert value(v, "gpu_sm_occupancy_ratio", gpu="0") == 0.30
    assert value(v, "gpu_tensor_active_ratio", gpu="0") == 0.125
    assert value(v, "gpu_dram_active_ratio", gpu="0") == 0.55
    assert value(v, "gpu_fp16_active_ratio", gpu="0") == 0.20
    assert value(v, "gpu_fp64_active_ratio", gpu="0") is None  # the GPU does not give it
    assert value(v, "gpu_saturation_ratio", gpu="0", source="sm_active") == 0.425
    # an Ada GPU: no GPM, so none of its metrics (not zeros), and saturation is utilization
    assert value(v, "gpu_gpm_supported", gpu="2") == 0
    assert not [n for n, ls in v if ("gpu", "2") in ls and n in GPM_NAMES]
    assert value(v, "gpu_saturation_ratio", gpu="2", source="utilization") == 0.64
    assert value(v, "gpu_pcie_transmit_bytes_per_second", gpu="0") == 1024 * 2**20
    assert value(v, "gpu_nvlink_transmit_bytes_per_second", gpu="0") == 2048 * 2**20


def test_mig_instances_each_their_own_series(shimmed: Shimmed) -> None:
    v = shimmed.values()
    gpu = {"gpu": "1", "gpu_uuid": "GPU-aaaaaaaa-bbbb-cccc-dddd-eeeeeeeeeeee"}
    first = {**gpu, "mig_gi": "1", "mig_ci": "0", "mig_profile": "3g.40gb"}
    second = {**first, "mig_gi": "2"}
    assert value(v, "gpu_mig_mode", gpu="1") == 1
    assert value(v, "gpu_mig_mode", gpu="0") == 0
    assert value(v, "gpu_mig_info", **first, mig_uuid=MIG1) == 1
    assert value(v, "gpu_mig_memory_used_bytes", **first) == 10 * GIB
    assert value(v, "gpu_mig_memory_total_bytes", **second) == 40 * GIB
    assert value(v, "gpu_mig_sm_active_ratio", **first) == 0.10
    assert value(v, "gpu_mig_sm_active_ratio", **second) == 0.75
    assert value(v, "gpu_sm_active_ratio", gpu="1") is None  # read per instance instead
    assert value(v, "gpu_utilization_ratio", gpu="1") is None  # MIG mode: NotSupported
    pid = str(os.getpid())
    assert value(v, "gpu_process_memory_bytes", gpu="1", pid=pid, mig_gi="2", mig_ci="0",
                 mig_profile="3g.40gb") == 2 * GIB  # fmt: skip


def run_gpustat(env: dict[str, str]) -> dict[str, Any]:
    """`gpustat --json`: another nvidia-ml-py reader, on the same stand-in."""
    out = subprocess.run([sys.executable, "-m", "gpustat", "--json"], env={**os.environ, **env},
                         capture_output=True, text=True, timeout=30, check=True)  # fmt: skip
    return dict(json.loads(out.stdout))


def test_gpustat_reads_the_same_values(shimmed: Shimmed) -> None:
    env = {"LD_LIBRARY_PATH": str(SHIM.parent), "NVML_SHIM_CONFIG": str(shimmed.file)}
    theirs = run_gpustat(env)
    ours = shimmed.values()
    assert theirs["driver_version"] == "580.95.05"
    assert [g["index"] for g in theirs["gpus"]] == [0, 1, 2]
    mib = 2**20
    for gpu in theirs["gpus"]:
        labels = {"gpu": str(gpu["index"]), "uuid": gpu["uuid"], "model": gpu["name"]}
        util = value(ours, "gpu_utilization_ratio", **labels)
        assert gpu["utilization.gpu"] == (None if util is None else round(util * 100))
        assert gpu["memory.used"] == value(ours, "gpu_memory_used_bytes", **labels) // mib
        assert gpu["memory.total"] == value(ours, "gpu_memory_total_bytes", **labels) // mib
        assert gpu["temperature.gpu"] == value(ours, "gpu_temperature_celsius", **labels)
        assert gpu["power.draw"] == int(value(ours, "gpu_power_watts", **labels) or -1)
        assert gpu["enforced.power.limit"] == value(ours, "gpu_power_limit_watts", **labels)
        fan = value(ours, "gpu_fan_speed_ratio", **labels)
        assert gpu["fan.speed"] == (None if fan is None else round(fan * 100))
        for proc in gpu["processes"]:
            mine = value(ours, "gpu_process_memory_bytes", gpu=labels["gpu"], pid=str(proc["pid"]))
            assert proc["gpu_memory_usage"] == (mine or -1) // mib
        assert len(gpu["processes"]) == (0 if gpu["index"] == 2 else 1)
    assert theirs["gpus"][2]["fan.speed"] == 35


@pytest.fixture
def run(tmp_path: Path) -> Iterator[Shimmed]:
    """An agent on the stand-in for one test, stopped after it."""
    running = Shimmed(tmp_path)
    yield running
    running.agent.stop()


def test_changes_while_running(run: Shimmed) -> None:
    run.until("gpu_power_watts", 412.345, gpu="0")
    run.spec["gpus"][0]["fail"]["nvmlDeviceGetPowerUsage"] = 3  # NotSupported from now on
    run.spec["xid_events"] = [{"gpu": 0, "xid": 79}, {"gpu": 0, "xid": 79}, {"gpu": 1, "xid": 48}]
    run.write()
    v = run.until("gpu_power_watts", None, gpu="0")
    v = run.until("gpu_xid_errors_total", 2, gpu="0", xid="79")
    assert value(v, "gpu_xid_errors_total", gpu="1", xid="48") == 1
    assert value(v, "gpu_xid_events_total", gpu="0") == 2
    layout = run.spec["gpus"][1]["mig"]
    run.spec["gpus"][1]["mig"] = []  # MIG mode off: the GPU reads whole again
    run.write()
    v = run.until("gpu_mig_mode", 0, gpu="1")
    v = run.until("gpu_utilization_ratio", 0.50, gpu="1")
    assert not [n for n, _ in v if n.startswith("gpu_mig_") and n != "gpu_mig_mode"]
    run.spec["gpus"][1]["mig"] = layout[:1]  # on again, with one instance
    run.write()
    v = run.until("gpu_mig_memory_used_bytes", 10 * GIB, gpu="1", mig_gi="1")
    assert value(v, "gpu_mig_memory_used_bytes", gpu="1", mig_gi="2") is None
    assert value(v, "gpu_utilization_ratio", gpu="1") is None
    run.spec["gpus"][0]["hang"] = {"nvmlDeviceGetTemperature": 4}
    run.write()
    v = run.until("gpu_up", 0, gpu="0")  # the hung GPU alone goes down
    assert value(v, "gpu_up", gpu="1") == 1
    assert (value(v, "dsagent_nvml_timeouts_total") or 0) >= 1
    del run.spec["gpus"][0]["hang"]
    run.spec["gpus"][1]["lost"] = True
    run.write()
    v = run.until("gpu_up", 0, gpu="1")
    run.until("gpu_up", 1, gpu="0")  # answers again once its hung call returns


def test_no_driver_then_nvml_down_and_the_agent_runs(tmp_path: Path) -> None:
    need(SHIM.exists(), f"{SHIM} is not built")
    spec = tmp_path / "gpus.json"
    spec.write_text(json.dumps({"init_error": 9, "gpus": []}))  # NVML_ERROR_DRIVER_NOT_LOADED
    env = {"LD_LIBRARY_PATH": str(SHIM.parent), "NVML_SHIM_CONFIG": str(spec)}
    agent = AgentProcess(tmp_path, "[gpu]\nenabled = true\n", env)
    try:
        agent.wait_healthy()
        wait_for(lambda: "dsagent_nvml_up 0.0" in agent.metrics(), 10, "nvml down")
        assert "Driver Not Loaded" in agent.log()
        assert requests.get(agent.url + "/healthz", timeout=5).status_code == 200
    finally:
        agent.stop()


@pytest.mark.parametrize("backend", ["stand-in", "fake"])
def test_simulate_runs_on_the_stand_in_where_built(tmp_path: Path, backend: str) -> None:
    need(SHIM.exists(), f"{SHIM} is not built")
    env = {} if backend == "stand-in" else {"NVML_SHIM_LIBRARY": str(tmp_path / "none.so")}
    agent = AgentProcess(tmp_path, "[gpu]\nsimulate = 2\n", env)
    try:
        agent.wait_healthy()
        wait_for(lambda: "gpu_saturation_ratio{" in agent.metrics(), 10, "a GPU reading")
        v = parse(agent.metrics())
        # one scenario, either backend: the same GPUs, memory and process
        assert value(v, "gpu_memory_used_bytes", gpu="1") == 60 * GIB + GIB // 2
        assert value(v, "gpu_memory_total_bytes", gpu="0") == 80 * GIB
        assert value(v, "gpu_info", gpu="1", model="NVIDIA H100 80GB HBM3") == 1
        on_shim = backend == "stand-in"
        assert value(v, "gpu_gpm_supported", gpu="0") == float(on_shim)
        assert (value(v, "gpu_sm_active_ratio", gpu="0") is not None) == on_shim
        assert (agent.state / "simulated-gpus.json").exists() == on_shim
    finally:
        agent.stop()
