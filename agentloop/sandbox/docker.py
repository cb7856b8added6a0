"""The ``docker`` backend: one throw-away container per program, through the docker SDK.

Each program runs in a fresh container of ``image`` with networking disabled, a read-only root
filesystem, a size-limited tmpfs at ``/tmp`` (the working directory), memory and pids limits, all
capabilities dropped, ``no-new-privileges``, and user ``nobody``. Starting a container costs
hundreds of milliseconds, so this backend is much slower than ``local``; use it where an engine is
available and bubblewrap is not. The image must already contain ``python``; pull it beforehand.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor

from agentloop.errors import SandboxError
from agentloop.sandbox.base import ExecResult, SandboxConfig

DEFAULT_IMAGE = "python:3.11-slim"


def docker_status() -> tuple[bool, str]:
    """Whether a Docker engine is reachable through the SDK, and why not."""
    try:
        import docker
    except ImportError:
        return False, "the docker SDK is not installed (pip install 'agentloop[docker]')."
    try:
        client = docker.from_env(timeout=5)
        client.ping()
        client.close()
    except Exception as e:  # the SDK raises several unrelated types when no engine is there
        return False, f"no Docker engine is reachable ({type(e).__name__}: {e})."
    return True, ""


class DockerSandbox:
    """Programs in throw-away containers. ``DockerSandbox(image="python:3.11-slim", memory_mb=512)``."""

    backend = "docker"

    def __init__(self, config: SandboxConfig | None = None, image: str = DEFAULT_IMAGE, **kwargs: object):
        self.config = config or SandboxConfig(**kwargs)  # type: ignore[arg-type]
        self.image = image
        ok, why = docker_status()
        if not ok:
            raise SandboxError(f"The docker sandbox is unavailable: {why} Use get_sandbox('local') (bubblewrap) instead.")
        import docker

        self._client = docker.from_env()
        self._executor = ThreadPoolExecutor(self.config.workers or 4, thread_name_prefix="agentloop-docker")

    def run(self, code: str, *, timeout_s: float = 5.0, stdin: str = "") -> ExecResult:
        c = self.config
        t0 = time.monotonic()
        try:
            container = self._client.containers.create(
                self.image, ["python", "-c", code], stdin_open=bool(stdin), stdin_once=bool(stdin), network_disabled=True, read_only=True, working_dir="/tmp",
                tmpfs={"/tmp": f"size={c.tmp_size_mb}m"}, mem_limit=f"{c.memory_mb}m", memswap_limit=f"{c.memory_mb}m",
                pids_limit=c.max_processes, cap_drop=["ALL"], security_opt=["no-new-privileges"], user="65534:65534",
                environment={"PYTHONDONTWRITEBYTECODE": "1"})
        except Exception as e:
            return ExecResult(status="sandbox_error", stderr=f"docker: could not create a container: {e}")
        try:
            return self._run_container(container, stdin, timeout_s, t0)
        finally:
            try:
                container.remove(force=True)
            except Exception:
                pass

    def _run_container(self, container, data: str, timeout_s: float, t0: float) -> ExecResult:
        sock = container.attach_socket(params={"stdin": 1, "stream": 1}) if data else None
        container.start()
        if sock is not None:
            raw = getattr(sock, "_sock", sock)
            raw.sendall(data.encode())
            raw.close()
        timed_out = False
        try:
            exit_code = int(container.wait(timeout=timeout_s)["StatusCode"])
        except Exception:
            timed_out, exit_code = True, None
            container.kill()
        cap = self.config.output_kb << 10
        out = container.logs(stdout=True, stderr=False)
        err = container.logs(stdout=False, stderr=True)
        status = "timeout" if timed_out else "ok" if exit_code == 0 else "killed" if exit_code and exit_code > 128 else "error"
        return ExecResult(status=status, exit_code=exit_code, stdout=out[:cap].decode("utf-8", "replace"),
                          stderr=err[:cap].decode("utf-8", "replace"), duration_s=time.monotonic() - t0,
                          output_truncated=len(out) > cap or len(err) > cap)

    def run_many(self, codes: Sequence[str], *, timeout_s: float = 5.0) -> list[ExecResult]:
        return list(self._executor.map(lambda code: self.run(code, timeout_s=timeout_s), codes))

    def close(self) -> None:
        self._executor.shutdown(wait=True)
        try:
            self._client.close()
        except Exception:
            pass


__all__ = ["DEFAULT_IMAGE", "DockerSandbox", "docker_status"]
