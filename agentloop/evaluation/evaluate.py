"""Evaluate a policy on held-out environments: K attempts with feedback, n samples, seeds; resumable.

:func:`evaluate` checks everything that can be checked before generating (environment ids and
kwargs, empty suites, the checkpoint, the run directory), then runs the missing episodes through
the :class:`~agentloop.rollout.RolloutEngine`, appending each to ``episodes.jsonl`` as it finishes,
and finally writes ``metrics.json`` (see :mod:`agentloop.evaluation.summarize`).

Protocols (:mod:`agentloop.evaluation.protocols`): with K >= 2 attempts, every episode's first attempt
is generated once (keys ``first|ENV_LABEL|task=I|sample=J|seed=S``, metadata ``mode: first``), then
each protocol's episode (``PROTOCOL|ENV_LABEL|...``, metadata ``protocol``) replays that recorded
first attempt through the rollout engine (``Job.replay``: the environment steps it again, nothing is
generated) and plays the later attempts under the protocol. Every protocol is therefore scored on the
same first attempts, which no batching or padding difference can change, and costs only its later
turns. ``metrics.json`` holds one block per protocol under ``protocols`` (the first protocol's also
at the top level); ``versus`` adds paired gains over earlier runs of the same problems, per protocol.
With K = 1 the keys are ``ENV_LABEL|task=I|sample=J|seed=S``; ``par|...`` are the parallel samples of
the compute-matched comparison. A killed run resumed with the same config skips what is done.
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
import os
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from agentloop.tracking import TrackingConfig
from agentloop.config import ComponentRef
from agentloop.distributed import DistributedConfig
from agentloop.errors import ConfigError
from agentloop.evaluation.protocols import EvalProtocol, parse_protocols
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
    """How each evaluation episode is played: attempts and the protocols between them.

    Shared by ``agentloop eval`` (:class:`EvalConfig`) and ``agentloop improve``'s held-out
    evaluation (its ``eval`` section). ``protocols`` evaluates one first attempt under several
    protocols (:mod:`agentloop.evaluation.protocols`); without it, ``feedback`` (with ``critic`` and
    ``critique_all``) is the one protocol. :meth:`protocol_list` gives the protocols either way.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    max_attempts: int = Field(default=2, ge=1, le=64, description="Attempts per episode (K).")
    feedback: FeedbackMode = Field(default="env", description="Feedback between attempts (the one protocol when "
                                   "protocols is not given).")
    protocols: list[EvalProtocol] | None = Field(
        default=None, description="Evaluate under each of these protocols from one shared first attempt: names "
        "(retry, binary, env, critic, critic:verifier, critic:llm, critic-all:llm, none, oracle) or "
        "{name, feedback, critic, critique_all}. None: the one protocol given by feedback.")
    feedback_text: str | None = Field(
        default=None, description="The trained method's own feedback text (e.g. RISE's): retry shows it after every "
        "answer, binary after wrong answers, so the model sees the text it was trained on. None: the generic texts.")
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
            if isinstance(data.get("protocols"), str):  # --set protocols=retry,binary
                data = {**data, "protocols": [s for s in data["protocols"].split(",") if s.strip()]}
        return data

    @model_validator(mode="after")
    def _attempt_rules(self) -> AttemptSettings:
        if self.protocols is not None:
            if not self.protocols:
                raise ValueError("protocols is empty; list at least one (e.g. [retry, binary]) or leave it out")
            if "feedback" in self.model_fields_set or "critique_all" in self.model_fields_set:
                raise ValueError("give protocols or feedback/critique_all, not both: protocols: [retry, binary] "
                                 "evaluates each; feedback: X is the one-protocol shorthand")
            parse_protocols(self.protocols)  # unique names
        if self.critique_all and (self.feedback != "critic" or self.max_attempts < 2):
            raise ValueError("critique_all=True critiques every answer between attempts; it needs feedback='critic' "
                             "and max_attempts >= 2")
        for p in self.protocol_list():
            if p.feedback == "critic" and p.critic is None and self.critic is None and self.max_attempts >= 2:
                raise ValueError(f"protocol {p.name} needs a critic: set critic ({{id: verifier}} or {{id: llm}}) or "
                                 "name it in the protocol (critic:verifier)")
        return self

    def protocol_list(self) -> list[EvalProtocol]:
        """The protocols this evaluation plays (``protocols``, or the one ``feedback`` names)."""
        if self.protocols is not None:
            return list(self.protocols)
        name = "critic-all" if self.critique_all else self.feedback
        return [EvalProtocol(name=name, feedback=self.feedback, critique_all=self.critique_all)]

    def protocol_kwargs(self, protocol: EvalProtocol) -> dict[str, Any]:
        """The ``agentloop.make`` keywords that play an episode under ``protocol``."""
        return {"max_attempts": self.max_attempts, **protocol.attempt_kwargs(self.feedback_text)}


class EvalConfig(AttemptSettings):
    """Everything one evaluation run needs; written to the run directory as its resolved config."""

    policy: PolicyConfig = Field(default_factory=PolicyConfig)
    envs: list[SuiteEntry] = Field(default_factory=list, description="Environments (or use suite): ids, or "
                                   "{env, kwargs, limit, name} entries like a suite's.")
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
    versus: list[str] = Field(default_factory=list, description="Run directories of earlier evaluations of the same "
                              "problems (the base model, a control): paired gains of this run over each, per protocol, "
                              "on the problems both share (metrics 'versus').")

    @field_validator("envs", mode="before")
    @classmethod
    def _env_ids(cls, v: Any) -> Any:
        return [entry_of(e) if isinstance(e, str) else e for e in v] if isinstance(v, list) else v

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


def entry_of(text: str) -> dict[str, Any]:
    """``'math/arith-v0'`` or ``'math/arith-v0[difficulty=6,split=test]'`` (an environment's report label, read
    back) -> a suite entry ``{env, kwargs}``; values are read as YAML scalars (6 is a number, test a string)."""
    import yaml

    text = text.strip()
    if not text.endswith("]") or "[" not in text:
        return {"env": text}
    env, _, body = text[:-1].partition("[")
    kwargs = {}
    for part in filter(None, (p.strip() for p in body.split(","))):
        key, eq, value = part.partition("=")
        if not eq:
            raise ValueError(f"environment {text!r}: write kwargs as key=value, e.g. math/arith-v0[difficulty=6]")
        kwargs[key.strip()] = yaml.safe_load(value)
    return {"env": env, "kwargs": kwargs}


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
    labels = [e.label for e in cfg.envs]
    if len(set(labels)) != len(labels):
        raise ConfigError(f"envs lists an environment twice: {labels}; list each once (or give them distinct names).")
    return list(cfg.envs)


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


FIRST = "first"  # metadata mode of the shared first attempts that protocol episodes branch from


def _task_jobs(cfg: EvalConfig, p: PlannedEnv, group: str, make_kwargs: dict[str, Any], samples: int,
               metadata: dict[str, Any]) -> list[Any]:
    """One Job per (seed, task, sample) of environment ``p``, keyed ``GROUP|task=I|sample=J|seed=S``."""
    from agentloop.rollout import Job

    label = p.entry.label
    return [Job(env=p.entry.env, seed=seed if p.by_index else seed * 1_000_003 + i,
                options={"index": i} if p.by_index else None, make_kwargs={**p.entry.kwargs, **make_kwargs},
                metadata={"run_key": episode_key(group, task=i, sample=j, seed=seed), "env_label": label,
                          "task_index": i, "sample": j, "eval_seed": seed, **metadata})
            for seed in cfg.seeds for i in range(p.n_tasks) for j in range(samples)]


def plan_jobs(cfg: EvalConfig, planned: list[PlannedEnv]) -> list[Any]:
    """The episodes that need no recorded start: single-attempt episodes (K = 1) or the shared first
    attempts (K >= 2, mode ``first``), and the parallel samples of ``compare``."""
    jobs = []
    for p in planned:
        label = p.entry.label
        if cfg.max_attempts == 1:
            jobs += _task_jobs(cfg, p, label, {"max_attempts": 1}, cfg.n, {"mode": "sequential"})
        else:
            jobs += _task_jobs(cfg, p, f"{FIRST}|{label}", {"max_attempts": 1}, cfg.n, {"mode": FIRST})
        if cfg.compare:  # parallel samples: own keys
            jobs += _task_jobs(cfg, p, f"par|{label}", {"max_attempts": 1}, cfg.max_attempts, {"mode": "parallel"})
    return jobs


def protocol_group(protocol: str, label: str) -> str:
    return f"{protocol}|{label}"


def replay_of(first: Episode) -> tuple[Any, ...]:
    """The recorded completions of a first attempt, for a protocol episode to replay (nothing generated)."""
    from agentloop.types import Completion

    # every field a turn keeps from its completion (token ids, log-probs, ...), so a replayed turn is recorded alike
    shared = [f for f in Completion.model_fields if f in type(first.turns[0]).model_fields] if first.turns else []
    return tuple(Completion(text=t.action, warning=t.info.get("policy_warning"), **{f: getattr(t, f) for f in shared})
                 for t in first.turns)


def branch_jobs(cfg: EvalConfig, planned: list[PlannedEnv], protocol: EvalProtocol,
                firsts: dict[str, Episode]) -> tuple[list[Any], list[Episode]]:
    """``protocol``'s episodes, each replaying its recorded first attempt: (jobs to run, episodes already
    decided). A first attempt that errored decides its protocol episodes (the same error, nothing to play)."""
    jobs, decided = [], []
    extra = {"mode": "sequential", "protocol": protocol.name, "oracle_stopped": protocol.oracle_stopped}
    for p in planned:
        for job in _task_jobs(cfg, p, protocol_group(protocol.name, p.entry.label), cfg.protocol_kwargs(protocol),
                              cfg.n, extra):
            md = job.metadata
            first = firsts[episode_key(f"{FIRST}|{p.entry.label}", task=md["task_index"], sample=md["sample"],
                                       seed=md["eval_seed"])]
            if first.error is not None or not first.turns:
                decided.append(first.model_copy(update={"id": os.urandom(8).hex(),
                                                        "metadata": {**first.metadata, **md}}))
            else:
                jobs.append(replace(job, replay=replay_of(first)))
    return jobs, decided


def evaluate(cfg: EvalConfig, out: str | Path, *, resume: bool = False, policy: Any = None, critic: Any = None,
             progress: EvalProgress | None = None, on_episode: Callable[[Episode], None] | None = None) -> EvalResult:
    """Run (or resume) an evaluation into the run directory ``out``; see the module docstring. Prints nothing.

    ``policy``/``critic`` instances override ``cfg.policy``/``cfg.critic`` (e.g. a model being trained).
    ``progress(label, done, total, ok)`` is called per environment (and protocol) as episodes finish.
    """
    from agentloop.rollout import RolloutConfig
    from agentloop.runs import key_of

    if policy is not None:  # record what really answered, not the config's default backend
        cfg = cfg.model_copy(update={"policy": PolicyConfig(id=f"instance:{type(policy).__name__}")})
    planned = plan_envs(cfg)
    if policy is None and cfg.policy.checkpoint:
        resolve_checkpoint(cfg.policy.checkpoint)  # fail on a bad path before creating anything
    check_per_node(cfg, policy, critic)
    for other in cfg.versus:
        if not (Path(other) / "episodes.jsonl").exists():
            raise ConfigError(f"versus: {other} is not an evaluation run directory (no episodes.jsonl); give the "
                              "--out folder of an earlier agentloop eval of the same problems.")
    run = RunDir.create(out, cfg, kind="eval", resume=resume,
                        ignore=("max_concurrency", "step_workers", "distributed", "tracking", "versus"))
    recorded = {key_of(e): e for e in run.episodes()}
    sampling = cfg.sampling.model_copy(update={"return_logprobs": cfg.sampling.return_logprobs or cfg.count_tokens})
    rollout = RolloutConfig(sampling=sampling, max_concurrency=cfg.max_concurrency, step_workers=cfg.step_workers)
    central = cfg.distributed.address is None or cfg.distributed.generation == "central"
    actor = policy if policy is not None or not central else None
    new = 0

    def phase(jobs: list[Any], label: Callable[[str], str], crit_ref: ComponentRef | None,
              totals: dict[str, int]) -> None:
        nonlocal actor, new
        todo = [j for j in jobs if j.metadata["run_key"] not in recorded]
        if not todo:
            return
        if actor is None and central:
            actor = cfg.policy.make_policy()
        crit = critic if critic is not None else (crit_ref.make_critic(actor) if central and crit_ref is not None else None)
        engine = make_eval_engine(cfg, rollout, actor, crit, crit_ref)
        def finished(ep: Episode) -> None:
            recorded[key_of(ep)] = ep
            if on_episode is not None:
                on_episode(ep)

        try:
            _run(engine, run, todo, label, totals, progress, finished)
        finally:
            if hasattr(engine, "close"):  # the Ray engine's worker actors (and Ray, if it started it)
                engine.close()
        new += len(todo)

    first_jobs = plan_jobs(cfg, planned)
    suffix = "" if cfg.max_attempts == 1 else " · first attempt"
    phase(first_jobs, lambda lab: lab + suffix, None, _totals(first_jobs, lambda lab: lab + suffix))
    if cfg.max_attempts > 1:
        firsts = {k: e for k, e in recorded.items() if e.metadata.get("mode") == FIRST}
        for protocol in cfg.protocol_list():
            jobs, decided = branch_jobs(cfg, planned, protocol, firsts)
            for ep in decided:
                if key_of(ep) not in recorded:
                    run.append_episode(ep)
                    recorded[key_of(ep)] = ep
            name = lambda lab, p=protocol.name: f"{lab} · {p}"  # noqa: E731
            phase(jobs, name, protocol.critic or cfg.critic, _totals(jobs, name))
    logger.info("%d new episodes in %s", new, run.path)
    metrics = summarize_run(run, cfg.max_attempts)
    if cfg.versus:
        metrics["versus"] = versus_runs(run.episodes(), cfg.versus, cfg.max_attempts)
        run.write_metrics(metrics)
    from agentloop.tracking import flatten_metrics, make_tracker, resource_metrics

    with make_tracker(cfg.tracking, run.path) as tracker:
        tracker.log_config(cfg.model_dump(mode="json"))
        tracker.log({**flatten_metrics(metrics, "eval"), **resource_metrics()}, step=0)
    return EvalResult(run=run, metrics=metrics, new_episodes=new)


def versus_runs(episodes: list[Episode], others: list[str], max_attempts: int, seed: int = 0) -> dict[str, Any]:
    """Per other run and protocol: this run's :class:`~agentloop.evaluation.selfcorrection.Gains` over it,
    paired on the problems both evaluated under that protocol."""
    from agentloop.evaluation.selfcorrection import paired_gains, problem_key

    def by_protocol(eps: list[Episode]) -> dict[str, dict[str, Episode]]:
        out: dict[str, dict[str, Episode]] = {}
        for ep in eps:
            if ep.metadata.get("mode", "sequential") == "sequential":
                out.setdefault(str(ep.metadata.get("protocol", "")), {})[problem_key(ep)] = ep
        return out

    ours = by_protocol(episodes)
    result: dict[str, Any] = {}
    for other in others:
        theirs = by_protocol(RunDir(other).episodes())
        per: dict[str, Any] = {}
        for name, eps in ours.items():
            shared = sorted(set(eps) & set(theirs.get(name, {})))
            if shared:
                g = paired_gains([theirs[name][k] for k in shared], [eps[k] for k in shared], max_attempts, seed=seed)
                per[name or "single"] = g.as_json()
        result[str(other)] = per
    return result


def _totals(jobs: list[Any], label: Callable[[str], str]) -> dict[str, int]:
    totals: dict[str, int] = {}
    for j in jobs:
        name = label(j.metadata["env_label"])
        totals[name] = totals.get(name, 0) + 1
    return totals


def check_per_node(cfg: EvalConfig, policy: Any = None, critic: Any = None) -> None:
    """Refuse what per-node generation cannot build on its workers (before any run directory exists)."""
    if cfg.distributed.address is None or cfg.distributed.generation != "per_node":
        return
    if policy is not None or critic is not None:
        raise ConfigError("distributed.generation='per_node' builds the policy on every worker from the config; "
                          "policy/critic instances cannot travel there. Use generation='central' instead.")
    refs = [cfg.critic] + [p.critic for p in cfg.protocol_list()]
    if any(r is not None and r.critiques_with_actor() for r in refs):
        raise ConfigError("a self-critiquing critic (llm) shares the actor's model, which per_node generation does "
                          "not build on the driver; set critic.kwargs.policy or use generation='central'.")


def make_eval_engine(cfg: EvalConfig, rollout: Any, policy: Any = None, critic: Any = None,
                     critic_ref: ComponentRef | None = None) -> Any:
    """The single-process or Ray engine ``cfg.distributed`` asks for, with the policy and critic it needs
    (built from the config when not given; ``critic_ref`` names the critic per-node workers build)."""
    from agentloop.distributed import critic_factory, make_engine, policy_factory

    dist = cfg.distributed
    if dist.address is None or dist.generation == "central":
        actor = policy if policy is not None else cfg.policy.make_policy()
        # an llm critic without a policy kwarg critiques with the actor (self-critique)
        crit = critic if critic is not None else critic_ref.make_critic(actor) if critic_ref is not None else None
        return make_engine(actor, crit, rollout, dist)
    check_per_node(cfg, policy, critic)
    make_crit = critic_factory(critic_ref.id, **critic_ref.kwargs) if critic_ref is not None else None
    make_pol = policy_factory(cfg.policy.id, **policy_kwargs(cfg.policy))
    return make_engine(None, None, rollout, dist, make_policy=make_pol, make_critic=make_crit)


def summarize_run(run: RunDir, max_attempts: int) -> dict[str, Any]:
    from agentloop.evaluation.summarize import summarize

    metrics = summarize(run.episodes(), max_attempts)
    run.write_metrics(metrics)
    return metrics


def _run(engine: Any, run: RunDir, jobs: list[Any], label: Callable[[str], str], totals: dict[str, int],
         progress: EvalProgress | None, on_episode: Callable[[Episode], Any]) -> None:
    """Run ``jobs``, appending each finished episode to ``run`` and reporting progress per ``label(env)``."""
    done = dict.fromkeys(totals, 0)
    ok = dict.fromkeys(totals, 0)
    if progress is not None:
        for name in totals:
            progress(name, 0, totals[name], 0)

    def record(ep: Episode) -> None:
        run.append_episode(ep)
        name = label(str(ep.metadata["env_label"]))
        done[name] += 1
        ok[name] += int(ep.success)
        if progress is not None:
            progress(name, done[name], totals[name], ok[name])
        on_episode(ep)

    engine.run(jobs, on_episode=record)
