"""A real Elasticsearch for the tests: the integ-test zip from Maven Central, on loopback."""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
import time
import zipfile
from pathlib import Path

import requests

ROOT = Path(__file__).resolve().parent.parent
VERSION = os.environ.get("DSAGENT_TEST_ES_VERSION", "8.15.3")
VERSION_9 = os.environ.get("DSAGENT_TEST_ES9_VERSION", "9.2.0")
JDK_25 = Path("/usr/lib/jvm/temurin-25-jdk-amd64")  # ES 9 needs Java 21 or newer
SINGLE = "transport.port: 0\ndiscovery.type: single-node\n"
CACHE = ROOT / ".cache"
USER = "dsagent-es"  # Elasticsearch refuses to run as root


def fetch(version: str = VERSION) -> Path:
    """Download the zip once with Maven and unpack it; return ES_HOME."""
    home = CACHE / f"elasticsearch-{version}"
    if (home / "bin" / "elasticsearch").exists():
        return home
    CACHE.mkdir(exist_ok=True)
    artifact = f"org.elasticsearch.distribution.integ-test-zip:elasticsearch:{version}:zip"
    subprocess.run(["mvn", "-q", "dependency:copy", f"-Dartifact={artifact}",
                    f"-DoutputDirectory={CACHE}"], check=True, timeout=900)  # fmt: skip
    with zipfile.ZipFile(CACHE / f"elasticsearch-{version}.zip") as z:
        z.extractall(CACHE)
    for script in (home / "bin").iterdir():
        script.chmod(0o755)
    return home


def java_home(version: str = VERSION) -> str:
    """ES_JAVA_HOME, JAVA_HOME, or the home of the `java` on PATH (the zip bundles no JDK)."""
    if int(version.split(".", maxsplit=1)[0]) >= 9:
        home = os.environ.get("ES9_JAVA_HOME") or str(JDK_25)
        if not Path(home, "bin", "java").exists():
            raise RuntimeError(f"no Java 21+ for Elasticsearch {version} at {home}")
        return home
    for name in ("ES_JAVA_HOME", "JAVA_HOME"):
        if os.environ.get(name):
            return os.environ[name]
    java = shutil.which("java")
    if java is None:
        raise RuntimeError("no java: install a JDK (17 or newer for Elasticsearch 8)")
    return str(Path(java).resolve().parent.parent)


def ensure_user() -> None:
    """Create the unprivileged user the node runs as."""
    if subprocess.run(["id", USER], capture_output=True, check=False).returncode != 0:
        subprocess.run(["useradd", "--system", "--no-create-home", "--shell", "/usr/sbin/nologin",
                        USER], check=True)  # fmt: skip


class Node:
    """One single-node cluster with its own data dir and port."""

    def __init__(self, port: int, version: str = VERSION, settings: str = SINGLE,
                 name: str = "node") -> None:  # fmt: skip
        self.version = version
        self.home = fetch(version)
        ensure_user()
        self.port = port
        self.url = f"http://127.0.0.1:{port}"
        self.work = Path(tempfile.mkdtemp(prefix="dsagent-es-"))
        self.config = self.work / "config"
        shutil.copytree(self.home / "config", self.config)
        (self.config / "elasticsearch.yml").write_text(
            f"cluster.name: dsagent-test\nnode.name: {name}\nnetwork.host: 127.0.0.1\n"
            f"http.port: {port}\n{settings}xpack.security.enabled: false\n"
            f"path.data: {self.work / 'data'}\npath.logs: {self.work / 'logs'}\n"
            "cluster.routing.allocation.disk.threshold_enabled: false\n"
            "action.destructive_requires_name: false\n"
        )
        # the JVM resolves its gc log, heap dumps and error files against ES_HOME: point them here
        options = (self.config / "jvm.options").read_text()
        for rel in ("logs/", "data"):
            options = options.replace(f"={rel}", f"={self.work / rel}").replace(
                f"file={rel}", f"file={self.work / rel}"
            )
        (self.config / "jvm.options").write_text(options)
        (self.config / "jvm.options.d").mkdir(exist_ok=True)
        (self.config / "jvm.options.d" / "heap.options").write_text("-Xms512m\n-Xmx512m\n")
        (self.work / "logs").mkdir()  # the JVM's gc.log goes to logs/ under the working dir
        subprocess.run(["chown", "-R", f"{USER}:{USER}", str(self.work)], check=True)
        subprocess.run(["chmod", "-R", "o+rX", str(self.home)], check=True)
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self, timeout: float = 120.0, *, healthy: bool = True) -> None:
        """Start the node and wait for it to answer (healthy: with a 2xx)."""
        env = {**os.environ, "ES_PATH_CONF": str(self.config)}
        env["ES_JAVA_HOME"] = java_home(self.version)
        log = (self.work / "stdout.log").open("ab")
        cmd = ["runuser", "-u", USER, "--", str(self.home / "bin" / "elasticsearch")]
        self.proc = subprocess.Popen(cmd, env=env, stdout=log, stderr=log, cwd=self.work)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(
                    f"elasticsearch exited: {(self.work / 'stdout.log').read_text()[-2000:]}"
                )
            try:
                if not healthy:  # any HTTP answer will do (a node without a master: 503s)
                    requests.get(self.url + "/", timeout=2)
                    return
                if requests.get(self.url + "/_cluster/health", timeout=2).ok:
                    return
            except requests.RequestException:
                pass
            time.sleep(0.5)
        raise RuntimeError("elasticsearch did not start in time")

    def stop(self) -> None:
        """Stop the node (its data stays for a restart)."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=60)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.proc = None

    def cleanup(self) -> None:
        """Stop and remove the data."""
        self.stop()
        shutil.rmtree(self.work, ignore_errors=True)

    def count(self, index: str) -> int:
        """Return the number of documents after a refresh."""
        requests.post(f"{self.url}/{index}/_refresh", timeout=60)
        resp = requests.get(f"{self.url}/{index}/_count", timeout=60)
        if resp.status_code in (404, 503):  # not created yet, or its shard still allocating
            return 0
        resp.raise_for_status()
        return int(resp.json()["count"])
