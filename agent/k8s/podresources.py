"""The kubelet's pod-resources List, asked on a thread of its own, with backoff on failure."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from agent.k8s.poller import Poller


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


class PodResources(Poller):
    """Keeps the latest pod list; a failure keeps the last good one and backs off.

    Pods do not change while the kubelet is down, so the last good list stays true until it
    answers again. `version` grows with every change, so readers redo their joins only then.
    """

    what = "kubelet pod-resources"

    def __init__(self, socket: Path, interval: float, timeout: float, max_backoff: float) -> None:
        super().__init__(interval, max_backoff)
        self.socket, self.timeout = socket, timeout
        self.allocations: list[Allocation] = []
        self.version = 0
        self._channel: Any = None

    def ask(self) -> None:
        """List the pods' devices; note a change."""
        try:
            found = list_allocations(self._stub(), self.timeout)
        except Exception:
            self._close_channel()  # a restarted kubelet makes a new socket: dial it afresh
            raise
        if sorted(found, key=repr) != sorted(self.allocations, key=repr):
            self.allocations = found
            self.version += 1

    def reason(self, exc: Exception) -> str:
        """Return no_socket, or the gRPC status code's name."""
        return "no_socket" if not self.socket.exists() else error_reason(exc)

    def describe(self, exc: Exception) -> str:
        """Return gRPC's details (its repr is a page), or the exception."""
        details = getattr(exc, "details", None)
        return str(details()) if callable(details) else str(exc)

    def _stub(self) -> Any:
        if self._channel is None:
            import grpc

            # A channel of its own subchannels: the process-wide pool would hand the new channel
            # the old one's connection, still failed and backing off, after a kubelet restart.
            self._channel = grpc.insecure_channel(
                f"unix://{self.socket}", options=[("grpc.use_local_subchannel_pool", 1)]
            )
        from agent.k8s.podresources_pb2_grpc import PodResourcesListerStub

        return PodResourcesListerStub(self._channel)

    def _close_channel(self) -> None:
        if self._channel is not None:
            self._channel.close()
            self._channel = None

    def close(self) -> None:
        """Stop asking and close the channel."""
        super().close()
        self._close_channel()
