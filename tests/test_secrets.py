"""Rotated secrets are in effect after SIGHUP, on the wire; no chat webhook's key is ever shown."""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import signal
import threading
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
import requests

from agent.logsetup import OneLineFormatter
from agent.secrets import SECRETS, scrub, url_secrets
from tests.conftest import AgentProcess, Sink, demo, free_port, wait_for

pytestmark = pytest.mark.integration
Start = Callable[..., AgentProcess]


def reload(agent: AgentProcess, times: int) -> None:
    agent.proc.send_signal(signal.SIGHUP)
    wait_for(lambda: agent.log().count("configuration reloaded") >= times, 10, "the reload")


def test_a_rotated_webhook_secret_signs_the_next_send(agent_factory: Start, sink: Sink,
                                                      tmp_path: Path) -> None:  # fmt: skip
    secret = tmp_path / "secret"
    secret.write_text("first-secret\n")
    rules, prom = demo(tmp_path, {"a": 1})
    agent = agent_factory(
        f'[rules]\ndefaults = false\npaths = ["{rules}"]\n[textfile]\ndirectory = "{prom}"\n'
        f'[[receivers]]\nname = "hook"\ntype = "webhook"\nurl = "{sink.url}/hook"\n'
        f'secret_file = "{secret}"\n'
        '[[routes]]\nreceiver = "hook"\ngroup_by = ["name"]\ngroup_interval = "1s"\n'
    )

    def signed_with(key: bytes, n: int) -> bool:
        request = sink.on("/hook")[n]
        headers, body = request["headers"], request["raw"]
        assert isinstance(headers, dict) and isinstance(body, bytes)
        stamp = headers["X-Dsagent-Timestamp"]
        want = "sha256=" + hmac.new(key, stamp.encode() + b"." + body, hashlib.sha256).hexdigest()
        return bool(headers["X-Dsagent-Signature"] == want)

    wait_for(lambda: len(sink.on("/hook")) == 1, 20, f"the first page\n{agent.log()}")
    assert signed_with(b"first-secret", 0)
    secret.write_text("second-secret\n")  # rotated in place: the path is the same
    reload(agent, 1)
    demo(tmp_path, {"a": 1, "b": 1})
    wait_for(lambda: len(sink.on("/hook")) == 2, 20, "the page after the rotation")
    assert signed_with(b"second-secret", 1), "the new secret is in effect"


class FakeElasticsearch:
    """Answers every request as an Elasticsearch node would, recording Authorization headers."""

    def __init__(self) -> None:
        seen = self.auth = []  # type: list[str]

        class Handler(BaseHTTPRequestHandler):
            def _answer(self) -> None:
                length = int(self.headers.get("Content-Length", 0))
                body = self.rfile.read(length) if length else b""
                seen.append(self.headers.get("Authorization", ""))
                items = [{"create": {"status": 201}} for line in body.splitlines()[::2] if line]
                reply = json.dumps({"errors": False, "items": items, "acknowledged": True,
                                    "version": {"number": "8.15.0"}}).encode()  # fmt: skip
                self.send_response(200)
                self.send_header("X-Elastic-Product", "Elasticsearch")
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(reply)))
                self.end_headers()
                self.wfile.write(reply)

            do_GET = do_PUT = do_POST = do_HEAD = _answer

            def log_message(self, format: str, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", free_port()), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()


@pytest.fixture
def fake_es() -> Iterator[FakeElasticsearch]:
    es = FakeElasticsearch()
    yield es
    es.server.shutdown()
    es.server.server_close()


def test_a_rotated_elasticsearch_key_is_sent_after_sighup(
    agent_factory: Start, fake_es: FakeElasticsearch, tmp_path: Path
) -> None:
    key = tmp_path / "api_key"
    key.write_text("key-one-1111\n")
    agent = agent_factory(f'[elasticsearch]\nhosts = ["{fake_es.url}"]\napi_key_file = "{key}"\n')
    wait_for(lambda: "ApiKey key-one-1111" in fake_es.auth, 20, f"the first key\n{agent.log()}")
    key.write_text("key-two-2222\n")
    reload(agent, 1)

    def shipped_with_the_new_key() -> bool:
        requests.get(agent.url + "/api/v1/alerts", timeout=5)  # an audit line to ship
        return "ApiKey key-two-2222" in fake_es.auth

    wait_for(shipped_with_the_new_key, 20, f"the rotated key on the wire\n{agent.log()}")
    assert "key-one-1111" not in agent.log() and "key-two-2222" not in agent.log()


CHAT = {
    "dingtalk": "/robot/send?access_token=ding-secret-token-1",
    "wecom": "/cgi-bin/webhook/send?key=wecom-secret-key-2",
    "slack": "/services/T0001/B0001/slack-secret-path-3",
    "feishu": "/open-apis/bot/v2/hook/feishu-secret-hook-4",
}


def test_no_chat_receiver_key_in_logs_outbox_or_api(agent_factory: Start,
                                                    tmp_path: Path) -> None:  # fmt: skip
    dead = f"http://127.0.0.1:{free_port()}"  # nothing listens: every send fails and is logged
    rules, prom = demo(tmp_path, {"a": 1})
    receivers = "".join(f'[[receivers]]\nname = "{kind}"\ntype = "{kind}"\nurl = "{dead}{path}"\n'
                        for kind, path in CHAT.items())  # fmt: skip
    token = tmp_path / "admin"
    token.write_text("admin-token-0123456789")
    agent = agent_factory(
        f'[rules]\ndefaults = false\npaths = ["{rules}"]\n[textfile]\ndirectory = "{prom}"\n'
        f'[[api_tokens]]\nname = "admin"\nrole = "admin"\ntoken_file = "{token}"\n' + receivers,
        args=("--log-level", "debug"),  # urllib3 logs every request's path at DEBUG
    )
    auth = {"Authorization": "Bearer admin-token-0123456789"}
    wait_for(lambda: all(f"receiver:{k}#0 is failing" in agent.log() for k in CHAT), 30,
             f"every receiver to fail\n{agent.log()}")  # fmt: skip
    outbox = requests.get(agent.url + "/api/v1/outbox", headers=auth, timeout=5).text
    config = requests.get(agent.url + "/api/v1/config", headers=auth, timeout=5).text
    seen = agent.log() + outbox + config
    assert '"last_error"' in outbox and "receiver:dingtalk#0" in agent.log()
    for secret in ("ding-secret-token-1", "wecom-secret-key-2", "slack-secret-path-3",
                   "feishu-secret-hook-4"):  # fmt: skip
        assert secret not in seen, f"{secret} leaked"


def test_log_lines_are_redacted_whoever_writes_them() -> None:
    url = "https://oapi.dingtalk.com/robot/send?access_token=abcdef123456"
    SECRETS.set("test", url_secrets(url))
    try:
        record = logging.LogRecord("urllib3.connectionpool", logging.DEBUG, __file__, 1,
                                   '%s "POST %s HTTP/1.1" 200', ("oapi.dingtalk.com:443",
                                   "/robot/send?access_token=abcdef123456"), None)  # fmt: skip
        line = OneLineFormatter("%(message)s").format(record)
        assert "abcdef123456" not in line and "oapi.dingtalk.com" in line
    finally:
        SECRETS.set("test", ())
    assert scrub("refused: /hook", "http://127.0.0.1:9/hook") == "refused: /hook", "short path kept"
