"""The sandbox worker: a pre-started interpreter that forks one limited child per program.

This file runs *inside* the sandbox (bubblewrap namespaces, or a plain process for the ``process``
backend) and uses the standard library only; it is started as ``python -I worker.py CONFIG_JSON``.

Protocol, on the worker's stdin/stdout: each message is a 4-byte big-endian length followed by that
many bytes of JSON. The worker first sends ``{"ready": true}``; then, for each request
``{"code", "stdin", "timeout_s"}``, it sends one result ``{"status", "exit_code", "stdout", "stderr",
"duration_s", "output_truncated"}``.

Per program, the worker:

* makes a private directory under its temp root and writes stdin there;
* forks a child that starts a new session (its own process group), sets resource limits (CPU time,
  address space, file size, open files, processes, no core files), drops to the unprivileged uid/gid
  given in the config (with no supplementary groups), clears the environment, changes into the
  directory and executes the code with ``exec`` in a fresh ``__main__`` namespace;
* enforces the wall-clock timeout, caps the captured output (the rest is read and dropped so the
  program never blocks on a full pipe), and afterwards kills every process the program left behind:
  its process group, and then every process of the unprivileged uid (a helper that becomes that uid
  and calls ``kill(-1, SIGKILL)``, which also reaches children that escaped with ``setsid``);
* deletes the directory.

Forking a warm interpreter avoids paying interpreter start-up (tens of milliseconds) on every run.
The child starts from the worker's state: modules in ``PRELOAD`` are already imported; nothing a
program does can leak into the next one because each runs in a fresh fork.
"""

from __future__ import annotations

import ctypes
import errno
import json
import linecache
import os
import resource
import select
import shutil
import signal
import struct
import sys
import time
import traceback

# Standard-library modules the programs we run import most (MBPP: re, math, collections, heapq, ...).
PRELOAD = ("re", "math", "cmath", "collections", "heapq", "itertools", "functools", "operator", "bisect",
           "array", "copy", "string", "random", "fractions", "decimal", "statistics", "datetime", "typing")
SOURCE_NAME = "<solution>"
PR_SET_CHILD_SUBREAPER = 36


def read_msg(fd: int) -> dict | None:
    head = _read_exact(fd, 4)
    if head is None:
        return None
    body = _read_exact(fd, struct.unpack(">I", head)[0])
    return None if body is None else json.loads(body)


def _read_exact(fd: int, n: int) -> bytes | None:
    buf = bytearray()
    while len(buf) < n:
        chunk = os.read(fd, n - len(buf))
        if not chunk:
            return None
        buf += chunk
    return bytes(buf)


def write_msg(fd: int, obj: dict) -> None:
    body = json.dumps(obj).encode()
    data = struct.pack(">I", len(body)) + body
    while data:
        data = data[os.write(fd, data):]


# -- the child ------------------------------------------------------------------------------------
def _set_limits(cfg: dict, timeout_s: float) -> None:
    cpu = int(timeout_s) + 1  # CPU time can never exceed wall time by much; this backs up the wall timeout
    limits = {
        resource.RLIMIT_CORE: 0,
        resource.RLIMIT_CPU: cpu,
        resource.RLIMIT_AS: cfg["memory_bytes"],
        resource.RLIMIT_FSIZE: cfg["file_size_bytes"],
        resource.RLIMIT_NOFILE: cfg["max_open_files"],
        resource.RLIMIT_NPROC: cfg["max_processes"],
    }
    for which, value in limits.items():
        soft, hard = resource.getrlimit(which)
        value = value if hard == resource.RLIM_INFINITY else min(value, hard)
        resource.setrlimit(which, (value, value))


def _child(cfg: dict, req: dict, workdir: str, out_w: int, err_w: int) -> None:
    """Runs in the forked child; never returns."""
    rc = 1
    try:
        os.setsid()
        stdin_fd = os.open(os.path.join(workdir, ".stdin"), os.O_RDONLY)
        os.dup2(stdin_fd, 0)
        os.dup2(out_w, 1)
        os.dup2(err_w, 2)
        os.closerange(3, 1 << 16)
        for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGPIPE):
            signal.signal(sig, signal.SIG_DFL)
        _set_limits(cfg, float(req["timeout_s"]))
        if cfg.get("uid") is not None:
            os.setgroups([])
            os.setgid(cfg["gid"])
            os.setuid(cfg["uid"])  # from root: drops every capability as well
        os.chdir(workdir)
        os.environ.clear()
        os.environ.update(cfg["env"])
        sys.stdin = open(0, encoding="utf-8", errors="replace", closefd=False)
        sys.stdout = open(1, "w", encoding="utf-8", errors="replace", closefd=False)
        sys.stderr = open(2, "w", encoding="utf-8", errors="replace", closefd=False, buffering=1)
        sys.argv = [SOURCE_NAME]
    except BaseException as e:  # the sandbox itself failed to set up: say so on the error pipe
        os.write(err_w if err_w > 2 else 2, f"agentloop sandbox setup failed: {e!r}".encode())
        os._exit(125)
    rc = _exec_program(req["code"])
    try:
        sys.stdout.flush()
        sys.stderr.flush()
    except BaseException:
        pass
    os._exit(rc)


def _exec_program(code: str) -> int:
    # Registering the source makes tracebacks show the offending lines (the feedback LeTI uses).
    lines = code.splitlines(keepends=True)
    linecache.cache[SOURCE_NAME] = (len(code), None, lines, SOURCE_NAME)
    try:
        compiled = compile(code, SOURCE_NAME, "exec")
        exec(compiled, {"__name__": "__main__", "__builtins__": __builtins__})
        return 0
    except SystemExit as e:
        if e.code is None or isinstance(e.code, int):
            return int(e.code or 0) & 0xFF
        print(e.code, file=sys.stderr)
        return 1
    except BaseException as e:
        tb = e.__traceback__
        if tb is not None and tb.tb_frame.f_code is _exec_program.__code__:
            tb = tb.tb_next  # hide this function's frame: the traceback starts in the program
        traceback.print_exception(type(e), e, tb)
        return 1


# -- the worker -----------------------------------------------------------------------------------
def _kill_leftovers(cfg: dict, pgid: int, workdir: str) -> None:
    """Kill everything the program started, then delete its directory."""
    try:
        os.killpg(pgid, signal.SIGKILL)
    except OSError:
        pass
    uid = cfg.get("uid")
    if uid is None:
        _sweep_namespace(cfg)
        shutil.rmtree(workdir, ignore_errors=True)
        return
    helper = os.fork()
    if helper == 0:
        try:
            os.setgroups([])
            os.setgid(cfg["gid"])
            os.setuid(uid)
            # kill(-1) signals every process this uid may signal except the caller: all leftovers, including
            # those that left the process group; loop because a fork bomb may still be forking.
            for _ in range(1000):
                try:
                    os.kill(-1, signal.SIGKILL)
                except ProcessLookupError:
                    break
            _rmtree_owned(workdir)
        finally:
            os._exit(0)
    os.waitpid(helper, 0)
    shutil.rmtree(workdir, ignore_errors=True)


def _rmtree_owned(path: str) -> None:
    def fix(func, p, exc):  # a program may chmod its files to 000; the owner can undo that
        try:
            os.chmod(os.path.dirname(p), 0o700)
            os.chmod(p, 0o700)
            func(p)
        except OSError:
            pass
    shutil.rmtree(path, onerror=fix)


def _sweep_namespace(cfg: dict) -> None:
    """Without a uid to drop to, kill every other process in our private pid namespace (bwrap as a user)."""
    if not cfg.get("pid_namespace"):
        return
    me = os.getpid()
    for _ in range(50):
        victims = [int(p) for p in os.listdir("/proc") if p.isdigit() and int(p) not in (1, me)]
        if not victims:
            return
        for pid in victims:
            try:
                os.kill(pid, signal.SIGKILL)
            except OSError:
                pass
        _reap()
        time.sleep(0.001)


def _reap() -> None:
    while True:
        try:
            pid, _ = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            return
        if pid == 0:
            return


def _supervise(pid: int, out_r: int, err_r: int, timeout_s: float, cap: int, t0: float):
    """Collect output until the child exits or the deadline passes. Returns (timed_out, out, err, truncated)."""
    bufs = {out_r: bytearray(), err_r: bytearray()}
    truncated = False
    pidfd = os.pidfd_open(pid)
    poller = select.poll()
    for fd in (out_r, err_r, pidfd):
        poller.register(fd, select.POLLIN)
    open_fds = {out_r, err_r}
    exited = timed_out = False
    deadline = t0 + timeout_s
    while not exited:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            timed_out = True
            break
        for fd, _ in poller.poll(remaining * 1000):
            if fd == pidfd:
                exited = True
            elif fd in open_fds:
                truncated |= _read_into(fd, bufs[fd], cap, open_fds, poller)
    os.close(pidfd)
    return timed_out, bufs, truncated


def _read_into(fd: int, buf: bytearray, cap: int, open_fds: set, poller) -> bool:
    try:
        data = os.read(fd, 1 << 16)
    except BlockingIOError:
        return False
    if not data:
        open_fds.discard(fd)
        poller.unregister(fd)
        return False
    room = cap - len(buf)
    buf += data[:max(room, 0)]
    return len(data) > room


def _drain(fds: dict, cap: int) -> bool:
    """After every writer is dead, read what is left in the pipes (bounded: the pipes are finite)."""
    truncated = False
    for fd, buf in fds.items():
        os.set_blocking(fd, False)
        while True:
            try:
                data = os.read(fd, 1 << 16)
            except BlockingIOError:
                break
            if not data:
                break
            room = cap - len(buf)
            buf += data[:max(room, 0)]
            truncated |= len(data) > room
        os.close(fd)
    return truncated


def run_one(cfg: dict, req: dict, n: int) -> dict:
    workdir = os.path.join(cfg["tmp_root"], f"run{n}")
    os.mkdir(workdir, 0o700)
    with open(os.path.join(workdir, ".stdin"), "w", encoding="utf-8") as f:
        f.write(req.get("stdin") or "")
    if cfg.get("uid") is not None:
        os.chown(workdir, cfg["uid"], cfg["gid"])
    out_r, out_w = os.pipe()
    err_r, err_w = os.pipe()
    t0 = time.monotonic()
    pid = os.fork()
    if pid == 0:
        _child(cfg, req, workdir, out_w, err_w)
    os.close(out_w)
    os.close(err_w)
    timed_out, bufs, truncated = _supervise(pid, out_r, err_r, float(req["timeout_s"]), cfg["output_bytes"], t0)
    _kill_leftovers(cfg, pid, workdir)
    _, wstatus = os.waitpid(pid, 0)
    duration = time.monotonic() - t0
    _reap()
    truncated |= _drain(bufs, cfg["output_bytes"])
    return _result(wstatus, timed_out, bufs[out_r], bufs[err_r], truncated, duration)


def _result(wstatus: int, timed_out: bool, out: bytes, err: bytes, truncated: bool, duration: float) -> dict:
    exit_code = None
    if timed_out:
        status = "timeout"
    elif os.WIFEXITED(wstatus):
        exit_code = os.WEXITSTATUS(wstatus)
        status = "ok" if exit_code == 0 else ("sandbox_error" if exit_code == 125 else "error")
    else:
        sig = os.WTERMSIG(wstatus)
        exit_code = -sig
        status = "timeout" if sig == signal.SIGXCPU else "killed"
    return {"status": status, "exit_code": exit_code, "stdout": out.decode("utf-8", "replace"),
            "stderr": err.decode("utf-8", "replace"), "duration_s": round(duration, 6),
            "output_truncated": bool(truncated)}


def main() -> None:
    cfg = json.loads(sys.argv[1])
    proto_in, proto_out = os.dup(0), os.dup(1)
    devnull = os.open(os.devnull, os.O_RDWR)
    os.dup2(devnull, 0)
    os.dup2(devnull, 1)
    os.set_inheritable(proto_in, False)
    os.set_inheritable(proto_out, False)
    signal.signal(signal.SIGPIPE, signal.SIG_IGN)
    try:  # orphans of a program come back to us, so that we reap them (no zombies piling up)
        ctypes.CDLL(None, use_errno=True).prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0)
    except (OSError, AttributeError):
        pass
    for name in PRELOAD:
        __import__(name)
    os.makedirs(cfg["tmp_root"], exist_ok=True)
    write_msg(proto_out, {"ready": True, "pid": os.getpid(), "uid": os.getuid()})
    n = 0
    while True:
        req = read_msg(proto_in)
        if req is None:
            return
        n += 1
        try:
            res = run_one(cfg, req, n)
        except OSError as e:
            res = {"status": "sandbox_error", "exit_code": None, "stdout": "", "duration_s": 0.0,
                   "stderr": f"agentloop sandbox worker error: {e!r} (errno {errno.errorcode.get(e.errno, '?')})",
                   "output_truncated": False}
        write_msg(proto_out, res)


if __name__ == "__main__":
    main()
