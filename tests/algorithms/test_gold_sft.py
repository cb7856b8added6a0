"""gold_sft: the environment's gold replies, played by a scripted teacher, verified, then fine-tuned on."""

from __future__ import annotations

import pytest

from agentloop.algorithms.base import TaskSet
from agentloop.algorithms.gold_sft import GoldSFT, GoldSFTConfig
from agentloop.errors import ConfigError, PolicyError
from agentloop.improve import ImproveConfig, improve
from agentloop.registry import make
from agentloop.types import user
from tests.helpers import improve_config

ENV = {"id": "tools/synthetic-calls-v0", "kwargs": {"level": "mixed", "num_tasks": 50},
       "train_kwargs": {"split": "train", "seed": 0}, "eval_kwargs": {"split": "test", "seed": 1},
       "train_tasks": 4, "eval_tasks": 2}


def test_teacher_answers_each_training_prompt_with_its_gold_reply():
    algo = GoldSFT(GoldSFTConfig())
    tasks = TaskSet(make_env=lambda: make("tools/synthetic-calls-v0", level="parallel", num_tasks=5), indices=(1, 3))
    specs = algo.specs(1, tasks)
    assert [s.options["index"] for s in specs] == [1, 3]
    env = make("tools/synthetic-calls-v0", level="parallel", num_tasks=5).unwrapped
    teacher = algo.collection_policy(learner=None)
    from agentloop.types import SamplingParams

    replies = teacher.generate([env.get_task(1).messages, env.get_task(3).messages], SamplingParams())
    assert [r.text for r in replies] == [env.gold_reply(env.get_task(i)) for i in (1, 3)]
    with pytest.raises(PolicyError, match="no gold reply"):
        algo.teacher_reply([user("a prompt of no task")])


def test_an_environment_without_gold_replies_is_refused_with_the_fix():
    tasks = TaskSet(make_env=lambda: make("math/arith-v0", num_tasks=5), indices=(0,))
    with pytest.raises(ConfigError, match="gold_reply"):
        GoldSFT(GoldSFTConfig()).specs(1, tasks)


def test_improve_trains_on_verified_gold_replies(tiny_model_dir, tmp_path):
    cfg = improve_config(tiny_model_dir, env=ENV, iterations=1, method={"name": "gold_sft"},
                         collect={"temperature": 1.0, "max_new_tokens": 6, "batch_size": 4})
    result = improve(ImproveConfig.model_validate(cfg), out=tmp_path / "run")
    assert [r["iteration"] for r in result.iterations] == [0, 1]
    assert result.iterations[1]["train_examples"] == 4 and result.iterations[1]["train_success"] == 1.0
    from agentloop.runs import RunDir

    collected = [e for e in RunDir(tmp_path / "run").episodes() if e.metadata.get("phase") == "collect"]
    assert len(collected) == 4 and all(e.success and e.error is None for e in collected)
    assert "<tool_call>" in collected[0].turns[-1].action
    assert (tmp_path / "run" / "checkpoints" / "iter-1").is_dir()
