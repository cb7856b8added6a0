"""The sandbox API: results, limits, backend selection, refusal without isolation, process and docker backends."""

from __future__ import annotations

import os
import warnings

import pytest

from agentloop.errors import ConfigError, SandboxError
from agentloop.sandbox import ExecResult, Sandbox, SandboxConfig, get_sandbox
from agentloop.sandbox import local as local_mod
from agentloop.sandbox.docker import docker_status
from agentloop.sandbox.local import bwrap_status

needs_bwrap = pytest.mark.skipif(not bwrap_status()[0], reason=f"bubblewrap unavailable: {bwrap_status()[1]}")


@pytest.fixture(scope="module")
def sb():
    sandbox = get_sandbox("local", workers=2, memory_mb=256)
    yield sandbox
    sandbox.close()


@needs_bwrap
def test_run_reports_output_status_and_exit_code(sb):
    assert isinstance(sb, Sandbox)
    r = sb.run("print('hi')\nimport sys\nprint('err', file=sys.stderr)")
    assert isinstance(r, ExecResult)
    assert (r.status, r.exit_code, r.stdout, r.stderr, r.output_truncated) == ("ok", 0, "hi\n", "err\n", False)
    r = sb.run("raise ValueError('boom')")
    assert r.status == "error" and r.exit_code == 1
    assert r.stderr.startswith("Traceback") and "ValueError: boom" in r.stderr and "_worker" not in r.stderr
    assert sb.run("import sys; sys.exit(7)").exit_code == 7
    r = sb.run("import os, signal; os.kill(os.getpid(), signal.SIGSEGV)")
    assert (r.status, r.exit_code) == ("killed", -11)
    assert sb.run("def f(:").status == "error"


@needs_bwrap
def test_stdin_and_private_working_directory(sb):
    assert sb.run("print(input()[::-1])", stdin="abc\n").stdout == "cba\n"
    first = sb.run("import os; open('mine', 'w').write('1'); print(os.getcwd())").stdout
    second = sb.run("import os; print(os.path.exists('mine'), os.getcwd())").stdout
    assert first.startswith("/tmp/") and second.startswith("False")


@needs_bwrap
def test_programs_do_not_share_state(sb):
    sb.run_many(["import math; math.pi = 3; import builtins; builtins.len = None"] * 2)
    assert all(r.stdout == "True 3\n" for r in sb.run_many(["import math; print(math.pi > 3.1, len('abc'))"] * 4))


@needs_bwrap
def test_run_many_keeps_order_and_runs_in_parallel(sb):
    codes = ["import time; time.sleep(0.5); print(1)", "print(2)", "import time; time.sleep(0.5); print(3)", "print(4)"]
    results = sb.run_many(codes, timeout_s=5)
    assert [r.stdout for r in results] == ["1\n", "2\n", "3\n", "4\n"]
    assert sb.run_many([]) == []


@needs_bwrap
def test_programs_run_as_an_unprivileged_uid_without_capabilities(sb):
    if os.geteuid() != 0:
        pytest.skip("the uid drop needs the sandbox to start as root")
    r = sb.run("import os; print(os.getuid(), os.getgid(), os.getgroups()); print(open('/proc/self/status').read())")
    first, status = r.stdout.split("\n", 1)
    uid = int(first.split()[0])
    assert uid in sb.uids and uid >= 100_000
    assert "CapEff:\t0000000000000000" in status and "NoNewPrivs:\t1" in status


def test_config_validation_explains_the_rule():
    with pytest.raises(ValueError, match="workers must be <= 64"):
        SandboxConfig(workers=65)
    with pytest.raises(ValueError):
        SandboxConfig(memory_mb=1, bogus=1)
    with pytest.raises(ConfigError, match="choose one of"):
        get_sandbox("bogus")
    a, b = SandboxConfig().worker_uids(2), SandboxConfig().worker_uids(2)
    assert a != b and len(set(a + b)) == 4
    assert SandboxConfig(uid=5000).worker_uids(2) == [5000, 5001]


def test_local_refuses_without_bubblewrap(monkeypatch):
    monkeypatch.setattr(local_mod.shutil, "which", lambda name: None)
    local_mod.bwrap_status.cache_clear()
    try:
        with pytest.raises(SandboxError, match="apt-get install bubblewrap"):
            get_sandbox("local")
        monkeypatch.setattr("agentloop.sandbox.docker.docker_status", lambda: (False, "no engine"))
        with pytest.raises(SandboxError, match="No isolating sandbox"):
            get_sandbox("auto")  # never falls back to the unisolated process backend
    finally:
        local_mod.bwrap_status.cache_clear()


@needs_bwrap
def test_auto_picks_local_when_bubblewrap_works():
    sb = get_sandbox("auto", workers=1)
    try:
        assert sb.backend == "local" and sb.run("print(5)").stdout == "5\n"
    finally:
        sb.close()
    with pytest.raises(SandboxError, match="closed"):
        sb.run("print(1)")


def test_process_backend_warns_limits_and_cleans_up():
    with pytest.warns(RuntimeWarning, match="NO filesystem or network isolation"):
        sb = get_sandbox("process", workers=1, memory_mb=256)
    try:
        assert sb.run("print(6 * 7)").stdout == "42\n"
        assert sb.run("while True: pass", timeout_s=0.5).status == "timeout"
        assert "MemoryError" in sb.run("x = bytearray(4 * 1024**3)").stderr
        r = sb.run("import os\nif os.fork() == 0:\n    os.setsid()\n    while True: pass\nprint('ok')", timeout_s=3)
        assert r.stdout == "ok\n"
        if sb.uids:
            from tests.sandbox.test_adversarial import host_processes_of

            assert host_processes_of(sb.uids) == []
            assert sb.run("import os; os.kill(os.getppid(), 9)").status == "error"  # EPERM: other uid
        assert sb.run("print(1)").stdout == "1\n"
    finally:
        sb.close()


def test_docker_backend_runs_where_an_engine_exists():
    ok, why = docker_status()
    if not ok:
        pytest.skip(f"docker: {why}")
    with warnings.catch_warnings():
        sb = get_sandbox("docker", workers=1)
    try:
        r = sb.run("print(1 + 1)", timeout_s=30)
        if r.status == "sandbox_error":
            pytest.skip(f"docker engine present but could not run the image: {r.stderr}")
        assert r.stdout == "2\n"
        assert "blocked" in sb.run("import socket\ntry:\n socket.create_connection(('1.1.1.1', 53), timeout=1)\n"
                                   "except OSError:\n print('blocked')", timeout_s=30).stdout
    finally:
        sb.close()


@needs_bwrap
def test_requests_queued_behind_a_dying_worker_run_on_its_replacement():
    """run_many keeps a worker a request ahead: when it dies mid-run, only its head run is lost."""
    import threading

    sb = get_sandbox("local", workers=1)
    try:
        victim = sb._pool._workers[0].proc
        threading.Timer(0.5, lambda: os.kill(victim.pid, 9)).start()
        results = sb.run_many(["import time; time.sleep(3); print('slow')"] + [f"print({i})" for i in range(5)],
                              timeout_s=10)
        assert results[0].status == "sandbox_error" and "restarted" in results[0].stderr
        assert [r.stdout for r in results[1:]] == [f"{i}\n" for i in range(5)]
        assert sb._pool._workers[0].proc.pid != victim.pid
    finally:
        sb.close()


@needs_bwrap
def test_a_dead_worker_is_restarted_and_the_batch_carries_on():
    sb = get_sandbox("local", workers=2)
    try:
        victim = sb._pool._workers[0].proc
        os.kill(victim.pid, 9)
        victim.wait(timeout=5)
        results = sb.run_many([f"print({i})" for i in range(8)], timeout_s=5)
        assert sum(r.status == "sandbox_error" for r in results) <= 1
        assert all(r.stdout == f"{i}\n" for i, r in enumerate(results) if r.status != "sandbox_error")
        assert [r.stdout for r in sb.run_many(["print('again')"] * 4)] == ["again\n"] * 4
        assert sb._pool._workers[0].proc.pid != victim.pid
    finally:
        sb.close()
