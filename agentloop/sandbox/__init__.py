"""Run untrusted (model-written) Python programs safely and fast.

``get_sandbox(kind)`` returns a :class:`Sandbox` with ``run(code, timeout_s=, stdin=)`` and
``run_many(codes, timeout_s=)`` returning :class:`ExecResult` records::

    from agentloop.sandbox import get_sandbox
    sb = get_sandbox("auto")                 # bubblewrap if it works here, else Docker, else an error
    sb.run("print(2 + 2)").stdout            # '4\\n'
    sb.run_many(["1/0", "while True: pass"], timeout_s=1)   # [error (traceback in stderr), timeout]
    sb.close()

Backends: ``local`` (bubblewrap namespaces + uid drop + resource limits, pooled pre-started workers;
needs no Docker engine), ``docker`` (a throw-away container per program), ``process`` (limits and a
uid drop without namespaces; only when asked for by name, with a warning).

What the ``local`` sandbox protects against (the adversarial tests in tests/sandbox check each):
fork bombs and runaway threads (RLIMIT_NPROC per program uid), memory bombs (RLIMIT_AS), infinite
loops (wall-clock timeout and RLIMIT_CPU), processes left running in the background (process-group
kill, then every process of the program's uid is killed), filling the disk (RLIMIT_FSIZE and a size-
limited private tmpfs), network access (a network namespace with only loopback), new namespaces and
mounts (a seccomp filter refuses them: a user namespace would allow a tmpfs whose memory no limit
counts), reading host files such as the repository or /root (they are not mounted), writing outside
its temp directory (read-only mounts, unprivileged uid), signalling the worker or the host (pid
namespace, different uid), flooding stdout (capped capture), reading host secrets from the
environment (cleared).

What it does NOT protect against: kernel exploits (namespaces share the host kernel; use a VM or
gVisor for hostile code at scale); CPU contention (a program may use its full CPU budget); side
channels; on architectures other than x86_64 and aarch64 the seccomp filter is missing (a warning
says so); a program that games the tests from inside the same interpreter (e.g. objects whose
``__eq__`` is always true, or introspecting the test harness's frames). The standard library and the
interpreter's own prefix are readable by programs. Started as an ordinary user (not root), the
programs keep the worker's uid: they can kill their own worker, which is then restarted.
"""

from __future__ import annotations

import atexit
import threading
from typing import Any, Literal

from agentloop.errors import ConfigError, SandboxError
from agentloop.sandbox.base import ExecResult, ExecStatus, Sandbox, SandboxConfig

SandboxKind = Literal["auto", "local", "process", "docker"]
KINDS = ("auto", "local", "process", "docker")


def get_sandbox(kind: str = "auto", **config: Any) -> Sandbox:
    """A new sandbox of ``kind`` with :class:`SandboxConfig` fields (docker also takes ``image``).

    ``auto`` picks ``local`` when bubblewrap works here, else ``docker`` when an engine is reachable,
    else raises :class:`~agentloop.errors.SandboxError` saying how to get isolation. It never falls
    back to ``process``: that backend must be chosen by name.
    """
    if kind not in KINDS:
        raise ConfigError(f"Unknown sandbox kind {kind!r}: choose one of {', '.join(KINDS)}.")
    if kind == "auto":
        from agentloop.sandbox.docker import docker_status
        from agentloop.sandbox.local import HOW_TO_FIX, bwrap_status

        ok, why = bwrap_status(config.get("python"))
        if ok:
            kind = "local"
        elif docker_status()[0]:
            kind = "docker"
        else:
            raise SandboxError(f"No isolating sandbox is available: {why} {HOW_TO_FIX}")
    if kind == "local":
        from agentloop.sandbox.local import LocalSandbox

        return LocalSandbox(**config)
    if kind == "process":
        from agentloop.sandbox.process import ProcessSandbox

        return ProcessSandbox(**config)
    from agentloop.sandbox.docker import DockerSandbox

    return DockerSandbox(**config)


_shared: dict[str, Sandbox] = {}
_shared_lock = threading.Lock()


def shared_sandbox(kind: str = "auto") -> Sandbox:
    """One process-wide sandbox per kind, started on first use and closed at exit.

    Environments use it so that many environment instances (one per rollout episode) share one
    worker pool instead of each starting its own.
    """
    with _shared_lock:
        sb = _shared.get(kind)
        if sb is None:
            sb = _shared[kind] = get_sandbox(kind)
        return sb


@atexit.register
def _close_shared() -> None:
    with _shared_lock:
        for sb in _shared.values():
            try:
                sb.close()
            except Exception:
                pass
        _shared.clear()


__all__ = ["ExecResult", "ExecStatus", "Sandbox", "SandboxConfig", "SandboxKind", "get_sandbox", "shared_sandbox"]
