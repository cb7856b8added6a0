"""Rejection-sampling SFT (STaR-style expert iteration): the baseline every method is compared with.

Per iteration: sample ``samples_per_task`` answers per training task at temperature > 0, keep
the successful ones (at most ``max_per_task`` distinct answers per task, so easy tasks do not
dominate), fine-tune on prompt -> answer with the reply tokens as the only loss, repeat from the
new model. Objective: masked NLL (:func:`~agentloop.algorithms.losses.sft_loss`) of the sampled reply
ids after the prompt ids they were sampled from (:func:`~agentloop.training.data.turn_example`).

Not covered: STaR's rationalisation step (re-asking failed tasks with the answer as a hint), which
needs answer-revealing hints the environments keep out of the actor's view.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Literal

from pydantic import Field

from agentloop.algorithms.base import Algorithm, MethodConfig
from agentloop.training.data import TrainExample, turn_example
from agentloop.types import Episode

__all__ = ["RSSFTConfig", "RejectionSamplingSFT", "successful_answers"]


class RSSFTConfig(MethodConfig):
    """Rejection-sampling SFT settings."""

    name: Literal["rs_sft"] = "rs_sft"
    max_per_task: int = Field(default=2, ge=1, description="Distinct successful answers kept per task per iteration.")


def successful_answers(episodes: Sequence[Episode], max_per_task: int) -> list[Episode]:
    """Successful single-turn episodes, at most ``max_per_task`` distinct answers per task, in input order."""
    kept: dict[str, list[str]] = {}
    out = []
    for ep in episodes:
        if not ep.success or not ep.turns:
            continue
        answers = kept.setdefault(str(ep.task_id), [])
        answer = ep.turns[-1].action.strip()
        if answer in answers or len(answers) >= max_per_task:
            continue
        answers.append(answer)
        out.append(ep)
    return out


class RejectionSamplingSFT(Algorithm):
    """See the module docstring."""

    objective = "sft"

    def examples(self, episodes: Sequence[Episode], tokenizer: Any) -> list[TrainExample]:
        out = []
        for ep in successful_answers(episodes, self.config.max_per_task):
            out.append(turn_example(tokenizer, ep.turns[-1], group=ep.task_id, episode=ep.id))
        return out
