"""Suites: built-ins parse, user suites override, bad suites are explained."""

from __future__ import annotations

import pytest

from agentloop.errors import ConfigError
from agentloop.evaluation.suites import builtin_suites, get_suite, load_suites


def test_builtin_suites_parse():
    suites = builtin_suites()
    assert {"mbpp-test", "gsm8k-test", "travel-sole-planning", "tools-test"} <= set(suites)
    assert suites["mbpp-test"].envs[0].label == "code/mbpp-v0[split=test]"


def test_user_suites(tmp_path):
    f = tmp_path / "s.toml"
    f.write_text('[mine]\ndescription = "x"\nenvs = [{env = "plug/env-v0", limit = 3}]\n')
    assert get_suite("mine", f).envs[0].limit == 3
    assert "mbpp-test" in load_suites(f)
    f.write_text('[mine]\nenvs = [{env = "a/b-v0", limt = 3}]\n')
    with pytest.raises(ConfigError, match="envs.0.limt: unknown field"):
        load_suites(f)
    f.write_text('[mine]\nenvs = [{env = "a/b-v0"}, {env = "a/b-v0"}]\n')
    with pytest.raises(ConfigError, match="labels must be unique"):
        load_suites(f)
