"""Fuzz targets shared by the test suite (small budgets) and bench/fuzz.py (large ones).

Each target is a hypothesis strategy and a check. A check returns normally for any input
the target handles (a clear error counts as handled) and raises Crash for anything else.
"""

from __future__ import annotations

import contextlib
import functools
import io
import json
import os
import socket
import tempfile
import typing
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml
from hypothesis import strategies as st

from agent.alerting.rules import parse_file
from agent.alerting.schema import RULE_KEYS
from agent.cli import main
from agent.config import Config, ConfigError, TokenConfig, WorkerConfig, load_config
from agent.config.shipping import LogInputConfig
from agent.config.web import TLS_KEYS, load_web_config
from agent.notify.outbox import Outbox
from agent.notify.silences import SilenceStore
from agent.shipping.documents import Poison, to_doc
from agent.shipping.parse import Event
from agent.shipping.stats import RequestStats
from agent.store import SeriesStore
from agent.web.admin import AdminApi
from agent.web.admin_routes import Routes
from agent.web.audit import AuditLog
from agent.web.auth import BasicAuth, load_tokens
from agent.web.server import WebServer
from agent.workers.client import Closed, Connection, ProtocolError
from agent.workers.engine_metrics import parse as parse_exposition
from agent.workers.sampler import WorkerSampler


class Crash(Exception):
    """An input the target did not handle: an exception it should have turned into an error."""


@dataclass(frozen=True)
class Target:
    """A name, what to generate, and how to check one input."""

    name: str
    inputs: st.SearchStrategy[Any]
    check: Callable[[Any], None]
    cases: int = 10_000  # what `make fuzz` runs by default


EDGES = ["1s", "5m", "-1s", "1e999", "\x00", "x" * 300, "http://127.0.0.1:1", "{{ $value }}"]
SCALARS = (
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats()
    | st.text(max_size=12)
    | st.sampled_from(EDGES)
)
VALUES = st.recursive(
    SCALARS,
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner, max_size=3)
    ),
    max_leaves=8,
)


def toml_value(value: Any) -> str:
    """Render a value as TOML (None has no TOML form: an empty string stands for it)."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        return {"inf": "inf", "-inf": "-inf", "nan": "nan"}.get(repr(value), repr(value))
    if isinstance(value, list):
        return "[" + ", ".join(toml_value(v) for v in value) + "]"
    if isinstance(value, dict):
        return "{" + ", ".join(f"{json.dumps(k)} = {toml_value(v)}" for k, v in value.items()) + "}"
    return json.dumps("" if value is None else value)


def _fields(section: str) -> list[str]:
    info: Any = Config.model_fields[section].annotation
    inner = typing.get_args(info)[0] if section in LISTS else info
    return sorted(getattr(inner, "model_fields", {}) or ["x"])


LISTS = {"receivers", "routes", "inhibit_rules", "logs", "api_tokens", "workers"}
SECTIONS = sorted(Config.model_fields)


@st.composite
def toml_documents(draw: st.DrawFn) -> str:
    """A config file: known sections and keys (some unknown) with values of any type."""
    lines = []
    for section in draw(st.lists(st.sampled_from([*SECTIONS, "bogus"]), max_size=4)):
        keys = _fields(section) if section != "bogus" else ["x"]
        head = f"[[{section}]]" if section in LISTS else f"[{section}]"
        lines.append(head)
        for key in draw(st.lists(st.sampled_from([*keys, "unknown_key"]), max_size=4,
                                 unique=True)):  # fmt: skip
            lines.append(f"{key} = {toml_value(draw(VALUES))}")
    return "\n".join(lines) + "\n"


@contextlib.contextmanager
def a_file(text: str, suffix: str) -> Iterator[Path]:
    """Write text to a temporary file for the duration."""
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / f"input{suffix}"
        path.write_text(text, encoding="utf-8", errors="surrogatepass")
        yield path


def check_config(text: str) -> None:
    """check-config exits 0 or 2 on any file, printing, never raising."""
    with a_file(text, ".toml") as path, contextlib.redirect_stdout(io.StringIO()), \
            contextlib.redirect_stderr(io.StringIO()):  # fmt: skip
        try:
            code = main(["check-config", "--config", str(path)])
        except Exception as exc:
            raise Crash(f"{type(exc).__name__}: {exc}") from exc
    if code not in (0, 2):
        raise Crash(f"exit {code}")


def check_env(pairs: dict[str, str]) -> None:
    """DSAGENT_ variables of any content give a ConfigError at most."""
    old = dict(os.environ)
    os.environ.update({f"DSAGENT_{k}": v for k, v in pairs.items()})
    try:
        load_config(None)
    except ConfigError:
        pass
    except Exception as exc:
        raise Crash(f"{type(exc).__name__}: {exc}") from exc
    finally:
        os.environ.clear()
        os.environ.update(old)


@st.composite
def rule_files(draw: st.DrawFn) -> str:
    """Rule files of any shape: known rule keys with values of any type, and worse."""
    rule = st.dictionaries(st.sampled_from([*sorted(RULE_KEYS), "x"]), VALUES, max_size=6)
    rules = [draw(rule | VALUES) for _ in range(draw(st.integers(0, 3)))]  # scalars too
    group = draw(st.dictionaries(st.sampled_from(["name", "interval", "rules"]), VALUES,
                                 max_size=3))  # fmt: skip
    group["rules"] = draw(st.sampled_from([rules, draw(VALUES)]))
    groups = [group, draw(VALUES)][: draw(st.integers(1, 2))]  # a group that is no mapping
    doc = draw(st.sampled_from([{"groups": groups}, {"groups": draw(VALUES)}, draw(VALUES)]))
    return yaml.safe_dump(doc, allow_unicode=True)


def check_rules(text: str) -> None:
    """A rule file gives groups or file:line problems, never an exception."""
    try:
        _, problems = parse_file(text, "fuzz.yml")
    except Exception as exc:
        raise Crash(f"{type(exc).__name__}: {exc}") from exc
    if any(not p.startswith("fuzz.yml") for p in problems):
        raise Crash(f"a problem without its file: {problems}")


@st.composite
def web_files(draw: st.DrawFn) -> str:
    """web.yml files: exporter-toolkit's keys with values of any type."""
    tls = draw(st.dictionaries(st.sampled_from(sorted(TLS_KEYS)), VALUES, max_size=5))
    http = draw(st.dictionaries(st.sampled_from(["http2", "headers", "x"]), VALUES, max_size=2))
    users = draw(st.dictionaries(st.text(max_size=5), VALUES, max_size=2))
    top = {"tls_server_config": tls, "http_server_config": http, "basic_auth_users": users}
    keys = draw(st.lists(st.sampled_from([*top, "unknown"]), max_size=3, unique=True))
    return yaml.safe_dump({k: top.get(k, 1) for k in keys}, allow_unicode=True)


def check_web(text: str) -> None:
    """web.yml gives a config or a ValueError naming the problem."""
    with a_file(text, ".yml") as path:
        try:
            load_web_config(path)
        except ValueError:
            pass
        except Exception as exc:
            raise Crash(f"{type(exc).__name__}: {exc}") from exc


EXPOSITION_LINES = st.sampled_from([
    "# TYPE vllm:num_requests_running gauge", 'vllm:num_requests_running{engine="0"} 3',
    'vllm:gpu_cache_usage_perc{engine="1"} NaN', "vllm:e2e_request_latency_seconds_bucket"
    '{le="+Inf"} 1e999', '{le="0.5"} 2', "# HELP x y", "x{a=\"b\"} -Inf 123", "garbage {{{",
]) | st.text(max_size=40)  # fmt: skip


def check_exposition(lines: list[str]) -> None:
    """A worker's /metrics text parses or is refused with ValueError, nothing else."""
    try:
        parse_exposition("\n".join(lines) + "\n", 0.0)
    except ValueError:
        pass
    except Exception as exc:
        raise Crash(f"{type(exc).__name__}: {exc}") from exc


DATASETS = ("llm.inference", "dsagent.alerts", "dsagent.audit")
LOG_KEYS = st.sampled_from(
    [
        "timestamp",
        "latency_ms",
        "request_id",
        "error_code",
        "input_length",
        "output_length",
        "gpu_util",
        "model_version",
        "annotations",
        "labels",
        "status",
        "@timestamp",
        "alertname",
        "who",
        "role",
    ]
)
RECORDS = st.dictionaries(LOG_KEYS, VALUES, max_size=8).map(lambda d: json.dumps(d).encode())
LINES = st.tuples(st.binary(max_size=200) | RECORDS, st.sampled_from(DATASETS))


def check_line(item: tuple[bytes, str]) -> None:
    """A log line becomes a strict-JSON document, or Poison with a reason; nothing else."""
    data, dataset = item
    cfg = LogInputConfig(name="in", paths=["x"])
    try:
        doc, malformed = to_doc(Event("1:2:0", "/x.log", 0, len(data), data), cfg, "n", dataset)
        json.dumps(doc, allow_nan=False)  # what the bulk request will carry
        if not malformed and dataset == "llm.inference":
            stats = RequestStats()
            stats.add_doc(doc)
            list(stats.samples(0.0, "in"))
    except Poison as exc:
        if not str(exc):
            raise Crash("a dead letter without a reason") from exc
    except Exception as exc:
        raise Crash(f"{type(exc).__name__}: {exc}") from exc


class _Stores:
    """What the admin routes read of the notifier, over a temporary state dir."""

    def __init__(self, state: Path) -> None:
        self.outbox, self.silences = Outbox(state / "o.db"), SilenceStore(state)
        self.muted: dict[object, str] = {}


@functools.cache
def admin() -> AdminApi:
    """One admin API (silences, reload) for the whole run."""
    state = Path(tempfile.mkdtemp(prefix="dsagent-fuzz-"))
    (state / "token").write_text("fuzz-token\n")
    tokens = load_tokens([TokenConfig(name="f", role="admin", token_file=state / "token")])
    routes = Routes(None, None, _Stores(state), lambda: False)  # type: ignore[arg-type]
    return AdminApi(tokens, routes.endpoints(), AuditLog(state / "audit.log", 1 << 20))


BODIES = (
    VALUES.map(lambda v: json.dumps(v).encode())
    | st.binary(max_size=100)
    | st.sampled_from(
        [
            b"[" * 100_000,
            b'{"matchers": 5}',
            b'{"matchers": ["a=b"], "comment": "c", "duration": 1e308}',
        ]
    )
)


def check_admin(item: tuple[str, str, bytes]) -> None:
    """Every admin request is answered with a 2xx or 4xx, and audited."""
    method, path, body = item
    code, _ = admin().handle(method, path, {"authorization": "Bearer fuzz-token"}, body, "f")
    if code >= 500:
        raise Crash(f"HTTP {code}")


ADMIN = st.tuples(st.sampled_from(["POST", "DELETE", "GET"]),
                  st.sampled_from(["/api/v1/silences", "/api/v1/silences/abc", "/api/v1/reload"]),
                  BODIES)  # fmt: skip


@functools.cache
def server() -> WebServer:
    """One in-process HTTP server for the whole run."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = int(probe.getsockname()[1])
    web = WebServer(f"127.0.0.1:{port}", SeriesStore(), lambda: True, admin=admin(),
                    basic=BasicAuth({"u": HASH}))  # fmt: skip
    web.serve_in_thread()
    return web


HASH = b"$2b$04$" + b"a" * 53
HEAD_PARTS = st.sampled_from(
    [
        b"GET",
        b"POST",
        b"\x00",
        b"/metrics",
        b"/api/v1/silences",
        b"HTTP/1.1",
        b"HTTP/0.9",
        b"Content-Length: 1_0",
        b"Content-Length: \xb2",  # "²" in ISO-8859-1: str.isdigit() says yes, int() says no
        b"Content-Length: 1\xb9",
        b"Content-Length:",
        b"Transfer-Encoding: chunked",
        b"authorization: Basic \xff\xfe",
        b"Authorization: Bearer fuzz-token",
        b"\r\n",
        b" ",
        b":",
    ]
)
HEAD_JUNK = st.lists(HEAD_PARTS | st.binary(max_size=20), max_size=12).map(b"".join)
REQUEST_LINES = st.sampled_from(
    [b"GET /metrics HTTP/1.1", b"POST /api/v1/silences HTTP/1.1", b"GET /healthz HTTP/1.0"]
)
# Half the heads start with a good request line: the fields after it reach the handler's body
# and routing, which a line of junk never gets past.
HEADS = HEAD_JUNK | st.tuples(REQUEST_LINES, HEAD_JUNK).map(lambda t: t[0] + b"\r\n" + t[1])


def check_head(head: bytes) -> None:
    """Any request head gets a status line below 500 (501, 505 for what it does not speak).

    A handler that raised closes the connection without an answer, which an empty head does
    too: the server's count of unhandled errors tells them apart.
    """
    web = server()
    errors = web.requests[("error", 500)]
    with socket.create_connection(("127.0.0.1", int(web.server_address[1])), timeout=5) as conn:
        conn.sendall(head + b"\r\n\r\n")
        conn.shutdown(socket.SHUT_WR)
        reply = b""
        while chunk := conn.recv(65536):
            reply += chunk
    status = reply.split(b"\r\n", 1)[0].split()
    if reply and (len(status) < 2 or not status[1].isdigit()):
        raise Crash(f"not a status line: {reply[:60]!r}")
    if status and int(status[1]) >= 500 and int(status[1]) not in (501, 505):
        raise Crash(f"HTTP {int(status[1])}")
    if web.requests[("error", 500)] != errors:
        raise Crash("the handler raised: no answer, an error logged")


class Pieces:
    """A socket that hands out its bytes in the pieces given, one per recv."""

    def __init__(self, pieces: list[bytes]) -> None:
        self.pieces = pieces

    def recv(self, size: int) -> bytes:
        """Return the next piece (b"" once none is left: the peer closed)."""
        return self.pieces.pop(0) if self.pieces else b""

    def fileno(self) -> int:
        """Return a descriptor poll() finds readable at once (/dev/null): every piece is here."""
        return _ALWAYS_READABLE

    def close(self) -> None:
        """Close nothing."""


_ALWAYS_READABLE = os.open(os.devnull, os.O_RDONLY)


ANSWER_PARTS = st.sampled_from(
    [
        b"HTTP/1.1 200 OK\r\n",
        b"HTTP/1.0 503 Service Unavailable\r\n",
        b"HTTP/2 200\r\n",
        b"Content-Length: 5\r\n",
        b"Content-Length: -1\r\n",
        b"Content-Length: 99999999999999999999\r\n",
        b"Transfer-Encoding: chunked\r\n",
        b"Connection: close\r\n",
        b"\r\n",
        b"5\r\nhello\r\n0\r\n\r\n",
        b"zz\r\n",
        b"hello",
        b"X: " + b"a" * 70_000,
    ]
)
ANSWERS = st.tuples(
    st.lists(ANSWER_PARTS | st.binary(max_size=20), max_size=10).map(b"".join),
    st.lists(st.integers(1, 50), max_size=5),
)


def check_answer(item: tuple[bytes, list[int]]) -> None:
    """A worker's answer, cut anywhere, is read or refused with ProtocolError or a close."""
    raw, cuts = item
    pieces, at = [], 0
    for size in cuts:
        pieces.append(raw[at : at + size])
        at += size
    conn = Connection("http://127.0.0.1:8000", 5)
    conn.sock = Pieces([p for p in [*pieces, raw[at:]] if p])  # type: ignore[assignment]
    try:
        answer = conn.response(limit=1000)
    except (ProtocolError, Closed):
        return
    except Exception as exc:
        raise Crash(f"{type(exc).__name__}: {exc}") from exc
    if len(answer.body) > 1000:
        raise Crash(f"kept {len(answer.body)} bytes past the limit")


class Canned:
    """A worker's socket that answers each request with the body set for its path."""

    def __init__(self, answers: dict[str, tuple[int, bytes]]) -> None:
        self.answers, self.out = answers, b""

    def send(self, data: bytes | memoryview) -> int:
        """Take a request, whole; queue the answer to its path."""
        path = bytes(data).split(b" ", 2)[1].decode("latin-1")
        status, body = self.answers.get(path, (404, b""))
        self.out += b"HTTP/1.1 %d X\r\nContent-Length: %d\r\n\r\n%s" % (status, len(body), body)
        return len(data)

    def fileno(self) -> int:
        """Return a descriptor poll() finds readable at once: the answers are already here."""
        return _ALWAYS_READABLE

    def recv(self, size: int) -> bytes:
        """Hand out what was queued (b"" when nothing is: the worker closed)."""
        data, self.out = self.out[:size], self.out[size:]
        return data

    def close(self) -> None:
        """Close nothing."""


MODEL_LISTS = st.fixed_dictionaries({"data": st.lists(
    st.fixed_dictionaries({"id": st.none() | st.text(max_size=4) | st.integers()}) | VALUES,
    max_size=3) | VALUES})  # fmt: skip
WORKER = st.tuples(
    st.sampled_from([200, 503, 500, 404, 301]),
    (MODEL_LISTS | VALUES).map(lambda v: json.dumps(v).encode()) | st.binary(max_size=30),
    st.lists(EXPOSITION_LINES, max_size=8).map(lambda lines: "\n".join(lines).encode()),
)


def check_worker(item: tuple[int, bytes, bytes]) -> None:
    """The worker sampler turns any answers into samples (up, ready), never an exception."""
    health, models, metrics = item
    sampler = WorkerSampler(WorkerConfig(name="f", url="http://127.0.0.1:1", model=None,
                                         generation_interval=0))  # fmt: skip
    answers = {"/health": (health, b""), "/v1/models": (200, models), "/metrics": (200, metrics)}
    sampler.session.conn.sock = Canned(answers)  # type: ignore[assignment]
    try:
        names = {s.name for s in sampler.sample(1000.0)}
    except Exception as exc:
        raise Crash(f"{type(exc).__name__}: {exc}") from exc
    if not {"worker_up", "worker_ready"} <= names:
        raise Crash(f"up or ready missing: {sorted(names)}")


TARGETS = [
    Target("check-config", toml_documents(), check_config),
    Target(
        "environment",
        st.dictionaries(
            st.sampled_from(
                [
                    "RECEIVERS",
                    "AGENT__RETENTION",
                    "HTTP__LISTEN",
                    "WORKERS",
                    "GPU__SIMULATE",
                    "LOGS",
                    "X",
                ]
            ),
            st.text(st.characters(codec="utf-8", exclude_characters="\x00"), max_size=30),
            max_size=3,
        ),
        check_env,
    ),
    Target("rules check", rule_files(), check_rules, cases=20_000),
    Target("web.yml", web_files(), check_web),
    Target("worker exposition", st.lists(EXPOSITION_LINES, max_size=8), check_exposition),
    Target("log lines", LINES, check_line),
    Target("admin API bodies", ADMIN, check_admin),
    Target("HTTP request heads", HEADS, check_head),
    Target("worker answers", ANSWERS, check_answer),
    Target("worker sampler", WORKER, check_worker, cases=100_000),
]
