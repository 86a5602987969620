"""Kubernetes stand-ins: the kubelet's v1 PodResourcesLister over gRPC on a unix socket, and
the API server's pod list over HTTPS."""

from __future__ import annotations

import json
import ssl
import threading
import time
from concurrent import futures
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

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


def pod(name: str, port: int, labels: dict[str, str], *, node: str = "gpu-node-1",
        namespace: str = "llm", ready: bool = True, created: str = "2026-12-01T00:00:00Z",
        phase: str = "Running") -> dict[str, object]:  # fmt: skip
    """A pod as the API server lists it, with one container port named http."""
    return {
        "metadata": {"name": name, "namespace": namespace, "labels": labels,
                     "creationTimestamp": created},
        "spec": {"nodeName": node, "containers": [
            {"name": "vllm", "ports": [{"name": "http", "containerPort": port}]}]},
        "status": {"phase": phase, "podIP": "127.0.0.1",
                   "conditions": [{"type": "Ready", "status": str(ready)}]},
    }  # fmt: skip


def _matches(item: dict[str, Any], query: dict[str, list[str]], namespace: str | None) -> bool:
    meta, spec = item["metadata"], item["spec"]
    if namespace is not None and meta["namespace"] != namespace:
        return False
    for field in ",".join(query.get("fieldSelector", [])).split(","):
        if field and field != f"spec.nodeName={spec['nodeName']}":
            return False
    for term in ",".join(query.get("labelSelector", [])).split(","):
        key, _, want = term.replace("==", "=").partition("=")
        if term and meta["labels"].get(key) != want:
            return False
    return True


class ApiServer:
    """The API server's pod list over HTTPS, with bearer tokens checked, as a pod sees it."""

    def __init__(self, cert: Path, key: str | Path, token: str) -> None:
        api = self
        self.pods: list[dict[str, Any]] = []
        self.token, self.status, self.asked = token, 200, 0

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                api.asked += 1
                url = urlsplit(self.path)
                parts = url.path.strip("/").split("/")
                namespace = parts[3] if len(parts) == 5 and parts[2] == "namespaces" else None
                status = api.status
                if self.headers.get("Authorization") != f"Bearer {api.token}":
                    status = 401
                items = [p for p in api.pods if _matches(p, parse_qs(url.query), namespace)]
                body = json.dumps({"kind": "PodList", "items": items}).encode()
                self.send_response(status)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, format: str, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(cert, key)
        self.server.socket = context.wrap_socket(self.server.socket, server_side=True)
        self.url = f"https://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        """Stop serving."""
        self.server.shutdown()
        self.server.server_close()
