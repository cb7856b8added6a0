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

What the ``local`` sandbox (started as root, as here) contains; each line names its test in
tests/sandbox/test_adversarial.py:

* Fork bombs and runaway threads: RLIMIT_NPROC per program uid (``test_fork_bomb_is_contained``).
* Memory: RLIMIT_AS per process and, where a memory cgroup can be made (v2 with the memory controller,
  or a v1 ``memory`` hierarchy), one limit of ``memory_mb`` for the whole program: every process it
  forks and every page of the files it writes in its tmpfs, without swap; a process of the program is
  OOM-killed when it is hit, never the worker (``test_memory_bomb_is_contained``,
  ``test_memory_limit_covers_every_process_of_the_program``). ``LocalSandbox.memory_cgroup`` says
  whether the whole-program limit is in force; without it the bound is ``max_processes x memory_mb``.
* Infinite loops: wall-clock timeout and RLIMIT_CPU (``test_infinite_loop_times_out``).
* Processes left running, even after ``setsid``: process-group kill, then every process of the
  program's uid (``test_busy_children_left_behind_are_killed``).
* Disk: RLIMIT_FSIZE per file, and a fresh tmpfs per run limited in size (``tmp_size_mb``) and in
  files (``tmp_inodes``) (``test_disk_fill_is_bounded``).
* Clean-up that a program cannot defeat or slow down: each run gets new mount and IPC namespaces with
  its own tmpfs at ``/tmp``; when its last process is gone the kernel discards the tmpfs whole, so
  3,000 nested directories or a directory flood cost the worker nothing and are never reported as a
  sandbox error; the clean-up time is reported as ``ExecResult.cleanup_s``, apart from ``duration_s``
  (``test_deep_and_many_directories_cannot_defeat_clean_up``).
* Nothing persists between runs: files in ``/tmp`` (per-run tmpfs; ``/dev/shm`` is read-only), SysV
  shared memory, semaphores and message queues and POSIX message queues (per-run IPC namespace)
  (``test_ipc_objects_and_shared_dirs_do_not_survive_the_run``); kernel keyrings (each run joins a
  fresh session keyring, and ``keyctl``/``add_key``/``request_key`` are refused)
  (``test_keyrings_do_not_leak_between_runs``); earlier runs' code, input and results (each run is a
  fork of a clean template process that never received a task; the request reaches only the child)
  (``test_earlier_runs_leave_nothing_in_later_runs_memory``); module state
  (``test_programs_do_not_share_state`` in test_sandbox.py).
* System calls: a seccomp filter kills the program at its first system call through any ABI other
  than the native one (the 32-bit ``int 0x80`` entry on x86_64, arm32 on aarch64), refuses the x32
  ABI, new namespaces, mounts, ``io_uring_*``, ``keyctl``/``add_key``/``request_key``, ``ptrace``,
  ``process_vm_readv/writev``, ``bpf``, ``userfaultfd``, ``perf_event_open`` and kexec/module/swap/
  reboot calls (``test_32bit_syscall_entry_is_refused``, ``test_dangerous_syscalls_are_refused``,
  ``test_new_namespaces_and_mounts_are_refused``).
* Network: a network namespace with only its own loopback, so no host service is reachable over
  TCP (127.0.0.1 included), unix sockets (the host's are not mounted) or abstract unix sockets
  (``test_network_is_unreachable``, ``test_host_unix_and_abstract_sockets_are_unreachable``).
* Host files (the repository, /root, /etc/shadow) are not mounted (``test_host_files_are_invisible``);
  writes outside the work directory fail (``test_writes_outside_the_temp_dir_fail``); the worker and
  the host cannot be signalled (``test_signalling_the_parent_fails``); output is capped
  (``test_huge_stdout_is_capped``); the host's environment is not passed on
  (``test_environment_secrets_are_not_visible``).

What it does NOT protect against: kernel exploits (namespaces share the host kernel; use a VM or
gVisor for hostile code at scale); CPU contention (a program may use its full CPU budget); timing
side channels; on architectures other than x86_64 and aarch64 the seccomp filter is missing (a
warning says so). The standard library and the interpreter's own prefix are readable by programs.
The worker and its template keep CAP_SYS_ADMIN (to make each run's namespaces and tmpfs) besides
CAP_SETUID/SETGID/KILL/CHOWN; programs never hold any capability. Started as an
ordinary user (not root), there is no uid drop, no per-run tmpfs or IPC namespace (runs get a
directory deleted afterwards) and no memory cgroup: programs keep the worker's uid and can kill their
own worker, which is then restarted. The ``process`` backend has none of the namespaces.

The sandbox runs programs; it does not judge them. Code tasks are judged by the harness in
:mod:`agentloop.environments.code.execution`, which keeps the verdict out of the program's reach: the
program only reports the values of the test sub-expressions that need its own names, as plain data,
and the host compares them with the expected values (see that module for what this does and does not
cover; tests/sandbox/test_verifier_integrity.py tries the known tricks).
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
