"""Kubernetes sampler: whether the kubelet's pod-resources API answers, and how it went."""

from __future__ import annotations

import logging
from collections.abc import Iterator

from agent.config import Config
from agent.k8s.podresources import PodResources
from agent.store import MetricInfo, Sample, sample

log = logging.getLogger(__name__)

METRICS = {
    "dsagent_k8s_podresources_up": MetricInfo(
        "gauge", "1 while the kubelet's pod-resources List answers."
    ),
    "dsagent_k8s_podresources_errors_total": MetricInfo(
        "counter", "Failed pod-resources List calls, by reason (no_socket, unavailable...)."
    ),
    "dsagent_k8s_podresources_duration_seconds": MetricInfo(
        "gauge", "How long the latest pod-resources List took."
    ),
}


class KubernetesSampler:
    """Reports the pod-resources watch; the GPU sampler puts its pods on the GPU series."""

    name = "kubernetes"
    metrics = METRICS

    def __init__(self, source: PodResources) -> None:
        self.source = source

    def sample(self, now: float) -> Iterator[Sample]:
        """Report the watch's state, as of its latest ask."""
        src = self.source
        yield Sample("dsagent_k8s_podresources_up", float(src.up))
        yield Sample("dsagent_k8s_podresources_duration_seconds", src.last_seconds)
        for reason, n in sorted(src.errors.items()):
            yield sample("dsagent_k8s_podresources_errors_total", n, reason=reason)

    def close(self) -> None:
        """Stop the watch."""
        self.source.close()


def build(cfg: Config) -> KubernetesSampler | None:
    """Watch pod-resources when asked to, or on 'auto' when the kubelet's socket exists."""
    k = cfg.kubernetes
    if k.pod_resources is False or (k.pod_resources == "auto" and not k.socket.exists()):
        return None
    source = PodResources(k.socket, k.interval, k.timeout, k.max_backoff)
    source.start()
    log.info("Kubernetes: pod-resources on %s every %gs", k.socket, k.interval)
    return KubernetesSampler(source)
