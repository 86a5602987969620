"""A kubelet stand-in: the real v1 PodResourcesLister gRPC service on a unix socket."""

from __future__ import annotations

import threading
import time
from concurrent import futures
from pathlib import Path

import grpc

from agent.k8s import podresources_pb2 as pb
from agent.k8s import podresources_pb2_grpc as pb_grpc

# (namespace, pod, container) -> [(resource, [device ids])]
Pods = dict[tuple[str, str, str], list[tuple[str, list[str]]]]


class Kubelet(pb_grpc.PodResourcesListerServicer):
    """Answers List from `pods`; `delay` slows each answer; stop/start as a restart does."""

    def __init__(self, socket: Path, pods: Pods | None = None) -> None:
        self.socket = socket
        self.pods: Pods = pods or {}
        self.delay = 0.0
        self.calls = 0
        self.lock = threading.Lock()
        self.server: grpc.Server | None = None

    def List(self, request: pb.ListPodResourcesRequest, context: object) -> object:
        with self.lock:
            self.calls += 1
            pods = dict(self.pods)
        time.sleep(self.delay)
        by_pod: dict[tuple[str, str], list[object]] = {}
        for (ns, pod, container), devices in sorted(pods.items()):
            devs = [pb.ContainerDevices(resource_name=r, device_ids=ids) for r, ids in devices]
            by_pod.setdefault((ns, pod), []).append(
                pb.ContainerResources(name=container, devices=devs)
            )
        return pb.ListPodResourcesResponse(pod_resources=[
            pb.PodResources(name=pod, namespace=ns, containers=cs)
            for (ns, pod), cs in by_pod.items()
        ])  # fmt: skip

    def start(self) -> Kubelet:
        """Listen on the socket, as the kubelet does when it starts."""
        self.server = grpc.server(futures.ThreadPoolExecutor(max_workers=4))
        pb_grpc.add_PodResourcesListerServicer_to_server(self, self.server)
        self.server.add_insecure_port(f"unix://{self.socket}")
        self.server.start()
        return self

    def stop(self) -> None:
        """Stop serving and remove the socket, as a kubelet restart does."""
        if self.server is not None:
            self.server.stop(grace=0).wait()
            self.server = None
        self.socket.unlink(missing_ok=True)
