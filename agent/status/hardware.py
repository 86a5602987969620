"""The HARDWARE section of `dsagent status`: only what is wrong with ECC, IB, RAID, NVMe, tuning."""

from __future__ import annotations

from collections.abc import Sequence

from agent.status.series import Series, find, fmt, grown, latest, one

METRICS = (
    "node_edac_correctable_errors_total", "node_edac_uncorrectable_errors_total",
    "node_infiniband_state_id", "node_infiniband_physical_state_id",
    "node_infiniband_rate_bytes_per_second", "node_infiniband_rate_expected_bytes_per_second",
    "node_infiniband_rate_below_expected", "node_infiniband_link_downed_total",
    "node_infiniband_symbol_error_total", "node_infiniband_port_errors_received_total",
    "node_md_info", "node_md_degraded", "node_md_disks", "node_md_sync_completed_ratio",
    "node_nvme_info", "node_nvme_health_log_available", "node_nvme_critical_warning",
    "node_nvme_percentage_used_ratio", "node_nvme_media_errors_total",
    "node_tuning_drift", "node_sysctl_value", "node_gpu_architectures", "gpu_info",
)  # fmt: skip
IB_STATES = {1: "DOWN", 2: "INIT", 3: "ARMED", 5: "ACTIVE_DEFER"}
IB_PHYS = {1: "Sleep", 2: "Polling", 3: "Disabled", 4: "Training", 6: "LinkErrorRecovery"}
IB_ERRORS = (("node_infiniband_link_downed_total", "link downs"),
             ("node_infiniband_symbol_error_total", "symbol errors"),
             ("node_infiniband_port_errors_received_total", "receive errors"))  # fmt: skip


def _labels(s: Series, *names: str) -> list[str]:
    return [s["labels"].get(n, "?") for n in names]


def ecc(series: Sequence[Series]) -> list[str]:
    """Uncorrectable errors since boot, correctable ones that grew in the window."""
    rows = []
    for s in find(series, "node_edac_uncorrectable_errors_total"):
        if (latest(s) or 0) > 0:
            rows.append(f" ECC mc{_labels(s, 'controller')[0]}: {fmt(latest(s), 'n')} "
                        "UNCORRECTABLE since boot")  # fmt: skip
    for s in find(series, "node_edac_correctable_errors_total"):
        if grown(s) > 0:
            rows.append(f" ECC mc{_labels(s, 'controller')[0]}: +{fmt(grown(s), 'n')} correctable")
    return rows


def infiniband(series: Sequence[Series]) -> list[str]:
    """Ports not ACTIVE, trained down, or counting errors in the window."""
    rows = []
    for s in find(series, "node_infiniband_state_id"):
        dev, port = _labels(s, "device", "port")
        where = {"device": dev, "port": port}
        state = int(latest(s) or 0)
        if state != 4:
            phys = int(latest(one(series, "node_infiniband_physical_state_id", **where)) or 0)
            rows.append(f" IB {dev}/{port}: {IB_STATES.get(state, state)} "
                        f"({IB_PHYS.get(phys, phys)})")  # fmt: skip
        elif latest(one(series, "node_infiniband_rate_below_expected", **where)) == 1:
            rate = latest(one(series, "node_infiniband_rate_bytes_per_second", **where)) or 0
            want = latest(one(series, "node_infiniband_rate_expected_bytes_per_second", **where))
            rows.append(f" IB {dev}/{port}: {rate / 125e6:g} Gb/s, expected "
                        f"{(want or 0) / 125e6:g}")  # fmt: skip
        errors = [f"+{fmt(g, 'n')} {what}" for name, what in IB_ERRORS
                  if (g := grown(one(series, name, **where))) > 0]  # fmt: skip
        if errors:
            rows.append(f" IB {dev}/{port}: {', '.join(errors)}")
    return rows


def raid(series: Sequence[Series]) -> list[str]:
    """Broken or degraded arrays, failed members, syncs in progress."""
    rows = []
    for s in find(series, "node_md_info"):
        dev, level, state = _labels(s, "device", "level", "array_state")
        problems = ["BROKEN"] if state == "broken" else []
        if (degraded := latest(one(series, "node_md_degraded", device=dev)) or 0) > 0:
            problems.append(f"degraded ({fmt(degraded, 'n')} missing)")
        if (failed := latest(one(series, "node_md_disks", device=dev, state="failed")) or 0) > 0:
            problems.append(f"{fmt(failed, 'n')} failed member(s)")
        if (done := latest(one(series, "node_md_sync_completed_ratio", device=dev))) is not None:
            problems.append(f"syncing {100 * done:.1f}%")
        if problems:
            rows.append(f" RAID {dev} {level}: {', '.join(problems)}")
    return rows


def unreadable(series: Sequence[Series]) -> list[str]:
    """Name the drives whose health log could not be read: a blind spot, not a fault."""
    blind = [_labels(s, "device")[0] for s in find(series, "node_nvme_health_log_available")
             if latest(s) != 1]  # fmt: skip
    return [f" NVMe {', '.join(blind)}: health log not readable (needs root)"] if blind else []


def nvme(series: Sequence[Series]) -> list[str]:
    """Critical warnings, wear past 90 %, media errors."""
    rows = []
    for info in find(series, "node_nvme_info"):
        dev = _labels(info, "device")[0]
        if latest(one(series, "node_nvme_health_log_available", device=dev)) != 1:
            continue
        flags = find(series, "node_nvme_critical_warning", device=dev)
        warnings = [s["labels"].get("warning", "?") for s in flags if latest(s) == 1]
        problems = [f"critical warning {'+'.join(warnings)}"] if warnings else []
        used = latest(one(series, "node_nvme_percentage_used_ratio", device=dev))
        if used is not None and used > 0.9:
            problems.append(f"wear {fmt(used, '%')}")
        if (errors := grown(one(series, "node_nvme_media_errors_total", device=dev))) > 0:
            problems.append(f"+{fmt(errors, 'n')} media errors")
        if problems:
            rows.append(f" NVMe {dev}: {', '.join(problems)}")
    return rows


def tuning(series: Sequence[Series]) -> list[str]:
    """Kernel settings that drifted from the expected table, and mixed GPU architectures."""
    rows = []
    for s in find(series, "node_tuning_drift"):
        if latest(s) == 1:
            name, want = _labels(s, "name", "expected")
            now = latest(one(series, "node_sysctl_value", name=name))
            shown = "not a number" if now is None else f"{now:.15g}"  # as sysctl prints it
            rows.append(f" sysctl {name} = {shown}, expected {want}")
    if (latest(one(series, "node_gpu_architectures")) or 0) > 1:
        archs = sorted({s["labels"].get("architecture", "?") for s in find(series, "gpu_info")})
        rows.append(f" GPUs mix architectures: {', '.join(archs)}")
    return rows


def hardware(series: Sequence[Series]) -> list[str]:
    """Return the HARDWARE rows: each problem, or one line naming what was checked; blind spots."""
    rows = ecc(series) + infiniband(series) + raid(series) + nvme(series) + tuning(series)
    if rows:
        return rows + unreadable(series)
    seen = [(what, len(find(series, name))) for what, name in (
        ("ECC controllers", "node_edac_correctable_errors_total"),
        ("IB ports", "node_infiniband_state_id"), ("RAID arrays", "node_md_info"),
        ("NVMe drives", "node_nvme_info"), ("sysctls", "node_tuning_drift"))]  # fmt: skip
    checked = ", ".join(f"{n} {what}" for what, n in seen if n)
    return [f" all well ({checked})" if checked else " nothing to check", *unreadable(series)]
