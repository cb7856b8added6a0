"""Fixtures for evaluation tests: registered EchoEnvs and a scripted policy with known behaviour."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from agentloop.policies.scripted import ScriptedPolicy

from tests.helpers import EchoEnv, fixer_reply


@pytest.fixture
def echo_ids() -> Iterator[tuple[str, str]]:
    from agentloop.registry import envs

    with envs.registered("test/EvalEcho-v0", EchoEnv, kwargs={"n_tasks": 6}), \
            envs.registered("test/EvalEchoB-v0", EchoEnv, kwargs={"n_tasks": 3}):
        yield "test/EvalEcho-v0", "test/EvalEchoB-v0"


@pytest.fixture
def fixer() -> ScriptedPolicy:
    return ScriptedPolicy(fixer_reply)
