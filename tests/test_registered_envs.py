"""Every registered environment, built-ins and plugins, passes the conformance check."""

import pytest

import agentloop


@pytest.mark.parametrize("env_id", agentloop.list_envs())
def test_registered_env_passes_check_env(env_id):
    env = agentloop.make(env_id)
    agentloop.check_env(env)
