"""The ``process`` backend: the same worker pool as ``local`` but without namespaces. Weaker; opt-in only.

What it still does: resource limits (CPU time, address space, file size, open files, processes), the
wall-clock timeout, process-group and per-uid cleanup, output caps, a cleared environment, a
private temp directory, and, when started as root, a per-worker unprivileged uid with no
capabilities (workers are started through ``setpriv`` with ``--no-new-privs`` and a bounding set of
only setuid/setgid/kill/chown).

What it does NOT do: hide the filesystem (a program can read any world-readable file, the repository
included), block the network, bound the total size of the files it writes (only each file's size),
or hide other processes. Started as an ordinary user it cannot even drop to another uid. Use it only
when you trust the code somewhat and cannot install bubblewrap; it warns every time it is created.
"""

from __future__ import annotations

import os
import shutil
import tempfile
import warnings

from agentloop.errors import SandboxError
from agentloop.sandbox.base import SandboxConfig
from agentloop.sandbox.pool import WORKER_FLAGS, WORKER_SOURCE, PooledSandbox, WorkerPool, interpreter, minimal_env, worker_config

WARNING = ("agentloop: the 'process' sandbox applies resource limits{uid} but NO filesystem or network isolation: "
           "programs can read world-readable files and open network connections. Install bubblewrap and use "
           "get_sandbox('local') for isolation.")


def _readable_by_others(path: str) -> bool:
    """The programs' uid can run this interpreter and read its library (every parent directory is o+x)."""
    import stat

    path = os.path.realpath(path)
    lib = os.path.dirname(os.path.dirname(path))
    d = path
    while d not in ("/", ""):
        d = os.path.dirname(d)
        if not os.stat(d).st_mode & stat.S_IXOTH:
            return False
    return bool(os.stat(path).st_mode & stat.S_IXOTH) and bool(os.stat(lib).st_mode & stat.S_IXOTH)


class ProcessSandbox(PooledSandbox):
    """Resource-limited workers without namespaces. Created only when asked for by name, with a warning."""

    backend = "process"

    def __init__(self, config: SandboxConfig | None = None, **kwargs: object):
        self.config = config or SandboxConfig(**kwargs)  # type: ignore[arg-type]
        root = os.geteuid() == 0
        self.uid_isolated = root
        if root and shutil.which("setpriv") is None:
            raise SandboxError("The process sandbox needs 'setpriv' (util-linux) to start workers with reduced "
                               "capabilities: apt-get install util-linux.")
        warnings.warn(WARNING.format(uid=" and a uid drop" if root else ""), RuntimeWarning, stacklevel=2)
        self._tmp = tempfile.mkdtemp(prefix="agentloop-sandbox-")
        os.chmod(self._tmp, 0o755)
        python = interpreter(self.config)
        if root and not _readable_by_others(python):
            fallback = shutil.which("python3", path="/usr/bin:/usr/local/bin")
            if self.config.python or fallback is None or not _readable_by_others(fallback):
                raise SandboxError(f"The interpreter {python} is not readable by the unprivileged uid the programs run "
                                   "as; pass python= an interpreter under /usr (e.g. /usr/bin/python3).")
            python = os.path.realpath(fallback)

        n = self.config.workers or os.cpu_count() or 1
        #: The uid each worker's programs run as (None when not started as root: no uid drop).
        self.uids: list[int] | None = self.config.worker_uids(n) if root else None
        uids = self.uids

        def argv(slot: int) -> list[str]:
            tmp_root = os.path.join(self._tmp, f"w{slot}")
            cfg = worker_config(self.config, uid=uids[slot] if uids else None, tmp_root=tmp_root, pid_namespace=False)
            import json

            cmd = [python, *WORKER_FLAGS, str(WORKER_SOURCE), json.dumps(cfg)]
            if root:
                cmd = ["setpriv", "--no-new-privs", "--inh-caps=-all",
                       "--bounding-set=-all,+setuid,+setgid,+kill,+chown", *cmd]
            return cmd

        try:
            self._pool = WorkerPool(self.config.model_copy(update={"workers": n}), argv, minimal_env())
        except Exception:
            shutil.rmtree(self._tmp, ignore_errors=True)
            raise

    def close(self) -> None:
        super().close()
        shutil.rmtree(self._tmp, ignore_errors=True)


__all__ = ["ProcessSandbox"]
