"""Shared test fixtures."""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest

from tests.helpers import EchoEnv

# Tests never reach a model hub; any accidental hub call fails fast instead of hanging.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")


@pytest.fixture
def echo_env_id() -> Iterator[str]:
    """Register EchoEnv as 'test/Echo-v0' for one test."""
    from agentloop.registry import envs

    with envs.registered("test/Echo-v0", EchoEnv, description="test echo env") as spec:
        yield spec.id
