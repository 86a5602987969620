"""Every file of exporter-toolkit's web/testdata, through check-config and a live TLS handshake.

The files are prometheus/exporter-toolkit's own (commit 19a7c2d, tests/fixtures/exporter-toolkit):
what its tls_config_test.go expects of each is what dsagent must do, with two documented
differences: RequireAnyClientCert without a CA is refused (Python's ssl module cannot take a
client certificate unverified), and rate_limit is read but not applied.
"""

from __future__ import annotations

import contextlib
import http.client
import ssl
from collections.abc import Iterator
from pathlib import Path

import pytest

from agent.cli import check_config
from agent.config.web import WebConfig, load_web_config
from agent.store import SeriesStore
from agent.web.connections import Connections
from agent.web.server import WebServer
from tests.conftest import ROOT, free_port

DIR = ROOT / "tests" / "fixtures" / "exporter-toolkit"
FILES = sorted(p.name for p in DIR.iterdir() if p.suffix in (".yml", ".yaml"))
# Why dsagent refuses each file exporter-toolkit refuses (its error, or dsagent's words for it).
REFUSED = {
    "web_config_junk.yml": "expected a mapping",  # YAML, but a string
    "web_config_junk_key.yml": "unknown key",
    "web_config_noAuth_certPath_empty.bad.yml": "missing one of cert or cert_file",
    "web_config_noAuth_cert_empty.bad.yml": "missing one of cert or cert_file",
    "web_config_noAuth_keyPath_empty.bad.yml": "missing one of key or key_file",
    "web_config_noAuth_key_empty.bad.yml": "missing one of key or key_file",
    "web_config_noAuth_certPath_keyPath_empty.bad.yml": "missing one of cert or cert_file",
    "web_config_noAuth_certPath_invalid.bad.yml": "No such file",
    "web_config_noAuth_keyPath_invalid.bad.yml": "No such file",
    "web_config_noAuth_certPath_keyPath_invalid.bad.yml": "No such file",
    "web_config_noAuth.bad.yml": "client CA's have been configured without a Client Auth Policy",
    # Go reads the CA file first; this file also has no client_auth_type, said first here
    "web_config_auth_clientCAs_invalid.bad.yml": "without a Client Auth Policy",
    "web_config_auth_user_list_invalid.bad.yml": "not a bcrypt hash",
    "web_config_noAuth_inventedCiphers.bad.yml": "cipher_suites",
    "web_config_noAuth_inventedCurves.bad.yml": "curve_preferences",
    "web_config_noAuth_wrongTLSVersion.bad.yml": "min_version",
    "web_config_noAuth_noHTTP2Cipher.bad.yml": "HTTP/2-required AES_128_GCM_SHA256",
    "web_config_headers_content_type_options.bad.yml": "invalid value for X-Content-Type-Options",
    "web_config_headers_frame_options.bad.yml": "invalid value for X-Frame-Options",
    "web_config_headers_extra_header.bad.yml": 'HTTP header "Content-Type" can not be configured',
    # exporter-toolkit takes these; Python's ssl module cannot take a certificate unverified
    "tls_config_noAuth.requireanyclientcert.good.yml": "without verifying it",
    "tls_config_noAuth.requireanyclientcertkeyinline.good.yml": "without verifying it",
}
# Verifying without a CA file checks against the system's roots, as Go does: a self-signed
# client is refused at the handshake (exporter-toolkit's "blocking" file tests just that).
SYSTEM_ROOTS = {"web_config_auth_clientCAs_missing.bad.yml", "web_config_noAuth.good.blocking.yml"}
WRONG_SANS = {"web_config_auth_client_san.bad.yaml"}


def test_every_file_is_accounted_for() -> None:
    assert len(FILES) == 41, FILES  # and 7 certificates and keys: 48 files
    assert set(REFUSED) | SYSTEM_ROOTS | WRONG_SANS <= set(FILES)


@pytest.mark.parametrize("name", FILES)
def test_check_config_takes_the_good_files_and_refuses_the_bad_with_the_reason(
    name: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = tmp_path / "agent.toml"
    config.write_text(f'[agent]\nstate_dir = "{tmp_path}"\n'
                      f'[http]\nweb_config = "{DIR / name}"\n')  # fmt: skip
    code = check_config(config)
    said = capsys.readouterr()
    if name in REFUSED:
        assert code == 2, said.out
        assert REFUSED[name] in said.err, said.err
        assert "http.web_config" in said.err, "the key path is named"
    else:
        assert code == 0, said.err
        assert "config OK" in said.out


@contextlib.contextmanager
def serving(web: WebConfig) -> Iterator[str]:
    """Serve /healthz with the file's TLS context, SANs and headers; yield its https URL."""
    port = free_port()
    server = WebServer(f"127.0.0.1:{port}", SeriesStore(), lambda: True,
                       connections=Connections(limit=8, head_timeout=2.0))  # fmt: skip
    server.configure(web.ssl_context(), None, web.allowed_sans, web.headers)
    server.serve_in_thread()
    try:
        yield f"https://127.0.0.1:{port}/healthz"
    finally:
        server.shutdown()
        server.server_close()


def client_cert(name: str, web: WebConfig) -> tuple[str, str] | None:
    """The certificate a client of this file presents: none unless one is asked for."""
    tls = web.tls or {}
    if tls.get("client_auth_type") in (None, "", "NoClientCert", "RequestClientCert",
                                       "VerifyClientCertIfGiven"):  # fmt: skip
        return None
    which = "client2_selfsigned" if "client_san" in name else "client_selfsigned"
    return str(DIR / f"{which}.pem"), str(DIR / f"{which}.key")


TLS_FILES = [n for n in FILES if n not in REFUSED and "tls_server_config" in (DIR / n).read_text()]


def get(url: str, cert: tuple[str, str] | None) -> int:
    """GET over TLS trusting server.crt itself (OpenSSL 3 refuses the CA's anyExtendedKeyUsage)."""
    ctx = ssl.create_default_context(cafile=str(DIR / "server.crt"))
    ctx.verify_flags |= ssl.VERIFY_X509_PARTIAL_CHAIN
    if cert is not None:
        ctx.load_cert_chain(*cert)
    port = int(url.split(":")[2].split("/", maxsplit=1)[0])
    conn = http.client.HTTPSConnection("127.0.0.1", port, context=ctx, timeout=5)
    try:
        conn.request("GET", "/healthz")
        return conn.getresponse().status
    finally:
        conn.close()


@pytest.mark.integration
@pytest.mark.parametrize("name", TLS_FILES)
def test_a_live_handshake_with_each_good_tls_file(name: str) -> None:
    web = load_web_config(DIR / name)
    cert = client_cert(name, web)
    with serving(web) as url:
        if name in SYSTEM_ROOTS | WRONG_SANS:  # refused at the handshake (or right after, TLS 1.3)
            with pytest.raises((ssl.SSLError, ConnectionError)):
                get(url, cert)
        else:
            assert get(url, cert) == 200
        if name in SYSTEM_ROOTS:  # the same client, asked for no certificate, gets in
            relaxed = WebConfig({**(web.tls or {}), "client_auth_type": "NoClientCert"},
                                base=DIR)  # fmt: skip
            with serving(relaxed) as other:
                assert get(other, None) == 200


def test_yaml_numbers_are_header_values_as_go_reads_them() -> None:
    web = load_web_config(DIR / "web_config_headers.good.yml")
    assert web.headers["X-XSS-Protection"] == "1"
    assert web.headers["X-Frame-Options"] == "deny"


def test_a_verifying_type_without_a_ca_loads_the_system_roots() -> None:
    web = load_web_config(DIR / "web_config_noAuth.good.blocking.yml")
    ctx = web.ssl_context()
    assert ctx is not None and ctx.verify_mode == ssl.CERT_REQUIRED
    assert ctx.cert_store_stats()["x509_ca"] > 0 or not ssl.get_default_verify_paths().cafile, (
        "the system's CA certificates, where the system has any"
    )
