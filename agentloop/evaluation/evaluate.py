"""Evaluate a policy on held-out environments: K attempts with feedback, n samples, seeds; resumable.

:func:`evaluate` checks everything that can be checked before generating (environment ids and
kwargs, empty suites, the checkpoint, the run directory), then runs the missing episodes through
the :class:`~agentloop.rollout.RolloutEngine`, appending each to ``episodes.jsonl`` as it finishes,
and finally writes ``metrics.json`` (see :mod:`agentloop.evaluation.summarize`).

Episode keys are ``ENV_LABEL|task=I|sample=J|seed=S`` (``par|...`` for the parallel samples of the
compute-matched comparison), so a killed run resumed with the same config skips what is done.
``distributed`` (and the concurrency knobs) may change between a run and its resume: they decide
where episodes run, not what they are.

Engines: ``distributed.address`` None (the default) runs the single-process engine; any address runs
the same jobs on Ray worker actors (:mod:`agentloop.distributed`). With ``generation="central"`` the
driver's policy (and critic) answer every worker's turns; ``"per_node"`` rebuilds the configured
policy on each worker, so it needs ``policy`` from the config (not an instance) and a critic that does
not borrow the actor (``critic.kwargs.policy`` set, or a non-llm critic).

Tasks: a :class:`~agentloop.env.TaskEnv` is evaluated on tasks ``0..limit-1`` by index; an
environment without ``num_tasks`` gets ``limit`` seeded episodes (``limit`` is then required).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, model_validator

from agentloop.tracking import TrackingConfig
from agentloop.config import ComponentRef
from agentloop.distributed import DistributedConfig
from agentloop.errors import ConfigError
from agentloop.evaluation.suites import SuiteEntry, get_suite
from agentloop.runs import RunDir, episode_key
from agentloop.types import Episode, FeedbackMode, SamplingParams

logger = logging.getLogger(__name__)

#: ``progress(env_label, done, total, successes)``: an environment's episodes advanced.
EvalProgress = Callable[[str, int, int, int], None]

__all__ = ["AttemptSettings", "CriticConfig", "EvalConfig", "EvalResult", "PlannedEnv", "PolicyConfig", "evaluate", "make_eval_engine",
           "plan_envs", "resolve_checkpoint"]


class PolicyConfig(ComponentRef):
    """Which policy answers: a registered backend id with its kwargs, or a checkpoint of a run."""

    id: str = Field(default="hf", description="Registered policy id: hf, vllm, openai, scripted, or a plugin's.")
    checkpoint: str | None = Field(default=None, description="A checkpoint folder, or a run directory (its "
                                   "latest checkpoint); loaded as model= (full weights) or adapter= (LoRA).")

    def make_policy(self, **extra: Any) -> Any:
        """Build the registered policy ``id``, with ``checkpoint`` resolved to ``model=`` or ``adapter=``."""
        from agentloop.registry import make_policy

        return make_policy(self.id, **{**policy_kwargs(self), **extra})


CriticConfig = ComponentRef  # the critic of feedback='critic'; an llm critic without a policy kwarg uses the actor


class AttemptSettings(BaseModel):
    """How each evaluation episode is played: attempts and the feedback between them.

    Shared by ``agentloop eval`` (:class:`EvalConfig`) and ``agentloop improve``'s held-out
    evaluation (its ``eval`` section); :func:`attempt_kwargs` turns it into ``make`` keywords.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    max_attempts: int = Field(default=2, ge=1, le=64, description="Attempts per episode (K).")
    feedback: FeedbackMode = Field(default="env", description="Feedback between attempts.")
    critic: ComponentRef | None = Field(default=None, description="Critic for feedback='critic' ({id, kwargs}).")
    critique_all: bool = Field(default=False, description="feedback='critic' without an oracle: every answer is "
                               "critiqued and the episode stops when the critic approves (docs/methods.md section 4).")

    @model_validator(mode="before")
    @classmethod
    def _renamed(cls, data: Any) -> Any:
        """``k`` (eval) and ``attempts`` (improve's eval section) are the old names: refused with the new one."""
        if isinstance(data, dict):
            for old in ("k", "attempts"):
                if old in data:
                    raise ValueError(f"'{old}' was renamed: write max_attempts: {data[old]} (one name for the number "
                                     "of attempts everywhere)")
        return data

    @model_validator(mode="after")
    def _attempt_rules(self) -> AttemptSettings:
        if self.feedback == "critic" and self.critic is None:
            raise ValueError("feedback='critic' needs a critic (critic.id=llm or critic.id=verifier)")
        if self.critique_all and (self.feedback != "critic" or self.max_attempts < 2):
            raise ValueError("critique_all=True critiques every answer between attempts; it needs feedback='critic' "
                             "and max_attempts >= 2")
        return self

    def attempt_kwargs(self) -> dict[str, Any]:
        """The ``agentloop.make`` keywords that play an episode this way."""
        kwargs: dict[str, Any] = {"max_attempts": self.max_attempts}
        if self.max_attempts > 1:
            kwargs["feedback"] = self.feedback
            if self.critique_all:
                kwargs["critique_all"] = True
        return kwargs


class EvalConfig(AttemptSettings):
    """Everything one evaluation run needs; written to the run directory as its resolved config."""

    policy: PolicyConfig = Field(default_factory=PolicyConfig)
    envs: list[str] = Field(default_factory=list, description="Environment ids (or use suite).")
    suite: str | None = Field(default=None, description="A named suite (built-in or from suites_file).")
    suites_file: str | None = Field(default=None, description="YAML/TOML file of user-defined suites.")
    n: int = Field(default=1, ge=1, description="Samples (episodes) per task; >1 gives pass@k and CL/CS.")
    seeds: list[int] = Field(default_factory=lambda: [0], min_length=1, description="Environment seeds.")
    limit: int | None = Field(default=None, ge=1, description="At most this many tasks per environment.")
    sampling: SamplingParams = Field(default_factory=lambda: SamplingParams(max_new_tokens=256))
    compare: bool = Field(default=False, description="Also draw K parallel single-attempt samples per task for the "
                          "compute-matched comparison (needs temperature > 0).")
    count_tokens: bool = Field(default=True, description="Ask the policy for token ids so token counts are exact.")
    max_concurrency: int = Field(default=32, ge=1, description="Live episodes at once (the generation batch).")
    step_workers: int = Field(default=1, ge=1, description="Threads stepping environments (code sandboxes).")
    distributed: DistributedConfig = Field(default_factory=DistributedConfig, description="Where episodes run: "
                                           "address null is one process; 'local', 'auto', ... use Ray workers.")
    tracking: TrackingConfig = Field(default_factory=TrackingConfig, description="Experiment trackers the final "
                                     "metrics go to; TensorBoard event files in the run directory by default.")

    @model_validator(mode="after")
    def _check(self) -> EvalConfig:
        if bool(self.envs) == bool(self.suite):
            raise ValueError("give exactly one of envs (environment ids) or suite (a suite name)")
        if self.sampling.n != 1:
            raise ValueError("sampling.n must be 1; use n (samples per task) instead")
        if (self.n > 1 or self.compare) and self.sampling.temperature == 0:
            raise ValueError("n > 1 or compare=True at temperature 0 would repeat the same greedy answer; "
                             "set sampling.temperature > 0 (e.g. 0.7)")
        if self.compare and self.max_attempts < 2:
            raise ValueError("compare=True compares K sequential attempts with K parallel samples; it needs "
                             "max_attempts >= 2")
        return self


@dataclass(frozen=True)
class PlannedEnv:
    """An environment of the run, checked: its label, entry and how many tasks will be evaluated."""

    entry: SuiteEntry
    n_tasks: int
    by_index: bool  # a TaskEnv: tasks are chosen by options={"index": i}


@dataclass(frozen=True)
class EvalResult:
    run: RunDir
    metrics: dict[str, Any]
    new_episodes: int


def entries_of(cfg: EvalConfig) -> list[SuiteEntry]:
    if cfg.suite:
        return list(get_suite(cfg.suite, cfg.suites_file).envs)
    if len(set(cfg.envs)) != len(cfg.envs):
        raise ConfigError(f"envs lists an environment twice: {cfg.envs}; list each once.")
    return [SuiteEntry(env=e) for e in cfg.envs]


def plan_envs(cfg: EvalConfig) -> list[PlannedEnv]:
    """Check every environment before any generation: the id exists, the kwargs fit, there are tasks."""
    from agentloop.registry import make

    planned = []
    for entry in entries_of(cfg):
        env = make(entry.env, max_attempts=1, **entry.kwargs)  # unknown ids/kwargs raise here, with a hint
        try:
            inner = env.unwrapped
            total = int(inner.num_tasks()) if hasattr(inner, "num_tasks") else None
        finally:
            env.close()
        limits = [x for x in (entry.limit, cfg.limit) if x is not None]
        if total is None:
            if not limits:
                raise ConfigError(f"{entry.env} has no fixed task list; give limit (number of seeded episodes).")
            n_tasks, by_index = min(limits), False
        else:
            n_tasks, by_index = min([total, *limits]), True
        if n_tasks <= 0:
            raise ConfigError(f"{entry.label} has no tasks to evaluate; check its data or its kwargs {entry.kwargs}.")
        planned.append(PlannedEnv(entry=entry, n_tasks=n_tasks, by_index=by_index))
    return planned


def resolve_checkpoint(path: str) -> dict[str, str]:
    """Policy kwargs for a checkpoint: ``{"adapter": p}`` for a LoRA folder, ``{"model": p}`` for full weights."""
    p = Path(path)
    if not p.exists():
        raise ConfigError(f"checkpoint {p} does not exist; give a checkpoint folder or a run directory with checkpoints/.")
    if (p / "checkpoints").is_dir():
        latest = RunDir(p).latest_checkpoint()
        if latest is None:
            raise ConfigError(f"run directory {p} has no committed checkpoint in checkpoints/.")
        p = latest
    if (p / "adapter_config.json").exists():
        return {"adapter": str(p)}
    if (p / "config.json").exists():
        return {"model": str(p)}
    raise ConfigError(f"{p} is not a model checkpoint: it has neither config.json (full weights) nor "
                      "adapter_config.json (LoRA adapter).")


def policy_kwargs(cfg: PolicyConfig) -> dict[str, Any]:
    """The policy's constructor kwargs, with the checkpoint resolved to model= or adapter=."""
    kwargs = dict(cfg.kwargs)
    if cfg.checkpoint:
        if cfg.id not in ("hf", "vllm"):
            raise ConfigError(f"policy.checkpoint needs a local-weights backend (hf or vllm), not {cfg.id!r}.")
        kwargs.update(resolve_checkpoint(cfg.checkpoint))
    return kwargs


def plan_jobs(cfg: EvalConfig, planned: list[PlannedEnv]) -> list[Any]:
    """Every episode of the run, as rollout Jobs carrying their run key in metadata."""
    from agentloop.rollout import Job

    jobs = []
    for p in planned:
        label = p.entry.label
        seq_kwargs = {**p.entry.kwargs, **cfg.attempt_kwargs()}
        modes = [("sequential", cfg.n, seq_kwargs)]
        if cfg.compare:
            modes.append(("parallel", cfg.max_attempts, {**p.entry.kwargs, "max_attempts": 1}))
        for seed in cfg.seeds:
            for i in range(p.n_tasks):
                for mode, samples, make_kwargs in modes:
                    for j in range(samples):
                        group = label if mode == "sequential" else f"par|{label}"  # parallel samples: own keys
                        key = episode_key(group, task=i, sample=j, seed=seed)
                        jobs.append(Job(
                            env=p.entry.env,
                            seed=seed if p.by_index else seed * 1_000_003 + i,
                            options={"index": i} if p.by_index else None,
                            make_kwargs=dict(make_kwargs),
                            metadata={"run_key": key, "env_label": label, "task_index": i, "sample": j,
                                      "mode": mode},
                        ))
    return jobs


def evaluate(cfg: EvalConfig, out: str | Path, *, resume: bool = False, policy: Any = None, critic: Any = None,
             progress: EvalProgress | None = None, on_episode: Callable[[Episode], None] | None = None) -> EvalResult:
    """Run (or resume) an evaluation into the run directory ``out``; see the module docstring. Prints nothing.

    ``policy``/``critic`` instances override ``cfg.policy``/``cfg.critic`` (e.g. a model being trained).
    ``progress(label, done, total, ok)`` is called per environment as episodes finish (the CLI draws bars).
    """
    from agentloop.rollout import RolloutConfig

    if policy is not None:  # record what really answered, not the config's default backend
        cfg = cfg.model_copy(update={"policy": PolicyConfig(id=f"instance:{type(policy).__name__}")})
    planned = plan_envs(cfg)
    if policy is None and cfg.policy.checkpoint:
        resolve_checkpoint(cfg.policy.checkpoint)  # fail on a bad path before creating anything
    check_per_node(cfg, policy, critic)
    run = RunDir.create(out, cfg, kind="eval", resume=resume,
                        ignore=("max_concurrency", "step_workers", "distributed", "tracking"))
    done = run.done_keys()
    jobs = [j for j in plan_jobs(cfg, planned) if j.metadata["run_key"] not in done]
    logger.info("%d episodes to run (%d already recorded in %s)", len(jobs), len(done), run.path)
    if jobs:
        sampling = cfg.sampling.model_copy(update={"return_logprobs": cfg.sampling.return_logprobs or cfg.count_tokens})
        rollout = RolloutConfig(sampling=sampling, max_concurrency=cfg.max_concurrency, step_workers=cfg.step_workers)
        engine = make_eval_engine(cfg, rollout, policy, critic)
        try:
            _run(engine, run, jobs, planned, cfg, progress, on_episode)
        finally:
            if hasattr(engine, "close"):  # the Ray engine's worker actors (and Ray, if it started it)
                engine.close()
    metrics = summarize_run(run, cfg.max_attempts)
    from agentloop.tracking import flatten_metrics, make_tracker, resource_metrics

    with make_tracker(cfg.tracking, run.path) as tracker:
        tracker.log_config(cfg.model_dump(mode="json"))
        tracker.log({**flatten_metrics(metrics, "eval"), **resource_metrics()}, step=0)
    return EvalResult(run=run, metrics=metrics, new_episodes=len(jobs))


def check_per_node(cfg: EvalConfig, policy: Any = None, critic: Any = None) -> None:
    """Refuse what per-node generation cannot build on its workers (before any run directory exists)."""
    if cfg.distributed.address is None or cfg.distributed.generation != "per_node":
        return
    if policy is not None or critic is not None:
        raise ConfigError("distributed.generation='per_node' builds the policy on every worker from the config; "
                          "policy/critic instances cannot travel there. Use generation='central' instead.")
    if cfg.critic is not None and cfg.critic.id == "llm" and "policy" not in cfg.critic.kwargs:
        raise ConfigError("a self-critiquing llm critic shares the actor's model, which per_node generation does "
                          "not build on the driver; set critic.kwargs.policy or use generation='central'.")


def make_eval_engine(cfg: EvalConfig, rollout: Any, policy: Any = None, critic: Any = None) -> Any:
    """The single-process or Ray engine ``cfg.distributed`` asks for, with the policy and critic it needs."""
    from agentloop.distributed import critic_factory, make_engine, policy_factory

    dist = cfg.distributed
    if dist.address is None or dist.generation == "central":
        actor = policy if policy is not None else cfg.policy.make_policy()
        # an llm critic without a policy kwarg critiques with the actor (self-critique)
        crit = critic if critic is not None else cfg.critic.make_critic(actor) if cfg.critic is not None else None
        return make_engine(actor, crit, rollout, dist)
    check_per_node(cfg, policy, critic)
    make_crit = critic_factory(cfg.critic.id, **cfg.critic.kwargs) if cfg.critic is not None else None
    make_pol = policy_factory(cfg.policy.id, **policy_kwargs(cfg.policy))
    return make_engine(None, None, rollout, dist, make_policy=make_pol, make_critic=make_crit)


def summarize_run(run: RunDir, max_attempts: int) -> dict[str, Any]:
    from agentloop.evaluation.summarize import summarize

    metrics = summarize(run.episodes(), max_attempts)
    run.write_metrics(metrics)
    return metrics


def _run(engine: Any, run: RunDir, jobs: list[Any], planned: list[PlannedEnv], cfg: EvalConfig,
         progress: EvalProgress | None, on_episode: Callable[[Episode], None] | None) -> None:
    """Run ``jobs``, appending each finished episode to ``run`` and reporting per-environment progress."""
    per_task = cfg.n + (cfg.max_attempts if cfg.compare else 0)
    totals = {p.entry.label: p.n_tasks * len(cfg.seeds) * per_task for p in planned}
    done = {label: totals[label] - sum(j.metadata["env_label"] == label for j in jobs) for label in totals}
    ok = dict.fromkeys(totals, 0)
    if progress is not None:
        for label in totals:
            progress(label, done[label], totals[label], 0)

    def record(ep: Episode) -> None:
        run.append_episode(ep)
        label = str(ep.metadata["env_label"])
        done[label] += 1
        ok[label] += int(ep.success)
        if progress is not None:
            progress(label, done[label], totals[label], ok[label])
        if on_episode is not None:
            on_episode(ep)

    engine.run(jobs, on_episode=record)
    logger.info("evaluated %d new episodes into %s", len(jobs), run.path)
