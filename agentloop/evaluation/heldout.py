"""Held-out evaluation inside a training job (``agentloop improve``): the episodes and metrics of ``agentloop eval``.

:func:`held_out_specs` lists the episodes of one evaluation: one per held-out task, built through the
registry (``make(id, max_attempts=..., feedback=...)``, as ``agentloop eval`` builds its jobs) and
keyed by :func:`~agentloop.runs.episode_key`, so a resumed job skips what is recorded.
:func:`held_out_result` turns the finished episodes into a :class:`HeldOutResult`: the
:class:`~agentloop.evaluation.summarize.AttemptMetrics` every evaluation reports, plus the per-task
verdicts of every attempt (the before/after gains are paired on them) and the environment's
operation tag per task (``info["op"]``, e.g. ``math/arith-v0``).

:func:`self_correction` summarises one model's attempts (Acc@t1, Acc@tK, delta(t1,tK), delta i->c,
delta c->i with 95% intervals, accuracy per operation) and :func:`paired_gains` pairs a before and an
after evaluation over the same tasks (paired bootstrap of the Acc@t1, Acc@tK and delta gains):
``agentloop improve`` prints both, and the efficacy benchmark reports them for every cell.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from agentloop.evaluation.summarize import AttemptMetrics, attempt_metrics, correct_at
from agentloop.runs import episode_key
from agentloop.types import Episode

__all__ = ["HeldOutResult", "attempts_of", "held_out_result", "held_out_specs", "paired_gains", "self_correction",
           "tags_of"]


class HeldOutResult(BaseModel):
    """One held-out evaluation of a training job: metrics, and the verdict per task on the reported attempt."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    iteration: int = Field(ge=0, description="0 = the starting model.")
    metrics: AttemptMetrics
    metric: Literal["t1", "final"] = Field(description="The attempt ``correct`` is about: first or last.")
    correct: list[bool] = Field(description="Per held-out task, in task order: right on that attempt.")
    attempts: list[list[bool]] = Field(default_factory=list, description="Per task, in the same order: the verdicts "
                                       "of attempts 1..max_attempts (an episode that stopped early carries its last "
                                       "verdict forward; an errored one is all wrong).")
    tags: list[str | None] = Field(default_factory=list, description="Per task: the environment's operation tag "
                                   "(info['op']), or None.")

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
                         correct=correct_at(episodes, max_attempts, 1 if metric == "t1" else -1),
                         attempts=attempts_of(episodes, max_attempts, sort=False), tags=tags_of(episodes, sort=False))


def _by_task(episodes: Sequence[Episode], sort: bool) -> Sequence[Episode]:
    return sorted(episodes, key=lambda e: int(e.metadata.get("task_index", 0))) if sort else episodes


def attempts_of(episodes: Sequence[Episode], k: int, sort: bool = True) -> list[list[bool]]:
    """Per task (sorted by task index unless ``sort=False``), the verdicts of attempts 1..k; errored = all wrong."""
    from agentloop.evaluation.metrics import pad_attempts

    return [pad_attempts(e.attempt_success if e.error is None else (), k) for e in _by_task(episodes, sort)]


def tags_of(episodes: Sequence[Episode], sort: bool = True) -> list[str | None]:
    """Per task (same order as :func:`attempts_of`), the environment's operation tag, if it gives one."""
    out: list[str | None] = []
    for e in _by_task(episodes, sort):
        tags = [t.info.get("op") for t in e.turns if isinstance(t.info.get("op"), str)]
        out.append(str(tags[0]) if tags else None)
    return out


def _est(e: Any) -> dict[str, Any]:
    return e.model_dump(mode="json")


def self_correction(attempts: Sequence[Sequence[bool]], tags: Sequence[str | None] | None = None,
                    seed: int = 0) -> dict[str, Any]:
    """One model's self-correction figures: accuracies, deltas and (with tags) accuracies per operation.

    Keys: ``n``, ``max_attempts``, ``acc_t1`` and, with two or more attempts, ``acc_t2`` (the last
    attempt), ``delta_t1_t2`` (bootstrap interval), ``delta_i_to_c``, ``delta_c_to_i`` (Wilson); ``by_op``
    maps each tag to its ``n``, ``acc_t1`` (and ``acc_t2``). Values are Estimate dicts (value, lo, hi).
    """
    from agentloop.evaluation.metrics import accuracy_at, delta, delta_c_to_i, delta_i_to_c

    k = max((len(a) for a in attempts), default=1)
    out: dict[str, Any] = {"n": len(attempts), "max_attempts": k, "acc_t1": _est(accuracy_at(attempts, 1))}
    if k >= 2:
        out.update(acc_t2=_est(accuracy_at(attempts, k)), delta_t1_t2=_est(delta(attempts, 1, k, seed=seed)),
                   delta_i_to_c=_est(delta_i_to_c(attempts, 1, k)), delta_c_to_i=_est(delta_c_to_i(attempts, 1, k)))
    if tags is not None and any(o is not None for o in tags):
        per: dict[str, Any] = {}
        for op in sorted({o for o in tags if o is not None}):
            rows = [a for a, o in zip(attempts, tags) if o == op]
            per[op] = {"n": len(rows), "acc_t1": _est(accuracy_at(rows, 1))}
            if k >= 2:
                per[op]["acc_t2"] = _est(accuracy_at(rows, k))
        out["by_op"] = per
    return out


def paired_gains(before: Sequence[Sequence[bool]], after: Sequence[Sequence[bool]], seed: int = 0) -> dict[str, Any]:
    """Paired gains over the same tasks: ``gain_acc_t1``, ``gain_acc_t2`` (last attempt) and ``gain_delta``
    (delta(t1,tK) after minus before), each a paired-bootstrap Estimate dict."""
    from agentloop.evaluation.metrics import paired_difference

    if len(before) != len(after):
        raise ValueError(f"before has {len(before)} tasks and after {len(after)}: evaluate both on the same tasks.")
    k = max((len(a) for a in [*before, *after]), default=1)
    t1b, t1a = [float(a[0]) for a in before], [float(a[0]) for a in after]
    out = {"gain_acc_t1": _est(paired_difference(t1b, t1a, seed=seed))}
    if k >= 2:
        tkb, tka = [float(a[-1]) for a in before], [float(a[-1]) for a in after]
        out["gain_acc_t2"] = _est(paired_difference(tkb, tka, seed=seed))
        out["gain_delta"] = _est(paired_difference([y - x for x, y in zip(t1b, tkb)],
                                                   [y - x for x, y in zip(t1a, tka)], seed=seed))
    return out
