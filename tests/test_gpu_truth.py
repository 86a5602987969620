"""The truth-check comparison, fed with an nvidia-smi line and metrics from the fake NVML."""

from __future__ import annotations

from bench.gpu_truth import FIELDS, compare, parse_smi, query_names
from bench.gpu_truth_dcgm import DCGM_FIELDS, parse_dmon


def smi_line(index: int, values: dict[str, str]) -> str:
    return ",".join([str(index)] + [values.get(f, "[N/A]") for f in FIELDS]) + "\n"


METRICS = """# HELP gpu_utilization_ratio x
gpu_utilization_ratio{gpu="0",model="NVIDIA H100",pci_bus_id="00000000:18:00.0",uuid="GPU-1"} 0.5
gpu_memory_used_bytes{gpu="0",model="NVIDIA H100",pci_bus_id="x",uuid="GPU-1"} 1048576.0
gpu_throttle_reason{gpu="0",model="m",pci_bus_id="x",reason="sw_power_cap",uuid="GPU-1"} 1.0
gpu_fan_speed_ratio{gpu="0",model="m",pci_bus_id="x",uuid="GPU-1"} 0.4
"""


def test_compare_reports_differences_and_presence() -> None:
    smi = smi_line(
        0,
        {
            "utilization.gpu": "53",
            "memory.used": "1",
            "clocks_throttle_reasons.sw_power_cap": "Active",
        },
    )
    report = compare([(METRICS, smi), (METRICS, smi)])
    rows = {line.split()[0]: line.split() for line in report[1:]}
    assert rows["utilization.gpu"][1:5] == ["0", "2", "3.000", "3.000"]
    assert rows["memory.used"][3] == "0.000"
    assert rows["clocks_throttle_reasons.sw_power_cap"][3] == "0.000"
    fan = next(line for line in report if line.startswith("fan.speed"))
    assert "smi False, agent True" in fan


def test_parse_smi_handles_not_supported() -> None:
    parsed = parse_smi(smi_line(3, {"temperature.gpu": "41", "fan.speed": "[Not Supported]"}))
    assert parsed["3"]["temperature.gpu"] == 41.0
    assert parsed["3"]["fan.speed"] is None


HELP_535 = """Section about clocks_event_reasons properties
"clocks_event_reasons.sw_power_cap"
"clocks_event_reasons.sw_thermal_slowdown"
"utilization.gpu"
"temperature.gpu"
"""


def test_only_fields_this_nvidia_smi_knows_are_queried_by_their_current_name() -> None:
    names = query_names(HELP_535)
    assert names == {
        "utilization.gpu": "utilization.gpu",
        "temperature.gpu": "temperature.gpu",
        "clocks_event_reasons.sw_power_cap": "clocks_throttle_reasons.sw_power_cap",
        "clocks_event_reasons.sw_thermal_slowdown": "clocks_throttle_reasons.sw_thermal_slowdown",
    }
    assert "fan.speed" not in query_names(HELP_535)  # an unknown name would fail the query


def test_compare_reads_the_columns_of_the_fields_queried() -> None:
    fields = ["utilization.gpu", "clocks_throttle_reasons.sw_power_cap"]
    report = compare([(METRICS, "0, 50, Active\n")], fields)
    rows = {line.split()[0]: line.split() for line in report[1:]}
    assert set(rows) == set(fields)
    assert rows["utilization.gpu"][3] == "0.000"
    assert rows["clocks_throttle_reasons.sw_power_cap"][3] == "0.000"


DMON = """#Entity GRACT SMACT SMOCC TENSO DRAMA FP64A FP32A FP16A PCITX PCIRX NVLTX NVLRX
ID
GPU 0     0.500  0.420  0.300  0.125  0.550  N/A    0.010  0.200  1073741824  0  0  0
"""
GPM = """gpu_sm_active_ratio{gpu="0",uuid="GPU-1"} 0.425
gpu_sm_occupancy_ratio{gpu="0",uuid="GPU-1"} 0.3
gpu_fp64_active_ratio{gpu="0",uuid="GPU-1"} 0.0
gpu_pcie_transmit_bytes_per_second{gpu="0",uuid="GPU-1"} 1073741824.0
"""


def test_gpm_fields_compare_with_dcgmi_dmon() -> None:
    fields = list(DCGM_FIELDS)
    assert parse_dmon(DMON, fields)["0"]["1006"] is None  # N/A
    report = compare([(GPM, DMON)], fields, dcgm=True)
    rows = {line.split()[0]: line.split() for line in report[1:]}
    assert rows["1002"][3] == "0.005"  # SM activity: ours 0.425, DCGM 0.420
    assert rows["1003"][3] == "0.000" and rows["1009"][3] == "0.000"
    assert "smi True, agent False" in " ".join(rows["1004"])  # we lack tensor activity here
    assert "smi False, agent True" in " ".join(rows["1006"])
