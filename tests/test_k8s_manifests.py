"""packaging/kubernetes: every manifest loads into the official client's models, field for field."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
import yaml
from kubernetes import client

import agent
from agent.config import load_config
from tests.conftest import ROOT
from tests.test_security import certs  # noqa: F401  (a fixture)

K8S = ROOT / "packaging" / "kubernetes"
MODELS = {("v1", "ServiceAccount"): "V1ServiceAccount", ("v1", "ConfigMap"): "V1ConfigMap",
          ("v1", "Secret"): "V1Secret", ("v1", "Service"): "V1Service",
          ("apps/v1", "DaemonSet"): "V1DaemonSet",
          ("rbac.authorization.k8s.io/v1", "ClusterRole"): "V1ClusterRole",
          ("rbac.authorization.k8s.io/v1", "ClusterRoleBinding"):
          "V1ClusterRoleBinding"}  # fmt: skip


def documents() -> list[tuple[str, dict[str, Any]]]:
    kust = yaml.safe_load((K8S / "kustomization.yaml").read_text())
    return [(name, doc) for name in kust["resources"]
            for doc in yaml.safe_load_all((K8S / name).read_text()) if doc]  # fmt: skip


def by_kind(kind: str) -> dict[str, Any]:
    return next(doc for _, doc in documents() if doc["kind"] == kind)


def test_kustomization_lists_every_manifest() -> None:
    listed = set(yaml.safe_load((K8S / "kustomization.yaml").read_text())["resources"])
    assert listed == {p.name for p in K8S.glob("*.yaml")} - {"kustomization.yaml"}


@pytest.mark.parametrize(
    ("name", "doc"), documents(), ids=lambda v: v if isinstance(v, str) else ""
)
def test_manifest_loads_into_the_client_model_without_losing_a_field(
    name: str, doc: dict[str, Any]
) -> None:
    api = client.ApiClient()
    model = MODELS[doc["apiVersion"], doc["kind"]]
    loaded = api._ApiClient__deserialize(doc, model)  # type: ignore[attr-defined]
    back = api.sanitize_for_serialization(loaded)
    assert back == doc, f"{name}: a field the {model} model does not know, or of the wrong type"


def test_daemonset_mounts_what_its_config_names_and_runs_this_version(
    tmp_path: Path,
    certs: Path,  # noqa: F811
) -> None:
    ds = by_kind("DaemonSet")["spec"]["template"]["spec"]
    (container,) = ds["containers"]
    mounts = {m["mountPath"] for m in container["volumeMounts"]}
    conf = tmp_path / "agent.toml"
    conf.write_text(by_kind("ConfigMap")["data"]["agent.toml"])
    web = by_kind("Secret")["stringData"]["web.yml"]  # its files, as the TLS secret mounts them
    web = web.replace("/etc/dsagent/tls/tls.crt", str(certs / "server.pem"))
    (tmp_path / "web.yml").write_text(
        web.replace("/etc/dsagent/tls/tls.key", str(certs / "server.key"))
    )
    text = conf.read_text().replace("/etc/dsagent/web/web.yml", str(tmp_path / "web.yml"))
    conf.write_text(text)
    cfg = load_config(conf)
    for path in (cfg.host.proc_root, cfg.host.sys_root, cfg.host.dev_root,
                 cfg.agent.state_dir, cfg.kubernetes.socket.parent, Path("/etc/dsagent/tls"),
                 Path("/etc/dsagent/web"), Path("/etc/dsagent/agent.toml")):  # fmt: skip
        assert str(path) in mounts, f"{path} is named in agent.toml but not mounted"
    assert container["image"] == f"dsagent:{agent.__version__}"
    assert (
        ds["hostPID"] and ds["serviceAccountName"] == by_kind("ServiceAccount")["metadata"]["name"]
    )
    sec = container["securityContext"]
    assert sec["readOnlyRootFilesystem"] and sec["capabilities"]["drop"] == ["ALL"]
    assert not sec["allowPrivilegeEscalation"]
    port = next(p for p in container["ports"] if p["name"] == "metrics")["containerPort"]
    assert cfg.http.listen.endswith(f":{port}")
    assert by_kind("Service")["metadata"]["annotations"]["prometheus.io/port"] == str(port)


def test_dockerfile_copies_only_what_exists_and_runs_the_script() -> None:
    text = (K8S / "Dockerfile").read_text()
    for sources in re.findall(r"^COPY (?!--from)(.+) \S+$", text, re.M):
        for src in sources.split():
            assert (ROOT / src).exists(), f"Dockerfile copies {src}, which is not in the repo"
    assert 'ENTRYPOINT ["/opt/dsagent/bin/dsagent"]' in text
    assert f"dsagent:{agent.__version__}" in text
