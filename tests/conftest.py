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


@pytest.fixture(scope="session")
def tokenizer():
    """The default model's tokenizer (with a pad token), for tests that train tiny models."""
    from agentloop.policies.default_model import default_model_path
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(str(default_model_path()))
    if tok.pad_token is None:
        tok.pad_token = tok.eos_token
    return tok
