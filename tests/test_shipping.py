"""Tailing, parsing and the local sink, on real files."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from agent.config.shipping import LogInputConfig
from agent.shipping.documents import to_doc
from agent.shipping.parse import Assembler, doc_id
from agent.shipping.registry import Registry
from agent.shipping.sinks import FileSink
from agent.shipping.stats import RequestStats
from agent.shipping.tail import MAX_LINE, Tailer


def read_all(tailer: Tailer) -> list[bytes]:
    tailer.discover()
    return [line.data for line in tailer.lines(1 << 20)]


def test_tail_follows_a_rename_and_picks_up_the_new_file(tmp_path: Path) -> None:
    log = tmp_path / "app.log"
    log.write_text("a\nb\npartial")
    tailer = Tailer([str(log)], Registry(tmp_path / "reg.json"))
    assert read_all(tailer) == [b"a", b"b"], "a partial line waits for its newline"
    with log.open("a") as f:
        f.write(" done\nc\n")
    os.rename(log, tmp_path / "app.log.1")  # logrotate 'create'
    log.write_text("d\n")
    with (tmp_path / "app.log.1").open("a") as f:
        f.write("e\n")  # a writer that still holds the old file
    got = read_all(tailer)
    assert sorted(got) == [b"c", b"d", b"e", b"partial done"]


def test_tail_restarts_a_truncated_file_under_a_new_generation(tmp_path: Path) -> None:
    log = tmp_path / "app.log"
    log.write_text("one\ntwo\n")
    tailer = Tailer([str(log)], Registry(tmp_path / "reg.json"))
    first = list(tailer.lines(1 << 20)) if tailer.discover() is None else []
    with log.open("r+") as f:
        f.truncate(0)  # copytruncate
    with log.open("a") as f:
        f.write("three\n")
    (second,) = list(tailer.lines(1 << 20))
    assert second.data == b"three" and second.start == 0
    assert second.key != first[0].key, "same offset, different id: no collision with 'one'"
    assert doc_id(second.key, 0) != doc_id(first[0].key, 0)


def test_registry_resumes_after_restart_even_when_renamed(tmp_path: Path) -> None:
    log = tmp_path / "app.log"
    log.write_text("a\nb\n")
    reg = Registry(tmp_path / "reg.json")
    tailer = Tailer([str(log)], reg)
    lines = read_all(tailer)
    line = next(iter(tailer.files.values()))
    dev, ino = line.dev, line.ino
    reg.commit(
        {f"{dev}:{ino}:0": {"offset": 2, "dev": dev, "ino": ino, "gen": 0, "path": str(log)}}
    )
    tailer.close()
    with log.open("a") as f:
        f.write("c\n")
    os.rename(log, tmp_path / "app.log.1")
    again = Tailer([str(log)], Registry(tmp_path / "reg.json"))
    assert lines == [b"a", b"b"]
    assert read_all(again) == [b"b", b"c"], "found by inode and resumed at the committed offset"


def test_multiline_keeps_a_traceback_and_a_cuda_oom_in_one_event(tmp_path: Path) -> None:
    text = (
        "2026-11-29 10:00:00 INFO serving\n"
        "2026-11-29 10:00:01 ERROR request failed\n"
        "Traceback (most recent call last):\n"
        '  File "model.py", line 3, in forward\n'
        "torch.OutOfMemoryError: CUDA out of memory. Tried to allocate 2.00 GiB\n"
        "2026-11-29 10:00:02 INFO next\n"
    )
    log = tmp_path / "node.log"
    log.write_text(text)
    tailer = Tailer([str(log)], Registry(tmp_path / "r.json"))
    tailer.discover()
    asm = Assembler(r"^\d{4}-\d{2}-\d{2} ")
    events = [e for line in tailer.lines(1 << 20) for e in asm.feed(line)]
    events += list(asm.flush(idle=0))
    assert len(events) == 3
    assert events[1].data.decode().endswith("Tried to allocate 2.00 GiB")
    assert events[1].data.count(b"\n") == 3


REQUEST = {
    "timestamp": "2026-11-29T10:00:00.123Z",
    "request_id": "r-1",
    "model_version": "v3",
    "input_length": 120,
    "output_length": 300,
    "latency_ms": 245.5,
    "gpu_util": 0.81,
    "error_code": None,
}


@pytest.mark.parametrize(
    ("record", "gen_ai", "custom"),
    [
        ({"model_version": "deepseek-v3"}, {"response": {"model": "deepseek-v3"}}, {}),
        (
            {"model": "deepseek-v3", "model_version": "2025-03-24"},
            {"request": {"model": "deepseek-v3"}, "response": {"model": "deepseek-v3"}},
            {"model_version": "2025-03-24"},
        ),
        (
            {"prompt_tokens": 7.0, "completion_tokens": 9, "finish_reason": "length"},
            {"usage": {"input_tokens": 7, "output_tokens": 9},
             "response": {"finish_reasons": ["length"]}},
            {},
        ),
        (
            {"response_id": "chatcmpl-1", "operation": "chat", "provider": "vllm",
             "max_tokens": 512, "finish_reasons": ["stop", "length"]},
            {"response": {"id": "chatcmpl-1", "finish_reasons": ["stop", "length"]},
             "operation": {"name": "chat"}, "system": "vllm", "request": {"max_tokens": 512}},
            {},
        ),
        ({"input_length": None, "gpu_util": None}, None, {}),
    ],
)  # fmt: skip
def test_request_fields_land_in_ecs_gen_ai(
    record: dict[str, object], gen_ai: dict[str, object] | None, custom: dict[str, object]
) -> None:
    from agent.shipping.ecs import request_doc

    doc = request_doc(record)
    assert doc.get("gen_ai") == gen_ai
    assert doc.get("dsagent", {}).get("request", {}) == custom


def event(data: bytes) -> object:
    from agent.shipping.parse import Event

    return Event("1:2:0", "/var/log/req.log", 100, 200, data)


def test_request_log_line_becomes_ecs() -> None:
    cfg = LogInputConfig(name="vllm", paths=["x"], fields={"cluster": "bj-1"})
    doc, malformed = to_doc(event(json.dumps(REQUEST).encode()), cfg, "gpu-01", "llm.inference")  # type: ignore[arg-type]
    assert not malformed
    assert doc["@timestamp"] == "2026-11-29T10:00:00.123Z"
    assert doc["transaction"] == {"id": "r-1"}
    assert doc["event"]["duration"] == 245_500_000 and doc["event"]["outcome"] == "success"
    assert doc["event"]["dataset"] == "llm.inference"
    assert doc["gen_ai"] == {
        "usage": {"input_tokens": 120, "output_tokens": 300},
        "response": {"model": "v3"},
    }
    assert doc["dsagent"] == {"request": {"gpu_util": 0.81}}
    assert doc["host"] == {"name": "gpu-01"} and doc["service"] == {"name": "vllm"}
    assert doc["log"]["offset"] == 100 and doc["cluster"] == "bj-1"
    failed, _ = to_doc(
        event(json.dumps({**REQUEST, "error_code": "CUDA_OOM"}).encode()),
        cfg,  # type: ignore[arg-type]
        "n",
        "llm.inference",
    )
    assert failed["event"]["outcome"] == "failure" and failed["error"] == {"code": "CUDA_OOM"}


def test_a_malformed_json_line_is_shipped_as_text_and_counted() -> None:
    cfg = LogInputConfig(name="vllm", paths=["x"])
    doc, malformed = to_doc(event(b'{"request_id": "r-2", broken'), cfg, "n", "llm.inference")  # type: ignore[arg-type]
    assert malformed
    assert doc["event"]["original"] == '{"request_id": "r-2", broken'
    assert doc["tags"] == ["json_parse_failure"]


def test_request_stats() -> None:
    stats = RequestStats(window=60)
    cfg = LogInputConfig(name="vllm", paths=["x"])
    for i in range(10):
        record = {**REQUEST, "latency_ms": 100 * (i + 1), "error_code": "E" if i < 2 else None}
        doc, _ = to_doc(event(json.dumps(record).encode()), cfg, "n", "llm.inference")  # type: ignore[arg-type]
        stats.add_doc(doc)
    got = {
        (s.name, dict(s.labels).get("quantile", dict(s.labels).get("direction", ""))): s.value
        for s in stats.samples(__import__("time").time(), "vllm")
    }
    assert got[("inference_requests_per_second", "")] == pytest.approx(10 / 60)
    assert got[("inference_error_ratio", "")] == pytest.approx(0.2)
    assert got[("inference_request_latency_seconds", "0.5")] == pytest.approx(0.55)
    assert got[("inference_tokens_per_second", "output")] == pytest.approx(3000 / 60)


def test_file_sink_rotates(tmp_path: Path) -> None:
    sink = FileSink(tmp_path, max_bytes=200, keep=2)
    for i in range(10):
        assert sink.ship("x.ndjson", [(f"id{i}", b'{"message":"' + b"m" * 50 + b'"}')]) == ["ok"]
    files = sorted(p.name for p in tmp_path.iterdir())
    assert files == ["x.ndjson", "x.ndjson.1", "x.ndjson.2"]
    assert json.loads((tmp_path / "x.ndjson").read_text().splitlines()[-1])["_id"] == "id9"


def test_file_sink_puts_the_id_first_in_each_line(tmp_path: Path) -> None:
    sink = FileSink(tmp_path)
    sink.ship("x.ndjson", [("a", b"{}"), ("b", b'{"m":"\xc3\xa9"}')])
    lines = (tmp_path / "x.ndjson").read_bytes().splitlines()
    assert [json.loads(x) for x in lines] == [{"_id": "a"}, {"_id": "b", "m": "\u00e9"}]
    assert lines[1].startswith(b'{"_id":"b",')


def test_a_reader_that_stops_early_does_not_see_lines_twice(tmp_path: Path) -> None:
    log = tmp_path / "app.log"
    log.write_text("".join(f"{i}\n" for i in range(10)))
    tailer = Tailer([str(log)], Registry(tmp_path / "r.json"))
    tailer.discover()
    first = []
    for line in tailer.lines(1 << 20):
        first.append(line.data)
        if len(first) == 4:
            break
    rest = [line.data for line in tailer.lines(1 << 20)]
    assert first + rest == [str(i).encode() for i in range(10)]


def test_a_line_past_max_line_is_cut_and_nothing_is_lost(tmp_path: Path) -> None:
    log = tmp_path / "app.log"
    log.write_bytes(b"x" * (MAX_LINE * 2 + 5) + b"\nnext\n")
    tailer = Tailer([str(log)], Registry(tmp_path / "r.json"))
    tailer.discover()
    got = [line.data for line in tailer.lines(1)]  # a budget below one line still reads a line
    got += [line.data for line in tailer.lines(1 << 30)]
    assert [len(g) for g in got] == [MAX_LINE, MAX_LINE, 5, 4]
    assert b"".join(got) == b"x" * (MAX_LINE * 2 + 5) + b"next"


def test_a_budget_spans_chunks_and_stops_within_one(tmp_path: Path) -> None:
    log = tmp_path / "app.log"
    line = b"y" * 99 + b"\n"
    log.write_bytes(line * (3 * MAX_LINE // 100))  # three chunks of lines
    tailer = Tailer([str(log)], Registry(tmp_path / "r.json"))
    tailer.discover()
    first = list(tailer.lines(2 * MAX_LINE))
    assert 2 * MAX_LINE <= sum(len(x.data) + 1 for x in first) < 3 * MAX_LINE
    rest = list(tailer.lines(1 << 30))
    assert len(first) + len(rest) == 3 * MAX_LINE // 100
    assert rest[0].start == first[-1].end, "the next read starts where the last line ended"


@pytest.mark.parametrize(
    ("status", "want"),
    [
        (201, "ok"),
        (409, "ok"),
        (429, "retry"),
        (503, "retry"),
        (400, "dead"),
        (404, "dead"),
    ],
)
def test_bulk_item_outcomes(status: int, want: str) -> None:
    from agent.shipping.sinks import _outcome

    got = _outcome({"status": status, "error": {"type": "t", "reason": "r"}})
    assert (got if isinstance(got, str) else got[0]) == want


def test_without_the_template_privilege_documents_still_ship(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """A user allowed to write but not to manage templates (ES security's 403) still ships."""
    import threading
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

    from agent.config.shipping import ElasticsearchConfig
    from agent.shipping.sinks import ElasticsearchSink

    class Cluster(BaseHTTPRequestHandler):
        def reply(self, code: int, body: object) -> None:
            data = json.dumps(body).encode()
            self.send_response(code)
            self.send_header("Content-Type", "application/json")
            self.send_header("X-Elastic-Product", "Elasticsearch")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def do_GET(self) -> None:
            self.reply(403, {"error": {"type": "security_exception"}, "status": 403})

        def do_PUT(self) -> None:
            if not self.path.startswith("/_bulk"):
                return self.do_GET()
            lines = self.rfile.read(int(self.headers["Content-Length"])).splitlines()
            items = [{"create": {"status": 201}} for _ in lines[::2]]
            self.reply(200, {"errors": False, "items": items})

        def log_message(self, format: str, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Cluster)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        url = f"http://127.0.0.1:{server.server_address[1]}"
        sink = ElasticsearchSink(ElasticsearchConfig(hosts=[url]))
        for _ in range(3):
            assert sink.ship("logs-llm.inference-default", [("a", b'{"x":1}')]) == ["ok"]
    finally:
        server.shutdown()
    said = [r for r in caplog.records if "no privilege" in r.getMessage()]
    assert len(said) == 1 and "security_exception" in said[0].getMessage()


def test_registry_entries_need_non_negative_integer_identities(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    good = {"path": "/l/a", "offset": 10, "dev": 2, "ino": 3, "gen": 0}
    bad = {"b": ("dev", -1), "c": ("ino", "3"), "d": ("gen", True), "e": ("offset", 1.5)}
    entries = {"a": good, **{k: {**good, "path": f"/l/{k}", key: value}
                             for k, (key, value) in bad.items()}}  # fmt: skip
    (tmp_path / "r.json").write_text(json.dumps(entries))
    with caplog.at_level("ERROR"):
        assert list(Registry(tmp_path / "r.json").entries) == ["a"]
    assert "4 damaged offset(s) dropped (/l/b, /l/c, /l/d, /l/e)" in caplog.text
    assert "using the copy" not in caplog.text, "the registry itself was read"


def test_a_registry_found_only_as_its_previous_copy_is_read(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    entry = {"path": "/l/a", "offset": 7, "dev": 1, "ino": 2, "gen": 0}
    (tmp_path / "r.json.prev").write_text(json.dumps({"a": entry}))
    with caplog.at_level("ERROR"):
        assert Registry(tmp_path / "r.json").entries == {"a": entry}
    assert not caplog.text, "a missing file is no damage"
