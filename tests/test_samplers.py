"""Samplers against fixture /proc and /sys trees: two snapshots one interval apart."""

from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from agent.samplers.disk import DiskSampler, parse_diskstats
from agent.samplers.host import HostSampler, parse_loadavg, parse_meminfo, parse_stat_cpu
from agent.samplers.network import NetworkSampler, parse_net_dev, parse_snmp
from agent.store import Sample
from tests.conftest import FIXTURES

PROC = FIXTURES / "proc"
SYS = FIXTURES / "sys"


def as_dict(samples: list[Sample]) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    return {(s.name, s.labels): s.value for s in samples}


def two_runs(
    sampler: HostSampler | DiskSampler | NetworkSampler, dt: float = 2.0, second: Path = PROC / "t1"
) -> tuple[list[Sample], dict]:
    sampler.proc = PROC / "t0"
    first = list(sampler.sample(100.0))
    sampler.proc = second
    return first, as_dict(list(sampler.sample(100.0 + dt)))


def test_host_cpu_and_memory() -> None:
    first, got = two_runs(HostSampler(PROC / "t0"))
    assert not any(s.name.startswith("host_cpu") for s in first), "no rate before a second run"
    # deltas: user 100 system 50 idle 300 iowait 40 -> total 490
    assert got[("host_cpu_utilization_ratio", ())] == pytest.approx(150 / 490)
    assert got[("host_cpu_iowait_ratio", ())] == pytest.approx(40 / 490)
    assert got[("host_memory_used_bytes", ())] == (16_000_000 - 4_000_000) * 1024
    assert got[("host_memory_used_ratio", ())] == pytest.approx(0.75)
    assert got[("host_swap_used_ratio", ())] == pytest.approx(0.25)
    assert got[("host_load5", ())] == 0.61


def test_disk_rates_wait_and_utilization() -> None:
    disk = DiskSampler(PROC / "t0", SYS, r"^(ram|loop)\d+$")
    _, got = two_runs(disk)
    sda = (("device", "sda"),)
    assert got[("disk_reads_per_second", sda)] == 50.0
    assert got[("disk_read_bytes_per_second", sda)] == 8000 * 512 / 2
    assert got[("disk_written_bytes_per_second", sda)] == 8000 * 512 / 2
    # 600 ms reading + 1400 ms writing over 200 I/Os = 10 ms each
    assert got[("disk_io_wait_seconds", sda)] == pytest.approx(0.010)
    assert got[("disk_utilization_ratio", sda)] == pytest.approx(0.25)
    devices = {dict(labels)["device"] for _, labels in got}
    assert devices == {"sda", "nvme0n1"}, "partitions and excluded loop devices are left out"
    # an idle device waited on nothing: its wait is 0, not missing
    assert got[("disk_io_wait_seconds", (("device", "nvme0n1"),))] == 0.0


def test_a_disk_that_comes_later_is_sampled_and_one_that_goes_is_dropped(tmp_path: Path) -> None:
    proc, sys_root = tmp_path / "proc", tmp_path / "sys"
    proc.mkdir()
    (sys_root / "block" / "sda").mkdir(parents=True)
    line = "   8       0 {dev} {n} 0 80 5 0 0 0 0 0 5 5 0 0 0 0\n"
    disk = DiskSampler(proc, sys_root, "^$")

    def run(t: float, **reads: int) -> set[str]:
        (proc / "diskstats").write_text("".join(line.format(dev=d, n=n) for d, n in reads.items()))
        return {dict(s.labels)["device"] for s in disk.sample(t)}

    run(0.0, sda=1)
    assert run(1.0, sda=2) == {"sda"}
    (sys_root / "block" / "sdb").mkdir()  # hot-plugged: in /sys/block and in diskstats
    run(2.0, sda=3, sdb=1, sdb1=1)
    assert run(3.0, sda=4, sdb=2, sdb1=2) == {"sda", "sdb"}, "the new disk, not its partition"
    (sys_root / "block" / "sdb").rmdir()
    assert run(4.0, sda=5) == {"sda"}


def test_network_rates_drops_and_retransmits() -> None:
    net = NetworkSampler(PROC / "t0", r"^lo$")
    _, got = two_runs(net)
    rx = (("direction", "rx"), ("interface", "eth0"))
    tx = (("direction", "tx"), ("interface", "eth0"))
    assert got[("net_interface_bytes_per_second", rx)] == 1_000_000
    assert got[("net_interface_packets_per_second", tx)] == 500
    assert got[("net_interface_errors_per_second", rx)] == 1
    assert got[("net_interface_drops_per_second", tx)] == 2
    # 8 drops over 1000 rx + 1000 tx packets + 8 dropped
    assert got[("net_interface_drop_ratio", (("interface", "eth0"),))] == pytest.approx(8 / 2008)
    assert got[("net_tcp_retransmit_ratio", ())] == pytest.approx(20 / 2000)
    names = {dict(labels).get("interface") for _, labels in got}
    assert "lo" not in names
    assert "ib0" not in names, "an interface that vanished between samples has no rate"


def test_counter_going_backwards_gives_no_rate() -> None:
    disk = DiskSampler(PROC / "t1", SYS, "^$")
    list(disk.sample(1.0))
    disk.proc = PROC / "t0"  # sda's counters went down (device replaced); nvme0n1's did not
    devices = {dict(s.labels)["device"] for s in disk.sample(2.0)}
    assert devices == {"nvme0n1"}


@pytest.mark.parametrize(
    "sampler",
    [
        HostSampler(PROC / "garbage"),
        DiskSampler(PROC / "garbage", SYS, "^$"),
        NetworkSampler(PROC / "garbage", "^$"),
    ],
)
def test_garbage_files_give_missing_values_not_crashes(sampler: object) -> None:
    for now in (1.0, 2.0):
        samples = list(sampler.sample(now))  # type: ignore[attr-defined]
        assert all(s.value == s.value for s in samples)  # no NaN
        assert not any(s.name.endswith("_per_second") for s in samples)
        assert not any(s.name.startswith(("host_cpu", "host_memory", "host_load")) for s in samples)


def test_missing_proc_file_raises_oserror_for_the_runner_to_count(tmp_path: Path) -> None:
    with pytest.raises(OSError):
        list(HostSampler(tmp_path).sample(1.0))


def test_parsers_on_literal_text() -> None:
    assert parse_stat_cpu("cpu  1 2 3 4 5 6 7 8 9 10\n") == (1, 2, 3, 4, 5, 6, 7, 8)
    assert parse_stat_cpu("cpu0 1 2 3 4 5\n") is None
    assert parse_meminfo("MemTotal: 2 kB\nHugePages_Total: 3\n") == {
        "MemTotal": 2048,
        "HugePages_Total": 3,
    }
    assert parse_loadavg("1.0 2.0 3.0 1/2 3") == (1.0, 2.0, 3.0)
    assert parse_diskstats(" 8 0 sda 1 0 2 3 4 0 5 6 0 7 8\n")["sda"] == (1, 2, 3, 4, 5, 6, 7)
    assert parse_net_dev("eth0: 1 2 3 4 0 0 0 0 5 6 7 8 0 0 0 0\n") == {
        "eth0": (1, 2, 3, 4, 5, 6, 7, 8)
    }
    assert parse_snmp("Tcp: OutSegs RetransSegs\nTcp: 10 2\n") == {
        "Tcp": {"OutSegs": 10, "RetransSegs": 2}
    }


@given(st.lists(st.sampled_from(["MemTotal", "MemFree", "Cached", "HugePages_Total", "Tcp",
                                 "Udp", "Ip", ":", " ", "1", "kB", "x", "\n", "OutSegs"]),
                max_size=40).map("".join))  # fmt: skip
def test_the_filtered_parsers_keep_exactly_what_the_full_ones_give(text: str) -> None:
    keys = frozenset({"MemTotal", "Cached", "SwapFree"})
    full = parse_meminfo(text)
    assert parse_meminfo(text, keys) == {k: v for k, v in full.items() if k in keys}
    assert parse_snmp(text, "Tcp") == {k: v for k, v in parse_snmp(text).items() if k == "Tcp"}


@given(st.text(max_size=300))
def test_parsers_never_crash_on_arbitrary_text(text: str) -> None:
    parse_stat_cpu(text)
    parse_meminfo(text)
    parse_loadavg(text)
    parse_diskstats(text)
    parse_net_dev(text)
    parse_snmp(text)
