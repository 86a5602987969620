"""Log-borne failures: CUDA OOM (with its sizes), NCCL, engine crashes, Xid, and your own."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

import pytest
import requests

from agent.config import ConfigError, load_config
from agent.config.shipping import EventPatternConfig, LogInputConfig
from agent.shipping.events import DEFAULTS, EventCounter, oom_sizes, patterns_for
from agent.shipping.job import _events
from agent.shipping.shipper import Shipper
from agent.shipping.sinks import FileSink
from tests.conftest import AgentProcess, wait_for

GIB = 1 << 30
OOM_OLD = (b"RuntimeError: CUDA out of memory. Tried to allocate 20.00 GiB (GPU 0; 79.21 GiB total "
           b"capacity; 58.40 GiB already allocated; 1.06 GiB free; 60.00 GiB reserved in total by "
           b"PyTorch)")  # fmt: skip
OOM_NEW = (b"torch.OutOfMemoryError: CUDA out of memory. Tried to allocate 2.00 MiB. GPU 3 has a "
           b"total capacity of 79.15 GiB of which 1.06 MiB is free. Including non-PyTorch memory, "
           b"this process has 79.14 GiB memory in use. Of the allocated memory 77.50 GiB is "
           b"allocated by PyTorch")  # fmt: skip
LINES = {
    "cuda_oom": [OOM_OLD, OOM_NEW, b"CUBLAS_STATUS_ALLOC_FAILED when calling cublasCreate"],
    "nccl_timeout": [
        b"[Rank 1] Watchdog caught collective operation timeout: WorkNCCL(SeqNum=4021, "
        b"OpType=ALLREDUCE, NumelIn=8192, Timeout(ms)=600000) ran for 600046 milliseconds",
        b"NCCL WARN Net : Connection to 10.0.0.7 timed out",
    ],
    "nccl_error": [
        b"NCCL WARN Cuda failure 'an illegal memory access was encountered'",
        b"torch.distributed.DistBackendError: NCCL error in: ProcessGroupNCCL.cpp:1970, "
        b"unhandled system error, ncclSystemError: System call failed",
    ],
    "engine_crash": [
        b"ERROR 12-06 10:00:01 [core.py:588] EngineCore encountered a fatal error.",
        b"vllm.v1.engine.exceptions.EngineDeadError: EngineCore encountered an issue.",
        b"[2026-12-06 10:00:02] Scheduler hit an exception: Traceback (most recent call last):",
        b"ERROR text_generation_launcher: Shard 0 failed to start",
    ],
    "xid": [b"Dec  6 10:00:03 gpu1 kernel: NVRM: Xid (PCI:0000:18:00): 79, pid=2318, GPU has fell"],
}
QUIET = [b'{"timestamp":"2026-12-06T10:00:00Z","request_id":"a","latency_ms":80}',
         b"INFO 12-06 10:00:00 engine.py:310 Avg prompt throughput: 812.1 tokens/s, NCCL ok",
         b"Xidian University model loaded", b"Engine started."]  # fmt: skip


@pytest.mark.parametrize("event", sorted(LINES))
def test_each_default_pattern_counts_its_lines_once(event: str) -> None:
    counter = EventCounter(list(DEFAULTS))
    lines = [*QUIET, *LINES[event], *QUIET]
    counter.scan(b"\n".join(lines), lines)
    assert counter.counts[event] == len(LINES[event])
    quiet = EventCounter(list(DEFAULTS))
    quiet.scan(b"\n".join(QUIET), QUIET)
    assert sum(quiet.counts.values()) == 0, "ordinary lines count as nothing"


def test_oom_sizes_in_both_pytorch_formats() -> None:
    assert oom_sizes(OOM_OLD) == {"tried": 20 * GIB, "capacity": 79.21 * GIB,
                                  "allocated": 58.40 * GIB, "gpu": 0}  # fmt: skip
    assert oom_sizes(OOM_NEW) == {"tried": 2 * (1 << 20), "capacity": 79.15 * GIB,
                                  "allocated": 77.50 * GIB, "gpu": 3}  # fmt: skip
    assert oom_sizes(b"CUBLAS_STATUS_ALLOC_FAILED") == {}


def test_own_patterns_by_input_and_overriding_a_default() -> None:
    mine = [EventPatternConfig(name="rate_limited", regex=r"HTTP 429", contains=["429"],
                               inputs=["gateway"]),
            EventPatternConfig(name="xid", regex=r"Xid \d+")]  # fmt: skip
    names = {p.name: p for p in patterns_for("gateway", True, mine)}
    assert set(names) == {"cuda_oom", "nccl_timeout", "nccl_error", "engine_crash", "xid",
                          "rate_limited"}  # fmt: skip
    assert names["xid"].regex.pattern == rb"Xid \d+", "a pattern of the same name replaces it"
    assert "rate_limited" not in {p.name for p in patterns_for("vllm", True, mine)}
    assert [p.name for p in patterns_for("vllm", False, mine)] == ["xid"]


def test_a_bad_regex_or_input_is_a_load_error_naming_it(tmp_path: Path) -> None:
    conf = tmp_path / "agent.toml"
    conf.write_text('[[logs]]\nname = "vllm"\npaths = ["/x"]\n\n[[events.patterns]]\n'
                    'name = "mine"\nregex = "NCCL ("\ninputs = ["vlm"]\n')  # fmt: skip
    with pytest.raises(ConfigError) as err:
        load_config(conf)
    text = str(err.value)
    assert "agent.toml:7: events.patterns.0.regex" in text and "invalid regular expression" in text
    conf.write_text(conf.read_text().replace('"NCCL ("', '"NCCL"'))
    with pytest.raises(
        ConfigError, match=r"events\.patterns\.0\.inputs.*no \[\[logs\]\] input named 'vlm'"
    ):
        load_config(conf)


def test_shipper_counts_events_and_keeps_the_oom_sizes(tmp_path: Path) -> None:
    log = tmp_path / "node.log"
    log.write_bytes(b"2026-12-06 10:00:00 ERROR " + OOM_OLD + b"\n2026-12-06 10:00:01 INFO fine\n"
                    + b"2026-12-06 10:00:02 ERROR " + LINES["nccl_timeout"][0] + b"\n")  # fmt: skip
    cfg = LogInputConfig(name="node", paths=[str(log)], format="text")
    shipper = Shipper(cfg, FileSink(tmp_path / "out"), tmp_path / "st", node="n", batch_size=100,
                      batch_bytes=1 << 20, patterns=patterns_for("node", True, []))  # fmt: skip
    shipper.tailer.discover()
    events = shipper._collect()
    assert shipper._deliver(events)
    got = {(s.name, dict(s.labels).get("event")): s for s in _events(shipper, "node")}
    assert got["dsagent_log_events_total", "cuda_oom"].value == 1
    assert got["dsagent_log_events_total", "nccl_timeout"].value == 1
    assert got["dsagent_log_events_total", "engine_crash"].value == 0, "from 0, for increase()"
    assert got["inference_cuda_oom_total", None].value == 1, "the old name keeps working"
    tried = got["inference_cuda_oom_tried_bytes", None]
    assert tried.value == 20 * GIB and dict(tried.labels) == {"input": "node", "gpu": "0"}
    assert len((tmp_path / "out" / "dsagent.node.ndjson").read_text().splitlines()) == 3


@pytest.mark.integration
def test_nccl_timeout_and_engine_crash_lines_alert(
    agent_factory: Callable[..., AgentProcess], tmp_path: Path
) -> None:
    log = tmp_path / "vllm.log"
    log.write_text("INFO started\n")
    agent = agent_factory(f'[[logs]]\nname = "vllm"\npaths = ["{log}"]\nformat = "text"\n')
    agent.wait_healthy()
    wait_for(lambda: 'event="nccl_timeout",input="vllm"} 0.0' in agent.metrics(), 15, "at 0")
    time.sleep(1.5)  # a sample at 0 first: increase() sees the step
    with log.open("ab") as f:
        f.write(
            LINES["nccl_timeout"][0]
            + b"\n"
            + LINES["engine_crash"][0]
            + b"\n"
            + LINES["xid"][0]
            + b"\n"
        )

    def firing() -> set[str]:
        alerts = requests.get(agent.url + "/api/v1/alerts", timeout=2).json()
        return {a["labels"]["alertname"] for a in alerts if a["state"] == "firing"}

    wanted = {"NcclTimeout", "InferenceEngineCrashed", "GpuXidInKernelLog"}
    wait_for(lambda: wanted <= firing(), 30, "the three alerts")


@pytest.mark.integration
def test_a_reload_applies_new_patterns(
    agent_factory: Callable[..., AgentProcess], tmp_path: Path
) -> None:
    import signal

    log = tmp_path / "gw.log"
    log.write_text("start\n")
    agent = agent_factory(f'[[logs]]\nname = "gw"\npaths = ["{log}"]\nformat = "text"\n')
    agent.wait_healthy()
    wait_for(lambda: 'event="xid",input="gw"} 0.0' in agent.metrics(), 15, "the defaults")
    agent.config.write_text(agent.config.read_text() + '\n[[events.patterns]]\n'
                            'name = "rate_limited"\nregex = "HTTP 429"\n')  # fmt: skip
    agent.proc.send_signal(signal.SIGHUP)
    wait_for(lambda: 'event="rate_limited",input="gw"} 0.0' in agent.metrics(), 15,
             "the new pattern after the reload")  # fmt: skip
    with log.open("a") as f:
        f.write("upstream said HTTP 429\n")
    wait_for(lambda: 'event="rate_limited",input="gw"} 1.0' in agent.metrics(), 15, "counted")
