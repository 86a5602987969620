"""GPU sampling against the fake NVML: scenarios, faults, XIDs as events, processes."""

from __future__ import annotations

import logging
import os
import subprocess
import time
from collections.abc import Iterator
from typing import Any

import pytest
from pynvml import NVMLError

from agent.config import Config, WorkerConfig
from agent.nvml import NvmlSession
from agent.samplers import gpu as gpu_mod
from agent.samplers import gpu_read
from agent.samplers.gpu import GpuSampler
from agent.sim.fake_nvml import GIB, FakeGpu, FakeNvml
from agent.sim.simulate import simulated_nvml
from agent.store import Sample
from agent.workers.pids import WorkerMap, unit_of
from tests.conftest import wait_for


def make(
    fake: FakeNvml,
    timeout: float = 0.5,
    workers: list[WorkerConfig] | None = None,
    retry: float = 30.0,
) -> GpuSampler:
    return GpuSampler(
        NvmlSession(lambda: fake, retry_after=retry), timeout, WorkerMap(workers or [])
    )


@pytest.fixture
def closing() -> Iterator[list[GpuSampler]]:
    made: list[GpuSampler] = []
    yield made
    for s in made:
        s.close()


SLOW_NAMES = {"gpu_power_limit_watts", "gpu_pcie_replay_errors_total", "gpu_ecc_errors_total",
              "gpu_memory_temperature_celsius", "gpu_nvlink_errors_total", "gpu_remapped_rows",
              "gpu_row_remap_pending", "gpu_row_remap_failed"}  # fmt: skip


def by_gpu(samples: list[Sample], name: str) -> dict[str, float]:
    return {dict(s.labels)["gpu"]: s.value for s in samples if s.name == name}


def names_of(samples: list[Sample], gpu: str = "0") -> set[str]:
    return {s.name for s in samples if dict(s.labels).get("gpu") == gpu}


def test_normal_load_on_eight_gpus(closing: list[GpuSampler]) -> None:
    fake = FakeNvml.scenario(8)
    sampler = make(fake)
    closing.append(sampler)
    fast = list(sampler.sample(time.time()))
    slow = sampler.slow.sample(time.time())
    assert {s.name for s in slow} == SLOW_NAMES, "error counters and limits: the slow report"
    assert not SLOW_NAMES & {s.name for s in fast}, "not written again every round"
    samples = fast + slow
    assert by_gpu(samples, "gpu_up") == {str(i): 1.0 for i in range(8)}
    util = by_gpu(samples, "gpu_utilization_ratio")
    assert all(0.0 <= u <= 1.0 for u in util.values()) and len(util) == 8
    first = next(s for s in samples if s.name == "gpu_memory_used_ratio")
    labels = dict(first.labels)
    assert labels["uuid"].startswith("GPU-") and labels["model"] == "NVIDIA H100 80GB HBM3"
    assert labels["pci_bus_id"] == "00000000:18:00.0"
    used = by_gpu(samples, "gpu_memory_used_bytes")["0"]
    total = by_gpu(samples, "gpu_memory_total_bytes")["0"]
    assert by_gpu(samples, "gpu_memory_used_ratio")["0"] == pytest.approx(used / total)
    assert by_gpu(samples, "gpu_power_limit_watts")["0"] == 700.0
    assert by_gpu(samples, "gpu_sm_clock_hertz")["0"] == 1980e6
    assert {
        "gpu_energy_joules_total",
        "gpu_memory_temperature_celsius",
        "gpu_nvlink_errors_total",
        "gpu_ecc_errors_total",
        "gpu_remapped_rows",
        "gpu_pcie_replay_errors_total",
    } <= names_of(samples)
    assert "gpu_fan_speed_ratio" not in names_of(samples), "H100 boards have no fan: absent, not 0"
    assert "gpu_retired_pages" not in names_of(samples)


def test_slow_fields_are_read_in_the_round_that_reports_them(
    closing: list[GpuSampler], monkeypatch: pytest.MonkeyPatch
) -> None:
    fake = FakeNvml.scenario(1)
    sampler = make(fake)
    closing.append(sampler)
    clock = [1003.0]  # the agent started between two points of the slow sampler's 10 s grid
    monkeypatch.setattr(gpu_read, "wall", lambda: clock[0])

    def uncorrected() -> float:
        sampler.sample(clock[0])
        return next(s.value for s in sampler.slow.sample(clock[0])
                    if s.name == "gpu_ecc_errors_total" and ("type", "uncorrected") in s.labels
                    and ("scope", "volatile") in s.labels)  # fmt: skip

    assert uncorrected() == 0.0
    fake.gpus[0].ecc[(1, 0)] = 3
    clock[0] = 1009.0  # the rounds before the next grid point do not read them again
    assert uncorrected() == 0.0
    clock[0] = 1010.0  # the next report's round reads them first: no report is a period old
    assert uncorrected() == 3.0


def test_unsupported_fields_are_absent_never_zero(closing: list[GpuSampler]) -> None:
    sampler = make(FakeNvml.scenario(1, "unsupported"))
    closing.append(sampler)
    present = names_of([*sampler.sample(time.time()), *sampler.slow.sample(time.time())])
    for absent in (
        "gpu_memory_temperature_celsius",
        "gpu_energy_joules_total",
        "gpu_nvlink_errors_total",
        "gpu_ecc_errors_total",
        "gpu_remapped_rows",
        "gpu_sm_clock_hertz",
        "gpu_fan_speed_ratio",
    ):
        assert absent not in present
    assert {"gpu_up", "gpu_utilization_ratio", "gpu_temperature_celsius"} <= present


class CountingNvml(FakeNvml):
    """The fake, counting the fan-speed calls that reach it."""

    fan_calls = 0

    def nvmlDeviceGetFanSpeed(self, h: FakeGpu) -> int:
        self.fan_calls += 1
        return super().nvmlDeviceGetFanSpeed(h)


def test_a_field_refused_as_not_supported_is_not_asked_again(closing: list[GpuSampler]) -> None:
    fake = CountingNvml([FakeGpu(0), FakeGpu(1, unsupported=set())])
    sampler = make(fake, retry=0.0)
    closing.append(sampler)
    for _ in range(3):
        samples = sampler.sample(time.time())
    assert fake.fan_calls == 1 + 3  # GPU 0 (no fan) once; GPU 1 every round
    assert by_gpu(samples, "gpu_fan_speed_ratio") == {"1": 0.4}
    fake.driver_loaded = False  # a new session (the driver reloaded) asks again
    sampler.sample(time.time())
    fake.driver_loaded = True
    sampler.sample(time.time())
    assert fake.fan_calls == 1 + 3 + 2


def test_throttling_shows_one_series_per_reason(closing: list[GpuSampler]) -> None:
    sampler = make(FakeNvml.scenario(1, "throttle"))
    closing.append(sampler)
    reasons = {
        dict(s.labels)["reason"]: s.value
        for s in sampler.sample(time.time())
        if s.name == "gpu_throttle_reason"
    }
    assert reasons["sw_power_cap"] == 1.0 and reasons["sw_thermal_slowdown"] == 1.0
    assert sum(reasons.values()) == 2.0 and len(reasons) == 9


class OldDriverNvml(FakeNvml):
    """A driver before 535: it lacks nvmlDeviceGetCurrentClocksEventReasons."""

    event_calls = 0

    def nvmlDeviceGetCurrentClocksEventReasons(self, h: FakeGpu) -> int:
        self.event_calls += 1
        return super().nvmlDeviceGetCurrentClocksEventReasons(h)


def test_a_driver_before_535_gives_throttle_reasons_under_their_old_name(
    closing: list[GpuSampler],
) -> None:
    fake = OldDriverNvml([FakeGpu(0, throttle=0x40)])
    fake.old_driver = True
    sampler = make(fake)
    closing.append(sampler)
    for _ in range(3):
        samples = sampler.sample(time.time())
    reasons = {
        dict(s.labels)["reason"]: s.value for s in samples if s.name == "gpu_throttle_reason"
    }
    assert reasons["hw_thermal_slowdown"] == 1.0 and sum(reasons.values()) == 1.0
    assert fake.event_calls == 1  # a function the driver lacks is not looked for again


def xids(sampler: GpuSampler) -> dict[tuple[str, str], float]:
    return {
        (dict(s.labels)["gpu"], dict(s.labels)["xid"]): s.value
        for s in sampler.sample(time.time())
        if s.name == "gpu_xid_errors_total"
    }


def test_the_same_xid_twice_counts_twice(closing: list[GpuSampler]) -> None:
    fake = FakeNvml.scenario(2, "xid_burst")
    sampler = make(fake)
    closing.append(sampler)
    wait_for(lambda: xids(sampler) == {("0", "79"): 2.0, ("0", "48"): 1.0}, 5, "burst")
    totals = {
        dict(s.labels)["gpu"]: s.value
        for s in sampler.sample(time.time())
        if s.name == "gpu_xid_events_total"
    }
    assert totals == {"0": 3.0, "1": 0.0}
    fake.inject_xid(1, 79)
    fake.inject_xid(0, 79)
    wait_for(
        lambda: xids(sampler) == {("0", "79"): 3.0, ("0", "48"): 1.0, ("1", "79"): 1.0},
        5,
        "injected XIDs",
    )


def test_gpu_lost_mid_run_reports_up_0_and_others_go_on(closing: list[GpuSampler]) -> None:
    fake = FakeNvml.scenario(3)
    sampler = make(fake)
    closing.append(sampler)
    assert by_gpu(list(sampler.sample(time.time())), "gpu_up") == {"0": 1.0, "1": 1.0, "2": 1.0}
    assert "gpu_ecc_errors_total" in names_of(sampler.slow.sample(time.time()), "1")
    fake.gpus[1].lost_at = 0.0
    samples = list(sampler.sample(time.time()))
    assert by_gpu(samples, "gpu_up") == {"0": 1.0, "1": 0.0, "2": 1.0}
    assert "gpu_utilization_ratio" not in names_of(samples, "1")
    assert "gpu_utilization_ratio" in names_of(samples, "2")
    slow = sampler.slow.sample(time.time())
    assert "gpu_ecc_errors_total" not in names_of(slow, "1"), "a lost GPU's last read is not news"
    assert "gpu_ecc_errors_total" in names_of(slow, "2")


def test_a_hanging_nvml_call_costs_that_gpu_alone_and_later_runs_read_around_it(
    closing: list[GpuSampler],
) -> None:
    fake = FakeNvml.scenario(3)
    sampler = make(fake, timeout=0.3)
    closing.append(sampler)
    sampler.sample(time.time())
    fake.gpus[1].hang = 2.0
    began = time.monotonic()
    samples = sampler.sample(time.time())
    assert 0.3 <= time.monotonic() - began < 0.6, "the run waits its timeout, not the hang"
    assert by_gpu(samples, "gpu_up") == {"0": 1.0, "1": 0.0, "2": 1.0}, "only GPU 1 misses it"
    assert {dict(s.labels)["gpu"] for s in sampler.slow.sample(time.time())} == {"0", "2"}
    assert "gpu_utilization_ratio" in names_of(samples, "2"), "read by the second pass"
    began = time.monotonic()
    samples = sampler.sample(time.time())
    assert time.monotonic() - began < 0.3, "GPU 1 was not asked again"
    assert by_gpu(samples, "gpu_up") == {"0": 1.0, "1": 0.0, "2": 1.0}
    assert "gpu_utilization_ratio" in names_of(samples, "2")
    # While the stuck call has not returned, no second call piles up behind it.
    samples = sampler.sample(time.time())
    assert by_gpu(samples, "gpu_up")["1"] == 0.0
    assert [s.value for s in samples if s.name == "dsagent_nvml_timeouts_total"] == [1.0]
    fake.gpus[1].hang = 0.0
    wait_for(
        lambda: by_gpu(sampler.sample(time.time()), "gpu_up")["1"] == 1.0,
        5,
        "the GPU back once its stuck call returned",
    )


def test_driver_gone_and_back_reinitialises(closing: list[GpuSampler]) -> None:
    fake = FakeNvml.scenario(1)
    sampler = make(fake, retry=0.0)
    closing.append(sampler)
    list(sampler.sample(time.time()))
    fake.driver_loaded = False
    samples = list(sampler.sample(time.time()))
    assert [s.value for s in samples if s.name == "dsagent_nvml_up"] == [0.0]
    assert "gpu_up" not in {s.name for s in samples}
    assert not sampler.session.up
    fake.driver_loaded = True
    samples = list(sampler.sample(time.time()))
    assert [s.value for s in samples if s.name == "dsagent_nvml_up"] == [1.0]
    fake.inject_xid(0, 13)
    wait_for(lambda: xids(sampler) == {("0", "13"): 1.0}, 5, "XID after re-init")


class SlowEvents(FakeNvml):
    """The fake, with an XID poll that can hang."""

    poll_hang = 0.0

    def nvmlEventSetWait_v2(self, event_set: Any, timeout_ms: int) -> Any:
        time.sleep(self.poll_hang)
        return super().nvmlEventSetWait_v2(event_set, timeout_ms)


def test_a_hanging_xid_poll_keeps_its_thread_and_does_not_pile_up(
    closing: list[GpuSampler],
) -> None:
    fake = SlowEvents([FakeGpu(0), FakeGpu(1)])
    sampler = make(fake, timeout=0.3)
    closing.append(sampler)
    sampler.sample(time.time())
    fake.poll_hang = 1.5
    samples = sampler.sample(time.time())
    assert by_gpu(samples, "gpu_up") == {"0": 1.0, "1": 1.0}, "the GPUs were read before the poll"
    for _ in range(2):  # the stuck poll holds the event set: the next rounds skip it
        began = time.monotonic()
        samples = sampler.sample(time.time())
        assert time.monotonic() - began < 0.3
        assert by_gpu(samples, "gpu_up") == {"0": 1.0, "1": 1.0}
    fake.poll_hang = 0.0
    time.sleep(1.5)
    fake.inject_xid(1, 31)
    wait_for(lambda: xids(sampler) == {("1", "31"): 1.0}, 5, "XID after the stuck poll")


def test_close_shuts_nvml_down(closing: list[GpuSampler]) -> None:
    fake = FakeNvml.scenario(1)
    sampler = make(fake)
    list(sampler.sample(time.time()))
    assert fake.initialized == 1
    sampler.close()
    assert fake.initialized == 0


def test_process_memory_with_worker_label(closing: list[GpuSampler]) -> None:
    child = subprocess.Popen(["sleep", "30"])
    try:
        fake = FakeNvml([FakeGpu(0, processes=[(child.pid, 3 * GIB), (999_999_999, GIB)])])
        workers = [WorkerConfig(name="vllm-a", url="http://127.0.0.1:8000", pids=[os.getpid()])]
        sampler = make(fake, workers=workers)
        closing.append(sampler)
        procs = {
            dict(s.labels)["pid"]: (s.value, dict(s.labels))
            for s in sampler.sample(time.time())
            if s.name == "gpu_process_memory_bytes"
        }
    finally:
        child.kill()
        child.wait()
    value, labels = procs[str(child.pid)]
    assert value == 3 * GIB
    assert labels == {"gpu": "0", "pid": str(child.pid), "process": "sleep", "worker": "vllm-a"}
    assert procs["999999999"][1]["process"] == "?" and "worker" not in procs["999999999"][1]


def test_unit_from_cgroup_text() -> None:
    assert unit_of("0::/system.slice/vllm.service\n") == "vllm.service"
    assert unit_of("12:memory:/user.slice/user-1000.slice/session-3.scope\n") == "session-3.scope"
    assert unit_of("0::/\n") is None


def test_no_nvml_library_gives_one_line_and_no_sampler(
    caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    def missing() -> FakeNvml:
        raise NVMLError(12)  # NVML_ERROR_LIBRARY_NOT_FOUND

    monkeypatch.setattr(gpu_mod, "load_pynvml", missing)
    with caplog.at_level(logging.INFO):
        assert gpu_mod.build(Config()) is None
    lines = [r.getMessage() for r in caplog.records if "GPU" in r.getMessage()]
    assert len(lines) == 1 and lines[0].startswith("GPU sampler off: NVML init failed")
    assert gpu_mod.build(Config(gpu={"enabled": False})) is None  # type: ignore[arg-type]
    forced = gpu_mod.build(Config(gpu={"enabled": True}))  # type: ignore[arg-type]
    assert forced is not None
    assert [s.value for s in forced.sample(time.time())] == [0.0]  # dsagent_nvml_up 0
    forced.close()


def test_simulate_builds_n_gpus() -> None:
    cfg = Config(gpu={"simulate": 4})  # type: ignore[arg-type]
    sampler = gpu_mod.build(cfg, simulated_nvml(cfg))
    assert sampler is not None
    try:
        assert len(by_gpu(list(sampler.sample(time.time())), "gpu_up")) == 4
    finally:
        sampler.close()
