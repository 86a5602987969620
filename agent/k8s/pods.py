"""Workers found as pods: this node's pods from the API server, matched by label selector.

The kubelet's pod-resources socket names pods but not their addresses or labels, so a worker
given as `pod_selector` needs the API server: `list pods` on this node (a field selector on
spec.nodeName), with the service account's token, as log shippers' pod discovery does.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

import requests

from agent.config import WorkerConfig
from agent.config.kubernetes import KubernetesConfig
from agent.k8s.poller import Poller
from agent.store import MetricInfo, Sample, sample

log = logging.getLogger(__name__)

METRICS = {
    "dsagent_k8s_api_up": MetricInfo("gauge", "1 while the API server answers the pod list."),
    "dsagent_k8s_api_errors_total": MetricInfo(
        "counter", "Failed pod lists from the API server, by reason."
    ),
    "worker_pod_info": MetricInfo("gauge", "1 for the pod a worker's pod_selector found."),
}


class Unset(Exception):
    """Something the pod list needs is not configured."""

    def __init__(self, reason: str, hint: str) -> None:
        super().__init__(f"{reason}: {hint}")
        self.reason = reason


@dataclass(frozen=True)
class Found:
    """The pod a worker's selector chose, and the URL it is probed at."""

    namespace: str
    pod: str
    url: str


def pod_url(pod: dict[str, Any], port: int | str, scheme: str) -> str | None:
    """Return the URL of a running pod's port, or None (not running, no IP, no such port)."""
    meta, spec, status = pod.get("metadata", {}), pod.get("spec", {}), pod.get("status", {})
    ip = status.get("podIP")
    if status.get("phase") != "Running" or not ip or meta.get("deletionTimestamp"):
        return None
    if isinstance(port, str):  # a named container port
        numbers = [p.get("containerPort") for c in spec.get("containers", [])
                   for p in c.get("ports", []) if p.get("name") == port]  # fmt: skip
        if not numbers:
            return None
        port = int(numbers[0])
    host = f"[{ip}]" if ":" in ip else ip
    return f"{scheme}://{host}:{port}"


def _ready(pod: dict[str, Any]) -> bool:
    conditions = pod.get("status", {}).get("conditions", [])
    return any(c.get("type") == "Ready" and c.get("status") == "True" for c in conditions)


def choose(pods: list[dict[str, Any]], worker: WorkerConfig) -> Found | None:
    """Pick one pod: ready before not ready, then the oldest; None when none can be probed."""
    best: tuple[bool, str, str, Found] | None = None
    for pod in pods:
        url = pod_url(pod, worker.pod_port or 0, worker.pod_scheme)
        if url is None:
            continue
        meta = pod["metadata"]
        key = (not _ready(pod), meta.get("creationTimestamp", ""), meta.get("name", ""),
               Found(meta.get("namespace", ""), meta.get("name", ""), url))  # fmt: skip
        best = key if best is None or key[:3] < best[:3] else best
    return None if best is None else best[3]


class PodFinder(Poller):
    """Lists this node's pods for every worker given by selector; a sampler of its state."""

    what = "kubernetes API pods"
    name = "kubernetes-pods"
    metrics = METRICS

    def __init__(self, cfg: KubernetesConfig, workers: list[WorkerConfig]) -> None:
        super().__init__(cfg.interval, cfg.max_backoff)
        self.cfg, self.workers = cfg, workers
        self.node = cfg.node_name or os.environ.get("NODE_NAME", "")
        host, port = os.environ.get("KUBERNETES_SERVICE_HOST"), os.environ.get(
            "KUBERNETES_SERVICE_PORT", "443")  # fmt: skip
        self.api = cfg.api_url or (f"https://{host}:{port}" if host else "")
        self.found: dict[str, Found | None] = {}
        self.http = requests.Session()

    def locate(self, worker: str) -> Found | None:
        """Return the pod the worker is in now (and its URL), or None."""
        return self.found.get(worker)

    def ask(self) -> None:
        """List each worker's matching pods on this node; keep the previous answer on failure."""
        if not self.node:
            raise Unset("no_node_name", "set kubernetes.node_name or NODE_NAME")
        if not self.api:
            raise Unset("no_api_server", "set kubernetes.api_url, or run in a pod")
        token = self.cfg.token_file.read_text().strip()  # re-read: projected tokens rotate
        for w in self.workers:
            found = choose(self._pods(w, token), w)
            if found != self.found.get(w.name):
                where = f"{found.namespace}/{found.pod} at {found.url}" if found else "none"
                log.info("worker %s: pod %s", w.name, where)
            self.found[w.name] = found

    def _pods(self, w: WorkerConfig, token: str) -> list[dict[str, Any]]:
        base = f"/api/v1/namespaces/{quote(w.pod_namespace)}/pods" if w.pod_namespace else (
            "/api/v1/pods")  # fmt: skip
        params = {"labelSelector": w.pod_selector, "fieldSelector": f"spec.nodeName={self.node}"}
        verify: str | bool = str(self.cfg.ca_file) if self.cfg.ca_file.exists() else True
        answer = self.http.get(self.api.rstrip("/") + base, params=params, verify=verify,
                               headers={"Authorization": f"Bearer {token}"},
                               timeout=self.cfg.timeout)  # fmt: skip
        answer.raise_for_status()
        return list(answer.json().get("items", []))

    def reason(self, exc: Exception) -> str:
        """Return the HTTP status, or the kind of failure."""
        if isinstance(exc, requests.HTTPError) and exc.response is not None:
            return f"http_{exc.response.status_code}"
        if isinstance(exc, requests.Timeout):
            return "timeout"
        if isinstance(exc, requests.ConnectionError):
            return "unreachable"
        if isinstance(exc, Unset):
            return exc.reason
        if isinstance(exc, OSError):
            return "no_token"
        return super().reason(exc)

    def sample(self, now: float) -> Iterator[Sample]:
        """Report whether the API server answers, and the pod each worker was found in."""
        yield Sample("dsagent_k8s_api_up", float(self.up))
        for reason, n in sorted(self.errors.items()):
            yield sample("dsagent_k8s_api_errors_total", n, reason=reason)
        for worker, found in sorted(self.found.items()):
            if found is not None:
                yield sample("worker_pod_info", 1, worker=worker, namespace=found.namespace,
                             pod=found.pod, url=found.url)  # fmt: skip

    def close(self) -> None:
        """Stop asking; close the HTTP session."""
        super().close()
        self.http.close()
