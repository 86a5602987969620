"""Hardware samplers over kernel-shaped fixture trees: EDAC, IB, md, NVMe, tuning, GPU mix."""

from __future__ import annotations

import logging
import struct
from pathlib import Path

import pynvml
import pytest
from hypothesis import given
from hypothesis import strategies as st

from agent.config import ConfigError, load_config
from agent.nvml import NvmlSession, architecture_names
from agent.samplers import build_samplers, intervals
from agent.samplers.edac import EdacSampler
from agent.samplers.gpu import mix_samples
from agent.samplers.infiniband import InfinibandSampler, parse_rate, parse_state
from agent.samplers.md import MdSampler, parse_mdstat, parse_sync_completed
from agent.samplers.nvme import (
    ADMIN_CMD,
    NVME_IOCTL_ADMIN_CMD,
    NvmeSampler,
    parse_smart_log,
    read_smart_log,
)
from agent.samplers.sysctl import SysctlSampler
from agent.sim.fake_nvml import FakeGpu, FakeNvml
from agent.store import Sample
from tests.conftest import FIXTURES

HEALTHY, FAULTY = FIXTURES / "hardware" / "healthy", FIXTURES / "hardware" / "faulty"
Values = dict[tuple[str, tuple[tuple[str, str], ...]], float]


def values(samples: object) -> Values:
    """Map (name, labels) to value; a name and label set twice would be a bug."""
    out: Values = {}
    for s in samples:  # type: ignore[attr-defined]
        assert isinstance(s, Sample)
        assert (s.name, s.labels) not in out, f"{s.name}{s.labels} twice"
        out[s.name, s.labels] = s.value
    return out


def get(vals: Values, name: str, /, **labels: str) -> float | None:
    return vals.get((name, tuple(sorted(labels.items()))))


# EDAC


def test_edac_controllers_csrows_and_dimms() -> None:
    vals = values(EdacSampler(FAULTY / "sys", 10).sample(0))
    assert get(vals, "node_edac_correctable_errors_total", controller="0") == 5
    assert get(vals, "node_edac_uncorrectable_errors_total", controller="0") == 0
    assert get(vals, "node_edac_csrow_correctable_errors_total", controller="0", csrow="0") == 3
    assert get(vals, "node_edac_csrow_correctable_errors_total", controller="0", csrow="1") == 1
    noinfo = get(vals, "node_edac_csrow_correctable_errors_total", controller="0", csrow="unknown")
    assert noinfo == 1, "ce_noinfo_count is the csrow 'unknown', as node_exporter"
    # mc1 is a DIMM-style driver: no csrows, counts per DIMM
    assert not [k for k in vals if k[0].startswith("node_edac_csrow") and
                ("csrow", "0") in k[1] and ("controller", "1") in k[1]]  # fmt: skip
    assert get(vals, "node_edac_uncorrectable_errors_total", controller="1") == 1
    assert get(vals, "node_edac_dimm_uncorrectable_errors_total", controller="1", dimm="0",
               dimm_label="CPU_SrcID#0_MC#1_Chan#0_DIMM#0") == 1  # fmt: skip
    assert get(vals, "node_edac_dimm_correctable_errors_total", controller="1", dimm="1",
               dimm_label="CPU_SrcID#0_MC#1_Chan#1_DIMM#0") == 0  # fmt: skip


def test_edac_absent_or_damaged_yields_what_it_can(tmp_path: Path) -> None:
    assert list(EdacSampler(tmp_path, 10).sample(0)) == [], "no EDAC driver: no series"
    mc = tmp_path / "devices/system/edac/mc/mc10"
    mc.mkdir(parents=True)
    (mc / "ce_count").write_text("garbage\n")
    (mc / "ue_count").write_text("7\n")
    (tmp_path / "devices/system/edac/mc/mc2").mkdir()
    (tmp_path / "devices/system/edac/mc/mc2/ue_count").write_text("1\n")
    vals = values(EdacSampler(tmp_path, 10).sample(0))
    ue = "node_edac_uncorrectable_errors_total"
    assert vals == {(ue, (("controller", "2"),)): 1, (ue, (("controller", "10"),)): 7}
    assert [k[1] for k in vals] == [(("controller", "2"),), (("controller", "10"),)], "mc2 < mc10"


# InfiniBand


@pytest.mark.parametrize(
    ("text", "want"),
    [
        ("100 Gb/sec (4X EDR)", 12.5e9),
        ("2.5 Gb/sec (1X SDR)", 312.5e6),
        ("400 Gb/sec (4X NDR)", 50e9),
        ("", None),
        ("fast", None),
        (None, None),
    ],
)
def test_parse_rate(text: str | None, want: float | None) -> None:
    assert parse_rate(text) == want


def test_parse_state() -> None:
    assert parse_state("4: ACTIVE") == 4 and parse_state("2: Polling") == 2
    assert parse_state("ACTIVE") is None and parse_state(None) is None


def test_infiniband_ports_counters_and_drivers_that_lack_files() -> None:
    vals = values(InfinibandSampler(FAULTY / "sys", 10).sample(0))
    port = {"device": "mlx5_0", "port": "1"}
    assert get(vals, "node_infiniband_state_id", **port) == 4
    assert get(vals, "node_infiniband_rate_bytes_per_second", **port) == 6.25e9
    assert get(vals, "node_infiniband_symbol_error_total", **port) == 1234
    assert get(vals, "node_infiniband_link_downed_total", **port) == 3
    assert get(vals, "node_infiniband_port_data_received_bytes_total", **port) == 2221223609 * 4
    assert get(vals, "node_infiniband_duplicate_requests_packets_total", **port) == 41
    assert get(vals, "node_infiniband_hw_counters_total", counter="req_rnr_retries_exceeded",
               **port) == 0, "an hw_counter node_exporter does not name"  # fmt: skip
    assert not [k for k in vals if "lifespan" in str(k)], "lifespan is no counter"
    polling = {"device": "mlx5_1", "port": "1"}
    assert get(vals, "node_infiniband_state_id", **polling) == 1
    assert get(vals, "node_infiniband_physical_state_id", **polling) == 2
    assert get(vals, "node_infiniband_rate_below_expected", **polling) is None, "down: no verdict"
    irdma = {"device": "irdma0", "port": "1"}
    assert get(vals, "node_infiniband_info", device="irdma0", board_id="", hca_type="",
               firmware_version="1.57") == 1  # fmt: skip
    assert get(vals, "node_infiniband_symbol_error_total", **irdma) is None, "N/A (no PMA)"
    assert get(vals, "node_infiniband_state_id", **irdma) == 4, "the rest of the port stays"
    assert get(vals, "node_infiniband_hw_counters_total", counter="tcpRetransSegs", **irdma) == 3


def test_a_port_that_trains_down_is_below_its_best_rate(tmp_path: Path) -> None:
    ib = InfinibandSampler(HEALTHY / "sys", 10)
    port = {"device": "mlx5_0", "port": "1"}
    assert get(values(ib.sample(0)), "node_infiniband_rate_below_expected", **port) == 0
    ib.root = FAULTY / "sys/class/infiniband"  # the same port, retrained at 50 Gb/s
    vals = values(ib.sample(10))
    assert get(vals, "node_infiniband_rate_below_expected", **port) == 1
    assert get(vals, "node_infiniband_rate_expected_bytes_per_second", **port) == 12.5e9
    fresh = values(InfinibandSampler(FAULTY / "sys", 10, expected_gbps=100).sample(0))
    assert get(fresh, "node_infiniband_rate_below_expected", **port) == 1, "configured rate"
    assert get(fresh, "node_infiniband_rate_below_expected", device="irdma0", port="1") == 0


def test_infiniband_exclude_by_device_or_port() -> None:
    vals = values(InfinibandSampler(FAULTY / "sys", 10, exclude="mlx5_1|irdma0/1").sample(0))
    devices = {dict(k[1]).get("device") for k in vals}
    assert "mlx5_1" not in devices
    assert get(vals, "node_infiniband_info", device="irdma0", board_id="", hca_type="",
               firmware_version="1.57") == 1, "device kept, its port 1 left out"  # fmt: skip
    assert get(vals, "node_infiniband_state_id", device="irdma0", port="1") is None


# md RAID

MDSTAT = """Personalities : [raid1] [raid6] [raid5] [raid4] [raid0]
md127 : active raid5 sdd1[3] sdc1[1](F) sdb1[0] sde1[4](S)
      1953260544 blocks super 1.2 level 5, 512k chunk, algorithm 2 [3/2] [U_U]
      [==>.........]  recovery = 12.5% (122070016/976630272) finish=75.2min speed=189235K/sec
      bitmap: 2/8 pages [8KB], 65536KB chunk

md9 : active raid1 sdb2[1] sda2[0]
      523968 blocks super 1.2 [2/2] [UU]
      resync=DELAYED

md5 : inactive sdf1[0](S)
      976630488 blocks super 1.2

md4 : active raid1 sdh1[1]
      this line is not a status line

md3 : active raid1 sdg1[1] sdf1[0]
      104320 blocks [2/2] [UU]
      bitmap: 0/1 pages [0KB], 65536KB chunk
      [>....................]  check =  0.1% (128/104320) finish=0.1min speed=128K/sec

unused devices: <none>
"""


def test_parse_mdstat_every_shape() -> None:
    arrays = {md.name: md for md in parse_mdstat(MDSTAT)}
    assert set(arrays) == {"md127", "md9", "md5", "md3"}, "a malformed md4 is left out alone"
    r5 = arrays["md127"]
    assert (r5.activity, r5.disks_active, r5.disks_total, r5.disks_failed, r5.disks_spare) == (
        "recovering",
        2,
        3,
        1,
        1,
    )
    assert (r5.blocks, r5.blocks_synced) == (1953260544, 122070016)
    assert (arrays["md9"].activity, arrays["md9"].blocks_synced) == ("resyncing", 0), "DELAYED"
    assert (arrays["md5"].activity, arrays["md5"].disks_total) == ("inactive", 0)
    # the bitmap line sits where the sync line would: the line after it is read
    assert (arrays["md3"].activity, arrays["md3"].blocks_synced) == ("checking", 128)


@given(st.text())
def test_parse_mdstat_never_raises(text: str) -> None:
    for md in parse_mdstat(text):
        assert md.disks_total >= 0 and md.blocks >= 0


def test_parse_sync_completed() -> None:
    assert parse_sync_completed("1569888 / 2093056") == pytest.approx(0.75, abs=0.01)
    assert parse_sync_completed("none") is None and parse_sync_completed(None) is None
    assert parse_sync_completed("5 / 0") is None and parse_sync_completed("a / b") is None


def test_md_degraded_raid0_resyncing_raid1_failed_member() -> None:
    vals = values(MdSampler(FAULTY / "proc", FAULTY / "sys", 10).sample(0))
    assert get(vals, "node_md_info", device="md0", level="raid0", array_state="broken") == 1
    assert get(vals, "node_md_degraded", device="md0") is None, "a RAID 0 has no degraded file"
    assert get(vals, "node_md_state", device="md1", state="resync") == 1
    assert get(vals, "node_md_state", device="md1", state="active") == 0
    assert get(vals, "node_md_blocks_synced", device="md1") == 123456789
    assert get(vals, "node_md_sync_completed_ratio", device="md1") == pytest.approx(0.1264, 1e-3)
    assert get(vals, "node_md_degraded", device="md2") == 1
    assert get(vals, "node_md_disks", device="md2", state="failed") == 1
    assert get(vals, "node_md_disks", device="md2", state="active") == 1
    assert get(vals, "node_md_disks_required", device="md2") == 2
    assert get(vals, "node_md_sync_completed_ratio", device="md2") is None, "idle"
    healthy = values(MdSampler(HEALTHY / "proc", HEALTHY / "sys", 10).sample(0))
    assert get(healthy, "node_md_info", device="md0", level="raid0", array_state="clean") == 1


def test_md_absent(tmp_path: Path) -> None:
    assert list(MdSampler(tmp_path, tmp_path, 10).sample(0)) == []


# NVMe


def smart_page(*, warning: int = 0, kelvin: int = 311, spare: int = 100, threshold: int = 10,
               used: int = 3, media_errors: int = 0, unsafe: int = 12) -> bytes:  # fmt: skip
    """Build a 512-byte SMART / health log page as a controller returns it."""
    page = bytearray(512)
    page[0], page[1:3] = warning, kelvin.to_bytes(2, "little")
    page[3], page[4], page[5] = spare, threshold, used
    page[32:48] = (1000).to_bytes(16, "little")  # data units read
    page[48:64] = (2000).to_bytes(16, "little")
    page[128:144] = (24).to_bytes(16, "little")  # power-on hours
    page[144:160] = unsafe.to_bytes(16, "little")
    page[160:176] = media_errors.to_bytes(16, "little")
    return bytes(page)


def test_parse_smart_log_fields_and_warning_bits() -> None:
    health = parse_smart_log(smart_page(warning=0b1001, kelvin=320, spare=8, used=93,
                                        media_errors=2))  # fmt: skip
    assert health.values["node_nvme_temperature_celsius"] == 47
    assert health.values["node_nvme_available_spare_ratio"] == 0.08
    assert health.values["node_nvme_available_spare_threshold_ratio"] == 0.10
    assert health.values["node_nvme_percentage_used_ratio"] == 0.93
    assert health.values["node_nvme_media_errors_total"] == 2
    assert health.values["node_nvme_unsafe_shutdowns_total"] == 12
    assert health.values["node_nvme_data_read_bytes_total"] == 1000 * 512_000
    assert health.values["node_nvme_power_on_seconds_total"] == 24 * 3600
    set_bits = {name for name, bit in health.warnings.items() if bit}
    assert set_bits == {"spare_low", "read_only"} and len(health.warnings) == 6
    assert parse_smart_log(b"\x01" * 100) == ({}, {}), "a short page is no page"


def test_the_admin_command_is_linux_nvme_ioctl_abi() -> None:
    assert ADMIN_CMD.size == 72, "sizeof(struct nvme_passthru_cmd)"
    iowr = (3 << 30) | (ADMIN_CMD.size << 16) | (ord("N") << 8) | 0x41
    assert iowr == NVME_IOCTL_ADMIN_CMD
    fields = ADMIN_CMD.unpack(ADMIN_CMD.pack(2, 0, 0, 0xFFFFFFFF, 0, 0, 0, 0x1000, 0, 512,
                                             (127 << 16) | 2, 0, 0, 0, 0, 0, 0, 0))  # fmt: skip
    assert struct.calcsize("<BBHIIIQQII") == 40 and fields[10] == 0x7F0002


def test_nvme_with_health_log_and_without(caplog: pytest.LogCaptureFixture) -> None:
    pages = {"nvme0": smart_page(), "nvme1": smart_page(warning=0b1000, used=93, media_errors=2)}
    sampler = NvmeSampler(FAULTY / "sys", FAULTY / "dev", 10, lambda dev: pages[dev.name])
    vals = values(sampler.sample(0))
    assert get(vals, "node_nvme_info", device="nvme1", firmware_revision="JCV10100",
               model="INTEL SSDPF2KX076TZ", serial="PHAX1234005T7P6CGN", state="live",
               cntlid="7") == 1  # fmt: skip
    assert get(vals, "node_nvme_health_log_available", device="nvme1") == 1
    assert get(vals, "node_nvme_critical_warning", device="nvme1", warning="read_only") == 1
    assert get(vals, "node_nvme_critical_warning", device="nvme0", warning="read_only") == 0
    assert get(vals, "node_nvme_percentage_used_ratio", device="nvme1") == 0.93
    assert get(vals, "node_nvme_temperature_celsius", device="nvme0") == 38, "the log's, not hwmon"
    # the real ioctl on what is no NVMe device: refused, said once, sysfs still read
    real = NvmeSampler(FAULTY / "sys", FAULTY / "sys", 10, read_smart_log)
    with caplog.at_level(logging.INFO, logger="agent.samplers.nvme"):
        vals = values(real.sample(0))
        values(real.sample(1))
    assert get(vals, "node_nvme_health_log_available", device="nvme0") == 0
    assert get(vals, "node_nvme_temperature_celsius", device="nvme0") == 38.85, "hwmon"
    assert get(vals, "node_nvme_temperature_celsius", device="nvme1") is None, "no hwmon: absent"
    assert get(vals, "node_nvme_critical_warning", device="nvme0", warning="read_only") is None
    refusals = [r for r in caplog.records if "health log not readable" in r.message]
    assert len(refusals) == 2, "once per controller, not once per round"
    off = values(NvmeSampler(FAULTY / "sys", FAULTY / "dev", 10, None).sample(0))
    assert get(off, "node_nvme_health_log_available", device="nvme0") == 0


# tuning


def test_tuning_drift_and_values(caplog: pytest.LogCaptureFixture) -> None:
    expected = {"vm.swappiness": 0, "net.core.somaxconn": 65535,
                "net.ipv4.tcp_rmem": "4096 131072  6291456", "kernel.nope": 1}  # fmt: skip
    sampler = SysctlSampler(FAULTY / "proc", expected, 10)
    with caplog.at_level(logging.WARNING):
        vals = values(sampler.sample(0))
        values(sampler.sample(1))
    assert get(vals, "node_sysctl_value", name="vm.swappiness") == 60
    assert get(vals, "node_tuning_drift", name="vm.swappiness", expected="0") == 1
    assert get(vals, "node_tuning_drift", name="net.core.somaxconn", expected="65535") == 0
    assert get(vals, "node_tuning_drift", name="net.ipv4.tcp_rmem",
               expected="4096 131072 6291456") == 0, "tabs and spaces compare alike"  # fmt: skip
    assert get(vals, "node_sysctl_value", name="net.ipv4.tcp_rmem") is None, "not one number"
    assert get(vals, "node_tuning_drift", name="kernel.nope", expected="1") == 1
    assert len([r for r in caplog.records if "kernel.nope" in r.message]) == 1
    healthy = values(SysctlSampler(HEALTHY / "proc", expected, 10).sample(0))
    assert get(healthy, "node_tuning_drift", name="vm.swappiness", expected="0") == 0


# configuration and wiring


def test_hardware_config_defaults_and_errors(tmp_path: Path) -> None:
    cfg = load_config(None)
    assert cfg.hardware.sysctl == {"vm.swappiness": 0, "net.core.somaxconn": 65535,
                                   "net.ipv4.tcp_max_syn_backlog": 65535}  # fmt: skip
    bad = tmp_path / "bad.toml"
    bad.write_text('[hardware]\ninterval = "0s"\n\n[hardware.sysctl]\n"vm swappiness" = 0\n')
    with pytest.raises(ConfigError) as err:
        load_config(bad)
    text = str(err.value)
    assert "hardware.interval" in text and "hardware.sysctl" in text
    assert "bad.toml:2" in text, text


def test_hardware_samplers_run_on_their_own_interval(tmp_path: Path) -> None:
    conf = tmp_path / "agent.toml"
    conf.write_text(f'[host]\nsys_root = "{FAULTY / "sys"}"\nproc_root = "{FAULTY / "proc"}"\n'
                    '[hardware]\ninterval = "30s"\nsysctl = {}\n')  # fmt: skip
    samplers = build_samplers(load_config(conf))
    names = [s.name for s in samplers]
    assert {"edac", "infiniband", "md", "nvme"} <= set(names) and "sysctl" not in names
    own = intervals(samplers)  # and gpu_slow's 10 s, where a GPU (or the stand-in) answers
    assert own.pop("gpu_slow", 10.0) == 10.0
    assert own == {"edac": 30.0, "infiniband": 30.0, "md": 30.0, "nvme": 30.0}


# GPU architectures


def test_architecture_names_come_from_the_binding() -> None:
    names = architecture_names()
    assert names[pynvml.NVML_DEVICE_ARCH_HOPPER] == "hopper"
    assert names[pynvml.NVML_DEVICE_ARCH_AMPERE] == "ampere"


def test_mixed_architectures_are_counted() -> None:
    fake = FakeNvml([FakeGpu(0), FakeGpu(1, model="NVIDIA A100-SXM4-80GB"), FakeGpu(2)])
    session = NvmlSession(lambda: fake)
    assert session.open()
    vals = values(mix_samples(session.devices))
    assert get(vals, "node_gpu_architectures") == 2
    assert get(vals, "node_gpu_models") == 2
    info = {dict(k[1])["gpu"]: dict(k[1])["architecture"] for k in vals if k[0] == "gpu_info"}
    assert info == {"0": "hopper", "1": "ampere", "2": "hopper"}
    same = NvmlSession(lambda: FakeNvml([FakeGpu(0), FakeGpu(1)]))
    assert same.open()
    assert get(values(mix_samples(same.devices)), "node_gpu_architectures") == 1


def test_a_driver_without_the_architecture_call(monkeypatch: pytest.MonkeyPatch) -> None:
    fake = FakeNvml([FakeGpu(0), FakeGpu(1)])

    def refuse(handle: FakeGpu) -> int:
        if handle.index == 1:
            raise pynvml.NVMLError(pynvml.NVML_ERROR_FUNCTION_NOT_FOUND)
        return int(pynvml.NVML_DEVICE_ARCH_HOPPER)

    monkeypatch.setattr(fake, "nvmlDeviceGetArchitecture", refuse, raising=False)
    session = NvmlSession(lambda: fake)
    assert session.open(), "a missing call does not stop the session"
    vals = values(mix_samples(session.devices))
    info = {dict(k[1])["gpu"]: dict(k[1])["architecture"] for k in vals if k[0] == "gpu_info"}
    assert info == {"0": "hopper", "1": "unknown"}
    assert get(vals, "node_gpu_architectures") == 1, "unknown is not a second architecture"
