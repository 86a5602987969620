"""Kubernetes: the kubelet's pod-resources API over real gRPC, joined to the GPUs NVML lists."""

from __future__ import annotations

import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from agent.k8s.attribution import Gpu, Mig, attribute
from agent.k8s.podresources import Allocation, Holder, PodResources
from agent.sim.fake_mig import FakeMig
from agent.sim.fake_nvml import FakeGpu
from agent.store import Sample
from tests.conftest import ROOT, AgentProcess, Sink, wait_for
from tests.kubelet import Kubelet
from tests.test_cli import dsagent

UUID = [FakeGpu(i).uuid for i in range(4)]
DEEPSEEK = Holder("llm", "deepseek-r1-0", "vllm")


@pytest.fixture
def sockdir() -> Iterator[Path]:
    """A short directory: a unix socket path must fit in 108 bytes."""
    path = Path(tempfile.mkdtemp(prefix="k8s", dir="/tmp"))
    yield path
    shutil.rmtree(path, ignore_errors=True)


def gpus(migs: dict[int, int] | None = None) -> list[Gpu]:
    migs = migs or {}
    return [Gpu(i, UUID[i], (("gpu", str(i)), ("uuid", UUID[i])), minor=i,
                migs=tuple(Mig(s, FakeMig(i, s, "3g.40gb").uuid) for s in range(migs.get(i, 0))))
            for i in range(4)]  # fmt: skip


def alloc(
    device_id: str, holder: Holder = DEEPSEEK, resource: str = "nvidia.com/gpu"
) -> Allocation:
    return Allocation(resource, device_id, holder)


def info(samples: list[Sample]) -> list[dict[str, str]]:
    return sorted((dict(s.labels) for s in samples), key=lambda d: sorted(d.items()))


@pytest.mark.parametrize(("device_id", "gpu"), [
    (UUID[2], 2),  # the device plugin's default: GPU UUIDs
    ("3", 3),  # DEVICE_ID_STRATEGY=index
    ("nvidia1", 1),  # GKE's plugin: the /dev/nvidiaN minor number
    (f"{UUID[0]}::4", 0),  # a time-slicing replica
    ("1::0", 1),  # a replica of an index-style ID
])  # fmt: skip
def test_every_id_style_names_its_gpu(device_id: str, gpu: int) -> None:
    joined = attribute([alloc(device_id)], gpus())
    assert joined.holders == {gpu: {DEEPSEEK}}
    assert dict(joined.labels(gpu)) == {"namespace": "llm", "pod": "deepseek-r1-0",
                                        "container": "vllm"}  # fmt: skip
    assert joined.unmatched == 0


def test_a_gpu_no_pod_holds_has_no_pod_labels_and_unknown_ids_are_counted() -> None:
    joined = attribute([alloc(UUID[0]), alloc("GPU-not-on-this-node"),
                        alloc("cpu0", resource="example.com/foo")], gpus())  # fmt: skip
    assert joined.labels(1) == () and joined.labels(0) != ()
    assert joined.unmatched == 1, "the foreign GPU counts; a resource that is no GPU does not"
    assert len(joined.info) == 1


def test_shared_gpu_keeps_no_pod_labels_but_lists_every_holder() -> None:
    other = Holder("llm", "qwen-0", "sglang")
    joined = attribute([alloc(f"{UUID[3]}::0"), alloc(f"{UUID[3]}::1"),
                        alloc(f"{UUID[3]}::2", other)], gpus())  # fmt: skip
    assert joined.labels(3) == (), "two pods share it: no one pod on its series"
    pods = sorted((d["pod"], d["gpu"]) for d in info(joined.info))
    assert pods == [("deepseek-r1-0", "3"), ("qwen-0", "3")], (
        "one info per container, not per replica"
    )


def test_mig_devices_by_uuid_and_index_name_their_gpu_and_profile() -> None:
    other = Holder("llm", "qwen-0", "sglang")
    layout = gpus({1: 2})
    mig0, mig1 = layout[1].migs
    mig = "nvidia.com/mig-3g.40gb"
    joined = attribute([alloc(mig0.uuid, resource=mig), alloc("1:1", other, resource=mig)], layout)
    assert joined.holders == {1: {DEEPSEEK, other}}
    assert joined.labels(1) == (), "two containers on one GPU's MIG devices"
    got = {d["pod"]: (d["mig_uuid"], d["mig_profile"], d["gpu"]) for d in info(joined.info)}
    assert got == {
        "deepseek-r1-0": (mig0.uuid, "3g.40gb", "1"),
        "qwen-0": (mig1.uuid, "3g.40gb", "1"),
    }


def test_list_over_real_grpc_survives_a_kubelet_restart_and_backs_off(sockdir: Path) -> None:
    sock = sockdir / "kubelet.sock"
    kubelet = Kubelet(sock, {("llm", "deepseek-r1-0", "vllm"): [("nvidia.com/gpu", [UUID[0]])],
                             ("kube-system", "coredns", "coredns"): []}).start()  # fmt: skip
    watch = PodResources(sock, interval=0.2, timeout=0.5, max_backoff=0.8)
    try:
        assert watch.refresh() == 0.2 and watch.up
        assert watch.allocations == [alloc(UUID[0])], "a pod with no devices holds nothing"
        version = watch.version
        kubelet.stop()
        waits = [watch.refresh() for _ in range(4)]
        assert not watch.up and waits == [0.4, 0.8, 0.8, 0.8], "doubling up to max_backoff"
        assert watch.errors["no_socket"] == 4
        assert watch.allocations == [alloc(UUID[0])], "the last good list is kept"
        kubelet.pods[("llm", "qwen-0", "sglang")] = [("nvidia.com/gpu", [UUID[1]])]
        kubelet.start()
        assert watch.refresh() == 0.2 and watch.up, "the new socket is dialled afresh"
        assert watch.version == version + 1 and len(watch.allocations) == 2
        kubelet.delay = 1.0
        watch.refresh()
        assert watch.errors["deadline_exceeded"] == 1 and not watch.up
    finally:
        watch.close()
        kubelet.stop()


def test_unimplemented_service_is_a_named_error(sockdir: Path) -> None:
    from concurrent import futures

    import grpc

    sock = sockdir / "other.sock"
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=1))
    server.add_insecure_port(f"unix://{sock}")
    server.start()
    watch = PodResources(sock, interval=1, timeout=1, max_backoff=2)
    try:
        watch.refresh()
        assert watch.errors == {"unimplemented": 1}
    finally:
        watch.close()
        server.stop(0)


RULE = """groups:
  - name: gpus
    interval: 1s
    rules:
      - alert: GpuBusy
        expr: gpu_utilization_ratio
        op: ">="
        thresholds: {warning: 0}
"""


def k8s_agent(factory: Callable[..., AgentProcess], sock: Path, tmp: Path, sink: Sink, *,
              gpus: int = 4, scenario: str = "normal") -> AgentProcess:  # fmt: skip
    rules = tmp / "gpus.yml"
    rules.write_text(RULE)
    return factory(
        f'[gpu]\nsimulate = {gpus}\nscenario = "{scenario}"\n'
        f'[kubernetes]\npod_resources = true\nsocket = "{sock}"\ninterval = "1s"\n'
        f'[rules]\ndefaults = false\npaths = ["{rules}"]\n'
        f'[[routes]]\nreceiver = "hook"\ngroup_interval = "1s"\n'
        f'[[receivers]]\nname = "hook"\ntype = "webhook"\nurl = "{sink.url}/hook"\n'
    )


@pytest.mark.integration
def test_pods_on_metrics_alerts_webhook_and_status(
    agent_factory: Callable[..., AgentProcess], sink: Sink, sockdir: Path, tmp_path: Path
) -> None:
    sock = sockdir / "kubelet.sock"
    kubelet = Kubelet(sock, {
        ("llm", "deepseek-r1-0", "vllm"): [("nvidia.com/gpu", [UUID[0], UUID[1]])],
        ("llm", "embed-0", "tei"): [("nvidia.com/gpu", ["2"])],
        ("llm", "qwen-0", "sglang"): [("nvidia.com/gpu", [f"{UUID[3]}::0"])],
        ("llm", "qwen-1", "sglang"): [("nvidia.com/gpu", [f"{UUID[3]}::1"])],
        ("default", "web", "nginx"): [],
    }).start()  # fmt: skip
    try:
        agent = k8s_agent(agent_factory, sock, tmp_path, sink)
        agent.wait_healthy()
        wait_for(lambda: 'pod="embed-0"' in agent.metrics(), 20, "pod labels on /metrics")
        text = agent.metrics()
        util = [line for line in text.splitlines() if line.startswith("gpu_utilization_ratio{")]
        assert len(util) == 4
        assert sum('pod="deepseek-r1-0"' in line and 'container="vllm"' in line
                   and 'namespace="llm"' in line for line in util) == 2  # fmt: skip
        assert sum('pod="embed-0"' in line and 'gpu="2"' in line for line in util) == 1
        shared = next(line for line in util if 'gpu="3"' in line)
        assert "pod=" not in shared and 'namespace=""' not in shared, "shared: no pod, no empties"
        assert text.count("gpu_pod_info{") == 5
        assert "dsagent_k8s_podresources_up 1.0" in text
        process = [
            line
            for line in text.splitlines()
            if line.startswith("gpu_process_memory_bytes{") and 'gpu="0"' in line
        ]
        assert process and 'pod="deepseek-r1-0"' in process[0]

        def alert_pods() -> set[str]:
            return {
                a["labels"].get("pod", "-")
                for r in sink.on("/hook")  # type: ignore[index, union-attr]
                for a in r["json"]["alerts"]
            }  # type: ignore[index]

        wait_for(lambda: {"deepseek-r1-0", "embed-0", "-"} <= alert_pods(), 20, "pods in alerts")
        status = dsagent("status", "--url", agent.url).stdout
        assert "pod llm/deepseek-r1-0 container vllm" in status
        assert "pod llm/qwen-1 container sglang" in status
    finally:
        kubelet.stop()


@pytest.mark.integration
def test_mig_pods_and_a_restarting_kubelet_end_to_end(
    agent_factory: Callable[..., AgentProcess], sink: Sink, sockdir: Path, tmp_path: Path
) -> None:
    sock = sockdir / "kubelet.sock"
    mig = [FakeMig(0, s, "3g.40gb").uuid for s in range(2)]
    kubelet = Kubelet(sock, {
        ("llm", "distill-0", "vllm"): [("nvidia.com/mig-3g.40gb", [mig[0]])],
        ("llm", "distill-1", "vllm"): [("nvidia.com/mig-3g.40gb", ["0:1"])],
    }).start()  # fmt: skip
    try:
        agent = k8s_agent(agent_factory, sock, tmp_path, sink, gpus=1, scenario="mig")
        agent.wait_healthy()
        wait_for(lambda: agent.metrics().count("gpu_pod_info{") == 2, 20, "MIG holders")
        text = agent.metrics()
        assert f'mig_uuid="{mig[1]}"' in text and 'mig_profile="3g.40gb"' in text
        temp = next(x for x in text.splitlines() if x.startswith("gpu_temperature_celsius{"))
        assert "pod=" not in temp, "two pods on the GPU's MIG devices: none on the GPU's series"
        kubelet.stop()
        wait_for(lambda: "dsagent_k8s_podresources_up 0.0" in agent.metrics(), 10, "down")
        text = agent.metrics()
        assert 'dsagent_k8s_podresources_errors_total{reason="no_socket"}' in text
        assert text.count("gpu_pod_info{") == 2, "the last pod list holds while it restarts"
        kubelet.pods = {("llm", "distill-0", "vllm"): [("nvidia.com/mig-3g.40gb", [mig[0]])]}
        kubelet.start()
        wait_for(lambda: agent.metrics().count("gpu_pod_info{") == 1, 20, "the new list")
        temp = next(x for x in agent.metrics().splitlines()
                    if x.startswith("gpu_temperature_celsius{"))  # fmt: skip
        assert 'pod="distill-0"' in temp, "one container holds all of it now"
        status = dsagent("status", "--url", agent.url).stdout
        assert "pod llm/distill-0 container vllm (MIG 3g.40gb)" in status
        assert "distill-1" not in status, "a pod that has gone is not listed"
    finally:
        kubelet.stop()


def test_auto_stays_off_without_the_socket(sockdir: Path) -> None:
    from agent.config import Config
    from agent.samplers import kubernetes

    cfg = Config(kubernetes={"socket": str(sockdir / "absent.sock")})  # type: ignore[arg-type]
    assert kubernetes.build(cfg) is None


def test_agent_without_kubernetes_never_imports_grpc_or_requests() -> None:
    code = ("import sys; from agent.config import Config; from agent.samplers import "
            "build_samplers; build_samplers(Config()); "
            "print('grpc' in sys.modules or 'requests' in sys.modules)")  # fmt: skip
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True,
                         check=True)  # fmt: skip
    assert out.stdout.strip() == "False"


def test_checked_in_stubs_match_the_proto(tmp_path: Path) -> None:
    proto = "agent/k8s/podresources.proto"
    shutil.copytree(ROOT / "agent" / "k8s", tmp_path / "agent" / "k8s")
    for f in (tmp_path / "agent" / "k8s").glob("*_pb2*.py"):
        f.unlink()
    subprocess.run([sys.executable, "-m", "grpc_tools.protoc", "-I.", "--python_out=.",
                    "--grpc_python_out=.", proto], cwd=tmp_path, check=True)  # fmt: skip
    for name in ("podresources_pb2.py", "podresources_pb2_grpc.py"):
        assert (tmp_path / "agent/k8s" / name).read_text() == (
            ROOT / "agent/k8s" / name
        ).read_text()


@pytest.mark.integration
def test_a_reload_keeps_the_pod_labels_from_the_first_round(
    agent_factory: Callable[..., AgentProcess], sink: Sink, sockdir: Path, tmp_path: Path
) -> None:
    import signal

    sock = sockdir / "kubelet.sock"
    kubelet = Kubelet(sock, {("llm", "r1-0", "vllm"): [("nvidia.com/gpu", [UUID[0]])]}).start()
    try:
        agent = k8s_agent(agent_factory, sock, tmp_path, sink, gpus=1)
        agent.wait_healthy()
        wait_for(lambda: 'pod="r1-0"' in agent.metrics(), 20, "pod labels")
        kubelet.delay = 1.2  # a slow first answer: rounds would run before it without a wait
        agent.config.write_text(
            agent.config.read_text().replace('interval = "1s"', 'interval = "2s"')
        )
        agent.proc.send_signal(signal.SIGHUP)  # [kubernetes] changed: every sampler is new
        end, seen = time.monotonic() + 4, 0
        while time.monotonic() < end:
            for line in agent.metrics().splitlines():
                if line.startswith("gpu_utilization_ratio{"):
                    seen += 1
                    assert 'pod="r1-0"' in line, "a round without the pod: its alerts would flap"
            time.sleep(0.05)
        assert seen > 20
        assert "configuration reloaded" in agent.log()
    finally:
        kubelet.stop()
