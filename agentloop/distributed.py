"""Rollouts and evaluation spread over a Ray cluster: environment workers as Ray actors.

Configured by :class:`DistributedConfig` in the run config; the default (``address=None``) is the
single-process :class:`~agentloop.rollout.RolloutEngine`, so nothing changes until a cluster is named.

* ``address="local"`` starts a local Ray instance, ``"auto"`` joins the cluster this node belongs to,
  ``"ray://host:10001"`` connects a Ray client. If Ray is already initialised (a test, a notebook),
  that instance is used and left running.
* ``generation="central"``: the driver holds the policy (and critic). Each round every worker
  reports the observations of its episodes waiting for an action; the driver answers all of them with
  one batched ``policy.generate`` call (one batched ``critic.critique`` for critique requests) and the
  workers step their environments in parallel. Use it when one GPU serves many CPU-bound environments.
* ``generation="per_node"``: every worker builds its own policy (and critic) from a picklable factory
  (:func:`policy_factory` for registry ids) and runs its episodes' rounds itself. Use it when each
  node has its own accelerator.

Episodes are the same records the single-process engine writes: the workers drive the engine's
public per-episode API (``start``, ``step``, ``critique``, ``finish``; ``round`` per node) and the
driver's central generation is the engine's own ``generate`` / ``request_critiques`` (batched, with
per-conversation retry and native tool schemas from ``WorkerReport.tools``), so a seeded deterministic policy gives
identical episodes (apart from the random ``Episode.id``).

Fault tolerance: when a worker dies (node lost, OOM kill, ``os._exit`` in an environment), every
episode that was live on it is re-run from its job on another worker (a replacement actor is started
while ``max_worker_restarts`` allows). Episodes reach the driver only when finished, so nothing is
written twice; with a :class:`~agentloop.runs.RunDir` the driver appends each finished episode under a
stable key and skips keys already recorded (resume). An episode whose worker dies more than
``max_episode_retries`` times (say it crashes the process itself every time) is recorded with an
``EpisodeError(stage="engine", type="WorkerDied")``, never raised.

Workers unpickle what the driver sends: environment classes and factories in ``Job.env``, specs of
environments registered in code, policy factories. Their modules must be importable on every node
(install the package, or pass ``ray_init={"runtime_env": {...}}``); classes defined in a ``__main__``
script travel by value.

Not covered: placement groups / node affinity (Ray's scheduler places the actors), autoscaling,
per-episode timeouts (an environment that hangs blocks its worker's round), and streaming episodes
of one round before the slowest worker of that round answers (rounds are synchronous, like the
engine's, so generation can batch across workers).

Example::

    cfg = DistributedConfig(address="local", num_workers=4)
    with RayRolloutEngine(policy, config=RolloutConfig(), distributed=cfg) as engine:
        episodes = engine.run([Job(env="math/arith-v0", seed=s) for s in range(64)])
"""

from __future__ import annotations

import functools
import logging
import re
from collections import deque
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from agentloop.errors import ConfigError
from agentloop.protocols import Critic, Policy
from agentloop.rollout import EpisodeState, Job, RolloutConfig, RolloutEngine, episode_error
from agentloop.types import Completion, Critique, CritiqueRequest, Episode, EpisodeError, Message

if TYPE_CHECKING:
    from agentloop.runs import RunDir

__all__ = [
    "DistributedConfig", "RayRolloutEngine", "WorkerReport", "connect", "critic_factory", "make_engine",
    "policy_factory",
]

logger = logging.getLogger(__name__)

_ADDRESS_RE = re.compile(r"^(local|auto|ray://\S+|[A-Za-z0-9_.-]+:\d+)$")


class DistributedConfig(BaseModel):
    """Where rollouts run. ``address=None`` keeps the single-process engine."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    address: str | None = Field(
        default=None,
        description="None: single process (no Ray). 'local': start a local Ray instance. 'auto': join the "
        "running cluster. 'ray://host:port': Ray client. 'host:port': a cluster's GCS address.",
    )
    num_workers: int = Field(default=2, ge=1, description="Environment worker actors.")
    generation: Literal["central", "per_node"] = Field(
        default="central",
        description="'central': the driver's policy batches every worker's pending turns. 'per_node': each "
        "worker builds its own policy from a factory and generates for its own episodes.",
    )
    episodes_per_worker: int = Field(
        default=16, ge=1, description="Live episodes per worker (workers x this = the largest central batch).")
    num_cpus_per_worker: float = Field(default=1.0, gt=0, description="CPUs Ray reserves for each worker actor.")
    num_gpus_per_worker: float = Field(default=0.0, ge=0, description="GPUs per worker (per_node generation on GPU).")
    max_episode_retries: int = Field(
        default=2, ge=0, description="Re-runs of one episode after its worker died before it is recorded as failed.")
    max_worker_restarts: int = Field(default=8, ge=0, description="Replacement actors started after worker deaths.")
    ray_init: dict[str, Any] = Field(
        default_factory=dict, description="Extra keyword arguments for ray.init (e.g. num_cpus for address='local').")

    @field_validator("address")
    @classmethod
    def _address(cls, v: str | None) -> str | None:
        if v is not None and not _ADDRESS_RE.match(v):
            raise ValueError(f"address {v!r} must be null (single process), 'local', 'auto', 'ray://host:port' "
                             "or 'host:port'.")
        return v

    @model_validator(mode="after")
    def _check(self) -> DistributedConfig:
        if self.num_gpus_per_worker > 0 and self.generation != "per_node":
            raise ValueError("num_gpus_per_worker > 0 needs generation='per_node': with central generation the "
                             "workers only step environments and the driver holds the model.")
        return self


# -- factories the workers can rebuild components from -------------------------------------------
def _from_registry(kind: str, id: str, kwargs: dict[str, Any]) -> Any:
    from agentloop.registry import make_critic, make_policy

    return make_policy(id, **kwargs) if kind == "policy" else make_critic(id, **kwargs)


def policy_factory(id: str, **kwargs: Any) -> Callable[[], Policy]:
    """A picklable zero-argument factory building the registered policy ``id`` (for per-node generation)."""
    return functools.partial(_from_registry, "policy", id, kwargs)


def critic_factory(id: str, **kwargs: Any) -> Callable[[], Critic]:
    """A picklable zero-argument factory building the registered critic ``id``."""
    return functools.partial(_from_registry, "critic", id, kwargs)


def connect(config: DistributedConfig) -> bool:
    """Initialise Ray as ``config.address`` says; True if this call started it (the caller then shuts it down)."""
    if config.address is None:
        raise ConfigError("DistributedConfig.address is None (single process): there is no Ray cluster to connect to. "
                          "Use make_engine(), which returns the single-process engine in that case.")
    try:
        import ray
    except ImportError as e:
        raise ConfigError(f"address={config.address!r} needs Ray: pip install 'agentloop[ray]' ({e}).") from e
    if ray.is_initialized():
        return False
    kwargs: dict[str, Any] = {"include_dashboard": False, "log_to_driver": True, **config.ray_init}
    if config.address != "local":
        kwargs["address"] = config.address
    ray.init(**kwargs)
    logger.info("Ray %s (address=%s)", "started locally" if config.address == "local" else "connected", config.address)
    return True


# -- the worker side ------------------------------------------------------------------------------
@dataclass(frozen=True)
class WorkerReport:
    """What a worker says after a round: finished episodes and what its live episodes wait for.

    ``tools`` holds the tool schemas (``render_tools``) of the episodes in ``waiting_action`` whose
    environment asks the policy to render them natively; the driver passes them to ``generate``.
    """

    finished: list[tuple[int, Episode]] = field(default_factory=list)
    waiting_action: list[tuple[int, list[Message], int]] = field(default_factory=list)  # (index, obs, turns so far)
    waiting_critique: list[tuple[int, CritiqueRequest, int]] = field(default_factory=list)
    tools: dict[int, list[dict[str, Any]]] = field(default_factory=dict)


class _NoPolicy:
    """Placeholder policy of a central-generation worker: the driver generates, workers never call this."""

    def generate(self, conversations: Sequence[Sequence[Message]], sampling: Any) -> list[Completion]:
        raise RuntimeError("central-generation worker asked to generate; this is a bug in agentloop.distributed")


class EnvWorker:
    """Holds live episodes (the engine's :class:`~agentloop.rollout.EpisodeState` s) and advances them
    through the engine's public per-episode API when the driver asks.

    The same class runs in-process in unit tests and as a Ray actor (``ray.remote(EnvWorker)``).
    """

    def __init__(self, config: RolloutConfig, make_policy: Callable[[], Policy] | None = None,
                 make_critic: Callable[[], Critic] | None = None):
        self.local = make_policy is not None
        policy = make_policy() if make_policy is not None else _NoPolicy()
        critic = make_critic() if make_critic is not None else None
        self.engine = RolloutEngine(policy, critic, config)
        self.states: dict[int, EpisodeState] = {}

    def ping(self) -> int:
        import os

        return os.getpid()

    def advance(self, new: Sequence[tuple[int, Job]] = (), env_specs: Sequence[Any] = (),
                critiques: Sequence[tuple[int, Critique | EpisodeError]] = (),
                actions: Sequence[tuple[int, Completion | EpisodeError]] = ()) -> WorkerReport:
        """Start ``new`` jobs, apply the driver's critiques and actions, and (per-node) run one local round."""
        engine = self.engine
        _register_specs(env_specs)
        for index, job in new:
            self.states[index] = engine.start(index, job)
        if critiques:
            engine.critique([self.states[i] for i, _ in critiques], [c for _, c in critiques])
        for index, outcome in actions:
            state = self.states[index]
            if isinstance(outcome, EpisodeError):
                state.fail(outcome)
            else:
                engine.step(state, outcome)
        if self.local:
            engine.round(list(self.states.values()))
        return self._report()

    def _report(self) -> WorkerReport:
        report = WorkerReport()
        for index in list(self.states):
            state = self.states[index]
            if state.done:
                report.finished.append((index, self.engine.finish(state)))
                del self.states[index]
            elif state.waiting_critique:
                report.waiting_critique.append((index, state.request, len(state.turns)))  # type: ignore[arg-type]
            else:
                report.waiting_action.append((index, list(state.obs), len(state.turns)))
                if state.tools:
                    report.tools[index] = state.tools
        return report


def _register_specs(specs: Sequence[Any]) -> None:
    """Make the driver's registrations (tests and notebooks register envs in code) known in this process."""
    from agentloop.registry import envs

    for spec in specs:
        fields = spec.model_dump(exclude={"id", "entry_point", "kwargs"})
        envs.register(spec.id, spec.entry_point, spec.kwargs, override=True, **fields)


# -- the driver side ------------------------------------------------------------------------------
@dataclass
class _WorkerPool:
    """The worker actors of one RayRolloutEngine (and of the engines its ``using`` made)."""

    started_ray: bool
    workers: dict[int, Any] = field(default_factory=dict)
    next_id: int = 0
    restarts: int = 0
    finished: int = 0  # episodes that reached the driver, over every run of every engine on these actors


@dataclass
class _Live:
    job: Job
    worker: int
    tries: int = 0


class RayRolloutEngine:
    """The rollout engine over Ray worker actors; same ``run(jobs, on_episode)`` as :class:`RolloutEngine`.

    Pass ``policy`` (and ``critic``) for central generation, or ``make_policy`` (and ``make_critic``)
    zero-argument picklable factories for per-node generation. Live episodes are bounded by
    ``num_workers * episodes_per_worker`` (``RolloutConfig.max_concurrency`` is the single-process
    bound and is not used here); each worker steps its episodes in turn (``step_workers`` is not used:
    the parallelism is the workers). Close the engine (or use ``with``) to stop the actors.
    """

    def __init__(self, policy: Policy | None = None, critic: Critic | None = None,
                 config: RolloutConfig | None = None, distributed: DistributedConfig | None = None, *,
                 make_policy: Callable[[], Policy] | None = None, make_critic: Callable[[], Critic] | None = None):
        self.config = config or RolloutConfig()
        self.distributed = distributed or DistributedConfig(address="local")
        central = self.distributed.generation == "central"
        if central and (policy is None or not hasattr(policy, "generate")):
            raise ConfigError("generation='central' needs policy= (an object with generate()); for per-node "
                              "generation set DistributedConfig.generation='per_node' and pass make_policy=.")
        if not central and make_policy is None:
            raise ConfigError("generation='per_node' needs make_policy= (a picklable zero-argument factory, e.g. "
                              "agentloop.distributed.policy_factory('hf', device='cuda')).")
        # central generation: this engine's generate / request_critiques answer every worker's episodes
        self.central = RolloutEngine(policy, critic, self.config) if central else None  # type: ignore[arg-type]
        self._factories = (None, None) if central else (make_policy, make_critic)
        self._pool = _WorkerPool(started_ray=connect(self.distributed))
        for _ in range(self.distributed.num_workers):
            self._spawn()

    @property
    def policy(self) -> Policy | None:
        return self.central.policy if self.central is not None else None

    @property
    def critic(self) -> Critic | None:
        return self.central.critic if self.central is not None else None

    @property
    def workers(self) -> dict[int, Any]:
        """Live worker actors by id (shared with every engine made by :meth:`using`)."""
        return self._pool.workers

    @property
    def restarts(self) -> int:
        return self._pool.restarts

    @property
    def episodes_run(self) -> int:
        """Episodes these worker actors finished, across every ``run`` (of this engine and those ``using`` made)."""
        return self._pool.finished

    def using(self, policy: Policy, critic: Critic | None = None, config: RolloutConfig | None = None) -> RayRolloutEngine:
        """An engine on the same worker actors with another policy, critic and sampling (central generation).

        Starting actors takes seconds, so a job that runs several phases (``improve``: evaluation with
        greedy sampling, collection with a critic) starts them once and runs each phase through ``using``.
        Closing any of these engines stops the shared actors.
        """
        config = config or self.config
        if self.central is None:
            raise ConfigError("using() swaps the driver's policy, which needs generation='central'; per_node workers "
                              "build their own policy from make_policy.")
        if config.max_turns != self.config.max_turns:
            raise ConfigError(f"using(config.max_turns={config.max_turns}): the workers were started with max_turns="
                              f"{self.config.max_turns}; start another RayRolloutEngine for another turn cap.")
        other = object.__new__(RayRolloutEngine)
        other.config, other.distributed, other._factories, other._pool = config, self.distributed, self._factories, self._pool
        other.central = RolloutEngine(policy, critic, config)
        return other

    # -- lifecycle ------------------------------------------------------------------------------
    def _spawn(self) -> int:
        import ray

        d, pool = self.distributed, self._pool
        actor_cls = ray.remote(num_cpus=d.num_cpus_per_worker, num_gpus=d.num_gpus_per_worker,
                               max_restarts=0)(EnvWorker)
        wid = pool.next_id
        pool.next_id += 1
        pool.workers[wid] = actor_cls.remote(self.config, *self._factories)
        return wid

    def close(self) -> None:
        """Stop the workers (and Ray, if this engine started it)."""
        import ray

        pool = self._pool
        for actor in pool.workers.values():
            ray.kill(actor)
        pool.workers.clear()
        if pool.started_ray:
            ray.shutdown()
            pool.started_ray = False

    def __enter__(self) -> RayRolloutEngine:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    # -- public ---------------------------------------------------------------------------------
    def run(self, jobs: Iterable[Job], on_episode: Callable[[Episode], None] | None = None, *,
            run_dir: RunDir | None = None, keys: Sequence[str] | None = None) -> list[Episode]:
        """Run every job; returns the episodes in job order (skipping, with ``run_dir``, keys already recorded).

        With ``run_dir`` each finished episode is appended under its key: ``keys[i]``, else the job's
        ``metadata["run_key"]``, else one derived from the env id, the job index and the seed.
        """
        jobs = list(jobs)
        keys = list(keys) if keys is not None else [_default_key(i, j) for i, j in enumerate(jobs)]
        if len(keys) != len(jobs):
            raise ConfigError(f"keys has {len(keys)} entries for {len(jobs)} jobs; give one key per job.")
        done = run_dir.done_keys() if run_dir is not None else set()
        queue: deque[int] = deque(i for i in range(len(jobs)) if keys[i] not in done)
        results: dict[int, Episode] = {}

        def finish(index: int, episode: Episode) -> None:
            if index in results:  # a re-run of an episode that already reached the driver: keep the first
                return
            results[index] = episode
            self._pool.finished += 1
            if run_dir is not None:
                run_dir.append_episode(episode, key=keys[index])
            if on_episode is not None:
                on_episode(episode)

        _Driver(self, jobs, queue, finish).loop()
        return [results[i] for i in sorted(results)]


def _default_key(index: int, job: Job) -> str:
    from agentloop.runs import episode_key

    key = job.metadata.get("run_key")
    if isinstance(key, str):
        return key
    env = job.env if isinstance(job.env, str) else getattr(job.env, "__name__", type(job.env).__name__)
    return episode_key(env, task=index, seed=job.seed)


class _Driver:
    """The state of one ``run``: which episode lives on which worker and what each waits for."""

    def __init__(self, engine: RayRolloutEngine, jobs: list[Job], queue: deque[int],
                 finish: Callable[[int, Episode], None]):
        self.e, self.jobs, self.queue, self.finish = engine, jobs, queue, finish
        self.live: dict[int, _Live] = {}
        self.tries: dict[int, int] = {}
        self.waiting_action: dict[int, tuple[list[Message], int, list[dict[str, Any]] | None]] = {}
        self.waiting_critique: dict[int, tuple[CritiqueRequest, int]] = {}

    def loop(self) -> None:
        cap = self.e.distributed.episodes_per_worker
        while self.queue or self.live:
            if not self.e.workers:
                self._give_up()
                return
            calls: dict[int, dict[str, list[Any]]] = {w: {"new": [], "critiques": [], "actions": []}
                                                      for w in self.e.workers}
            self._assign(calls, cap)
            self._central(calls)
            self._dispatch(calls)

    def _assign(self, calls: dict[int, dict[str, list[Any]]], cap: int) -> None:
        load = {w: 0 for w in self.e.workers}
        for item in self.live.values():
            load[item.worker] += 1
        while self.queue:
            wid = min(load, key=lambda w: load[w])
            if load[wid] >= cap:
                break
            index = self.queue.popleft()
            self.live[index] = _Live(self.jobs[index], wid, self.tries.get(index, 0))
            calls[wid]["new"].append((index, self.jobs[index]))
            load[wid] += 1

    def _central(self, calls: dict[int, dict[str, list[Any]]]) -> None:
        """Central generation: one batched critic call and one batched policy call for every worker's episodes."""
        central = self.e.central
        if central is None:
            return
        crit = list(self.waiting_critique.items())
        outcomes: list[Any] = central.request_critiques([req for _, (req, _) in crit])
        for (index, (_, turns)), out in zip(crit, outcomes):
            value = episode_error("critic", out, turns - 1) if isinstance(out, BaseException) else out
            calls[self.live[index].worker]["critiques"].append((index, value))
        acts = list(self.waiting_action.items())
        live = [a for a in acts if self.jobs[a[0]].replayed(a[1][1]) is None]  # replayed turns: nothing to generate
        generated = iter(central.generate([obs for _, (obs, _, _) in live], [tools for _, (_, _, tools) in live]))
        outcomes = [self.jobs[index].replayed(turns) or next(generated) for index, (_, turns, _) in acts]
        for (index, (_, turns, _)), out in zip(acts, outcomes):
            value = episode_error("policy", out, turns) if isinstance(out, BaseException) else out
            calls[self.live[index].worker]["actions"].append((index, value))
        self.waiting_action.clear()
        self.waiting_critique.clear()

    def _dispatch(self, calls: dict[int, dict[str, list[Any]]]) -> None:
        import ray

        specs = self._env_specs(calls)
        local = self.e.distributed.generation == "per_node"
        refs = {}
        for wid, call in calls.items():
            busy = any(item.worker == wid for item in self.live.values())
            if call["new"] or call["critiques"] or call["actions"] or (local and busy):
                refs[wid] = self.e.workers[wid].advance.remote(call["new"], specs[wid], call["critiques"],
                                                                call["actions"])
        for wid, ref in refs.items():
            try:
                report: WorkerReport = ray.get(ref)
            except ray.exceptions.RayError as err:
                self._worker_lost(wid, err)
                continue
            for index, episode in report.finished:
                self.live.pop(index, None)
                self.finish(index, episode)
            for index, obs, turns in report.waiting_action:
                self.waiting_action[index] = (obs, turns, report.tools.get(index))
            for index, request, turns in report.waiting_critique:
                self.waiting_critique[index] = (request, turns)

    def _env_specs(self, calls: dict[int, dict[str, list[Any]]]) -> dict[int, list[Any]]:
        from agentloop.registry import spec

        out: dict[int, list[Any]] = {}
        for wid, call in calls.items():
            ids = sorted({job.env for _, job in call["new"] if isinstance(job.env, str)})
            found = []
            for env_id in ids:
                try:
                    found.append(spec(env_id))
                except Exception:  # noqa: BLE001 - unknown ids fail in the worker's reset, recorded on the episode
                    continue
            out[wid] = found
        return out

    def _worker_lost(self, wid: int, err: BaseException) -> None:
        """Re-queue every episode that lived on the dead worker (first in line) and start a replacement."""
        import ray

        actor = self.e.workers.pop(wid)
        try:
            ray.kill(actor)
        except Exception:  # noqa: BLE001 - already dead is the usual case
            pass
        lost = sorted(i for i, item in self.live.items() if item.worker == wid)
        logger.warning("Ray worker %d died (%s: %s); re-running its %d live episode(s)", wid, type(err).__name__,
                       str(err)[:200], len(lost))
        for index in reversed(lost):
            item = self.live.pop(index)
            self.waiting_action.pop(index, None)
            self.waiting_critique.pop(index, None)
            self.tries[index] = item.tries + 1
            if self.tries[index] > self.e.distributed.max_episode_retries:
                self.finish(index, _lost_episode(item.job, err, self.tries[index]))
            else:
                self.queue.appendleft(index)
        if self.e.restarts < self.e.distributed.max_worker_restarts:
            self.e._pool.restarts += 1
            self.e._spawn()

    def _give_up(self) -> None:
        err = RuntimeError("no Ray workers left (max_worker_restarts reached)")
        logger.error("%s: recording %d unfinished episode(s) as failed", err, len(self.live) + len(self.queue))
        for index in [*self.live, *self.queue]:
            self.finish(index, _lost_episode(self.jobs[index], err, self.tries.get(index, 0)))
        self.live.clear()
        self.queue.clear()


def _lost_episode(job: Job, err: BaseException, tries: int) -> Episode:
    env_id = job.env if isinstance(job.env, str) else "unknown"
    error = EpisodeError(stage="engine", type="WorkerDied",
                         message=f"the Ray worker running this episode died {tries} time(s); last error: "
                         f"{type(err).__name__}: {str(err)[:1500]}. Check the worker logs (an environment that "
                         "crashes its process, or memory limits), or raise max_episode_retries.")
    return Episode(env_id=env_id, seed=job.seed, error=error, metadata=dict(job.metadata))


def make_engine(policy: Policy | None = None, critic: Critic | None = None, config: RolloutConfig | None = None,
                distributed: DistributedConfig | None = None, *, make_policy: Callable[[], Policy] | None = None,
                make_critic: Callable[[], Critic] | None = None) -> RolloutEngine | RayRolloutEngine:
    """The engine a run config asks for: single-process when ``distributed`` is None or has no address."""
    if distributed is None or distributed.address is None:
        if policy is None:
            policy = make_policy() if make_policy is not None else None
            critic = critic if critic is not None or make_critic is None else make_critic()
        if policy is None:
            raise ConfigError("make_engine needs policy= (or make_policy=) for the single-process engine.")
        return RolloutEngine(policy, critic, config)
    return RayRolloutEngine(policy, critic, config, distributed, make_policy=make_policy, make_critic=make_critic)
