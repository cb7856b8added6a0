"""How many CPU threads torch takes in a run (``ImproveConfig.threads``; ``improve`` applies it).

OpenMP threads competing with other processes stall, so the automatic choice leaves the cores other
running processes use (docs/performance.md, "Threads").
"""

from __future__ import annotations

import os
from pathlib import Path

__all__ = ["cpu_threads", "running_processes"]


def cpu_threads(requested: int | None) -> int:
    """Threads for torch on CPU (see ImproveConfig.threads).

    Auto: 1 when the 1-minute load average already fills the cores; otherwise the cores that the
    processes running right now leave free (the run-queue count of ``/proc/loadavg``, less this
    process), at least 1. The run queue catches what the load average, an average over a minute, does
    not yet show: two runs started together each see the other and take one thread each on 2 cores.
    """
    if requested is not None:
        return requested
    cores = os.cpu_count() or 1
    try:
        if os.getloadavg()[0] >= cores:
            return 1
    except OSError:
        pass
    return max(1, cores - max(0, running_processes() - 1))


def running_processes() -> int:
    """Processes running or runnable right now (``/proc/loadavg``'s ``R/T`` field); 1 where unknown."""
    try:
        return int(Path("/proc/loadavg").read_text().split()[3].split("/")[0])
    except (OSError, IndexError, ValueError):
        return 1
