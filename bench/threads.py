"""CPU by thread, from the kernel's schedstat: what py-spy, which sees only Python, misses.

py-spy samples the threads holding the GIL; the kernel also counts the time a thread spends in
system calls, waking and being woken. Names come from `py-spy dump` (Python does not give the
kernel its thread names); threads of one kind (a pool's, a handler per connection) are summed.
"""

from __future__ import annotations

import re
import subprocess
from collections import Counter
from pathlib import Path


def snapshot(pid: int) -> dict[int, int]:
    """Return each live thread's CPU time so far, in ns (user and system)."""
    out = {}
    for task in Path(f"/proc/{pid}/task").iterdir():
        try:
            out[int(task.name)] = int((task / "schedstat").read_text().split()[0])
        except (OSError, ValueError, IndexError):  # the thread ended meanwhile
            continue
    return out


Switches = dict[int, tuple[int, int]]  # thread id -> (voluntary, involuntary) switches


def switches(pid: int) -> Switches:
    """Return each live thread's voluntary and involuntary context switches so far."""
    out = {}
    for task in Path(f"/proc/{pid}/task").iterdir():
        try:
            status = (task / "status").read_text().splitlines()
            fields = dict(line.split(":", 1) for line in status)  # "name:\tvalue"
            out[int(task.name)] = (int(fields["voluntary_ctxt_switches"]),
                                   int(fields["nonvoluntary_ctxt_switches"]))  # fmt: skip
        except (OSError, ValueError, KeyError):  # the thread ended meanwhile
            continue
    return out


def switch_rates(before: Switches, after: Switches, labels: dict[int, str],
                 seconds: float) -> dict[str, tuple[float, float]]:  # fmt: skip
    """Return (voluntary, involuntary) switches a second by kind of thread over the interval."""
    vol: Counter[str] = Counter()
    invol: Counter[str] = Counter()
    for tid, (v, n) in after.items():
        v0, n0 = before.get(tid, (0, 0))
        vol[kind(labels.get(tid, "unnamed"))] += v - v0
        invol[kind(labels.get(tid, "unnamed"))] += n - n0
    return {k: (vol[k] / seconds, invol[k] / seconds) for k in vol}


def names(spy: str, pid: int) -> dict[int, str]:
    """Return the Python name of each thread, by kernel thread id, from `py-spy dump`."""
    dump = subprocess.run([spy, "dump", "--pid", str(pid)], capture_output=True, text=True,
                          timeout=30, check=False).stdout  # fmt: skip
    found = re.finditer(r'^Thread (\S+) \(\w+\): "([^"]*)"', dump, re.MULTILINE)
    return {int(m[1], 0): m[2] for m in found}


def kind(name: str) -> str:
    """A thread's kind: its name without a pool's or a counter's number."""
    name = re.sub(r"^Thread-\d+ \((\w+)\)$", r"\1", name)
    return re.sub(r"(_\d+|-\d+_\d+|-\d+)$", "", name)


def table(before: dict[int, int], after: dict[int, int], labels: dict[int, str],
          seconds: float) -> list[tuple[str, float]]:  # fmt: skip
    """Return (kind, % of a core) over the interval, largest first.

    A thread that ended within the interval is not here (bench.overhead's cgroups count it).
    """
    used: Counter[str] = Counter()
    for tid, ns in after.items():
        used[kind(labels.get(tid, "unnamed"))] += ns - before.get(tid, 0)
    return [(k, 100 * ns / 1e9 / seconds) for k, ns in used.most_common()]
