"""agentloop: language-model agents that improve themselves from their environments' feedback.

The core is small and light to import (no torch, transformers or vllm at import time)::

    import agentloop
    env = agentloop.make("math/arith-v0", max_attempts=2, feedback="env")
    episodes = agentloop.rollout([agentloop.Job(env="math/arith-v0", seed=s) for s in range(4)], policy)
"""

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

__version__ = "0.1.0"

__all__ = [
    "AgentLoopError", "CheckError", "Completion", "ConfigError", "Critic", "Critique", "CritiqueInTheLoop",
    "CritiqueRequest", "EnvError", "Episode", "EpisodeError", "Feedback", "Job", "Message", "MultiAttempt",
    "Policy", "PolicyError", "RecordEpisode", "RegistryError", "RolloutConfig", "RolloutEngine", "SamplingParams",
    "Task", "TaskEnv", "TextEnv", "Turn", "TurnLimit", "Verdict", "check_env", "list_envs", "make", "make_critic",
    "make_policy", "register", "rollout", "spec",
]
