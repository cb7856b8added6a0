"""A pool of pre-started sandbox workers (see ``_worker.py``), shared by the local and process backends.

Each worker is one long-lived interpreter started by the backend's command (bubblewrap, or a plain
process); it forks a limited child per program, so a run costs a fork, not an interpreter start.
``run`` takes an idle worker (thread-safe); ``run_many`` drives a batch over every idle worker from one thread,
each worker a request ahead; a worker that dies or stops answering is
killed and restarted, and that run is reported as ``sandbox_error`` (the batch carries on).
"""

from __future__ import annotations

import collections
import functools
import json
import os
import queue
import select
import struct
import subprocess
import tempfile
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from agentloop.errors import SandboxError
from agentloop.sandbox.base import ExecResult, SandboxConfig

WORKER_SOURCE = Path(__file__).with_name("_worker.py")
# Isolated mode, no bytecode files, and no ``site`` at start-up: the worker sets up what programs need of it (the
# site-packages directories on sys.path, exit/quit/help) without running the interpreter's .pth files, whose
# imports (often dozens of modules) would be copied into every forked program and slow each fork.
WORKER_FLAGS = ("-I", "-B", "-S")
# Preludes: module sources every worker started from now on loads once before its template forks (see
# ``load_preludes`` in _worker.py), by name; e.g. the code environment's test harness registers itself here.
PRELUDES: dict[str, str] = {}
# Extra seconds the host waits beyond a run's own timeout before declaring its worker stuck.
HOST_GRACE_S = 10.0
# run_many keeps each worker this many requests ahead, sending a request ahead only when its message is at most
# this many bytes (a pipe holds 64 KiB: a larger one could block the sending thread until the worker reads it).
PIPELINE_DEPTH = 2
PIPELINE_MAX_BYTES = 32 * 1024


def _request(code: str, stdin: str, timeout_s: float) -> bytes:
    return json.dumps({"code": code, "stdin": stdin, "timeout_s": float(timeout_s)}).encode()


class _Worker:
    """One running worker process and its message pipes."""

    def __init__(self, slot: int, argv: list[str], env: dict[str, str]):
        self.slot = slot
        self.argv = argv
        self.hello: dict = {}
        # stderr goes to a file, not a pipe: nobody reads it while the worker runs, and a full pipe would block it.
        self._err = tempfile.TemporaryFile()
        self.proc = subprocess.Popen(argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=self._err,
                                     env=env, close_fds=True, start_new_session=True)

    def wait_ready(self, timeout_s: float) -> None:
        hello = self.hello = self.receive(timeout_s) or {}
        if not hello.get("ready"):
            err = self._stderr_tail()
            self.kill()
            raise SandboxError(f"sandbox worker {self.slot} did not start: {err or 'no output'}. "
                               f"Command: {' '.join(self.argv[:6])} ...")

    def send(self, obj: dict) -> None:
        self.send_raw(json.dumps(obj).encode())

    def send_raw(self, body: bytes) -> None:
        """One message whose JSON body is already encoded."""
        assert self.proc.stdin is not None
        self.proc.stdin.write(struct.pack(">I", len(body)) + body)
        self.proc.stdin.flush()

    def fileno(self) -> int:
        """The pipe the worker answers on (for ``select``)."""
        assert self.proc.stdout is not None
        return self.proc.stdout.fileno()

    def receive(self, timeout_s: float) -> dict | None:
        head = self._read(4, timeout_s)
        if head is None:
            return None
        body = self._read(struct.unpack(">I", head)[0], timeout_s)
        return None if body is None else json.loads(body)

    def _read(self, n: int, timeout_s: float) -> bytes | None:
        assert self.proc.stdout is not None
        fd = self.proc.stdout.fileno()
        deadline = time.monotonic() + timeout_s
        buf = bytearray()
        while len(buf) < n:
            remaining = deadline - time.monotonic()
            if remaining <= 0 or not select.select([fd], [], [], remaining)[0]:
                return None
            chunk = os.read(fd, n - len(buf))
            if not chunk:
                return None
            buf += chunk
        return bytes(buf)

    def _stderr_tail(self) -> str:
        try:
            self.proc.kill()
            self.proc.wait(timeout=5)
            self._err.seek(0)
            return self._err.read().decode("utf-8", "replace").strip()[-2000:]
        except Exception:  # diagnostics only
            return ""

    def alive(self) -> bool:
        return self.proc.poll() is None

    def kill(self) -> None:
        try:
            os.killpg(self.proc.pid, 9)
        except OSError:
            pass
        try:
            self.proc.kill()
            self.proc.wait(timeout=5)
        except Exception:
            pass
        for f in (self.proc.stdin, self.proc.stdout, self._err):
            try:
                if f is not None:
                    f.close()
            except OSError:
                pass


class WorkerPool:
    """``n`` workers started with ``argv_for(slot)``; thread-safe ``run`` and parallel ``run_many``."""

    def __init__(self, config: SandboxConfig, argv_for: Callable[[int], list[str]], env: dict[str, str]):
        self.config = config
        self.size = config.workers or os.cpu_count() or 1
        self._argv_for = argv_for
        self._env = env
        self._idle: queue.Queue[_Worker] = queue.Queue()
        self._lock = threading.Lock()
        self._workers: dict[int, _Worker] = {}
        self._closed = False
        # Workers are spawned from one long-lived thread: bwrap's --die-with-parent (PR_SET_PDEATHSIG) fires
        # when the *thread* that spawned it exits, so a short-lived caller thread would take its worker down.
        self._spawner = ThreadPoolExecutor(1, thread_name_prefix="agentloop-sandbox-spawn")
        started = [self._spawn(slot) for slot in range(self.size)]
        try:
            for w in started:
                w.wait_ready(self.config.start_timeout_s)
        except SandboxError:
            self.close()
            raise
        for w in started:
            self._idle.put(w)
        self._alive = len(started)
        #: Whether every worker could install its seccomp filter (no new namespaces or mounts for programs).
        self.seccomp = all(w.hello.get("seccomp") for w in started)
        #: The preludes every worker loaded (programs may import them instead of carrying them).
        self.preludes = frozenset.intersection(*(frozenset(w.hello.get("preludes") or ()) for w in started))
        if not self.seccomp:
            import warnings

            warnings.warn("agentloop sandbox: the seccomp filter is unavailable here (unknown architecture or no "
                          "seccomp support); programs may create user namespaces.", RuntimeWarning, stacklevel=3)

    def _spawn(self, slot: int) -> _Worker:
        w = self._spawner.submit(_Worker, slot, self._argv_for(slot), self._env).result()
        with self._lock:
            self._workers[slot] = w
        return w

    def _start(self, slot: int) -> _Worker:
        w = self._spawn(slot)
        w.wait_ready(self.config.start_timeout_s)
        return w

    def run(self, code: str, *, timeout_s: float = 5.0, stdin: str = "") -> ExecResult:
        if self._closed:
            raise SandboxError("This sandbox is closed; create a new one with get_sandbox().")
        if not timeout_s > 0:
            raise SandboxError(f"timeout_s must be > 0, got {timeout_s}.")
        w = self._take()
        try:
            w.send_raw(_request(code, stdin, timeout_s))
            res = w.receive(timeout_s + HOST_GRACE_S)
        except (OSError, ValueError) as e:
            res, err = None, f"{type(e).__name__}: {e}"
        else:
            err = "the worker died or stopped answering"
        if res is None:
            w = self._replace(w)
            self._idle.put(w) if w is not None else None
            return ExecResult(status="sandbox_error", stderr=f"agentloop sandbox: {err}; it was restarted.")
        self._idle.put(w)
        return ExecResult.model_validate(res)

    def _take(self) -> _Worker:
        while True:
            try:
                return self._idle.get(timeout=1.0)
            except queue.Empty:
                if self._alive <= 0 or self._closed:
                    raise SandboxError("Every sandbox worker failed to restart; create a new sandbox "
                                       "(and check that bubblewrap still works: agentloop sandbox).") from None

    def _replace(self, w: _Worker) -> _Worker | None:
        w.kill()
        if self._closed:
            return None
        try:
            return self._start(w.slot)
        except SandboxError:
            with self._lock:
                self._alive -= 1  # the slot is lost; the remaining workers carry on
            return None

    def run_many(self, codes: Sequence[str], *, timeout_s: float = 5.0) -> list[ExecResult]:
        """Every program once, results in input order: the batch is driven from this one thread.

        The idle workers (at least one, waiting for it if every worker is busy) are taken for the whole batch
        and each is kept :data:`PIPELINE_DEPTH` requests ahead: the next request already waits in a worker's
        pipe while its current program runs, so a worker never idles for the host's round trip (the thread
        per run of :meth:`run` paid a wake-up and a hand-over of the interpreter lock between runs). A
        request is sent ahead only when small enough (:data:`PIPELINE_MAX_BYTES`) to fit the pipe without
        blocking. Each run's host deadline (its timeout plus :data:`HOST_GRACE_S`) starts when it reaches the
        head of its worker's queue. A worker that dies or stops answering is restarted as in :meth:`run`:
        the run at its head is reported as ``sandbox_error`` and the requests queued behind it go back to
        the batch (they never started).
        """
        if self._closed:
            raise SandboxError("This sandbox is closed; create a new one with get_sandbox().")
        if not timeout_s > 0:
            raise SandboxError(f"timeout_s must be > 0, got {timeout_s}.")
        if len(codes) <= 1:
            return [self.run(c, timeout_s=timeout_s) for c in codes]
        bodies = [_request(c, "", timeout_s) for c in codes]
        results: list[ExecResult | None] = [None] * len(codes)
        pending = collections.deque(range(len(codes)))
        queued: dict[_Worker, collections.deque[int]] = {self._take(): collections.deque()}
        while len(queued) < min(self.size, len(codes)):
            try:
                queued[self._idle.get_nowait()] = collections.deque()
            except queue.Empty:
                break
        deadline: dict[_Worker, float] = {}
        wait_s = timeout_s + HOST_GRACE_S

        def lost(w: _Worker, err: str) -> None:  # the head run failed with its worker; the rest go back
            q = queued.pop(w)
            deadline.pop(w, None)
            results[q.popleft()] = ExecResult(status="sandbox_error",
                                              stderr=f"agentloop sandbox: {err}; it was restarted.")
            pending.extendleft(reversed(q))
            fresh = self._replace(w)
            if fresh is not None:
                queued[fresh] = collections.deque()

        try:
            while pending or any(queued.values()):
                if not queued:
                    raise SandboxError("Every sandbox worker failed to restart; create a new sandbox "
                                       "(and check that bubblewrap still works: agentloop sandbox).")
                for w, q in list(queued.items()):
                    while pending and len(q) < PIPELINE_DEPTH and (not q or len(bodies[pending[0]]) <= PIPELINE_MAX_BYTES):
                        i = pending.popleft()
                        try:
                            w.send_raw(bodies[i])
                        except (OSError, ValueError) as e:
                            pending.appendleft(i)
                            if q:
                                lost(w, f"{type(e).__name__}: {e}")
                            else:
                                queued.pop(w)
                                fresh = self._replace(w)
                                if fresh is not None:
                                    queued[fresh] = collections.deque()
                            break
                        q.append(i)
                        if len(q) == 1:
                            deadline[w] = time.monotonic() + wait_s
                busy = {w.fileno(): w for w, q in queued.items() if q}
                if not busy:
                    continue
                now = time.monotonic()
                ready, _, _ = select.select(list(busy), [], [], max(0.0, min(deadline[w] for w in busy.values()) - now))
                for fd in ready:
                    w = busy[fd]
                    res = w.receive(wait_s)
                    if res is None:
                        lost(w, "the worker died or stopped answering")
                        continue
                    results[queued[w].popleft()] = ExecResult.model_validate(res)
                    deadline[w] = time.monotonic() + wait_s
                now = time.monotonic()
                for w in [w for w in busy.values() if w in queued and queued[w] and deadline[w] <= now]:
                    lost(w, "the worker stopped answering")
        finally:
            for w, q in queued.items():
                if q:  # interrupted with runs in flight: the worker's answers would be out of step
                    fresh = self._replace(w)
                    if fresh is not None:
                        self._idle.put(fresh)
                else:
                    self._idle.put(w)
        return [r if r is not None else ExecResult(status="sandbox_error", stderr="agentloop sandbox: not run")
                for r in results]

    def close(self) -> None:
        self._closed = True
        spawner = getattr(self, "_spawner", None)
        if spawner is not None:
            spawner.shutdown(wait=True, cancel_futures=True)
        with self._lock:
            workers, self._workers = list(self._workers.values()), {}
        for w in workers:
            w.kill()


def worker_config(config: SandboxConfig, *, uid: int | None, tmp_root: str, pid_namespace: bool,
                  private_tmp: bool = False, cgroup: str | None = None) -> dict:
    """The JSON the worker reads from argv (see ``_worker.py``).

    ``private_tmp``: give each run new mount and IPC namespaces with a fresh tmpfs at /tmp (the worker
    needs CAP_SYS_ADMIN); ``cgroup``: the ``cgroup.procs`` file (inside the worker's view) each program joins.
    """
    return {
        "uid": uid, "gid": uid, "tmp_root": tmp_root, "pid_namespace": pid_namespace,
        "private_tmp": private_tmp, "cgroup": cgroup, "tmp_bytes": config.tmp_size_mb << 20,
        "tmp_inodes": config.tmp_inodes,
        "memory_bytes": config.memory_mb << 20, "file_size_bytes": config.file_size_mb << 20,
        "max_open_files": config.max_open_files, "max_processes": config.max_processes,
        "output_bytes": config.output_kb << 10, "preludes": dict(PRELUDES),
        "env": {"PATH": "/usr/local/bin:/usr/bin:/bin", "HOME": tmp_root, "LANG": "C.UTF-8",
                "PYTHONDONTWRITEBYTECODE": "1", "PYTHONIOENCODING": "utf-8"},
    }


def minimal_env() -> dict[str, str]:
    """The environment workers start with: nothing from the host (no tokens, keys or paths)."""
    return {"PATH": "/usr/local/bin:/usr/bin:/bin", "LANG": "C.UTF-8"}


def interpreter(config: SandboxConfig) -> str:
    """The Python that runs programs: the configured one, else the fastest compatible one (:func:`fastest_interpreter`)."""
    if config.python:
        return config.python
    return fastest_interpreter()


# What the start-up probe does: what a worker does before its first run (start without site, import the modules it
# preloads and ctypes), then forks a few children, as it does once per run (a statically linked build forks faster).
PROBE = ("import sys, os, ctypes, json, socket, struct\n"
         "for m in {preload!r}:\n    __import__(m)\n"
         "for _ in range(10):\n    pid = os.fork()\n    if pid == 0:\n        os._exit(0)\n    os.waitpid(pid, 0)\n"
         "print('%d.%d' % sys.version_info[:2])\n")


def candidate_interpreters() -> list[str]:
    """Interpreters that may run programs in place of this one: this Python's base interpreter and every
    ``pythonX.Y`` of the same version on the usual paths, by real path, without duplicates (not yet checked)."""
    import shutil
    import sys

    version = "python%d.%d" % sys.version_info[:2]
    found = [getattr(sys, "_base_executable", None) or sys.executable]
    for d in ("/usr/bin", "/usr/local/bin", "/bin"):
        found.append(os.path.join(d, version))
    found.append(shutil.which(version) or "")
    out: list[str] = []
    for path in found:
        real = os.path.realpath(path) if path else ""
        if real and os.path.isfile(real) and os.access(real, os.X_OK) and real not in out and _is_binary(real):
            out.append(real)
    return out


def _is_binary(path: str) -> bool:
    """An executable file, not a wrapper script (a pyenv shim would start a shell and pyenv on every worker)."""
    try:
        with open(path, "rb") as f:
            return f.read(2) != b"#!"
    except OSError:
        return False


def probe_interpreter(python: str, runs: int = 3) -> float | None:
    """Seconds the start-up probe (:data:`PROBE`) takes with ``python`` (best of ``runs``), or None when it is not
    compatible: another minor version, or its standard library (or ctypes, which the worker needs) is missing."""
    import sys

    from agentloop.sandbox._worker import PRELOAD

    want = "%d.%d" % sys.version_info[:2]
    best = None
    for _ in range(runs):
        t0 = time.perf_counter()
        try:
            out = subprocess.run([python, *WORKER_FLAGS, "-c", PROBE.format(preload=PRELOAD)], capture_output=True,
                                 text=True, timeout=30, env=minimal_env())
        except (OSError, subprocess.TimeoutExpired):
            return None
        took = time.perf_counter() - t0
        if out.returncode != 0 or out.stdout.strip() != want:
            return None
        best = took if best is None else min(best, took)
    return best


@functools.lru_cache(maxsize=1)
def interpreter_timings() -> dict[str, float | None]:
    """Each candidate interpreter's probe time (None: not compatible), measured once per process."""
    return {python: probe_interpreter(python) for python in candidate_interpreters()}


def fastest_interpreter() -> str:
    """The compatible interpreter (same minor version, standard library present) that starts and forks fastest.

    Builds of one version differ a lot: a build linked to a shared libpython starts and forks slower than a
    statically linked one (every run of the sandbox is a fork, each copy-on-write fault costs more), so the
    sandbox measures instead of assuming. Programs see the chosen interpreter's own site-packages (a package
    installed only for another build is not importable); ``SandboxConfig(python=...)`` picks one explicitly."""
    timings = {p: t for p, t in interpreter_timings().items() if t is not None}
    if not timings:
        import sys

        return os.path.realpath(getattr(sys, "_base_executable", None) or sys.executable)
    return min(timings, key=lambda p: timings[p])


class PooledSandbox:
    """The Sandbox methods of a backend that runs programs in a :class:`WorkerPool` (``self._pool``)."""

    _pool: WorkerPool

    @property
    def preludes(self) -> frozenset[str]:
        """The preludes (:data:`PRELUDES`) every worker has loaded."""
        return self._pool.preludes

    def run(self, code: str, *, timeout_s: float = 5.0, stdin: str = "") -> ExecResult:
        return self._pool.run(code, timeout_s=timeout_s, stdin=stdin)

    def run_many(self, codes: Sequence[str], *, timeout_s: float = 5.0) -> list[ExecResult]:
        return self._pool.run_many(codes, timeout_s=timeout_s)

    def close(self) -> None:
        self._pool.close()

    def __enter__(self) -> PooledSandbox:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


__all__ = ["PRELUDES", "WORKER_FLAGS", "PooledSandbox", "WorkerPool", "candidate_interpreters", "fastest_interpreter", "interpreter",
           "interpreter_timings", "minimal_env", "probe_interpreter", "worker_config"]
