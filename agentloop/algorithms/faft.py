"""FAFT: feedback-aware fine-tuning (Chen et al. 2024; METHODS.md section 5).

Sample ``samples_per_task`` answers per training task, run the environment's evaluator, and train
on *every* sample (positive and negative) conditioned on its own feedback: the prompt is followed
by ``feedback:{FEEDBACK}`` and then the answer, which is the trained span. At inference the
feedback slot holds all-success lines (:func:`all_success_feedback`), so the model is asked for
a plan that passes every check.

Works with any environment whose feedback is one line per check (TravelPlanner's commonsense
evaluator writes ``name: pass`` / ``name: fail, reason: ...``); for other environments the
feedback text is used as is and the inference slot is ``success_feedback``.
Placement (a documented choice): the paper's template is ``reference information box:{ref}
query:{query} feedback:{feedback} draft travel plan:{plan}``; the environment's prompt already
holds the reference information and the query, so the feedback block is appended to the last
user message and the plan is the assistant reply.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any, Literal

from pydantic import Field

from agentloop.algorithms.base import Algorithm, MethodConfig, usable
from agentloop.training.data import TrainExample, chat_example
from agentloop.types import Episode, Message, assistant

__all__ = ["FAFT", "FAFTConfig", "all_success_feedback", "with_feedback"]

_CHECK_LINE = re.compile(r"^\s*([\w .\-/]+?)\s*:\s*(pass|fail|true|false|ok)\b.*$", re.IGNORECASE)


class FAFTConfig(MethodConfig):
    """FAFT settings."""

    name: Literal["faft"] = "faft"
    success_feedback: str | None = Field(
        default=None, description="Inference feedback text; None = derived from the feedback lines seen in training.")
    feedback_label: str = Field(default="feedback:", description="Label written before the feedback block.")


def all_success_feedback(feedback: str) -> str:
    """The feedback with every per-check line turned into ``name: pass`` (reasons dropped)."""
    lines = []
    for line in feedback.splitlines():
        m = _CHECK_LINE.match(line)
        if m:
            lines.append(f"{m.group(1).strip()}: pass")
    return "\n".join(lines)


def with_feedback(conversation: Sequence[Message], feedback: str, label: str = "feedback:") -> list[Message]:
    """``conversation`` with the feedback block appended to its last user message."""
    out = list(conversation)
    for i in range(len(out) - 1, -1, -1):
        if out[i].role == "user":
            out[i] = out[i].model_copy(update={"content": f"{out[i].content}\n{label}\n{feedback}"})
            break
    return out


class FAFT(Algorithm):
    """See the module docstring."""

    objective = "sft"

    def __init__(self, config: FAFTConfig):
        super().__init__(config)
        self.success_text = config.success_feedback or ""

    def condition(self, conversation: Sequence[Message]) -> list[Message]:
        if not self.success_text:
            return list(conversation)  # before any feedback was seen there is no all-success text to show
        return with_feedback(conversation, self.success_text, self.config.feedback_label)

    def examples(self, episodes: Sequence[Episode], tokenizer: Any) -> list[TrainExample]:
        out = []
        for ep in usable(episodes):
            turn = ep.turns[0]
            feedback = str(turn.info.get("feedback", "") or ("success" if turn.success else "failure"))
            if not self.config.success_feedback:
                derived = all_success_feedback(feedback)
                if len(derived.splitlines()) > len(self.success_text.splitlines()):
                    self.success_text = derived
            msgs = [*with_feedback(turn.observation, feedback, self.config.feedback_label), assistant(turn.action)]
            out.append(chat_example(tokenizer, msgs, group=ep.task_id, success=bool(turn.success)))
        return out
