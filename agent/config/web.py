"""Prometheus exporter-toolkit's web config: TLS (and client certificates) and basic auth."""

from __future__ import annotations

import ssl
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

TLS_VERSIONS = {"TLS10": ssl.TLSVersion.TLSv1, "TLS11": ssl.TLSVersion.TLSv1_1,
                "TLS12": ssl.TLSVersion.TLSv1_2, "TLS13": ssl.TLSVersion.TLSv1_3}  # fmt: skip
CLIENT_AUTH = {
    "NoClientCert": ssl.CERT_NONE,
    "RequestClientCert": ssl.CERT_OPTIONAL,
    "RequireAnyClientCert": ssl.CERT_REQUIRED,
    "VerifyClientCertIfGiven": ssl.CERT_OPTIONAL,
    "RequireAndVerifyClientCert": ssl.CERT_REQUIRED,
}


@dataclass
class WebConfig:
    """What web.yml says; relative paths are relative to the file, as in exporter-toolkit."""

    tls: dict[str, Any] | None = None
    users: dict[str, bytes] = field(default_factory=dict)  # user -> bcrypt hash
    base: Path = Path(".")

    def ssl_context(self) -> ssl.SSLContext | None:
        """Build the server's TLS context, or None for plain HTTP."""
        if not self.tls:
            return None
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.minimum_version = TLS_VERSIONS[self.tls.get("min_version", "TLS12")]
        ctx.load_cert_chain(self._path("cert_file"), self._path("key_file"))
        ctx.verify_mode = CLIENT_AUTH[self.tls.get("client_auth_type", "NoClientCert")]
        if self.tls.get("client_ca_file"):
            ctx.load_verify_locations(self._path("client_ca_file"))
        return ctx

    def _path(self, key: str) -> str:
        value = Path(str(self.tls[key] if self.tls else ""))
        return str(value if value.is_absolute() else self.base / value)


def load_web_config(path: Path) -> WebConfig:
    """Read and check web.yml; raise ValueError naming the problem."""
    try:
        doc = yaml.safe_load(path.read_text()) or {}
    except (OSError, yaml.YAMLError) as exc:
        raise ValueError(f"cannot read {path}: {exc}") from None
    if not isinstance(doc, dict):
        raise ValueError(f"{path}: expected a mapping")
    tls = doc.get("tls_server_config")
    if tls is not None:
        if not isinstance(tls, dict) or not tls.get("cert_file") or not tls.get("key_file"):
            raise ValueError(f"{path}: tls_server_config needs cert_file and key_file")
        if tls.get("min_version", "TLS12") not in TLS_VERSIONS:
            raise ValueError(f"{path}: min_version must be one of {', '.join(TLS_VERSIONS)}")
        if tls.get("client_auth_type", "NoClientCert") not in CLIENT_AUTH:
            raise ValueError(f"{path}: unknown client_auth_type {tls['client_auth_type']!r}")
    users = doc.get("basic_auth_users") or {}
    if not isinstance(users, dict):
        raise ValueError(f"{path}: basic_auth_users must map user names to bcrypt hashes")
    config = WebConfig(tls, {str(u): str(h).encode() for u, h in users.items()}, path.parent)
    if tls is not None:
        try:
            config.ssl_context()
        except (OSError, ssl.SSLError) as exc:
            raise ValueError(f"{path}: TLS: {exc}") from None
    return config
