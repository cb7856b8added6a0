"""Fixtures of the policy tests: an in-process server (the default model fixture ``hf32`` is in tests/conftest.py)."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest

from tests.helpers import free_port


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
