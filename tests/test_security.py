"""Secure by default: TLS, basic auth, mTLS, roles, audit, secrets that never leak, fuzzing."""

from __future__ import annotations

import json
import signal
import socket
import ssl
import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import bcrypt
import pytest
import requests
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from agent.config import TokenConfig
from agent.store import SeriesStore
from agent.web.admin import AdminApi, endpoint, redact
from agent.web.audit import AuditLog
from agent.web.auth import load_tokens
from agent.web.server import WebServer
from tests.conftest import AgentProcess, free_port, need_binary, wait_for
from tests.test_cli import dsagent


def openssl(*args: str) -> None:
    subprocess.run([need_binary("openssl"), *args], check=True, capture_output=True, timeout=60)


@pytest.fixture(scope="module")
def certs(tmp_path_factory: pytest.TempPathFactory) -> Path:
    d = tmp_path_factory.mktemp("certs")
    openssl(
        "req",
        "-x509",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-days",
        "2",
        "-subj",
        "/CN=test-ca",
        "-keyout",
        str(d / "ca.key"),
        "-out",
        str(d / "ca.pem"),
    )
    for name in ("server", "client"):
        openssl(
            "req",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-subj",
            f"/CN={name}",
            "-keyout",
            str(d / f"{name}.key"),
            "-out",
            str(d / f"{name}.csr"),
        )
        ext = d / f"{name}.ext"
        ext.write_text(
            "subjectAltName=IP:127.0.0.1\n" if name == "server" else "extendedKeyUsage=clientAuth\n"
        )
        openssl(
            "x509",
            "-req",
            "-in",
            str(d / f"{name}.csr"),
            "-CA",
            str(d / "ca.pem"),
            "-CAkey",
            str(d / "ca.key"),
            "-CAcreateserial",
            "-days",
            "2",
            "-extfile",
            str(ext),
            "-out",
            str(d / f"{name}.pem"),
        )
    return d


def web_yml(d: Path, certs: Path, mtls: bool = False, users: bool = True) -> Path:
    hashed = bcrypt.hashpw(b"scrape-pw", bcrypt.gensalt(rounds=4)).decode()
    text = (
        f"tls_server_config:\n  cert_file: {certs / 'server.pem'}\n"
        f"  key_file: {certs / 'server.key'}\n"
        "  min_version: TLS12\n"
    )
    if mtls:
        text += "  client_auth_type: RequireAndVerifyClientCert\n"
        text += f"  client_ca_file: {certs / 'ca.pem'}\n"
    if users:
        text += f"basic_auth_users:\n  prometheus: '{hashed}'\n"
    path = d / ("web-mtls.yml" if mtls else "web.yml")
    path.write_text(text)
    return path


def test_a_non_loopback_listener_needs_tls_or_insecure(tmp_path: Path, certs: Path) -> None:
    config = tmp_path / "a.toml"
    config.write_text('[http]\nlisten = "0.0.0.0:9840"\n')
    out = dsagent("check-config", "--config", str(config))
    assert out.returncode == 2 and "http.listen: 0.0.0.0 is not loopback" in out.stderr
    config.write_text('[http]\nlisten = "0.0.0.0:9840"\ninsecure = true\n')
    assert dsagent("check-config", "--config", str(config)).returncode == 0
    config.write_text(
        f'[http]\nlisten = "0.0.0.0:9840"\nweb_config = "{web_yml(tmp_path, certs)}"\n'
    )
    assert dsagent("check-config", "--config", str(config)).returncode == 0


def test_tls_with_basic_auth_and_plain_http_refused(
    agent_factory: Callable[..., AgentProcess], certs: Path, tmp_path: Path
) -> None:
    agent = agent_factory(
        f'[http]\nlisten = "127.0.0.1:{{port}}"\nweb_config = "{web_yml(tmp_path, certs)}"\n'
    )
    url = f"https://127.0.0.1:{agent.port}"
    ca = str(certs / "ca.pem")
    wait_for(lambda: requests.get(url + "/healthz", verify=ca, timeout=2).ok, 20, "TLS health")
    assert requests.get(url + "/metrics", verify=ca, timeout=5).status_code == 401
    assert (
        requests.get(
            url + "/metrics", verify=ca, timeout=5, auth=("prometheus", "nope")
        ).status_code
        == 401
    )
    ok = requests.get(url + "/metrics", verify=ca, timeout=5, auth=("prometheus", "scrape-pw"))
    assert ok.status_code == 200 and "dsagent_build_info" in ok.text
    with pytest.raises(requests.RequestException):
        requests.get(f"http://127.0.0.1:{agent.port}/metrics", timeout=5)


def test_mutual_tls(
    agent_factory: Callable[..., AgentProcess], certs: Path, tmp_path: Path
) -> None:
    yml = web_yml(tmp_path, certs, mtls=True, users=False)
    agent = agent_factory(f'[http]\nlisten = "127.0.0.1:{{port}}"\nweb_config = "{yml}"\n')
    url = f"https://127.0.0.1:{agent.port}/healthz"
    ca = str(certs / "ca.pem")
    client = (str(certs / "client.pem"), str(certs / "client.key"))
    wait_for(lambda: requests.get(url, verify=ca, cert=client, timeout=2).ok, 20, "mTLS health")
    with pytest.raises(requests.RequestException):
        requests.get(url, verify=ca, timeout=5)


SECRETS = {
    "viewer": "tok-viewer-5f1e",
    "operator": "tok-operator-77ab",
    "admin": "tok-admin-9c3d",
    "expired": "tok-expired-0000",
    "webhook": "hook-secret-a1b2",
    "es": "es-pass-c3d4",
    "dingtalk": "ding-token-e5f6",
}


@pytest.fixture
def secured(agent_factory: Callable[..., AgentProcess], tmp_path: Path) -> Iterator[AgentProcess]:
    for name, value in SECRETS.items():
        (tmp_path / name).write_text(value + "\n")
    dead = free_port()
    tokens = "".join(
        f'[[api_tokens]]\nname = "{n}"\nrole = "{"viewer" if n == "expired" else n}"\n'
        f'token_file = "{tmp_path / n}"\n'
        + ('expires = "2020-01-01T00:00:00Z"\n' if n == "expired" else "")
        for n in ("viewer", "operator", "admin", "expired")
    )
    config = (
        tokens
        + f'[[receivers]]\nname = "hook"\ntype = "webhook"\nurl = "http://127.0.0.1:{dead}/h"\n'
        f'secret_file = "{tmp_path / "webhook"}"\n'
        f'[[receivers]]\nname = "ding"\ntype = "dingtalk"\n'
        f'url = "http://127.0.0.1:{dead}/robot/send?access_token={SECRETS["dingtalk"]}"\n'
        f'[elasticsearch]\nhosts = ["http://127.0.0.1:{dead}"]\nusername = "dsagent"\n'
        f'password_file = "{tmp_path / "es"}"\nverify_certs = false\n'
    )
    agent = agent_factory(config)
    agent.wait_healthy()
    yield agent


def call(
    agent: AgentProcess, method: str, path: str, token: str | None = None, body: object = None
) -> requests.Response:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    return requests.request(method, agent.url + path, headers=headers, json=body, timeout=10)


def test_roles_tokens_and_the_audit_log(secured: AgentProcess) -> None:
    assert call(secured, "GET", "/api/v1/alerts").status_code == 401
    assert call(secured, "GET", "/api/v1/alerts", "wrong").status_code == 401
    expired = call(secured, "GET", "/api/v1/alerts", SECRETS["expired"])
    assert expired.status_code == 401 and expired.json()["error"] == "token expired"
    assert call(secured, "GET", "/api/v1/alerts", SECRETS["viewer"]).status_code == 200
    body = {"matchers": ["alertname=GpuLost"], "duration": "1h", "comment": "swap"}
    assert call(secured, "POST", "/api/v1/silences", SECRETS["viewer"], body).status_code == 403
    made = call(secured, "POST", "/api/v1/silences", SECRETS["operator"], body)
    assert made.status_code == 201 and made.json()["created_by"] == "operator"
    assert call(secured, "DELETE", f"/api/v1/silences/{made.json()['id']}", SECRETS["operator"]).ok
    assert call(secured, "GET", "/api/v1/config", SECRETS["operator"]).status_code == 403
    assert call(secured, "GET", "/api/v1/config", SECRETS["admin"]).status_code == 200
    assert call(secured, "POST", "/api/v1/reload", SECRETS["operator"]).json() == {"reloaded": True}
    assert call(secured, "GET", "/api/v1/nope", SECRETS["admin"]).status_code == 404
    assert call(secured, "DELETE", "/api/v1/alerts", SECRETS["admin"]).status_code == 405
    audit = [json.loads(x) for x in (secured.state / "audit.log").read_text().splitlines()]
    assert [(a["who"], a["method"], a["path"], a["status"]) for a in audit[:5]] == [
        (None, "GET", "/api/v1/alerts", 401),
        (None, "GET", "/api/v1/alerts", 401),
        (None, "GET", "/api/v1/alerts", 401),
        ("viewer", "GET", "/api/v1/alerts", 200),
        ("viewer", "POST", "/api/v1/silences", 403),
    ]
    assert all(
        {"@timestamp", "who", "role", "method", "path", "status", "remote"} <= a.keys()
        for a in audit
    )


def test_no_secret_appears_anywhere(secured: AgentProcess, tmp_path: Path) -> None:
    env = {"DSAGENT_TOKEN": SECRETS["operator"]}
    outputs = []
    for args in (
        ["version"],
        ["check-config", "--config", str(secured.config)],
        ["rules", "check"],
        ["rules", "export"],
        ["silence", "add", "alertname=X", "--comment", "c", "--config", str(secured.config)],
        ["silence", "list", "--config", str(secured.config)],
    ):
        out = dsagent(*args, env=env)
        outputs += [out.stdout, out.stderr]
    for path in (
        "/metrics",
        "/healthz",
        "/readyz",
        "/api/v1/whoami",
        "/api/v1/alerts",
        "/api/v1/rules",
        "/api/v1/silences",
        "/api/v1/outbox",
        "/api/v1/config",
    ):
        outputs.append(call(secured, "GET", path, SECRETS["admin"]).text)
    time.sleep(3)  # let the dead receivers and Elasticsearch fail a few times, and log it
    outputs.append(secured.log())
    outputs += [
        p.read_text(errors="replace")
        for p in secured.state.rglob("*")
        if p.is_file() and p.suffix in (".log", ".json", ".ndjson")
    ]
    config = call(secured, "GET", "/api/v1/config", SECRETS["admin"]).json()
    assert config["receivers"][1]["url"] == "http://127.0.0.1/<redacted>" or config["receivers"][1][
        "url"
    ].endswith("/<redacted>")
    text = "\n".join(outputs)
    assert "elasticsearch: certificate verification is OFF" in secured.log()
    for name, value in SECRETS.items():
        assert value not in text, f"the {name} secret leaked"


def test_redaction_of_urls_and_secret_keys() -> None:
    got = redact(
        {
            "url": "https://u:p@hooks.slack.com/services/T0/B0/xyz?x=1",
            "hosts": ["https://es:9200"],
            "password": "pw",
            "secret_file": "/etc/s",
        }
    )
    assert got == {
        "url": "https://hooks.slack.com/<redacted>",
        "hosts": ["https://es:9200"],
        "password": "<redacted>",
        "secret_file": "/etc/s",
    }


@pytest.fixture(scope="module")
def fuzz_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[int, WebServer]]:
    d = tmp_path_factory.mktemp("fuzz")
    (d / "t").write_text("fuzz-token")
    tokens = load_tokens([TokenConfig(name="a", role="admin", token_file=d / "t")])
    api = AdminApi(
        tokens,
        [endpoint("POST", "/api/v1/echo", "viewer", lambda b, p, t: (200, b))],
        AuditLog(d / "audit.log", 1 << 20),
    )
    port = free_port()
    server = WebServer(f"127.0.0.1:{port}", SeriesStore(), lambda: True, admin=api, max_body=4096)
    server.serve_in_thread()
    yield port, server
    server.shutdown()
    server.server_close()


def raw(port: int, data: bytes) -> bytes:
    """Send bytes, half-close, and return the whole reply (what arrived before a reset)."""
    chunks = []
    with socket.create_connection(("127.0.0.1", port), timeout=5) as conn:
        try:
            conn.sendall(data)
            conn.shutdown(socket.SHUT_WR)
        except OSError:  # the server answered and closed before taking it all (a huge head)
            pass
        try:
            while chunk := conn.recv(65536):
                chunks.append(chunk)
        except ConnectionResetError:
            pass
    return b"".join(chunks)


METHODS = st.sampled_from([b"GET", b"POST", b"DELETE", b"HEAD", b"PUT", b"\x00", b"G\xc3T"])
PATHS = st.sampled_from(
    [
        b"/metrics",
        b"/healthz",
        b"/readyz",
        b"/api/v1/echo",
        b"/api/v1/x",
        b"/api/v1/silences/../../etc/passwd",
        b"/" + b"a" * 5000,
        b"%%%",
        b"",
    ]
)


REQUESTS = st.tuples(METHODS, PATHS, st.binary(max_size=300),
                     st.sampled_from([b"", b"Bearer fuzz-token", b"Bearer \xff\xfe", b"Basic !!!"]),
                     st.sampled_from([b"0", b"10", b"-5", b"99999999999", b"x"]))  # fmt: skip


@settings(max_examples=120, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])  # fmt: skip
@given(REQUESTS)
def test_fuzzed_requests_never_get_a_500_or_a_crash(
    fuzz_server: tuple[int, WebServer], req: tuple[bytes, bytes, bytes, bytes, bytes]
) -> None:
    port, _ = fuzz_server
    method, path, body, auth, length = req
    request = (
        method
        + b" "
        + path
        + b" HTTP/1.1\r\nHost: x\r\nAuthorization: "
        + auth
        + b"\r\nContent-Length: "
        + length
        + b"\r\n\r\n"
        + body
    )
    reply = raw(port, request)
    status = reply.split(b"\r\n", 1)[0]
    assert reply == b"" or status.startswith(b"HTTP/1."), reply[:80]
    if status:
        code = int(status.split()[1])
        assert code < 500 or code == 501, status  # 501: a method HTTP does not define here
    assert requests.get(f"http://127.0.0.1:{port}/healthz", timeout=5).ok, "still serving"


def test_a_huge_body_is_refused_without_reading_it(fuzz_server: tuple[int, WebServer]) -> None:
    port, _ = fuzz_server
    reply = raw(port, b"POST /api/v1/echo HTTP/1.1\r\nHost: x\r\nContent-Length: 104857600\r\n\r\n")
    assert b" 413 " in reply.split(b"\r\n", 1)[0]
    huge_header = b"GET /metrics HTTP/1.1\r\nHost: x\r\nX: " + b"a" * 200_000 + b"\r\n\r\n"
    assert int(raw(port, huge_header).split(b"\r\n", 1)[0].split()[1]) in (400, 431)


def issue_server_cert(certs: Path, out: Path, cn: str) -> None:
    """Sign a new server certificate for 127.0.0.1 with the test CA into out/server.{pem,key}."""
    openssl("req", "-newkey", "rsa:2048", "-nodes", "-subj", f"/CN={cn}",
            "-keyout", str(out / "server.key"), "-out", str(out / "server.csr"))  # fmt: skip
    (out / "server.ext").write_text("subjectAltName=IP:127.0.0.1\n")
    openssl("x509", "-req", "-in", str(out / "server.csr"), "-CA", str(certs / "ca.pem"),
            "-CAkey", str(certs / "ca.key"), "-CAcreateserial", "-days", "2",
            "-extfile", str(out / "server.ext"), "-out", str(out / "server.pem"))  # fmt: skip


def test_a_reload_rotates_the_server_certificate(
    agent_factory: Callable[..., AgentProcess], certs: Path, tmp_path: Path
) -> None:
    live = tmp_path / "live"
    live.mkdir()
    issue_server_cert(certs, live, "before-rotation")
    yml = web_yml(tmp_path, live, users=False)
    agent = agent_factory(f'[http]\nlisten = "127.0.0.1:{{port}}"\nweb_config = "{yml}"\n')
    url = f"https://127.0.0.1:{agent.port}/healthz"
    ca = str(certs / "ca.pem")
    wait_for(lambda: requests.get(url, verify=ca, timeout=2).ok, 20, "TLS health")

    def subject() -> str:
        pem = ssl.get_server_certificate(("127.0.0.1", agent.port), timeout=5)
        return x509_subject(pem)

    assert "before-rotation" in subject()
    issue_server_cert(certs, live, "after-rotation")
    agent.proc.send_signal(signal.SIGHUP)
    wait_for(lambda: "after-rotation" in subject(), 10, "the new certificate")
    assert requests.get(url, verify=ca, timeout=5).ok, "new connections verify against the CA"
    assert agent.proc.poll() is None


def x509_subject(pem: str) -> str:
    """Return the subject line of a PEM certificate, as openssl prints it."""
    out = subprocess.run([need_binary("openssl"), "x509", "-noout", "-subject"], input=pem,
                         capture_output=True, text=True, timeout=30, check=True)  # fmt: skip
    return out.stdout
