"""[kubernetes]: which pod holds each GPU (kubelet pod-resources), and workers found as pods."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field

from agent.config.types import Duration, Section

SERVICE_ACCOUNT = Path("/var/run/secrets/kubernetes.io/serviceaccount")


class KubernetesConfig(Section):
    """[kubernetes]: off unless asked for or the kubelet's pod-resources socket exists."""

    pod_resources: bool | Literal["auto"] = "auto"  # auto: on when the socket exists at start
    socket: Path = Path("/var/lib/kubelet/pod-resources/kubelet.sock")
    interval: Duration = Field(default=10.0, gt=0)  # how often the pod list is asked for
    timeout: Duration = Field(default=2.0, gt=0)  # the deadline of one List call
    max_backoff: Duration = Field(default=300.0, gt=0)  # after failures, waits double up to this
    # Workers given by pod_selector are found through the API server (pods on this node only).
    node_name: str = ""  # empty: the NODE_NAME environment variable (the downward API)
    api_url: str = ""  # empty: https://$KUBERNETES_SERVICE_HOST:$KUBERNETES_SERVICE_PORT
    token_file: Path = SERVICE_ACCOUNT / "token"
    ca_file: Path = SERVICE_ACCOUNT / "ca.crt"
