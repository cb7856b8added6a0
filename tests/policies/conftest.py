"""Fixtures of the policy tests: the embedded default model, loaded once per session."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest


@pytest.fixture(scope="session")
def hf32() -> Any:
    """The default model in float32 (exact comparisons against forward passes); skipped if not installed."""
    pytest.importorskip("torch")
    from agentloop.errors import PolicyError
    from agentloop.policies.hf import HFPolicy

    try:
        return HFPolicy(dtype="float32", max_batch_size=8)
    except PolicyError as e:
        pytest.skip(f"default model unavailable: {e}")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class ThreadServer:
    """An in-process uvicorn server on 127.0.0.1 for tests that need a live endpoint without a subprocess."""

    def __init__(self, app: Any):
        import uvicorn

        self.port = free_port()
        self.server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=self.port, log_level="warning"))
        self.thread = threading.Thread(target=self.server.run, daemon=True)

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1"

    def __enter__(self) -> ThreadServer:
        self.thread.start()
        deadline = time.monotonic() + 20
        while not self.server.started:
            if time.monotonic() > deadline or not self.thread.is_alive():
                raise RuntimeError("test server did not start")
            time.sleep(0.02)
        return self

    def __exit__(self, *exc: Any) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=10)


@pytest.fixture
def serve_in_thread() -> Iterator[Any]:
    """Factory: ``with serve_in_thread(policy) as srv: ... srv.base_url``."""
    from agentloop.serve import ServeConfig, create_app

    def start(policy: Any, **config: Any) -> ThreadServer:
        return ThreadServer(create_app(policy, ServeConfig(**config)))

    yield start
