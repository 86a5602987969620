"""`make deb` builds a package that installs, runs and purges cleanly, in a throwaway root.

The package is installed in a copy-on-write view of this machine (an overlay of / in a mount
namespace of its own, chrooted into): dpkg, the maintainer scripts and the agent see a real
Debian userland, and everything they write is thrown away. The host's own dsagent package, if
it has one, is never touched.
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

from agent import __version__
from tests.conftest import ROOT, need, need_binary

pytestmark = pytest.mark.integration

GONE = ("/opt/dsagent", "/usr/bin/dsagent", "/etc/dsagent", "/lib/systemd/system/dsagent.service",
        "/var/lib/dsagent")  # fmt: skip
SCRIPT = """
dpkg -i /mnt/deb/{deb} >/dev/null
echo "VERSION $(dsagent version)"
echo "CHECK $(dsagent check-config 2>&1)"
id dsagent >/dev/null && echo "USER yes"
echo "CONFFILES $(dpkg-query -W -f='${{Conffiles}}' dsagent)"
dpkg --purge dsagent >/dev/null
for p in {gone}; do [ -e "$p" ] && echo "LEFT $p"; done
echo DONE
"""


def run(*cmd: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(cmd, capture_output=True, text=True, timeout=600, check=False, cwd="/")


def in_throwaway_root(tmp: Path, script: str, mount: Path) -> subprocess.CompletedProcess[str]:
    """Run `script` as root in an overlay of /, with `mount` at /mnt/deb; its writes vanish."""
    upper, work, root = tmp / "upper", tmp / "work", tmp / "root"
    for d in (upper, work, root):
        d.mkdir()
    setup = (
        f"mount -t overlay overlay -o lowerdir=/,upperdir={upper},workdir={work} {root}"
        f" && for d in proc sys dev; do mount --rbind /$d {root}/$d; done"
        f" && mkdir -p {root}/mnt/deb && mount --bind {mount} {root}/mnt/deb"
        f' && exec chroot {root} sh -euc "$0"'
    )
    return subprocess.run([need_binary("unshare"), "--mount", "--propagation", "private",
                           "sh", "-c", setup, script], capture_output=True, text=True,
                          timeout=600, check=False)  # fmt: skip


def test_deb_installs_runs_and_purges(tmp_path: Path) -> None:
    need(os.geteuid() == 0, "an overlay root and a mount namespace need root")
    need_binary("dpkg-deb")
    need(Path("/usr/bin/python3").exists(), "Debian's python3 is not installed")
    build = subprocess.run(["sh", "packaging/build-deb.sh"], cwd=ROOT, capture_output=True,
                           text=True, timeout=900, check=False)  # fmt: skip
    assert build.returncode == 0, build.stderr
    arch = run("dpkg", "--print-architecture").stdout.strip()
    deb = ROOT / "dist" / f"dsagent_{__version__}_{arch}.deb"
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
    host_had = run("dpkg-query", "-W", "-f=${Status}", "dsagent").stdout
    out = in_throwaway_root(tmp_path, SCRIPT.format(deb=deb.name, gone=" ".join(GONE)), deb.parent)
    assert out.returncode == 0 and "DONE" in out.stdout, out.stdout + out.stderr
    lines = dict(line.split(" ", 1) for line in out.stdout.splitlines() if " " in line)
    assert lines["VERSION"] == f"dsagent {__version__}"
    assert "config OK: /etc/dsagent/agent.toml" in lines["CHECK"], lines["CHECK"]
    assert "44 rules" in lines["CHECK"], "the packaged default rules are found"
    assert "USER" in lines and "/etc/dsagent/agent.toml" in lines["CONFFILES"]
    assert "LEFT" not in lines, f"purge left {lines.get('LEFT')}"
    assert run("dpkg-query", "-W", "-f=${Status}", "dsagent").stdout == host_had, "host untouched"
    for path in GONE[:3]:
        assert Path(path).exists() == ("installed" in host_had), f"the host's {path} as it was"
