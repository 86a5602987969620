"""What an HTTP server costs a scrape: the agent's (aiohttp behind its admission) against others.

Each server answers GET /metrics with the same fixed 70 KB body (about what the agent renders
for 8 GPUs and 2 workers), so the figure is the server's own work: reading the request,
framing, writing. `dsagent` is the agent's own server: aiohttp's protocol behind the agent's
accept loop, connection table and head cap; `aiohttp` is a bare aiohttp application, the
uvicorn rows the same on uvicorn. A client sends N keep-alive GETs one after another; CPU is
the server process's user and system time over them. uvicorn is optional: `pip install
uvicorn httptools h11` into the interpreter that runs this; a missing one is said and skipped.
"""

from __future__ import annotations

import argparse
import importlib.util
import subprocess
import sys
import time
from typing import Any

import psutil
import requests

from bench.common import free_port

BODY = b"".join(b'gpu_metric_%d{gpu="%d",uuid="GPU-0000"} %d.5\n' % (i, i % 8, i)
                for i in range(1500))  # fmt: skip
NEEDS = {  # what each row imports
    "dsagent": ("agent",),
    "aiohttp": ("aiohttp",),
    "uvicorn-httptools": ("uvicorn", "httptools"),
    "uvicorn-h11": ("uvicorn", "h11"),
}


def serve(kind: str, port: int) -> None:
    """Run one server until killed."""
    if kind == "dsagent":
        from agent.store import SeriesStore
        from agent.web.connections import Connections
        from agent.web.server import WebServer

        server = WebServer(f"127.0.0.1:{port}", SeriesStore(), lambda: True,
                           connections=Connections(limit=64, head_timeout=30))  # fmt: skip
        server.routes["/metrics"] = lambda req: (200, "text/plain; version=0.0.4", BODY)
        server.serve_forever()
    elif kind == "aiohttp":
        from aiohttp import web

        async def metrics(request: Any) -> Any:
            return web.Response(body=BODY, content_type="text/plain")

        app = web.Application()
        app.router.add_get("/metrics", metrics)
        web.run_app(app, host="127.0.0.1", port=port, print=None, access_log=None)
    else:
        import uvicorn

        async def asgi(scope: Any, receive: Any, send: Any) -> None:
            await send({"type": "http.response.start", "status": 200,
                        "headers": [(b"content-type", b"text/plain")]})  # fmt: skip
            await send({"type": "http.response.body", "body": BODY})

        uvicorn.run(asgi, host="127.0.0.1", port=port, http=kind.split("-")[1],
                    log_level="error", access_log=False, lifespan="off")  # fmt: skip


def measure(kind: str, n: int) -> float:
    """Return the server's CPU per keep-alive GET, in microseconds."""
    port = free_port()
    proc = subprocess.Popen([sys.executable, "-m", "bench.http_servers", "--serve", kind,
                             "--port", str(port)])  # fmt: skip
    try:
        url, session = f"http://127.0.0.1:{port}/metrics", requests.Session()
        for _ in range(100):  # up, and warm
            try:
                session.get(url, timeout=1)
                break
            except requests.RequestException:
                time.sleep(0.1)
        for _ in range(200):
            session.get(url, timeout=5)
        server = psutil.Process(proc.pid)
        before = sum(server.cpu_times()[:2])
        for _ in range(n):
            answer = session.get(url, timeout=5)
            assert answer.status_code == 200 and answer.content == BODY
        return (sum(server.cpu_times()[:2]) - before) / n * 1e6
    finally:
        proc.terminate()
        proc.wait()


def main() -> None:
    """Print each server's CPU per scrape-sized keep-alive GET."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=3000)
    parser.add_argument("--serve", help=argparse.SUPPRESS)
    parser.add_argument("--port", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve:
        serve(args.serve, args.port)
        return
    print(f"server CPU per keep-alive GET of {len(BODY):,} bytes, {args.requests} requests:")
    for kind, modules in NEEDS.items():
        missing = [m for m in modules if importlib.util.find_spec(m) is None]
        if missing:
            print(f"  {kind:20s} not installed (pip install {' '.join(missing)})")
            continue
        print(f"  {kind:20s} {measure(kind, args.requests):6.0f} us")


if __name__ == "__main__":
    main()
