"""md RAID sampler: array state, members and sync progress from /proc/mdstat and /sys/block/md*.

The /proc/mdstat families are node_exporter's mdadm names with its values; node_md_raid_disks
and node_md_degraded come from sysfs as in its newer releases (only where the kernel has the
file: a RAID 0 has no `degraded`). A RAID 0 that lost a member shows as array_state "broken".
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from agent.config import Config
from agent.samplers.sysfs import entries, read_int, read_text
from agent.store import MetricInfo, Sample, sample

METRICS = {
    "node_md_state": MetricInfo("gauge", "Indicates the state of md-device."),
    "node_md_disks": MetricInfo("gauge", "Number of active/failed/spare disks of device."),
    "node_md_disks_required": MetricInfo("gauge", "Total number of disks of device."),
    "node_md_blocks": MetricInfo("gauge", "Total number of blocks on device."),
    "node_md_blocks_synced": MetricInfo("gauge", "Number of blocks synced on device."),
    "node_md_raid_disks": MetricInfo("gauge", "Number of raid disks on device."),
    "node_md_degraded": MetricInfo("gauge", "Number of degraded disks on device."),
    "node_md_info": MetricInfo("gauge", "The array's RAID level and array_state; always 1."),
    "node_md_sync_completed_ratio": MetricInfo(
        "gauge", "Share of the running sync action (resync, recover, check) done."
    ),
}
# node_exporter's state label for each activity /proc/mdstat shows
STATES = {"active": "active", "inactive": "inactive", "recovering": "recovering",
          "resyncing": "resync", "checking": "check"}  # fmt: skip
_STATUS = re.compile(r"(\d+) blocks .*\[(\d+)/(\d+)\] \[([U_]+)\]")
_PROGRESS = re.compile(r"\((\d+)/(\d+)\)")
_ACTIVITIES = (("recovery", "recovering"), ("reshape", "reshaping"), ("check", "checking"),
               ("resync", "resyncing"))  # fmt: skip


@dataclass(frozen=True)
class MdStat:
    """One array as /proc/mdstat shows it."""

    name: str
    activity: str  # active, inactive, recovering, resyncing, checking, reshaping
    disks_active: int
    disks_total: int
    disks_failed: int
    disks_spare: int
    blocks: int
    blocks_synced: int


def _members(device_line: str, status: str) -> tuple[int, int, int] | None:
    """Return (active, required, size in blocks) from an array's first two lines."""
    fields = status.split()
    if not fields or not fields[0].isdigit():
        return None
    size = int(fields[0])
    if " raid0 " in f"{device_line} " or " linear " in f"{device_line} ":
        total = device_line.count("[")
        return total, total, size
    if " inactive " in f"{device_line} ":
        return 0, 0, size
    match = _STATUS.search(status)
    return (int(match.group(3)), int(match.group(2)), size) if match else None


def _synced(line: str, size: int) -> tuple[str | None, int]:
    """Return the activity a sync line names (or None) and the blocks synced."""
    activity = next((name for word, name in _ACTIVITIES if word in line), None)
    if activity is None:
        return None, size
    if "PENDING" in line or "DELAYED" in line:
        return activity, 0
    match = _PROGRESS.search(line)
    return activity, int(match.group(1)) if match else 0


def parse_mdstat(text: str) -> list[MdStat]:
    """Return the arrays of /proc/mdstat; an array whose lines do not parse is left out."""
    lines = text.splitlines()
    out = []
    for i, line in enumerate(lines):
        fields = line.split()
        if len(fields) < 3 or line[0].isspace() or fields[1] != ":" or fields[0] == "Personalities":
            continue
        status = lines[i + 1] if i + 1 < len(lines) else ""
        members = _members(line, status)
        if members is None:
            continue
        active, total, size = members
        after = lines[i + 2 : i + 4]
        sync = after[1] if after and "bitmap" in after[0] and len(after) > 1 else "".join(after[:1])
        activity, synced = _synced(sync, size)
        out.append(MdStat(fields[0], activity or fields[2], active, total, line.count("(F)"),
                          line.count("(S)"), size, synced))  # fmt: skip
    return out


def mdstat_samples(md: MdStat) -> Iterator[Sample]:
    """Yield one array's node_exporter families."""
    dev = md.name
    yield sample("node_md_disks_required", md.disks_total, device=dev)
    for state, count in (("active", md.disks_active), ("failed", md.disks_failed),
                         ("spare", md.disks_spare)):  # fmt: skip
        yield sample("node_md_disks", count, device=dev, state=state)
    for activity, state in STATES.items():
        yield sample("node_md_state", md.activity == activity, device=dev, state=state)
    yield sample("node_md_blocks", md.blocks, device=dev)
    yield sample("node_md_blocks_synced", md.blocks_synced, device=dev)


def parse_sync_completed(text: str | None) -> float | None:
    """Return sync_completed ("1569888 / 2093056") as a share, or None ("none", or absent)."""
    done, sep, total = (text or "").partition("/")
    try:
        return int(done) / int(total) if sep and int(total) > 0 else None
    except ValueError:
        return None


def sysfs_samples(md: Path, dev: str) -> Iterator[Sample]:
    """Yield what /sys/block/<dev>/md tells beyond /proc/mdstat."""
    yield sample("node_md_info", 1, device=dev, level=read_text(md / "level") or "",
                 array_state=read_text(md / "array_state") or "")  # fmt: skip
    for name, metric in (("raid_disks", "node_md_raid_disks"), ("degraded", "node_md_degraded")):
        value = read_int(md / name)
        if value is not None:
            yield sample(metric, value, device=dev)
    done = parse_sync_completed(read_text(md / "sync_completed"))
    if done is not None:
        yield sample("node_md_sync_completed_ratio", done, device=dev)


class MdSampler:
    """Software RAID arrays; a node without md yields nothing."""

    name = "md"
    metrics = METRICS

    def __init__(self, proc_root: Path, sys_root: Path, interval: float) -> None:
        self.proc, self.sys = proc_root, sys_root
        self.interval = interval

    def sample(self, now: float) -> Iterator[Sample]:
        """Read /proc/mdstat and each array's sysfs directory."""
        text = read_text(self.proc / "mdstat")
        for md in parse_mdstat(text or ""):
            yield from mdstat_samples(md)
        for dev in entries(self.sys / "block", "md"):
            if (self.sys / "block" / dev / "md").is_dir():
                yield from sysfs_samples(self.sys / "block" / dev / "md", dev)


def build(cfg: Config) -> MdSampler:
    """Build the md RAID sampler."""
    return MdSampler(cfg.host.proc_root, cfg.host.sys_root, cfg.hardware.interval)
