"""agentloop: language-model agents that improve themselves from their environments' feedback.

The core is small and light to import (no torch, transformers or vllm at import time)::

    import agentloop
    env = agentloop.make("math/arith-v0", max_attempts=2, feedback="env")
    episodes = agentloop.rollout([agentloop.Job(env="math/arith-v0", seed=s) for s in range(4)], policy)

Training and evaluation are one import away and load their heavy dependencies on first use::

    from agentloop import ImproveConfig, improve, load_config
    result = improve(load_config(ImproveConfig, "configs/default.yaml", ["iterations=1"]), out="runs/x")
"""

import sys
from types import ModuleType
from typing import Any

from agentloop.checker import check_env
from agentloop.env import Task, TaskEnv, TextEnv, Verdict
from agentloop.errors import AgentLoopError, CheckError, ConfigError, EnvError, PolicyError, RegistryError
from agentloop.protocols import Critic, Policy
from agentloop.registry import list_envs, make, make_critic, make_policy, register, spec
from agentloop.rollout import Job, RolloutConfig, RolloutEngine, rollout
from agentloop.types import (
    Completion,
    Critique,
    CritiqueRequest,
    Episode,
    EpisodeError,
    Feedback,
    Message,
    SamplingParams,
    Turn,
)
from agentloop.wrappers import CritiqueInTheLoop, MultiAttempt, RecordEpisode, TurnLimit
from agentloop.algorithms import register_method

__version__ = "0.1.0"

# Public names whose modules import torch (or build on modules that do): resolved on first access, so
# that `import agentloop` stays light. name -> (module, attribute).
_LAZY = {
    "improve": ("agentloop.improve", "improve"),
    "ImproveConfig": ("agentloop.improve", "ImproveConfig"),
    "ImproveResult": ("agentloop.improve", "ImproveResult"),
    "evaluate": ("agentloop.evaluation.evaluate", "evaluate"),
    "EvalConfig": ("agentloop.evaluation.evaluate", "EvalConfig"),
    "Algorithm": ("agentloop.algorithms.base", "Algorithm"),
    "MethodConfig": ("agentloop.algorithms.base", "MethodConfig"),
    "load_config": ("agentloop.config", "load_config"),
}


def __getattr__(name: str) -> Any:
    if name not in _LAZY:
        raise AttributeError(f"module 'agentloop' has no attribute {name!r}")
    import importlib

    module, attr = _LAZY[name]
    value = getattr(importlib.import_module(module), attr)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted([*globals(), *_LAZY])


class _Package(ModuleType):
    """The package module. The function `agentloop.improve` has the name of the submodule that defines it;
    importing that submodule would rebind the package attribute to the module (the import system sets
    `parent.child`), so `from agentloop import improve` would return a module or a function depending on
    import order. The public function wins; the module stays reachable as `sys.modules["agentloop.improve"]`
    and through `from agentloop.improve import ...`."""

    def __setattr__(self, name: str, value: Any) -> None:
        if name in _LAZY and isinstance(value, ModuleType):
            return
        super().__setattr__(name, value)


sys.modules[__name__].__class__ = _Package

__all__ = [
    "AgentLoopError", "Algorithm", "CheckError", "Completion", "ConfigError", "Critic", "Critique", "CritiqueInTheLoop",
    "CritiqueRequest", "EnvError", "Episode", "EpisodeError", "EvalConfig", "Feedback", "ImproveConfig",
    "ImproveResult", "Job", "Message", "MethodConfig", "MultiAttempt", "Policy", "PolicyError", "RecordEpisode",
    "RegistryError", "RolloutConfig", "RolloutEngine", "SamplingParams", "Task", "TaskEnv", "TextEnv", "Turn",
    "TurnLimit", "Verdict", "check_env", "evaluate", "improve", "list_envs", "load_config", "make", "make_critic",
    "make_policy", "register", "register_method", "rollout", "spec",
]
