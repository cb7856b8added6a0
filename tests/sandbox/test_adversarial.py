"""Hostile programs against the local (bubblewrap) sandbox: each is contained and the sandbox carries on.

Every test runs its attack, asserts what the program saw or could not do, asserts the host is
untouched (no processes of the sandbox's uids left, no files written, no connection received), and
then runs a benign program on every worker to show the pool still works. Limits are kept small
(2 workers, 256 MiB, 2 s) so that the suite stays cheap on a shared machine.
"""

from __future__ import annotations

import os
import socket
import threading
import time
from pathlib import Path

import pytest

from agentloop.sandbox import get_sandbox
from agentloop.sandbox.local import bwrap_status

REPO = Path(__file__).resolve().parents[2]
SECRET = "agentloop-test-secret-7f3a"
pytestmark = pytest.mark.skipif(not bwrap_status()[0], reason=f"bubblewrap unavailable: {bwrap_status()[1]}")


@pytest.fixture(scope="module")
def sb():
    os.environ["AGENTLOOP_TEST_SECRET"] = SECRET  # present on the host when the workers start
    sandbox = get_sandbox("local", workers=2, memory_mb=256, tmp_size_mb=16, file_size_mb=4, max_processes=16)
    yield sandbox
    sandbox.close()
    os.environ.pop("AGENTLOOP_TEST_SECRET", None)


def host_processes_of(uids: list[int]) -> list[int]:
    found = []
    for name in os.listdir("/proc"):
        if name.isdigit():
            try:
                if os.stat(f"/proc/{name}").st_uid in uids:
                    found.append(int(name))
            except OSError:
                pass
    return found


def assert_contained_and_alive(sb) -> None:
    """No process of the programs' uids survives, and every worker still runs programs."""
    if sb.uids:
        deadline = time.monotonic() + 1.0
        while host_processes_of(sb.uids) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert host_processes_of(sb.uids) == []
    results = sb.run_many([f"print({i} * 2)" for i in range(4)], timeout_s=5)
    assert [r.stdout for r in results] == [f"{i * 2}\n" for i in range(4)], results


def test_fork_bomb_is_contained(sb):
    code = "import os\nwhile True:\n    try:\n        os.fork()\n    except OSError:\n        pass\n"
    r = sb.run(code, timeout_s=1.5)
    assert r.status in ("timeout", "killed")
    assert r.duration_s < 5
    assert_contained_and_alive(sb)


def test_memory_bomb_is_contained(sb):
    r = sb.run("x = bytearray(8 * 1024**3)", timeout_s=2)
    assert r.status == "error" and "MemoryError" in r.stderr
    r = sb.run("a = []\nwhile True:\n    a.append(bytearray(16 * 1024**2))", timeout_s=2)
    assert r.status in ("error", "killed") and "MemoryError" in r.stderr + str(r.exit_code)
    assert_contained_and_alive(sb)


def test_infinite_loop_times_out(sb):
    r = sb.run("while True:\n    pass", timeout_s=1)
    assert r.status == "timeout" and r.exit_code is None
    assert 0.9 < r.duration_s < 3
    assert_contained_and_alive(sb)


def test_busy_children_left_behind_are_killed(sb):
    code = (
        "import os, subprocess, sys\n"
        "for _ in range(3):\n"
        "    if os.fork() == 0:\n"
        "        os.setsid()\n"          # escape the process group
        "        if os.fork() == 0:\n"   # and double-fork into a daemon
        "            while True: pass\n"
        "        os._exit(0)\n"
        "print('parent done')\n"
    )
    r = sb.run(code, timeout_s=3)
    assert r.status == "ok" and r.stdout == "parent done\n"
    assert r.duration_s < 2, "the run must end when the program does, not wait for its children"
    assert_contained_and_alive(sb)


def test_disk_fill_is_bounded(sb):
    big = sb.run("open('big', 'wb').write(b'x' * (64 * 1024**2))", timeout_s=3)
    assert big.status in ("killed", "error")  # SIGXFSZ at the 4 MiB file-size limit
    many = sb.run(
        "import os\nn = 0\ntry:\n    while True:\n        open(f'f{n}', 'wb').write(b'x' * (3 * 1024**2)); n += 1\n"
        "except OSError as e:\n    print('stopped', n, e.errno)\n",
        timeout_s=3,
    )
    assert many.status == "ok" and many.stdout.startswith("stopped"), many
    assert int(many.stdout.split()[1]) <= 6  # a 16 MiB private tmpfs holds at most 5 such files
    # The files were deleted after the run: the next program has the whole space again.
    again = sb.run_many(["open('f', 'wb').write(b'x' * (3 * 1024**2)); print('ok')"] * 2, timeout_s=3)
    assert all(r.stdout == "ok\n" for r in again)
    # Files hidden in a locked subdirectory are removed too.
    locked = ("import os\nos.makedirs('d/e')\nopen('d/e/f', 'wb').write(b'x' * (3 * 1024**2))\n"
              "os.chmod('d/e', 0)\nos.chmod('d', 0)\nprint(len(os.listdir('.')))")
    assert [r.stdout for r in sb.run_many([locked] * 4, timeout_s=3)] == ["2\n"] * 4  # 'd' and '.stdin' only
    assert_contained_and_alive(sb)


def test_network_is_unreachable(sb):
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(1)
    server.settimeout(0.5)
    port = server.getsockname()[1]
    accepted: list[object] = []

    def accept() -> None:
        try:
            accepted.append(server.accept())
        except OSError:
            pass

    t = threading.Thread(target=accept)
    t.start()
    code = (
        "import socket\n"
        f"for addr in [('127.0.0.1', {port}), ('1.1.1.1', 53), ('8.8.8.8', 443)]:\n"
        "    try:\n"
        "        socket.create_connection(addr, timeout=0.5); print('connected', addr)\n"
        "    except OSError as e:\n"
        "        print('blocked', e.errno)\n"
    )
    r = sb.run(code, timeout_s=5)
    t.join()
    server.close()
    assert r.status == "ok" and "connected" not in r.stdout and r.stdout.count("blocked") == 3
    assert accepted == []
    assert_contained_and_alive(sb)


def test_host_files_are_invisible(sb):
    targets = [str(REPO / "pyproject.toml"), str(Path(__file__)), "/root/.bashrc", "/root/.ssh/id_rsa",
               "/etc/shadow", "/proc/1/environ"]
    code = (
        "import os\n"
        f"for p in {targets!r}:\n"
        "    try:\n"
        "        open(p).read(); print('READ', p)\n"
        "    except OSError as e:\n"
        "        print('denied', type(e).__name__)\n"
        f"print(sorted(os.listdir('/')), os.path.exists({str(REPO)!r}))\n"
    )
    r = sb.run(code, timeout_s=5)
    assert r.status == "ok" and "READ" not in r.stdout, r.stdout
    assert "'work'" not in r.stdout and r.stdout.strip().endswith("False")
    assert_contained_and_alive(sb)


def test_writes_outside_the_temp_dir_fail(sb, tmp_path):
    marker = tmp_path / "escaped"
    targets = ["/usr/escaped", "/etc/escaped", "/escaped", str(marker), "/opt/agentloop/worker.py", "/dev/shm/x"]
    code = (
        f"for p in {targets!r}:\n"
        "    try:\n"
        "        open(p, 'w').write('x'); print('WROTE', p)\n"
        "    except OSError as e:\n"
        "        print('denied', type(e).__name__)\n"
        "open('inside', 'w').write('fine'); print('inside ok')\n"
    )
    r = sb.run(code, timeout_s=5)
    assert r.status == "ok" and "WROTE" not in r.stdout and "inside ok" in r.stdout, r.stdout
    assert not marker.exists() and not Path("/usr/escaped").exists() and not Path("/escaped").exists()
    assert_contained_and_alive(sb)


def test_signalling_the_parent_fails(sb):
    host_pid = os.getpid()
    code = (
        "import os, signal\n"
        f"for pid in [os.getppid(), 1, 2, {host_pid}]:\n"
        "    try:\n"
        "        os.kill(pid, signal.SIGKILL); print('SIGNALLED', pid)\n"
        "    except OSError as e:\n"
        "        print('denied', type(e).__name__)\n"
        "try:\n"
        "    os.kill(-1, signal.SIGKILL)\n"
        "except OSError:\n"
        "    pass\n"
    )
    r = sb.run(code, timeout_s=5)
    # kill(-1) reaches only the program itself, so it may die by its own hand; nothing else may be hit.
    assert "SIGNALLED" not in r.stdout, r.stdout
    assert r.status in ("ok", "killed")
    assert_contained_and_alive(sb)


def test_huge_stdout_is_capped(sb):
    r = sb.run("import sys\nfor _ in range(2000):\n    sys.stdout.write('x' * 100_000)\nprint('end')", timeout_s=5)
    assert r.status == "ok" and r.output_truncated
    assert len(r.stdout) == 64 * 1024
    r = sb.run("import sys\nsys.stderr.write('e' * 10**7)", timeout_s=5)
    assert r.output_truncated and len(r.stderr) == 64 * 1024
    assert_contained_and_alive(sb)


def test_environment_secrets_are_not_visible(sb):
    assert os.environ.get("AGENTLOOP_TEST_SECRET") == SECRET
    code = (
        "import os\n"
        "print(dict(os.environ))\n"
        "for p in ['/proc/self/environ', '/proc/1/environ', '/proc/2/environ']:\n"
        "    try:\n"
        "        print(open(p, 'rb').read())\n"
        "    except OSError as e:\n"
        "        print('denied', p)\n"
    )
    r = sb.run(code, timeout_s=5)
    assert r.status == "ok" and SECRET not in r.stdout and "AGENTLOOP_TEST_SECRET" not in r.stdout
    assert_contained_and_alive(sb)


def test_a_batch_of_hostile_and_benign_programs_carries_on(sb):
    hostile = ["while True: pass", "x = bytearray(8 * 1024**3)", "import os\nos.kill(os.getppid(), 9)",
               "print('y' * 10**6)", "raise SystemExit(3)"]
    benign = [f"print(sum(range({n})))" for n in range(10)]
    results = sb.run_many(hostile + benign, timeout_s=1)
    assert [r.status for r in results[: len(hostile)]] == ["timeout", "error", "error", "ok", "error"]
    assert [r.stdout for r in results[len(hostile):]] == [f"{sum(range(n))}\n" for n in range(10)]
    assert_contained_and_alive(sb)


def test_new_namespaces_and_mounts_are_refused(sb):
    """A user namespace would let a program mount a tmpfs whose memory no limit counts."""
    assert sb._pool.seccomp
    code = (
        "import ctypes, os, threading, subprocess\n"
        "libc = ctypes.CDLL(None, use_errno=True)\n"
        "for flags in (0x10000000, 0x10020000, 0x40000000, 0x20000000):\n"  # user, user+mount, net, pid
        "    print('unshare', libc.unshare(flags), ctypes.get_errno())\n"
        "print('mount', libc.mount(b'none', b'/tmp', b'tmpfs', 0, None), ctypes.get_errno())\n"
        "t = threading.Thread(target=print, args=('thread ok',)); t.start(); t.join()\n"
        "print(subprocess.run(['/usr/bin/echo', 'exec ok'], capture_output=True, text=True).stdout.strip())\n"
    )
    r = sb.run(code, timeout_s=5)
    assert r.status == "ok", r
    assert r.stdout.splitlines() == ["unshare -1 1"] * 4 + ["mount -1 1", "thread ok", "exec ok"]
    assert_contained_and_alive(sb)


# -- issue 15: syscall ABIs, IPC, keyrings, whole-program memory, data between runs, clean-up --------------------
INT80_UNSHARE = (  # unshare(CLONE_NEWUSER|CLONE_NEWNS) through the 32-bit int 0x80 entry (x86_64 only)
    "import ctypes, mmap\n"
    "m = mmap.mmap(-1, 4096, prot=7)\n"
    "m.write(bytes.fromhex('534989CA89F889F389D14489D24489C64489CFCD804863C05BC3'))\n"
    "f = ctypes.CFUNCTYPE(ctypes.c_long, *[ctypes.c_long] * 6)(ctypes.addressof(ctypes.c_char.from_buffer(m)))\n"
    "print('native', ctypes.CDLL(None).unshare(0x10020000), flush=True)\n"
    "print('int80', f(310, 0x10020000, 0, 0, 0, 0), flush=True)\n"
)


@pytest.mark.skipif(os.uname().machine != "x86_64", reason="the int 0x80 entry exists on x86_64 only")
def test_32bit_syscall_entry_is_refused(sb):
    r = sb.run(INT80_UNSHARE, timeout_s=5)
    assert "native -1" in r.stdout, r
    assert "int80" not in r.stdout, r  # the process is killed at the first non-native system call
    assert r.status == "killed" and r.exit_code == -31, r  # SIGSYS
    x32 = ("import ctypes\nlibc = ctypes.CDLL(None, use_errno=True)\n"
           "print(libc.syscall(39 | 0x40000000), ctypes.get_errno())\n")  # getpid through the x32 ABI
    r = sb.run(x32, timeout_s=5)
    assert not (r.status == "ok" and not r.stdout.startswith("-1")), r
    assert_contained_and_alive(sb)


DANGEROUS = {  # name: (x86_64 number, args) -- each must fail with EPERM (or kill the program)
    "io_uring_setup": (425, (8, "buf")), "io_uring_enter": (426, (0, 0, 0, 0, 0)),
    "io_uring_register": (427, (0, 0, 0, 0)), "keyctl": (250, (0, -3, 0)),  # KEYCTL_GET_KEYRING_ID @s
    "add_key": (248, ("b'user'", "b'k'", "b'v'", 1, -4)), "request_key": (249, ("b'user'", "b'k'", 0, 0)),
    "ptrace": (101, (0, 0, 0, 0)), "bpf": (321, (0, "buf", 64)), "userfaultfd": (323, (0,)),
    "perf_event_open": (298, ("buf", 0, -1, -1, 0)), "process_vm_readv": (310, (1, 0, 0, 0, 0, 0)),
}


@pytest.mark.skipif(os.uname().machine != "x86_64", reason="syscall numbers are x86_64's")
def test_dangerous_syscalls_are_refused(sb):
    lines = ["import ctypes", "libc = ctypes.CDLL(None, use_errno=True)", "buf = ctypes.create_string_buffer(256)"]
    for name, (nr, args) in DANGEROUS.items():
        call = ", ".join(["ctypes.c_long(%d)" % nr] + [a if isinstance(a, str) else f"ctypes.c_long({a})" for a in args])
        lines.append(f"ctypes.set_errno(0); print({name!r}, libc.syscall({call}), ctypes.get_errno(), flush=True)")
    r = sb.run("\n".join(lines), timeout_s=5)
    assert r.status == "ok", r
    got = {line.split()[0]: line.split()[1:] for line in r.stdout.splitlines()}
    assert got == {name: ["-1", "1"] for name in DANGEROUS}, r.stdout
    assert_contained_and_alive(sb)


SHM = ("import ctypes\nlibc = ctypes.CDLL(None, use_errno=True)\n"
       "libc.shmat.restype = ctypes.c_void_p\n"
       "shmid = libc.shmget(0x5AFE, 32 << 20, 0o1666)\n"  # IPC_CREAT | 0666
       "p = libc.shmat(shmid, None, 0)\n"
       "ctypes.memmove(p, b'LEFT-BY-PREVIOUS-RUN', 20) if shmid >= 0 else None\n"
       "print('created', shmid >= 0)\n")
SHM_READ = ("import ctypes\nlibc = ctypes.CDLL(None, use_errno=True)\nlibc.shmat.restype = ctypes.c_void_p\n"
            "shmid = libc.shmget(0x5AFE, 0, 0)\n"
            "print('found', ctypes.string_at(libc.shmat(shmid, None, 0), 20) if shmid >= 0 else None)\n"
            "print('sysvipc', open('/proc/sysvipc/shm').read().count('\\n') - 1)\n"
            "import os\nprint('dev_shm', sorted(os.listdir('/dev/shm')), 'tmp', sorted(os.listdir('/tmp')))\n"
            "print('cwd', sorted(os.listdir('.')))\n")


def test_ipc_objects_and_shared_dirs_do_not_survive_the_run(sb):
    first = sb.run_many([SHM + "import os\nfor d in ('/dev/shm', '/tmp'):\n    try:\n"
                         "        open(d + '/leak', 'w').write('x')\n    except OSError:\n        pass\n"] * 2, timeout_s=5)
    assert all(r.status == "ok" and "created True" in r.stdout for r in first), first
    for r in sb.run_many([SHM_READ] * 4, timeout_s=5):
        assert r.status == "ok", r
        assert "found None" in r.stdout and "sysvipc 0" in r.stdout, r.stdout
        assert "leak" not in r.stdout and "dev_shm [] tmp ['run']" in r.stdout, r.stdout  # 'run': the work dir
    assert_contained_and_alive(sb)


KEYS = ("import ctypes\nlibc = ctypes.CDLL(None, use_errno=True)\n"
        "for ring in (-3, -4, -5):\n"  # session, user, user-session keyrings
        "    print(libc.syscall(248, b'user', b'agentloop-leak', b'SECRET-KEY-DATA', 15, ring), ctypes.get_errno())\n")
KEYS_READ = ("import ctypes\nlibc = ctypes.CDLL(None, use_errno=True)\nbuf = ctypes.create_string_buffer(64)\n"
             "for ring in (-3, -4, -5):\n"
             "    k = libc.syscall(249, b'user', b'agentloop-leak', None, 0)\n"  # request_key searches all rings
             "    if k > 0:\n        libc.syscall(250, 11, k, buf, 64); print('READ', buf.value)\n"  # KEYCTL_READ
             "try:\n    print(open('/proc/keys').read())\nexcept OSError:\n    pass\n")


def test_keyrings_do_not_leak_between_runs(sb):
    sb.run_many([KEYS] * 2, timeout_s=5)
    for r in sb.run_many([KEYS_READ] * 4, timeout_s=5):
        assert "SECRET-KEY-DATA" not in r.stdout and "agentloop-leak" not in r.stdout, r.stdout
    assert_contained_and_alive(sb)


def test_memory_limit_covers_every_process_of_the_program(sb):
    """14 children x 64 MiB each stay under the per-process limit (256 MiB) but not under the program's.

    Counted as children holding their memory *at the same instant*: when the limit is hit the kernel kills
    a process of the program (often an earlier holder), so a running count of "got my memory" can pass the
    limit while the memory held never does. Each child that got its memory before a shared deadline waits
    until just after it and then reports; every report is from a child alive and holding at that moment.
    """
    if not sb.memory_cgroup:
        pytest.skip("no memory cgroup can be made here (needs root and a writable cgroup v2 memory controller or "
                    "v1 memory hierarchy): the memory limit is per process, as the sandbox warned")
    code = (
        "import os, time\n"
        "deadline = time.monotonic() + 2.0\n"
        "r, w = os.pipe()\n"
        "for _ in range(14):\n"
        "    if os.fork() == 0:\n"
        "        try:\n"
        "            b = b'x' * (64 << 20)\n"
        "            if time.monotonic() < deadline:\n"
        "                time.sleep(deadline + 0.5 - time.monotonic())\n"
        "                os.write(w, b'1')\n"  # alive and holding at deadline + 0.5, as is every other reporter
        "                time.sleep(1.0)\n"
        "        finally:\n"
        "            os._exit(0)\n"
        "os.close(w)\n"
        "got = b''\n"
        "while True:\n"
        "    c = os.read(r, 1)\n"  # until every child is gone
        "    if not c:\n        break\n"
        "    got += c\n"
        "print('held', len(got), flush=True)\n"
    )
    r = sb.run(code, timeout_s=15)
    assert r.status == "ok" and r.stdout.startswith("held"), r
    held = int(r.stdout.split()[-1])
    assert 1 <= held, r  # the program ran: some children held their memory
    assert held * 64 <= 256 + 64, r  # never more than the program's limit (one block of slack for the interpreter)
    assert_contained_and_alive(sb)


def _needle_program(token_xor: str) -> str:
    """Search this process's memory (objects, frames, and /proc/self/mem) for a string from an earlier run."""
    return (
        "import gc, sys, re\n"
        f"needle = bytes(b ^ 0x55 for b in bytes.fromhex({token_xor!r}))\n"
        "hits = []\n"
        "for o in gc.get_objects():\n"
        "    for v in (o.values() if isinstance(o, dict) else (o if isinstance(o, (list, tuple)) else ())):\n"
        "        if v is not needle and isinstance(v, (str, bytes)) and needle in (v.encode('utf-8', 'replace') if isinstance(v, str) else v):\n"
        "            hits.append('object')\n"
        "f = sys._getframe()\n"
        "while f is not None:\n"
        "    if f.f_code.co_filename != '<program>' and any(needle.decode() in repr(v) for v in f.f_locals.values()):\n"
        "        hits.append('frame')\n"
        "    f = f.f_back\n"
        "own = id(needle) + 32\n"
        "bufs = []\n"
        "for line in open('/proc/self/maps').read().splitlines():\n"
        "    addr, perms = line.split()[:2]\n"
        "    if perms.startswith('r') and '[v' not in line:\n"
        "        lo, hi = (int(x, 16) for x in addr.split('-'))\n"
        "        try:\n"
        "            with open('/proc/self/mem', 'rb', buffering=0) as m:\n"
        "                m.seek(lo); data = m.read(hi - lo)\n"
        "        except (OSError, OverflowError, ValueError):\n"
        "            continue\n"
        "        bufs.append(data)\n"
        "        for mt in re.finditer(re.escape(needle), data):\n"
        "            a = lo + mt.start()\n"
        "            if a != own and not any(id(b) + 32 <= a < id(b) + 32 + len(b) for b in bufs):\n"
        "                hits.append('mem')\n"
        "import os\n"
        "for p in os.listdir('/proc'):\n"  # the worker holds earlier runs' code: its memory must be out of reach
        "    if p.isdigit() and int(p) != os.getpid():\n"
        "        try:\n"
        "            with open(f'/proc/{p}/mem', 'rb') as m:\n"
        "                hits.append('other-process-mem:' + p)\n"
        "        except OSError:\n"
        "            pass\n"
        "print('hits', sorted(set(hits)))\n"
    )


def test_earlier_runs_leave_nothing_in_later_runs_memory(sb):
    token = "EARLIER-RUN-" + os.urandom(6).hex()
    xored = bytes(b ^ 0x55 for b in token.encode()).hex()
    first = sb.run_many([f"secret = {token!r}\nprint(secret * 3)"] * 2, timeout_s=5)
    assert all(token in r.stdout for r in first)
    for r in sb.run_many([_needle_program(xored)] * 2, timeout_s=20):
        assert r.status == "ok", r
        assert r.stdout.strip() == "hits []", r.stdout
    assert_contained_and_alive(sb)


def test_deep_and_many_directories_cannot_defeat_clean_up(sb):
    deep = ("import os\nfor i in range(3000):\n    os.mkdir('d')\n    os.chdir('d')\n"
            "open('f', 'w').write('x')\nprint('deep ok')\n")
    r = sb.run(deep, timeout_s=10)
    assert r.status == "ok" and r.stdout == "deep ok\n", r
    flood = ("import os\nn = 0\ntry:\n    while True:\n        os.mkdir('d%d' % n); n += 1\n"
             "except OSError as e:\n    print('stopped', e.errno)\n")
    t0 = time.monotonic()
    r = sb.run(flood, timeout_s=3)
    took = time.monotonic() - t0
    assert r.status in ("ok", "timeout"), r  # the program's own outcome, never a sandbox error
    assert took < 3 + 5, took  # clean-up is bounded, and reported apart from the program's time
    assert r.cleanup_s < 5 and r.duration_s <= 3.5, r
    again = sb.run_many(["import os\nprint(sorted(os.listdir('.')))"] * 4, timeout_s=5)
    assert all(x.status == "ok" and "d0" not in x.stdout and "'d'" not in x.stdout for x in again), again
    assert_contained_and_alive(sb)


def test_host_unix_and_abstract_sockets_are_unreachable(sb, tmp_path):
    name = "agentloop-test-" + os.urandom(4).hex()
    abstract = socket.socket(socket.AF_UNIX)
    abstract.bind("\0" + name)
    abstract.listen(1)
    path = tmp_path / "s.sock"
    fs = socket.socket(socket.AF_UNIX)
    fs.bind(str(path))
    fs.listen(1)
    code = (
        "import socket\n"
        f"for addr in ['\\0{name}', {str(path)!r}]:\n"
        "    s = socket.socket(socket.AF_UNIX)\n"
        "    try:\n"
        "        s.connect(addr); print('connected')\n"
        "    except OSError as e:\n"
        "        print('blocked', e.errno)\n"
    )
    try:
        r = sb.run(code, timeout_s=5)
    finally:
        abstract.close()
        fs.close()
    assert r.status == "ok" and r.stdout.count("blocked") == 2, r
    assert_contained_and_alive(sb)
