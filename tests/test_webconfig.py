"""web.yml in exporter-toolkit's format, good and bad, and what a server built from it does."""

from __future__ import annotations

import ssl
from collections.abc import Callable
from pathlib import Path

import bcrypt
import pytest
import requests

from agent.config.web import load_web_config
from tests.conftest import AgentProcess, wait_for
from tests.test_security import certs, openssl

__all__ = ["certs"]  # the module-scoped CA and certificates fixture
HASH = bcrypt.hashpw(b"pw", bcrypt.gensalt(rounds=4)).decode()
TLS = "tls_server_config:\n  cert_file: {d}/server.pem\n  key_file: {d}/server.key\n"
GOOD = [
    "basic_auth_users:\n  prom: '{h}'\n",
    TLS,
    TLS + "  min_version: TLS12\n  max_version: TLS13\n",
    TLS + "  cipher_suites: [TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256, TLS_AES_128_GCM_SHA256]\n"
    "  prefer_server_cipher_suites: false\n  curve_preferences: [CurveP256, X25519]\n",
    TLS + "  client_auth_type: RequireAndVerifyClientCert\n  client_ca_file: {d}/ca.pem\n"
    "  client_allowed_sans: [client.example]\n",
    TLS + "  client_auth_type: VerifyClientCertIfGiven\n  client_ca_file: {d}/ca.pem\n",
    TLS + "  client_auth_type: RequestClientCert\n",
    TLS + "  client_auth_type: RequireAndVerifyClientCert\n",  # the system's roots verify
    "http_server_config:\n  http2: true\n  headers:\n    X-Frame-Options: deny\n"
    "    X-Content-Type-Options: nosniff\n    Strict-Transport-Security: max-age=31536000\n",
    "rate_limit:\n  interval: 1s\n  burst: 10\n",
]
BAD = [
    ("tls_server_config:\n  cert_file: a\n  key_file: b\n  min_version: [TLS12]\n", "min_version"),
    (TLS + "  client_allowed_san: [x]\n", "unknown key 'client_allowed_san'"),
    (TLS + "  max_version: TLS14\n", "max_version"),
    (TLS + "  cipher_suites: [TLS_RSA_WITH_RC4_128_SHA]\n", "cipher_suites"),
    (TLS + "  curve_preferences: [CurveP999]\n", "curve_preferences"),
    (TLS + "  client_auth_type: RequireAnyClientCert\n", "without verifying it"),
    (TLS + "  client_ca_file: {d}/ca.pem\n", "without a Client Auth Policy"),
    (TLS + "  client_auth_type: Sometimes\n", "client_auth_type"),
    (TLS + "  client_allowed_sans: [x]\n", "requires a certificate"),
    ("tls_server_config:\n  cert_file: {d}/server.pem\n", "missing one of key or key_file"),
    ("basic_auth_users:\n  prom: plain-text-password\n", "not a bcrypt hash"),
    ("http_server_config:\n  headers:\n    X-Powered-By: me\n", "can not be configured"),
    ("http_server_config:\n  headers:\n    X-Frame-Options: DENY\n", "invalid value for"),
    ("cipher_suites: []\n", "unknown key 'cipher_suites'"),
    ("[]\n", "expected a mapping"),
    ("groups: " + "[" * 3000 + "]" * 3000 + "\n", "nested too deeply"),
]


@pytest.mark.parametrize("text", GOOD)
def test_every_documented_key_is_accepted(text: str, certs: Path, tmp_path: Path) -> None:
    path = tmp_path / "web.yml"
    path.write_text(text.format(d=certs, h=HASH))
    load_web_config(path)


@pytest.mark.parametrize(("text", "why"), BAD)
def test_bad_files_are_refused_naming_the_key(
    text: str, why: str, certs: Path, tmp_path: Path
) -> None:
    path = tmp_path / "web.yml"
    path.write_text(text.format(d=certs, h=HASH))
    with pytest.raises(ValueError, match=why) as info:
        load_web_config(path)
    assert str(path) in str(info.value) or "cannot read" in str(info.value)


def test_inline_certificate_and_key(certs: Path, tmp_path: Path) -> None:
    cert, key = (certs / "server.pem").read_text(), (certs / "server.key").read_text()
    indent = lambda text: "".join(f"    {line}\n" for line in text.splitlines())  # noqa: E731
    path = tmp_path / "web.yml"
    path.write_text(f"tls_server_config:\n  cert: |\n{indent(cert)}  key: |\n{indent(key)}")
    ctx = load_web_config(path).ssl_context()
    assert isinstance(ctx, ssl.SSLContext)
    assert list(tmp_path.iterdir()) == [path], "the key was not left on disk"


def client_cert(certs: Path, out: Path, san: str) -> tuple[str, str]:
    """Sign a client certificate carrying one SAN with the test CA."""
    key, csr, pem, ext = (out / f"{san}.{x}" for x in ("key", "csr", "pem", "ext"))
    openssl("req", "-newkey", "rsa:2048", "-nodes", "-subj", "/CN=c", "-keyout", str(key),
            "-out", str(csr))  # fmt: skip
    ext.write_text(f"subjectAltName=DNS:{san}\nextendedKeyUsage=clientAuth\n")
    openssl("x509", "-req", "-in", str(csr), "-CA", str(certs / "ca.pem"), "-CAkey",
            str(certs / "ca.key"), "-CAcreateserial", "-days", "2", "-extfile", str(ext),
            "-out", str(pem))  # fmt: skip
    return str(pem), str(key)


def test_allowed_sans_and_headers_on_a_running_agent(
    agent_factory: Callable[..., AgentProcess], certs: Path, tmp_path: Path
) -> None:
    web = tmp_path / "web.yml"
    web.write_text(
        TLS.format(d=certs) + "  client_auth_type: RequireAndVerifyClientCert\n"
        f"  client_ca_file: {certs}/ca.pem\n  client_allowed_sans: [scraper.example]\n"
        "http_server_config:\n  headers:\n    X-Frame-Options: deny\n"
    )
    agent = agent_factory(f'[http]\nlisten = "127.0.0.1:{{port}}"\nweb_config = "{web}"\n')
    url, ca = f"https://127.0.0.1:{agent.port}/healthz", str(certs / "ca.pem")
    good = client_cert(certs, tmp_path, "scraper.example")
    other = client_cert(certs, tmp_path, "intruder.example")
    wait_for(lambda: requests.get(url, verify=ca, cert=good, timeout=2).ok, 20, "mTLS health")
    answer = requests.get(url, verify=ca, cert=good, timeout=5)
    assert answer.headers["X-Frame-Options"] == "deny"
    with pytest.raises(requests.RequestException):
        requests.get(url, verify=ca, cert=other, timeout=5)  # signed by the CA, wrong SAN
