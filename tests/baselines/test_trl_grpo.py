"""The GRPO baseline's reward adapter, dataset and config checks (no model), and one tiny TRL run."""

from __future__ import annotations

import pytest
from agentloop.baselines.heldout import HeldOutTasks
from agentloop.baselines.trl_grpo import EnvReward, GRPOBaselineConfig, grpo_dataset
from agentloop.errors import ConfigError
from pydantic import ValidationError

from tests.helpers import EchoEnv, SwappableEnv

pytest.importorskip("trl", reason="the GRPO baseline needs trl (a declared dependency of agentloop)")


def test_env_reward_scores_completions_with_the_environment_verdict():
    reward = EnvReward(lambda: EchoEnv(n_tasks=3))
    chat = [[{"role": "assistant", "content": "word0"}], [{"role": "assistant", "content": "word0"}]]
    assert reward(prompts=[None, None], completions=chat, task_index=[0, 1]) == [1.0, 0.0]
    assert reward(prompts=[None], completions=["word2"], task_index=[2]) == [1.0]  # plain-text completions too
    assert reward.errors == 0 and reward.calls == 3


def test_env_reward_turns_a_failing_step_into_a_zero_reward():
    def boom(env, action):
        raise RuntimeError("sandbox died")

    reward = EnvReward(lambda: SwappableEnv(step_fn=boom))
    assert reward(prompts=[None, None], completions=["word0", 42], task_index=[0, 1]) == [0.0, 0.0]
    assert reward.errors == 2


def _cfg(**kw) -> GRPOBaselineConfig:
    base = {"env": "math/arith-v0", "train_kwargs": {"difficulty": 1, "seed": 0}, "train_tasks": 30,
            "heldout": HeldOutTasks(env="math/arith-v0", kwargs={"difficulty": 1, "seed": 0}, tasks=10),
            "num_generations": 2, "batch_size": 4}
    return GRPOBaselineConfig(**{**base, **kw})


def test_dataset_skips_held_out_prompts_and_says_when_too_few_remain():
    ds = grpo_dataset(_cfg())
    assert len(ds) == 30 and min(ds["task_index"]) >= 10  # tasks 0-9 are the held-out ones (same generator)
    from agentloop.registry import make

    heldout = make("math/arith-v0", max_attempts=1, difficulty=1, seed=0)
    texts = set()
    for i in range(10):
        obs, _ = heldout.reset(options={"index": i})
        texts.add(obs[-1].content)
    assert not {row[-1]["content"] for row in ds["prompt"]} & texts
    with pytest.raises(ConfigError, match="lower train_tasks"):
        grpo_dataset(_cfg(train_kwargs={"difficulty": 1, "seed": 0, "num_tasks": 12}))


def test_config_explains_group_size_conflicts():
    with pytest.raises(ValidationError, match="not a multiple of num_generations"):
        _cfg(batch_size=5, num_generations=2)
