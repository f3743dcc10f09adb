"""How many CPU cores this process may use, and torch's thread settings to match.

`os.cpu_count()` counts the machine's cores, not the ones a process may run on: a batch job
pinned to 4 cores of a 64-core node (affinity, as SLURM's cgroups and `taskset` do) or a container
limited to 2 CPUs (cgroup quota) would otherwise start 64 threads that wait on each other at every
operation. `usable_cores()` is the smallest of the CPU affinity set and the cgroup CPU quota
(cgroup v2 `cpu.max`, v1 `cpu.cfs_quota_us / cpu.cfs_period_us`, rounded down, at least 1).

Idle OpenMP workers spin (busy-wait) by default before they sleep; beside other work that burns
the cores the other processes (and our own descheduled threads) need. `starlabel/__init__.py`
therefore sets OMP_WAIT_POLICY=PASSIVE (workers sleep at once) unless it is set already; it takes
effect only if torch is imported after starlabel, and costs a few microseconds per parallel
region on an idle machine. `configure_threads()` sets torch's intra-op threads to the usable cores
and its inter-op pool (used only by `torch.jit.fork`, never by starlabel) to one thread.
"""

from __future__ import annotations

import logging
import math
import os
from pathlib import Path

log = logging.getLogger(__name__)

CGROUP_ROOT = Path("/sys/fs/cgroup")


def _own_cgroup_dirs(root: Path = CGROUP_ROOT) -> list[Path]:
    """This process's cgroup directories (v2 unified, v1 cpu controller), most specific first."""
    dirs = []
    try:
        lines = Path("/proc/self/cgroup").read_text().splitlines()
    except OSError:
        lines = []
    for line in lines:
        parts = line.split(":", 2)
        if len(parts) != 3:
            continue
        _, controllers, path = parts
        rel = path.lstrip("/")
        if controllers == "":  # v2
            dirs.append(root / rel)
        elif "cpu" in controllers.split(","):
            for name in ("cpu", "cpu,cpuacct", "cpuacct,cpu"):
                dirs.append(root / name / rel)
    return dirs + [root, root / "cpu", root / "cpu,cpuacct"]


def cgroup_cpu_limit(root: Path = CGROUP_ROOT) -> float | None:
    """The CPU quota of this process's cgroup in cores (e.g. 2.5), or None when unlimited or unknown."""
    for d in _own_cgroup_dirs(root):
        try:
            if (d / "cpu.max").exists():  # v2: "max 100000" or "250000 100000"
                quota, period = (d / "cpu.max").read_text().split()[:2]
                return None if quota == "max" else int(quota) / int(period)
            if (d / "cpu.cfs_quota_us").exists():  # v1: -1 when unlimited
                quota = int((d / "cpu.cfs_quota_us").read_text())
                period = int((d / "cpu.cfs_period_us").read_text())
                return None if quota <= 0 or period <= 0 else quota / period
        except (OSError, ValueError):
            continue
    return None


def usable_cores() -> int:
    """Cores this process may use: its CPU affinity set, capped by the cgroup quota (at least 1)."""
    try:
        n = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):  # not on Linux
        n = os.cpu_count() or 1
    quota = cgroup_cpu_limit()
    if quota is not None:
        n = min(n, max(1, math.floor(quota)))
    return max(1, n)


def configure_threads(threads: int | None = None) -> int:
    """Set torch's intra-op threads to `threads` (default `usable_cores()`) and its inter-op pool
    to one thread (where torch still allows it). Returns the intra-op thread count."""
    import torch

    n = threads or usable_cores()
    torch.set_num_threads(n)
    try:
        torch.set_num_interop_threads(1)
    except RuntimeError:  # inter-op work has started already: torch allows setting it only once, early
        pass
    if os.environ.get("OMP_WAIT_POLICY", "").upper() != "PASSIVE":
        log.debug("OMP_WAIT_POLICY is %r: idle OpenMP workers may spin", os.environ.get("OMP_WAIT_POLICY"))
    return n
