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
