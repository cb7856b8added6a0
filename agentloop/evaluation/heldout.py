"""Held-out evaluation inside a training job (``agentloop improve``): the episodes and metrics of ``agentloop eval``.

:func:`held_out_specs` lists the episodes of one evaluation: one per held-out task, built through the
registry (``make(id, max_attempts=..., feedback=...)``, as ``agentloop eval`` builds its jobs) and
keyed by :func:`~agentloop.runs.episode_key`, so a resumed job skips what is recorded.
:func:`held_out_result` turns the finished episodes into a :class:`HeldOutResult`: the
:class:`~agentloop.evaluation.summarize.AttemptMetrics` every evaluation reports, plus the per-task
verdicts the before/after gain is paired on.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from agentloop.evaluation.summarize import AttemptMetrics, attempt_metrics, correct_at
from agentloop.runs import episode_key
from agentloop.types import Episode

__all__ = ["HeldOutResult", "held_out_result", "held_out_specs"]


class HeldOutResult(BaseModel):
    """One held-out evaluation of a training job: metrics, and the verdict per task on the reported attempt."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    iteration: int = Field(ge=0, description="0 = the starting model.")
    metrics: AttemptMetrics
    metric: Literal["t1", "final"] = Field(description="The attempt ``correct`` is about: first or last.")
    correct: list[bool] = Field(description="Per held-out task, in task order: right on that attempt.")

    @property
    def accuracy(self) -> float:
        return sum(self.correct) / len(self.correct) if self.correct else 0.0


def held_out_specs(env_id: str, env_kwargs: dict[str, Any], indices: Sequence[int], make_kwargs: dict[str, Any],
                   iteration: int) -> list[Any]:
    """The episodes of one held-out evaluation (as :class:`~agentloop.algorithms.base.EpisodeSpec` s)."""
    from agentloop.algorithms.base import EpisodeSpec
    from agentloop.registry import make

    def env() -> Any:
        return make(env_id, **env_kwargs, **make_kwargs)

    return [EpisodeSpec(key=episode_key("eval", task=i, iteration=iteration), env=env, options={"index": i},
                        metadata={"phase": "eval", "iteration": iteration, "task_index": i})
            for i in indices]


def held_out_result(episodes: Sequence[Episode], max_attempts: int, metric: Literal["t1", "final"],
                    iteration: int) -> HeldOutResult:
    """The :class:`HeldOutResult` of one evaluation's episodes (in task order)."""
    return HeldOutResult(iteration=iteration, metrics=attempt_metrics(episodes, max_attempts), metric=metric,
                         correct=correct_at(episodes, max_attempts, 1 if metric == "t1" else -1))
