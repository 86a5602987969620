"""`make deb` builds a package that installs, runs and purges cleanly."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

from agent import __version__
from tests.conftest import ROOT, need, need_binary

pytestmark = pytest.mark.integration


def run(*cmd: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(cmd, capture_output=True, text=True, timeout=600, check=False, cwd="/")


def test_deb_installs_runs_and_purges() -> None:
    need(os.geteuid() == 0, "installing a package needs root")
    need_binary("dpkg-deb")
    need(Path("/usr/bin/python3").exists(), "Debian's python3 is not installed")
    build = subprocess.run(
        ["sh", "packaging/build-deb.sh"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=900,
        check=False,
    )
    assert build.returncode == 0, build.stderr
    deb = (
        ROOT
        / "dist"
        / f"dsagent_{__version__}_{run('dpkg', '--print-architecture').stdout.strip()}.deb"
    )
    contents = run("dpkg-deb", "-c", str(deb)).stdout
    for path in (
        "./opt/dsagent/bin/dsagent",
        "./usr/bin/dsagent",
        "./lib/systemd/system/dsagent.service",
        "./usr/lib/sysusers.d/dsagent.conf",
        "./usr/lib/tmpfiles.d/dsagent.conf",
        "./usr/share/dsagent/rules/default.yml",
        "./etc/dsagent/agent.toml",
    ):
        assert path in contents, path
    assert run("dpkg-deb", "-f", str(deb), "Package").stdout.strip() == "dsagent"
    installed = run("dpkg", "-i", str(deb))
    try:
        assert installed.returncode == 0, installed.stderr
        assert run("dsagent", "version").stdout.strip() == f"dsagent {__version__}"
        check = run("dsagent", "check-config")
        assert check.returncode == 0 and "config OK: /etc/dsagent/agent.toml" in check.stdout
        assert "37 rules" in check.stdout, "the packaged default rules are found"
        assert run("id", "dsagent").returncode == 0
        conffiles = run("dpkg-query", "-W", "-f=${Conffiles}", "dsagent").stdout
        assert "/etc/dsagent/agent.toml" in conffiles
    finally:
        purged = run("dpkg", "--purge", "dsagent")
    assert purged.returncode == 0, purged.stderr
    for gone in (
        "/opt/dsagent",
        "/usr/bin/dsagent",
        "/etc/dsagent",
        "/lib/systemd/system/dsagent.service",
        "/var/lib/dsagent",
    ):
        assert not Path(gone).exists(), gone
