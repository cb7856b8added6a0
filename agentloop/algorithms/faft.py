"""FAFT: feedback-aware fine-tuning (Chen et al. 2024; docs/methods.md section 5).

Sample ``samples_per_task`` answers per training task, run the environment's evaluator, and train
on *every* sample (positive and negative) conditioned on its own feedback: the prompt is followed
by ``feedback:{FEEDBACK}`` and then the answer, which is the trained span. At inference the
feedback slot holds the all-success feedback, so the model is asked for a plan that passes every
check.

The all-success text is fixed once, before the first evaluation and collection, by
:meth:`FAFT.prepare` (the loop calls it with the training tasks and the run directory), and never
changes afterwards: ``success_feedback`` from the config if set; else the text saved in the run
directory (``faft_state.json``; a resumed run reads it back); else derived from the environment:
the feedback the environment's own verifier gives the gold answers of the first tasks, when it
is the same for every task (for TravelPlanner the evaluator's 8 ``name: pass, reason:...`` lines,
the paper's text; see :func:`derive_success_feedback`). When nothing task-independent can be
derived (e.g. "Your final answer 19 is correct."), ``prepare`` raises and names the fix (set
``method.success_feedback``). If ``prepare`` was not called, the first collection
derives it where it can (``train_env``, no error), so only an evaluation before any collection
runs without it.
Placement (a documented choice): the paper's template is ``reference information box:{ref}
query:{query} feedback:{feedback} draft travel plan:{plan}``; the environment's prompt already
holds the reference information and the query, so the feedback block is appended to the last
user message and the plan is the assistant reply: the ids the policy sampled (the feedback-conditioned
context is rendered, as the policy never saw it; :func:`~agentloop.training.data.reply_example`).
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, Literal

from pydantic import Field

from agentloop.algorithms.base import Algorithm, EnvFactory, MethodConfig, TaskSet, usable
from agentloop.errors import ConfigError
from agentloop.training.data import TrainExample, reply_example
from agentloop.types import Episode, Message

__all__ = ["FAFT", "FAFTConfig", "STATE_FILE", "all_success_feedback", "derive_success_feedback", "with_feedback"]

STATE_FILE = "faft_state.json"
PROBE_TASKS = 16

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


def derive_success_feedback(make_env: Callable[..., Any], indices: Sequence[int]) -> str:
    """The all-success feedback of an environment, from its verifier's verdict on gold answers.

    For up to ``PROBE_TASKS`` of ``indices`` whose task has a text (or number) gold answer, the
    environment's own ``verify(task, gold)`` is run. The text must suit every task, so: if every
    successful verdict gave the same feedback, that is it (TravelPlanner's 8 pass lines); if they
    differ but are all ``name: pass`` check lines, the one with the most checks; otherwise the check
    lines seen in any verdict turned to ``name: pass`` (:func:`all_success_feedback`). Returns ""
    when none of these exists (no gold answers, or task-specific free-text feedback such as
    "Your final answer 19 is correct.", which would leak one task's answer into every prompt).
    """
    env = make_env()
    inner = getattr(env, "unwrapped", env)
    if not (hasattr(inner, "get_task") and hasattr(inner, "verify")):
        return ""
    n = inner.num_tasks() if hasattr(inner, "num_tasks") else None
    successes: list[str] = []
    fallback = ""
    for index in [i for i in indices if n is None or i < n][:PROBE_TASKS]:
        task = inner.get_task(index)
        if not isinstance(task.answer, (str, int, float)) or isinstance(task.answer, bool):
            continue
        verdict = inner.verify(task, str(task.answer))
        feedback = str(verdict.feedback or "").strip()
        if verdict.success and feedback:
            successes.append(feedback)
        derived = all_success_feedback(feedback)
        if len(derived.splitlines()) > len(fallback.splitlines()):
            fallback = derived
    if successes and len(set(successes)) == 1:
        return successes[0]
    checks = [f for f in successes if all(_CHECK_LINE.match(line) for line in f.splitlines())]
    if checks:
        return max(checks, key=lambda f: len(f.splitlines()))
    return fallback


class FAFT(Algorithm):
    """See the module docstring."""

    objective = "sft"

    def __init__(self, config: FAFTConfig):
        super().__init__(config)
        self.success_text = config.success_feedback or ""
        self._prepared = bool(config.success_feedback)

    def prepare(self, tasks: TaskSet, run_dir: str | Path | None = None) -> str:
        """Fix the inference feedback text before the first evaluation and collection; returns it.

        Call once at the start of a run (fresh or resumed) with the training tasks and the run
        directory; the text is saved there and read back on resume (see the module docstring).
        """
        state = Path(run_dir) / STATE_FILE if run_dir is not None else None
        if self.config.success_feedback:
            text = self.config.success_feedback
        elif state is not None and state.exists():
            text = str(json.loads(state.read_text())["success_feedback"])
        else:
            text = derive_success_feedback(tasks.make_env, tasks.indices)
            if not text:
                raise ConfigError(
                    "FAFT could not derive the all-success feedback for inference: the environment has no gold "
                    "answer its verifier accepts and no 'name: pass|fail' check lines. Set method.success_feedback "
                    "to the feedback text of a fully correct answer.")
        if state is not None and not state.exists():
            state.parent.mkdir(parents=True, exist_ok=True)
            state.write_text(json.dumps({"success_feedback": text}, indent=2))
        self.success_text, self._prepared = text, True
        return text

    def train_env(self, make_env: Callable[..., Any]) -> EnvFactory:
        if not self._prepared:
            # A loop that does not call prepare(): fix the text before the first collection where it can be
            # derived; otherwise collection and evaluation run without a feedback block, as before prepare().
            text = derive_success_feedback(make_env, tuple(range(PROBE_TASKS)))
            self.success_text, self._prepared = text, True
        return make_env

    def condition(self, conversation: Sequence[Message]) -> list[Message]:
        if not self.success_text:
            return list(conversation)  # not prepared yet (an evaluation before prepare / the first collection)
        return with_feedback(conversation, self.success_text, self.config.feedback_label)

    def examples(self, episodes: Sequence[Episode], tokenizer: Any) -> list[TrainExample]:
        """Every usable episode, conditioned on its own feedback; the inference text is not touched here."""
        out = []
        for ep in usable(episodes):
            turn = ep.turns[0]
            feedback = str(turn.info.get("feedback", "") or ("success" if turn.success else "failure"))
            context = with_feedback(turn.observation, feedback, self.config.feedback_label)
            out.append(reply_example(tokenizer, context, turn, group=ep.task_id, success=bool(turn.success)))
        return out
