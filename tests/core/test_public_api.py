"""The top-level API: the import line of the README, laziness, and registering a method in code."""

import subprocess
import sys
from typing import Literal

import pytest

import agentloop
from agentloop.errors import RegistryError


def test_readme_import_line_works_and_keeps_agentloop_light():
    code = (
        "import sys, agentloop\n"
        "heavy = [m for m in ('torch', 'transformers', 'vllm') if m in sys.modules]\n"
        "assert not heavy, heavy\n"
        "from agentloop import improve, evaluate, ImproveConfig, EvalConfig, Algorithm, MethodConfig, load_config\n"
        "from agentloop import register_method\n"
        "import agentloop.improve\n"  # importing the submodule must not replace the function
        "from agentloop.improve import improve as improve2\n"
        "assert agentloop.improve is improve is improve2 and callable(improve), agentloop.improve\n"
        "assert evaluate.__module__ == 'agentloop.evaluation.evaluate'\n"
        "assert issubclass(ImproveConfig, __import__('pydantic').BaseModel) and isinstance(Algorithm, type)\n"
        "print(sorted(set(agentloop.__all__) - set(dir(agentloop))))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=False)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "[]"  # every public name is reachable


def test_every_name_in_all_resolves():
    for name in agentloop.__all__:
        assert getattr(agentloop, name) is not None, name
    with pytest.raises(AttributeError, match="no attribute 'bogus'"):
        agentloop.bogus  # noqa: B018


class _FirstTryConfig(agentloop.MethodConfig):
    name: Literal["test_first_try"] = "test_first_try"

    def check(self, improve_config):
        if improve_config.eval.max_attempts > 2:
            raise ValueError("method test_first_try trains first attempts only; set eval.max_attempts <= 2")


class _FirstTry(agentloop.Algorithm):
    """SFT on the first attempts that succeeded."""

    def examples(self, episodes, tokenizer):
        return []


@pytest.fixture
def registered_first_try():
    from agentloop.registry import algorithms

    spec = agentloop.register_method("test_first_try", _FirstTryConfig, _FirstTry)
    try:
        yield spec
    finally:
        algorithms.unregister("test_first_try")


def test_register_method_in_code_selects_it_by_name(registered_first_try):
    from agentloop.registry import algorithms, make_algorithm

    assert "test_first_try" in algorithms.ids() and {"rise", "score"} <= set(algorithms.ids())
    cfg = agentloop.ImproveConfig.model_validate({"env": {"id": "math/arith-v0", "eval_kwargs": {"seed": 1}},
                                                  "method": {"name": "test_first_try", "samples_per_task": 2}})
    assert isinstance(cfg.method, _FirstTryConfig) and cfg.method.samples_per_task == 2
    assert isinstance(make_algorithm(cfg.method), _FirstTry)
    with pytest.raises(ValueError, match="method.bogus"):  # its config is checked like a built-in's
        agentloop.ImproveConfig.model_validate({"env": {"id": "math/arith-v0", "eval_kwargs": {"seed": 1}},
                                                "method": {"name": "test_first_try", "bogus": 1}})
    with pytest.raises(ValueError, match="set eval.max_attempts <= 2"):  # its own rules, through MethodConfig.check
        agentloop.ImproveConfig.model_validate({"env": {"id": "math/arith-v0", "eval_kwargs": {"seed": 1}},
                                                "method": {"name": "test_first_try"}, "eval": {"max_attempts": 3}})
    with pytest.raises(RegistryError, match="already registered"):
        agentloop.register_method("test_first_try", _FirstTryConfig, _FirstTry)
    agentloop.register_method("test_first_try", _FirstTryConfig, _FirstTry, override=True)


def test_register_method_says_how_to_fix_a_wrong_registration():
    with pytest.raises(RegistryError, match=r"must default to 'other'.*Literal\['other'\]"):
        agentloop.register_method("other", _FirstTryConfig, _FirstTry)
    with pytest.raises(RegistryError, match="MethodConfig subclass"):
        agentloop.register_method("test_first_try", dict, _FirstTry)
    with pytest.raises(RegistryError, match="Algorithm subclass"):
        agentloop.register_method("test_first_try", _FirstTryConfig, object)
