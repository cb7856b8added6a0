"""SFT on the environment's gold replies: the "teacher data" upper baseline, and a warm start.

Per iteration: every training task's gold reply (the environment's ``gold_reply(task)``: the gold
calls of ``tools/synthetic-calls-v0``, the feasible plans of ``travel/synthetic-v0``, the reference
solutions of the format environments) is played through the environment by a scripted teacher in
place of the learner, so the data is recorded like every method's (``episodes.jsonl``) and checked
by the environment's own verifier; the episodes that pass are fine-tuned on as rejection-sampling
SFT's are (prompt -> reply, the reply tokens trained). Objective: masked NLL.

Not self-improvement: the answers are given. It bounds what SFT on the task family can reach (the
upper baseline of a learning cell) and gives a model that starts at zero successes a policy that
delivers answers at all (a warm start for FAFT or rejection sampling: run the other cell with
``--model`` the checkpoint this one writes). The reply is kept once per task whatever ``samples_per_task`` is.
``agentloop envs export-gold`` writes the same pairs as a chat JSONL file for other trainers.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Literal

from pydantic import Field

from agentloop.algorithms.base import Algorithm, EpisodeSpec, MethodConfig, TaskSet
from agentloop.algorithms.rs_sft import successful_answers
from agentloop.errors import ConfigError, PolicyError
from agentloop.training.data import TrainExample, chat_example
from agentloop.types import Episode, Message, assistant

__all__ = ["GoldSFT", "GoldSFTConfig"]


class GoldSFTConfig(MethodConfig):
    """Gold-reply SFT settings."""

    name: Literal["gold_sft"] = "gold_sft"
    samples_per_task: int = Field(default=1, ge=1, description="Episodes per task; the gold reply is deterministic "
                                  "and kept once per task, so 1 is enough.")


def _key(conversation: Sequence[Message]) -> tuple[tuple[str, str], ...]:
    return tuple((m.role, m.content) for m in conversation)


class GoldSFT(Algorithm):
    """See the module docstring."""

    objective = "sft"

    def __init__(self, config: Any):
        super().__init__(config)
        self._gold: dict[tuple[tuple[str, str], ...], str] = {}

    def specs(self, iteration: int, tasks: TaskSet) -> list[EpisodeSpec]:
        env = tasks.make_env().unwrapped
        gold = getattr(env, "gold_reply", None)
        if gold is None:
            raise ConfigError(f"method gold_sft needs an environment with gold_reply(task); {type(env).__name__} has "
                              "none. Use e.g. tools/synthetic-calls-v0 or travel/synthetic-v0, or another method.")
        for i in tasks.indices:
            task = env.get_task(i)
            reply = gold(task)
            if reply is not None:
                self._gold[_key(task.messages)] = reply
        return super().specs(iteration, tasks)

    def teacher_reply(self, conversation: Sequence[Message]) -> str:
        """The gold reply of the task whose prompt is ``conversation``."""
        try:
            return self._gold[_key(conversation)]
        except KeyError:
            raise PolicyError("gold_sft: no gold reply for this prompt (the task has none); the episode is recorded "
                              "as failed and left out of training.") from None

    def collection_policy(self, learner: Any) -> Any:
        from agentloop.policies.scripted import ScriptedPolicy

        return ScriptedPolicy(self.teacher_reply)

    def examples(self, episodes: Sequence[Episode], tokenizer: Any) -> list[TrainExample]:
        out = []
        for ep in successful_answers(episodes, max_per_task=1):
            turn = ep.turns[-1]
            out.append(chat_example(tokenizer, [*turn.observation, assistant(turn.action)], train="last",
                                    group=ep.task_id, episode=ep.id))
        return out
