"""Held-out self-correction measurements shared by every cell of the efficacy benchmark.

One *block* summarises a model's two-attempt episodes on held-out tasks: Acc@t1, Acc@t2,
delta(t1,t2) = Acc@t2 - Acc@t1, delta i->c and delta c->i, each an
:class:`~agentloop.evaluation.metrics.Estimate` with a 95% interval, plus the same accuracies per
operation when the environment tags its tasks (``info["op"]``, e.g. ``math/arith-v0``).
:func:`compare` pairs the before and after blocks over the same tasks (paired bootstrap).

Episodes come either from an improve run's own held-out evaluation (:func:`improve_eval_episodes`,
where method-specific conditioning such as LeTI's ``<|good|>`` prefix applies) or from
:func:`evaluate_model`, which evaluates a model folder through :func:`agentloop.evaluation.evaluate`
with the same wrapper (``MultiAttempt``), greedy decoding and stop strings, so numbers from TRL's
GRPO and from our methods are comparable. Both sort episodes by task index, so before and after pair.
Under ``none``/``retry`` feedback every attempt is played (no stop at the first success, which would
need the verifier's verdict), as in the improve loop's own evaluation.

Not covered: more than two attempts (the block reads attempts 1 and ``max_attempts``); sampled (n > 1)
evaluation.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from agentloop.types import Episode, FeedbackMode

__all__ = ["HeldOutSettings", "attempts_of", "block", "compare", "evaluate_model", "improve_eval_episodes", "ops_of"]


class HeldOutSettings(BaseModel):
    """Which held-out tasks, and how they are played (greedy, ``max_attempts`` attempts, feedback between)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    env: str = Field(description="Registered environment id, e.g. math/arith-v0 or math/gsm8k-v0.")
    kwargs: dict[str, Any] = Field(default_factory=dict, description="make() kwargs of the held-out split.")
    tasks: int = Field(default=200, ge=1, description="Evaluate tasks 0..tasks-1.")
    max_attempts: int = Field(default=2, ge=1, le=8, description="Attempts per task (2: Acc@t1, Acc@t2 and deltas).")
    feedback: FeedbackMode = Field(default="retry", description="Between attempts; retry = no oracle, no verdict.")
    max_new_tokens: int = Field(default=48, ge=1)
    stop: tuple[str, ...] = ()
    batch_size: int = Field(default=64, ge=1, description="Episodes generated together.")


def _by_task(episodes: Sequence[Episode]) -> list[Episode]:
    return sorted(episodes, key=lambda e: int(e.metadata.get("task_index", 0)))


def attempts_of(episodes: Sequence[Episode], k: int) -> list[list[bool]]:
    """Per task (sorted by task index), the verdicts of attempts 1..k; an errored or short episode pads as wrong."""
    from agentloop.evaluation.metrics import pad_attempts

    return [pad_attempts(e.attempt_success if e.error is None else (), k) for e in _by_task(episodes)]


def ops_of(episodes: Sequence[Episode]) -> list[str | None]:
    """Per task (same order as :func:`attempts_of`), the environment's operation tag, if it gives one."""
    out: list[str | None] = []
    for e in _by_task(episodes):
        tags = [t.info.get("op") for t in e.turns if isinstance(t.info.get("op"), str)]
        out.append(str(tags[0]) if tags else None)
    return out


def _est(e: Any) -> dict[str, Any]:
    return e.model_dump(mode="json")


def block(attempts: Sequence[Sequence[bool]], ops: Sequence[str | None] | None = None, seed: int = 0) -> dict[str, Any]:
    """The self-correction block of one model: accuracies, deltas and (with ops) accuracies per operation."""
    from agentloop.evaluation.metrics import accuracy_at, delta, delta_c_to_i, delta_i_to_c

    k = max((len(a) for a in attempts), default=1)
    out: dict[str, Any] = {"n": len(attempts), "max_attempts": k, "acc_t1": _est(accuracy_at(attempts, 1))}
    if k >= 2:
        out.update(acc_t2=_est(accuracy_at(attempts, k)), delta_t1_t2=_est(delta(attempts, 1, k, seed=seed)),
                   delta_i_to_c=_est(delta_i_to_c(attempts, 1, k)), delta_c_to_i=_est(delta_c_to_i(attempts, 1, k)))
    if ops is not None and any(o is not None for o in ops):
        per: dict[str, Any] = {}
        for op in sorted({o for o in ops if o is not None}):
            rows = [a for a, o in zip(attempts, ops) if o == op]
            per[op] = {"n": len(rows), "acc_t1": _est(accuracy_at(rows, 1))}
            if k >= 2:
                per[op]["acc_t2"] = _est(accuracy_at(rows, k))
        out["by_op"] = per
    return out


def compare(before: Sequence[Sequence[bool]], after: Sequence[Sequence[bool]], seed: int = 0) -> dict[str, Any]:
    """Paired gains over the same tasks: Acc@t1, Acc@tK and delta(t1,tK) after minus before."""
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


def improve_eval_episodes(run_dir: str | Path, iteration: int) -> list[Episode]:
    """The held-out episodes an improve run recorded for ``iteration`` (0 = the starting model)."""
    from agentloop.runs import RunDir

    return [e for e in RunDir(run_dir).episodes()
            if e.metadata.get("phase") == "eval" and int(e.metadata.get("iteration", -1)) == iteration]


def evaluate_model(model: str | None, settings: HeldOutSettings, out: str | Path, *, policy: Any = None,
                   checkpoint: str | None = None, seed: int = 0) -> list[Episode]:
    """Held-out episodes of a model folder (None = the embedded default model) through agentloop.evaluation.

    ``checkpoint`` (a run's checkpoint folder: full weights, or a LoRA adapter on ``model``) is loaded as
    ``agentloop eval`` does; ``policy`` (an instance) replaces both. A finished ``out`` is reused (resume).
    """
    import yaml

    from agentloop.evaluation.evaluate import EvalConfig, PolicyConfig, evaluate
    from agentloop.types import SamplingParams

    # The held-out entry (id, kwargs, limit) as a one-entry suite file: the form EvalConfig takes kwargs in.
    suites = Path(out).with_name(Path(out).name + ".suites.yaml")
    Path(out).parent.mkdir(parents=True, exist_ok=True)
    # make() defaults to stopping at the first success whatever the feedback mode; for none/retry that would
    # use the verifier's verdict (an oracle), so say explicitly that every attempt is played.
    kwargs = {**settings.kwargs, "stop_on_success": settings.feedback not in ("none", "retry")}
    suites.write_text(yaml.safe_dump({"heldout": {"envs": [
        {"env": settings.env, "kwargs": kwargs, "limit": settings.tasks, "name": "heldout"}]}}))
    cfg = EvalConfig(policy=PolicyConfig(id="hf", kwargs={"model": model, "max_batch_size": settings.batch_size},
                                         checkpoint=checkpoint),
                     suite="heldout", suites_file=str(suites), max_attempts=settings.max_attempts,
                     feedback=settings.feedback, seeds=[seed], count_tokens=False,
                     sampling=SamplingParams(temperature=0.0, max_new_tokens=settings.max_new_tokens,
                                             stop=settings.stop),
                     max_concurrency=settings.batch_size)
    result = evaluate(cfg, out, resume=Path(out).exists(), policy=policy)
    return list(result.run.episodes())
