"""What this machine lets the process use: CPUs (affinity and the container's CPU quota) and shared memory.

``os.sched_getaffinity`` counts the cores the process may be scheduled on, not how much CPU time it may use:
a container limited to 4 CPUs by its cgroup quota (``docker --cpus 4``) on a 192-core host reports 192.
Starting 191 decode workers there buys nothing but start-up time and memory, so the worker counts use
``usable_cpus``: the affinity, capped by the quota (cgroup v2's ``cpu.max``, else v1's ``cfs_quota_us``).
"""
from __future__ import annotations

import math
import os
from pathlib import Path

CGROUP_V2_CPU_MAX = Path("/sys/fs/cgroup/cpu.max")
CGROUP_V1_QUOTA = Path("/sys/fs/cgroup/cpu/cpu.cfs_quota_us")
CGROUP_V1_PERIOD = Path("/sys/fs/cgroup/cpu/cpu.cfs_period_us")


def _read_small(path: Path) -> str | None:
    try:
        with open(path, "rb") as f:
            return f.read(256).decode("ascii", "replace").strip()
    except OSError:
        return None


def cpu_quota() -> float | None:
    """CPUs' worth of time the cgroup allows (``"200000 100000"`` -> 2.0), or None when unlimited or unknown.
    A file that cannot be read or parsed counts as no quota: the affinity then decides, as before."""
    text = _read_small(CGROUP_V2_CPU_MAX)
    if text is not None:
        fields = text.split()
        if len(fields) == 2 and fields[0] != "max":
            return _ratio(fields[0], fields[1])
        return None
    quota, period = _read_small(CGROUP_V1_QUOTA), _read_small(CGROUP_V1_PERIOD)
    if quota is None or period is None:
        return None
    return _ratio(quota, period)  # v1 writes -1 for "no quota": _ratio turns it into None


def _ratio(quota: str, period: str) -> float | None:
    try:
        q, p = int(quota), int(period)
    except ValueError:
        return None
    return q / p if q > 0 and p > 0 else None


def affinity_cpus() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover - not Linux
        return os.cpu_count() or 1


def usable_cpus() -> int:
    """The cores this process may use: its affinity, capped by the cgroup quota rounded up (a 2.5-CPU quota
    keeps 3 cores busy part of the time)."""
    affinity, quota = affinity_cpus(), cpu_quota()
    if quota is None:
        return max(1, affinity)
    return max(1, min(affinity, math.ceil(quota)))


def shm_bytes(path: str | os.PathLike = "/dev/shm") -> tuple[int, int] | None:
    """(size, free bytes) of the shared-memory file system DataLoader workers hand their batches through, or
    None where there is none (containers often mount a 64 MB one: workers then die of SIGBUS)."""
    try:
        st = os.statvfs(path)
    except OSError:
        return None
    return st.f_blocks * st.f_frsize, st.f_bavail * st.f_frsize
