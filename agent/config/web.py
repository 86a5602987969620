"""Prometheus exporter-toolkit's web.yml, all of it: TLS, client certificates, headers, users.

Every key of its documented format is read; a key it does not know is an error, as it is for
exporter-toolkit. The two settings Python's TLS cannot honour (HTTP/2, request rate limits)
are accepted and named once in the log as ignored.
"""

from __future__ import annotations

import logging
import re
import ssl
import tempfile
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

log = logging.getLogger(__name__)

TLS_VERSIONS = {"TLS10": ssl.TLSVersion.TLSv1, "TLS11": ssl.TLSVersion.TLSv1_1,
                "TLS12": ssl.TLSVersion.TLSv1_2, "TLS13": ssl.TLSVersion.TLSv1_3}  # fmt: skip
# Go's client auth types. Python's TLS verifies every certificate it asks for, so the two
# that take a certificate without verifying it need a CA here (or ask for none).
CLIENT_AUTH = {
    "NoClientCert": ssl.CERT_NONE,
    "RequestClientCert": ssl.CERT_NONE,
    "RequireAnyClientCert": ssl.CERT_REQUIRED,
    "VerifyClientCertIfGiven": ssl.CERT_OPTIONAL,
    "RequireAndVerifyClientCert": ssl.CERT_REQUIRED,
}
# Go's names (crypto/tls CipherSuites()) and OpenSSL's. TLS 1.3 suites are not configurable
# in Go either: they are accepted and left to the library.
CIPHERS = {
    "TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256": "ECDHE-ECDSA-AES128-GCM-SHA256",
    "TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384": "ECDHE-ECDSA-AES256-GCM-SHA384",
    "TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256": "ECDHE-RSA-AES128-GCM-SHA256",
    "TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384": "ECDHE-RSA-AES256-GCM-SHA384",
    "TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256": "ECDHE-ECDSA-CHACHA20-POLY1305",
    "TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256": "ECDHE-RSA-CHACHA20-POLY1305",
    "TLS_ECDHE_ECDSA_WITH_AES_128_CBC_SHA": "ECDHE-ECDSA-AES128-SHA",
    "TLS_ECDHE_ECDSA_WITH_AES_256_CBC_SHA": "ECDHE-ECDSA-AES256-SHA",
    "TLS_ECDHE_RSA_WITH_AES_128_CBC_SHA": "ECDHE-RSA-AES128-SHA",
    "TLS_ECDHE_RSA_WITH_AES_256_CBC_SHA": "ECDHE-RSA-AES256-SHA",
    "TLS_AES_128_GCM_SHA256": None,
    "TLS_AES_256_GCM_SHA384": None,
    "TLS_CHACHA20_POLY1305_SHA256": None,
}
CURVES = {"CurveP256": "prime256v1", "CurveP384": "secp384r1", "CurveP521": "secp521r1",
          "X25519": "X25519"}  # fmt: skip
TLS_KEYS = {"cert", "key", "client_ca", "cert_file", "key_file", "client_auth_type",
            "client_ca_file", "client_allowed_sans", "min_version", "max_version",
            "cipher_suites", "prefer_server_cipher_suites", "curve_preferences"}  # fmt: skip
HEADERS = {  # the response headers exporter-toolkit lets web.yml set, and what each takes
    "Content-Security-Policy": None, "X-XSS-Protection": None, "Strict-Transport-Security": None,
    "X-Frame-Options": {"deny", "sameorigin"}, "X-Content-Type-Options": {"nosniff"},
}  # fmt: skip
BCRYPT = re.compile(r"^\$2[abxy]?\$\d{2}\$[./A-Za-z0-9]{53}$")


@dataclass
class WebConfig:
    """What web.yml says; relative paths are relative to the file, as in exporter-toolkit."""

    tls: dict[str, Any] | None = None
    users: dict[str, bytes] = field(default_factory=dict)  # user -> bcrypt hash
    headers: dict[str, str] = field(default_factory=dict)  # added to every response
    allowed_sans: frozenset[str] = frozenset()  # a client certificate must carry one of these
    base: Path = Path(".")

    def ssl_context(self) -> ssl.SSLContext | None:
        """Build the server's TLS context, or None for plain HTTP; raise on bad files."""
        if not self.tls:
            return None
        tls = self.tls
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.minimum_version = TLS_VERSIONS[tls.get("min_version", "TLS12")]
        ctx.maximum_version = TLS_VERSIONS[tls.get("max_version", "TLS13")]
        self._load_pair(ctx)
        ctx.verify_mode = CLIENT_AUTH[tls.get("client_auth_type", "NoClientCert")]
        if tls.get("client_ca_file"):
            ctx.load_verify_locations(self._path("client_ca_file"))
        if tls.get("client_ca"):
            ctx.load_verify_locations(cadata=str(tls["client_ca"]))
        suites = [CIPHERS[s] for s in tls.get("cipher_suites") or []]
        if names := [s for s in suites if s is not None]:
            ctx.set_ciphers(":".join(names))
        if tls.get("prefer_server_cipher_suites", True):
            ctx.options |= ssl.OP_CIPHER_SERVER_PREFERENCE
        if curves := tls.get("curve_preferences"):
            ctx.set_ecdh_curve(CURVES[curves[0]])  # Python's ssl takes one: the first
        return ctx

    def _load_pair(self, ctx: ssl.SSLContext) -> None:
        """Load the certificate and key, from files or inline PEM (through a private file)."""
        tls = self.tls or {}
        if tls.get("cert_file"):
            ctx.load_cert_chain(self._path("cert_file"), self._path("key_file"))
            return
        with tempfile.TemporaryDirectory() as private:  # 0700: the key is never world-readable
            pair = Path(private) / "pair.pem"
            pair.write_text(f"{tls['cert']}\n{tls['key']}\n")
            ctx.load_cert_chain(str(pair))

    def _path(self, key: str) -> str:
        value = Path(str(self.tls[key] if self.tls else ""))
        return str(value if value.is_absolute() else self.base / value)


def load_web_config(path: Path) -> WebConfig:
    """Read and check web.yml; raise ValueError naming the file and the key."""
    try:
        doc = yaml.safe_load(path.read_text(encoding="utf-8"))
    except RecursionError:
        raise ValueError(f"cannot read {path}: nested too deeply") from None
    except (OSError, ValueError, yaml.YAMLError) as exc:
        raise ValueError(f"cannot read {path}: {exc}") from None
    doc = {} if doc is None else doc
    if not isinstance(doc, dict):
        raise ValueError(f"{path}: expected a mapping")
    where = f"{path}:"
    _known(doc, {"tls_server_config", "http_server_config", "basic_auth_users", "rate_limit"},
           where)  # fmt: skip
    tls = _tls(doc.get("tls_server_config"), f"{where} tls_server_config")
    headers = _http(doc.get("http_server_config"), f"{where} http_server_config")
    if doc.get("rate_limit") is not None:
        log.warning("%s rate_limit is ignored: dsagent bounds connections instead", path)
    users = _users(doc.get("basic_auth_users"), f"{where} basic_auth_users")
    sans = frozenset((tls or {}).get("client_allowed_sans") or ())
    config = WebConfig(tls, users, headers, sans, path.parent)
    if tls is not None:
        try:
            config.ssl_context()
        except (OSError, ssl.SSLError, ValueError) as exc:
            raise ValueError(f"{path}: TLS: {exc}") from None
    return config


def _known(section: dict[Any, Any], keys: set[str], where: str) -> None:
    unknown = sorted(str(k) for k in section if k not in keys)
    if unknown:
        raise ValueError(f"{where} unknown key {unknown[0]!r} (known: {', '.join(sorted(keys))})")


def _strings(value: Any, where: str, allowed: Callable[[str], bool] = lambda s: True) -> list[str]:
    if value is None:
        return []
    if not isinstance(value, list) or not all(isinstance(v, str) and allowed(v) for v in value):
        raise ValueError(f"{where} must be a list of known names")
    return list(value)


def _tls(tls: Any, where: str) -> dict[str, Any] | None:
    if tls is None:
        return None
    if not isinstance(tls, dict):
        raise ValueError(f"{where} must be a mapping")
    _known(tls, TLS_KEYS, where)
    for key in ("cert", "key", "client_ca", "cert_file", "key_file", "client_ca_file"):
        if tls.get(key) is not None and not isinstance(tls[key], str):
            raise ValueError(f"{where}.{key} must be a string")
    files, inline = bool(tls.get("cert_file") or tls.get("key_file")), bool(tls.get("cert"))
    if (
        files == inline
        or (files and not (tls.get("cert_file") and tls.get("key_file")))
        or (inline and not tls.get("key"))
    ):
        raise ValueError(f"{where} needs cert_file and key_file, or cert and key (inline)")
    for key in ("min_version", "max_version"):
        value = tls.get(key)
        if value is not None and (not isinstance(value, str) or value not in TLS_VERSIONS):
            raise ValueError(f"{where}.{key} must be one of {', '.join(TLS_VERSIONS)}")
    _client_auth(tls, where)
    _strings(tls.get("cipher_suites"), f"{where}.cipher_suites", CIPHERS.__contains__)
    _strings(tls.get("curve_preferences"), f"{where}.curve_preferences", CURVES.__contains__)
    _strings(tls.get("client_allowed_sans"), f"{where}.client_allowed_sans")
    if not isinstance(tls.get("prefer_server_cipher_suites", True), bool):
        raise ValueError(f"{where}.prefer_server_cipher_suites must be true or false")
    return tls


def _client_auth(tls: dict[str, Any], where: str) -> None:
    kind = tls.get("client_auth_type", "NoClientCert")
    if not isinstance(kind, str) or kind not in CLIENT_AUTH:
        raise ValueError(f"{where}.client_auth_type must be one of {', '.join(CLIENT_AUTH)}")
    has_ca = bool(tls.get("client_ca_file") or tls.get("client_ca"))
    if CLIENT_AUTH[kind] != ssl.CERT_NONE and not has_ca:
        raise ValueError(f"{where}.client_auth_type {kind} needs client_ca_file or client_ca")
    if tls.get("client_allowed_sans") and kind not in ("RequireAnyClientCert",
                                                      "RequireAndVerifyClientCert"):  # fmt: skip
        raise ValueError(f"{where}.client_allowed_sans needs a client_auth_type that "
                         "requires a certificate")  # fmt: skip


def _http(http: Any, where: str) -> dict[str, str]:
    if http is None:
        return {}
    if not isinstance(http, dict):
        raise ValueError(f"{where} must be a mapping")
    _known(http, {"http2", "headers"}, where)
    if http.get("http2") is True:
        log.info("%s.http2 is ignored: dsagent speaks HTTP/1.1", where)
    headers = http.get("headers") or {}
    if not isinstance(headers, dict):
        raise ValueError(f"{where}.headers must be a mapping")
    _known(headers, set(HEADERS), f"{where}.headers")
    out = {}
    for name, value in headers.items():
        allowed = HEADERS[name]
        if not isinstance(value, str) or (allowed and value.lower() not in allowed):
            raise ValueError(f"{where}.headers.{name}: {value!r} is not allowed")
        if value:
            out[name] = value
    return out


def _users(users: Any, where: str) -> dict[str, bytes]:
    if users is None:
        return {}
    if not isinstance(users, dict):
        raise ValueError(f"{where} must map user names to bcrypt hashes")
    out = {}
    for user, hashed in users.items():
        if not isinstance(hashed, str) or not BCRYPT.match(hashed):
            raise ValueError(f'{where}.{user} is not a bcrypt hash (htpasswd -nBC 10 "")')
        out[str(user)] = hashed.encode()
    return out
