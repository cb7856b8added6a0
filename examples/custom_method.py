"""A self-improvement method written and registered in code, then run by ``improve``.

    python examples/custom_method.py [MODEL]     # MODEL: a model folder or hub id; default the embedded model

A method says which episodes to collect (default: ``samples_per_task`` per training task), how they become
training examples, and which objective trains them; collection, training, held-out evaluation, checkpoints
and resume are shared. A package can register it through the ``agentloop.algorithms`` entry point instead
(docs/plugins.md).
"""

import sys
from typing import Literal

import agentloop
from agentloop import Algorithm, ImproveConfig, MethodConfig, improve
from agentloop.algorithms.base import usable
from agentloop.training.data import chat_example
from agentloop.types import assistant


class FirstTryConfig(MethodConfig):
    name: Literal["first_try"] = "first_try"


class FirstTry(Algorithm):
    """Supervised fine-tuning on the answers that were right at the first attempt."""

    objective = "sft"

    def examples(self, episodes, tokenizer):
        return [chat_example(tokenizer, [*ep.turns[0].observation, assistant(ep.turns[0].action)], group=ep.task_id)
                for ep in usable(episodes) if ep.turns[0].success]


if __name__ == "__main__":
    model = sys.argv[1] if len(sys.argv) > 1 else None
    agentloop.register_method("first_try", FirstTryConfig, FirstTry)
    cfg = ImproveConfig.model_validate({
        "model": model, "iterations": 1, "threads": 1,
        "env": {"id": "math/arith-v0", "kwargs": {"difficulty": 1}, "train_kwargs": {"split": "train"},
                "eval_kwargs": {"split": "test"}, "train_tasks": 4, "eval_tasks": 4},
        "method": {"name": "first_try", "samples_per_task": 2},  # checked like any config: extra="forbid"
        "collect": {"max_new_tokens": 8}, "eval": {"max_new_tokens": 8},
    })
    result = improve(cfg, out="runs/example-custom-method")
    print(f"{result.method}: held-out Acc@t1 {result.before:.2f} -> {result.after:.2f} (N = {result.n})")
