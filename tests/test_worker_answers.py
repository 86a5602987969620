"""A worker's odd answers are failed probes with a reason, never a sampler crash."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from agent.config.settings import WorkerConfig
from agent.store import Sample
from agent.workers.checks import model_ids
from agent.workers.sampler import WorkerSampler

GOOD_METRICS = b"vllm:num_requests_running 57\nvllm:num_requests_waiting 3\n"


class Stub:
    """A worker whose answers a test sets: path -> (status, body)."""

    def __init__(self) -> None:
        answers = self.answers = {
            "/health": (200, b""),
            "/v1/models": (200, b'{"data": [{"id": "m"}]}'),
            "/metrics": (200, GOOD_METRICS),
        }

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_GET(self) -> None:
                status, body = answers.get(self.path, (404, b""))
                self.send_response(status)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, format: str, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()


@pytest.fixture
def stub() -> Iterator[Stub]:
    s = Stub()
    yield s
    s.server.shutdown()
    s.server.server_close()


def run(stub: Stub, now: float = 1000.0) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    sampler = WorkerSampler(WorkerConfig(name="w", url=stub.url, generation_interval=0))
    try:
        out: list[Sample] = list(sampler.sample(now))
    finally:
        sampler.close()
    return {(s.name, s.labels): s.value for s in out}


def value(vals: dict[tuple[str, tuple[tuple[str, str], ...]], float], name: str,
          **labels: str) -> float | None:  # fmt: skip
    return vals.get((name, tuple(sorted({"worker": "w", **labels}.items()))))


@pytest.mark.parametrize("body", [b'{"data": null}', b'{"data": 5}', b"[]", b'{"data": [1]}',
                                  b'{"data": [{"id": null}]}', b"not json", b'"x"'])  # fmt: skip
def test_a_models_answer_of_any_other_shape_is_not_ready(stub: Stub, body: bytes) -> None:
    stub.answers["/v1/models"] = (200, body)
    vals = run(stub)
    assert value(vals, "worker_up") == 1 and value(vals, "worker_ready") == 0
    assert value(vals, "dsagent_worker_probe_failures_total", probe="readiness",
                 reason="bad_answer") == 1  # fmt: skip


def test_metrics_over_the_cap_are_refused_whole(stub: Stub) -> None:
    filler = b"# " + b"x" * 200 + b"\n"
    stub.answers["/metrics"] = (200, filler * ((4 << 20) // len(filler) + 10) + GOOD_METRICS)
    vals = run(stub)
    assert value(vals, "inference_requests_running") is None, "nothing read from a cut text"
    assert value(vals, "dsagent_worker_probe_failures_total", probe="metrics",
                 reason="too_large") == 1  # fmt: skip
    stub.answers["/metrics"] = (200, GOOD_METRICS)
    assert value(run(stub), "inference_requests_running") == 57


def test_a_missing_model_and_a_dead_worker_name_their_reasons(stub: Stub) -> None:
    stub.answers["/v1/models"] = (200, b'{"data": [{"id": "other"}]}')
    vals = run(stub)
    sampler = WorkerSampler(WorkerConfig(name="w", url=stub.url, model="m", generation_interval=0))
    vals = {(s.name, s.labels): s.value for s in sampler.sample(1000.0)}
    sampler.close()
    assert value(vals, "dsagent_worker_probe_failures_total", probe="readiness",
                 reason="not_served") == 1  # fmt: skip
    stub.server.shutdown()
    stub.server.server_close()
    vals = run(stub)
    assert value(vals, "worker_up") == 0
    assert value(vals, "dsagent_worker_probe_failures_total", probe="liveness",
                 reason="connect") == 1  # fmt: skip


JSON = st.recursive(st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False)
                    | st.text(max_size=5),
                    lambda inner: st.lists(inner, max_size=4)
                    | st.dictionaries(st.sampled_from(["data", "id", "object", "x"]), inner,
                                      max_size=4), max_leaves=12)  # fmt: skip


@settings(max_examples=500)
@given(JSON)
def test_model_ids_takes_any_json(doc: object) -> None:
    import json

    ids = model_ids(json.dumps(doc).encode())
    assert ids is None or all(isinstance(i, str) for i in ids)
