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
# Go's client auth types. Python's ssl module verifies every certificate it asks for: Go's
# RequestClientCert (asks, verifies nothing, takes every client) asks for none here, which takes
# the same clients; RequireAnyClientCert (any certificate, unverified) has no equal and needs a
# CA to verify against (see _client_auth).
CLIENT_AUTH = {
    "": ssl.CERT_NONE,
    "NoClientCert": ssl.CERT_NONE,
    "RequestClientCert": ssl.CERT_NONE,
    "RequireAnyClientCert": ssl.CERT_REQUIRED,
    "RequireClientCert": ssl.CERT_REQUIRED,  # exporter-toolkit's older name for the one above
    "VerifyClientCertIfGiven": ssl.CERT_OPTIONAL,
    "RequireAndVerifyClientCert": ssl.CERT_REQUIRED,
}
UNVERIFIED = {"RequireAnyClientCert", "RequireClientCert"}
# Go's HTTP/2 server refuses a TLS 1.2 cipher list without one of these.
HTTP2_CIPHERS = {"TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256", "TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256"}
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
HEADERS: dict[str, list[str]] = {  # the headers exporter-toolkit lets web.yml set; values
    "Strict-Transport-Security": [], "X-Content-Type-Options": ["nosniff"],
    "X-Frame-Options": ["deny", "sameorigin"], "X-XSS-Protection": [],
    "Content-Security-Policy": [],
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
        ctx.verify_mode = CLIENT_AUTH[tls.get("client_auth_type") or ""]
        if tls.get("client_ca_file"):
            ctx.load_verify_locations(self._path("client_ca_file"))
        elif tls.get("client_ca"):
            ctx.load_verify_locations(cadata=str(tls["client_ca"]))
        elif ctx.verify_mode != ssl.CERT_NONE:  # as Go: no CA given, the system's roots verify
            ctx.load_default_certs(ssl.Purpose.CLIENT_AUTH)
        suites = [CIPHERS[s] for s in tls.get("cipher_suites") or []]
        if names := [s for s in suites if s is not None]:
            ctx.set_ciphers(":".join(names))
        if tls.get("prefer_server_cipher_suites", True):
            ctx.options |= ssl.OP_CIPHER_SERVER_PREFERENCE
        if curves := tls.get("curve_preferences"):
            ctx.set_ecdh_curve(CURVES[curves[0]])  # Python's ssl takes one: the first
        return ctx

    def _load_pair(self, ctx: ssl.SSLContext) -> None:
        """Load the certificate and key, each from its file or inline (through a private file)."""
        with tempfile.TemporaryDirectory() as private:  # 0700: the key is never world-readable
            cert, key = (self._pem(name, Path(private)) for name in ("cert", "key"))
            ctx.load_cert_chain(cert, key)

    def _pem(self, name: str, private: Path) -> str:
        """Return the path of `name`_file, or of a private copy of the inline `name`."""
        tls = self.tls or {}
        if tls.get(f"{name}_file"):
            return self._path(f"{name}_file")
        copy = private / f"{name}.pem"
        copy.write_text(f"{tls[name]}\n")
        return str(copy)

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
    _http2_ciphers(tls, doc.get("http_server_config") or {}, where)
    if doc.get("rate_limit") is not None:
        log.warning("%s rate_limit is ignored: dsagent bounds connections instead", path)
    users = _users(doc.get("basic_auth_users"), f"{where} basic_auth_users")
    sans = frozenset((tls or {}).get("client_allowed_sans") or ())
    config = WebConfig(tls, users, headers, sans, path.parent)
    if tls is not None and tls.get("client_auth_type") in UNVERIFIED:
        log.warning("%s: client_auth_type %s verifies the client certificate against the CA "
                    "given (Python's ssl module cannot take one unverified)", path,
                    tls["client_auth_type"])  # fmt: skip
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
    for name in ("cert", "key"):  # each from its file or inline, as exporter-toolkit reads them
        if not (tls.get(f"{name}_file") or tls.get(name)):
            raise ValueError(f"{where}: missing one of {name} or {name}_file")
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


def _http2_ciphers(tls: dict[str, Any] | None, http: dict[str, Any], where: str) -> None:
    """Refuse what Go's HTTP/2 server refuses, so one web.yml means the same to both."""
    suites = (tls or {}).get("cipher_suites")
    if not suites or http.get("http2") is False or (tls or {}).get("min_version") == "TLS13":
        return
    if HTTP2_CIPHERS.isdisjoint(suites):
        raise ValueError(f"{where} tls_server_config.cipher_suites is missing an HTTP/2-required "
                         "AES_128_GCM_SHA256 cipher (TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256 or "
                         "TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256); add one, or set "
                         "http_server_config.http2: false")  # fmt: skip


def _client_auth(tls: dict[str, Any], where: str) -> None:
    kind = tls.get("client_auth_type") or ""
    if not isinstance(kind, str) or kind not in CLIENT_AUTH:
        raise ValueError(f"{where}.client_auth_type: invalid ClientAuth {kind!r} (one of "
                         f"{', '.join(k for k in CLIENT_AUTH if k)})")  # fmt: skip
    has_ca = bool(tls.get("client_ca_file") or tls.get("client_ca"))
    if has_ca and kind in ("", "NoClientCert"):
        raise ValueError(f"{where}: client CA's have been configured without a Client Auth Policy")
    if kind in UNVERIFIED and not has_ca:
        raise ValueError(f"{where}.client_auth_type {kind} takes a client certificate without "
                         "verifying it, which Python's ssl module cannot do: give client_ca_file "
                         "or client_ca to verify it against")  # fmt: skip
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
    out = {}
    for name, raw in headers.items():  # exporter-toolkit's validateHeaderConfig
        if name not in HEADERS:
            raise ValueError(f'{where}.headers: HTTP header "{name}" can not be configured')
        if isinstance(raw, bool) or not isinstance(raw, str | int | float):
            raise ValueError(f"{where}.headers.{name} must be a string")
        value, allowed = str(raw), HEADERS[name]  # YAML's 1 is Go's "1"
        if allowed and value not in allowed:
            raise ValueError(f"{where}.headers: invalid value for {name}. Expected one of: "
                             f"{allowed}, but got: {value!r}")  # fmt: skip
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
