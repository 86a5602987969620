"""The benchmarks' CPU clock: a cgroup per process, so threads that ended still count."""

from __future__ import annotations

import os
import subprocess
import sys
import time

import pytest

from bench.cgroups import CpuGroup

# Once told to (after it is in the group), a thread burns 0.3 s of CPU and ends; then the
# process waits to be killed.
CHILD = """
import sys, threading, time
sys.stdin.readline()
def burn():
    end = time.thread_time() + 0.3
    while time.thread_time() < end:
        pass
t = threading.Thread(target=burn); t.start(); t.join()
print("done", flush=True)
time.sleep(60)
"""


@pytest.mark.skipif(not os.path.exists("/proc/self/task"), reason="needs Linux /proc")
def test_the_cpu_of_a_thread_that_ended_is_still_counted() -> None:
    group = CpuGroup("clock-test")
    child = subprocess.Popen([sys.executable, "-c", CHILD], stdin=subprocess.PIPE,
                             stdout=subprocess.PIPE, text=True)  # fmt: skip
    try:
        group.enter(child.pid)
        assert child.stdin is not None
        child.stdin.write("go\n")  # the burn starts only now: none of it outside the group
        child.stdin.flush()
        assert child.stdout is not None and child.stdout.readline().strip() == "done"
        time.sleep(0.1)
        used = group.seconds()
        assert 0.3 <= used < 5.0, used  # at least the ended thread's burn; a loose ceiling
    finally:
        child.kill()
        child.wait()
        group.remove()
