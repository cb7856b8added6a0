"""Held-out self-correction measurements shared by every cell of the efficacy benchmark.

The figures are :mod:`agentloop.evaluation.selfcorrection`'s (one report for every evaluation):
:func:`~agentloop.evaluation.selfcorrection.self_correction` per model and protocol,
:func:`~agentloop.evaluation.selfcorrection.paired_gains` between two models over the same tasks.

Episodes come either from an improve run's own held-out evaluation (:func:`improve_eval_episodes`,
where method-specific conditioning such as LeTI's ``<|good|>`` prefix applies) or from
:func:`evaluate_model`, which evaluates a model folder through :func:`agentloop.evaluation.evaluate`
with the same protocols (one shared first attempt, then each protocol's later attempts), greedy
decoding and stop strings, so numbers from TRL's GRPO and from our methods are comparable. Both
return the episodes per protocol, sorted by task index.

Not covered: sampled (n > 1) evaluation.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, field_validator

from agentloop.evaluation.protocols import EvalProtocol, parse_protocols
from agentloop.types import Episode

__all__ = ["HeldOutTasks", "attempts_of", "by_protocol", "eval_config", "evaluate_model", "finished_twin", "improve_eval_episodes",
           "ops_of"]


class HeldOutTasks(BaseModel):
    """Which held-out tasks, and how they are played (greedy, ``max_attempts`` attempts, the protocols between)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    env: str = Field(description="Registered environment id, e.g. math/arith-v0 or math/gsm8k-v0.")
    kwargs: dict[str, Any] = Field(default_factory=dict, description="make() kwargs of the held-out split.")
    tasks: int = Field(default=200, ge=1, description="Evaluate tasks 0..tasks-1.")
    max_attempts: int = Field(default=2, ge=1, le=8, description="Attempts per task (2: Acc@t1, Acc@t2 and deltas).")
    protocols: list[EvalProtocol] = Field(default_factory=lambda: [EvalProtocol.parse("retry")], min_length=1,
                                          description="Protocols between attempts (retry = no oracle, no verdict); "
                                          "one shared first attempt.")
    max_new_tokens: int = Field(default=48, ge=1)
    stop: tuple[str, ...] = ()
    batch_size: int = Field(default=64, ge=1, description="Episodes generated together.")

    @field_validator("protocols", mode="before")
    @classmethod
    def _names(cls, v: Any) -> Any:
        return parse_protocols(v)


def by_protocol(episodes: Sequence[Episode], legacy: str = "retry") -> dict[str, list[Episode]]:
    """Sequential episodes grouped by protocol (episodes recorded before protocols existed: ``legacy``), each
    sorted by task index; shared first attempts and parallel samples are left out."""
    out: dict[str, list[Episode]] = defaultdict(list)
    for e in episodes:
        if e.metadata.get("mode", "sequential") == "sequential":
            out[str(e.metadata.get("protocol") or legacy)].append(e)
    return {name: sorted(eps, key=lambda e: int(e.metadata.get("task_index", 0))) for name, eps in out.items()}


def attempts_of(episodes: Sequence[Episode], k: int) -> list[list[bool]]:
    """Per episode (in the given order), the verdicts of attempts 1..k by the report's counting rule."""
    from agentloop.evaluation.selfcorrection import problems_of

    return [list(p.verdicts) for p in problems_of(episodes, k)]


def ops_of(episodes: Sequence[Episode]) -> list[str | None]:
    """Per episode (same order), the environment's operation tag (``info['op']``), if it gives one."""
    from agentloop.evaluation.selfcorrection import problems_of

    return [p.tag for p in problems_of(episodes, 1)]


def improve_eval_episodes(run_dir: str | Path, iteration: int, legacy: str = "retry") -> dict[str, list[Episode]]:
    """The held-out episodes an improve run recorded for ``iteration`` (0 = the starting model), per protocol."""
    from agentloop.runs import RunDir

    return by_protocol([e for e in RunDir(run_dir).episodes()
                        if e.metadata.get("phase") == "eval" and int(e.metadata.get("iteration", -1)) == iteration],
                       legacy)


def evaluate_model(model: str | None, settings: HeldOutTasks, out: str | Path, *, policy: Any = None,
                   checkpoint: str | None = None, seed: int = 0, feedback_text: str | None = None,
                   reuse_from: Sequence[Path] = ()) -> dict[str, list[Episode]]:
    """Held-out episodes of a model folder (None = the embedded default model) through agentloop.evaluation,
    per protocol.

    ``checkpoint`` (a run's checkpoint folder: full weights, or a LoRA adapter on ``model``) is loaded as
    ``agentloop eval`` does; ``policy`` (an instance) replaces both. A finished ``out`` is reused (resume).
    ``feedback_text``: the method's own feedback text for retry and binary (RISE's).
    ``reuse_from``: other evaluation folders; when ``out`` does not exist yet and one of them is finished
    (``metrics.json`` written) with the same configuration (model, checkpoint, tasks, protocols, sampling,
    seed; greedy, so the episodes would be the same), it is copied to ``out`` instead of generated again:
    two cells that start from one model share its "before" evaluation. Not with ``policy`` (an instance
    has no configuration to compare).
    """
    from agentloop.evaluation.evaluate import evaluate

    cfg = eval_config(model, settings, checkpoint=checkpoint, seed=seed, feedback_text=feedback_text)
    out = Path(out)
    if policy is None and not out.exists():
        source = finished_twin(cfg, reuse_from)
        if source is not None:
            import shutil

            shutil.copytree(source, out)
    result = evaluate(cfg, out, resume=out.exists(), policy=policy)
    return by_protocol(result.run.episodes())


def eval_config(model: str | None, settings: HeldOutTasks, *, checkpoint: str | None = None, seed: int = 0,
                feedback_text: str | None = None) -> Any:
    """The :class:`~agentloop.evaluation.evaluate.EvalConfig` of :func:`evaluate_model`: greedy, one seed."""
    from agentloop.evaluation.evaluate import EvalConfig, PolicyConfig
    from agentloop.evaluation.suites import SuiteEntry
    from agentloop.types import SamplingParams

    return EvalConfig(policy=PolicyConfig(id="hf", kwargs={"model": model, "max_batch_size": settings.batch_size},
                                          checkpoint=checkpoint),
                      envs=[SuiteEntry(env=settings.env, kwargs=settings.kwargs, limit=settings.tasks, name="heldout")],
                      max_attempts=settings.max_attempts, protocols=list(settings.protocols),
                      feedback_text=feedback_text, seeds=[seed], count_tokens=False,
                      sampling=SamplingParams(temperature=0.0, max_new_tokens=settings.max_new_tokens,
                                              stop=settings.stop),
                      max_concurrency=settings.batch_size)


def finished_twin(cfg: Any, candidates: Sequence[Path]) -> Path | None:
    """The first of ``candidates`` that holds a finished evaluation (``metrics.json``) of exactly ``cfg``
    (its ``config.json``; the tracking settings aside), or None."""
    import json

    want = {k: v for k, v in cfg.model_dump(mode="json").items() if k != "tracking"}
    for path in candidates:
        try:
            if not (path / "metrics.json").is_file():
                continue
            saved = json.loads((path / "config.json").read_text())
        except (OSError, ValueError):
            continue
        if {k: v for k, v in saved.items() if k != "tracking"} == want:
            return path
    return None
