"""The ``local`` backend: bubblewrap namespaces around a pool of pre-started workers; no Docker engine.

Each worker runs inside its own ``bwrap`` sandbox:

* new pid, network, ipc, uts (and, where possible, cgroup) namespaces: no network at all (only a
  private loopback), no view of host processes;
* a filesystem built from nothing: read-only ``/usr`` (and the ``/bin``, ``/lib`` links), a few
  read-only files from ``/etc``, the interpreter's own prefix read-only, the worker script, fresh
  ``/proc`` and ``/dev``, and a size-limited private tmpfs at ``/tmp``. The repository, ``/root``,
  ``/home``, ``/var``, ``/run`` and sockets are simply absent;
* ``PR_SET_NO_NEW_PRIVS`` (bwrap always sets it), a seccomp filter in each program (native ABI only;
  no namespaces, mounts, io_uring, keyrings, ptrace, bpf, userfaultfd, perf events), and a cleared
  environment;
* started as root, the worker keeps only CAP_SETUID, CAP_SETGID, CAP_KILL, CAP_CHOWN and CAP_SYS_ADMIN
  (the last to give each run its own mount and IPC namespaces and tmpfs, discarded whole afterwards);
  every program runs as an unprivileged uid of its own (one per worker) with no capabilities, so that
  the process-count limit applies and the program cannot signal its worker; and where a memory cgroup
  can be made (:mod:`agentloop.sandbox.cgroup`, bound into the sandbox at ``/run/agentloop-cgroup``)
  each program, all its processes and files together, is limited to ``memory_mb``. Started as an
  ordinary user, bwrap uses a user namespace and the program keeps the worker's uid; then the worker
  kills every other process in its pid namespace after each run, and a worker a program kills is
  restarted.

When bubblewrap is missing or cannot create namespaces here, :class:`LocalSandbox` refuses with a
message saying how to get it; it never silently runs without isolation.
"""

from __future__ import annotations

import functools
import json
import os
import shutil
import subprocess

from agentloop.errors import SandboxError
from agentloop.sandbox.base import SandboxConfig
from agentloop.sandbox.cgroup import MOUNT_POINT, make_program_cgroups
from agentloop.sandbox.pool import WORKER_FLAGS, WORKER_SOURCE, PooledSandbox, WorkerPool, interpreter, minimal_env, worker_config

WORKER_PATH = "/opt/agentloop/worker.py"
ETC_FILES = ("ld.so.cache", "ld.so.conf", "ld.so.conf.d", "localtime", "passwd", "group", "nsswitch.conf",
             "mime.types", "hosts")
HOW_TO_FIX = (
    "Install bubblewrap ('apt-get install bubblewrap util-linux', or run scripts/install-sandbox-deps.sh) on a "
    "system that allows namespaces (as root, or with unprivileged user namespaces enabled: "
    "sysctl kernel.unprivileged_userns_clone=1). Alternatives: get_sandbox('docker') where a Docker engine is "
    "reachable, or get_sandbox('process') explicitly, which applies resource limits and a uid drop but no "
    "filesystem or network isolation."
)


def _is_root() -> bool:
    return os.geteuid() == 0


def bwrap_argv(config: SandboxConfig, slot: int, python: str, uid: int | None = None,
               cgroup_dir: str | None = None) -> list[str]:
    """The full command that starts worker ``slot`` inside bubblewrap (``cgroup_dir``: its programs' memory cgroup)."""
    root = _is_root()
    argv = ["bwrap", "--die-with-parent", "--new-session", "--unshare-pid", "--unshare-net", "--unshare-ipc",
            "--unshare-uts", "--unshare-cgroup-try", "--hostname", "sandbox"]
    # As root, a user namespace would map only uid 0 and make the uid drop impossible; as a user it is required.
    # CAP_SYS_ADMIN lets the worker give each run its own mount and IPC namespaces and tmpfs; programs never hold
    # it (the uid drop clears every capability, and no_new_privs forbids regaining one). Only capabilities in
    # this host's bounding set may be listed: bwrap silently keeps them all when adding one fails.
    argv += ["--cap-drop", "ALL", "--cap-add", "CAP_SETUID", "--cap-add", "CAP_SETGID", "--cap-add", "CAP_KILL",
             "--cap-add", "CAP_CHOWN", "--cap-add", "CAP_SYS_ADMIN"] \
        if root else ["--unshare-user", "--disable-userns"]
    argv += ["--ro-bind", "/usr", "/usr"]
    for top in ("bin", "sbin", "lib", "lib32", "lib64", "libx32"):
        path = f"/{top}"
        if os.path.islink(path):
            argv += ["--symlink", os.readlink(path), path]
        elif os.path.isdir(path):
            argv += ["--ro-bind", path, path]
    for name in ETC_FILES:
        argv += ["--ro-bind-try", f"/etc/{name}", f"/etc/{name}"]
    prefix = os.path.dirname(os.path.dirname(os.path.realpath(python)))
    if prefix != "/usr" and not prefix.startswith("/usr/"):
        argv += ["--ro-bind", prefix, prefix]
        # bwrap creates the parents (e.g. /root/.pyenv) copying the host's modes; open them so the program's uid
        # can reach its standard library. They are empty directories of the sandbox's own root, not the host's.
        parent = os.path.dirname(prefix)
        while parent not in ("/", ""):
            argv += ["--chmod", "0755", parent]
            parent = os.path.dirname(parent)
    argv += ["--ro-bind", str(WORKER_SOURCE), WORKER_PATH, "--proc", "/proc", "--dev", "/dev",
             "--size", str(config.tmp_size_mb << 20), "--tmpfs", "/tmp", "--chdir", "/tmp", "--clearenv"]
    if cgroup_dir:
        argv += ["--bind", cgroup_dir, MOUNT_POINT]
    for k, v in minimal_env().items():
        argv += ["--setenv", k, v]
    cfg = worker_config(config, uid=uid if root else None, tmp_root="/tmp/runs", pid_namespace=True, private_tmp=root,
                        cgroup=f"{MOUNT_POINT}/cgroup.procs" if cgroup_dir else None)
    return [*argv, python, *WORKER_FLAGS, WORKER_PATH, json.dumps(cfg)]


@functools.lru_cache(maxsize=4)
def bwrap_status(python: str | None = None) -> tuple[bool, str]:
    """Whether bubblewrap can start a sandbox here, and why not (cached per interpreter)."""
    if shutil.which("bwrap") is None:
        return False, "bubblewrap ('bwrap') is not installed."
    argv = bwrap_argv(SandboxConfig(python=python), 0, interpreter(SandboxConfig(python=python)))
    probe = [*argv[:-2 - len(WORKER_FLAGS)], "-I", "-c", "print('ok')"]  # the worker's command line up to the interpreter
    try:
        out = subprocess.run(probe, capture_output=True, text=True, timeout=30, env=minimal_env())
    except (OSError, subprocess.TimeoutExpired) as e:
        return False, f"bwrap failed to run: {e}"
    if out.returncode != 0 or out.stdout.strip() != "ok":
        return False, f"bwrap cannot create a sandbox here: {out.stderr.strip()[-500:] or out.returncode}"
    return True, ""


class LocalSandbox(PooledSandbox):
    """Bubblewrap-isolated pool of workers. ``LocalSandbox(workers=2, memory_mb=512)``.

    Example::

        sb = LocalSandbox()
        sb.run("print(1 + 1)").stdout   # '2\\n'
        sb.close()
    """

    backend = "local"

    def __init__(self, config: SandboxConfig | None = None, **kwargs: object):
        self.config = config or SandboxConfig(**kwargs)  # type: ignore[arg-type]
        python = interpreter(self.config)
        ok, why = bwrap_status(self.config.python)
        if not ok:
            raise SandboxError(f"The local sandbox is unavailable: {why} {HOW_TO_FIX}")
        self.uid_isolated = _is_root()
        n = self.config.workers or os.cpu_count() or 1
        #: The uid each worker's programs run as (None when not started as root: no uid drop).
        self.uids: list[int] | None = self.config.worker_uids(n) if self.uid_isolated else None
        uids = self.uids
        #: Per-worker memory cgroups bounding each program as a whole (None where none can be made here).
        self.cgroups = make_program_cgroups(self.config.memory_mb << 20) if self.uid_isolated else None
        cgroups = self.cgroups
        if cgroups is None:
            import warnings

            warnings.warn(f"agentloop sandbox: no memory cgroup can be made here, so memory_mb={self.config.memory_mb} "
                          "limits each process, not each program (a program may hold up to max_processes x memory_mb). "
                          "Run as root with a writable cgroup v2 (memory controller) or v1 memory hierarchy.",
                          RuntimeWarning, stacklevel=3)
        try:
            self._pool = WorkerPool(self.config.model_copy(update={"workers": n}),
                                    lambda slot: bwrap_argv(self.config, slot, python, uids[slot] if uids else None,
                                                            cgroups.for_slot(slot) if cgroups else None),
                                    minimal_env())
        except BaseException:
            if cgroups is not None:
                cgroups.close()
            raise

    @property
    def memory_cgroup(self) -> bool:
        """Whether the memory limit covers each program as a whole (else it is per process)."""
        return self.cgroups is not None

    def close(self) -> None:
        super().close()
        if self.cgroups is not None:
            self.cgroups.close()


__all__ = ["HOW_TO_FIX", "LocalSandbox", "bwrap_argv", "bwrap_status"]
