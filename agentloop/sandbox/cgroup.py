"""Memory cgroups for sandbox programs: one limit for every process of a program together.

``RLIMIT_AS`` bounds each process; a program that forks many children could still hold many times
``memory_mb``. Where this process may create memory cgroups (as root, on cgroup v2 with the memory
controller enabled or on a v1 ``memory`` hierarchy), :class:`ProgramCgroups` makes one cgroup per
worker below our own cgroup, limited to ``memory_mb`` with no swap; each program joins its worker's
cgroup before it drops privileges, so the kernel counts every process it starts and every page of
the tmpfs files it writes against that one limit, and kills a process of the program when it is hit.
Elsewhere :func:`find_memory_hierarchy` returns None and the limit stays per process (the sandbox
says so through ``LocalSandbox.memory_cgroup``).
"""

from __future__ import annotations

import os
import time

MOUNT_POINT = "/run/agentloop-cgroup"  # where a worker sees its cgroup directory


def _own_cgroup(version: int) -> str | None:
    try:
        lines = open("/proc/self/cgroup").read().splitlines()
    except OSError:
        return None
    for line in lines:
        hid, controllers, path = line.split(":", 2)
        if (version == 2 and hid == "0") or (version == 1 and "memory" in controllers.split(",")):
            return path
    return None


def find_memory_hierarchy() -> tuple[str, int] | None:
    """The directory of our own memory cgroup and the cgroup version, when we may create cgroups below it."""
    if os.geteuid() != 0:
        return None
    try:
        mounts = open("/proc/self/mountinfo").read().splitlines()
    except OSError:
        return None
    for line in mounts:
        fields = line.split()
        sep = fields.index("-")
        fstype, options, root, mnt = fields[sep + 1], fields[sep + 3], fields[3], fields[4]
        if fstype == "cgroup2":
            path = _own_cgroup(2)
            base = os.path.join(mnt, os.path.relpath(path or "/", root).lstrip("./")) if path is not None else None
            if base and os.path.isdir(base) and "memory" in _read(os.path.join(base, "cgroup.subtree_control")).split():
                return base, 2
        elif fstype == "cgroup" and "memory" in options.split(","):
            path = _own_cgroup(1)
            if path is None:
                continue
            base = os.path.normpath(os.path.join(mnt, os.path.relpath(path, root)))
            if os.path.isdir(base) and os.access(base, os.W_OK):
                return base, 1
    return None


def _read(path: str) -> str:
    try:
        with open(path) as f:
            return f.read()
    except OSError:
        return ""


def _write(path: str, value: str) -> None:
    with open(path, "w") as f:
        f.write(value)


class ProgramCgroups:
    """One memory cgroup per worker slot, limited to ``memory_bytes``; removed by :meth:`close`."""

    def __init__(self, base: str, version: int, memory_bytes: int, tag: str):
        self.version = version
        self.root = os.path.join(base, f"agentloop-{tag}")
        self.memory_bytes = memory_bytes
        os.makedirs(self.root, exist_ok=True)
        if version == 2:
            _write(os.path.join(self.root, "cgroup.subtree_control"), "+memory")

    @property
    def procs_file(self) -> str:
        return "cgroup.procs"

    def for_slot(self, slot: int) -> str:
        """The directory of worker ``slot``'s cgroup (created and limited on first use)."""
        path = os.path.join(self.root, f"w{slot}")
        if not os.path.isdir(path):
            os.mkdir(path)
            if self.version == 2:
                _write(os.path.join(path, "memory.max"), str(self.memory_bytes))
                for name, value in (("memory.swap.max", "0"), ("memory.oom.group", "1")):
                    if os.path.exists(os.path.join(path, name)):
                        _write(os.path.join(path, name), value)
            else:
                _write(os.path.join(path, "memory.limit_in_bytes"), str(self.memory_bytes))
                if os.path.exists(os.path.join(path, "memory.memsw.limit_in_bytes")):
                    _write(os.path.join(path, "memory.memsw.limit_in_bytes"), str(self.memory_bytes))
        return path

    def close(self) -> None:
        """Remove the cgroups (their processes are gone once the workers are killed; retried briefly)."""
        for _ in range(50):
            for name in sorted(os.listdir(self.root)) if os.path.isdir(self.root) else []:
                try:
                    os.rmdir(os.path.join(self.root, name))
                except OSError:
                    pass
            try:
                os.rmdir(self.root)
                return
            except FileNotFoundError:
                return
            except OSError:
                time.sleep(0.02)


def make_program_cgroups(memory_bytes: int) -> ProgramCgroups | None:
    """Per-worker memory cgroups below ours, or None where none can be made here."""
    found = find_memory_hierarchy()
    if found is None:
        return None
    cg = None
    try:
        cg = ProgramCgroups(found[0], found[1], memory_bytes, f"{os.getpid()}-{time.monotonic_ns()}")
        cg.for_slot(0)
        return cg
    except OSError:
        if cg is not None:
            cg.close()
        return None


__all__ = ["MOUNT_POINT", "ProgramCgroups", "find_memory_hierarchy", "make_program_cgroups"]
