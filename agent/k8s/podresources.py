"""The kubelet's pod-resources List, asked on a thread of its own, with backoff on failure."""

from __future__ import annotations

import logging
import threading
import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)


@dataclass(frozen=True, order=True)
class Holder:
    """A container that was allocated a device."""

    namespace: str
    pod: str
    container: str

    def labels(self) -> tuple[tuple[str, str], ...]:
        """Return the labels this container puts on a series, sorted."""
        return (("container", self.container), ("namespace", self.namespace), ("pod", self.pod))


@dataclass(frozen=True)
class Allocation:
    """One device ID of one extended resource, held by one container."""

    resource: str  # nvidia.com/gpu, nvidia.com/mig-3g.40gb...
    device_id: str
    holder: Holder


def list_allocations(stub: Any, timeout: float) -> list[Allocation]:
    """Ask the kubelet once for every container's devices."""
    from agent.k8s import podresources_pb2 as pb

    answer = stub.List(pb.ListPodResourcesRequest(), timeout=timeout)
    return [Allocation(dev.resource_name, device_id, Holder(pod.namespace, pod.name, c.name))
            for pod in answer.pod_resources for c in pod.containers for dev in c.devices
            for device_id in dev.device_ids]  # fmt: skip


def error_reason(exc: Exception) -> str:
    """Return a short label for why a List failed: the gRPC status code, or the exception's kind."""
    import grpc

    if isinstance(exc, grpc.RpcError) and hasattr(exc, "code"):
        return str(exc.code().name).lower()  # unavailable, deadline_exceeded, unimplemented...
    return type(exc).__name__.lower()


class PodResources:
    """Keeps the latest pod list; a failure keeps the last good one and backs off.

    Pods do not change while the kubelet is down, so the last good list stays true until it
    answers again. `version` grows with every change, so readers redo their joins only then.
    """

    def __init__(self, socket: Path, interval: float, timeout: float, max_backoff: float) -> None:
        self.socket, self.interval, self.timeout = socket, interval, timeout
        self.max_backoff = max_backoff
        self.allocations: list[Allocation] = []
        self.version = 0
        self.up = False
        self.errors: Counter[str] = Counter()
        self.last_seconds = 0.0  # how long the latest List took
        self._backoff = interval
        self._channel: Any = None
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="k8s-podresources", daemon=True)

    def start(self) -> None:
        """Ask at once, then every interval."""
        self._thread.start()

    def refresh(self) -> float:
        """Ask once; return the wait before the next ask."""
        began = time.monotonic()
        try:
            found = list_allocations(self._stub(), self.timeout)
        except Exception as exc:  # any failure is counted and retried, never the thread's end
            return self._failed(exc)
        finally:
            self.last_seconds = time.monotonic() - began
        if not self.up:
            log.info("kubelet pod-resources: answering on %s", self.socket)
        self.up, self._backoff = True, self.interval
        if sorted(found, key=repr) != sorted(self.allocations, key=repr):
            self.allocations = found
            self.version += 1
        return self.interval

    def _failed(self, exc: Exception) -> float:
        reason = "no_socket" if not self.socket.exists() else error_reason(exc)
        self.errors[reason] += 1
        if self.up or sum(self.errors.values()) == 1:  # once per outage, not once per try
            log.warning("kubelet pod-resources on %s: %s (%s); keeping the last pod list",
                        self.socket, reason, exc)  # fmt: skip
        self.up = False
        self._close_channel()  # a restarted kubelet makes a new socket: dial it afresh
        self._backoff = min(self._backoff * 2, self.max_backoff)
        return self._backoff

    def _stub(self) -> Any:
        if self._channel is None:
            import grpc

            self._channel = grpc.insecure_channel(f"unix://{self.socket}")
        from agent.k8s.podresources_pb2_grpc import PodResourcesListerStub

        return PodResourcesListerStub(self._channel)

    def _close_channel(self) -> None:
        if self._channel is not None:
            self._channel.close()
            self._channel = None

    def _loop(self) -> None:
        wait = 0.0
        while not self._stop.wait(wait):
            wait = self.refresh()

    def close(self) -> None:
        """Stop asking and close the channel."""
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout=self.timeout + 1)
        self._close_channel()
