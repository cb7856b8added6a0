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

from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from agentloop.evaluation.heldout import attempts_of, paired_gains, self_correction, tags_of
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


ops_of = tags_of  # per task, same order: the environment's operation tag, if it gives one
block = self_correction  # the cell's block and its paired comparison: agentloop.evaluation.heldout's own
compare = paired_gains


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
