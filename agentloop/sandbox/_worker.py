"""The sandbox worker: a pre-started interpreter that forks one limited child per program.

This file runs *inside* the sandbox (bubblewrap namespaces, or a plain process for the ``process``
backend) and uses the standard library only; it is started as ``python -I -B -S worker.py CONFIG_JSON`` (see ``_site_without_pth``).

Protocol, on the worker's stdin/stdout: each message is a 4-byte big-endian length followed by that
many bytes of JSON. The worker first sends ``{"ready": true, ...}``; then, for each request
``{"code", "stdin", "timeout_s"}``, it sends one result ``{"status", "exit_code", "stdout", "stderr",
"duration_s", "cleanup_s", "output_truncated"}``.

Processes: the worker (which talks to the host and supervises runs) forks, before it has seen any
request, a *template*; the template forks one child per run, each as soon as the previous one is
gone, and never reads a request itself. A child, before its request exists:

* starts a new session (its own process group), joins the programs' memory cgroup when there is one,
  and (with ``private_tmp``) makes new mount and IPC namespaces with a fresh size- and inode-limited
  tmpfs at ``/tmp`` holding its work directory;

then waits for its request on the template's socket (file descriptors only: a memory file holding the
request, and the output pipes), reads it, and:

* writes stdin into the work directory, sets resource limits (CPU time, address space, file size, open
  files, processes, no core files), drops to the unprivileged uid/gid given in the config (with no
  supplementary groups, so no capabilities), joins a fresh session keyring, installs the seccomp
  filter (see ``SYSCALLS``), clears the environment, changes into the directory and executes the code
  with ``exec`` in a fresh ``__main__`` namespace.

The worker enforces the wall-clock timeout, caps the captured output (the rest is read and dropped so
the program never blocks on a full pipe), and afterwards kills every process the program left behind:
its process group, and then every process of the unprivileged uid (a helper that becomes that uid and
calls ``kill(-1, SIGKILL)``, which also reaches children that escaped with ``setsid``). The kernel then
discards the run's tmpfs and IPC namespace whole, whatever they hold; without ``private_tmp`` (not
root, or the ``process`` backend) the worker deletes a per-run directory instead.

Forking a warm interpreter avoids paying interpreter start-up (tens of milliseconds) on every run.
Each child starts from the template's state, which holds no earlier run's code, input or output
(those pass only through the worker, another process the program cannot read): modules in
``PRELOAD`` are already imported, so are the *preludes* the config names (module sources many programs
start with, e.g. the code environment's test harness, run once here: a program imports them from
``sys.modules`` instead of carrying, unpacking and running them), and nothing a program does can leak into
the next one.
"""

from __future__ import annotations

import ctypes
import errno
import gc
import json
import linecache
import os
import resource
import select
import shutil
import signal
import socket
import struct
import sys
import time
import traceback

# Standard-library modules the programs we run import most (MBPP: re, math, collections, heapq, ...; the code
# environment's harness: decimal, fractions, io). Each costs every run a little (a bigger template to fork), so
# rarely used ones stay out; ``random`` (and ``secrets``, ``statistics``, which import it) above all: it reseeds
# itself in every forked child, a program that imports it gets a fresh seed anyway.
PRELOAD = ("re", "math", "cmath", "collections", "heapq", "itertools", "functools", "operator", "bisect",
           "array", "copy", "string", "fractions", "decimal", "datetime", "typing", "ast", "io", "binascii")
SOURCE_NAME = "<program>"
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



# -- seccomp: no new namespaces or mounts for programs -------------------------------------------
# A program could otherwise create a user namespace (allowed to unprivileged users on most kernels) and,
# inside it, mount a tmpfs whose memory no rlimit counts. The filter makes those calls fail with EPERM.
LIBC = ctypes.CDLL(None, use_errno=True)  # loaded once in the worker; children inherit it
PR_SET_NO_NEW_PRIVS, PR_SET_SECCOMP, SECCOMP_MODE_FILTER = 38, 22, 2
NS_FLAGS = 0x7E020000  # CLONE_NEWNS | NEWCGROUP | NEWUTS | NEWIPC | NEWUSER | NEWPID | NEWNET
# Refused outright (EPERM): namespaces and mounts (unshare, setns, mount, umount2, pivot_root, chroot, open_tree,
# move_mount, fsopen, fsconfig, fsmount, fspick, mount_setattr), io_uring (setup, enter, register: it performs
# system calls this filter never sees), kernel keyrings (keyctl, add_key, request_key), ptrace and cross-process
# memory access (process_vm_readv/writev), bpf, userfaultfd, perf_event_open, and kexec/module/swap/reboot calls.
SYSCALLS = {  # arch -> (AUDIT_ARCH, denied syscalls, clone, clone3)
    "x86_64": (0xC000003E, (272, 308, 165, 166, 155, 161, 428, 429, 430, 431, 432, 442, 425, 426, 427, 250, 248, 249,
                            101, 310, 311, 321, 323, 298, 246, 320, 175, 313, 176, 167, 168, 169), 56, 435),
    "aarch64": (0xC00000B7, (97, 268, 40, 39, 41, 51, 428, 429, 430, 431, 432, 442, 425, 426, 427, 219, 217, 218,
                             117, 270, 271, 280, 282, 241, 104, 294, 105, 273, 106, 224, 225, 142), 220, 435),
}
X32_SYSCALL_BIT = 0x40000000
RET_KILL_PROCESS, RET_ALLOW, RET_ERRNO = 0x80000000, 0x7FFF0000, 0x00050000


def seccomp_filter() -> bytes | None:
    """The classic-BPF program (struct sock_filter[]), or None on an architecture we have no table for."""
    import platform

    table = SYSCALLS.get(platform.machine())
    if table is None:
        return None
    arch, denied, clone, clone3 = table
    ld, jeq, jge, jset, ret = 0x20, 0x15, 0x35, 0x45, 0x06
    # Any other syscall ABI (the 32-bit int 0x80 entry on x86_64, arm32 compat on aarch64) has its own numbers,
    # which no rule below would match: a program that uses one is killed at its first such call.
    body: list[tuple[int, str | int, str | int, int]] = [(ld, 0, 0, 4), (jeq, 0, "kill", arch), (ld, 0, 0, 0)]
    if arch == 0xC000003E:
        body.append((jge, "deny", 0, X32_SYSCALL_BIT))  # the x32 ABI would bypass the numbers below
    body += [(jeq, "deny", 0, nr) for nr in denied]
    body += [(jeq, "nosys", 0, clone3),  # clone3 passes flags in memory; ENOSYS makes libc fall back to clone
             (jeq, 0, "allow", clone), (ld, 0, 0, 16), (jset, "deny", "allow", NS_FLAGS)]
    labels = {"allow": len(body), "deny": len(body) + 1, "nosys": len(body) + 2, "kill": len(body) + 3}
    body += [(ret, 0, 0, RET_ALLOW), (ret, 0, 0, RET_ERRNO | errno.EPERM), (ret, 0, 0, RET_ERRNO | errno.ENOSYS),
             (ret, 0, 0, RET_KILL_PROCESS)]
    out = bytearray()
    for i, (code, jt, jf, k) in enumerate(body):
        jt = labels[jt] - i - 1 if isinstance(jt, str) else jt
        jf = labels[jf] - i - 1 if isinstance(jf, str) else jf
        out += struct.pack("=HBBI", code, jt, jf, k)
    return bytes(out)


class _SockFprog(ctypes.Structure):
    _fields_ = [("len", ctypes.c_ushort), ("filter", ctypes.c_void_p)]


_PROGRAMS: dict[bytes, tuple] = {}  # filter -> (struct, buffer): built once in the worker, reused by every child


def _fprog(filter_bytes: bytes) -> tuple:
    prog = _PROGRAMS.get(filter_bytes)
    if prog is None:
        buf = ctypes.create_string_buffer(filter_bytes, len(filter_bytes))
        prog = _PROGRAMS[filter_bytes] = (_SockFprog(len(filter_bytes) // 8, ctypes.cast(buf, ctypes.c_void_p)), buf)
    return prog


def install_seccomp(filter_bytes: bytes) -> bool:
    prog = _fprog(filter_bytes)
    if LIBC.prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0:
        return False
    return LIBC.prctl(PR_SET_SECCOMP, SECCOMP_MODE_FILTER, ctypes.byref(prog[0]), 0, 0) == 0


def _probe_seccomp(filter_bytes: bytes | None) -> bool:
    """Whether the filter installs here (tried in a throw-away child, so the worker itself stays unfiltered)."""
    if filter_bytes is None:
        return False
    pid = os.fork()
    if pid == 0:
        os._exit(0 if install_seccomp(filter_bytes) else 1)
    return os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1]) == 0


# -- the child ------------------------------------------------------------------------------------
# The request as the child reads it (no JSON to decode in the child): the timeout, the lengths of the code and of
# stdin, then the code, stdin and (without a private tmpfs) the work directory, each UTF-8 (lone surrogates kept).
REQUEST_HEAD = struct.Struct("=dQQ")


def pack_request(timeout_s: float, code: str, stdin: str, workdir: str | None) -> bytes:
    code_b, stdin_b = code.encode("utf-8", "surrogatepass"), stdin.encode("utf-8", "surrogatepass")
    return b"".join((REQUEST_HEAD.pack(timeout_s, len(code_b), len(stdin_b)), code_b, stdin_b,
                     (workdir or "").encode("utf-8", "surrogateescape")))


def unpack_request(data: bytes) -> tuple[float, str, str, str]:
    timeout_s, n_code, n_stdin = REQUEST_HEAD.unpack_from(data)
    i, j = REQUEST_HEAD.size, REQUEST_HEAD.size + n_code
    return (timeout_s, data[i:j].decode("utf-8", "surrogatepass"), data[j:j + n_stdin].decode("utf-8", "surrogatepass"),
            data[j + n_stdin:].decode("utf-8", "surrogateescape"))


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


CLONE_NEWNS, CLONE_NEWIPC = 0x00020000, 0x08000000
MS_NOSUID, MS_NODEV, MS_REC, MS_PRIVATE = 0x2, 0x4, 0x4000, 0x40000
KEYCTL_JOIN_SESSION_KEYRING = 1
SYS_KEYCTL = {"x86_64": 250, "aarch64": 219}
RUN_DIR = "/tmp/run"


def _libc_call(fn, *args) -> None:
    if fn(*args) != 0:
        err = ctypes.get_errno()
        raise OSError(err, f"{fn.__name__}: {os.strerror(err)}")


def private_run_dir(cfg: dict) -> str:
    """New mount and IPC namespaces for this run, with a fresh size- and inode-limited tmpfs at /tmp.

    Everything the program writes lives in that tmpfs and every SysV/POSIX IPC object it makes lives in
    that IPC namespace: both vanish, whatever their number or depth, when the run's last process is gone.
    Needs CAP_SYS_ADMIN (kept by the worker, never by the program).
    """
    _libc_call(LIBC.unshare, CLONE_NEWNS | CLONE_NEWIPC)
    if not cfg.get("_rprivate"):  # (else the worker made every mount private once: copies of them are private too)
        _libc_call(LIBC.mount, b"none", b"/", None, MS_REC | MS_PRIVATE, None)
    opts = f"size={cfg['tmp_bytes']},nr_inodes={cfg['tmp_inodes']},mode=0755".encode()
    _libc_call(LIBC.mount, b"tmpfs", b"/tmp", b"tmpfs", MS_NOSUID | MS_NODEV, opts)
    return RUN_DIR


def _new_session_keyring(nr: int | None) -> None:
    """Join a fresh anonymous session keyring (keys from other runs are not reachable through it)."""
    if nr is not None:
        LIBC.syscall(ctypes.c_long(nr), ctypes.c_long(KEYCTL_JOIN_SESSION_KEYRING), None)


def _prepare_dir(cfg: dict, workdir: str, stdin: str) -> int:
    """Make the work directory (writable by the program's group, owned by the worker) and its stdin file."""
    try:
        os.mkdir(workdir, 0o700)
    except FileExistsError:
        pass
    stdin_path = workdir + "/.stdin"
    fd = os.open(stdin_path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    try:
        data = stdin.encode("utf-8", "surrogatepass")
        while data:
            data = data[os.write(fd, data):]
    finally:
        os.close(fd)
    if cfg.get("uid") is not None:
        # Owned by the worker, writable by the program's group: the program works in it, cannot chmod it, and
        # the worker (no CAP_DAC_OVERRIDE) can still delete what the program leaves there.
        os.chown(workdir, -1, cfg["gid"])
        os.chmod(workdir, 0o770)
    return os.open(stdin_path, os.O_RDONLY)


def _child(cfg: dict, sock: socket.socket) -> None:
    """Runs in a child forked from the clean template ahead of its run; never returns.

    It prepares what needs no request (a new session; its own mount and IPC namespaces, tmpfs and work
    directory), then waits for its request (file descriptors only) on the template's socket, reads the
    request itself, and becomes the program.
    """
    try:
        os.setsid()
        if cfg.get("cgroup"):  # one memory limit for every process and file of the program (done before the
            fd = os.open(cfg["cgroup"], os.O_WRONLY)  # request arrives: moving into a cgroup waits for an RCU grace
            try:  # period; plain os calls: in a fresh fork every object a call touches costs a page copy)
                os.write(fd, b"0")
            finally:
                os.close(fd)
        private = private_run_dir(cfg) if cfg["_private_tmp"] else None
        me = struct.pack("=i", os.getpid())
        while True:
            msg, fds, _, _ = socket.recv_fds(sock, 16, 3)
            if not msg:
                os._exit(0)  # the worker is gone: nothing to run
            if msg == me and len(fds) == 3:
                break
            for fd in fds:  # a request for an earlier child that died before reading it
                os.close(fd)
        req_fd, out_w, err_w = fds
        timeout_s, code, stdin, workdir = unpack_request(os.pread(req_fd, os.fstat(req_fd).st_size, 0))
        os.close(req_fd)
        if private is not None:
            workdir = private
            stdin_fd = _prepare_dir(cfg, workdir, stdin)
        else:
            stdin_fd = os.open(os.path.join(workdir, ".stdin"), os.O_RDONLY)
        del stdin
        os.dup2(stdin_fd, 0)
        os.dup2(out_w, 1)
        os.dup2(err_w, 2)
        os.closerange(3, 1 << 16)  # (the template already put SIGINT, SIGTERM and SIGPIPE back to their defaults)
        _set_limits(cfg, timeout_s)
        if cfg.get("uid") is not None:
            os.setgroups([])
            os.setgid(cfg["gid"])
            os.setuid(cfg["uid"])  # from root: drops every capability as well
        _new_session_keyring(cfg.get("_keyctl"))
        if cfg.get("_seccomp") and not install_seccomp(cfg["_seccomp"]):
            raise OSError("the seccomp filter could not be installed")
        os.chdir(workdir)
        os.environ.clear()
        os.environ.update(cfg["env"])
        os.environ["HOME"] = workdir
        sys.stdin = open(0, encoding="utf-8", errors="replace", closefd=False)
        sys.stdout = open(1, "w", encoding="utf-8", errors="replace", closefd=False)
        sys.stderr = open(2, "w", encoding="utf-8", errors="replace", closefd=False, buffering=1)
        sys.argv = [SOURCE_NAME]
    except BaseException as e:  # the sandbox itself failed to set up: say so on the error pipe
        os.write(2 if "err_w" not in locals() else err_w, f"agentloop sandbox setup failed: {e!r}".encode())
        os._exit(125)
    rc = _exec_program(code)
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
def _kill_leftovers(cfg: dict, tmpl: socket.socket, pid: int, workdir: str | None) -> int:
    """Kill everything the program started, delete its directory; returns the program's wait status."""
    for kill in (os.kill, os.killpg):  # the program itself (even before its setsid), then its process group
        try:
            kill(pid, signal.SIGKILL)
        except OSError:
            pass
    wstatus = _recv_int(tmpl)  # the template reaps the program and reports how it ended
    _reap()
    uid = cfg.get("uid")
    if uid is None:
        # The template's next child already exists (it shares our uid here): take it first and spare it.
        cfg["_next"] = _next_child(tmpl)
        _sweep_namespace(cfg, keep=(cfg["_template_pid"], cfg["_next"][0]))
        if workdir:
            shutil.rmtree(workdir, ignore_errors=True)
        return wstatus
    # Nothing but the program's descendants runs as its uid, so when none is left none can appear: the
    # (forking) helper below is only needed when something survived the process-group kill.
    if _processes_of(uid, exclude=-1):
        _as_program_uid(cfg, _kill_all_of_uid)
    if workdir is None:  # a private tmpfs: the kernel discards it, whatever it holds, with the last process
        return wstatus
    try:
        _rmtree_strict(workdir)
    except OSError:  # the program made files the worker may not delete (e.g. a subdirectory it owns)
        _as_program_uid(cfg, lambda: _rmtree_owned(workdir))
        shutil.rmtree(workdir, ignore_errors=True)
    return wstatus


def _kill_all_of_uid() -> None:
    # kill(-1) signals every process this uid may signal except the caller: all leftovers, including those
    # that left the process group. Repeat until /proc shows none of ours (zombies count until the worker
    # reaps them, which it does while waiting for this helper).
    me = os.getpid()
    for _ in range(100_000):
        try:
            os.kill(-1, signal.SIGKILL)
        except ProcessLookupError:
            return
        if not _processes_of(os.getuid(), exclude=me):
            return


def _as_program_uid(cfg: dict, fn) -> None:
    """Run ``fn`` in a forked helper that has become the program's uid; reap orphans meanwhile."""
    helper = os.fork()
    if helper == 0:
        try:
            os.setgroups([])
            os.setgid(cfg["gid"])
            os.setuid(cfg["uid"])
            fn()
        finally:
            os._exit(0)
    while True:  # we are the subreaper of the program's orphans: reap them until the helper is done
        try:
            if os.waitpid(-1, 0)[0] in (helper, -1):
                break
        except ChildProcessError:
            break


def _rmtree_strict(path: str) -> None:
    def fail(func, p, exc):
        raise OSError(f"cannot remove {p}")
    shutil.rmtree(path, onerror=fail)


def _processes_of(uid: int, exclude: int) -> list[int]:
    found = []
    for name in os.listdir("/proc"):
        if name.isdigit() and int(name) != exclude:
            try:
                if os.stat(f"/proc/{name}").st_uid == uid:
                    found.append(int(name))
            except OSError:
                pass
    return found


def _rmtree_owned(path: str) -> None:
    def fix(func, p, exc):  # a program may chmod its files to 000; the owner can undo that
        for target in (os.path.dirname(p), p):
            try:
                os.chmod(target, 0o700)
            except OSError:
                pass
        try:
            func(p)
        except OSError:
            pass
    shutil.rmtree(path, onerror=fix)


def _sweep_namespace(cfg: dict, keep: tuple[int, ...]) -> None:
    """Without a uid to drop to, kill every other process in our private pid namespace (bwrap as a user)."""
    if not cfg.get("pid_namespace"):
        return
    me = os.getpid()
    for _ in range(50):
        victims = [int(p) for p in os.listdir("/proc") if p.isdigit() and int(p) not in (1, me, *keep)]
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


def _supervise(pidfd: int, out_r: int, err_r: int, timeout_s: float, cap: int, t0: float):
    """Collect output until the child exits or the deadline passes. Returns (timed_out, buffers, truncated, end)."""
    bufs = {out_r: bytearray(), err_r: bytearray()}
    truncated = False
    poller = select.poll()
    for fd in (out_r, err_r, pidfd):
        poller.register(fd, select.POLLIN)
    open_fds = {out_r, err_r}
    exited = timed_out = False
    deadline = end = t0 + timeout_s
    while not exited:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            timed_out = True
            break
        for fd, _ in poller.poll(remaining * 1000):
            if fd == pidfd:
                exited = True
                end = time.monotonic()
            elif fd in open_fds:
                truncated |= _read_into(fd, bufs[fd], cap, open_fds, poller)
    os.close(pidfd)
    return timed_out, bufs, truncated, (end if exited else time.monotonic())


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


def _recv_int(sock: socket.socket) -> int:
    data = sock.recv(4)
    if len(data) != 4:
        raise OSError(errno.EPIPE, "the template process is gone")
    return struct.unpack("=i", data)[0]


def _next_child(sock: socket.socket) -> tuple[int, int]:
    """The pid and a pidfd of the child the template has forked for the next run."""
    msg, fds, _, _ = socket.recv_fds(sock, 16, 1)
    if len(msg) != 4 or len(fds) != 1:
        raise OSError(errno.EPIPE, "the template process is gone")
    return struct.unpack("=i", msg)[0], fds[0]


def run_one(cfg: dict, tmpl: socket.socket, req: dict, n: int) -> dict:
    workdir = None
    if not cfg["_private_tmp"]:  # no per-run tmpfs here: a directory under the worker's temp root
        workdir = os.path.join(cfg["tmp_root"], f"run{n}")
        os.close(_prepare_dir(cfg, workdir, req.get("stdin") or ""))
    request = os.memfd_create("request", os.MFD_CLOEXEC)
    data = pack_request(float(req["timeout_s"]), req["code"], req.get("stdin") or "", workdir)
    while data:
        data = data[os.write(request, data):]
    out_r, out_w = os.pipe()
    err_r, err_w = os.pipe()
    # The child for this run was forked (and prepared) while the previous run was being cleaned up.
    pid, pidfd = cfg.pop("_next", None) or _next_child(tmpl)
    t0 = time.monotonic()
    socket.send_fds(tmpl, [struct.pack("=i", pid)], [request, out_w, err_w])
    for fd in (request, out_w, err_w):
        os.close(fd)
    timed_out, bufs, truncated, end = _supervise(pidfd, out_r, err_r, float(req["timeout_s"]), cfg["output_bytes"], t0)
    wstatus = _kill_leftovers(cfg, tmpl, pid, workdir)
    duration = end - t0  # the program's own time, not the clean-up's
    _reap()
    truncated |= _drain(bufs, cfg["output_bytes"])
    res = _result(wstatus, timed_out, bufs[out_r], bufs[err_r], truncated, duration)
    res["cleanup_s"] = round(time.monotonic() - end, 6)
    return res


def template(cfg: dict, sock: socket.socket) -> None:
    """The clean template: forks one child per run and never sees a program, its input or its output.

    It never reads from the socket it shares with its children: the waiting child receives the request
    (file descriptors only: the request as a memory file, the output pipes) and reads it itself. So a
    program's memory holds nothing from earlier runs: not their code, stdin or results, which live only
    in the worker (a different process, another uid) and in their own children.
    """
    # The default dispositions the programs get, set once here rather than in every child (the template itself then
    # dies of SIGPIPE when the worker is gone, which is what it does on EPIPE anyway).
    for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGPIPE):
        signal.signal(sig, signal.SIG_DFL)
    while True:  # one child at a time, forked as soon as the previous one is gone
        pid = os.fork()
        if pid == 0:
            _child(cfg, sock)
        pidfd = os.pidfd_open(pid)
        try:
            socket.send_fds(sock, [struct.pack("=i", pid)], [pidfd])
            os.close(pidfd)
            status = os.waitpid(pid, 0)[1]
            sock.send(struct.pack("=i", status))
        except OSError:  # the worker is gone
            os._exit(0)


def _probe_private_tmp(cfg: dict) -> bool:
    """Whether a child can get its own mount and IPC namespaces and tmpfs here (needs CAP_SYS_ADMIN)."""
    pid = os.fork()
    if pid == 0:
        try:
            private_run_dir(cfg)
            os._exit(0)
        except BaseException:
            os._exit(1)
    return os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1]) == 0


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


def load_preludes(sources: dict) -> list[str]:
    """Run each prelude (a module's source, given by name in the config) once, here, as module ``name``.

    A prelude is code that many programs start with (the code environment's test harness): loaded in the worker
    before the template forks, it is in every child already, compiled and run, and a program only imports it
    (``sys.modules[name]``) instead of unpacking and running it. It holds no program, input or result: the
    template still holds nothing of any run. Returns the names loaded (one that fails to load is skipped)."""
    import types

    loaded = []
    for name, source in sources.items():
        module = types.ModuleType(name)
        try:
            exec(compile(source, f"<{name}>", "exec"), module.__dict__)
        except Exception:
            continue
        sys.modules[name] = module
        loaded.append(name)
    return loaded


def _site_without_pth() -> None:
    """What ``site`` gives programs, for a worker started with -S: site-packages on sys.path, exit/quit/help.

    .pth files are not run: their imports would sit in the template and be copied into every program."""
    if not sys.flags.no_site:
        return
    import site

    for path in site.getsitepackages():
        if os.path.isdir(path) and path not in sys.path:
            sys.path.append(path)
    site.setquit()
    site.setcopyright()
    site.sethelper()


def main() -> None:
    _site_without_pth()
    cfg = json.loads(sys.argv[1])
    proto_in, proto_out = os.dup(0), os.dup(1)
    devnull = os.open(os.devnull, os.O_RDWR)
    os.dup2(devnull, 0)
    os.dup2(devnull, 1)
    os.set_inheritable(proto_in, False)
    os.set_inheritable(proto_out, False)
    signal.signal(signal.SIGPIPE, signal.SIG_IGN)
    try:  # orphans of a program come back to us, so that we reap them (no zombies piling up)
        LIBC.prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0)
    except (OSError, AttributeError):
        pass
    os.umask(0o022)
    for name in PRELOAD:
        __import__(name)
    preludes = load_preludes(cfg.get("preludes") or {})
    os.makedirs(cfg["tmp_root"], exist_ok=True)
    filter_bytes = seccomp_filter()
    seccomp = _probe_seccomp(filter_bytes)
    cfg["_seccomp"] = filter_bytes if seccomp else None
    if seccomp:
        _fprog(filter_bytes)  # built here, once, for every child
    cfg["_private_tmp"] = bool(cfg.get("private_tmp")) and _probe_private_tmp(cfg)
    if cfg["_private_tmp"]:  # once here rather than in every run: each run's copies of private mounts are private
        try:
            _libc_call(LIBC.mount, b"none", b"/", None, MS_REC | MS_PRIVATE, None)
            cfg["_rprivate"] = True
        except OSError:
            pass
    import platform

    cfg["_keyctl"] = SYS_KEYCTL.get(platform.machine())
    # Forked children share our pages copy-on-write; a frozen heap keeps their garbage collector from
    # touching (and so copying) every one of them, which halves the cost of starting a program.
    gc.collect()
    gc.freeze()
    ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
    tpid = os.fork()
    if tpid == 0:  # the template, forked before any request exists
        ours.close()
        for fd in (proto_in, proto_out):
            os.close(fd)
        template(cfg, theirs)
    theirs.close()
    cfg["_template_pid"] = tpid
    write_msg(proto_out, {"ready": True, "pid": os.getpid(), "uid": os.getuid(), "seccomp": seccomp, "preludes": preludes,
                          "private_tmp": cfg["_private_tmp"], "cgroup": bool(cfg.get("cgroup"))})
    n = 0
    while True:
        req = read_msg(proto_in)
        if req is None:
            return
        n += 1
        try:
            res = run_one(cfg, ours, req, n)
        except OSError as e:
            res = {"status": "sandbox_error", "exit_code": None, "stdout": "", "duration_s": 0.0,
                   "stderr": f"agentloop sandbox worker error: {e!r} (errno {errno.errorcode.get(e.errno, '?')})",
                   "output_truncated": False}
            if e.errno == errno.EPIPE:
                write_msg(proto_out, res)
                return  # the template is gone: the host restarts this worker
        write_msg(proto_out, res)


if __name__ == "__main__":
    main()
